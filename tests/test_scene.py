"""Tests of the phantom's whole scenes (``--scene clinic|wild``): label maps beside the photos, the
side rule, retakes, the widest row of the true leg mask against the mesh, and the take column.

The studio look is checked bit for bit against data/phantom-v1 in tests/test_phantom.py
(``test_generate_end_to_end_deterministic_and_regenerates_the_bundle``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smi_data.manifest import check_table, read_manifest, to_samples
from smi_data.phantom.generate import image_stem, photo_size

#: Columns that describe the body: equal in every take of a subject.
BODY_COLUMNS = ["sex", "age", "height_cm", "weight_kg", "bmi", "side", "smi", "smi_true", "calf_circ_cm",
                "calf_width_lateral_cm", "calf_width_posterior_cm", "lowerleg_volume_l", "asm_kg", "skin_tone",
                "anny_gender", "anny_age", "anny_muscle", "anny_weight", "anny_height", "anny_proportions"]
#: Columns a second photo session draws afresh: different in every take.
SESSION_COLUMNS = ["camera_distance_cm", "camera_height_cm", "pitch_deg", "roll_deg", "yaw_deg", "f_px",
                   "px_per_cm_true", "light_azimuth_deg", "light_elevation_deg", "light_intensity", "ambient_light",
                   "stance_gap_cm", "stagger_cm", "hem_above_knee_cm", "cloth_rgb", "wall_distance_cm",
                   "noise_sigma", "calf_x_px", "calf_y_px"]


def _read_labels(path: Path) -> np.ndarray:
    import cv2

    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert lab is not None, path
    return lab


def _read_photo(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_COLOR)


# ----------------------------------------------------------------------------- no body model needed
def test_photo_size_rules():
    assert photo_size("studio", None) == (512, 512)
    assert photo_size("clinic", None) == (600, 800)
    assert photo_size("wild", "300x400") == (300, 400)
    assert photo_size("wild", 300) == (300, 400)
    assert photo_size("studio", "256") == (256, 256)
    with pytest.raises(ValueError, match="square"):
        photo_size("studio", "300x400")
    with pytest.raises(ValueError, match="at least 128"):
        photo_size("clinic", "100x200")
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        photo_size("clinic", "big")
    with pytest.raises(ValueError, match="scene"):
        photo_size("garden", None)
    assert image_stem("P001", "lateral", 1, 1) == "P001_lateral"
    assert image_stem("P001", "lateral", 2, 3) == "P001_t2_lateral"


def _manifest(tmp_path: Path, rows) -> pd.DataFrame:
    (tmp_path / "images").mkdir(exist_ok=True)
    df = pd.DataFrame(rows, columns=["subject_id", "view", "image", "sex", "age", "height_cm", "smi", "take"])
    return df.astype(str)


def test_manifest_accepts_takes_and_refuses_bad_ones(tmp_path):
    good = _manifest(tmp_path, [["S1", "lateral", "images/a.jpg", "M", "40", "170", "7", "1"],
                                ["S1", "lateral", "images/b.jpg", "M", "40", "170", "7", "2"],
                                ["S1", "posterior", "images/c.jpg", "M", "40", "170", "7", "2"]])
    assert check_table(good, tmp_path) == []
    dup = good.copy()
    dup.loc[1, "take"] = "1"
    assert any("duplicate (subject_id, view, take) = (S1, lateral, 1)" in p for p in check_table(dup, tmp_path))
    bad = good.copy()
    bad.loc[0, "take"] = "0"
    assert any("row 2: take '0'" in p for p in check_table(bad, tmp_path))
    bad.loc[0, "take"] = "x"
    assert any("row 2: take 'x'" in p for p in check_table(bad, tmp_path))
    # without a take column two lateral photos of one person are still a duplicate
    assert any("duplicate (subject_id, view)" in p for p in check_table(good.drop(columns="take"), tmp_path))


# ----------------------------------------------------------------------------- with the Anny body model
@pytest.fixture(scope="module")
def body_model():
    pytest.importorskip("anny")
    from smi_data.phantom.body import AnnyBody

    return AnnyBody(threads=1)


@pytest.fixture(scope="module")
def clinic_retakes(tmp_path_factory, body_model):
    from smi_data.phantom.generate import generate_cohort

    out = tmp_path_factory.mktemp("scene") / "clinic"
    summary = generate_cohort(out, n_subjects=2, seed=5, size=(192, 256), scene="clinic", retakes=2,
                              model=body_model, progress=False)
    assert summary["images"] == 8 and not summary["failures"]
    return out


@pytest.mark.slow
def test_scene_photos_have_label_maps_with_the_legs(clinic_retakes):
    man = read_manifest(clinic_retakes)
    truth = pd.read_csv(clinic_retakes / "truth.csv")
    assert len(man) == len(truth) == 8 and man["image"].is_unique
    for m, t in zip(man.itertuples(), truth.itertuples()):
        photo = _read_photo(clinic_retakes / m.image)
        lab = _read_labels(clinic_retakes / t.label_map)
        assert lab.dtype == np.uint8 and lab.shape == photo.shape[:2] == (256, 192)
        assert Path(t.label_map).stem == Path(m.image).stem
        assert set(np.unique(lab)) <= set(range(7))
        assert (lab == 1).sum() > 500, m.image  # the photographed leg
        assert (lab == 3).any()  # the shorts
        if m.view == "posterior":
            assert (lab == 2).sum() > 500, m.image  # both legs side by side
        assert (lab == 4).any() == bool(t.marker)
        # no marker: the manifest gives the true scale instead
        assert np.isnan(m.px_per_cm) == bool(t.marker)
        if not t.marker:
            assert m.px_per_cm == pytest.approx(t.px_per_cm_true, rel=1e-3)
        # knee to sole in frame in the clinic protocol
        assert 0 < t.knee_y_px < t.calf_y_px < t.sole_y_px < 256


@pytest.mark.slow
def test_side_rule_posterior_subjects_left_leg_on_the_images_left(clinic_retakes):
    truth = pd.read_csv(clinic_retakes / "truth.csv")
    post = truth[truth["view"] == "posterior"]
    assert len(post) == 4
    for t in post.itertuples():
        lab = _read_labels(clinic_retakes / t.label_map)
        x_leg = np.nonzero(lab == 1)[1].mean()
        x_other = np.nonzero(lab == 2)[1].mean()
        assert (x_leg < x_other) == (t.side == "L"), t.image


@pytest.mark.slow
def test_retakes_share_the_body_and_change_the_session(clinic_retakes):
    man = read_manifest(clinic_retakes)
    assert sorted(man["take"].unique()) == [1, 2]
    assert all("_t1_" in p or "_t2_" in p for p in man["image"])
    samples = to_samples(man, "both")
    assert list(samples["sample_id"]) == ["P001:both:t1", "P001:both:t2", "P002:both:t1", "P002:both:t2"]
    truth = pd.read_csv(clinic_retakes / "truth.csv")
    for sid, grp in truth.groupby("subject_id"):
        for col in BODY_COLUMNS:
            assert grp[col].nunique() == 1, (sid, col)
        for view, g in grp.groupby("view"):
            assert sorted(g["take"]) == [1, 2]
            for col in SESSION_COLUMNS:
                assert g[col].nunique() == 2, (sid, view, col)


@pytest.mark.slow
def test_take_one_of_a_retake_cohort_is_the_single_take_photo(clinic_retakes, body_model, tmp_path):
    from smi_data.phantom.generate import generate_cohort

    generate_cohort(tmp_path / "one", n_subjects=1, seed=5, size=(192, 256), scene="clinic", views=["lateral"],
                    model=body_model, progress=False)
    for sub in ("images/P001_{}lateral.jpg", "labels/P001_{}lateral.png"):
        assert (tmp_path / "one" / sub.format("")).read_bytes() == (clinic_retakes / sub.format("t1_")).read_bytes()


@pytest.mark.slow
def test_widest_row_of_the_true_leg_mask_matches_the_mesh(body_model):
    from smi_data.phantom import scene
    from smi_data.phantom.generate import build_subject

    subj = build_subject(body_model, 0, 0)
    subj["scene_body"] = scene.scene_body(body_model, subj["body"])
    for view in ("lateral", "posterior"):
        _, lab, info, _ = scene.render_scene_view(subj, view, seed=0, condition="clinic", width=450, height=600)
        ky, ay = info["knee_y_px"], info["ankle_y_px"]
        rows = (lab == 1)[int(ky + 0.2 * (ay - ky)):int(ky + 0.6 * (ay - ky)) + 1].sum(1)
        widest = rows.max()
        # pixels only: the mask's widest row against the mesh slices projected by the same camera
        assert widest == pytest.approx(info["calf_width_seen_px"], rel=0.02), view
        # in cm at the calf centre's depth: the mesh's widest slice as seen from the camera; perspective (the
        # calf off the optical axis, the widest level nearer the camera than the calf centre when the camera
        # looks down) widens the row by about 1 % on average, up to about 4 % (docs/phantom.md)
        assert widest / info["px_per_cm_true"] == pytest.approx(info["calf_width_seen_cm"], rel=0.05), view
        assert info["perspective_bias_pct"] == pytest.approx(
            100 * (info["calf_width_seen_px"] / (info["calf_width_seen_cm"] * info["px_per_cm_true"]) - 1))
        # the truth's calf width is another definition (the slice square to the shank at the maximum
        # circumference): the widest horizontal slice in the band is up to about 6 % wider (docs/phantom.md)
        assert widest / info["px_per_cm_true"] == pytest.approx(subj["row"][f"calf_width_{view}_cm"], rel=0.08)


def test_one_leg_scene_leaves_out_the_other_leg_and_keeps_the_draws(body_model):
    from smi_data.phantom import scene
    from smi_data.phantom.generate import build_subject, generate_cohort

    subj = build_subject(body_model, 7, 0)
    subj["scene_body"] = scene.scene_body(body_model, subj["body"])
    with pytest.raises(ValueError, match="studio"):
        generate_cohort("/nonexistent/never-written", n_subjects=1, scene="studio", one_leg=True, model=body_model)
    other_seen = []
    for view in ("lateral", "posterior"):
        img2, lab2, info2, q2 = scene.render_scene_view(subj, view, seed=7, condition="wild", width=150, height=200)
        img1, lab1, info1, q1 = scene.render_scene_view(subj, view, seed=7, condition="wild", width=150, height=200,
                                                        one_leg=True)
        other_seen.append((lab2 == scene.LABELS["other_leg"]).any())
        assert not (lab1 == scene.LABELS["other_leg"]).any(), view
        assert info1["one_leg"] is True and "one_leg" not in info2
        # the same camera, light and scene: the photographed leg where it was, wherever the other did not hide it
        shown = lab2 == scene.LABELS["leg"]
        assert q1 == q2 and info1["px_per_cm_true"] == info2["px_per_cm_true"]
        assert (lab1[shown] == scene.LABELS["leg"]).mean() > 0.97, view
        assert (lab1 == scene.LABELS["leg"]).sum() >= shown.sum()
    assert any(other_seen)  # the two-leg photos do show the other leg


@pytest.mark.slow
def test_cli_wild_scene_writes_photos_and_labels(tmp_path):
    pytest.importorskip("anny")
    from click.testing import CliRunner

    import cli

    out = tmp_path / "w"
    res = CliRunner().invoke(cli.main, ["phantom", "--scene", "wild", "--subjects", "1", "--seed", "1001",
                                        "--size", "192x256", "--views", "posterior", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "s per image" in res.output
    man = read_manifest(out)
    assert list(man["view"]) == ["posterior"] and "take" not in man.columns
    lab = _read_labels(out / "labels" / "P001_posterior.png")
    assert lab.shape == (256, 192) and (lab == 1).any()
    assert pd.read_csv(out / "truth.csv")["scene"].tolist() == ["wild"]


def test_brick_texture_is_rectified():
    """The bundled brick photo's mortar lines converge; rectified, they are evenly spaced across the image."""
    from scipy.signal import find_peaks

    from smi_data.phantom import textures

    tex = textures.brick()  # bricks lie horizontally: mortar rows
    spacings = []
    for c0 in (0, tex.shape[1] - 40):
        prof = tex[:, c0:c0 + 40].mean(1)
        prof = prof - np.convolve(prof, np.ones(25) / 25, "same")
        peaks, _ = find_peaks(prof, distance=25, prominence=0.3)
        spacings.append(np.median(np.diff(peaks)))
    assert spacings[0] == pytest.approx(spacings[1], rel=0.05)


