"""Property-based tests (Hypothesis) for the manifest reader and validator and for image decoding,
and a small run of the fuzz campaign (``legsmi fuzz``, benchmarks/fuzz.py).

The properties: whatever bytes a manifest or an image file holds, the tools either
accept it or refuse it with their own error (never another exception); what the
manifest reader accepts has finite numbers where numbers are required; a decoded
image has the shape asked for.
"""

import csv
import io
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from smi_data.images import ImageError, read_image
from smi_data.manifest import ManifestError, read_manifest
from smi_data.paths import STUDIO_COHORT
from smi_data.validate import validate_dataset

# Hypothesis keeps caches (unicode tables, constants) in a folder: never inside the repository.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "legsmi-hypothesis"))

PHOTO_BYTES = (STUDIO_COHORT / "images" / "P002_lateral.jpg").read_bytes()
COLUMNS = ["subject_id", "view", "image", "sex", "age", "height_cm", "smi"]
SETTINGS = settings(max_examples=60, deadline=None, database=None,  # no example database in the repository
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

cell = st.one_of(
    st.sampled_from(["P1", "P2", "lateral", "posterior", "M", "F", "images/a.jpg", "41", "170.5", "7.2", "",
                     "4_0", "1e308", "inf", "nan", "-1", "40,5", "=1+1", "\u0664\u0661", " 41 ", "../x.jpg",
                     "/etc/passwd", "both", "m"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
)


def _write(ds: Path, text: str | bytes) -> Path:
    ds.mkdir(parents=True, exist_ok=True)
    (ds / "images").mkdir(exist_ok=True)
    if not (ds / "images" / "a.jpg").exists():
        (ds / "images" / "a.jpg").write_bytes(PHOTO_BYTES)
    data = text.encode("utf-8") if isinstance(text, str) else text
    (ds / "manifest.csv").write_bytes(data)
    return ds


def _check_manifest(ds: Path) -> None:
    report = validate_dataset(ds, check_images=False)  # never raises: every problem is a line
    assert all(isinstance(p, str) and p for p in report.problems)
    try:
        man = read_manifest(ds)
    except ManifestError as exc:
        assert exc.problems
        return
    assert report.ok, report.problems  # the reader and the validator agree
    for col in ("age", "height_cm", "smi"):
        assert np.isfinite(man[col].to_numpy(float)).all(), col


@SETTINGS
@given(rows=st.lists(st.lists(cell, min_size=5, max_size=9), min_size=0, max_size=6),
       header=st.permutations(COLUMNS + ["px_per_cm", "weight_kg"]).map(
           lambda c: c[: random.Random(len(c)).randint(5, 9)]))
def test_manifest_tables_are_accepted_or_refused_never_crash(tmp_path_factory, rows, header):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    _check_manifest(_write(tmp_path_factory.mktemp("m"), buf.getvalue()))


@SETTINGS
@given(data=st.binary(max_size=400))
def test_manifest_bytes_are_accepted_or_refused_never_crash(tmp_path_factory, data):
    base = ("subject_id,view,image,sex,age,height_cm,smi\nP1,lateral,images/a.jpg,M,41,170.5,7.2\n").encode()
    _check_manifest(_write(tmp_path_factory.mktemp("b"), base + data))


@SETTINGS
@given(value=st.text(max_size=8))
def test_a_number_the_validator_accepts_is_the_number_the_models_get(tmp_path_factory, value):
    ds = _write(tmp_path_factory.mktemp("n"), "subject_id,view,image,sex,age,height_cm,smi\n"
                                              f'P1,lateral,images/a.jpg,M,"{value.replace(chr(34), "")}",170,7\n')
    _check_manifest(ds)


@SETTINGS
@given(cuts=st.lists(st.integers(0, len(PHOTO_BYTES) - 1), min_size=1, max_size=3),
       flips=st.lists(st.tuples(st.integers(0, len(PHOTO_BYTES) - 1), st.integers(0, 255)), max_size=6),
       eoi=st.booleans())
def test_damaged_jpeg_is_decoded_or_refused_never_crashes(tmp_path_factory, cuts, flips, eoi):
    b = bytearray(PHOTO_BYTES)
    for i, v in flips:
        b[i] = v
    cut = min(cuts)
    data = bytes(b[: max(cut, 1)]) + (b"\xff\xd9" if eoi else b"")
    p = tmp_path_factory.mktemp("j") / "x.jpg"
    p.write_bytes(data)
    try:
        img = read_image(p)
    except ImageError as exc:
        assert str(p) in str(exc)
        return
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


@SETTINGS
@given(data=st.binary(max_size=2048), color=st.booleans())
def test_any_bytes_are_decoded_or_refused(tmp_path_factory, data, color):
    p = tmp_path_factory.mktemp("r") / "x.png"
    p.write_bytes(data)
    try:
        img = read_image(p, color=color)
    except ImageError:
        return
    assert img.ndim == (3 if color else 2)


def test_cutting_a_jpeg_anywhere_and_putting_its_end_marker_back_is_always_refused(tmp_path):
    rng = random.Random(0)
    for k in range(40):
        cut = rng.randrange(len(PHOTO_BYTES) // 20, len(PHOTO_BYTES) - 8)
        p = tmp_path / f"c{k}.jpg"
        p.write_bytes(PHOTO_BYTES[:cut] + b"\xff\xd9")
        with pytest.raises(ImageError):
            read_image(p)


# ----------------------------------------------------------------------------- the campaign itself
def test_every_mutation_category_makes_a_file(tmp_path):
    from benchmarks.fuzz import IMAGE_CATEGORIES, mutate_image

    rng = random.Random(1)
    for cat in IMAGE_CATEGORIES:
        data, suffix, detail = mutate_image(PHOTO_BYTES, cat, rng)
        assert isinstance(data, bytes) and suffix in (".jpg", ".png") and detail
        if cat not in ("non-image",):
            assert data != PHOTO_BYTES


@pytest.mark.slow
def test_a_small_fuzz_run_has_no_tracebacks_hangs_or_implausible_estimates(tmp_path, monkeypatch):
    from benchmarks.fuzz import FuzzConfig, run_fuzz

    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(tmp_path / "cache"))
    # the studio cohort: its unmutated photos are all measurable, so a refused control is a decoding bug
    res = run_fuzz(FuzzConfig(out=str(tmp_path / "fz"), cohort=str(STUDIO_COHORT), n_images=28, n_random_manifests=4,
                              seed=3, timeout_s=120, train_models=False))
    t = res["summary"]["totals"]
    assert t["images"] == 28 and t["manifests"] > 60
    assert (t["tracebacks"], t["hangs"], t["implausible_estimates"], t["silently_wrong_manifests"],
            t["formula_cells_written"]) == (0, 0, 0, 0, 0), res["text"]
    assert t["control_refusals"] == 0
    assert (tmp_path / "fz" / "fuzz.md").is_file() and (tmp_path / "fz" / "run.json").is_file()


def test_accepted_estimates_are_compared_with_the_unmutated_photo(tmp_path):
    """A mutated photo measured far from its original counts as measured wrong (``far``)."""
    from benchmarks.fuzz import FAR_KG_M2, CorpusItem, _compare_with_unmutated, summarise

    items = [CorpusItem("images/00000_rotated_lateral.jpg", "rotated", "rotated 180 degrees", "images/P1.jpg",
                        "lateral", "F", 40.0, 160.0, 6.0),
             CorpusItem("images/00001_header-flip_lateral.jpg", "header-flip", "1 bit", "images/P1.jpg",
                        "lateral", "F", 40.0, 160.0, 6.0)]
    results = [{"kind": "image", "item": it.path, "category": it.category, "source": it.source, "stage": "predict",
                "outcome": "accepted", "smi_pred": smi} for it, smi in zip(items, (6.0 + FAR_KG_M2 + 0.5, 6.1))]
    results.append({"kind": "image", "item": "images/00002_noise_lateral.jpg", "category": "noise",
                    "source": "images/P1.jpg", "stage": "predict", "outcome": "refused", "smi_pred": None})
    calls = []

    class FakePool:
        def run(self, kind, task, timeout):
            calls.append(task["abs_path"])
            return [{"stage": "validate", "outcome": "accepted"},
                    {"stage": "predict", "outcome": "accepted", "smi_pred": 6.0}]

    _compare_with_unmutated(results, items, tmp_path, FakePool(), 10.0)
    assert calls == [str(tmp_path / "images/P1.jpg")]  # one reference per source photo
    assert results[0]["far"] and results[0]["deviation"] == pytest.approx(FAR_KG_M2 + 0.5)
    assert not results[1]["far"] and results[1]["deviation"] == pytest.approx(0.1)
    assert "far" not in results[2]
    totals = summarise(results)["totals"]
    assert totals["far_from_unmutated"] == 1 and totals["compared_with_unmutated"] == 2
