"""Benchmark harness: metric aggregation, leakage, failures, determinism, baselines, registry.

These tests use a manifest-only dataset (no images are opened by the models used here),
so they take a few seconds. The end-to-end run on drawn photos is in
test_benchmark_e2e.py.
"""

from __future__ import annotations

import json
import math

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin, clone

from benchmarks import aggregate, registry
from benchmarks.baselines import CovariatesRegressor, MeanRegressor, TapeRegressor, load_model, save_model
from benchmarks.harness import (BenchmarkConfig, BenchmarkError, Task, check_folds, fold_seed, parse_overrides,
                                parse_views, plan_views, run_benchmark, run_task, subsample_subjects)
from benchmarks.registry import ModelSpec


# --------------------------------------------------------------------------- helpers
def write_dataset(root, n_subjects=20, seed=0):
    """A manifest-only dataset: both views per subject, SMI linked to sex and height."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_subjects):
        sex = "M" if i % 2 == 0 else "F"
        height = rng.normal(170 if sex == "M" else 157, 6)
        age = float(rng.uniform(20, 60))
        smi = (7.5 if sex == "M" else 6.0) + 0.03 * (height - 164) + rng.normal(0, 0.4)
        for view in ("lateral", "posterior"):
            rows.append({"subject_id": f"S{i:03d}", "view": view, "image": f"images/S{i:03d}_{view}.jpg",
                         "sex": sex, "age": round(age, 1), "height_cm": round(height, 1), "smi": round(smi, 3),
                         "reference_device": "BIA", "site": f"clinic{i % 3}"})
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


class SubjectMemoriser(RegressorMixin, BaseEstimator):
    """Remembers each training subject's SMI; anyone else gets the training mean.

    If any test subject reached training, this model would beat the mean predictor.
    """

    def fit(self, X, y):
        self.table_ = dict(zip(X["subject_id"].astype(str), np.asarray(y, float)))
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.array([self.table_.get(str(s), self.mean_) for s in X["subject_id"]], dtype=float)


class LabelReader(RegressorMixin, BaseEstimator):
    """Cheats by reading the label from X at predict time (the harness must not let it)."""

    def fit(self, X, y):
        return self

    def predict(self, X):
        return X["smi"].to_numpy(dtype=float)


class HalfFails(RegressorMixin, BaseEstimator):
    """Predicts the mean, but NaN (with a reason) for women."""

    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return self.predict_with_reasons(X)[0]

    def predict_with_reasons(self, X):
        women = (X["sex"] == "F").to_numpy()
        return np.where(women, np.nan, self.mean_), {s: "no leg found" for s in X.loc[women, "sample_id"]}


class FitCrash(RegressorMixin, BaseEstimator):
    def fit(self, X, y):
        raise RuntimeError("out of cheese")


class Noisy(RegressorMixin, BaseEstimator):
    """The mean plus seeded noise: the seed must decide its numbers."""

    def __init__(self, random_state=0):
        self.random_state = random_state

    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        rng = np.random.default_rng(self.random_state)
        return self.mean_ + rng.normal(0, 0.3, len(X))


def spec(name, cls, seeded=False):
    factory = (lambda random_state=0, **kw: cls(random_state=random_state, **kw)) if seeded else \
        (lambda random_state=0, **kw: cls(**kw))
    return ModelSpec(name, "test", factory, name)


SPECS = {"memo": spec("memo", SubjectMemoriser), "cheat": spec("cheat", LabelReader),
         "halffail": spec("halffail", HalfFails), "crash": spec("crash", FitCrash),
         "noisy": spec("noisy", Noisy, seeded=True)}


def bench(tmp_path, dataset, models, name="run", seed=0, **kw):
    cfg = BenchmarkConfig(dataset=str(dataset), out=str(tmp_path / name), models=models, folds=4, seed=seed,
                          progress=False, **kw)
    return run_benchmark(cfg, specs=SPECS)


# --------------------------------------------------------------------------- aggregation
def hand_predictions():
    rows = []
    # fold 0: errors 0.5/5 and 0.8/8 -> MAPE 100/4*(0.1+0.1) = 5.0
    for t, p, s in ((5, 5.5, "M"), (6, 6, "F"), (7, 7, "M"), (8, 7.2, "F")):
        rows.append({"model": "a", "view": "lateral", "repeat": 0, "fold": 0, "sex": s, "y_true": t, "y_pred": p})
    # fold 1: errors 0.6/6 and 0.7/7 -> MAPE 10.0; one failed prediction
    for t, p, s in ((6, 6.6, "M"), (7, 6.3, "F"), (6.5, np.nan, "F")):
        rows.append({"model": "a", "view": "lateral", "repeat": 0, "fold": 1, "sex": s, "y_true": t, "y_pred": p})
    return pd.DataFrame(rows)


def test_metrics_per_fold_and_pooled_match_hand_values():
    m = aggregate.compute_metrics(hand_predictions())
    row = lambda fold, sex="all": m[(m["fold"] == fold) & (m["sex"] == sex)].iloc[0]  # noqa: E731
    assert row("0")["mape"] == pytest.approx(5.0)
    assert row("0")["mae"] == pytest.approx((0.5 + 0.8) / 4)
    assert row("0")["rmse"] == pytest.approx(math.sqrt((0.25 + 0.64) / 4))
    assert row("1")["mape"] == pytest.approx(10.0)
    assert row("1")["n"] == 2 and row("1")["n_failed"] == 1
    # Lin's CCC, 1/n moments: x = (6, 7), y = (6.6, 6.3): s_xy = -0.075, s_x^2 = 0.25, s_y^2 = 0.0225, (dx)^2 = 0.0025
    assert row("1")["ccc"] == pytest.approx(-0.15 / 0.275)
    pooled = row("pooled")
    assert pooled["n"] == 6 and pooled["n_failed"] == 1
    assert pooled["mape"] == pytest.approx(100 / 6 * (0.1 + 0.1 + 0.1 + 0.1))
    # by sex, fold 0: men (5 -> 5.5, 7 -> 7) MAPE 5.0; women (6 -> 6, 8 -> 7.2) MAPE 5.0
    assert row("0", "M")["mape"] == pytest.approx(5.0)
    assert row("0", "M")["n"] == 2
    # bias of the pooled rows: mean(pred - true)
    diffs = np.array([0.5, 0, 0, -0.8, 0.6, -0.7])
    assert pooled["ba_bias"] == pytest.approx(diffs.mean())
    assert pooled["ba_loa_upper"] - pooled["ba_loa_lower"] == pytest.approx(2 * 1.96 * diffs.std(ddof=1))


def test_study_table_reports_range_over_folds_and_the_published_column():
    m = aggregate.compute_metrics(hand_predictions())
    ceiling = {"mape": 2.5, "ccc": 0.97, "lateral": {"mape": 2.7, "ccc": 0.96, "mape_folds": [2.0, 3.5],
                                                    "ccc_folds": [0.95, 0.98]}}
    t = aggregate.study_table(m, ["a"], ceiling=ceiling)
    mape_row = t[(t["view"] == "lateral") & (t["metric"] == "MAPE (%)")].iloc[0]
    assert mape_row["a"] == "5.00–10.00"
    assert mape_row[aggregate.STUDY_COLUMN] == "3.70–4.15"
    assert "different population" in aggregate.STUDY_COLUMN
    assert mape_row[aggregate.CEILING_COLUMN] == "2.00–3.50 (pooled 2.70)"
    assert aggregate.ceiling_cell({"mape": 2.5}, "mape", "both") == "2.50"
    ccc_row = t[(t["view"] == "lateral") & (t["metric"] == "CCC")].iloc[0]
    assert ccc_row[aggregate.STUDY_COLUMN] == "0.930–0.940"
    assert list(t["view"].unique()) == ["lateral"]  # views not run are not invented


def test_group_metrics_with_fewer_than_two_scored_is_nan_not_an_error():
    out = aggregate.group_metrics([6.0, 7.0], [np.nan, 7.0])
    assert out["n"] == 1 and out["n_failed"] == 1 and math.isnan(out["mape"])


# --------------------------------------------------------------------------- leakage
def test_memoriser_does_no_better_than_the_mean_on_test_folds(tmp_path):
    ds = write_dataset(tmp_path / "ds")
    res = bench(tmp_path, ds, ["mean", "memo"], views="lateral,posterior,both", report=False)
    p = res["predictions"]
    memo = p[p["model"] == "memo"].set_index(["view", "repeat", "fold", "sample_id"])["y_pred"]
    mean = p[p["model"] == "mean"].set_index(["view", "repeat", "fold", "sample_id"])["y_pred"]
    assert len(memo) == 3 * 20
    # it never recognises a test subject, so it predicts exactly the training mean
    pd.testing.assert_series_equal(memo.sort_index(), mean.sort_index())
    m = res["metrics"]
    pooled = m[(m["fold"] == "pooled") & (m["sex"] == "all")].set_index(["model", "view"])["mape"]
    assert pooled["memo"].equals(pooled["mean"])
    # both views of a person are in the same fold
    folds = p[p["model"] == "mean"].groupby("subject_id")["fold"].nunique()
    assert (folds == 1).all()


def test_models_never_see_the_label_at_predict_time(tmp_path):
    ds = write_dataset(tmp_path / "ds")
    res = bench(tmp_path, ds, ["mean", "cheat"], views="lateral", report=False)
    p = res["predictions"]
    assert p.loc[p["model"] == "cheat", "y_pred"].isna().all()
    assert p.loc[p["model"] == "cheat", "failure"].str.contains("KeyError").all()
    assert (res["records"].loc[res["records"]["model"] == "cheat", "status"].str.startswith("failed")).all()


def test_splits_with_a_subject_in_train_and_test_are_refused():
    folds = [(0, 0, ["S1", "S2"], ["S2", "S3"]), (0, 1, ["S2", "S3"], ["S1"])]
    with pytest.raises(BenchmarkError, match="both training and test"):
        check_folds(folds, ["S1", "S2", "S3"])
    with pytest.raises(BenchmarkError, match="in no test fold"):
        check_folds([(0, 0, ["S1"], ["S2"])], ["S1", "S2", "S3"])
    with pytest.raises(BenchmarkError, match="not in the dataset"):
        check_folds([(0, 0, ["S1"], ["S9"])], ["S1"])


def test_splits_from_another_dataset_are_refused(tmp_path):
    from smi_data.manifest import read_manifest
    from smi_data.splits import make_splits, save_splits

    other = write_dataset(tmp_path / "other", n_subjects=16, seed=3)
    save_splits(make_splits(read_manifest(other), 4, [0]), tmp_path / "other.json")
    ds = write_dataset(tmp_path / "ds", n_subjects=20)
    with pytest.raises(ValueError, match="another dataset"):
        bench(tmp_path, ds, ["mean"], splits=str(tmp_path / "other.json"))


def test_saved_splits_are_obeyed_and_copied(tmp_path):
    from smi_data.manifest import read_manifest
    from smi_data.splits import load_splits, make_splits, save_splits

    ds = write_dataset(tmp_path / "ds")
    sp = make_splits(read_manifest(ds), 4, [5])
    save_splits(sp, tmp_path / "s.json")
    res = bench(tmp_path, ds, ["mean"], views="lateral", splits=str(tmp_path / "s.json"))
    p = res["predictions"]
    for fold, test in enumerate(sp.test_folds[0]):
        assert sorted(p.loc[p["fold"] == fold, "subject_id"]) == sorted(test)
    assert load_splits(res["out"] / "splits.json").test_folds == sp.test_folds


def test_repeats_of_a_saved_splits_file_left_unused_are_noted(tmp_path):
    from smi_data.manifest import read_manifest
    from smi_data.splits import make_splits, save_splits

    ds = write_dataset(tmp_path / "ds")
    save_splits(make_splits(read_manifest(ds), 4, [5, 6]), tmp_path / "s.json")
    res = bench(tmp_path, ds, ["mean"], views="lateral", splits=str(tmp_path / "s.json"))
    assert sorted(res["predictions"]["repeat"].unique()) == [0]
    assert any("holds 2 repeats; 1 used" in n for n in res["notes"])


# --------------------------------------------------------------------------- failures are reported
def test_a_failing_model_is_reported_not_fatal(tmp_path):
    ds = write_dataset(tmp_path / "ds")
    res = bench(tmp_path, ds, ["mean", "halffail", "crash"], views="lateral")
    p = res["predictions"]
    half = p[p["model"] == "halffail"]
    assert half.loc[half["sex"] == "F", "y_pred"].isna().all()
    assert (half.loc[half["sex"] == "F", "failure"] == "no leg found").all()
    assert half.loc[half["sex"] == "M", "y_pred"].notna().all()
    assert p.loc[p["model"] == "crash", "failure"].str.contains("out of cheese").all()
    m = res["metrics"]
    pooled = m[(m["model"] == "halffail") & (m["fold"] == "pooled") & (m["sex"] == "all")].iloc[0]
    assert pooled["n"] == 10 and pooled["n_failed"] == 10
    report = (res["out"] / "report.md").read_text()
    assert "out of cheese" in report and "crash" in report
    assert json.loads((res["out"] / "run.json").read_text())["status"] == "ok"


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_metrics_csv(tmp_path):
    ds = write_dataset(tmp_path / "ds")
    a = bench(tmp_path, ds, ["mean", "covariates", "noisy"], name="a", seed=3, report=False)
    b = bench(tmp_path, ds, ["mean", "covariates", "noisy"], name="b", seed=3, report=False)
    c = bench(tmp_path, ds, ["mean", "covariates", "noisy"], name="c", seed=4, report=False)
    assert (a["out"] / "metrics.csv").read_bytes() == (b["out"] / "metrics.csv").read_bytes()
    assert (a["out"] / "predictions.csv").read_bytes() == (b["out"] / "predictions.csv").read_bytes()
    assert (a["out"] / "metrics.csv").read_bytes() != (c["out"] / "metrics.csv").read_bytes()


def test_fold_seed_and_subsampling_are_stable_and_nested():
    assert fold_seed(0, 0, 1) == fold_seed(0, 0, 1) != fold_seed(0, 0, 2)
    subjects = [f"S{i:02d}" for i in range(50)]
    small = subsample_subjects(subjects, 0.2, 0, 0, 1)
    big = subsample_subjects(subjects, 0.6, 0, 0, 1)
    assert len(small) == 10 and len(big) == 30 and set(small) <= set(big)
    assert subsample_subjects(subjects, 1.0, 0, 0, 1) == sorted(subjects)


def test_run_task_subsamples_training_subjects_only(tmp_path):
    from smi_data.manifest import read_manifest, to_samples

    ds = write_dataset(tmp_path / "ds")
    samples = to_samples(read_manifest(ds), "lateral")
    subjects = sorted(samples["subject_id"])
    res = run_task(Task("memo", "lateral", 0, 0, train_fraction=0.5), samples, subjects[:16], subjects[16:],
                   seed=0, specs=SPECS)
    assert res.n_train == 8 and res.n_test == 4


# --------------------------------------------------------------------------- options
def test_views_and_overrides_parsing():
    assert parse_views("auto") == "auto"
    assert parse_views("lateral, both") == ["lateral", "both"]
    with pytest.raises(BenchmarkError, match="unknown view"):
        parse_views("side")
    assert parse_overrides(["cnn-lite.epochs=3", "cnn-lite.input_mode=grey", "xgb-features.groups=[1,2]"]) == {
        "cnn-lite": {"epochs": 3, "input_mode": "grey"}, "xgb-features": {"groups": (1, 2)}}
    with pytest.raises(BenchmarkError, match="MODEL.PARAM=VALUE"):
        parse_overrides(["epochs=3"])
    plan, notes = plan_views(["mean", "cnn-lite"], "auto")
    assert plan == {"mean": ["lateral", "posterior", "both"], "cnn-lite": ["lateral", "posterior"]}
    assert any("cnn-lite" in n for n in notes)


def test_unknown_model_is_a_clear_error(tmp_path):
    ds = write_dataset(tmp_path / "ds")
    with pytest.raises(BenchmarkError, match="unknown model.*nope"):
        bench(tmp_path, ds, ["mean", "nope"])


# --------------------------------------------------------------------------- baselines
def samples_frame(n=40, seed=1):
    rng = np.random.default_rng(seed)
    sex = np.where(np.arange(n) % 2 == 0, "M", "F")
    age = rng.uniform(20, 70, n)
    height = rng.normal(165, 8, n)
    y = 2.0 + 1.2 * (sex == "M") - 0.01 * age + 0.03 * height
    X = pd.DataFrame({"sample_id": [f"S{i}:lateral" for i in range(n)], "subject_id": [f"S{i}" for i in range(n)],
                      "sex": sex, "age": age, "height_cm": height})
    return X, y


def test_covariates_model_recovers_a_known_linear_law():
    X, y = samples_frame()
    est = CovariatesRegressor().fit(X, y)
    assert est.coef_ == pytest.approx([1.2, -0.01, 0.03], abs=1e-9)
    assert est.intercept_ == pytest.approx(2.0, abs=1e-7)
    X2 = X.copy()
    X2.loc[3, "age"] = np.nan
    before = joblib.hash(est.__dict__)
    pred, reasons = est.predict_with_reasons(X2)
    assert np.isnan(pred[3]) and "S3:lateral" in reasons and np.isfinite(np.delete(pred, 3)).all()
    np.testing.assert_array_equal(est.predict(X2), pred)
    assert joblib.hash(est.__dict__) == before  # predict leaves the fitted model alone
    assert clone(est).get_params() == {"use_weight": False}


def test_mean_model_predicts_the_training_mean():
    X, y = samples_frame()
    assert MeanRegressor().fit(X, y).predict(X.iloc[:3]) == pytest.approx([y.mean()] * 3)


class FakeExtractor:
    """Returns calf circumference from a column (stands in for smi_features' extractor)."""

    def transform(self, X):
        return pd.DataFrame({"calf_circumference_cm": X["circ"].to_numpy(float)})


def test_tape_model_fits_one_line_per_sex():
    X, _ = samples_frame()
    circ = np.linspace(30, 40, len(X))
    X["circ"] = circ
    y = np.where(X["sex"] == "M", 1.0 + 0.2 * circ, -1.0 + 0.2 * circ)
    y = np.where(X["sex"] == "F", 0.5 + 0.15 * circ, y)
    X.loc[5, "circ"] = np.nan
    est = TapeRegressor(extractor=FakeExtractor()).fit(X, y)
    assert est.lines_["M"] == pytest.approx((1.0, 0.2))
    assert est.lines_["F"] == pytest.approx((0.5, 0.15))
    pred, reasons = est.predict_with_reasons(X)
    assert np.isnan(pred[5]) and reasons["S5:lateral"] == "calf circumference not measured"
    ok = np.isfinite(pred)
    assert pred[ok] == pytest.approx(y[ok])


def test_baselines_save_and_load_through_model_json(tmp_path):
    X, y = samples_frame()
    for est in (MeanRegressor().fit(X, y), CovariatesRegressor().fit(X, y)):
        d = tmp_path / type(est).__name__
        save_model(est, d)
        loaded = registry.load_any_model(d)
        assert type(loaded) is type(est)
        assert loaded.predict(X) == pytest.approx(est.predict(X))
    meta = json.loads((tmp_path / "MeanRegressor" / "model.json").read_text())
    assert meta["family"] == "baseline" and meta["format"] == "legsmi-model"
    meta["state"] = {}
    (tmp_path / "MeanRegressor" / "model.json").write_text(json.dumps(meta))
    from smi_data.modelfile import ModelFileError

    with pytest.raises(ModelFileError, match="damaged"):
        load_model(tmp_path / "MeanRegressor")


def test_registry_knows_the_default_models_and_refuses_unknown_ones():
    assert set(registry.DEFAULT_MODELS) <= set(registry.model_names())
    assert isinstance(registry.make_model("covariates", 3), CovariatesRegressor)
    with pytest.raises(KeyError, match="unknown model"):
        registry.make_model("nope")


def test_parallel_jobs_give_the_same_numbers(tmp_path):
    ds = write_dataset(tmp_path / "ds")
    a = bench(tmp_path, ds, ["covariates", "noisy"], name="serial", seed=2, views="lateral", report=False)
    b = bench(tmp_path, ds, ["covariates", "noisy"], name="parallel", seed=2, views="lateral", report=False, jobs=2)
    assert (a["out"] / "metrics.csv").read_bytes() == (b["out"] / "metrics.csv").read_bytes()


def test_ablation_arms_equal_to_defaults_share_fits():
    from benchmarks.ablate import arm_tag, arms_for, drop_defaults

    specs = {"cnn": ModelSpec("cnn", "test", lambda random_state=0, **kw: Knobs(**kw), "knobs")}
    on = drop_defaults(arms_for("canny", cnn_model="cnn")[0], specs)
    off = drop_defaults(arms_for("canny", cnn_model="cnn")[1], specs)
    aug_on, aug_off = (drop_defaults(a, specs) for a in arms_for("augment", cnn_model="cnn"))
    assert on.key == aug_on.key and arm_tag(on) == "cnn/lateral"
    assert len({on.key, off.key, aug_off.key}) == 3
    assert arm_tag(off) == "cnn/lateral input_mode=grey"
    sizes = [a.train_fraction for a in arms_for("train-size")]
    assert sizes == [0.2, 0.4, 0.6, 0.8, 1.0]


class Knobs(RegressorMixin, BaseEstimator):
    def __init__(self, input_mode="canny", augment=True, image_size=None):
        self.input_mode = input_mode
        self.augment = augment
        self.image_size = image_size
