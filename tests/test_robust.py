"""Regression tests for issue 14: each finding of the hostile-user review, one or more tests.

Photos come from the bundled synthetic cohort (copied into tmp_path and damaged there);
no real photo is used.
"""

import errno
import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import cli
from smi_data.errors import LegsmiError, RunInterrupted
from smi_data.images import MIN_PHOTO_SIDE, ImageError, read_image, sha256_file
from smi_data.manifest import ManifestError, read_manifest
from smi_data.paths import STUDIO_COHORT
from smi_data.runs import RunRecord, atomic_write_csv, stage_output
from smi_data.toy import make_toy_dataset
from smi_data.validate import validate_dataset

PHOTO = STUDIO_COHORT / "images" / "P001_lateral.jpg"
HEADER = "subject_id,view,image,sex,age,height_cm,smi\n"


pytestmark = pytest.mark.usefixtures("shared_cache")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", 12, seed=3, size=256)


def _dataset(tmp_path: Path, rows: list[str], header: str = HEADER, photo: Path = PHOTO) -> Path:
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True, exist_ok=True)
    (ds / "images" / "a.jpg").write_bytes(photo.read_bytes())
    (ds / "manifest.csv").write_text(header + "".join(r + "\n" for r in rows), encoding="utf-8")
    return ds


# ----------------------------------------------------------------------------- 1: corrupt data is refused
def test_jpeg_cut_short_with_its_end_marker_put_back_is_refused(tmp_path):
    data = PHOTO.read_bytes()
    for frac in (0.5, 0.9, 0.98):
        p = tmp_path / f"cut{frac}.jpg"
        p.write_bytes(data[: int(len(data) * frac)] + b"\xff\xd9")
        with pytest.raises(ImageError, match="corrupt image data"):
            read_image(p)


def test_jpeg_with_a_zeroed_block_is_refused(tmp_path):
    data = bytearray(PHOTO.read_bytes())
    data[len(data) // 2: len(data) // 2 + 256] = bytes(256)
    p = tmp_path / "zeroed.jpg"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="corrupt image data"):
        read_image(p)


def test_png_with_a_bad_chunk_checksum_is_refused(tmp_path):
    img = cv2.imread(str(PHOTO))
    ok, buf = cv2.imencode(".png", img)
    data = bytearray(buf.tobytes())
    data[len(data) // 2] ^= 0xFF  # inside IDAT: its CRC no longer matches
    p = tmp_path / "flip.png"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError):
        read_image(p)


def test_strict_decoding_refuses_none_of_the_bundled_photos():
    photos = sorted((STUDIO_COHORT / "images").glob("*.jpg"))
    assert len(photos) == 200
    refused = []
    for p in photos:
        try:
            read_image(p)
        except ImageError as exc:
            refused.append(str(exc))
    assert refused == []


# ----------------------------------------------------------------------------- 2 + 3: signals and staged output
def _fake_spec(behaviour):
    from benchmarks.registry import ModelSpec
    from sklearn.base import BaseEstimator, RegressorMixin

    class Fake(BaseEstimator, RegressorMixin):
        def __init__(self, random_state=0):
            self.random_state = random_state

        def fit(self, X, y):
            behaviour()
            self.mean_ = float(np.mean(y))
            return self

        def predict(self, X):
            return np.full(len(X), self.mean_)

    return {"fake": ModelSpec("fake", "baseline", lambda random_state=0, **kw: Fake(random_state, **kw))}


