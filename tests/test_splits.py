"""Saved splits: subject-level, stratified, deterministic, and tied to their dataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli import main
from smi_data.manifest import read_manifest, to_samples
from smi_data.splits import (
    SplitsError,
    iter_fold_indices,
    iter_folds,
    load_splits,
    make_splits,
    save_splits,
    subject_table,
    subjects_fingerprint,
    summarize_splits,
)


def cohort(n_men: int = 50, n_women: int = 50, seed: int = 0, both_views: bool = True) -> pd.DataFrame:
    """Manifest-like rows: two images per subject (lateral, posterior) unless ``both_views`` is False."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_men + n_women):
        sex = "M" if i < n_men else "F"
        smi = rng.normal(7.6 if sex == "M" else 6.0, 0.8)
        for view in ("lateral", "posterior") if both_views or i % 3 else ("lateral",):
            rows.append({"subject_id": f"S{i:03d}", "view": view, "sex": sex, "smi": round(smi, 2)})
    return pd.DataFrame(rows)


def test_folds_partition_subjects_in_every_repeat():
    m = cohort(37, 23, both_views=False)
    sp = make_splits(m, n_folds=5, seeds=[0, 1, 2], dataset="x")
    subjects = sorted(m["subject_id"].unique())
    assert sp.subjects == subjects and sp.n_repeats == 3
    for r in range(3):
        seen = []
        for _fold, train, test in iter_folds(sp, r):
            assert not set(train) & set(test)
            assert sorted(train + test) == subjects
            assert test == sorted(test)
            seen += test
        # every subject in exactly one test fold
        assert sorted(seen) == subjects and len(seen) == len(set(seen))


def test_images_of_a_subject_stay_together():
    m = cohort(20, 20)
    sp = make_splits(m, n_folds=4, seeds=3)
    for _fold, train_idx, test_idx in iter_fold_indices(sp, m, 0):
        train_s, test_s = set(m["subject_id"].iloc[train_idx]), set(m["subject_id"].iloc[test_idx])
        assert not train_s & test_s
        assert len(train_idx) + len(test_idx) == len(m)
        # both images of each test subject are in the test rows
        assert all((m["subject_id"].iloc[test_idx] == s).sum() == 2 for s in test_s)


@pytest.mark.parametrize("n_folds", [2, 3, 5, 7, 10])
def test_sex_counts_within_one_of_even_share(n_folds):
    m = cohort(50, 50, seed=n_folds)
    sp = make_splits(m, n_folds=n_folds, seeds=range(5))
    table = subject_table(m).set_index("subject_id")
    for r in range(sp.n_repeats):
        for fold, _, test in iter_folds(sp, r):
            sex = table.loc[test, "sex"]
            for s, total in (("M", 50), ("F", 50)):
                assert abs((sex == s).sum() - total / n_folds) < 1, (r, fold, s, (sex == s).sum())
            # each sex x tertile stratum is spread evenly too
            for stratum, count in table["stratum"].value_counts().items():
                assert abs((table.loc[test, "stratum"] == stratum).sum() - count / n_folds) < 1


def test_tertiles_are_within_sex():
    t = subject_table(cohort(30, 30))
    for _sex, grp in t.groupby("sex"):
        assert grp["tertile"].value_counts().to_dict() == {0: 10, 1: 10, 2: 10}
        # tertile increases with SMI inside each sex
        assert (grp.groupby("tertile")["smi"].max().diff().dropna() > 0).all()
        assert grp.groupby("tertile")["smi"].min().iloc[1] > grp[grp["tertile"] == 0]["smi"].max()


def test_same_seed_same_bytes_different_seed_different_folds(tmp_path):
    m = cohort(40, 35)
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    save_splits(make_splits(m, 5, [7, 8], dataset="ds"), a)
    # Same inputs in another row order: still the same file.
    save_splits(make_splits(m.sample(frac=1, random_state=1), 5, [7, 8], dataset="ds"), b)
    assert a.read_bytes() == b.read_bytes()
    save_splits(make_splits(m, 5, [9, 8], dataset="ds"), c)
    ja, jc = json.loads(a.read_text()), json.loads(c.read_text())
    assert ja["repeats"][0]["test_folds"] != jc["repeats"][0]["test_folds"]
    assert ja["repeats"][1]["test_folds"] == jc["repeats"][1]["test_folds"]  # seed 8 in both
    assert ja["repeats"][0]["test_folds"] != ja["repeats"][1]["test_folds"]


def test_file_records_what_was_done(tmp_path):
    m = cohort(10, 10)
    path = save_splits(make_splits(m, 4, [3, 4], dataset="data/cohort"), tmp_path / "s.json")
    d = json.loads(path.read_text())
    assert d["format"] == "legsmi-splits" and d["format_version"] == 1
    assert d["n_folds"] == 4 and d["seeds"] == [3, 4] and d["dataset"] == "data/cohort"
    assert "StratifiedKFold" in d["method"] and d["stratify"] == "sex x SMI tertile (within sex)"
    assert d["n_subjects"] == 20
    assert d["subjects_sha256"] == subjects_fingerprint(m["subject_id"].unique())
    assert [r["seed"] for r in d["repeats"]] == [3, 4]
    assert all(len(r["test_folds"]) == 4 for r in d["repeats"])
    # round trip
    sp = load_splits(path, m)
    assert sp.test_folds == make_splits(m, 4, [3, 4]).test_folds
    assert list(iter_folds(sp, 1)) == list(iter_folds(make_splits(m, 4, [3, 4]), 1))


