"""Repeatable features model (clipped linear base, two-view base, named exclusions) and information
tiers through `train` and `predict`."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import cli
from smi_data.toy import make_toy_dataset
from smi_features.estimators import (CLIP_MARGIN, LINEAR_CORE, TWO_VIEW_CORE_LEFT_OUT, UNREPEATABLE_FEATURES,
                                     LogLinearBase, XGBFeaturesRegressor, excluded_columns, feature_columns)


# ----------------------------------------------------------------------------- the linear base
def test_clipped_base_does_not_extrapolate_an_outlier_and_survives_json():
    rng = np.random.default_rng(0)
    X = rng.uniform(4.0, 6.0, size=(60, 2))
    y = 3.0 * np.log(X[:, 0]) - 2.0 * np.log(X[:, 1]) + rng.normal(0, 0.01, 60)
    clipped = LogLinearBase(["a", "b"], clip=True).fit(X, y)
    free = LogLinearBase(["a", "b"], clip=False).fit(X, y)
    span = X[:, 1].max() - X[:, 1].min()
    assert clipped.lower_[1] == pytest.approx(X[:, 1].min() - CLIP_MARGIN * span)
    edge = np.array([[X[:, 0].max(), clipped.lower_[1]]])
    outlier = np.array([[X[:, 0].max(), 0.5]])  # a mis-segmented ankle: far below every training value
    assert clipped.predict(outlier)[0] == pytest.approx(clipped.predict(edge)[0])
    inside = np.array([[X[:, 0].max(), X[:, 1].min() - 0.5 * CLIP_MARGIN * span]])  # a little beyond: kept
    assert clipped.predict(inside)[0] == pytest.approx(free.predict(inside)[0], rel=0.05)
    assert free.predict(outlier)[0] > free.predict(edge)[0] + 1.0  # the unclipped logs run away
    back = LogLinearBase.from_dict(json.loads(json.dumps(clipped.to_dict())))
    assert np.allclose(back.predict(np.vstack([X[:5], outlier])), clipped.predict(np.vstack([X[:5], outlier])))
    # a base saved before clipping existed loads and does not clip
    old = free.to_dict()
    assert "lower" not in old
    assert np.allclose(LogLinearBase.from_dict(old).predict(outlier), free.predict(outlier))
    bad = clipped.to_dict() | {"lower": [1.0]}
    with pytest.raises(ValueError, match="clip bounds"):
        LogLinearBase.from_dict(bad)


def _feature_table(n=40, seed=0, views=("lat_", "post_")):
    """A synthetic feature table with the model's core columns (no images needed)."""
    rng = np.random.default_rng(seed)
    cols = {"sample_id": [f"S{i:03d}" for i in range(n)]}
    for c in LINEAR_CORE:
        if c.startswith("cov_"):
            continue
        if c.startswith(("lat_", "post_")) and not c.startswith(views):
            continue
        if c.startswith("pair_") and len(views) < 2:
            continue
        cols[c] = rng.uniform(5.0, 40.0, n)
    cols["cov_sex_male"] = rng.integers(0, 2, n).astype(float)
    cols["cov_age"] = rng.uniform(40, 80, n)
    cols["cov_height_cm"] = rng.uniform(150, 190, n)
    cols["cov_weight_kg"] = rng.uniform(50, 100, n)
    t = pd.DataFrame(cols)
    y = 5 + 0.05 * t.filter(like="calf_max_width").sum(axis=1).to_numpy() + 0.01 * t["cov_weight_kg"].to_numpy()
    return t, y


def test_two_view_base_leaves_out_the_posterior_core_and_the_ankle_circumference():
    table, y = _feature_table()
    m = XGBFeaturesRegressor(n_estimators=5, tier="weight").fit_table(table, y)
    assert m.base_ is not None and m.base_.clip
    assert not set(m.base_.columns) & set(TWO_VIEW_CORE_LEFT_OUT)
    assert "pair_calf_circ_cm" in m.base_.columns and "lat_calf_max_width_cm" in m.base_.columns
    # the trees still see every column; only the linear base is narrower
    assert "post_calf_max_width_cm" in m.feature_names_
    # at the photo tier (no covariates) the posterior view's core stays: it carries the size
    photo = XGBFeaturesRegressor(n_estimators=5, tier="photo").fit_table(table, y)
    assert "post_calf_max_width_cm" in photo.base_.columns
    # one view: its own core columns stay in the base
    lat, y1 = _feature_table(views=("lat_",))
    m1 = XGBFeaturesRegressor(n_estimators=5, tier="weight").fit_table(lat, y1)
    assert "lat_ankle_min_width_cm" in m1.base_.columns


