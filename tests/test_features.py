"""smi_features measurement: drawn shapes of known size, invariances, scale order, failures, docs, cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from test_features_draw import drawn_leg, ellipse_picture

from smi_features.extractor import (ExtractionSettings, FeatureCache, measure_leg, measure_files,
                                    record_to_view_features, sample_features)
from smi_features.features import all_feature_docs, paired, view_feature_docs
from smi_features.features.base import LevelSettings, leg_geometry
from smi_features.scale import SHANK_FRACTION_OF_HEIGHT, choose_scale
from smi_features.silhouette import SilhouetteError, leg_silhouette, to_uint8

PPC, HEIGHT = 2.5, 170.0


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(tmp_path / "cache"))


def _measure(img, ppc=PPC, height=HEIGHT):
    m = measure_leg(img, px_per_cm=ppc, height_cm=height)
    assert m.ok, m.reason
    return m


# ----------------------------------------------------------------------------- known sizes
@pytest.mark.parametrize("a, angle", [(40.0, 0.0), (40.3, 0.0), (22.0, 0.0), (40.0, 4.0)])
def test_ellipse_width_within_one_percent(a, angle):
    sil = leg_silhouette(ellipse_picture(a, 100.0, angle_deg=angle))
    assert np.nanmax(sil.widths) == pytest.approx(2 * a, rel=0.01)


def test_ellipse_at_512_px_uses_the_full_resolution_edges():
    sil = leg_silhouette(ellipse_picture(80.3, 200.0, size=512))
    assert np.nanmax(sil.widths) == pytest.approx(2 * 80.3, rel=0.002)


@pytest.mark.parametrize("calf_cm", [10.0, 12.0, 14.5])
def test_drawn_calf_width_in_cm_within_one_percent(calf_cm):
    img, truth = drawn_leg(calf_cm=calf_cm, knee_cm=0.87 * calf_cm)
    m = _measure(img)
    assert m.features_px["calf_max_width"] / PPC == pytest.approx(calf_cm, rel=0.01)
    assert m.features_px["calf_max_level_frac"] == pytest.approx(0.4, abs=0.03)
    assert m.features_px["ankle_min_width"] / PPC == pytest.approx(truth["ankle_cm"], rel=0.03)
    assert m.geometry.levels_from == "floor"
    assert m.geometry.knee_y == pytest.approx(truth["knee_y"], abs=1.5)


def test_width_doubles_when_the_drawing_doubles_at_fixed_scale():
    # The same leg drawn twice as large, photographed at the same px_per_cm: a person
    # twice the size. Lengths double, areas quadruple, ratios stay.
    small = _measure(drawn_leg(size=256, px_per_cm=PPC)[0]).features_px
    big = _measure(drawn_leg(size=512, px_per_cm=2 * PPC)[0], ppc=PPC, height=2 * HEIGHT).features_px
    assert big["calf_max_width"] / small["calf_max_width"] == pytest.approx(2.0, rel=0.01)
    assert big["knee_ankle_length"] / small["knee_ankle_length"] == pytest.approx(2.0, rel=0.01)
    assert big["shank_area"] / small["shank_area"] == pytest.approx(4.0, rel=0.01)
    assert big["calf_ankle_ratio"] == pytest.approx(small["calf_ankle_ratio"], rel=0.01)


def test_width_in_cm_doubles_when_the_scale_halves():
    img, _ = drawn_leg()
    rec = _measure(img, ppc=None).record()  # the marker-less photo: the scale comes afterwards
    a, _ = record_to_view_features(rec, prefix="", manifest_px_per_cm=PPC, height_cm=HEIGHT)
    b, _ = record_to_view_features(rec, prefix="", manifest_px_per_cm=PPC / 2, height_cm=HEIGHT)
    assert b["calf_max_width_cm"] == pytest.approx(2 * a["calf_max_width_cm"], rel=1e-12)
    assert b["shank_area_cm2"] == pytest.approx(4 * a["shank_area_cm2"], rel=1e-12)
    assert b["curv_max_per_cm"] == pytest.approx(a["curv_max_per_cm"] / 2, rel=1e-12)


# ----------------------------------------------------------------------------- invariances
def test_mirrored_photo_gives_the_same_features():
    img, _ = drawn_leg()
    a = _measure(img).features_px
    b = _measure(np.ascontiguousarray(img[:, ::-1])).features_px
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-9), k


def test_uint8_uint16_and_float_give_the_same_silhouette():
    img, _ = drawn_leg(noise=3.0)
    ref = leg_silhouette(img)
    for variant in (img.astype(np.uint16) * 257, img.astype(np.float32) / 255, img.astype(np.float64) / 255):
        sil = leg_silhouette(variant)
        assert np.array_equal(sil.mask, ref.mask)
        np.testing.assert_allclose(sil.left, ref.left, rtol=0, atol=1e-4, equal_nan=True)
        np.testing.assert_allclose(sil.right, ref.right, rtol=0, atol=1e-4, equal_nan=True)


def test_grey_and_rgba_photos_are_measured_like_colour_ones():
    import cv2

    img, _ = drawn_leg()
    ref = _measure(img).features_px["calf_max_width"]
    grey = _measure(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)).features_px["calf_max_width"]
    rgba = _measure(np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])).features_px["calf_max_width"]
    assert grey == pytest.approx(ref, rel=0.005) and rgba == pytest.approx(ref, rel=1e-9)


def test_float_image_outside_unit_range_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_uint8(np.full((32, 32), 2.0))


@pytest.mark.parametrize("roll", [5.0, -5.0])
def test_five_degree_roll_moves_the_calf_width_by_under_one_percent(roll):
    base = _measure(drawn_leg()[0]).features_px["calf_max_width"]
    m = _measure(drawn_leg(roll_deg=roll)[0])
    assert m.features_px["calf_max_width"] == pytest.approx(base, rel=0.01)
    assert m.silhouette.roll_deg == pytest.approx(-roll, abs=1.0)


# ----------------------------------------------------------------------------- failures
def test_photo_without_a_leg_is_a_failure_with_a_reason():
    blank = np.full((200, 200, 3), 180, np.uint8)
    m = measure_leg(blank)
    assert not m.ok and "no leg-shaped region" in m.reason
    with pytest.raises(SilhouetteError):
        leg_silhouette(blank)


def test_batch_with_a_bad_photo_reports_it_and_measures_the_rest(tmp_path):
    import cv2

    good, _ = drawn_leg()
    cv2.imwrite(str(tmp_path / "good.png"), good)
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((200, 200, 3), 120, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    samples = pd.DataFrame({
        "sample_id": ["a:lateral", "b:lateral", "c:lateral"], "subject_id": ["a", "b", "c"],
        "view": "lateral", "sex": ["F", "M", "F"], "age": 40.0, "height_cm": HEIGHT,
        "image_lateral": [str(tmp_path / n) for n in ("good.png", "blank.png", "broken.jpg")],
        "image_posterior": None, "px_per_cm_lateral": PPC, "px_per_cm_posterior": np.nan,
    })
    table, failures = sample_features(samples, cache=False)
    assert set(failures) == {"b:lateral", "c:lateral"}
    assert "no leg-shaped region" in failures["b:lateral"]
    assert "broken.jpg" in failures["c:lateral"]
    assert table.loc[0, "lat_calf_max_width_cm"] == pytest.approx(12.0, rel=0.01)
    assert table.loc[0, "lat_scale_mode"] == "manifest"
    assert np.isnan(table.loc[1, "lat_calf_max_width_cm"]) and np.isnan(table.loc[2, "calf_circumference_cm"])
    assert table.loc[0, "calf_circumference_cm"] == pytest.approx(np.pi * 12.0, rel=0.01)
    assert table.loc[0, "calf_circumference_source"] == "circle_lateral"


# ----------------------------------------------------------------------------- scale
def test_scale_order_marker_then_manifest_then_relative():
    assert choose_scale(5.0, 4.0, 300.0, 170.0).mode == "marker"
    assert choose_scale(None, 4.0, 300.0, 170.0).px_per_cm == 4.0
    rel = choose_scale(np.nan, np.nan, 300.0, 170.0)
    assert rel.mode == "relative"
    assert rel.px_per_cm == pytest.approx(300.0 / (SHANK_FRACTION_OF_HEIGHT * 170.0))
    none = choose_scale(None, None, 300.0, None)
    assert np.isnan(none.px_per_cm) and "no height" in none.reason


def test_relative_mode_uses_silhouette_levels_and_reports_itself():
    img, _ = drawn_leg()
    rec = measure_leg(img, height_cm=HEIGHT).record()
    assert rec["levels_from"] == "silhouette" and rec["marker_px_per_cm"] is None
    f, _ = record_to_view_features(rec, prefix="lat_", height_cm=HEIGHT)
    assert f["lat_scale_mode"] == "relative" and f["lat_failure"] == ""
    g, _ = record_to_view_features(rec, prefix="lat_")
    assert np.isnan(g["lat_calf_max_width_cm"]) and "lengths in cm are unknown" in g["lat_failure"]
    assert g["lat_calf_ankle_ratio"] == pytest.approx(f["lat_calf_ankle_ratio"])  # ratios need no scale


def test_marker_scale_on_a_toy_photo(tmp_path):
    from smi_data.toy import make_toy_dataset

    d = make_toy_dataset(tmp_path / "toy", 1, seed=3, views=("lateral",))
    truth = pd.read_csv(d / "truth.csv")
    rec = measure_files([str(d / truth.loc[0, "image"])], cache=False, contexts=[(None, 165.0)])[0]
    assert rec["ok"] and rec["marker_px_per_cm"] == pytest.approx(truth.loc[0, "px_per_cm_true"], rel=0.005)


# ----------------------------------------------------------------------------- paired
def test_ramanujan_perimeter_known_values():
    assert paired.ramanujan_perimeter(3.0, 3.0) == pytest.approx(2 * np.pi * 3.0)
    assert paired.ramanujan_perimeter(1.0, 0.5) == pytest.approx(4.844224110273838, rel=1e-7)


def test_paired_features_of_an_elliptical_leg():
    t = (np.arange(60) + 0.5) / 60
    depth = np.full(60, 12.0)
    width = np.full(60, 10.0)
    depth[24] = 13.0  # the widest level, inside the calf band
    out = paired.compute(depth, width, t, 40.0, 38.0, (0.2, 0.6))
    assert out["pair_calf_circ"] == pytest.approx(paired.ramanujan_perimeter(6.5, 5.0))
    assert out["pair_calf_depth"] == 13.0 and out["pair_calf_width"] == 10.0
    expected_volume = np.pi / 4 * (12.0 * 10.0 * 59 + 13.0 * 10.0) * (39.0 / 60)
    assert out["pair_volume"] == pytest.approx(expected_volume)


def test_both_views_give_ellipse_circumference(tmp_path):
    import cv2

    lat, _ = drawn_leg(calf_cm=13.0)
    post, _ = drawn_leg(calf_cm=11.0, knee_cm=10.0)
    cv2.imwrite(str(tmp_path / "l.png"), lat)
    cv2.imwrite(str(tmp_path / "p.png"), post)
    samples = pd.DataFrame({"sample_id": ["a:both"], "subject_id": ["a"], "view": "both", "sex": ["M"],
                            "age": [50.0], "height_cm": [HEIGHT], "image_lateral": [str(tmp_path / "l.png")],
                            "image_posterior": [str(tmp_path / "p.png")], "px_per_cm_lateral": [PPC],
                            "px_per_cm_posterior": [PPC]})
    table, failures = sample_features(samples, cache=False)
    assert not failures
    row = table.iloc[0]
    assert row["calf_circumference_source"] == "ellipse"
    assert row["calf_circumference_cm"] == row["pair_calf_circ_cm"]
    assert row["pair_calf_circ_cm"] == pytest.approx(paired.ramanujan_perimeter(6.5, 5.5), rel=0.015)
    assert row["cov_sex_male"] == 1.0 and row["cov_height_cm"] == HEIGHT and np.isnan(row["cov_weight_kg"])


# ----------------------------------------------------------------------------- docs and levels
def test_every_computed_feature_is_documented():
    m = _measure(drawn_leg()[0])
    docs = view_feature_docs()
    assert set(m.features_px) == set(docs)
    for name, doc in all_feature_docs().items():
        assert doc.title and doc.measures and doc.formula and doc.unit and doc.group, name


def test_calf_band_excludes_the_knee_flare():
    # A shank tapering straight from a wide knee: the widest row in the band is its top.
    rows = np.arange(300, dtype=float)
    width = np.where(rows < 40, np.nan, 80.0 - 0.15 * (rows - 40))
    left, right = 100 - width / 2, 100 + width / 2
    g = leg_geometry(left, right, LevelSettings(), top_cut=False)
    from smi_features.features.width_profile import calf_maximum

    w, t, _ = calf_maximum(g)
    assert t == pytest.approx(LevelSettings().calf_band[0], abs=0.01)


# ----------------------------------------------------------------------------- cache
def test_cache_is_read_back_and_keyed_by_settings(tmp_path, monkeypatch):
    import cv2

    from smi_features import extractor

    img, _ = drawn_leg()
    p = str(tmp_path / "leg.png")
    cv2.imwrite(p, img)
    store = FeatureCache(tmp_path / "c")
    first = measure_files([p], cache=store, contexts=[(PPC, HEIGHT)])[0]
    monkeypatch.setattr(extractor, "measure_image_file", lambda *a, **k: pytest.fail("measured again"))
    assert measure_files([p], cache=store, contexts=[(PPC, HEIGHT)])[0] == first
    other = ExtractionSettings(levels=LevelSettings(n_levels=12))
    with pytest.raises(pytest.fail.Exception):
        measure_files([p], settings=other, cache=store, contexts=[(PPC, HEIGHT)])