# ----------------------------------------------------------------------------- the bundled clinic cohort
V2 = Path(__file__).resolve().parents[1] / "data" / "phantom-v2"
needs_v2 = pytest.mark.skipif(not (V2 / "manifest.csv").is_file(), reason="data/phantom-v2 not present")


@needs_v2
def test_bundled_clinic_cohort_layout_size_and_truth():
    from smi_data.images import image_size

    man = read_manifest(V2)
    assert len(man) == 200 and man["subject_id"].nunique() == 100
    assert all(image_size(p) == (600, 800) for p in man["image_path"])
    t = pd.read_csv(V2 / "truth.csv")
    assert (t["scene"] == "clinic").all() and len(t) == len(man)
    for r in t.head(20).itertuples():
        lab = _read_labels(V2 / r.label_map)
        assert lab.shape == (800, 600) and (lab == 1).sum() > 5000
    # the scale is known in every photo: a marker card, or the manifest's px_per_cm
    assert (man["px_per_cm"].notna() != t["marker"].astype(bool)).all()
    total = sum(p.stat().st_size for p in V2.rglob("*") if p.is_file())
    assert total < 10 * 2**20
    # the same people as data/phantom-v1 (seed 0): labels and geometry equal
    v1 = pd.read_csv(V2.parent / "phantom-v1" / "truth.csv")
    for col in ("smi", "sex", "age", "height_cm", "weight_kg", "side", "calf_circ_cm", "calf_width_lateral_cm",
                "lowerleg_volume_l"):
        assert v1[col].tolist() == t[col].tolist(), col


@needs_v2
def test_bundled_clinic_markers_give_the_true_scale():
    from smi_data.images import read_image
    from smi_data.scale import detect_marker_px_per_cm

    t = pd.read_csv(V2 / "truth.csv")
    placed = t[t["marker"].astype(bool)].head(30)
    assert len(placed) == 30
    for r in placed.itertuples():
        found = detect_marker_px_per_cm(read_image(V2 / r.image))
        assert found is not None, r.image
        assert found[0] == pytest.approx(r.px_per_cm_true, rel=0.01), r.image
        assert r.marker_side_px > 45
