"""Test–retest reliability of the leg measurements and of a model's SMI estimate, from repeat photos.

A retake dataset is an ordinary dataset whose manifest has a ``take`` column (1, 2, ...):
each subject photographed several times, the body unchanged, everything a new photo
session changes drawn afresh. For every measured dimension (calf width in each view,
calf circumference, lower-leg volume, knee–ankle length; ``smi_features``' extractor) and
for the SMI estimate of a model (``--model``), over the subjects measured at every take:

``ICC(2,1)`` and ``ICC(3,1)`` with 95 % CI
    Shrout & Fleiss 1979 (*Psychol Bull* 86:420): two-way random effects, absolute
    agreement, single measurement; and two-way mixed, consistency, single measurement.
    Computed by pingouin (``intraclass_corr``; its ``ICC(A,1)`` and ``ICC(C,1)``), takes as
    the "raters".
``SEM``
    Standard error of measurement: the within-subject SD, ``sqrt(mean_i s_i^2)`` where
    ``s_i^2`` is the variance of subject i's takes (ddof 1); in the measure's unit.
``MDC95``
    Minimal detectable change at 95 %: ``1.96 * sqrt(2) * SEM`` (the smallest change between
    two photo sessions that exceeds measurement error; Weir 2005, *J Strength Cond Res* 19:231).
``within-subject CV %``
    Root-mean-square coefficient of variation, ``100 * sqrt(mean_i (s_i / m_i)^2)``
    (Bland 2006; Hyslop & White 2009).
Bland–Altman between takes
    ``take 2 - take 1``: bias and 95 % limits of agreement (bias ± 1.96 SD).

:func:`run_reliability` writes ``reliability.csv``, ``measurements.csv`` (every value per
subject and take), ``report.md``, ``report.html`` with the Bland–Altman plots, and
``run.json``.
"""

from __future__ import annotations

import base64
import html
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: (column of the feature table, label, unit, shown for the view) in report order.
MEASURES = (
    ("lat_calf_max_width_cm", "calf width, lateral view", "cm"),
    ("post_calf_max_width_cm", "calf width, posterior view", "cm"),
    ("calf_circumference_cm", "calf circumference", "cm"),
    ("pair_volume_cm3", "lower-leg volume", "cm³"),
    ("lat_knee_ankle_length_cm", "knee–ankle length, lateral view", "cm"),
    ("post_knee_ankle_length_cm", "knee–ankle length, posterior view", "cm"),
)
SMI_MEASURE = ("smi_pred", "SMI estimate", "kg/m²")
#: Targets of issue 11 on repeat photos.
TARGET_CIRC_CV_PCT = 1.0
TARGET_CIRC_ICC21 = 0.98
TARGET_SMI_CV_PCT = 1.5
_TAKE_SEP = "~take"


class ReliabilityError(ValueError):
    """A dataset that cannot give a reliability study (no take column, too few repeats), with what to do."""


# --------------------------------------------------------------------------- statistics
def icc_confidence(x: np.ndarray, icc2: float, alpha: float = 0.05) -> dict:
    """95 % CIs of ICC(2,1) and ICC(3,1) from a complete n targets × k takes array, unrounded.

    The F-distribution intervals of Shrout & Fleiss 1979 / McGraw & Wong 1996, as pingouin
    computes them (pingouin rounds its CI to two decimals, too coarse for ICCs near 1).
    """
    from scipy.stats import f

    n, k = x.shape
    grand = x.mean()
    ss_r = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_c = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_e = np.sum((x - grand) ** 2) - ss_r - ss_c
    msr, msc, mse = ss_r / (n - 1), ss_c / (k - 1), ss_e / ((n - 1) * (k - 1))
    q = 1 - alpha / 2
    f3 = msr / mse
    f3l, f3u = f3 / f.ppf(q, n - 1, (n - 1) * (k - 1)), f3 * f.ppf(q, (n - 1) * (k - 1), n - 1)
    a = k * icc2 / (n * (1 - icc2))
    b = 1 + k * icc2 * (n - 1) / (n * (1 - icc2))
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    fs, fi = f.ppf(q, n - 1, v), f.ppf(q, v, n - 1)
    return {"icc21_lower": float(n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)),
            "icc21_upper": float(n * (fi * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fi * msr)),
            "icc31_lower": float((f3l - 1) / (f3l + k - 1)), "icc31_upper": float((f3u - 1) / (f3u + k - 1))}