def test_excluded_features_by_name_by_view_name_and_the_repeatable_set():
    table, _ = _feature_table()
    cols = table.columns
    groups = ("width", "area", "curvature", "covariates")
    assert "lat_ankle_min_width_cm" not in feature_columns(cols, groups, exclude=["lat_ankle_min_width_cm"])
    both_gone = feature_columns(cols, groups, exclude=["ankle_min_width_cm"])
    assert not {"lat_ankle_min_width_cm", "post_ankle_min_width_cm"} & set(both_gone)
    assert excluded_columns("repeatable") == UNREPEATABLE_FEATURES and excluded_columns("all") == ()
    with pytest.raises(ValueError, match="repeatable"):
        excluded_columns("reliable")
    table_y = _feature_table()
    m = XGBFeaturesRegressor(n_estimators=5, feature_set="repeatable").fit_table(*table_y)
    assert not set(m.feature_names_) & set(UNREPEATABLE_FEATURES)
    assert not set(m.base_.columns) & set(UNREPEATABLE_FEATURES)


# ----------------------------------------------------------------------------- tiers in train and predict
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", 16, seed=7, size=256)


pytestmark = pytest.mark.usefixtures("shared_cache")


def test_train_records_the_tier_and_predict_gives_a_photo_model_no_covariates(toy, tmp_path, monkeypatch):
    from benchmarks.predict import PredictInputError, load_predictor, samples_from_photos

    runner = CliRunner()
    photo_dir, weight_dir = tmp_path / "photo", tmp_path / "weight"
    res = runner.invoke(cli.main, ["train", str(toy), "--tier", "photo", "--out", str(photo_dir)])
    assert res.exit_code == 0, res.output
    assert "photo tier" in res.output
    meta = json.loads((photo_dir / "model.json").read_text())
    assert meta["tier"] == "photo" and meta["config"]["tier"] == "photo"
    assert json.loads((photo_dir / "run.json").read_text())["config"]["tier"] == "photo"
    res = runner.invoke(cli.main, ["train", str(toy), "--model", "tape", "--tier", "weight",
                                   "--out", str(tmp_path / "t")])
    assert res.exit_code != 0 and "basic" in res.output
    res = runner.invoke(cli.main, ["train", str(toy), "--tier", "basic", "--set", "xgb-features.tier=weight",
                                   "--out", str(tmp_path / "t")])
    assert res.exit_code == 2 and "--tier" in res.output
    # without --tier: no tier recorded, and predict asks for sex, age and height as before tiers
    res = runner.invoke(cli.main, ["train", str(toy), "--model", "covariates", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0 and json.loads((tmp_path / "c" / "model.json").read_text())["tier"] is None
    assert load_predictor(tmp_path / "c").tier is None

    pred = load_predictor(photo_dir)
    assert pred.tier == "photo"
    seen = []
    real = pred.model.predict_with_reasons

    def spy(X):
        seen.append(set(X.columns))
        return real(X)

    monkeypatch.setattr(pred.model, "predict_with_reasons", spy)
    lateral = toy / "images" / "T001_lateral.jpg"
    est = pred.estimate({"lateral": lateral}, sex="F", age=None, height_cm=None)  # a photo model needs sex only
    assert est.ok, est.reason
    assert seen and not seen[-1] & {"sex", "age", "height_cm", "weight_kg"}
    assert est.awgs_cutoff is not None  # sex still gives the cut-off
    with pytest.raises(PredictInputError, match="sex"):
        samples_from_photos({"lateral": lateral}, "lateral", sex=None, tier="photo")

    # a weight-tier model needs the weight: a clear refusal, never a traceback
    res = runner.invoke(cli.main, ["train", str(toy), "--tier", "weight", "--out", str(weight_dir)])
    assert res.exit_code == 0, res.output
    wpred = load_predictor(weight_dir)
    assert wpred.tier == "weight"
    est = wpred.estimate({"lateral": lateral}, sex="F", age=70, height_cm=158)
    assert est.status == "refused" and "weight" in est.reason and "basic" in est.reason
    with pytest.raises(PredictInputError, match="weight"):
        samples_from_photos({"lateral": lateral}, "lateral", sex="F", age=70, height_cm=158, tier="weight")
    res = runner.invoke(cli.main, ["predict", str(weight_dir), str(lateral), "--sex", "F", "--age", "70",
                                   "--height", "158", "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "--weight" in res.output
    res = runner.invoke(cli.main, ["predict", str(weight_dir), str(lateral), "--sex", "F", "--age", "70",
                                   "--height", "158", "--weight", "60", "--out", str(tmp_path / "p2")])
    assert res.exit_code == 0, res.output
    # a dataset row without a weight is refused with the reason; the others are estimated
    samples = samples_from_photos({"lateral": lateral}, "lateral", sex="F", age=70, height_cm=158, weight_kg=60)
    two = pd.concat([samples, samples.assign(sample_id="nw:lateral", weight_kg=np.nan)], ignore_index=True)
    out = wpred.predict(two, annotate=False)
    by_id = {e.sample_id: e for e in out.estimates}
    assert by_id[samples["sample_id"][0]].ok
    assert by_id["nw:lateral"].status == "refused" and "weight" in by_id["nw:lateral"].reason


def test_an_unknown_tier_in_model_json_is_refused():
    from benchmarks.predict import _model_tier
    from smi_data.modelfile import ModelFileError

    assert _model_tier({}) is None and _model_tier({"tier": "basic"}) == "basic"
    with pytest.raises(ModelFileError, match="tier"):
        _model_tier({"tier": "everything"})
