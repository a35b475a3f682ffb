"""The split-refit scheme (split scores, the model refit on everything) and the held-out floor."""

import json

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from smi_data.conformal import IntervalRegressor, held_out_subjects


class CountingLine(RegressorMixin, BaseEstimator):
    """Least squares y ~ x; remembers which subjects it was fit on."""

    def fit(self, X, y):
        A = np.c_[np.ones(len(X)), X["x"].to_numpy(float)]
        self.coef_ = np.linalg.lstsq(A, np.asarray(y, float), rcond=None)[0]
        self.seen_ = set(X["subject_id"])
        return self

    def predict(self, X):
        return self.coef_[0] + self.coef_[1] * X["x"].to_numpy(float)


def synthetic(n, rng, sd=0.3):
    x = rng.uniform(0, 5, n)
    X = pd.DataFrame({"subject_id": [f"S{i}" for i in range(n)], "sex": np.where(np.arange(n) % 2, "F", "M"),
                      "x": x, "reference_device": "BIA"})
    return X, 4 + 0.8 * x + rng.normal(0, sd, n)


def test_held_out_floor():
    assert held_out_subjects(80, 0.25) == 20
    assert held_out_subjects(80, 0.25, 24) == 24  # topped up so refused photos leave 19 scores
    assert held_out_subjects(40, 0.25, 24) == 20  # never more than half
    assert held_out_subjects(200, 0.25, 24) == 50


def test_refit_predicts_from_everything_and_keeps_the_split_scores():
    rng = np.random.default_rng(0)
    X, y = synthetic(100, rng)
    split = IntervalRegressor(CountingLine(), method="split", min_calibration_subjects=30, random_state=3).fit(X, y)
    refit = IntervalRegressor(CountingLine(), method="split-refit", min_calibration_subjects=30,
                              random_state=3).fit(X, y)
    assert len(split.estimator_.seen_) == 70 and split.calibration_.details["n_calibration_subjects"] == 30
    assert refit.estimator_.seen_ == set(X["subject_id"]) and refit.split_estimator_.seen_ == split.estimator_.seen_
    assert refit.calibration_.scores == split.calibration_.scores and refit.calibration_.method == "split-refit"
    assert refit.calibration_.details["refit_subjects"] == 100
    assert not np.allclose(refit.predict(X), split.predict(X))


def test_refit_coverage_on_a_regression_with_known_noise():
    """Averaged over 30 training sets of 80, the refit scheme covers at least nominally (its
    assumption: the full fit errs no more than the split fit) and within 3 points of it."""
    rng = np.random.default_rng(1)
    cov = []
    for rep in range(30):
        X, y = synthetic(80, rng)
        Xt, yt = synthetic(1000, rng)
        m = IntervalRegressor(CountingLine(), method="split-refit", normalise="none", mondrian="none",
                              min_calibration_subjects=24, random_state=rep).fit(X, y)
        iv = m.calibration_.intervals(m.predict(Xt), Xt["sex"], levels=(0.95,))[0.95]
        cov.append(np.mean((yt >= iv[:, 0]) & (yt <= iv[:, 1])))
    assert 0.94 <= np.mean(cov) <= 0.98, np.mean(cov)