def icc(long: pd.DataFrame) -> dict:
    """ICC(2,1) and ICC(3,1) (pingouin) of a complete long table ``subject_id``, ``take``, ``value``,
    with unrounded 95 % CIs (:func:`icc_confidence`) and pingouin's own rounded ones."""
    import pingouin as pg

    res = pg.intraclass_corr(data=long, targets="subject_id", raters="take", ratings="value").reset_index(drop=True)

    # pingouin >= 0.7 names the forms ICC(A,1)/ICC(C,1) (McGraw & Wong); older ones ICC2/ICC3
    def pick(names):
        row = res[res["Type"].isin(names)]
        if row.empty:
            raise RuntimeError(f"pingouin gave no {names[0]} row (types: {', '.join(res['Type'])})")
        r = row.iloc[0]
        ci = r["CI95"] if "CI95" in r.index else r["CI95%"]
        return float(r["ICC"]), [float(v) for v in ci]

    (icc2, ci2), (icc3, ci3) = pick(["ICC(A,1)", "ICC2"]), pick(["ICC(C,1)", "ICC3"])
    x = long.pivot_table(index="subject_id", columns="take", values="value", aggfunc="first").to_numpy(float)
    return {"icc21": icc2, "icc31": icc3, **icc_confidence(x, icc2), "pingouin_ci21": ci2, "pingouin_ci31": ci3}


def reliability_stats(long: pd.DataFrame) -> dict:
    """Reliability of one measure from a long table ``subject_id``, ``take``, ``value``.

    Only subjects with a finite value at every take are used (``n_left_out`` counts the
    others). Needs at least 3 such subjects and 2 takes; else every statistic is NaN.
    """
    d = long[["subject_id", "take", "value"]].copy()
    d["value"] = pd.to_numeric(d["value"], errors="coerce")
    takes = sorted(d["take"].unique())
    wide = d.pivot_table(index="subject_id", columns="take", values="value", aggfunc="first")
    wide = wide.reindex(columns=takes)
    complete = wide.dropna()
    out = {"n_subjects": int(len(complete)), "n_left_out": int(len(wide) - len(complete)), "n_takes": len(takes)}
    keys = ("mean", "icc21", "icc21_lower", "icc21_upper", "icc31", "icc31_lower", "icc31_upper", "sem", "mdc95",
            "cv_within_pct", "ba_bias", "ba_sd", "ba_loa_lower", "ba_loa_upper")
    if len(complete) < 3 or len(takes) < 2:
        return {**out, **{k: float("nan") for k in keys}}
    x = complete.to_numpy(dtype=float)
    s2 = x.var(axis=1, ddof=1)
    m = x.mean(axis=1)
    sem = float(math.sqrt(s2.mean()))
    cv = float(100.0 * math.sqrt(np.mean(s2 / m ** 2))) if np.all(m != 0) else float("nan")
    diff = x[:, 1] - x[:, 0]
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    lc = complete.reset_index().melt(id_vars="subject_id", var_name="take", value_name="value")
    if np.allclose(x, x[:, :1]):  # identical takes: ICC is 1 by definition, pingouin would divide by zero
        iccs = {k: 1.0 for k in ("icc21", "icc21_lower", "icc21_upper", "icc31", "icc31_lower", "icc31_upper")}
    else:
        iccs = {k: v for k, v in icc(lc).items() if not k.startswith("pingouin")}
    return {**out, "mean": float(x.mean()), **iccs, "sem": sem, "mdc95": 1.96 * math.sqrt(2.0) * sem,
            "cv_within_pct": cv, "ba_bias": bias, "ba_sd": sd, "ba_loa_lower": bias - 1.96 * sd,
            "ba_loa_upper": bias + 1.96 * sd}


