"""Conformal prediction intervals: coverage on data of known noise, the screening rule, save and load."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from smi_data.conformal import (Calibration, CalibrationError, IntervalRegressor, calibrate, load_calibration,
                                min_scores, save_calibration, screening_result)


class LineOnX(RegressorMixin, BaseEstimator):
    """Least squares y ~ x on a sample table's ``x`` column."""

    def fit(self, X, y):
        A = np.c_[np.ones(len(X)), X["x"].to_numpy(float)]
        self.coef_ = np.linalg.lstsq(A, np.asarray(y, float), rcond=None)[0]
        self.failures_ = {}
        return self

    def predict(self, X):
        return self.coef_[0] + self.coef_[1] * X["x"].to_numpy(float)


def synthetic(n, rng, noise="constant", sd=0.5):
    """y = 4 + 0.8 x + e, x ~ U(0, 5); e ~ N(0, sd) or N(0, sd * y / 6) (relative)."""
    x = rng.uniform(0, 5, n)
    mu = 4 + 0.8 * x
    e = rng.normal(0, sd, n) * (mu / 6 if noise == "relative" else 1.0)
    sex = np.where(np.arange(n) % 2 == 0, "M", "F")
    X = pd.DataFrame({"subject_id": [f"S{i}" for i in range(n)], "sex": sex, "x": x,
                      "reference_device": "BIA"})
    return X, mu + e


def coverage(model, X, y, level):
    iv = model.calibration_.intervals(model.predict(X), X["sex"], levels=(level,))[level]
    return float(np.mean((y >= iv[:, 0]) & (y <= iv[:, 1]))), float(np.median(iv[:, 1] - iv[:, 0]))


def expected_coverage(n, level, rule):
    """Average coverage of the k-th smallest of n exchangeable scores: k / (n + 1)."""
    import math

    k = math.floor(level * (n + 1) + 0.5) if rule == "midpoint" else math.ceil(level * (n + 1) - 1e-9)
    return k / (n + 1)


@pytest.mark.parametrize("method,rule", [("cv", "midpoint"), ("split", "midpoint"), ("split", "conservative")])
def test_coverage_is_nominal_on_a_regression_with_known_noise(method, rule):
    """Averaged over 25 training sets of 120 people (test sets of 2000 each), coverage is within
    sampling error of what the rule promises on average, k / (n + 1) for the k-th smallest of n
    scores (the SD of a conformal interval's coverage over calibration sets is about
    sqrt(c(1-c)/n_cal): 0.04 for 30 scores at 95 %, so 25 draws give about ±0.008; we allow
    0.02): 30 pooled split scores give 93.5 % (midpoint) or 96.8 % (conservative) at 95 %, the
    cross-conformal 60 per sex 95.1 %. The 95 % interval is about 2 x 1.96 x sigma wide."""
    rng = np.random.default_rng(0)
    cov = {0.90: [], 0.95: []}
    widths = []
    for rep in range(25):
        X, y = synthetic(120, rng)
        Xt, yt = synthetic(2000, rng)
        m = IntervalRegressor(LineOnX(), method=method, normalise="none", random_state=rep, rule=rule).fit(X, y)
        n = min(len(v) for v in m.calibration_.scores.values())
        for level in cov:
            c, w = coverage(m, Xt, yt, level)
            cov[level].append(c)
            if level == 0.95:
                widths.append(w)
    for level, vals in cov.items():
        want = expected_coverage(n, level, rule)
        assert abs(np.mean(vals) - want) < 0.02, (method, rule, level, np.mean(vals), want)
        assert abs(want - level) <= (0.5 if rule == "midpoint" else 1.0) / (n + 1) + 1e-9
    assert 0.85 * 2 * 1.96 * 0.5 < np.median(widths) < 1.25 * 2 * 1.96 * 0.5


def test_relative_normalisation_covers_small_and_large_values_alike():
    """With noise proportional to the target, relative scores keep coverage in both halves;
    constant-width intervals over-cover the small values and under-cover the large ones."""
    rng = np.random.default_rng(1)
    X, y = synthetic(400, rng, noise="relative", sd=0.6)
    Xt, yt = synthetic(6000, rng, noise="relative", sd=0.6)
    high = yt > np.median(yt)
    res = {}
    for norm in ("relative", "none"):
        m = IntervalRegressor(LineOnX(), method="cv", normalise=norm, random_state=0).fit(X, y)
        iv = m.calibration_.intervals(m.predict(Xt), Xt["sex"], levels=(0.9,))[0.9]
        inside = (yt >= iv[:, 0]) & (yt <= iv[:, 1])
        res[norm] = (inside[~high].mean(), inside[high].mean())
    assert abs(res["relative"][0] - res["relative"][1]) < 0.03
    assert res["none"][0] - res["none"][1] > 0.03


