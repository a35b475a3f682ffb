"""Tests of the phantom: geometry that knows the answer, sampling statistics, the ceiling, the
bundled cohort (no anny needed), and end-to-end generation with the Anny body model (slow)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smi_data.paths import STUDIO_COHORT
from smi_data.phantom import ceiling, geometry, sampling, truth

TRUTH_COLUMNS = [
    "subject_id", "view", "image", "px_per_cm_true", "calf_circ_cm", "calf_width_lateral_cm",
    "calf_width_posterior_cm", "calf_level_frac", "ankle_width_lateral_cm", "ankle_width_posterior_cm",
    "lowerleg_volume_l", "leg_L_volume_l", "leg_R_volume_l", "arm_L_volume_l", "arm_R_volume_l",
    "fat_fraction", "asm_kg", "smi_true", "smi", "camera_distance_cm", "camera_height_cm", "roll_deg",
    "yaw_deg", "light_azimuth_deg", "light_elevation_deg", "light_intensity", "skin_tone", "background_rgb",
    "noise_sigma", "jpeg_quality",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- geometry (known answers)
def _box(sx, sy, sz):
    trimesh = pytest.importorskip("trimesh")
    m = trimesh.creation.box(extents=(sx, sy, sz))
    return np.asarray(m.vertices, float), np.asarray(m.faces)


def test_closed_box_volume_and_clipped_volumes_are_exact():
    v, f = _box(1.0, 2.0, 3.0)
    assert geometry.signed_volume(v[f], [0.3, -0.2, 0.1]) == pytest.approx(6.0, rel=1e-12)
    # cut at z = 0.5 (keep below): 1 x 2 x 2
    p = [0.0, 0.0, 0.5]
    assert geometry.clipped_volume(v, f, [(p, [0, 0, 1.0])], p) == pytest.approx(4.0, rel=1e-12)
    # a quarter: below z = 0.5 and left of x = 0; the origin lies on both planes
    o = [0.0, 0.7, 0.5]
    assert geometry.clipped_volume(v, f, [(o, [0, 0, 1.0]), (o, [1.0, 0, 0])], o) == pytest.approx(2.0, rel=1e-12)
    # an oblique plane through the centre halves the box
    assert geometry.clipped_volume(v, f, [([0, 0, 0], [0.3, 0.5, 0.8])], [0, 0, 0]) == pytest.approx(3.0, rel=1e-12)


def test_slice_of_a_cylinder_gives_its_circumference_and_width():
    trimesh = pytest.importorskip("trimesh")
    m = trimesh.creation.cylinder(radius=0.05, height=0.4, sections=256)
    pts = geometry.slice_points(m.vertices, m.faces, [0, 0, 0.03], [0, 0, 1.0])
    assert geometry.hull_perimeter(pts[:, :2]) == pytest.approx(2 * np.pi * 0.05, rel=1e-3)
    assert np.ptp(pts[:, 0]) == pytest.approx(0.1, rel=1e-3)


def test_calf_measures_on_a_cone_find_the_widest_level():
    trimesh = pytest.importorskip("trimesh")
    # a frustum: radius 6 cm at the knee end (z = 0.4) shrinking to 3 cm at the ankle (z = 0)
    m = trimesh.creation.cylinder(radius=1.0, height=0.4, sections=256)
    v = np.asarray(m.vertices, float).copy()
    v[:, 2] += 0.2
    r = 0.03 + 0.03 * v[:, 2] / 0.4
    v[:, :2] *= r[:, None]
    c = truth.calf_measures(v, np.asarray(m.faces), [0, 0, 0.4], [0, 0, 0.0])
    assert c["calf_level_frac"] == pytest.approx(truth.CALF_BAND[0])
    r_expected = 0.06 - 0.03 * truth.CALF_BAND[0]
    assert c["calf_circ_cm"] == pytest.approx(2 * np.pi * r_expected * 100, rel=2e-3)
    assert c["calf_width_lateral_cm"] == pytest.approx(2 * r_expected * 100, rel=2e-3)
    assert c["ankle_level_frac"] == pytest.approx(truth.ANKLE_BAND[1])


# ----------------------------------------------------------------------------- truth model
def test_deurenberg_and_composition_by_hand():
    assert truth.deurenberg_body_fat_pct(22.0, 30.0, True) == pytest.approx(1.2 * 22 + 0.23 * 30 - 10.8 - 5.4)
    # no fat: lean = muscle density x volume x (1 - bone fraction)
    assert truth.limb_muscle_kg(10.0, 0.0, "leg") == pytest.approx(1.06 * 10 * (1 - truth.BONE_FRACTION["leg"]))
    # the adipose volume fraction reproduces the fat mass fraction
    F, beta = 0.3, truth.BONE_FRACTION["leg"]
    phi = truth.adipose_volume_fraction(F, beta)
    mass_fat = truth.RHO_ADIPOSE * phi
    mass = mass_fat + truth.RHO_BONE * beta + truth.RHO_MUSCLE * (1 - phi - beta)
    assert mass_fat / mass == pytest.approx(F, rel=1e-12)
    vols = {"leg_L": 12.0, "leg_R": 12.0, "arm_L": 2.0, "arm_R": 2.0}
    lean = truth.composition(vols, height_m=1.7, body_fat=15.0, sex="M")
    fat = truth.composition(vols, height_m=1.7, body_fat=30.0, sex="M")
    assert fat["asm_kg"] < lean["asm_kg"]
    assert lean["smi_true"] == pytest.approx(lean["asm_kg"] / 1.7**2)


# ----------------------------------------------------------------------------- sampling
def test_sampled_cohort_statistics_resemble_the_study():
    s = pd.DataFrame([sampling.sample_subject(0, i) for i in range(400)])
    assert (s["sex"].iloc[::2] == "M").all() and (s["sex"].iloc[1::2] == "F").all()
    assert 34 <= s["age"].median() <= 41
    q1, q3 = s["age"].quantile([0.25, 0.75])
    assert 25 <= q1 <= 31 and 41 <= q3 <= 47
    assert s["age"].between(20, 65).all()
    h = s.groupby("sex")["target_height_cm"].mean()
    assert h["M"] == pytest.approx(171.5, abs=1.5) and h["F"] == pytest.approx(158.3, abs=1.5)
    b = s.groupby("sex")["target_bmi"].mean()
    assert b["M"] > b["F"]
    assert 0.7 <= (s["side"] == "L").mean() <= 0.9
    assert s["muscle"].min() < 0.1 and s["muscle"].max() > 0.9  # lean-muscular and fatty shapes both occur


def test_sampling_is_deterministic_per_subject():
    assert sampling.sample_subject(0, 7) == sampling.sample_subject(0, 7)
    assert sampling.sample_subject(1, 7) != sampling.sample_subject(0, 7)


# ----------------------------------------------------------------------------- renderer (no anny)
def test_rendered_cylinder_width_and_marker_scale_match_the_camera():
    trimesh = pytest.importorskip("trimesh")
    from smi_data.phantom.render import (Scene, draw_marker, finish_photo, look_at_camera, marker_card_corners,
                                         render_leg)
    from smi_data.scale import detect_marker_px_per_cm

    m = trimesh.creation.cylinder(radius=0.06, height=0.5, sections=128)
    v = np.asarray(m.vertices, float) + [0, 0, 0.25]
    f = np.asarray(m.faces)
    size = 512
    cam = look_at_camera([0, 0, 0.25], [1.0, 0, 0], distance_m=1.0, camera_height_m=0.25, yaw_deg=0.0,
                         roll_deg=0.0, f_px=size / 70 * 100, size=size)
    scene = Scene(skin_rgb=(0.8, 0.6, 0.5), wall_rgb=(0.6, 0.6, 0.7), floor_rgb=(0.3, 0.3, 0.3),
                  light_dir=np.array([0.6, 0.0, 0.8]), light_intensity=1.0, ambient=0.3, wall_distance_m=0.8,
                  view_dir=np.array([1.0, 0, 0]), target=np.array([0, 0, 0.25]))
    rgb, cov = render_leg(cam, v, f, scene, supersample=2)
    ppc = cam.px_per_cm_at_depth(1.0)
    width_cm = cov[size // 2].sum() / ppc
    assert width_cm == pytest.approx(12.0, rel=0.02)
    mk, card = marker_card_corners(cam, (size * 0.8, size * 0.4), 1.0)
    rgb = draw_marker(rgb, mk, card, 1.0)
    img = finish_photo(rgb, np.random.default_rng(0), 2.0)
    found = detect_marker_px_per_cm(img)
    assert found is not None
    assert found[0] == pytest.approx(ppc, rel=0.01)


# ----------------------------------------------------------------------------- ceiling (no anny)
def _fake_dataset(tmp_path: Path, noise: float) -> Path:
    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame({
        "subject_id": [f"S{i:03d}" for i in range(n)],
        "sex": np.where(np.arange(n) % 2 == 0, "M", "F"),
        "age": rng.uniform(20, 60, n).round(),
        "height_cm": rng.normal(165, 8, n).round(1),
        "weight_kg": rng.normal(62, 9, n).round(1),
    })
    for c in ceiling.GEOMETRY["both"]:
        if not c.startswith("ratio"):
            df[c] = rng.normal(10, 1, n)
    df["smi"] = (3 + 0.2 * df["calf_width_lateral_cm"] + 0.15 * df["calf_width_posterior_cm"]
                 + 0.8 * (df["sex"] == "M") + 0.01 * df["weight_kg"] + rng.normal(0, noise, n))
    d = tmp_path / f"ds{noise}"
    d.mkdir()
    man = df[["subject_id", "sex", "age", "height_cm", "weight_kg", "smi"]].assign(view="lateral", image="x.jpg")
    man.to_csv(d / "manifest.csv", index=False)
    df.assign(view="lateral", image="x.jpg").to_csv(d / "truth.csv", index=False)
    return d


def test_ceiling_is_perfect_when_smi_is_a_function_of_the_geometry(tmp_path):
    c = ceiling.compute_ceiling(_fake_dataset(tmp_path, 0.0), folds=5, seed=0)
    assert c["mape"] < 1e-6 and c["ccc"] > 0.999999
    assert c["covariates_only"]["mape"] > 1.0  # the geometry is what explains it
    noisy = ceiling.compute_ceiling(_fake_dataset(tmp_path, 0.3), folds=5, seed=0)
    assert noisy["mape"] > 1.0 and noisy["ccc"] < 0.99


def test_ceiling_refuses_a_folder_without_truth(tmp_path):
    with pytest.raises(FileNotFoundError, match="truth.csv"):
        ceiling.compute_ceiling(tmp_path)


def test_ceiling_and_toolkit_do_not_import_anny_or_torch():
    code = ("import sys, smi_data.phantom, smi_data.phantom.ceiling, smi_data.phantom.truth, "
            "smi_data.phantom.generate; bad = [m for m in ('anny', 'torch') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ----------------------------------------------------------------------------- the bundled cohort
needs_bundle = pytest.mark.skipif(not (STUDIO_COHORT / "truth.csv").is_file(), reason="bundled cohort missing")


@needs_bundle
def test_bundled_cohort_layout_and_size():
    from smi_data.images import image_size
    from smi_data.manifest import read_manifest

    man = read_manifest(STUDIO_COHORT)
    assert len(man) == 200 and man["subject_id"].nunique() == 100
    assert man.drop_duplicates("subject_id")["sex"].value_counts().to_dict() == {"M": 50, "F": 50}
    assert "px_per_cm" not in man.columns
    assert set(man["side"]) <= {"L", "R"} and set(man["reference_device"]) == {"BIA"}
    assert all(r.image == f"images/{r.subject_id}_{r.view}.jpg" for r in man.itertuples())
    assert all(image_size(p) == (512, 512) for p in man["image_path"])
    t = pd.read_csv(STUDIO_COHORT / "truth.csv")
    assert [c for c in TRUTH_COLUMNS if c not in t.columns] == []
    assert len(t) == len(man)
    total = sum(p.stat().st_size for p in STUDIO_COHORT.rglob("*") if p.is_file())
    assert total < 15 * 2**20
    assert (STUDIO_COHORT / "run.json").is_file()


@needs_bundle
def test_bundled_cohort_statistics():
    t = pd.read_csv(STUDIO_COHORT / "truth.csv").drop_duplicates("subject_id")
    assert t["smi"].mean() == pytest.approx(7.0, abs=0.25)
    assert 0.85 <= t["smi"].std() <= 1.35
    by_sex = t.groupby("sex")["smi"].mean()
    assert by_sex["M"] > by_sex["F"] + 0.8
    assert 33 <= t["age"].median() <= 42
    assert t["calf_circ_cm"].between(28, 52).all()
    assert (t["lowerleg_volume_l"] < t["leg_L_volume_l"]).all()
    # the label is the true SMI with a small device error
    rel = (t["smi"] - t["smi_true"]) / t["smi_true"]
    assert rel.abs().max() < 5 * truth.DEVICE_CV + 0.005


@needs_bundle
def test_bundled_marker_agrees_with_true_scale_in_every_image():
    from smi_data.images import read_image
    from smi_data.scale import detect_marker_px_per_cm

    t = pd.read_csv(STUDIO_COHORT / "truth.csv")
    errors = []
    for r in t.itertuples():
        found = detect_marker_px_per_cm(read_image(STUDIO_COHORT / r.image))
        assert found is not None, f"no marker found in {r.image}"
        errors.append(found[0] / r.px_per_cm_true - 1)
    assert np.max(np.abs(errors)) < 0.015
    assert abs(np.mean(errors)) < 0.005


@needs_bundle
def test_bundled_ceiling_is_sane():
    c = ceiling.compute_ceiling(STUDIO_COHORT, folds=5, seed=0)
    assert c["n_subjects"] == 100
    assert 1.5 < c["mape"] < 5.0 and 0.9 < c["ccc"] < 0.995
    assert c["mape"] < c["covariates_only"]["mape"]  # the calf carries information
    assert c["label_noise_floor"]["mape"] < c["mape"]


# ----------------------------------------------------------------------------- with the Anny body model
@pytest.fixture(scope="module")
def body_model():
    pytest.importorskip("anny")
    from smi_data.phantom.body import AnnyBody

    return AnnyBody(threads=1)  # the first build on a machine takes about 100 s, then it is cached


@pytest.mark.slow
def test_generate_end_to_end_deterministic_and_regenerates_the_bundle(tmp_path, body_model):
    from smi_data.images import read_image
    from smi_data.manifest import read_manifest
    from smi_data.phantom.generate import generate_cohort
    from smi_data.scale import detect_marker_px_per_cm

    a = tmp_path / "a"
    summary = generate_cohort(a, n_subjects=3, seed=0, model=body_model, progress=False)
    assert summary["subjects"] == 3 and summary["images"] == 6 and not summary["failures"]
    man = read_manifest(a)
    t = pd.read_csv(a / "truth.csv")
    for r in t.itertuples():
        found = detect_marker_px_per_cm(read_image(a / r.image))
        assert found is not None and found[0] == pytest.approx(r.px_per_cm_true, rel=0.015)
        assert 0 < r.knee_y_px < r.calf_y_px < r.sole_y_px < 512  # knee to foot in frame, foot down
    assert set(man["view"]) == {"lateral", "posterior"}
    # same seed, same bytes
    b = tmp_path / "b"
    generate_cohort(b, n_subjects=3, seed=0, model=body_model, progress=False)
    for name in ["manifest.csv", "truth.csv"] + [f"images/{p.name}" for p in (a / "images").iterdir()]:
        assert sha256(a / name) == sha256(b / name), name
    # the bundled cohort's first subjects come out bit for bit (subject i depends only on (seed, i))
    if (STUDIO_COHORT / "truth.csv").is_file():
        for p in (a / "images").iterdir():
            assert sha256(p) == sha256(STUDIO_COHORT / "images" / p.name), p.name
        bundled = pd.read_csv(STUDIO_COHORT / "truth.csv").head(6)
        pd.testing.assert_frame_equal(t, bundled)
    # another seed, other people
    c = tmp_path / "c"
    generate_cohort(c, n_subjects=1, seed=1, model=body_model, progress=False)
    assert sha256(c / "images/P001_lateral.jpg") != sha256(a / "images/P001_lateral.jpg")


def _width_across_axis_px(coverage: np.ndarray, center, axis) -> float:
    """Leg width in pixels along the line through ``center`` square to the image direction ``axis``."""
    import cv2

    a = np.asarray(axis, float) / np.linalg.norm(axis)
    n = np.array([-a[1], a[0]])
    step = 0.25
    t = np.arange(-300, 300, step)
    pts = np.asarray(center, float)[None] + t[:, None] * n[None]
    vals = cv2.remap(coverage.astype(np.float32), (pts[:, 0] - 0.5).astype(np.float32),
                     (pts[:, 1] - 0.5).astype(np.float32), cv2.INTER_LINEAR)
    return float(vals.sum() * step)


@pytest.mark.slow
def test_rendered_silhouette_width_agrees_with_the_mesh_slice(body_model):
    from smi_data.phantom import camera as cam_mod
    from smi_data.phantom.generate import VIEWS, build_subject, make_camera, render_view

    for i in (0, 1):
        subj = build_subject(body_model, 0, i)
        for view, col in (("lateral", "calf_width_lateral_cm"), ("posterior", "calf_width_posterior_cm")):
            _, info, cov = render_view(subj, view, seed=0, size=512, marker=False)
            nz = cam_mod.draw_nuisances(sampling.subject_rng(0, i, 1 + VIEWS.index(view)))
            cam, _, _ = make_camera(subj, view, nz, 512)
            knee, ankle, calf = cam.project(np.stack([subj["knee"], subj["ankle"], subj["calf_center"]]))
            assert calf == pytest.approx([info["calf_x_px"], info["calf_y_px"]])
            width_cm = _width_across_axis_px(cov, calf, ankle - knee) / info["px_per_cm_true"]
            assert width_cm == pytest.approx(subj["row"][col], rel=0.02), (i, view)


@pytest.mark.slow
def test_limb_volumes_are_closed_and_plausible(body_model):
    from smi_data.phantom.generate import build_subject

    r = build_subject(body_model, 0, 0)["row"]
    assert 1.5 < r["lowerleg_volume_l"] < 7.0
    assert r["lowerleg_volume_l"] < r["leg_volume_l"] < 25
    assert 0.8 < r["arm_L_volume_l"] < 6
    assert r["limb_volume_l"] < r["body_volume_l"] / 2


@pytest.mark.slow
def test_cli_phantom_no_marker_single_view(tmp_path):
    pytest.importorskip("anny")
    from click.testing import CliRunner

    import cli
    from smi_data.images import read_image
    from smi_data.scale import detect_marker_px_per_cm

    out = tmp_path / "p"
    res = CliRunner().invoke(cli.main, ["phantom", "--subjects", "1", "--seed", "3", "--out", str(out),
                                        "--views", "lateral", "--no-marker", "--size", "256"])
    assert res.exit_code == 0, res.output
    assert "speed:" in res.output
    man = pd.read_csv(out / "manifest.csv")
    assert list(man["view"]) == ["lateral"]
    img = read_image(out / man["image"][0])
    assert img.shape == (256, 256, 3) and detect_marker_px_per_cm(img) is None
    res2 = CliRunner().invoke(cli.main, ["phantom", "--subjects", "1", "--out", str(out)])
    assert res2.exit_code != 0 and "--overwrite" in res2.output
