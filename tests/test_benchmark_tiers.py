"""Information tiers, the ceiling on the saved folds, and the leaky-protocol ablation.

The tier tests use the manifest-only dataset of test_benchmark.py (no image is opened);
the leaky protocols use the drawn toy photos (one protocol copies and rotates them).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from benchmarks import leaky, registry
from benchmarks.harness import BenchmarkConfig, Task, fold_table, plan_tiers, run_benchmark, run_folds
from benchmarks.registry import ModelSpec
from smi_data.tiers import TIER_COVARIATES, TierError, parse_tiers, restrict_to_tier

COVARIATE_COLUMNS = ("sex", "age", "height_cm", "weight_kg", "bmi", "site")


def write_dataset(root, n_subjects=20, seed=0):
    """A manifest-only dataset (no image is opened here): both views, SMI linked to sex and height."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_subjects):
        sex = "M" if i % 2 == 0 else "F"
        height = rng.normal(170 if sex == "M" else 157, 6)
        smi = (7.5 if sex == "M" else 6.0) + 0.03 * (height - 164) + rng.normal(0, 0.4)
        age = round(float(rng.uniform(20, 60)), 1)
        for view in ("lateral", "posterior"):
            rows.append({"subject_id": f"S{i:03d}", "view": view, "image": f"images/S{i:03d}_{view}.jpg",
                         "sex": sex, "age": age, "height_cm": round(height, 1),
                         "smi": round(smi, 3), "site": f"clinic{i % 3}"})
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


class WantsEverything(RegressorMixin, BaseEstimator):
    """Claims it uses every covariate, and raises if it sees one its tier does not give.

    ``allowed`` is what the test expects the harness to hand over; the model itself does
    not drop anything, so only the harness can keep it from seeing more.
    """

    def __init__(self, allowed=(), tier=None):
        self.allowed = allowed
        self.tier = tier

    def _check(self, X):
        seen = [c for c in X.columns if c in COVARIATE_COLUMNS]
        extra = sorted(set(seen) - set(self.allowed))
        if extra:
            raise AssertionError(f"tier {self.tier}: model received {extra}")
        if "smi" in X.columns:
            raise AssertionError("model received the label")
        self.seen_ = seen

    def fit(self, X, y):
        self._check(X)
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        self._check(X)
        return np.full(len(X), self.mean_)


def _spec(name="greedy"):
    # the factory ignores the tier: a careless model that would read whatever it is given
    return ModelSpec(name, "test", lambda random_state=0, **kw: WantsEverything(**kw), name,
                     tiers=("photo", "basic", "weight"),
                     tier_setup=lambda t: {"allowed": TIER_COVARIATES[t], "tier": t})


def _with_weight(ds):
    man = pd.read_csv(ds / "manifest.csv")
    man["weight_kg"] = 50 + (man["height_cm"] - 150) * 0.8
    man["bmi"] = man["weight_kg"] / (man["height_cm"] / 100) ** 2  # an extra column that must never reach a model
    man.to_csv(ds / "manifest.csv", index=False)
    return ds


def test_restrict_to_tier_keeps_only_the_tier_columns():
    X = pd.DataFrame(columns=["sample_id", "subject_id", "view", "image_lateral", "px_per_cm_lateral", "sex",
                              "age", "height_cm", "weight_kg", "smi", "site", "reference_device"])
    assert list(restrict_to_tier(X, "photo").columns) == ["sample_id", "subject_id", "view", "image_lateral",
                                                          "px_per_cm_lateral"]
    assert set(restrict_to_tier(X, "basic").columns) - set(restrict_to_tier(X, "photo").columns) == \
        {"sex", "age", "height_cm"}
    assert "weight_kg" in restrict_to_tier(X, "weight").columns and "smi" not in restrict_to_tier(X, "weight")
    assert parse_tiers("photo, weight") == ["photo", "weight"] and parse_tiers("auto") == "auto"
    with pytest.raises(TierError, match="unknown tier"):
        parse_tiers("photo,everything")


