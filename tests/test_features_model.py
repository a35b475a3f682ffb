"""The features model: scikit-learn behaviour, feature groups, failures, model files, SHAP, commands."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from smi_data.manifest import read_manifest, to_samples
from smi_data.modelfile import ModelFileError
from smi_data.paths import STUDIO_COHORT
from smi_features.estimators import XGBFeaturesRegressor, feature_columns
from smi_features.modelio import BOOSTER_FILE, load_model, save_model

SMALL = {"n_estimators": 60}


pytestmark = pytest.mark.usefixtures("shared_cache")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from smi_data.toy import make_toy_dataset

    # These tests are about the model, so every photo must be measured (test_fit_predict_... checks it). The
    # learned segmenter, trained on rendered scenes and not on the toy's drawings, refuses a drawn leg here and
    # there (seed 5: T003 lateral "no leg"; 6: T011 knee out of frame; 9: two "blurred"; 10: one "no leg"). Since
    # `auto` keeps the learned mask where the classical one reaches outside it (session 6), seed 7 loses T001
    # posterior too (the learned mask stops short of the drawn foot: "does not reach the calf"), and of seeds
    # 7-14 only 11 draws twelve it measures whole. Refusing, not mismeasuring, is the behaviour the charter asks for.
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "toy", 12, seed=11, max_roll_deg=3.0)


@pytest.fixture(scope="module")
def both(toy):
    samples = to_samples(read_manifest(toy), "both")
    return samples.drop(columns=["smi"]), samples["smi"].to_numpy(float)


@pytest.fixture(scope="module")
def fitted(both, cache_env):
    X, y = both
    with cache_env():
        return XGBFeaturesRegressor(random_state=0, **SMALL).fit(X, y)


def test_is_a_scikit_learn_regressor(fitted):
    from sklearn.base import clone, is_regressor

    assert is_regressor(fitted)
    c = clone(fitted)
    assert c.get_params() == fitted.get_params() and not hasattr(c, "xgb_")
    assert {"random_state", "n_jobs", "feature_groups", "use_covariates"} <= set(c.get_params())


def test_fit_predict_and_same_seed_same_numbers(both, fitted):
    X, y = both
    p1 = fitted.predict(X)
    p2 = XGBFeaturesRegressor(random_state=0, **SMALL).fit(X, y).predict(X)
    assert p1.shape == (len(X),) and np.all(np.isfinite(p1))
    np.testing.assert_array_equal(p1, p2)
    assert np.mean(np.abs(p1 - y) / y) < 0.05  # training fit
    assert fitted.failures_ == {} and fitted.n_train_ == len(X)
    assert any(c.startswith("lat_") for c in fitted.feature_names_)
    assert any(c.startswith("post_") for c in fitted.feature_names_)
    # the tape's circumference duplicates the widths (pi x width, or the ellipse): not an input; nor is BMI
    assert "calf_circumference_cm" not in fitted.feature_names_ and "pair_calf_circ_cm" in fitted.feature_names_
    assert not any("bmi" in c for c in fitted.feature_names_)


def test_feature_groups_switch_columns(both):
    X, _ = both
    est = XGBFeaturesRegressor()
    table, _ = est.transform_features(X)
    width = feature_columns(table.columns, ("width",))
    assert "lat_calf_max_width_cm" in width and "pair_calf_circ_cm" in width
    assert not any(("area" in c or "curv" in c or c.startswith("cov_")) for c in width)
    cumulative = [len(feature_columns(table.columns, g)) for g in
                  (("width",), ("width", "area"), ("width", "area", "curvature"),
                   ("width", "area", "curvature", "covariates"))]
    assert cumulative == sorted(set(cumulative))  # each step adds columns
    no_cov = feature_columns(table.columns, ("width", "covariates"), use_covariates=False)
    assert not any(c.startswith("cov_") for c in no_cov)
    with pytest.raises(ValueError, match="unknown feature group"):
        feature_columns(table.columns, ("width", "colour"))


def test_tiers_decide_the_covariate_columns(both):
    X, y = both
    table, _ = XGBFeaturesRegressor().transform_features(X)
    photo = feature_columns(table.columns, ("width", "area", "covariates"), tier="photo")
    basic = feature_columns(table.columns, ("width", "area", "covariates"), tier="basic")
    weight = feature_columns(table.columns, ("width", "area", "covariates"), tier="weight")
    assert not any(c.startswith(("cov_", "idx_")) for c in photo)  # no height either: no indices
    assert {"cov_sex_male", "cov_age", "cov_height_cm"} <= set(basic) and "cov_weight_kg" not in basic
    assert "cov_weight_kg" in weight and set(basic) < set(weight)
    # a photo-tier model fitted on a table without any covariate column works and uses none
    est = XGBFeaturesRegressor(tier="photo", **SMALL).fit(X.drop(columns=["sex", "age", "height_cm"]), y)
    assert not any(c.startswith(("cov_", "idx_")) for c in est.feature_names_)
    with pytest.raises(ValueError, match="unknown tier"):
        feature_columns(table.columns, ("width",), tier="everything")


@pytest.mark.skipif(not (STUDIO_COHORT / "manifest.csv").is_file(), reason="bundled cohort missing")
def test_no_model_input_is_a_function_of_another_on_the_bundled_cohort():
    """Rank correlation 1 between two inputs means one is a monotone function of the other
    (calf_circumference_cm = pi x the calf width of a single view was one); SHAP would split
    their one effect between them. The phantom's shank length follows height (its body model
    scales the skeleton), a property of that cohort, not a derived column."""
    from smi_features.estimators import NOT_MODEL_INPUTS
    from smi_features.extractor import sample_features
    from smi_features.features import GROUPS

    cohort_artefacts = {frozenset({"lat_knee_ankle_length_cm", "cov_height_cm"}),
                        frozenset({"post_knee_ankle_length_cm", "cov_height_cm"}),
                        frozenset({"lat_knee_ankle_length_cm", "post_knee_ankle_length_cm"})}
    man = read_manifest(STUDIO_COHORT)
    for view in ("lateral", "both"):
        table, _ = sample_features(to_samples(man, view))
        cols = [c for c in feature_columns(table.columns, GROUPS, tier="weight") if table[c].notna().sum() > 10]
        r = table[cols].rank().corr().abs().to_numpy().copy()
        np.fill_diagonal(r, 0)
        pairs = {frozenset({cols[i], cols[j]}) for i, j in zip(*np.where(np.triu(r) > 0.99995))}
        assert not pairs - cohort_artefacts, (view, sorted(map(sorted, pairs - cohort_artefacts)))
        # the check would have caught the columns now left out
        left_out = table[["lat_calf_max_width_cm", NOT_MODEL_INPUTS[0]]].rank().corr().abs().iloc[0, 1]
        if view == "lateral":
            assert left_out > 0.99995


def test_failed_photo_gives_nan_and_a_reason(both, fitted, tmp_path):
    import cv2

    X, _ = both
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((256, 256, 3), 200, np.uint8))
    Xb = X.copy()
    Xb.loc[Xb.index[0], "image_lateral"] = str(blank)
    pred, reasons = fitted.predict_with_reasons(Xb)
    sid = Xb.loc[Xb.index[0], "sample_id"]
    assert np.isnan(pred[0]) and np.all(np.isfinite(pred[1:]))
    assert "no leg-shaped region" in reasons[sid]


def test_two_view_model_refuses_a_sample_without_its_posterior_photo(both, fitted):
    X, _ = both
    lateral_only = X.copy()
    lateral_only["image_posterior"] = None
    pred, reasons = fitted.predict_with_reasons(lateral_only)
    assert np.all(np.isnan(pred))
    assert all("no posterior photo" in why for why in reasons.values())


def test_single_view_model(toy):
    samples = to_samples(read_manifest(toy), "posterior")
    y = samples.pop("smi").to_numpy(float)
    est = XGBFeaturesRegressor(random_state=1, **SMALL).fit(samples, y)
    assert not any(c.startswith("lat_") or c.startswith("pair_") for c in est.feature_names_)
    assert np.all(np.isfinite(est.predict(samples)))


# ----------------------------------------------------------------------------- model files
def test_save_load_roundtrip(both, fitted, tmp_path):
    X, _ = both
    d = save_model(fitted, tmp_path / "m", extra_meta={"view": "both"})
    files = sorted(p.name for p in d.iterdir())
    assert files == sorted([BOOSTER_FILE, "model.json"])
    json.loads((d / BOOSTER_FILE).read_text())  # XGBoost's own JSON, not a pickle
    meta = json.loads((d / "model.json").read_text())
    assert meta["family"] == "features" and meta["feature_names"] == fitted.feature_names_
    loaded = load_model(d)
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    assert loaded.get_params() == fitted.get_params()


def test_linear_base_is_exact_json(fitted):
    from smi_features.estimators import LogLinearBase

    b = fitted.base_
    again = LogLinearBase.from_dict(json.loads(json.dumps(b.to_dict())))
    X = np.array([[1.0] * len(b.columns), [np.nan] * len(b.columns)])
    np.testing.assert_array_equal(again.predict(X), b.predict(X))
    np.testing.assert_allclose(b.intercept_ + b.contributions(X).sum(axis=1), b.predict(X))


def test_load_refuses_foreign_or_damaged_folders(fitted, tmp_path):
    d = save_model(fitted, tmp_path / "m")
    meta = json.loads((d / "model.json").read_text())
    bad = dict(meta, family="deep")
    (d / "model.json").write_text(json.dumps(bad))
    with pytest.raises(ModelFileError, match="family"):
        load_model(d)
    (d / "model.json").write_text(json.dumps(dict(meta, feature_names=meta["feature_names"][::-1])))
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(d)
    (d / "model.json").write_text(json.dumps(dict(meta, weights="../elsewhere.json")))
    with pytest.raises(ModelFileError, match="file name inside"):
        load_model(d)
    (d / "model.json").write_text(json.dumps(dict(meta, extraction={"silhouette": {"no_such_setting": 1}})))
    with pytest.raises(ModelFileError, match="extraction settings"):
        load_model(d)
    (d / "model.json").write_text(json.dumps(meta))
    (d / BOOSTER_FILE).unlink()
    with pytest.raises(ModelFileError, match="incomplete"):
        load_model(d)


# ----------------------------------------------------------------------------- SHAP
def test_treeexplainer_works_with_this_xgboost():
    import shap
    import xgboost

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X[:, 0] * 2 + rng.normal(0, 0.1, 40)
    model = xgboost.XGBRegressor(n_estimators=20, max_depth=2).fit(X, y)
    values = shap.TreeExplainer(model).shap_values(X)
    assert values.shape == (40, 3)
    assert np.abs(values[:, 0]).mean() > np.abs(values[:, 1:]).mean()


@pytest.mark.parametrize("linear_base", [True, False])
def test_shap_values_agree_with_xgboost_pred_contribs(both, fitted, linear_base):
    from smi_features.explain import shap_values, tree_shap_values, xgb_contributions

    X, y = both
    est = fitted if linear_base else XGBFeaturesRegressor(linear_base=False, **SMALL).fit(X, y)
    table, _ = est.transform_features(X)
    trees, _, M = tree_shap_values(est, table)
    contribs = xgb_contributions(est, M)
    np.testing.assert_allclose(trees, contribs[:, :-1], atol=1e-4)
    values, base, _ = shap_values(est, table)
    np.testing.assert_allclose(base + values.sum(axis=1), est.predict(X), atol=1e-4)
    assert (est.base_ is not None) == linear_base


def test_shap_summary_plot_from_a_sample_table(both, fitted, tmp_path):
    from smi_features.explain import shap_summary_plot

    X, _ = both
    for kind in ("beeswarm", "bar", "blocks"):
        out = shap_summary_plot(fitted, X, tmp_path / f"{kind}.png", kind=kind)
        assert out.stat().st_size > 5000


def test_grouped_shap_sums_each_family_and_keeps_the_total(both, fitted):
    from smi_features.explain import as_feature_table, grouped_shap, model_tier, shap_values

    X, _ = both
    values, base, _ = shap_values(fitted, as_feature_table(fitted, X))
    blocks, names = grouped_shap(values, list(fitted.feature_names_))
    np.testing.assert_allclose(blocks.sum(axis=1), values.sum(axis=1), atol=1e-9)
    assert "covariates" in names and "width profile" in names and "two-view (ellipse, volume)" in names
    cov = [i for i, n in enumerate(fitted.feature_names_) if n.startswith("cov_")]
    np.testing.assert_allclose(blocks[:, names.index("covariates")], values[:, cov].sum(axis=1))
    assert model_tier(fitted) == "weight" or model_tier(fitted) == "basic"


# ----------------------------------------------------------------------------- commands
@pytest.mark.slow
def test_features_train_explain_commands(toy, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import cli

    runner = CliRunner()
    out = tmp_path / "feats.csv"
    r = runner.invoke(cli.main, ["features", str(toy), "--out", str(out)])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out, keep_default_na=False, na_values=[""])
    # the marker is found in 23 of this seed's 24 drawings (also before the learned segmenter); the other is
    # measured at relative scale and says so
    assert len(table) == 24 and set(table["scale_mode"]) == {"marker", "relative"}
    assert (table["scale_mode"] == "marker").sum() == 23
    assert {"calf_max_width_cm", "failure", "silhouette_method", "calf_circumference_cm"} <= set(table.columns)
    r = runner.invoke(cli.main, ["features", str(toy), "--out", str(out)])
    assert r.exit_code != 0 and "exists" in r.output  # never overwritten silently
    model_dir = tmp_path / "model"
    X = to_samples(read_manifest(toy), "both")
    y = X.pop("smi").to_numpy(float)
    save_model(XGBFeaturesRegressor(**SMALL).fit(X, y), model_dir, extra_meta={"view": "both"})
    r = runner.invoke(cli.main, ["explain", str(model_dir), str(toy), "--out", str(tmp_path / "ex")])
    assert r.exit_code == 0, r.output
    names = {p.name for p in (tmp_path / "ex").iterdir()}
    assert {"shap_beeswarm.png", "shap_bar.png", "shap_values.csv", "shap_mean_abs.csv", "run.json",
            "shap_blocks.png", "shap_blocks.csv"} <= names
    assert "mean |SHAP| per block" in r.output and "tier model" in r.output
    attrib = pd.read_csv(tmp_path / "ex" / "shap_values.csv")
    feats = [c for c in attrib.columns if c not in ("sample_id", "subject_id", "view", "prediction", "base_value")]
    np.testing.assert_allclose(attrib["base_value"] + attrib[feats].sum(axis=1), attrib["prediction"], atol=1e-3)
    run = json.loads((tmp_path / "ex" / "run.json").read_text())
    assert run["status"] == "ok" and run["results"]["max_abs_diff_vs_xgboost_pred_contribs"] < 1e-4