# --------------------------------------------------------------------------- reading a retake dataset
def read_retakes(dataset) -> pd.DataFrame:
    """The manifest of a retake dataset, checked, with one pseudo-subject per (subject, take).

    Returns the typed manifest with ``subject_id`` = ``<subject>~take<k>`` (so that every
    per-subject step treats each photo session apart), plus ``subject`` and ``take``.

    Raises
    ------
    ReliabilityError
        No ``take`` column, takes that are not whole numbers, or fewer than 2 takes.
    smi_data.manifest.ManifestError
        Any other problem of the manifest, each naming its row.
    """
    from smi_data.manifest import ManifestError, check_table, manifest_path, read_manifest_raw, type_manifest

    root = Path(dataset)
    raw = read_manifest_raw(root)
    where = manifest_path(root)
    if "take" not in raw.columns:
        raise ReliabilityError(f"{where}: no 'take' column; a reliability study needs repeat photos of each subject "
                               "(a take column 1, 2, ...; e.g. `legsmi phantom --retakes 3`)")
    bad = [i for i, t in raw["take"].items() if not str(t).isdigit() or int(t) < 1]
    if bad:
        raise ReliabilityError(f"{where}: row {bad[0] + 2}: take {raw.loc[bad[0], 'take']!r} is not a whole number "
                               "1, 2, ...")
    raw = raw.assign(subject=raw["subject_id"], take=raw["take"].astype(int))
    pseudo = raw.assign(subject_id=raw["subject_id"] + _TAKE_SEP + raw["take"].astype(str))
    problems = check_table(pseudo.drop(columns=["subject", "take"]), root, require_label=False)
    if problems:
        raise ManifestError([f"{where}: {p}".replace(_TAKE_SEP, " take ") for p in problems])
    out = type_manifest(pseudo, root)
    n_takes = out.groupby("subject")["take"].nunique()
    if int(n_takes.max()) < 2:
        raise ReliabilityError(f"{where}: every subject has one take; photograph them again (take 2, 3, ...)")
    return out


def _split_ids(samples: pd.DataFrame) -> pd.DataFrame:
    parts = samples["subject_id"].astype(str).str.rsplit(_TAKE_SEP, n=1)
    return samples.assign(subject=parts.str[0], take=parts.str[1].astype(int))


# --------------------------------------------------------------------------- the command
@dataclass
class ReliabilityConfig:
    dataset: str
    out: str
    model: str | None = None
    overwrite: bool = False
    jobs: int = 1
    #: Leg finder for the measurement rows (None: the extractor's default, 'auto'); a model's
    #: SMI estimate always uses the extraction settings the model was trained with.
    segmenter: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


#: Per-photo columns kept beside the measures in measurements.csv (which finder, which scale).
META_COLUMNS = tuple(f"{p}{c}" for p in ("lat_", "post_") for c in ("silhouette_method", "px_per_cm"))


def measure_takes(manifest: pd.DataFrame, *, n_jobs: int = 1, segmenter: str | None = None
                  ) -> tuple[pd.DataFrame, dict]:
    """Leg dimensions per (subject, take): the two-view sample table when both views exist, else one view."""
    from smi_data.manifest import to_samples
    from smi_features.extractor import ExtractionSettings, SilhouetteSettings, sample_features

    views = set(manifest["view"])
    view = "both" if {"lateral", "posterior"} <= views else sorted(views)[0]
    samples = to_samples(manifest, view)
    settings = ExtractionSettings(silhouette=SilhouetteSettings(segmenter=segmenter)) if segmenter else None
    table, reasons = sample_features(samples, settings=settings, n_jobs=n_jobs)
    table = table.copy()
    table["subject_id"] = samples["subject_id"].to_numpy()
    return _split_ids(table), {str(k): str(v) for k, v in reasons.items()}


