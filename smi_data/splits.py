"""Saved cross-validation splits: subject-level folds, stratified, written once as JSON.

Every model of a benchmark reads the same file, so all are tested on the same people.
Folds are made over *subjects* (one row per person), so both views of a person always
fall in the same fold.

Method
------
Each subject gets a stratum ``sex x SMI tertile``; tertiles are taken *within* each sex
(men's SMI is higher than women's, so pooled tertiles would mostly re-encode sex).
The subjects, ordered by stratum then ``subject_id``, are split with scikit-learn's
``StratifiedKFold(n_folds, shuffle=True, random_state=seed)``. With one row per subject,
each subject is its own group, so this is a stratified *group* k-fold. It is used
instead of ``StratifiedGroupKFold`` because the latter's greedy assignment was measured
to leave a fold up to 1.9 men away from the even share (3 and 7 folds, 100 subjects),
whereas ``StratifiedKFold`` deals each stratum round-robin: every stratum, each sex
(its strata are adjacent) and the fold size are all within one of the even share.
Repeated cross-validation: one repeat per seed, all in one file.

File (JSON, sorted keys, stable order: same inputs give the same bytes)::

    {"format": "legsmi-splits", "format_version": 1, "method": ..., "stratify": ...,
     "n_folds": 5, "seeds": [0, 1], "dataset": "path as given",
     "n_subjects": 120, "subjects_sha256": "<sha256 of the sorted subject ids>",
     "repeats": [{"seed": 0, "test_folds": [["S001", ...], ...]}, ...]}
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from .errors import LegsmiError

FORMAT = "legsmi-splits"
FORMAT_VERSION = 1
METHOD = (
    "subject-level stratified k-fold: scikit-learn StratifiedKFold(shuffle=True, random_state=seed) "
    "over one row per subject, rows ordered by stratum then subject_id"
)


class SplitsError(LegsmiError, ValueError):
    """A splits file that cannot be used (format, content, or another dataset)."""


@dataclass
class Splits:
    """Folds for one or more repeats of k-fold cross-validation.

    Attributes
    ----------
    n_folds : int
    seeds : list of int
        One repeat per seed.
    dataset : str
        The dataset folder the splits were made from (as given; informational).
    subjects : list of str
        Every subject, sorted.
    test_folds : list of list of list of str
        ``test_folds[repeat][fold]``: the sorted test subjects of that fold.
    stratify : str
        What the folds were stratified by.
    subject_table : DataFrame or None
        ``subject_id`` -> ``sex``, ``smi``, ``stratum`` when made here (not saved).
    """

    n_folds: int
    seeds: list[int]
    dataset: str
    subjects: list[str]
    test_folds: list[list[list[str]]]
    stratify: str = "sex x SMI tertile (within sex)"
    method: str = METHOD
    subject_table: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def n_repeats(self) -> int:
        return len(self.test_folds)

    @property
    def fingerprint(self) -> str:
        return subjects_fingerprint(self.subjects)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "stratify": self.stratify,
            "n_folds": int(self.n_folds),
            "seeds": [int(s) for s in self.seeds],
            "dataset": str(self.dataset),
            "n_subjects": len(self.subjects),
            "subjects_sha256": self.fingerprint,
            "repeats": [
                {"seed": int(seed), "test_folds": [list(f) for f in folds]}
                for seed, folds in zip(self.seeds, self.test_folds)
            ],
        }


def subjects_fingerprint(subject_ids: Iterable[str]) -> str:
    """SHA-256 of the sorted, newline-joined subject ids: identifies a dataset's subject list."""
    ids = sorted(str(s) for s in subject_ids)
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def subject_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per subject with ``sex``, ``smi`` and the stratum label ``stratum``.

    The SMI tertile (0, 1, 2) is computed within each sex from the rank of SMI (ties
    broken by subject_id), as ``floor(3 * rank / n_sex)``, so the tertiles are as even
    as the counts allow.
    """
    missing = [c for c in ("subject_id", "sex", "smi") if c not in manifest.columns]
    if missing:
        raise ValueError(f"splits need the column(s) {', '.join(missing)} in the manifest")
    subjects = (
        manifest.assign(subject_id=manifest["subject_id"].astype(str))
        .groupby("subject_id", sort=True)[["sex", "smi"]]
        .first()
        .reset_index()
    )
    smi = pd.to_numeric(subjects["smi"], errors="coerce")
    if smi.isna().any():
        bad = subjects.loc[smi.isna(), "subject_id"].tolist()
        raise ValueError(
            f"splits are stratified by SMI, but {len(bad)} subject(s) have no smi value "
            f"(e.g. {', '.join(bad[:5])}); give every subject a label"
        )
    subjects["smi"] = smi.astype(float)
    tertile = np.zeros(len(subjects), dtype=int)
    for _sex, grp in subjects.groupby("sex", sort=True):
        order = grp.sort_values(["smi", "subject_id"]).index
        rank = np.arange(len(order))
        tertile[subjects.index.get_indexer(order)] = (3 * rank) // len(order)
    subjects["tertile"] = tertile
    subjects["stratum"] = subjects["sex"].astype(str) + "-t" + subjects["tertile"].astype(str)
    return subjects


def make_splits(
    manifest: pd.DataFrame,
    n_folds: int,
    seeds: int | Iterable[int],
    dataset: str | os.PathLike = "",
) -> Splits:
    """Make subject-level folds stratified by sex x SMI tertile, one repeat per seed.

    Parameters
    ----------
    manifest : DataFrame
        Manifest rows (:func:`smi_data.manifest.read_manifest`) or a sample table:
        needs ``subject_id``, ``sex`` and ``smi`` (kg/m^2).
    n_folds : int
        Number of folds, 2 <= n_folds <= number of subjects.
    seeds : int or iterable of int
        One repeat of k-fold per seed (distinct seeds).
    dataset : path-like
        Recorded in the file for the reader's information.

    Returns
    -------
    Splits
    """
    seeds = [int(seeds)] if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct (a repeated seed repeats the same folds): {seeds}")
    table = subject_table(manifest)
    n = len(table)
    if not 2 <= int(n_folds) <= n:
        raise ValueError(f"n_folds must be between 2 and the number of subjects ({n}), got {n_folds}")
    # Order rows by stratum so each sex's strata are adjacent in StratifiedKFold's class
    # encoding (first appearance), which keeps each sex within one of the even share.
    table = table.sort_values(["stratum", "subject_id"]).reset_index(drop=True)
    labels, stratify = _labels_with_enough_members(table, int(n_folds))

    from sklearn.model_selection import StratifiedKFold

    test_folds = []
    for seed in seeds:
        cv = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # Strata smaller than n_folds are fine: they are spread over as many folds as they have members.
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            folds = [sorted(table["subject_id"].iloc[test].tolist()) for _, test in cv.split(table, labels)]
        test_folds.append(folds)
    return Splits(
        n_folds=int(n_folds),
        seeds=seeds,
        dataset=str(dataset),
        subjects=sorted(table["subject_id"].tolist()),
        test_folds=test_folds,
        stratify=stratify,
        subject_table=table.set_index("subject_id"),
    )


def _labels_with_enough_members(table: pd.DataFrame, n_folds: int) -> tuple[np.ndarray, str]:
    # StratifiedKFold refuses labels when no class has n_folds members; coarsen for tiny datasets.
    for column, name in (("stratum", "sex x SMI tertile (within sex)"), ("sex", "sex")):
        labels = table[column].to_numpy()
        if pd.Series(labels).value_counts().max() >= n_folds:
            return labels, name
    return np.zeros(len(table), dtype=int), "none (too few subjects to stratify)"


def save_splits(splits: Splits, path: str | os.PathLike) -> Path:
    """Write splits as JSON (sorted keys, 2-space indent) atomically; same splits, same bytes."""
    from .runs import atomic_write_text

    text = json.dumps(splits.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


def load_splits(
    path: str | os.PathLike,
    manifest: pd.DataFrame | Iterable[str] | None = None,
) -> Splits:
    """Read and check a splits file; with ``manifest``, check it belongs to that dataset.

    Parameters
    ----------
    path : path-like
        JSON written by :func:`save_splits` / ``legsmi splits``.
    manifest : DataFrame or iterable of str, optional
        The dataset the splits will be used on (a manifest or sample table with
        ``subject_id``, or the subject ids). Every subject must be in the file and
        every subject of the file in the dataset.

    Raises
    ------
    SplitsError
        Not a splits file, a malformed one, or one made from another dataset.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SplitsError(f"{p}: splits file not found; make one with 'legsmi splits DATASET --out {p}'") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SplitsError(f"{p}: not a readable JSON splits file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SplitsError(f"{p}: not a legsmi splits file (format is not '{FORMAT}')")
    if data.get("format_version") != FORMAT_VERSION:
        raise SplitsError(
            f"{p}: splits format_version {data.get('format_version')!r} is not supported "
            f"(this legsmi reads {FORMAT_VERSION}); make the splits again with 'legsmi splits'"
        )
    try:
        n_folds = int(data["n_folds"])
        seeds = [int(s) for s in data["seeds"]]
        repeats = data["repeats"]
        test_folds = [[[str(s) for s in fold] for fold in rep["test_folds"]] for rep in repeats]
        rep_seeds = [int(rep["seed"]) for rep in repeats]
        fingerprint = str(data["subjects_sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SplitsError(f"{p}: malformed splits file ({type(exc).__name__}: {exc})") from None
    if rep_seeds != seeds:
        raise SplitsError(f"{p}: malformed splits file (repeat seeds {rep_seeds} do not match seeds {seeds})")
    subjects: list[str] | None = None
    for r, folds in enumerate(test_folds):
        if len(folds) != n_folds:
            raise SplitsError(f"{p}: repeat {r} has {len(folds)} folds, expected {n_folds}")
        ids = [s for fold in folds for s in fold]
        if len(ids) != len(set(ids)):
            dup = sorted({s for s in ids if ids.count(s) > 1})
            raise SplitsError(f"{p}: repeat {r}: subject(s) in more than one fold: {_short(dup)}")
        if subjects is None:
            subjects = sorted(ids)
        elif sorted(ids) != subjects:
            raise SplitsError(f"{p}: repeat {r} does not hold the same subjects as repeat 0")
    subjects = subjects or []
    if subjects_fingerprint(subjects) != fingerprint:
        raise SplitsError(f"{p}: the subject list does not match its subjects_sha256 (file edited or damaged)")
    splits = Splits(
        n_folds=n_folds, seeds=seeds, dataset=str(data.get("dataset", "")), subjects=subjects,
        test_folds=test_folds, stratify=str(data.get("stratify", "")), method=str(data.get("method", "")),
    )
    if manifest is not None:
        check_matches(splits, manifest, source=str(p))
    return splits


def check_matches(splits: Splits, manifest: pd.DataFrame | Iterable[str], *, source: str = "splits") -> None:
    """Refuse splits whose subjects differ from the dataset's (missing or unknown subjects)."""
    if isinstance(manifest, pd.DataFrame):
        ids = set(manifest["subject_id"].astype(str))
    else:
        ids = {str(s) for s in manifest}
    in_file = set(splits.subjects)
    missing = sorted(ids - in_file)
    unknown = sorted(in_file - ids)
    problems = []
    if missing:
        problems.append(f"{len(missing)} subject(s) of the dataset are not in the splits: {_short(missing)}")
    if unknown:
        problems.append(f"{len(unknown)} subject(s) in the splits are not in the dataset: {_short(unknown)}")
    if problems:
        raise SplitsError(
            f"{source}: splits made from another dataset ({splits.dataset or 'unknown'}): "
            + "; ".join(problems)
            + ". Make splits for this dataset with 'legsmi splits DATASET --out FILE'"
        )


def _short(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def iter_folds(splits: Splits, repeat: int = 0) -> Iterator[tuple[int, list[str], list[str]]]:
    """Yield ``(fold, train_subject_ids, test_subject_ids)`` for one repeat (sorted lists)."""
    if not 0 <= repeat < splits.n_repeats:
        raise IndexError(f"repeat {repeat} out of range; the splits hold {splits.n_repeats} repeat(s)")
    for fold, test in enumerate(splits.test_folds[repeat]):
        test_set = set(test)
        train = [s for s in splits.subjects if s not in test_set]
        yield fold, train, list(test)


def iter_fold_indices(
    splits: Splits, samples: pd.DataFrame, repeat: int = 0
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(fold, train_rows, test_rows)``: positional indices into a sample table.

    Checks first that the table's subjects and the splits' subjects are the same.
    """
    check_matches(splits, samples)
    sid = samples["subject_id"].astype(str).to_numpy()
    for fold, train, test in iter_folds(splits, repeat):
        yield fold, np.flatnonzero(np.isin(sid, train)), np.flatnonzero(np.isin(sid, test))


def summarize_splits(splits: Splits) -> str:
    """Text table: per repeat and fold, subjects, men/women and mean SMI (when known)."""
    lines = [
        f"{splits.n_folds}-fold subject-level splits, {splits.n_repeats} repeat(s) (seeds "
        f"{', '.join(map(str, splits.seeds))}), {len(splits.subjects)} subjects; stratified by {splits.stratify}"
    ]
    table = splits.subject_table
    for r, (seed, folds) in enumerate(zip(splits.seeds, splits.test_folds)):
        parts = []
        for fold, test in enumerate(folds):
            if table is not None:
                t = table.loc[test]
                n_m = int((t["sex"] == "M").sum())
                parts.append(f"fold {fold}: {len(test)} (M {n_m}, F {len(test) - n_m}, SMI {t['smi'].mean():.2f})")
            else:
                parts.append(f"fold {fold}: {len(test)}")
        lines.append(f"repeat {r} (seed {seed}): " + "; ".join(parts))
    return "\n".join(lines)