def test_load_refuses_another_dataset(tmp_path):
    m = cohort(10, 10)
    path = save_splits(make_splits(m, 5, 0, dataset="first"), tmp_path / "s.json")
    fewer = m[m["subject_id"] != "S004"]
    with pytest.raises(SplitsError, match=r"1 subject\(s\) in the splits are not in the dataset: S004"):
        load_splits(path, fewer)
    more = pd.concat([m, pd.DataFrame([{"subject_id": "NEW1", "view": "lateral", "sex": "F", "smi": 6.0}])])
    with pytest.raises(SplitsError, match=r"1 subject\(s\) of the dataset are not in the splits: NEW1"):
        load_splits(path, more)
    other = cohort(10, 10).assign(subject_id=lambda d: "X" + d["subject_id"])
    with pytest.raises(SplitsError, match="made from another dataset"):
        load_splits(path, other)
    with pytest.raises(SplitsError, match="not in the splits"):
        list(iter_fold_indices(load_splits(path), more))
    load_splits(path, list(m["subject_id"]))  # subject ids alone are accepted


def test_load_refuses_bad_files(tmp_path):
    m = cohort(6, 6)
    good = json.loads(json.dumps(make_splits(m, 3, [0, 1]).to_dict()))

    def write(obj, name="bad.json"):
        p = tmp_path / name
        p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        return p

    with pytest.raises(SplitsError, match="not found"):
        load_splits(tmp_path / "none.json")
    with pytest.raises(SplitsError, match="not a readable JSON"):
        load_splits(write("{oops"))
    with pytest.raises(SplitsError, match="not a legsmi splits file"):
        load_splits(write({**good, "format": "other"}))
    with pytest.raises(SplitsError, match="format_version 2 is not supported"):
        load_splits(write({**good, "format_version": 2}))
    with pytest.raises(SplitsError, match="malformed"):
        load_splits(write({k: v for k, v in good.items() if k != "repeats"}))
    moved = json.loads(json.dumps(good))
    moved["repeats"][0]["test_folds"][0].append(moved["repeats"][0]["test_folds"][1][0])
    with pytest.raises(SplitsError, match="more than one fold"):
        load_splits(write(moved))
    edited = json.loads(json.dumps(good))
    for rep in edited["repeats"]:  # a subject renamed consistently, fingerprint left alone
        rep["test_folds"] = [[("S999" if s == "S000" else s) for s in f] for f in rep["test_folds"]]
    with pytest.raises(SplitsError, match="subjects_sha256"):
        load_splits(write(edited))
    with pytest.raises(SplitsError, match="has 3 folds, expected 4"):
        load_splits(write({**good, "n_folds": 4}))


def test_bad_requests_are_refused():
    m = cohort(3, 3)
    with pytest.raises(ValueError, match="between 2 and the number of subjects"):
        make_splits(m, 7, 0)
    with pytest.raises(ValueError, match="distinct"):
        make_splits(m, 2, [1, 1])
    with pytest.raises(ValueError, match="no smi value"):
        make_splits(m.assign(smi=np.where(m["subject_id"] == "S001", np.nan, m["smi"])), 2, 0)
    # Tiny data: strata too small are coarsened, folds still partition the subjects.
    sp = make_splits(m, 3, 0)
    assert sp.stratify == "sex"
    assert sorted(s for f in sp.test_folds[0] for s in f) == sp.subjects


def _write_dataset(ds: Path, n: int = 12) -> None:
    ds.mkdir()
    cv2.imwrite(str(ds / "a.png"), np.zeros((8, 8), np.uint8))
    with open(ds / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "view", "image", "sex", "age", "height_cm", "smi"])
        for i in range(n):
            for view in ("lateral", "posterior"):
                w.writerow([f"P{i:02d}", view, "a.png", "MF"[i % 2], 40 + i, 160 + i, 5.5 + 0.2 * i])


def test_cli_splits_writes_file_and_refuses_overwrite(tmp_path):
    ds = tmp_path / "ds"
    _write_dataset(ds)
    out = tmp_path / "splits.json"
    run = CliRunner().invoke
    r = run(main, ["splits", str(ds), "--folds", "3", "--seed", "5", "--repeats", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "repeat 1 (seed 6)" in r.output and "M 2, F 2" in r.output
    first = out.read_bytes()
    r = run(main, ["splits", str(ds), "--folds", "3", "--seed", "5", "--out", str(out)])
    assert r.exit_code != 0 and "--overwrite" in r.output
    assert out.read_bytes() == first
    r = run(main, ["splits", str(ds), "--folds", "3", "--seed", "5", "--repeats", "2", "--out", str(out),
                   "--overwrite"])
    assert r.exit_code == 0 and out.read_bytes() == first
    manifest = read_manifest(ds)
    sp = load_splits(out, manifest)
    assert sp.seeds == [5, 6]
    samples = to_samples(manifest, "both")
    assert sum(len(t) for _, _, t in iter_fold_indices(sp, samples, 1)) == 12


def test_summary_mentions_counts():
    sp = make_splits(cohort(10, 10), 2, 0)
    text = summarize_splits(sp)
    assert "2-fold subject-level splits, 1 repeat(s) (seeds 0), 20 subjects" in text
    assert text.count("M 5, F 5") == 2