# --------------------------------------------------------------------------- what varies between takes
def worst_takes(values: pd.DataFrame, measures, n: int = 12) -> pd.DataFrame:
    """The photo sessions furthest from their subject's median, over every measure: where to look first.

    One row per (measure, subject, take): ``value``, the subject's ``median`` over takes,
    ``deviation_pct`` = 100 (value / median − 1), and for a per-view measure the leg finder
    that measured the photo (``silhouette_method``, when ``values`` has it). The ``n`` largest
    ``|deviation_pct|`` are returned, largest first. Measures that do not vary (derived from
    the covariates) never appear.
    """
    rows = []
    for col, label, _unit in measures:
        if col not in values.columns:
            continue
        v = pd.to_numeric(values[col], errors="coerce")
        med = v.groupby(values["subject"]).transform("median")
        dev = 100.0 * (v / med - 1.0)
        prefix = col.split("_", 1)[0] + "_" if col.startswith(("lat_", "post_")) else None
        meth = values.get(f"{prefix}silhouette_method") if prefix else None
        for i in np.flatnonzero(np.isfinite(dev.to_numpy()) & (np.abs(dev.to_numpy()) > 1e-9)):
            rows.append({"measure": label, "column": col, "subject": values["subject"].iloc[i],
                         "take": int(values["take"].iloc[i]), "value": float(v.iloc[i]), "median": float(med.iloc[i]),
                         "deviation_pct": float(dev.iloc[i]),
                         "silhouette_method": "" if meth is None or pd.isna(meth.iloc[i]) else str(meth.iloc[i])})
    if not rows:
        return pd.DataFrame(columns=["measure", "column", "subject", "take", "value", "median", "deviation_pct",
                                     "silhouette_method"])
    df = pd.DataFrame(rows)
    return df.reindex(df["deviation_pct"].abs().sort_values(ascending=False).index).head(n).reset_index(drop=True)


def _cv_pct(wide: pd.DataFrame) -> tuple[float, int]:
    """Within-subject CV % (root mean square of SD/mean, ddof 1) of a subject × take table, complete rows."""
    w = wide.dropna()
    if len(w) < 2 or w.shape[1] < 2:
        return float("nan"), int(len(w))
    return float(100.0 * np.sqrt(np.mean((w.std(axis=1, ddof=1) / w.mean(axis=1)) ** 2))), int(len(w))