def test_a_photo_tier_model_never_receives_a_covariate(tmp_path):
    ds = _with_weight(write_dataset(tmp_path / "ds"))
    from smi_data.manifest import read_manifest
    from smi_data.splits import make_splits

    man = read_manifest(ds)
    folds = fold_table(make_splits(man, n_folds=3, seeds=[0]), 1)
    specs = {"greedy": _spec()}
    tasks = [Task("greedy", v, 0, f, tier=t) for t in ("photo", "basic", "weight")
             for v in ("lateral", "both") for _, f, _, _ in folds]
    preds, records, _ = run_folds(man, folds, tasks, seed=0, specs=specs, progress=False)
    assert (records["status"] == "ok").all(), records["status"].tolist()
    assert set(records["tier"]) == {"photo", "basic", "weight"}
    # the harness, not the model, did the dropping: without it the model raises
    careless = WantsEverything(allowed=(), tier="photo")
    from smi_data.manifest import to_samples

    with pytest.raises(AssertionError, match="received"):
        careless.fit(to_samples(man, "lateral").drop(columns=["smi"]), np.ones(len(man) // 2))
    # predictions still carry the person's columns for the metrics (sex), whatever the tier
    assert preds.loc[preds["tier"] == "photo", "sex"].notna().all()


def test_plan_tiers_auto_keeps_the_cnns_at_photo_and_all_runs_every_tier():
    models = ["mean", "covariates", "tape", "xgb-features", "cnn-paper"]
    plan, notes = plan_tiers(models, "auto")
    assert plan == {"mean": ["photo"], "covariates": ["basic", "weight"], "tape": ["basic"],
                    "xgb-features": ["photo", "basic", "weight"], "cnn-paper": ["photo"]}
    assert any("cnn-paper" in n and "--tiers all" in n for n in notes)
    plan, _ = plan_tiers(models, "all")
    assert plan["cnn-paper"] == ["photo", "basic", "weight"]
    plan, notes = plan_tiers(models, ["photo", "weight"])
    assert plan["covariates"] == ["weight"] and plan["tape"] == [] and any("tape" in n for n in notes)


def test_tier_set_up_of_the_registered_models():
    xgb = registry.get_spec("xgb-features")
    assert xgb.build(0, tier="photo").tier == "photo"
    assert registry.get_spec("covariates").build(0, tier="weight").use_weight is True
    assert registry.get_spec("cnn-lite").build(0, tier="photo").covariates is False
    assert registry.get_spec("cnn-lite").build(0, tier="weight").covariate_columns()[-1] == "weight_kg"
    with pytest.raises(KeyError, match="does not run at tier"):
        registry.get_spec("tape").build(0, tier="photo")


def test_benchmark_records_tiers_and_is_deterministic(tmp_path):
    ds = _with_weight(write_dataset(tmp_path / "ds"))
    specs = {"greedy": _spec()}
    cfgs = [BenchmarkConfig(dataset=str(ds), out=str(tmp_path / f"r{i}"), models=["mean", "covariates", "greedy"],
                            views="lateral", tiers="photo,basic,weight", folds=4, seed=3, progress=False,
                            report=False) for i in (0, 1)]
    res = [run_benchmark(c, specs=specs) for c in cfgs]
    m0 = (tmp_path / "r0" / "metrics.csv").read_text()
    assert m0 == (tmp_path / "r1" / "metrics.csv").read_text()
    metrics = res[0]["metrics"]
    assert set(metrics.groupby("model")["tier"].unique().map(tuple)) >= {("photo",), ("basic", "weight")}
    table = pd.read_csv(tmp_path / "r0" / "table.csv")
    assert list(dict.fromkeys(table["tier"])) == ["photo", "basic", "weight"]
    run = json.loads((tmp_path / "r0" / "run.json").read_text())
    assert run["config"]["tiers"] == "photo,basic,weight"
    assert run["tiers"]["models"]["greedy"]["photo"] == {"allowed": [], "tier": "photo"}
    assert run["tiers"]["definitions"]["basic"]["covariates"] == ["sex", "age", "height_cm"]


# --------------------------------------------------------------------------- the ceiling on the saved folds
def _phantom_like(root, n=40):
    """manifest.csv and truth.csv of a made-up phantom: SMI from calf widths, sex and weight, plus noise."""
    from smi_data.phantom.ceiling import GEOMETRY

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"subject_id": [f"S{i:03d}" for i in range(n)],
                       "sex": np.where(np.arange(n) % 2 == 0, "M", "F"), "age": rng.uniform(20, 60, n).round(),
                       "height_cm": rng.normal(165, 8, n).round(1), "weight_kg": rng.normal(62, 9, n).round(1)})
    for c in GEOMETRY["both"]:
        if not c.startswith("ratio"):
            df[c] = rng.normal(10, 1, n)
    df["smi"] = (3 + 0.2 * df["calf_width_lateral_cm"] + 0.8 * (df["sex"] == "M") + 0.01 * df["weight_kg"]
                 + rng.normal(0, 0.2, n))
    root.mkdir(parents=True, exist_ok=True)
    df[["subject_id", "sex", "age", "height_cm", "weight_kg", "smi"]].assign(view="lateral", image="x.jpg") \
        .to_csv(root / "manifest.csv", index=False)
    df.assign(view="lateral", image="x.jpg").to_csv(root / "truth.csv", index=False)
    return root


