"""smi_deep.hybrid: ridge on the covariates + a CNN on its residual (cnn-hybrid)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402

from smi_data.manifest import read_manifest, to_samples  # noqa: E402
from smi_data.modelfile import ModelFileError  # noqa: E402
from smi_data.toy import make_toy_dataset  # noqa: E402
from smi_deep.hybrid import HybridCNNRegressor, base_design  # noqa: E402
from smi_deep.modelio import load_model, save_model  # noqa: E402

FAST = dict(image_size=48, epochs=4, batch_size=8, n_threads=1)


@pytest.fixture(scope="module")
def lateral(tmp_path_factory):
    # seed 3: every drawing cropped (seed 1's learned masks of four drawings have soft outlines: "blurred")
    d = make_toy_dataset(tmp_path_factory.mktemp("toyh") / "toy", n_subjects=12, seed=3, size=256)
    s = to_samples(read_manifest(d), "lateral")
    return s.drop(columns=["smi"]), s["smi"].to_numpy(float)


@pytest.fixture(scope="module")
def fitted(lateral):
    X, y = lateral
    return HybridCNNRegressor(**FAST, random_state=2).fit(X, y)


def test_ridge_matches_sklearn_and_zero_residual_is_the_ridge(fitted, lateral):
    X, y = lateral
    cols = fitted.base_columns_
    assert cols[:3] == ("sex_male", "age", "height_cm")
    Z = base_design(X, cols)
    Zs = (Z - Z.mean(axis=0)) / Z.std(axis=0)
    ref = Ridge(alpha=fitted.ridge_alpha).fit(Zs, y).predict(Zs)
    assert np.allclose(fitted.predict_base(X), ref, atol=1e-9)
    zeroed = clone(fitted).set_params(residual_scale=0.0)
    zeroed.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    assert np.allclose(zeroed.predict(X), ref, atol=1e-9)
    # with the CNN on, the prediction is the ridge plus the CNN's residual, which is not zero
    resid = fitted.predict_residual(X)
    assert np.allclose(fitted.predict(X), ref + resid, atol=1e-9)
    assert np.abs(resid).max() > 1e-4


def test_bmi_and_weight_when_present(lateral):
    X, _ = lateral
    assert "weight_kg" in X.columns
    Z = base_design(X.iloc[:1], ("weight_kg", "bmi"))
    w, h = float(X["weight_kg"].iloc[0]), float(X["height_cm"].iloc[0]) / 100
    assert Z[0, 0] == w and np.isclose(Z[0, 1], w / h ** 2)
    assert HybridCNNRegressor(use_weight=False)._base_columns(X) == ("sex_male", "age", "height_cm")
    # weight joins the ridge, BMI (a function of weight and height) does not
    assert HybridCNNRegressor()._base_columns(X) == ("sex_male", "age", "height_cm", "weight_kg")


def test_save_load_round_trip(fitted, lateral, tmp_path):
    X, _ = lateral
    save_model(fitted, tmp_path / "m", extra_meta={"view": "lateral"})
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["model"] == "cnn-hybrid"
    hyb = meta["deep"]["hybrid"]
    assert hyb["columns"] == list(fitted.base_columns_)
    assert all(isinstance(v, float) for v in hyb["coef"])
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, HybridCNNRegressor)
    assert np.array_equal(loaded.predict(X), fitted.predict(X))
    assert clone(loaded).get_params() == fitted.get_params()
    # a damaged ridge section is refused, not guessed
    p = tmp_path / "m" / "model.json"
    hyb["coef"] = hyb["coef"][:-1]
    p.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(tmp_path / "m")


def test_missing_covariate_gives_nan_and_reason(fitted, lateral):
    X, _ = lateral
    X = X.copy()
    X.loc[X.index[0], "age"] = np.nan
    pred, reasons = fitted.predict_with_reasons(X)
    assert np.isnan(pred[0]) and np.all(np.isfinite(pred[1:]))
    assert "covariate" in reasons[str(X["sample_id"].iloc[0])]


def test_registered_and_in_the_cli_list():
    from benchmarks.registry import DEFAULT_MODELS, make_model

    m = make_model("cnn-hybrid", random_state=5, input_mode="mask")
    assert isinstance(m, HybridCNNRegressor) and m.random_state == 5 and m.variant == "cnn-lite"
    assert "cnn-hybrid" not in DEFAULT_MODELS
