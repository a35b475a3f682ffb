"""End to end: `legsmi benchmark` and `legsmi ablate` on a few drawn subjects.

The drawn dataset (smi_data.toy) makes SMI a linear function of calf circumference by
sex, so the tape-measure analogue must beat the mean predictor; tiny CNN settings keep
the deep models to about a second a fold.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from benchmarks import registry

TINY_CNN = ["--set", "cnn-lite.epochs=1", "--set", "cnn-lite.image_size=32", "--set", "cnn-lite.batch_size=8"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from smi_data.toy import make_toy_dataset

    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", n_subjects=12, seed=1, size=160)


pytestmark = pytest.mark.usefixtures("shared_cache")


def available(*names):
    return [n for n in names if n not in registry.check_available([n])]


@pytest.mark.slow
def test_benchmark_end_to_end_on_drawn_subjects(toy, tmp_path):
    from cli import main

    models = available("mean", "covariates", "tape", "xgb-features", "cnn-lite")
    assert {"mean", "covariates", "tape"} <= set(models)
    out = tmp_path / "run"
    args = ["benchmark", str(toy), "--models", ",".join(models), "--folds", "3", "--seed", "1", "--out", str(out)]
    if "cnn-lite" in models:
        args += TINY_CNN
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    for name in ("predictions.csv", "metrics.csv", "table.csv", "report.md", "report.html", "run.json",
                 "splits.json", "folds.csv", "plots/fold_metrics.png", "plots/pred_vs_ref_lateral.png",
                 "plots/bland_altman_posterior.png"):
        assert (out / name).is_file(), name
    if "xgb-features" in models:  # the photo tier's SHAP (which leg dimensions drive SMI) and the widest tier's
        assert (out / "plots" / "shap_xgb-features_photo.png").is_file()
        assert (out / "plots" / "shap_xgb-features_weight.png").is_file()
    preds = pd.read_csv(out / "predictions.csv")
    # a row per sample, model, tier and view: 12 subjects, each in exactly one test fold;
    # --tiers auto: cheap models at every tier they support, the CNNs at photo only
    n_tiers = {m: (len(registry.get_spec(m).tiers) if registry.get_spec(m).cheap else 1) for m in models}
    expected = sum(12 * n_tiers[m] * (3 if registry.get_spec(m).cheap else 2) for m in models)
    assert len(preds) == expected
    assert {"sample_id", "subject_id", "sex", "y_true", "y_pred", "fold", "repeat", "weight_kg", "side",
            "tier"} <= set(preds)
    assert (preds.groupby(["model", "tier", "view", "repeat"])["sample_id"].apply(lambda s: s.is_unique)).all()
    assert set(preds.loc[preds["model"] == "covariates", "tier"]) == {"basic", "weight"}
    assert set(preds.loc[preds["model"] == "tape", "tier"]) == {"basic"}
    table = pd.read_csv(out / "table.csv")
    assert list(dict.fromkeys(table["tier"])) == ["photo", "basic", "weight"]
    assert "## tier: photo" in res.output and "## tier: weight" in res.output
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="plots/' not in html
    for m in models:
        assert m in html
    assert "different population" in html
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "ok" and run["config"]["models"] == models and run["seed"] == 1
    # the drawn SMI follows calf circumference: the tape analogue must beat the mean predictor
    metrics = pd.read_csv(out / "metrics.csv", dtype={"fold": str})
    assert "tier" in metrics.columns
    pooled = metrics[(metrics["fold"] == "pooled") & (metrics["sex"] == "all")].set_index(["model", "tier", "view"])
    assert pooled.loc[("tape", "basic", "lateral"), "mape"] < pooled.loc[("mean", "photo", "lateral"), "mape"]
    run_tiers = run["tiers"]
    assert run_tiers["definitions"]["photo"]["covariates"] == []
    assert run_tiers["models"]["covariates"] == {"basic": {"use_weight": False}, "weight": {"use_weight": True}}
    assert "lateral" in res.output and "3.70–4.15" in res.output
    assert "\r" not in res.output  # no progress bar when the output is not a terminal


@pytest.mark.slow
def test_ablate_end_to_end_prints_one_table(toy, tmp_path):
    from cli import main

    out = tmp_path / "abl"
    ablations = ["views", "train-size"]
    args = ["ablate", str(toy), "--model", "covariates", "--folds", "3", "--out", str(out)]
    if not registry.check_available(["cnn-lite"]):
        ablations.append("canny")
        args += TINY_CNN
    res = CliRunner().invoke(main, args + ["--ablations", ",".join(ablations)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "ablation.csv")
    assert list(table.loc[table["ablation"] == "views", "arm"]) == ["lateral", "posterior", "both"]
    assert list(table.loc[table["ablation"] == "train-size", "arm"]) == ["20 %", "40 %", "60 %", "80 %", "100 %"]
    # the learning curve really trains on fewer subjects
    folds = pd.read_csv(out / "folds.csv")
    ts = folds[folds["arm"].str.startswith("covariates/weight/lateral")]
    n_train = ts.groupby("train_fraction")["n_train"].mean()
    assert n_train.is_monotonic_increasing and n_train.loc[1.0] == 8
    # the 100 % arm of train-size and the lateral arm of views are the same fits
    assert len(folds) == 3 * (3 + 4 + (2 if "canny" in ablations else 0))
    if "canny" in ablations:
        assert set(table.loc[table["ablation"] == "canny", "arm"]) == {"canny on (edges)", "canny off (grey)"}
    assert "ablation" in res.output and "train-size" in res.output


def test_speed_times_one_fold_per_model(toy):
    from benchmarks.speed import model_speed

    lines = []
    table = model_speed(toy, ["mean", "covariates"], folds=3, echo=lines.append)
    assert list(table["model"]) == ["mean", "covariates"]
    assert (table["n_train"] == 8).all() and (table["n_test"] == 4).all()
    assert (table["status"] == "ok").all() and (table["fit_s"] >= 0).all()
    assert len(lines) == 2 and "s/fold" in lines[0]
