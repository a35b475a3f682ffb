"""The dataset format: a folder with ``manifest.csv``, one row per image.

Columns
-------
subject_id : str        person identifier; both views of a person share it
view : lateral|posterior
image : str             path of the photo, relative to the dataset folder
sex : M|F
age : float             years
height_cm : float       standing height, cm
smi : float             skeletal muscle index, kg/m^2 (required to train or evaluate)

Optional: ``weight_kg``, ``px_per_cm`` (pixels per centimetre at the leg),
``side`` (L|R), ``reference_device`` (BIA|DXA), ``take`` (1, 2, ...: repeat photo sessions
of one person; each take then has one image per view and is its own sample). Unknown extra
columns are kept and passed through to outputs.

Models do not see manifest rows directly: :func:`to_samples` turns the manifest into
a *sample table*, one row per prediction unit (one image for a single view, one person
for ``both``), which is what every estimator's ``fit``/``predict`` takes.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .cutoffs import DEVICES, SEXES
from .errors import LegsmiError
from .images import ImageError, resolve_inside

MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("subject_id", "view", "image", "sex", "age", "height_cm")
LABEL_COLUMN = "smi"
OPTIONAL_COLUMNS = ("weight_kg", "px_per_cm", "side", "reference_device", "take")
VIEWS = ("lateral", "posterior")
VIEW_CHOICES = ("lateral", "posterior", "both")


def male_indicator(sex) -> np.ndarray:
    """The one numeric encoding of sex for models: 1.0 for ``M``, 0.0 for ``F``, NaN for anything
    else (case and surrounding spaces ignored)."""
    s = pd.Series(np.asarray(sex, dtype=object)).astype(str).str.strip().str.upper().to_numpy()
    return np.where(s == "M", 1.0, np.where(s == "F", 0.0, np.nan))


#: Columns that describe the person, identical on every row of one subject.
SUBJECT_COLUMNS = ("sex", "age", "height_cm", "weight_kg", "smi", "side", "reference_device")
#: Per-image columns that become ``<name>_<view>`` in the sample table.
IMAGE_COLUMNS = ("image_path", "px_per_cm")

#: Plausible ranges (inclusive) for numeric columns.
RANGES = {
    "height_cm": (100.0, 230.0),
    "age": (0.0, 120.0),
    "smi": (2.0, 20.0),
    "weight_kg": (20.0, 300.0),
    "px_per_cm": (0.5, 1000.0),
}
#: Units of the ranged columns, for messages.
UNITS = {"age": "years", "height_cm": "cm", "smi": "kg/m^2", "weight_kg": "kg", "px_per_cm": "px/cm"}

# A number as a person types it in a spreadsheet: ASCII digits, one optional sign, an optional
# point and exponent. Python's float() also takes '4_0' (40), '١٢' (Arabic-Indic 12) and 'inf',
# which pandas later reads as NaN: they are refused here so that validate and the models agree.
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def parse_number(raw: str) -> float | None:
    """``raw`` as a float if it is a plain decimal number (ASCII digits), else None."""
    text = str(raw).strip()
    if not _NUMBER_RE.fullmatch(text):
        return None
    return float(text)


class ManifestError(LegsmiError, ValueError):
    """A manifest that cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def manifest_path(dataset_dir: str | os.PathLike) -> Path:
    return Path(dataset_dir) / MANIFEST_NAME


