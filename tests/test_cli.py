"""The command-line shell, train and predict end to end on a drawn toy dataset."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import cli
from smi_data.toy import make_toy_dataset

REPO = Path(__file__).resolve().parent.parent


def test_help_does_not_import_heavy_libraries():
    code = ("import sys, cli\n"
            "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'xgboost', 'shap', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_version_and_every_documented_command_is_there():
    runner = CliRunner()
    res = runner.invoke(cli.main, ["--version"])
    assert res.exit_code == 0 and cli.__version__ in res.output
    res = runner.invoke(cli.main, ["-h"])
    for name in ("validate", "splits", "phantom", "features", "train", "predict", "explain", "benchmark", "ablate"):
        assert name in res.output, name


def test_model_choices_match_the_registry():
    from benchmarks.registry import model_names

    assert cli._model_choices() == model_names()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", 16, seed=5, size=256)


pytestmark = pytest.mark.usefixtures("shared_cache")


def test_train_then_predict_single_photos(toy, tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "model"
    res = runner.invoke(cli.main, ["train", str(toy), "--model", "xgb-features", "--out", str(model_dir)])
    assert res.exit_code == 0, res.output
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["format"] == "legsmi-model" and meta["view"] == "lateral" and meta["family"] == "features"
    assert (model_dir / "run.json").is_file()
    # a second train into the same folder is refused without --overwrite
    res = runner.invoke(cli.main, ["train", str(toy), "--model", "xgb-features", "--out", str(model_dir)])
    assert res.exit_code != 0 and "--overwrite" in res.output

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "pred"
    photos = [str(toy / "images" / "T001_lateral.jpg"), str(toy / "images" / "T002_lateral.jpg"), str(bad)]
    res = runner.invoke(cli.main, ["predict", str(model_dir), *photos, "--sex", "F", "--age", "70",
                                   "--height", "158", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "broken" in res.output and "no estimate" in res.output
    pred = pd.read_csv(out / "predictions.csv")
    assert len(pred) == 3
    ok = pred[pred["failure"].isna()]
    assert len(ok) == 2 and ok["smi_pred"].between(3, 12).all()
    # the flag follows the AWGS 2019 BIA cut-off for women
    assert (ok["low_muscle_mass"].astype(str) == (ok["smi_pred"] < 5.7).astype(str)).all()
    assert sorted(p.name for p in out.glob("*_annotated.png")) == ["T001_lateral_annotated.png",
                                                                   "T002_lateral_annotated.png"]
    # existing output folder is not overwritten silently
    res = runner.invoke(cli.main, ["predict", str(model_dir), photos[0], "--sex", "F", "--age", "70",
                                   "--height", "158", "--out", str(out)])
    assert res.exit_code != 0 and "--overwrite" in res.output


def test_predict_dataset_and_a_model_folder_from_elsewhere_is_refused(toy, tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "model"
    assert runner.invoke(cli.main, ["train", str(toy), "--model", "covariates", "--view", "posterior",
                                    "--out", str(model_dir)]).exit_code == 0
    res = runner.invoke(cli.main, ["predict", str(model_dir), "--dataset", str(toy), "--out", str(tmp_path / "p"),
                                   "--no-annotate"])
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert len(pred) == 16 and pred["smi_pred"].notna().all() and (pred["view"] == "posterior").all()

    # photos given with --dataset are not silently ignored
    res = runner.invoke(cli.main, ["predict", str(model_dir), str(toy / "images" / "T001_posterior.jpg"),
                                   "--dataset", str(toy), "--out", str(tmp_path / "p3")])
    assert res.exit_code == 2 and "not both" in res.output
    # a dataset without the model's view is an error, not an empty predictions.csv
    import shutil

    lat_only = tmp_path / "lat"
    shutil.copytree(toy, lat_only)
    m = pd.read_csv(lat_only / "manifest.csv")
    m[m["view"] == "lateral"].to_csv(lat_only / "manifest.csv", index=False)
    res = runner.invoke(cli.main, ["predict", str(model_dir), "--dataset", str(lat_only),
                                   "--out", str(tmp_path / "p2")])
    assert res.exit_code == 2 and "no samples with the posterior view" in res.output

    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "model.json").write_text(json.dumps({"format": "something-else"}))
    res = runner.invoke(cli.main, ["predict", str(fake), str(toy / "images" / "T001_lateral.jpg"),
                                   "--sex", "F", "--age", "70", "--height", "158", "--out", str(tmp_path / "q")])
    assert res.exit_code != 0 and "not written by legsmi" in res.output


def test_train_into_an_existing_empty_folder(toy, tmp_path):
    model_dir = tmp_path / "empty"
    model_dir.mkdir()
    res = CliRunner().invoke(cli.main, ["train", str(toy), "--model", "mean", "--out", str(model_dir)])
    assert res.exit_code == 0, res.output
    assert (model_dir / "model.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no temporary folder left behind


def test_predict_photos_with_the_same_name_from_different_folders(toy, tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "model"
    assert runner.invoke(cli.main, ["train", str(toy), "--model", "covariates", "--out", str(model_dir)]).exit_code == 0
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    good = tmp_path / "a" / "leg.jpg"
    good.write_bytes((toy / "images" / "T001_lateral.jpg").read_bytes())
    (tmp_path / "b" / "leg.jpg").write_bytes(b"not an image")
    out = tmp_path / "pred"
    res = runner.invoke(cli.main, ["predict", str(model_dir), str(good), str(tmp_path / "b" / "leg.jpg"),
                                   "--sex", "F", "--age", "70", "--height", "158", "--out", str(out)])
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(out / "predictions.csv").set_index("image_lateral")
    assert pred["sample_id"].is_unique
    assert pred.loc[str(good.resolve()), "smi_pred"] > 0  # the good photo is not lost with the bad one
    assert pred["smi_pred"].isna().sum() == 1


def test_train_on_photos_that_cannot_be_measured_is_a_clear_error(toy, tmp_path):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(toy, ds)
    for img in (ds / "images").glob("*_lateral.jpg"):
        img.write_bytes(b"not an image")
    model_dir = tmp_path / "model"
    res = CliRunner().invoke(cli.main, ["train", str(ds), "--model", "xgb-features", "--out", str(model_dir)])
    assert res.exit_code == 1, res.output  # the command ran and failed on the data (2 is for a bad command line)
    assert "no sample could be measured" in res.output and not isinstance(res.exception, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no model folder, no temporary folder


def test_train_overwrite_keeps_a_sibling_old_folder(toy, tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "model"
    backup = tmp_path / "model.old"
    backup.mkdir()
    (backup / "keep.txt").write_text("the user's own backup")
    assert runner.invoke(cli.main, ["train", str(toy), "--model", "mean", "--out", str(model_dir)]).exit_code == 0
    res = runner.invoke(cli.main, ["train", str(toy), "--model", "mean", "--out", str(model_dir), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (backup / "keep.txt").read_text() == "the user's own backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.old"]


def test_overwrite_never_deletes_the_inputs(toy, tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "model"
    assert runner.invoke(cli.main, ["train", str(toy), "--model", "mean", "--out", str(model_dir)]).exit_code == 0
    photo = tmp_path / "leg.jpg"
    photo.write_bytes((toy / "images" / "T001_lateral.jpg").read_bytes())
    for out in (model_dir, tmp_path):  # the model folder; a folder holding the photo
        res = runner.invoke(cli.main, ["predict", str(model_dir), str(photo), "--sex", "F", "--age", "70",
                                       "--height", "158", "--out", str(out), "--overwrite"])
        assert res.exit_code == 2 and "would replace the input" in res.output, res.output
    assert (model_dir / "model.json").is_file() and photo.is_file()
    res = runner.invoke(cli.main, ["predict", str(model_dir), "--dataset", str(toy), "--out", str(toy),
                                   "--overwrite"])
    assert res.exit_code == 2 and (toy / "manifest.csv").is_file()
    res = runner.invoke(cli.main, ["train", str(toy), "--model", "mean", "--out", str(toy), "--overwrite"])
    assert res.exit_code == 2 and "would replace the input" in res.output and (toy / "manifest.csv").is_file()