def _swallowing_sigint():
    """What XGBoost's ctypes callback does: the KeyboardInterrupt becomes another error."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            pass
    except KeyboardInterrupt as exc:
        raise RuntimeError(f"XGBoostError: {exc!r}") from None


def _config(toy, out, **kw):
    from benchmarks.harness import BenchmarkConfig

    return BenchmarkConfig(dataset=str(toy), out=str(out), models=["fake"], views=["lateral"], folds=2,
                           report=False, ceiling=False, **kw)


def test_sigint_swallowed_inside_a_fit_still_ends_the_benchmark_as_interrupted(toy, tmp_path):
    from benchmarks.harness import run_benchmark

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(_config(toy, out), specs=_fake_spec(_swallowing_sigint))
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "interrupted (SIGINT)"
    assert not (out / "metrics.csv").exists()  # no complete-looking results beside the record


def test_interrupted_overwrite_keeps_the_old_complete_run(toy, tmp_path):
    from benchmarks.harness import run_benchmark

    out = tmp_path / "run"
    run_benchmark(_config(toy, out), specs=_fake_spec(lambda: None))
    before = sorted(p.name for p in out.iterdir())
    assert json.loads((out / "run.json").read_text())["status"] == "ok" and "metrics.csv" in before

    def sigterm():
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(KeyboardInterrupt):
        run_benchmark(_config(toy, out, overwrite=True), specs=_fake_spec(sigterm))
    assert sorted(p.name for p in out.iterdir()) == before
    assert json.loads((out / "run.json").read_text())["status"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left behind


def test_staged_output_swaps_only_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(OSError):
        with stage_output(target, overwrite=True) as st:
            (st.path / "new.txt").write_text("half")
            assert (target / "old.txt").is_file()  # the old result is there while the new one is written
            raise OSError(errno.ENOSPC, "No space left on device")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with stage_output(target, overwrite=True) as st:
        (st.path / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_run_record_without_an_old_result_says_interrupted(tmp_path):
    st = stage_output(tmp_path / "fresh")
    with pytest.raises(RunInterrupted):
        with RunRecord(st.path, "test", {}, 0, stage=st):
            raise RunInterrupted("SIGTERM")
    assert json.loads((tmp_path / "fresh" / "run.json").read_text())["status"] == "interrupted (SIGTERM)"


def test_disk_full_is_a_message_and_exit_1_and_the_old_file_is_kept(toy, tmp_path, monkeypatch):
    out = tmp_path / "splits.json"
    out.write_text("old")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    res = CliRunner().invoke(cli.main, ["splits", str(toy), "--out", str(out), "--overwrite"])
    assert res.exit_code == 1 and "disk is full" in res.output, res.output
    assert not isinstance(res.exception, OSError) or isinstance(res.exception, SystemExit)
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["splits.json"]


# ----------------------------------------------------------------------------- 4: a named pipe does not hang
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_waiting(tmp_path):
    from smi_features.extractor import file_sha256

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    old = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("hung on the FIFO")))
    signal.alarm(10)
    try:
        with pytest.raises(OSError, match="not a regular file"):
            file_sha256(fifo)
        with pytest.raises(OSError, match="not a regular file"):
            sha256_file(fifo)
        with pytest.raises(ImageError, match="not a regular file"):
            read_image(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ----------------------------------------------------------------------------- 5: no tracebacks
def test_extra_field_on_the_first_row_is_a_clear_problem(tmp_path):
    ds = _dataset(tmp_path, ["S1,lateral,images/a.jpg,M,40,5,170,7.5"])  # decimal comma in the age
    with pytest.raises(ManifestError, match=r"row 2: 8 fields but the header has 7.*decimal comma"):
        read_manifest(ds)
    report = validate_dataset(ds)
    assert any("row 2" in p and "decimal comma" in p for p in report.problems)
    res = CliRunner().invoke(cli.main, ["validate", str(ds)])
    # a clear failure (exit 1, the row named), not a traceback: CliRunner records the exit as SystemExit
    assert res.exit_code == 1, res.output
    assert "row 2" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception


def test_huge_px_per_cm_is_out_of_range(tmp_path):
    ds = _dataset(tmp_path, ["S1,lateral,images/a.jpg,M,40,170,7.5,1e308"], header=HEADER.strip() + ",px_per_cm\n")
    report = validate_dataset(ds, check_images=False)
    assert any("px_per_cm 1e+308" in p and "plausible range" in p for p in report.problems), report.problems


def test_a_5000_character_path_is_an_image_error(tmp_path):
    long = tmp_path / ("x" * 5000 + ".jpg")
    with pytest.raises(ImageError, match="cannot be read|not found"):
        read_image(long)
    ds = _dataset(tmp_path, ["S1,lateral," + "y" * 5000 + ".jpg,M,40,170,7.5"])
    report = validate_dataset(ds)
    assert report.problems and all("row 2" in p for p in report.problems)


def _model_folder(tmp_path: Path, name: str = "m", weights: bytes = b'{"learner": 1}') -> Path:
    from smi_data.modelfile import write_model_meta

    d = tmp_path / name
    d.mkdir()
    (d / "xgb_model.json").write_bytes(weights)
    write_model_meta(d, family="features", model="xgb-features", config={"n_estimators": 10},
                     extra={"view": "lateral"})
    return d


def test_bad_values_in_model_json_are_model_file_errors(tmp_path):
    from smi_data.modelfile import ModelFileError, check_config_values, read_model_meta

    d = _model_folder(tmp_path)
    meta = json.loads((d / "model.json").read_text())
    (d / "model.json").write_text(json.dumps(dict(meta, view="sideways")))
    with pytest.raises(ModelFileError, match="view 'sideways'"):
        read_model_meta(d)
    with pytest.raises(ModelFileError, match="expected an integer"):
        check_config_values(d / "model.json", {"n_estimators": "lots"}, {"n_estimators": 200})


# ----------------------------------------------------------------------------- 6: silently wrong input
@pytest.mark.parametrize("col,value", [("age", "4_0"), ("height_cm", "1_70"), ("age", "\u0664\u0660"),
                                       ("height_cm", "\uff11\uff17\uff10"), ("smi", "inf")])
def test_numbers_python_reads_but_pandas_does_not_are_refused(tmp_path, col, value):
    cells = {"age": "40", "height_cm": "170", "smi": "7.5"} | {col: value}
    ds = _dataset(tmp_path, [f"S1,lateral,images/a.jpg,M,{cells['age']},{cells['height_cm']},{cells['smi']}"])
    report = validate_dataset(ds, check_images=False)
    assert any(f"{col} '{value}'" in p for p in report.problems), report.problems


def test_duplicated_header_is_refused(tmp_path):
    ds = _dataset(tmp_path, ["S1,lateral,images/a.jpg,M,40,170,7.5,171"], header=HEADER.strip() + ",height_cm\n")
    with pytest.raises(ManifestError, match="'height_cm' appears twice"):
        read_manifest(ds)


def test_spreadsheet_formulas_are_neutralised_in_output_csvs(tmp_path):
    df = pd.DataFrame({"=HYPERLINK(\"x\")": ["a"], "note": ["=cmd|' /C calc'!A0"], "b": ["+1+1"], "c": ["@SUM(A1)"],
                       "d": ["-3.5"], "e": [-2.0]})
    atomic_write_csv(df, tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv", dtype=str)
    assert list(back.columns)[0].startswith("'=")
    assert back.loc[0, "note"].startswith("'=") and back.loc[0, "b"] == "'+1+1" and back.loc[0, "c"] == "'@SUM(A1)"
    assert back.loc[0, "d"] == "-3.5" and float(back.loc[0, "e"]) == -2.0  # numbers are left alone


# ----------------------------------------------------------------------------- 7: tampering
def test_changed_weights_are_refused(tmp_path):
    from smi_data.modelfile import ModelFileError, read_model_meta

    d = _model_folder(tmp_path)
    read_model_meta(d)
    (d / "xgb_model.json").write_bytes(b'{"learner": 50}')  # same size, leaf values scaled
    with pytest.raises(ModelFileError, match="checksum does not match"):
        read_model_meta(d)


def test_weights_symlinked_from_outside_are_refused(tmp_path):
    from smi_data.modelfile import ModelFileError, read_model_meta

    d = _model_folder(tmp_path)
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes((d / "xgb_model.json").read_bytes())
    (d / "xgb_model.json").unlink()
    (d / "xgb_model.json").symlink_to(outside)
    with pytest.raises(ModelFileError, match="symbolic link"):
        read_model_meta(d)


def test_model_json_copied_from_another_model_is_refused(tmp_path):
    from smi_data.modelfile import ModelFileError, read_model_meta

    a = _model_folder(tmp_path, "a", b'{"learner": 1}')
    b = _model_folder(tmp_path, "b", b'{"learner": 2}')
    (b / "model.json").write_bytes((a / "model.json").read_bytes())
    with pytest.raises(ModelFileError, match="another model"):
        read_model_meta(b)


def test_a_real_booster_with_scaled_leaves_is_refused(toy, tmp_path):
    res = CliRunner().invoke(cli.main, ["train", str(toy), "--model", "xgb-features", "--out", str(tmp_path / "m"),
                                        "--set", "xgb-features.n_estimators=5"])
    assert res.exit_code == 0, res.output
    booster = tmp_path / "m" / "xgb_model.json"
    model = json.loads(booster.read_text())
    text = json.dumps(model)
    import re

    scaled = re.sub(r'"split_conditions": \[([^\]]*)\]',
                    lambda m: ('"split_conditions": ['
                               + ", ".join(str(float(v) * 50) for v in m.group(1).split(",")) + "]"),
                    text, count=1)
    assert scaled != text
    booster.write_text(scaled)
    res = CliRunner().invoke(cli.main, ["predict", str(tmp_path / "m"), str(toy / "images" / "T001_lateral.jpg"),
                                        "--sex", "F", "--age", "70", "--height", "160", "--out", str(tmp_path / "p")])
    assert res.exit_code != 0 and "checksum does not match" in res.output, res.output


# ----------------------------------------------------------------------------- 8: imperfect photos
def test_greyscale_mirrored_and_tiny_photos_are_refused_with_a_reason(tmp_path):
    img = cv2.imread(str(PHOTO))
    cases = {
        "grey.jpg": (cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR), "greyscale"),
        "mirror.jpg": (np.ascontiguousarray(img[:, ::-1]), "mirrored"),
        "tiny.jpg": (cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA), f"minimum of {MIN_PHOTO_SIDE}"),
    }
    for name, (arr, reason) in cases.items():
        cv2.imwrite(str(tmp_path / name), arr)
        with pytest.raises(ImageError, match=reason):
            read_image(tmp_path / name)
    assert read_image(PHOTO).shape == img.shape  # the photo itself is fine


# ----------------------------------------------------------------------------- 9: configuration failures
@pytest.mark.parametrize("item,match", [("mean.foo=1", "has no parameter 'foo'"),
                                        ("xgb-features.n_estimators=lots", "expected an integer"),
                                        ("xgb-features.max_depth={\"a\": 1}", "mapping"),
                                        ("covariates.use_weight=1", "expected true or false")])
def test_bad_overrides_stop_before_any_fit(item, match):
    from benchmarks.harness import parse_overrides
    from benchmarks.overrides import check_overrides
    from smi_data.errors import UsageError

    with pytest.raises(UsageError, match=match):
        check_overrides(parse_overrides([item]))


def test_bad_set_is_exit_2_on_benchmark(toy, tmp_path):
    res = CliRunner().invoke(cli.main, ["benchmark", str(toy), "--models", "mean", "--set", "mean.foo=1",
                                        "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "has no parameter 'foo'" in res.output, res.output
    assert not (tmp_path / "b").exists()


def test_ablate_refuses_a_non_cnn_as_cnn_model(toy, tmp_path):
    res = CliRunner().invoke(cli.main, ["ablate", str(toy), "--cnn-model", "xgb-features",
                                        "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "xgb-features" in res.output


def test_every_fit_of_a_model_failed_is_exit_1(toy, tmp_path):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(toy, ds)
    for p in (ds / "images").glob("*.jpg"):
        p.write_bytes(b"not an image")
    res = CliRunner().invoke(cli.main, ["benchmark", str(ds), "--models", "mean,tape", "--views", "lateral",
                                        "--folds", "2", "--out", str(tmp_path / "b")])
    assert res.exit_code == 1 and "every fit of tape failed" in res.output, res.output


def test_train_takes_the_same_set_as_benchmark(toy, tmp_path):
    res = CliRunner().invoke(cli.main, ["train", str(toy), "--model", "covariates", "--out", str(tmp_path / "m"),
                                        "--set", "covariates.use_weight=true"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["config"]["use_weight"] is True or meta["config"].get("params", {}).get("use_weight") is True \
        or json.loads((tmp_path / "m" / "run.json").read_text())["config"]["overrides"] == {"use_weight": True}
    res = CliRunner().invoke(cli.main, ["train", str(toy), "--model", "covariates", "--out", str(tmp_path / "m2"),
                                        "--set", "covariates.nope=1"])
    assert res.exit_code == 2 and "has no parameter 'nope'" in res.output


# ----------------------------------------------------------------------------- one error base
def test_every_error_class_derives_from_legsmi_error():
    from benchmarks.harness import BenchmarkError
    from benchmarks.registry import ModelUnavailableError
    from smi_data.modelfile import ModelFileError
    from smi_data.runs import OutputExistsError
    from smi_data.splits import SplitsError

    for cls in (ImageError, ManifestError, ModelFileError, OutputExistsError, SplitsError, BenchmarkError,
                ModelUnavailableError):
        assert issubclass(cls, LegsmiError), cls


def test_main_turns_a_legsmi_error_into_a_message_and_its_exit_code(monkeypatch):
    import smi_data.validate as v

    def boom(*a, **k):
        raise ManifestError(["row 9: something specific"])

    monkeypatch.setattr(v, "validate_dataset", boom)
    res = CliRunner().invoke(cli.main, ["validate", "x"])
    assert res.exit_code == 1 and "row 9: something specific" in res.output
    assert isinstance(res.exception, SystemExit)


def test_nested_overrides_the_scikit_learn_way():
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from benchmarks.overrides import check_overrides
    from benchmarks.registry import ModelSpec
    from smi_data.errors import UsageError

    specs = {"piped": ModelSpec("piped", "baseline", lambda random_state=0, **kw: make_pipeline(
        StandardScaler(), Ridge()).set_params(**kw))}
    check_overrides({"piped": {"ridge__alpha": 2.5}}, specs)
    assert specs["piped"].build(0, ridge__alpha=2.5).get_params()["ridge__alpha"] == 2.5
    with pytest.raises(UsageError, match="has no parameter 'ridge__nope'"):
        check_overrides({"piped": {"ridge__nope": 1}}, specs)
    with pytest.raises(UsageError, match="expected a number"):
        check_overrides({"piped": {"ridge__alpha": "big"}}, specs)


def test_disk_full_in_the_middle_of_a_benchmark_keeps_the_old_run(toy, tmp_path, monkeypatch):
    import smi_data.runs as runs
    from benchmarks.harness import run_benchmark
    from smi_data.errors import OutputError

    out = tmp_path / "run"
    run_benchmark(_config(toy, out), specs=_fake_spec(lambda: None))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    real = runs.atomic_write_csv

    def full(df, path, **kw):
        if Path(path).name == "metrics.csv":
            raise OutputError(f"{path}: No space left on device; the disk is full")
        return real(df, path, **kw)

    monkeypatch.setattr(runs, "atomic_write_csv", full)
    with pytest.raises(OutputError, match="disk is full"):
        run_benchmark(_config(toy, out, overwrite=True), specs=_fake_spec(lambda: None))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_staged_folder_left_by_a_killed_run_is_removed_by_the_next_run(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f".out.staging-{dead}-abc"
    stale.mkdir()
    (stale / "run.json").write_text('{"status": "running"}')
    mine = tmp_path / f".out.staging-{os.getpid()}-xyz"  # a live process's: kept
    mine.mkdir()
    with stage_output(tmp_path / "out") as st:
        (st.path / "a.txt").write_text("a")
    assert not stale.exists() and mine.exists() and (tmp_path / "out" / "a.txt").is_file()