def read_manifest_raw(dataset_dir: str | os.PathLike) -> pd.DataFrame:
    """Read ``manifest.csv`` as strings, without any checking."""
    path = manifest_path(dataset_dir)
    if not Path(dataset_dir).is_dir():
        raise ManifestError([f"{dataset_dir}: not a folder; give the dataset folder that holds {MANIFEST_NAME}"])
    if not path.is_file():
        raise ManifestError([f"{path}: no {MANIFEST_NAME} in the dataset folder"])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the "
                             "spreadsheet as 'CSV UTF-8'"]) from None
    except OSError as exc:
        raise ManifestError([f"{path}: cannot be read ({exc.strerror or exc})"]) from None
    problems = check_layout(text)
    if problems:
        raise ManifestError([f"{path}: {p}" for p in problems])
    try:
        # utf-8-sig: spreadsheets often write a byte-order mark before the first column name.
        # index_col=False: never take the first column as the index (row labels stay row numbers).
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True,
                         skip_blank_lines=False, index_col=False)
    except Exception as exc:  # pandas raises several types for malformed CSV
        raise ManifestError([f"{path}: cannot parse as CSV ({exc})"]) from None
    df.columns = [str(c).strip() for c in df.columns]
    # A row with fewer fields than the header gets NaN in the missing cells: treat as empty.
    # Strip every cell so ' S1' and 'S1 ' are the same subject everywhere.
    df = df.fillna("").apply(lambda col: col.astype(str).str.strip())
    # Blank lines are kept above so row numbers match the spreadsheet; drop them now.
    blank = (df == "").all(axis=1)
    return df[~blank]


def check_layout(text: str) -> list[str]:
    """Problems with the CSV's shape: duplicate or empty column names, rows with more fields than the header.

    A row with more fields than the header is usually an unquoted comma inside a value
    (a decimal comma: ``40,5``); pandas would shift that row's values or make its first
    column the index, so it is refused with the row number.
    """
    problems: list[str] = []
    try:
        rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    except csv.Error as exc:
        return [f"cannot parse as CSV ({exc})"]
    if not rows:
        return ["the file is empty; the first line must name the columns"]
    header = [c.strip() for c in rows[0]]
    seen: dict[str, int] = {}
    for k, name in enumerate(header, start=1):
        if name in seen:
            problems.append(f"column {name!r} appears twice (columns {seen[name]} and {k}); keep one")
        else:
            seen[name] = k
    for i, row in enumerate(rows[1:]):
        if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
            problems.append(
                f"{_row_label(i)}: {len(row)} fields but the header has {len(header)}; a value holds an "
                "unquoted comma (a decimal comma such as 40,5?): write 40.5 or quote the value")
    return problems


def read_manifest(dataset_dir: str | os.PathLike, *, require_label: bool = True) -> pd.DataFrame:
    """Read and type a manifest, failing with every structural problem at once.

    This checks what the models need (columns, values, ranges, paths inside the
    folder); it does not open the images. ``legsmi validate`` does the full check.

    Returns
    -------
    DataFrame
        The manifest with typed columns, ``subject_id`` as str, and an added
        ``image_path`` column holding the absolute path of each image.
    """
    dataset_dir = Path(dataset_dir)
    df = read_manifest_raw(dataset_dir)
    problems = check_table(df, dataset_dir, require_label=require_label)
    if problems:
        raise ManifestError([f"{manifest_path(dataset_dir)}: {p}" for p in problems])
    return type_manifest(df, dataset_dir)


def _row_label(i: int) -> str:
    # Row numbers as a person sees them in a spreadsheet: header is line 1.
    return f"row {i + 2}"