def test_ceiling_iterates_the_saved_folds(tmp_path):
    from smi_data.phantom.ceiling import compute_ceiling
    from smi_data.splits import load_splits, make_splits, save_splits

    ds = _phantom_like(tmp_path / "ph")
    man = pd.read_csv(ds / "manifest.csv", dtype={"subject_id": str})
    save_splits(make_splits(man, n_folds=4, seeds=[5, 6]), tmp_path / "splits.json")
    splits = load_splits(tmp_path / "splits.json")
    folds = fold_table(splits, 2)
    saved = json.loads((tmp_path / "splits.json").read_text())
    c = compute_ceiling(ds, folds=[(r, f, test) for r, f, _, test in folds], tier="basic")
    # same subjects per fold as the file, every repeat
    for r, rep in enumerate(saved["repeats"]):
        for f, test in enumerate(rep["test_folds"]):
            assert c["fold_subjects"][f"{r}/{f}"] == sorted(test)
    assert c["repeats"] == 2 and c["folds"] == 4 and c["tier"] == "basic"
    assert len(c["lateral"]["fold_mape"]) == 8
    # at the photo tier the ideal predictor has the geometry and no covariate
    photo = compute_ceiling(ds, folds=[(r, f, test) for r, f, _, test in folds], tier="photo")
    assert "covariates_only" not in photo and photo["lateral"]["features"] == list(
        __import__("smi_data.phantom.ceiling", fromlist=["GEOMETRY"]).GEOMETRY["lateral"])
    other = compute_ceiling(ds, folds=4, seed=99, tier="basic")
    assert other["fold_subjects"] != c["fold_subjects"]


def test_ceiling_inputs_are_not_functions_of_each_other(tmp_path):
    """No covariate of the ceiling is computed from others it also gets (BMI beside height and weight):
    in log space such a column is a linear combination of the others plus a constant."""
    from smi_data.phantom.ceiling import GEOMETRY, compute_ceiling, subject_table

    ds = _phantom_like(tmp_path / "ph")
    table = subject_table(ds)
    for tier, covs in (("basic", ["male", "age", "height_cm"]), ("weight", ["male", "age", "height_cm", "weight_kg"])):
        c = compute_ceiling(ds, folds=4, seed=0, tier=tier)
        assert c["covariates_only"]["features"] == covs
        for view in ("lateral", "posterior", "both"):
            assert c[view]["features"] == covs + list(GEOMETRY[view])
        positive = [f for f in covs if f != "male"]
        logs = np.column_stack([np.ones(len(table))] + [np.log(table[f].to_numpy(float)) for f in positive])
        assert np.linalg.matrix_rank(logs) == logs.shape[1], f"{tier}: a covariate is a power product of others"
    # the check has teeth: BMI beside height and weight is rank-deficient in log space
    bmi = table["weight_kg"] / (table["height_cm"] / 100) ** 2
    logs = np.column_stack([np.ones(len(table)), np.log(table["height_cm"]), np.log(table["weight_kg"]), np.log(bmi)])
    assert np.linalg.matrix_rank(logs) < logs.shape[1]


def test_ceiling_refuses_folds_of_another_dataset(tmp_path):
    from smi_data.phantom.ceiling import compute_ceiling

    ds = _phantom_like(tmp_path / "ph")
    with pytest.raises(ValueError, match="another dataset"):
        compute_ceiling(ds, folds=[(0, 0, ["nobody"])])


# --------------------------------------------------------------------------- leaky protocols
class CovariateMemoriser(RegressorMixin, BaseEstimator):
    """1-nearest neighbour on sex, age and height: remembers people, knows nothing else.

    ``noise_seed`` adds seeded noise (a hyper-parameter that only luck can tune).
    """

    def __init__(self, noise_seed=0, tier=None):
        self.noise_seed = noise_seed
        self.tier = tier

    def _z(self, X):
        return np.column_stack([(X["sex"] == "M").astype(float) * 100, X["age"].astype(float),
                                X["height_cm"].astype(float)])

    def fit(self, X, y):
        self.X_ = self._z(X)
        self.y_ = np.asarray(y, float)
        return self

    def predict(self, X):
        d = ((self._z(X)[:, None, :] - self.X_[None, :, :]) ** 2).sum(-1)
        pred = self.y_[np.argmin(d, axis=1)]
        return pred + np.random.default_rng(self.noise_seed).normal(0, 0.3, len(pred))