def truth_decomposition(values: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """For a synthetic retake cohort: how much of the calf width's repeat error each stage adds.

    Per view, the within-subject CV % of the calf width as (1) the camera sees it
    (``calf_width_seen_cm``: body and camera only), (2) the true mask's widest row at the
    true scale (``mask_calf_width_px / px_per_cm_true``: a perfect segmenter and a perfect
    scale; what still varies is perspective and the widest-row definition), (3) measured;
    and the marker scale's error (measured over true px/cm − 1: mean and within-subject SD,
    in %) and the measured width's error against what the camera sees (mean, median of the
    absolute value, photos more than 5 % off). Rows whose truth columns the cohort lacks are
    left out. ``truth`` is the phantom's ``truth.csv`` (``subject_id``, ``view``, ``take``).
    """
    rows = []
    if truth is None or truth.empty or not {"subject_id", "view", "take"} <= set(truth.columns):
        return pd.DataFrame(rows)
    for view, p in (("lateral", "lat_"), ("posterior", "post_")):
        col = f"{p}calf_max_width_cm"
        tv = truth[truth["view"] == view]
        if col not in values.columns or tv.empty:
            continue
        tv = tv.assign(take=tv["take"].astype(int)).set_index(["subject_id", "take"])
        tv = tv[~tv.index.duplicated()]
        meas = pd.to_numeric(values.set_index(["subject", "take"])[col], errors="coerce")
        meas = meas[~meas.index.duplicated()]
        idx = meas.index.intersection(tv.index)
        meas, tv = meas.reindex(idx), tv.reindex(idx)

        def add(stage, series, view=view, **extra):
            cv, n = _cv_pct(series.unstack())
            rows.append({"view": view, "stage": stage, "within_subject_cv_pct": cv, "n_subjects": n, **extra})

        if "calf_width_seen_cm" in tv.columns:
            add("calf width the camera sees (truth: body and camera only)", tv["calf_width_seen_cm"])
        if {"mask_calf_width_px", "px_per_cm_true"} <= set(tv.columns):
            add("true mask's widest row at the true scale (perfect segmenter and scale)",
                tv["mask_calf_width_px"] / tv["px_per_cm_true"])
        scale_col = f"{p}px_per_cm"
        if "px_per_cm_true" in tv.columns and scale_col in values.columns:
            sc = pd.to_numeric(values.set_index(["subject", "take"])[scale_col], errors="coerce")
            err = 100.0 * (sc[~sc.index.duplicated()].reindex(idx) / tv["px_per_cm_true"] - 1.0)
            wsd = float(np.sqrt(err.unstack().var(axis=1, ddof=1).mean()))
            rows.append({"view": view, "stage": "marker scale: measured over true px/cm − 1 (%)",
                         "within_subject_cv_pct": float("nan"), "n_subjects": int(err.notna().sum()),
                         "error_mean_pct": float(err.mean()), "error_within_sd_pct": wsd})
        extra = {}
        if "calf_width_seen_cm" in tv.columns:
            e = 100.0 * (meas / tv["calf_width_seen_cm"] - 1.0)
            extra = {"error_mean_pct": float(e.mean()), "error_median_abs_pct": float(e.abs().median()),
                     "photos_over_5pct": int((e.abs() > 5).sum())}
        add("measured calf width", meas, **extra)
    # the two views' true masks as an ellipse: the circumference a perfect segmenter would give
    if {"mask_calf_width_px", "px_per_cm_true"} <= set(truth.columns):
        from smi_features.features.paired import ramanujan_perimeter

        w = truth.assign(take=truth["take"].astype(int), cm=truth["mask_calf_width_px"] / truth["px_per_cm_true"])
        w = w.pivot_table(index=["subject_id", "take"], columns="view", values="cm", aggfunc="first")
        if {"lateral", "posterior"} <= set(w.columns):
            circ = pd.Series(ramanujan_perimeter(w["lateral"].to_numpy() / 2, w["posterior"].to_numpy() / 2),
                             index=w.index)
            cv, n = _cv_pct(circ.unstack())
            rows.append({"view": "both", "stage": "calf circumference of the two true masks' widest rows "
                         "(ellipse; perfect segmenter and scale)", "within_subject_cv_pct": cv, "n_subjects": n})
    return pd.DataFrame(rows)


def estimate_takes(manifest: pd.DataFrame, model_dir) -> tuple[pd.DataFrame, dict, dict]:
    """The model's SMI estimate per (subject, take), refused estimates NaN with their reasons."""
    from benchmarks.predict import load_predictor
    from smi_data.manifest import to_samples

    predictor = load_predictor(model_dir)
    samples = to_samples(manifest, predictor.view)
    res = predictor.predict(samples.drop(columns=["smi"], errors="ignore"), annotate=False)
    t = res.table[["subject_id", "smi_pred", "failure"]].copy()
    reasons = {str(r["subject_id"]): str(r["failure"]) for _, r in t.iterrows() if r["failure"]}
    return _split_ids(t), reasons, predictor.info()


def reliability_table(values: pd.DataFrame, measures) -> pd.DataFrame:
    """A row per measure with :func:`reliability_stats`; ``values`` has ``subject``, ``take`` and the columns."""
    rows = []
    for col, label, unit in measures:
        if col not in values.columns or not np.isfinite(pd.to_numeric(values[col], errors="coerce")).any():
            continue
        long = values[["subject", "take", col]].rename(columns={"subject": "subject_id", col: "value"})
        stats = reliability_stats(long)
        note = ""
        # e.g. knee-ankle length where the levels are placed from the entered height
        if np.isfinite(stats["sem"]) and stats["sem"] <= 1e-9 * max(abs(stats["mean"]), 1.0):
            note = "identical at every take: not measured from the photo (derived from the entered covariates)"
        rows.append({"measure": label, "column": col, "unit": unit, **stats, "note": note})
    return pd.DataFrame(rows)


def target_lines(table: pd.DataFrame) -> list[str]:
    """The issue's targets against what was measured (printed by the command)."""
    lines = []
    by = table.set_index("column") if len(table) else pd.DataFrame()
    if "calf_circumference_cm" in by.index:
        r = by.loc["calf_circumference_cm"]
        ok = r["cv_within_pct"] <= TARGET_CIRC_CV_PCT and r["icc21"] >= TARGET_CIRC_ICC21
        lines.append(f"calf circumference: within-subject CV {r['cv_within_pct']:.2f} % "
                     f"(target ≤ {TARGET_CIRC_CV_PCT:g} %), "
                     f"ICC(2,1) {r['icc21']:.3f} (target ≥ {TARGET_CIRC_ICC21:g}): {'met' if ok else 'NOT met'}")
    if "smi_pred" in by.index:
        r = by.loc["smi_pred"]
        ok = r["cv_within_pct"] <= TARGET_SMI_CV_PCT
        lines.append(f"SMI estimate: within-subject CV {r['cv_within_pct']:.2f} % (target ≤ {TARGET_SMI_CV_PCT:g} %), "
                     f"ICC(2,1) {r['icc21']:.3f}, SEM {r['sem']:.3f} kg/m², MDC95 {r['mdc95']:.2f} kg/m²: "
                     f"{'met' if ok else 'NOT met'}")
    return lines


def plot_bland_altman_takes(values: pd.DataFrame, table: pd.DataFrame, path: Path) -> Path | None:
    """Take 2 − take 1 against their mean, one panel per measure, bias and 95 % limits."""
    from matplotlib.figure import Figure

    if table.empty:
        return None
    n = len(table)
    ncols = min(3, n)
    nrows = int(math.ceil(n / ncols))
    fig = Figure(figsize=(3.8 * ncols, 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (_, r) in zip(axes.flat, table.iterrows()):
        wide = values.pivot_table(index="subject", columns="take", values=r["column"], aggfunc="first")
        t1, t2 = sorted(wide.columns)[:2]
        w = wide[[t1, t2]].dropna()
        mean, diff = (w[t1] + w[t2]) / 2, w[t2] - w[t1]
        ax.scatter(mean, diff, s=12, alpha=0.8)
        ax.axhline(r["ba_bias"], color="black", lw=1)
        for lim in (r["ba_loa_lower"], r["ba_loa_upper"]):
            ax.axhline(lim, color="black", lw=0.8, ls="--")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{r['measure']}\nbias {r['ba_bias']:+.3g}, LoA {r['ba_loa_lower']:+.3g} to "
                     f"{r['ba_loa_upper']:+.3g} {r['unit']}", fontsize=8)
        ax.set_xlabel(f"mean of takes {t1} and {t2} ({r['unit']})", fontsize=7)
        ax.set_ylabel(f"take {t2} − take {t1}", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Bland–Altman between photo sessions", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return Path(path)


def _fmt(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return table

    def g(x, d=3):
        return f"{x:.{d}f}" if np.isfinite(x) else "n/a"

    return pd.DataFrame({
        "measure": table["measure"], "unit": table["unit"], "subjects × takes":
            [f"{a} × {b}" + (f" ({c} left out)" if c else "") for a, b, c in
             zip(table["n_subjects"], table["n_takes"], table["n_left_out"])],
        "mean": [g(x, 2) for x in table["mean"]],
        "ICC(2,1) [95 % CI]": [f"{g(a)} [{g(b)}, {g(c)}]" for a, b, c in
                               zip(table["icc21"], table["icc21_lower"], table["icc21_upper"])],
        "ICC(3,1) [95 % CI]": [f"{g(a)} [{g(b)}, {g(c)}]" for a, b, c in
                               zip(table["icc31"], table["icc31_lower"], table["icc31_upper"])],
        "SEM": [g(x) for x in table["sem"]], "MDC95": [g(x) for x in table["mdc95"]],
        "within-subject CV %": [g(x, 2) for x in table["cv_within_pct"]],
        "BA bias (take 2 − 1)": [g(x) for x in table["ba_bias"]],
        "BA 95 % limits": [f"{g(a)} to {g(b)}" for a, b in zip(table["ba_loa_lower"], table["ba_loa_upper"])],
        "note": table["note"] if "note" in table.columns else "",
    })


def _fmt_num(df: pd.DataFrame) -> pd.DataFrame:
    return df.apply(lambda c: c.map(lambda x: f"{x:.3g}" if isinstance(x, float) and np.isfinite(x)
                                    else ("" if isinstance(x, float) else x)))


def write_report(out_dir: Path, table: pd.DataFrame, values: pd.DataFrame, *, config: dict, model_info: dict | None,
                 failures: dict, seconds: float, worst: pd.DataFrame | None = None,
                 decomposition: pd.DataFrame | None = None) -> dict:
    """report.md and a self-contained report.html (plot embedded) in ``out_dir``."""
    from smi_data.runs import atomic_write_text

    from .report import html_table, md_table

    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plot = plot_bland_altman_takes(values, table, plots_dir / "bland_altman_takes.png")
    cmd = f"legsmi reliability {config['dataset']}" + (f" --model {config['model']}" if config.get("model") else "") \
        + f" --out {config['out']}"
    n_subj = int(values["subject"].nunique()) if len(values) else 0
    intro = (f"{n_subj} subjects photographed {int(values['take'].nunique()) if len(values) else 0} times. "
             "ICC(2,1): two-way random effects, absolute agreement, single photo; ICC(3,1): two-way mixed, "
             "consistency (Shrout & Fleiss 1979; pingouin). SEM: within-subject SD; MDC95 = 1.96·√2·SEM; "
             "within-subject CV: root mean square of each subject's SD over mean. Bland–Altman: take 2 − take 1. "
             "Only subjects measured at every take enter a row.")
    if model_info:
        intro += (f" SMI estimates by model {model_info.get('name')} ({model_info.get('view')} view, "
                  f"{model_info.get('model_dir')}).")
    targets = target_lines(table)
    md = [f"# legsmi reliability: {Path(config['dataset']).name}", "", f"Command: `{cmd}`  ",
          f"{seconds:.0f} s on {os.cpu_count()} CPU core(s).", "", intro, "", md_table(_fmt(table))]
    if targets:
        md += ["Targets:", ""] + [f"- {t}" for t in targets] + [""]
    extra = []  # (title, note, table) sections shared by both pages
    if worst is not None and not worst.empty:
        extra.append(("Photo sessions furthest from their subject's median",
                      "Where the repeat error comes from: look at these photos first (worst_takes.csv).", worst))
    if decomposition is not None and not decomposition.empty:
        extra.append(("What each stage adds (synthetic cohort: truth.csv)",
                      "Within-subject CV of the calf width as the camera sees it, as a perfect segmenter at the "
                      "true scale would measure it, and as measured; the marker scale's error; the measured "
                      "width's error against what the camera sees (truth_decomposition.csv).", decomposition))
    for title, note, t in extra:
        md += [f"## {title}", "", note, "", md_table(_fmt_num(t))]
    if failures:
        md += [f"{len(failures)} photo session(s) could not be measured or estimated:", ""]
        md += [f"- {k}: {v}" for k, v in sorted(failures.items())[:50]] + [""]
    if plot:
        md += [f"![Bland–Altman between takes](plots/{plot.name})", ""]
    md_path = atomic_write_text(out_dir / "report.md", "\n".join(md))
    body = [f"<h1>legsmi reliability: {html.escape(Path(config['dataset']).name)}</h1>",
            f"<p>Command: <code>{html.escape(cmd)}</code><br>{seconds:.0f} s.</p>", f"<p>{html.escape(intro)}</p>",
            html_table(_fmt(table))]
    if targets:
        body += ["<ul>"] + [f"<li>{html.escape(t)}</li>" for t in targets] + ["</ul>"]
    for title, note, t in extra:
        body += [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(note)}</p>", html_table(_fmt_num(t))]
    if failures:
        body += [f"<p>{len(failures)} photo session(s) could not be measured or estimated:</p><ul>"]
        body += [f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in sorted(failures.items())[:50]] + ["</ul>"]
    if plot:
        b64 = base64.b64encode(plot.read_bytes()).decode("ascii")
        body.append(f"<figure><img alt=\"Bland–Altman between takes\" src=\"data:image/png;base64,{b64}\">"
                    "<figcaption>Bland–Altman between photo sessions</figcaption></figure>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>legsmi reliability</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
            "table.tbl{border-collapse:collapse;font-size:0.85em}table.tbl th,table.tbl td{border-bottom:1px solid "
            "#ddd;padding:3px 8px;text-align:left}img{max-width:100%}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    html_path = atomic_write_text(out_dir / "report.html", page)
    return {"report.md": md_path, "report.html": html_path}


def run_reliability(cfg: ReliabilityConfig, echo=None) -> dict:
    """The ``legsmi reliability`` command as a function. Returns ``table``, ``targets``, ``out``, ``failures``."""
    from smi_data.runs import RunRecord, atomic_write_csv, prepare_output_dir

    echo = echo or (lambda s: None)
    started = time.perf_counter()
    manifest = read_retakes(cfg.dataset)
    if cfg.model:  # load (and check) the model before any work is done
        from benchmarks.predict import load_predictor

        load_predictor(cfg.model)
    out_dir = prepare_output_dir(cfg.out, overwrite=cfg.overwrite, protect=(cfg.dataset, cfg.model))
    with RunRecord(out_dir, "reliability", cfg.to_json(), None) as rec:
        echo(f"reliability: {manifest['subject'].nunique()} subjects, {manifest['take'].nunique()} takes, "
             f"{len(manifest)} photos")
        values, failures = measure_takes(manifest, n_jobs=cfg.jobs, segmenter=cfg.segmenter)
        measures = list(MEASURES)
        model_info = None
        if cfg.model:
            est, est_fail, model_info = estimate_takes(manifest, cfg.model)
            values = values.merge(est[["subject", "take", "smi_pred"]], on=["subject", "take"], how="outer")
            failures.update({f"{k} (estimate)": v for k, v in est_fail.items()})
            measures.append(SMI_MEASURE)
        failures = {k.replace(_TAKE_SEP, " take "): v for k, v in failures.items()}
        cols = ["subject", "take"] + [c for c, _, _ in measures if c in values.columns] \
            + [c for c in META_COLUMNS if c in values.columns]
        values = values[cols].sort_values(["subject", "take"]).reset_index(drop=True)
        table = reliability_table(values, measures)
        worst = worst_takes(values, measures)
        truth_path = Path(cfg.dataset) / "truth.csv"  # a synthetic cohort: what each stage adds
        decomposition = truth_decomposition(values, pd.read_csv(truth_path)) if truth_path.is_file() \
            else pd.DataFrame()
        atomic_write_csv(values, out_dir / "measurements.csv", float_format="%.6g")
        atomic_write_csv(table, out_dir / "reliability.csv", float_format="%.6g")
        atomic_write_csv(worst, out_dir / "worst_takes.csv", float_format="%.6g")
        if not decomposition.empty:
            atomic_write_csv(decomposition, out_dir / "truth_decomposition.csv", float_format="%.6g")
        targets = target_lines(table)
        seconds = time.perf_counter() - started
        write_report(out_dir, table, values, config=cfg.to_json(), model_info=model_info, failures=failures,
                     seconds=seconds, worst=worst, decomposition=decomposition)
        rec.data["results"] = {"n_subjects": int(values["subject"].nunique()), "n_takes": int(values["take"].nunique()),
                               "model": model_info, "failures": failures, "targets": targets,
                               "table": table.to_dict(orient="records"),
                               "truth_decomposition": decomposition.to_dict(orient="records")}
    return {"out": out_dir, "table": table, "targets": targets, "failures": failures, "worst": worst,
            "decomposition": decomposition, "seconds": time.perf_counter() - started, "display": _fmt(table)}
