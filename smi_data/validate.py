"""``legsmi validate``: check a whole dataset and report every problem at once.

:func:`validate_dataset` runs the manifest checks of :func:`smi_data.manifest.check_table`
(columns, values, ranges, duplicates, per-subject consistency, paths inside the folder)
and then opens every image through :func:`smi_data.images.read_image` (missing, empty,
truncated, non-image and oversized files). Each problem is one line that names the
spreadsheet row (the header is row 1), the column or file, and what is wrong.
On a clean dataset the report carries a summary: subjects, images per view, sex split
and SMI mean ± SD (overall and by sex, one value per subject).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .images import MAX_PIXELS, ImageError, read_image, resolve_inside
from .manifest import (
    MANIFEST_NAME,
    SEXES,
    VIEWS,
    ManifestError,
    _row_label,
    check_table,
    read_manifest_raw,
    type_manifest,
)


@dataclass
class ValidationReport:
    """What :func:`validate_dataset` found.

    Attributes
    ----------
    dataset : Path
        The dataset folder that was checked.
    problems : list of str
        One line per problem, in row order; empty when the dataset is clean.
    n_rows : int
        Manifest rows read (0 if the manifest could not be read).
    images_checked : int
        Images opened and decoded (0 with ``check_images=False``).
    summary : dict
        Counts and SMI statistics; filled only when there are no problems.
    """

    dataset: Path
    problems: list[str] = field(default_factory=list)
    n_rows: int = 0
    images_checked: int = 0
    summary: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_dataset(
    dataset: str | os.PathLike,
    check_images: bool = True,
    require_label: bool = True,
    *,
    max_pixels: int = MAX_PIXELS,
) -> ValidationReport:
    """Check every row and every image of a dataset folder.

    Parameters
    ----------
    dataset : path-like
        Folder holding ``manifest.csv`` and the images it names.
    check_images : bool
        Open and decode every image (False: manifest checks only).
    require_label : bool
        Require a non-empty ``smi`` (kg/m^2) on every row. False for data to predict on.
    max_pixels : int, keyword-only
        Images whose header declares more pixels (width x height) are refused
        before decoding (decompression bombs).

    Returns
    -------
    ValidationReport
        Never raises for a bad dataset: every problem is a line in ``problems``.
    """
    root = Path(dataset)
    report = ValidationReport(dataset=root)
    try:
        df = read_manifest_raw(root)
    except ManifestError as exc:
        report.problems = list(exc.problems)
        return report
    report.n_rows = len(df)
    problems = check_table(df, root, require_label=require_label)
    if check_images and "image" in df.columns:
        problems += _check_images(df, root, max_pixels=max_pixels, report=report)
    report.problems = _in_row_order(problems)
    if not report.problems:
        report.summary = summarize_manifest(type_manifest(df, root))
    return report


def _check_images(df: pd.DataFrame, root: Path, *, max_pixels: int, report: ValidationReport) -> list[str]:
    problems = []
    for i, rel in df["image"].items():
        rel = str(rel).strip()
        if not rel:
            continue  # reported by check_table
        try:
            path = resolve_inside(root, rel)
        except ImageError:
            continue  # reported by check_table; never open a file outside the folder
        try:
            read_image(path, max_pixels=max_pixels)
        except ImageError as exc:
            # ImageError messages start with the absolute path; the manifest's own text is clearer.
            reason = str(exc)
            prefix = f"{path}: "
            if reason.startswith(prefix):
                reason = reason[len(prefix):]
            problems.append(f"{_row_label(int(i))}: image '{rel}': {reason}")
        except Exception as exc:  # a decoder crash must not stop the other rows
            problems.append(f"{_row_label(int(i))}: image '{rel}': could not be read ({type(exc).__name__}: {exc})")
        else:
            report.images_checked += 1
    return problems


_ROW_RE = re.compile(r"^rows? (\d+)")


def _in_row_order(problems: list[str]) -> list[str]:
    """Sort problems by their first row number; problems without a row (columns, file) first."""

    def key(p: str) -> int:
        m = _ROW_RE.match(p)
        return int(m.group(1)) if m else 0

    return sorted(problems, key=key)


def summarize_manifest(manifest: pd.DataFrame) -> dict:
    """Counts and SMI statistics of a typed manifest (one value per subject).

    Returns
    -------
    dict
        ``n_rows``, ``n_subjects``, ``images_per_view`` {view: n},
        ``subjects_with_both_views``, ``subjects_by_sex`` {sex: n},
        ``smi`` {group: {n, mean, sd}} for groups ``all``, ``M``, ``F``
        (kg/m^2, SD with ddof=1; only subjects with a label), and ``age`` and
        ``height_cm`` ranges.
    """
    subjects = manifest.groupby("subject_id", sort=True).first()
    views = manifest.groupby("subject_id")["view"].agg(set)
    out = {
        "n_rows": int(len(manifest)),
        "n_subjects": int(len(subjects)),
        "images_per_view": {v: int((manifest["view"] == v).sum()) for v in VIEWS},
        "subjects_with_both_views": int(sum(set(VIEWS) <= v for v in views)),
        "subjects_by_sex": {s: int((subjects["sex"] == s).sum()) for s in SEXES},
        "age": _range(subjects["age"]),
        "height_cm": _range(subjects["height_cm"]),
        "smi": {},
    }
    if "smi" in subjects.columns:
        for group, sel in (("all", slice(None)), ("M", subjects["sex"] == "M"), ("F", subjects["sex"] == "F")):
            values = subjects.loc[sel, "smi"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            out["smi"][group] = {
                "n": int(values.size),
                "mean": float(values.mean()) if values.size else float("nan"),
                "sd": float(values.std(ddof=1)) if values.size > 1 else float("nan"),
            }
    return out


def _range(series: pd.Series) -> tuple[float, float]:
    v = series.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if v.size else (float("nan"), float("nan"))


def format_summary(report: ValidationReport) -> str:
    """Human-readable summary of a report (a problem count when the dataset is not clean)."""
    if report.problems:
        return f"{report.dataset}: {len(report.problems)} problem(s) found"
    s = report.summary
    lines = [f"{report.dataset / MANIFEST_NAME}: OK ({s['n_rows']} rows"
             + (f", {report.images_checked} images decoded)" if report.images_checked else ", images not opened)")]
    lines.append(f"subjects: {s['n_subjects']} ({s['subjects_with_both_views']} with both views)")
    lines.append("images per view: " + ", ".join(f"{v} {n}" for v, n in s["images_per_view"].items()))
    n = max(s["n_subjects"], 1)
    lines.append("sex: " + ", ".join(f"{k} {c} ({100 * c / n:.0f} %)" for k, c in s["subjects_by_sex"].items()))
    lines.append(f"age: {s['age'][0]:g}-{s['age'][1]:g} years; height: {s['height_cm'][0]:g}-{s['height_cm'][1]:g} cm")
    if s["smi"] and s["smi"]["all"]["n"]:
        parts = []
        for group in ("all", "M", "F"):
            g = s["smi"][group]
            if g["n"]:
                sd = f" ± {g['sd']:.2f}" if np.isfinite(g["sd"]) else ""
                parts.append(f"{group} {g['mean']:.2f}{sd} (n={g['n']})")
        lines.append("SMI kg/m^2 (mean ± SD): " + "; ".join(parts))
    else:
        lines.append("SMI: no labels (data to predict on)")
    return "\n".join(lines)