MEMO_SPEC = ModelSpec("memo", "test", lambda random_state=0, **kw: CovariateMemoriser(**kw), "memoriser",
                      tiers=("basic",), tier_setup=lambda t: {"tier": t})
MEAN_SPEC = registry.get_spec("mean")


@pytest.fixture(scope="module")
def random_label_toy(tmp_path_factory):
    """Drawn photos whose SMI is noise, independent of everything a model can see."""
    from smi_data.toy import make_toy_dataset

    ds = make_toy_dataset(tmp_path_factory.mktemp("leaky") / "ds", n_subjects=15, seed=2, size=96)
    man = pd.read_csv(ds / "manifest.csv", dtype={"subject_id": str})
    rng = np.random.default_rng(0)
    smi = {s: round(float(rng.uniform(5.0, 9.0)), 3) for s in sorted(man["subject_id"].unique())}
    man["smi"] = man["subject_id"].map(smi)
    man.to_csv(ds / "manifest.csv", index=False)
    return ds


def _pooled_mape(metrics, tag):
    m = metrics[(metrics["arm"] == tag) & (metrics["fold"] == "pooled") & (metrics["sex"] == "all")]
    return float(m["mape"].mean())


def test_leaky_protocols_flatter_a_memoriser_that_is_no_better_than_the_mean_honestly(random_label_toy, tmp_path):
    from benchmarks import aggregate
    from smi_data.manifest import read_manifest
    from smi_data.splits import make_splits

    man = read_manifest(random_label_toy)
    folds = fold_table(make_splits(man, n_folds=3, seeds=[0]), 1)
    specs = {"memo": MEMO_SPEC}
    preds, records, notes = leaky.run_leaky(
        man, folds, model="memo", tiers=["basic"], view="lateral", seed=0, n_folds=3, work_dir=tmp_path / "w",
        specs=specs, progress=False, grid={"noise_seed": tuple(range(6))})
    assert records["status"].str.startswith("ok").all(), records["status"].unique()
    metrics = aggregate.compute_metrics(preds, keys=("arm", "model", "tier", "view"))
    table = leaky.leaky_table(metrics).set_index("protocol")
    for proto in ("augment-before", "folds-by-image", "tune-on-test"):
        honest, leaked = (float(table.loc[proto, f"{s} MAPE % (pooled)"]) for s in ("honest", "leaky"))
        assert leaked < honest, (proto, honest, leaked)
    # scaling cannot leak into a model without feature scaling, and the table says it was not run
    assert "scale-on-all" not in table.index and any("scale-on-all" in n for n in notes)
    # honestly, the memoriser is no better than the training mean on labels that are noise
    mean_preds, _, _ = run_folds(man, folds, [Task("mean", "lateral", 0, f, arm="mean") for _, f, _, _ in folds],
                                 seed=0, progress=False)
    mean_mape = _pooled_mape(aggregate.compute_metrics(mean_preds, keys=("arm", "model", "tier", "view")), "mean")
    assert float(table.loc["augment-before", "honest MAPE % (pooled)"]) >= mean_mape
    assert float(table.loc["folds-by-image", "honest MAPE % (pooled)"]) >= mean_mape
    # the honest augmentation twin never scores a copy; the leaky one does
    aug = preds[preds["arm"].str.startswith("augment-before/")]
    honest_ids = aug[aug["arm"].str.contains("/honest ")]["subject_id"]
    assert not honest_ids.str.contains("~aug").any()
    assert aug[aug["arm"].str.contains("/leaky ")]["subject_id"].str.contains("~aug").any()


def test_scale_on_all_fits_the_features_models_scaling_on_the_test_rows_too():
    from smi_features.estimators import LogLinearBase

    rng = np.random.default_rng(0)
    X, S = rng.normal(10, 1, (20, 2)), rng.normal(30, 1, (40, 2))
    y = X.sum(1)
    honest = LogLinearBase(["a", "b"]).fit(X, y)
    leaked = LogLinearBase(["a", "b"]).fit(X, y, scale_X=np.vstack([X, S]))
    assert honest.mean_[0] == pytest.approx(X[:, 0].mean())
    assert leaked.mean_[0] == pytest.approx(np.vstack([X, S])[:, 0].mean())
    assert leaky.takes_scaling("xgb-features") and not leaky.takes_scaling("covariates")
