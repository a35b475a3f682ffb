"""smi_features on rendered photos: a feature baseline for committed images, and the bundled cohort vs truth.

The baseline (``tests/data/features_baseline.csv``) holds every per-view feature of a
few photos copied from the bundled cohort into ``tests/data/features_images/`` (so that
regenerating the cohort does not move it). A change of any value beyond rounding fails
the test: an intentional change must rewrite the baseline (set
``LEGSMI_WRITE_FEATURES_BASELINE=1`` and run this file) and bump
``smi_features.extractor.EXTRACTOR_VERSION``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smi_data.paths import STUDIO_COHORT
from smi_features.extractor import measure_files, record_to_view_features

DATA = Path(__file__).parent / "data"
IMAGES = DATA / "features_images"
BASELINE = DATA / "features_baseline.csv"
#: image file -> height_cm of the person it shows (from the cohort manifest)
PHOTOS = {
    "P001_lateral.jpg": 170.7,
    "P001_posterior.jpg": 170.7,
    "P002_lateral.jpg": 153.0,
}


def _current() -> pd.DataFrame:
    names = sorted(PHOTOS)
    recs = measure_files([str(IMAGES / n) for n in names], cache=False,
                         contexts=[(None, PHOTOS[n]) for n in names])
    rows = []
    for n, rec in zip(names, recs):
        f, _ = record_to_view_features(rec, prefix="", height_cm=PHOTOS[n])
        rows.append({"image": n, **f})
    return pd.DataFrame(rows)


def test_features_match_the_baseline():
    cur = _current()
    if os.environ.get("LEGSMI_WRITE_FEATURES_BASELINE") == "1":
        cur.to_csv(BASELINE, index=False, float_format="%.9g")
        pytest.skip(f"wrote {BASELINE}")
    base = pd.read_csv(BASELINE, keep_default_na=False, na_values=[""])
    assert list(base.columns) == list(cur.columns), "feature columns changed; rewrite the baseline"
    assert list(base["image"]) == list(cur["image"])
    for col in cur.columns:
        if col == "image":
            continue
        a, b = cur[col], base[col]
        if pd.api.types.is_numeric_dtype(b) and pd.api.types.is_numeric_dtype(a):
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-5, atol=1e-7,
                                       equal_nan=True, err_msg=col)
        else:
            assert a.astype(object).where(a.notna(), "").astype(str).tolist() == \
                b.astype(object).where(b.notna(), "").astype(str).tolist(), col
    assert (set(cur["scale_mode"]) == {"marker"}
            and cur["failure"].astype(object).where(cur["failure"].notna(), "").eq("").all())


@pytest.mark.slow
@pytest.mark.skipif(not (STUDIO_COHORT / "truth.csv").is_file(), reason="bundled cohort not present")
def test_bundled_cohort_calf_widths_agree_with_truth(tmp_path, monkeypatch):
    from smi_features.truthcheck import compare_with_truth

    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(tmp_path / "cache"))
    res = compare_with_truth(STUDIO_COHORT, n_jobs=2, cache=False).set_index("feature")
    assert res.attrs["failures"] == {}
    for feat in ("lat_calf_max_width_cm", "post_calf_max_width_cm"):
        assert res.loc[feat, "n"] == 100
        assert res.loc[feat, "mape_pct"] < 2.0, res.loc[feat].to_dict()
        assert res.loc[feat, "worst_pct"] < 10.0, res.loc[feat].to_dict()
        assert res.loc[feat, "pearson_r"] > 0.95
    assert res.loc["calf_circumference_cm", "mape_pct"] < 3.0
    for feat in ("lat_px_per_cm", "post_px_per_cm"):
        assert res.loc[feat, "worst_pct"] < 1.0