def test_probability_below_a_threshold_is_calibrated():
    rng = np.random.default_rng(2)
    X, y = synthetic(300, rng)
    Xt, yt = synthetic(5000, rng)
    m = IntervalRegressor(LineOnX(), method="cv", normalise="none", random_state=0).fit(X, y)
    pred = m.predict(Xt)
    p = m.calibration_.prob_below(pred, 6.0, Xt["sex"])
    assert np.all((p > 0) & (p < 1))
    # monotone in the threshold, and on average equal to the frequency of y below it
    assert np.all(m.calibration_.prob_below(pred, 6.5, Xt["sex"]) >= p)
    assert abs(p.mean() - np.mean(yt < 6.0)) < 0.02
    band = (p > 0.2) & (p < 0.5)
    assert band.sum() > 100 and abs(np.mean(yt[band] < 6.0) - p[band].mean()) < 0.06


def test_indeterminate_rule_at_the_edge_of_the_cut_off():
    cut = 5.7
    lo = np.array([5.0, 5.0, 5.7, 5.7 - 1e-9, 5.2, np.nan])
    hi = np.array([5.7 - 1e-9, 5.7, 6.4, 6.4, 5.6, 6.0])
    assert screening_result(lo, hi, cut).tolist() == ["low", "indeterminate", "not low", "indeterminate",
                                                      "low", ""]
    # the same rule through a calibration (numbers exact in binary): scores of +-0.5 give estimate +-0.5
    scores = np.r_[np.full(20, -0.5), np.full(20, 0.5)].tolist()
    cal = Calibration("cv", "none", "none", "none", {"all": scores})
    t = cal.table([6.5 - 1e-6, 6.5, 7.5 - 1e-6, 7.5], ["M"] * 4)
    assert t["hi95"].iloc[1] == 7.0 and t["lo95"].iloc[3] == 7.0
    assert t["screening"].tolist() == ["low", "indeterminate", "indeterminate", "not low"]
    assert t["awgs_cutoff"].tolist() == [7.0] * 4
    # P(below) falls as the estimate rises: near 1 for the low one, near 0 well above the cut-off
    assert t["p_low"].iloc[0] > 0.95 and np.all(np.diff(t["p_low"]) <= 0)
    assert cal.prob_below([7.6], 7.0, ["M"])[0] < 0.05


def test_too_few_scores_and_pooled_bins():
    assert min_scores(0.95) == 19 and min_scores(0.90) == 9
    rng = np.random.default_rng(3)
    with pytest.raises(CalibrationError, match="at least 19"):
        calibrate(rng.normal(size=18), np.zeros(18), ["M", "F"] * 9, method="cv")
    cal = calibrate(rng.normal(size=30) + 6, np.full(30, 6.0), ["M", "F"] * 15, method="cv")
    assert cal.bins_used == "none" and cal.mondrian == "sex"  # 15 per sex: too few for Mondrian
    cal = calibrate(rng.normal(size=40) + 6, np.full(40, 6.0), ["M", "F"] * 20, method="cv")
    assert cal.bins_used == "sex" and set(cal.scores) == {"M", "F"}


def _covariates_model(tmp_path, n=40):
    from benchmarks.baselines import CovariatesRegressor, save_model
    from smi_data.modelfile import read_model_meta
    from smi_data.toy import sample_toy_subjects

    subj = sample_toy_subjects(n, seed=4)
    X = subj[["subject_id", "sex", "age", "height_cm"]].assign(sample_id=subj["subject_id"] + ":lateral",
                                                              view="lateral", reference_device="BIA")
    m = IntervalRegressor(CovariatesRegressor(), method="cv", random_state=0).fit(X, subj["smi"].to_numpy())
    d = tmp_path / "model"
    save_model(m.estimator_, d, extra_meta={"view": "lateral", "model_name": "covariates",
                                            "intervals": "intervals.json"})
    save_calibration(m.calibration_, d, model_meta=read_model_meta(d))
    return m, X, d


def test_interval_numbers_survive_save_and_load(tmp_path):
    from benchmarks.predict import load_predictor
    from benchmarks.registry import load_any_model
    from smi_data.modelfile import read_model_meta

    m, X, d = _covariates_model(tmp_path)
    saved = json.loads((d / "intervals.json").read_text())
    assert saved["format"] == "legsmi-intervals" and saved["method"] == "cv" and saved["bins_used"] == "sex"
    cal = load_calibration(d, model_meta=read_model_meta(d))
    assert cal.scores == m.calibration_.scores
    before = m.predict_table(X)
    loaded = load_any_model(d)
    after = cal.table(loaded.predict(X), X["sex"], X["reference_device"])
    pd.testing.assert_frame_equal(before.drop(columns="smi_pred"), after)
    # predict (the library behind the command and the app) reports the same numbers
    res = load_predictor(d).predict(X)
    assert np.allclose(res.table["interval_95_low"], before["lo95"])
    assert np.allclose(res.table["p_low"], before["p_low"])
    assert (res.table["screening"] == before["screening"]).all()