def check_table(df: pd.DataFrame, dataset_dir: Path, *, require_label: bool = True) -> list[str]:
    """Every problem with the manifest's columns and values (no image decoding)."""
    problems: list[str] = []
    required = list(REQUIRED_COLUMNS) + ([LABEL_COLUMN] if require_label else [])
    missing = [c for c in required if c not in df.columns]
    if missing:
        problems.append(
            f"missing required column(s) {', '.join(missing)}; required: {', '.join(required)}"
        )
    if len(df) == 0:
        problems.append("manifest has no rows")
    numeric = ["age", "height_cm"] + [c for c in ("smi", "weight_kg") if c in df.columns]
    optional_numeric = {"weight_kg", "px_per_cm"} | ({"smi"} if not require_label else set())
    for i, row in df.iterrows():
        where = _row_label(int(i))
        if "view" in df.columns and row["view"] not in VIEWS:
            problems.append(f"{where}: view '{row['view']}' is not one of {', '.join(VIEWS)}")
        if "sex" in df.columns and row["sex"] not in SEXES:
            problems.append(f"{where}: sex '{row['sex']}' is not one of {', '.join(SEXES)}")
        if "subject_id" in df.columns and str(row["subject_id"]).strip() == "":
            problems.append(f"{where}: subject_id is empty")
        for col in numeric + (["px_per_cm"] if "px_per_cm" in df.columns else []):
            if col not in df.columns:
                continue
            raw = str(row[col]).strip()
            if raw == "":
                if col in optional_numeric:
                    continue
                problems.append(f"{where}: {col} is empty; a number is required")
                continue
            value = parse_number(raw)
            if value is None:
                what = ("not a finite number" if raw.lower().lstrip("+-") in ("inf", "infinity", "nan")
                        else "not a number")
                problems.append(f"{where}: {col} '{raw}' is {what} (write digits 0-9 with a point, e.g. 40.5)")
                continue
            if not np.isfinite(value):
                problems.append(f"{where}: {col} '{raw}' is not a finite number")
            elif col == "px_per_cm" and value <= 0:
                problems.append(f"{where}: px_per_cm {value:g} must be greater than 0")
            elif col in RANGES:
                lo, hi = RANGES[col]
                if not lo <= value <= hi:
                    problems.append(f"{where}: {col} {value:g} {UNITS[col]} is outside the plausible range "
                                    f"{lo:g}-{hi:g}")
        if "side" in df.columns and str(row["side"]).strip() not in ("", "L", "R"):
            problems.append(f"{where}: side '{row['side']}' is not L or R")
        if "take" in df.columns and not (str(row["take"]).strip().isdigit() and int(str(row["take"]).strip()) >= 1):
            problems.append(f"{where}: take '{row['take']}' is not a whole number 1, 2, ...")
        if "reference_device" in df.columns and str(row["reference_device"]).strip() not in ("",) + DEVICES:
            problems.append(f"{where}: reference_device '{row['reference_device']}' is not BIA or DXA")
        if "image" in df.columns:
            rel = str(row["image"]).strip()
            if rel == "":
                problems.append(f"{where}: image is empty")
            else:
                try:
                    resolve_inside(dataset_dir, rel)
                except ImageError as exc:
                    reason = str(exc).removeprefix(f"{rel}: ").removeprefix(f"{rel!r}: ")
                    problems.append(f"{where}: image '{rel}': {reason}")
    if {"subject_id", "view"} <= set(df.columns):
        key = ["subject_id", "view"] + (["take"] if "take" in df.columns else [])
        dup = df[df.duplicated(key, keep=False)]
        for values, grp in dup.groupby(key):
            rows = ", ".join(_row_label(int(i)) for i in grp.index)
            what = "per view and take" if "take" in key else "per view"
            problems.append(f"{rows}: duplicate ({', '.join(key)}) = ({', '.join(map(str, values))}); "
                            f"keep one image {what}")
        for col in [c for c in SUBJECT_COLUMNS if c in df.columns]:
            for sid, grp in df.groupby("subject_id"):
                values = grp[col].astype(str).str.strip()
                if col in ("age", "height_cm", "weight_kg", "smi"):
                    values = values.map(_norm_number)
                if values.nunique() > 1:
                    rows = ", ".join(_row_label(int(i)) for i in grp.index)
                    problems.append(
                        f"{rows}: subject {sid} has different {col} values ({', '.join(sorted(set(values)))})"
                    )
    return problems


def _norm_number(s: str) -> str:
    value = parse_number(s)
    return s if value is None else f"{value:g}"


