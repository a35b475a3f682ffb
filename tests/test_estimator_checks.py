"""The features model's pipeline pieces against scikit-learn's own estimator checks.

The numeric regressor (:class:`LogLinearBoostRegressor`) gets the full
``parametrize_with_checks`` battery. The selector and the sample-table wrapper take a
feature table or a sample table with photo paths, not an arbitrary array, so they get the
checks that need no data (construction, parameters, clone, repr) and our own checks of the
same contracts on a feature table (numbers out, names out, ``transform``/``predict`` leave
the fitted estimator's ``__dict__`` unchanged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import parametrize_with_checks

from smi_features.estimators import (FeatureSelector, LogLinearBoostRegressor, XGBFeaturesRegressor,
                                     features_pipeline)

SMALL = {"n_estimators": 20, "learning_rate": 0.3}


# default on an unnamed array: no named core column, so the plain booster; "all": base + trees
@parametrize_with_checks([LogLinearBoostRegressor(**SMALL), LogLinearBoostRegressor(base_columns="all", **SMALL)])
def test_numeric_regressor_passes_sklearn_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", [FeatureSelector(), XGBFeaturesRegressor()], ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", [ec.check_parameters_default_constructible, ec.check_no_attributes_set_in_init,
                                   ec.check_get_params_invariance, ec.check_set_params, ec.check_estimator_repr,
                                   ec.check_estimator_cloneable, ec.check_do_not_raise_errors_in_init_or_set_params],
                         ids=lambda c: c.__name__)
def test_table_estimators_pass_the_data_free_checks(estimator, check):
    check(type(estimator).__name__, estimator)


def _feature_table(n=40, seed=0):
    """A feature table as sample_features writes it: ids and text meta beside numeric features."""
    rng = np.random.default_rng(seed)
    calf = rng.normal(11.5, 1.0, n)
    t = pd.DataFrame({
        "sample_id": [f"S{i}" for i in range(n)], "lat_scale_mode": "marker", "failure": "",
        "lat_calf_max_width_cm": calf, "lat_ankle_min_width_cm": rng.normal(6.0, 0.5, n),
        "lat_calf_max_level_frac": rng.uniform(0.2, 0.4, n), "lat_knee_ankle_length_cm": rng.normal(38, 2, n),
        "lat_solidity": rng.uniform(0.9, 1.0, n), "lat_curv_mean_per_cm": np.nan,
        "cov_sex_male": rng.integers(0, 2, n).astype(float), "cov_age": rng.uniform(20, 80, n),
        "cov_height_cm": rng.normal(170, 8, n), "cov_weight_kg": rng.normal(70, 10, n),
        "calf_circumference_cm": np.pi * calf,
    })
    y = 0.5 * calf + 0.02 * t["cov_weight_kg"] + rng.normal(0, 0.1, n)
    return t, y.to_numpy()


def test_selector_outputs_numbers_with_names():
    table, y = _feature_table()
    sel = FeatureSelector().fit(table, y)
    out = sel.transform(table)
    assert out.dtype == float and out.shape == (len(table), len(sel.feature_names_))
    names = list(sel.get_feature_names_out())
    assert names == sel.feature_names_
    # text columns, the all-NaN column and the tape's duplicate circumference are not inputs
    assert not {"sample_id", "lat_scale_mode", "failure", "lat_curv_mean_per_cm", "calf_circumference_cm"} & set(names)
    assert "lat_calf_max_width_cm" in names and "cov_weight_kg" in names
    assert "cov_weight_kg" not in FeatureSelector(tier="basic").fit(table).feature_names_
    with pytest.raises(TypeError, match="feature table"):
        sel.transform(table.to_numpy())


def test_pipeline_composes_and_predict_leaves_the_fitted_state_alone():
    table, y = _feature_table()
    pipe = features_pipeline(**SMALL).fit(table, y)
    model = pipe["model"]
    # the regressor sees the selector's names, so its linear base uses the named core columns
    assert list(model.feature_names_in_) == pipe["select"].feature_names_
    assert set(model.base_.columns) <= set(model.feature_names_in_) and "lat_solidity" not in model.base_.columns
    before = {k: repr(v) for k, v in model.__dict__.items()}, {k: repr(v) for k, v in pipe["select"].__dict__.items()}
    p = pipe.predict(table)
    after = {k: repr(v) for k, v in model.__dict__.items()}, {k: repr(v) for k, v in pipe["select"].__dict__.items()}
    assert before == after and np.isfinite(p).all()
    # an ablation is a set_params on the pipeline
    width_only = clone(pipe).set_params(select__feature_groups=("width",)).fit(table, y)
    assert not any(c.startswith("cov_") for c in width_only["select"].feature_names_)


def test_wrapper_is_the_pipeline_on_the_feature_table():
    """fit_table/predict_table give exactly the pipeline's numbers, failed rows as NaN."""
    table, y = _feature_table()
    est = XGBFeaturesRegressor(**SMALL).fit_table(table, y, failures={"S3": "no leg found"})
    pipe = features_pipeline(**SMALL).fit(table.drop(index=3), np.delete(y, 3))
    p = est.predict_table(table, {"S3": "no leg found"})
    assert np.isnan(p[3])
    np.testing.assert_array_equal(np.delete(p, 3), pipe.predict(table.drop(index=3)))
    assert est.feature_names_ == pipe["select"].feature_names_ and est.n_train_ == len(table) - 1


def test_make_pipeline_from_photos_equals_the_features_model(tmp_path, monkeypatch):
    """The review's example composes: extractor (photos -> feature table), selector (numbers), regressor;
    with every photo measured it gives exactly XGBFeaturesRegressor's predictions."""
    from sklearn.pipeline import make_pipeline

    from smi_data.manifest import read_manifest, to_samples
    from smi_data.toy import make_toy_dataset
    from smi_features.extractor import LegFeatureExtractor

    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(tmp_path / "cache"))
    # seed 11: twelve drawings the learned segmenter measures whole (as in tests/test_features_model.py)
    samples = to_samples(read_manifest(make_toy_dataset(tmp_path / "toy", 12, seed=11, max_roll_deg=3.0)), "both")
    X, y = samples.drop(columns=["smi"]), samples["smi"].to_numpy(float)
    pipe = make_pipeline(LegFeatureExtractor(), FeatureSelector().set_output(transform="pandas"),
                         LogLinearBoostRegressor(**SMALL))
    p = pipe.fit(X, y).predict(X)
    est = XGBFeaturesRegressor(**SMALL).fit(X, y)
    assert est.failures_ == {} and np.isfinite(p).all()
    np.testing.assert_array_equal(p, est.predict(X))
    # predict leaves the fitted estimator alone (scikit-learn's check_dict_unchanged), also where it
    # refuses a sample: the reason comes back from predict_with_reasons
    import joblib

    before = joblib.hash(est.__dict__)
    Xb = X.copy()
    Xb.loc[Xb.index[0], "image_lateral"] = str(tmp_path / "missing.jpg")
    pred, reasons = est.predict_with_reasons(Xb)
    assert np.isnan(pred[0]) and list(reasons) == [str(Xb["sample_id"].iloc[0])]
    np.testing.assert_array_equal(est.predict(Xb), pred)
    assert joblib.hash(est.__dict__) == before and est.failures_ == {}