def test_damaged_or_foreign_interval_files_are_refused(tmp_path):
    from benchmarks.predict import load_predictor
    from smi_data.modelfile import ModelFileError, read_model_meta

    _, _, d = _covariates_model(tmp_path)
    path = d / "intervals.json"
    good = json.loads(path.read_text())

    def refused(mutate, match):
        bad = json.loads(json.dumps(good))
        mutate(bad)
        path.write_text(json.dumps(bad))
        with pytest.raises(CalibrationError, match=match):
            load_calibration(d, model_meta=read_model_meta(d))
        with pytest.raises(ModelFileError):
            load_predictor(d)

    refused(lambda b: b["scores"]["M"].__setitem__(0, "x"), "finite numbers")
    refused(lambda b: b["scores"].__setitem__("M", b["scores"]["M"][:5]), "at least 19")
    refused(lambda b: b.__setitem__("method", "magic"), "method")
    refused(lambda b: b["model"].__setitem__("created", "2020-01-01T00:00:00Z"), "different trainings")
    refused(lambda b: b.__setitem__("format_version", 99), "version")
    path.unlink()
    with pytest.raises(CalibrationError, match="missing"):
        load_calibration(d, model_meta=read_model_meta(d))


def test_train_then_predict_prints_intervals_and_screening(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import cli
    from smi_data.toy import make_toy_dataset

    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(tmp_path / "cache"))
    ds = make_toy_dataset(tmp_path / "ds", 24, seed=6, views=("lateral",))
    runner = CliRunner()
    res = runner.invoke(cli.main, ["train", str(ds), "--model", "covariates", "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert "prediction intervals: cross-conformal, 5 folds" in res.output and "men and women pooled" in res.output
    assert (tmp_path / "m" / "intervals.json").is_file()
    res = runner.invoke(cli.main, ["predict", str(tmp_path / "m"), str(ds / "images" / "T001_lateral.jpg"),
                                   "--sex", "F", "--age", "70", "--height", "158", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "95 % interval" in res.output and "P(SMI < 5.7)" in res.output
    pred = pd.read_csv(tmp_path / "p" / "predictions.csv")
    r = pred.iloc[0]
    assert r["interval_95_low"] < r["interval_90_low"] < r["smi_pred"] < r["interval_90_high"] < r["interval_95_high"]
    assert r["screening"] in ("low", "not low", "indeterminate") and 0 < r["p_low"] < 1
    assert r["screening"] in res.output
    # --intervals none: no file, and predict says nothing about intervals
    res = runner.invoke(cli.main, ["train", str(ds), "--model", "covariates", "--intervals", "none",
                                   "--out", str(tmp_path / "m2")])
    assert res.exit_code == 0 and not (tmp_path / "m2" / "intervals.json").exists()
    # too few people for a 95 % interval: trained, without intervals, and told why
    small = make_toy_dataset(tmp_path / "small", 12, seed=6, views=("lateral",))
    res = runner.invoke(cli.main, ["train", str(small), "--model", "covariates", "--out", str(tmp_path / "m3")])
    assert res.exit_code == 0 and "no prediction intervals" in res.output and "at least 19" in res.output


def test_benchmark_measures_calibration(tmp_path, monkeypatch):
    from benchmarks.calibration import calibration_table, coverage_curve
    from benchmarks.harness import BenchmarkConfig, run_benchmark
    from smi_data.toy import make_toy_dataset

    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(tmp_path / "cache"))
    ds = make_toy_dataset(tmp_path / "ds", 40, seed=8, views=("lateral",))
    cfg = BenchmarkConfig(dataset=str(ds), out=str(tmp_path / "run"), models=["mean", "covariates"], views="lateral",
                          folds=4, progress=False, ceiling=False)
    res = run_benchmark(cfg)
    out = tmp_path / "run"
    cal = pd.read_csv(out / "calibration.csv")
    assert set(cal["model"]) == {"mean", "covariates"} and set(cal["sex"]) == {"all", "M", "F"}
    row = cal[(cal["model"] == "covariates") & (cal["sex"] == "all")].iloc[0]
    assert row["n"] == 40 and 0.7 <= row["coverage_95"] <= 1 and row["width_95"] > row["width_90"] > 0
    assert 0 <= row["indeterminate"] <= 1
    p = res["predictions"]
    assert {"lo95", "hi95", "p_low", "screening", "p_true"} <= set(p.columns)
    # the p-values of the true SMI give the same coverage as the interval bounds
    curve = coverage_curve(p)
    at95 = curve[(curve["model"] == "covariates") & (curve["nominal"] == 0.95)]["empirical"].iloc[0]
    assert abs(at95 - row["coverage_95"]) <= 0.03
    report = (out / "report.md").read_text()
    assert "## Prediction intervals: calibration" in report and "## Prediction intervals: targets" in report
    assert (out / "plots" / "calibration.png").is_file()
    assert any("95 % interval coverage" in ln for ln in res["calibration_targets"])
    # intervals off: no interval columns, no calibration file
    cfg.out, cfg.intervals = str(tmp_path / "run2"), False
    res2 = run_benchmark(cfg)
    assert "lo95" not in res2["predictions"].columns and not (tmp_path / "run2" / "calibration.csv").exists()
    assert calibration_table(res2["predictions"]).empty
    # the point estimates do not change with intervals on (cross-conformal predicts with the full model)
    a = p.sort_values(["model", "sample_id"])["y_pred"].to_numpy()
    b = res2["predictions"].sort_values(["model", "sample_id"])["y_pred"].to_numpy()
    assert np.allclose(a, b)