def test_refit_model_saved_and_loaded(tmp_path, monkeypatch):
    """`train --intervals split-refit`: the model in the folder is the fit on everyone, its
    intervals.json says split-refit, and predict reads it back."""
    from click.testing import CliRunner

    import cli
    from benchmarks.registry import load_any_model
    from smi_data.conformal import load_calibration
    from smi_data.modelfile import read_model_meta
    from smi_data.toy import make_toy_dataset

    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(tmp_path / "cache"))
    ds = make_toy_dataset(tmp_path / "ds", 50, seed=6, views=("lateral",))
    runner = CliRunner()
    for method in ("split", "split-refit"):
        res = runner.invoke(cli.main, ["train", str(ds), "--model", "covariates", "--intervals", method,
                                       "--out", str(tmp_path / method)])
        assert res.exit_code == 0, res.output
    assert "then refit on all" in res.output
    saved = json.loads((tmp_path / "split-refit" / "intervals.json").read_text())
    assert saved["method"] == "split-refit" and saved["details"]["refit_subjects"] == 50
    cal = load_calibration(tmp_path / "split-refit", model_meta=read_model_meta(tmp_path / "split-refit"))
    split_cal = load_calibration(tmp_path / "split", model_meta=read_model_meta(tmp_path / "split"))
    assert cal.scores == split_cal.scores  # the same held-out people, the same scores
    from smi_data.manifest import read_manifest, to_samples

    X = to_samples(read_manifest(ds), "lateral")
    a = load_any_model(tmp_path / "split-refit").predict(X)
    b = load_any_model(tmp_path / "split").predict(X)
    assert not np.allclose(a, b)  # the folder holds the refit, not the split model
    res = runner.invoke(cli.main, ["predict", str(tmp_path / "split-refit"), str(ds / "images" / "T001_lateral.jpg"),
                                   "--sex", "F", "--age", "70", "--height", "158", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "95 % interval" in res.output


def test_benchmark_refit_gives_the_point_estimates_of_a_run_without_intervals(tmp_path, monkeypatch):
    """A slow-family model under `intervals='refit'` predicts from the whole training fold (the
    same numbers as without intervals) and still gets its split intervals; under 'auto' it
    predicts from the split model."""
    from benchmarks.harness import BenchmarkConfig, run_benchmark
    from benchmarks.registry import ModelSpec, get_spec
    from smi_data.toy import make_toy_dataset

    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(tmp_path / "cache"))
    ds = make_toy_dataset(tmp_path / "ds", 60, seed=8, views=("lateral",))
    cov = get_spec("covariates")
    slow = {"slow-line": ModelSpec("slow-line", "deep", cov.factory, cheap=False, views=("lateral",),
                                   tiers=("basic",), tier_setup=cov.tier_setup)}
    preds = {}
    for mode in ("refit", "auto", False):
        cfg = BenchmarkConfig(dataset=str(ds), out=str(tmp_path / f"run-{mode}"), models=["slow-line"],
                              views="lateral", folds=3, progress=False, ceiling=False, report=False,
                              intervals=mode)
        p = run_benchmark(cfg, specs=slow)["predictions"].sort_values("sample_id")
        preds[mode] = p
    assert np.allclose(preds["refit"]["y_pred"], preds[False]["y_pred"])
    assert not np.allclose(preds["auto"]["y_pred"], preds[False]["y_pred"])
    for mode in ("refit", "auto"):
        assert preds[mode]["lo95"].notna().all()  # 20 of 40 training people held out: intervals in every fold


def test_schemes_per_family():
    from benchmarks.calibration import scheme_for

    assert scheme_for("features") == ("cv", {"n_splits": 10})
    assert scheme_for("baseline") == ("cv", {"n_splits": 5})
    assert scheme_for("deep") == ("split", {"calibration_fraction": 0.25, "min_calibration_subjects": 24})
    assert scheme_for("deep", "refit")[0] == "split-refit" and scheme_for("features", "refit")[0] == "cv"
    assert scheme_for("features", "split-refit")[0] == "split-refit"


def test_cv_with_fewer_subjects_than_folds_leaves_one_out():
    rng = np.random.default_rng(2)
    X, y = synthetic(8, rng)
    m = IntervalRegressor(CountingLine(), method="cv", n_splits=10, random_state=0).fit(X, y)
    assert m.calibration_ is None and "at least 19" in m.calibration_error_  # 8 scores: fitted, no intervals
    X, y = synthetic(24, rng)
    m = IntervalRegressor(CountingLine(), method="cv", n_splits=30, random_state=0).fit(X, y)
    assert m.calibration_.details["n_splits"] == 24