def type_manifest(df: pd.DataFrame, dataset_dir: Path) -> pd.DataFrame:
    """Convert a checked manifest's columns to their types and add ``image_path``."""
    out = df.copy()
    out["subject_id"] = out["subject_id"].astype(str).str.strip()
    for col in ("age", "height_cm", "smi", "weight_kg", "px_per_cm"):
        if col in out.columns:
            out[col] = [np.nan if (v := parse_number(x)) is None else v for x in out[col]]
            out[col] = out[col].astype(float)
    for col in ("view", "sex", "side", "reference_device"):
        if col in out.columns:
            out[col] = out[col].astype(str).str.strip()
    if "take" in out.columns:
        out["take"] = out["take"].astype(int)
    out["image_path"] = [str(resolve_inside(dataset_dir, str(r).strip())) for r in out["image"]]
    return out.reset_index(drop=True)


def to_samples(manifest: pd.DataFrame, view: str) -> pd.DataFrame:
    """Turn manifest rows into the sample table every model takes.

    Parameters
    ----------
    manifest : DataFrame
        From :func:`read_manifest` (needs ``image_path``).
    view : {'lateral', 'posterior', 'both'}
        ``lateral``/``posterior``: one sample per image of that view.
        ``both``: one sample per subject that has both views (others are dropped).

    Returns
    -------
    DataFrame
        One row per sample, indexed 0..n-1, with ``sample_id`` (``subject:view``),
        ``subject_id``, ``view``, the subject columns present in the manifest
        (``sex``, ``age``, ``height_cm``, optional ``weight_kg``, ``smi``, ...),
        the pass-through extra columns, and per view ``image_lateral``,
        ``image_posterior`` (absolute path or None), ``px_per_cm_lateral``,
        ``px_per_cm_posterior`` (float or NaN). Sorted by subject for stability. With a
        ``take`` column, each take of a subject is its own sample (``subject:view:t<take>``,
        with a ``take`` column after ``view``).
    """
    if view not in VIEW_CHOICES:
        raise ValueError(f"view must be one of {VIEW_CHOICES}, got {view!r}")
    if "image_path" not in manifest.columns:
        raise ValueError("manifest lacks image_path; read it with read_manifest()")
    known = set(REQUIRED_COLUMNS) | {LABEL_COLUMN, "image_path"} | set(OPTIONAL_COLUMNS)
    extras = [c for c in manifest.columns if c not in known]
    subject_cols = [c for c in SUBJECT_COLUMNS if c in manifest.columns] + extras
    rows = []
    has_take = "take" in manifest.columns
    for key, grp in manifest.groupby(["subject_id", "take"] if has_take else "subject_id", sort=True):
        sid, take = key if has_take else (key, None)
        by_view = {v: grp[grp["view"] == v] for v in VIEWS}
        wanted = VIEWS if view == "both" else (view,)
        if any(by_view[v].empty for v in wanted):
            continue
        first = grp.iloc[0]
        rec = {"sample_id": f"{sid}:{view}" + (f":t{take}" if has_take else ""), "subject_id": str(sid), "view": view}
        if has_take:
            rec["take"] = int(take)
        for c in subject_cols:
            rec[c] = first[c]
        for v in VIEWS:
            present = v in wanted and not by_view[v].empty
            r = by_view[v].iloc[0] if present else None
            rec[f"image_{v}"] = r["image_path"] if present else None
            ppc = r["px_per_cm"] if (present and "px_per_cm" in grp.columns) else np.nan
            rec[f"px_per_cm_{v}"] = float(ppc) if ppc is not None and ppc == ppc else np.nan
        rows.append(rec)
    cols = (
        ["sample_id", "subject_id", "view"]
        + (["take"] if has_take else [])
        + subject_cols
        + [f"{c}_{v}" for c in ("image", "px_per_cm") for v in VIEWS]
    )
    return pd.DataFrame(rows, columns=cols)


def sample_images(samples: pd.DataFrame) -> list[tuple[int, str, str]]:
    """``(row position, view, image path)`` for every image a sample table refers to."""
    out = []
    for pos, (_, row) in enumerate(samples.iterrows()):
        for v in VIEWS:
            p = row.get(f"image_{v}")
            if isinstance(p, str) and p:
                out.append((pos, v, p))
    return out
