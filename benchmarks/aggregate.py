"""From predictions to metrics: per fold and pooled, by view and by sex; the study's table.

``predictions.csv`` has a row per (model, view, repeat, fold, test sample). This module
turns it into

* :func:`compute_metrics` -> ``metrics.csv``: one row per (model, view, repeat, fold,
  sex) with every entry of ``smi_data.metrics.agreement_table`` (MAPE, MAE, RMSE,
  Pearson r, CCC with its 95 % CI, Bland-Altman bias, limits and proportional-bias
  slope, AWGS 2019 screening sensitivity, specificity, PPV, NPV, AUC). ``fold`` is the
  fold number, or ``pooled`` for all test predictions of a repeat taken together;
  ``sex`` is ``all``, ``M`` or ``F``. Failed predictions (NaN) are left out of the
  metrics and counted in ``n_failed``.
* :func:`study_table`: the layout of Hashida et al. 2026: the range over folds of
  MAPE and CCC for each view, our models side by side, the study's published ranges
  in a column of their own (a different population: 100 real adults, not our
  synthetic cohort), and the cohort's ceiling.
* :func:`tier_tables`: the study's table once per information tier (``tier`` column),
  each with the ceiling at that tier; what ``table.csv`` holds.
* :func:`pooled_table`, :func:`sex_table`, :func:`screening_table` for the report (with
  a ``tier`` column when the metrics have one).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from smi_data.manifest import VIEW_CHOICES

#: Published ranges over five folds (Hashida et al. 2026, doi:10.2490/prm.20260025).
STUDY_RANGES = {
    ("lateral", "mape"): (3.70, 4.15),
    ("lateral", "ccc"): (0.93, 0.94),
    ("posterior", "mape"): (4.23, 4.85),
    ("posterior", "ccc"): (0.90, 0.91),
}
STUDY_COLUMN = "Hashida 2026 CNN (published; different population: 100 real adults)"
CEILING_COLUMN = "cohort ceiling (ideal predictor on true geometry)"
#: Metric columns of metrics.csv, in order.
METRIC_COLUMNS = ("mape", "mae", "rmse", "pearson_r", "ccc", "ccc_lower", "ccc_upper", "ba_bias", "ba_sd",
                  "ba_loa_lower", "ba_loa_upper", "ba_prop_slope", "sens", "spec", "ppv", "npv", "auc",
                  "prevalence")
VIEW_ORDER = VIEW_CHOICES  # lateral, posterior, both: the order of every table
TIER_ORDER = ("photo", "basic", "weight")
SEX_GROUPS = ("all", "M", "F")
POOLED = "pooled"


def group_metrics(y_true, y_pred, sex=None, device=None) -> dict:
    """Agreement metrics of one group, leaving out failed (non-finite) predictions.

    Returns
    -------
    dict
        ``n`` (scored samples), ``n_failed`` and the :data:`METRIC_COLUMNS`; every
        metric is NaN when fewer than 2 samples were scored.
    """
    from smi_data.metrics import agreement_table

    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    ok = np.isfinite(p) & np.isfinite(t)
    out = {"n": int(ok.sum()), "n_failed": int((~np.isfinite(p)).sum())}
    nan = {k: float("nan") for k in METRIC_COLUMNS}
    if ok.sum() < 2:
        return {**out, **nan}
    s = None if sex is None else np.asarray(sex, dtype=object)[ok]
    d = None if device is None else np.asarray(device, dtype=object)[ok]
    table = agreement_table(t[ok], p[ok], sex=s, device=d)
    return {**out, **{k: float(table[k]) if k in table else float("nan") for k in METRIC_COLUMNS}}


def compute_metrics(predictions: pd.DataFrame, *, keys: Iterable[str] = ("model", "view"),
                    model_order: list[str] | None = None) -> pd.DataFrame:
    """Per-fold and pooled metrics, overall and by sex.

    Parameters
    ----------
    predictions : DataFrame
        Columns ``keys``, ``repeat``, ``fold``, ``sex``, ``y_true``, ``y_pred`` and
        optionally ``reference_device``.
    keys : iterable of str
        Columns that name a configuration (``model``, ``view``; ablations add ``arm``).
    model_order : list of str, optional
        Row order of models (default: order of first appearance).

    Returns
    -------
    DataFrame
        ``keys + [repeat, fold, sex, n, n_failed] + METRIC_COLUMNS``; ``fold`` is a
        string: the fold number or ``pooled``.
    """
    keys = list(keys)
    if predictions.empty:
        return pd.DataFrame(columns=keys + ["repeat", "fold", "sex", "n", "n_failed", *METRIC_COLUMNS])
    device_col = "reference_device" if "reference_device" in predictions.columns else None
    rows = []
    group_cols = keys + ["repeat"]
    for gkey, g in predictions.groupby(group_cols, sort=False, dropna=False):
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        base = dict(zip(group_cols, gkey))
        parts = [(str(f), gf) for f, gf in g.groupby("fold", sort=True)] + [(POOLED, g)]
        for fold, gf in parts:
            for sex in SEX_GROUPS:
                sub = gf if sex == "all" else gf[gf["sex"].astype(str) == sex]
                if sex != "all" and sub.empty:
                    continue
                m = group_metrics(sub["y_true"], sub["y_pred"], sub["sex"].astype(str),
                                  sub[device_col] if device_col else None)
                rows.append({**base, "fold": fold, "sex": sex, **m})
    out = pd.DataFrame(rows, columns=group_cols + ["fold", "sex", "n", "n_failed", *METRIC_COLUMNS])
    return _order(out, keys, model_order)


def _order(df: pd.DataFrame, keys: list[str], model_order: list[str] | None) -> pd.DataFrame:
    order_cols = []
    df = df.copy()
    if "model" in keys:
        models = model_order or list(dict.fromkeys(df["model"]))
        df["_m"] = df["model"].map({m: i for i, m in enumerate(models)}).fillna(len(models))
        order_cols.append("_m")
    if "tier" in keys:
        df["_t"] = df["tier"].map({t: i for i, t in enumerate(TIER_ORDER)}).fillna(9)
        order_cols.append("_t")
    if "view" in keys:
        df["_v"] = df["view"].map({v: i for i, v in enumerate(VIEW_ORDER)}).fillna(9)
        order_cols.append("_v")
    df["_f"] = df["fold"].map(lambda f: (1, 0) if f == POOLED else (0, int(f)) if str(f).lstrip("-").isdigit()
                              else (0, 0))
    df["_s"] = df["sex"].map({s: i for i, s in enumerate(SEX_GROUPS)})
    other = [k for k in keys if k not in ("model", "tier", "view")]
    df = df.sort_values(other + order_cols + ["repeat", "_f", "_s"], kind="stable")
    return df.drop(columns=[c for c in ("_m", "_t", "_v", "_f", "_s") if c in df.columns]).reset_index(drop=True)


def fold_rows(metrics: pd.DataFrame, sex: str = "all") -> pd.DataFrame:
    """Rows of single folds (not pooled) for one sex group."""
    return metrics[(metrics["fold"].astype(str) != POOLED) & (metrics["sex"] == sex)]


def pooled_rows(metrics: pd.DataFrame, sex: str | None = "all") -> pd.DataFrame:
    """Pooled rows, averaged over repeats (one row per configuration and sex)."""
    m = metrics[metrics["fold"].astype(str) == POOLED]
    if sex is not None:
        m = m[m["sex"] == sex]
    keys = [c for c in m.columns if c not in ("repeat", "fold", "n", "n_failed", *METRIC_COLUMNS)]
    agg = {c: "mean" for c in METRIC_COLUMNS}
    agg.update({"n": "sum", "n_failed": "sum"})
    return m.groupby(keys, sort=False, dropna=False).agg(agg).reset_index()


def _range(values: np.ndarray, digits: int) -> str:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "n/a"
    lo, hi = (_no_negative_zero(float(x), digits) for x in (v.min(), v.max()))
    return f"{lo:.{digits}f}–{hi:.{digits}f}"


def _no_negative_zero(x: float, digits: int) -> float:
    """0.0 for values that would print as -0.000 (a constant predictor's CCC is 0 up to rounding)."""
    return 0.0 if abs(x) < 0.5 * 10.0 ** -digits else x


def ceiling_cell(ceiling: dict | None, metric: str, view: str) -> str:
    """The ceiling's entry for one view and metric: ``min–max`` over folds (pooled value).

    Reads :func:`smi_data.phantom.ceiling.compute_ceiling`'s dict: a per-view entry
    (``ceiling[view]``) with ``<metric>_folds`` (min, max) and ``<metric>``, else the
    top-level entries (the both-views ceiling).
    """
    if not ceiling:
        return "n/a"
    digits = 2 if metric == "mape" else 3
    entry = ceiling.get(view) if isinstance(ceiling.get(view), dict) else ceiling
    rng = entry.get(f"{metric}_folds")
    pooled = entry.get(metric)
    parts = []
    if isinstance(rng, (list, tuple)) and len(rng) == 2 and all(r is not None for r in rng):
        parts.append(f"{float(rng[0]):.{digits}f}–{float(rng[1]):.{digits}f}")
    if pooled is not None and np.isfinite(float(pooled)):
        parts.append(f"(pooled {float(pooled):.{digits}f})" if parts else f"{float(pooled):.{digits}f}")
    return " ".join(parts) if parts else "n/a"


def study_table(metrics: pd.DataFrame, models: list[str], *, ceiling: dict | None = None,
                views: Iterable[str] = VIEW_ORDER) -> pd.DataFrame:
    """The study's table: range over folds (all repeats) of MAPE (%) and CCC, per view.

    Rows are ``<view> MAPE (%)`` and ``<view> CCC``; columns are our models, then the
    study's published range (:data:`STUDY_COLUMN`, a different population) and the
    cohort ceiling (:data:`CEILING_COLUMN`) when given. A cell is ``min–max`` over the
    folds; ``n/a`` where a model did not run on that view.
    """
    folds = fold_rows(metrics)
    present_views = [v for v in views if v in set(folds["view"])]
    rows = []
    for view in present_views:
        for metric, label, digits in (("mape", "MAPE (%)", 2), ("ccc", "CCC", 3)):
            row = {"view": view, "metric": label}
            for m in models:
                sel = folds[(folds["model"] == m) & (folds["view"] == view)]
                row[m] = _range(sel[metric], digits) if len(sel) else "n/a"
            study = STUDY_RANGES.get((view, metric))
            row[STUDY_COLUMN] = f"{study[0]:.{digits}f}–{study[1]:.{digits}f}" if study else "not reported"
            if ceiling is not None:
                row[CEILING_COLUMN] = ceiling_cell(ceiling, metric, view)
            rows.append(row)
    return pd.DataFrame(rows)


def tier_tables(metrics: pd.DataFrame, models: list[str], *, ceiling: dict | None = None) -> pd.DataFrame:
    """The study's table once per information tier, stacked, with a leading ``tier`` column.

    ``ceiling`` is ``{tier: ceiling dict}`` (the harness's per-tier ceiling); each tier's rows
    get that tier's ceiling. A model that did not run at a tier has ``n/a`` in its rows.
    """
    if "tier" not in metrics.columns:
        return study_table(metrics, models, ceiling=ceiling)
    parts = []
    for tier in [t for t in TIER_ORDER if t in set(metrics["tier"])] + \
            sorted(set(metrics["tier"]) - set(TIER_ORDER)):
        sub = metrics[metrics["tier"] == tier]
        cell = (ceiling or {}).get(tier) if ceiling is not None else None
        t = study_table(sub, models, ceiling=cell if ceiling is not None else None)
        if ceiling is not None and cell is None:
            t[CEILING_COLUMN] = "n/a"
        t.insert(0, "tier", tier)
        parts.append(t)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _tiers_of(pooled: pd.DataFrame) -> list:
    if "tier" not in pooled.columns:
        return [None]
    present = set(pooled["tier"])
    return [t for t in TIER_ORDER if t in present] + sorted(present - set(TIER_ORDER))


def _each_model_view(pooled: pd.DataFrame, models: list[str]):
    """``(model, tier, view, row)`` for every model, tier and view present in a pooled table, in report
    order (tier None when the table has no tier column)."""
    for m in models:
        for t in _tiers_of(pooled):
            for v in VIEW_ORDER:
                sel = (pooled["model"] == m) & (pooled["view"] == v)
                if t is not None:
                    sel &= pooled["tier"] == t
                r = pooled[sel]
                if not r.empty:
                    yield m, t, v, r.iloc[0]


def _head(m: str, t, v: str) -> dict:
    return {"model": m, **({} if t is None else {"tier": t}), "view": v}


def pooled_table(metrics: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Pooled agreement by model, tier and view (sex all; mean over repeats), formatted for reading."""
    rows = []
    for m, t, v, r in _each_model_view(pooled_rows(metrics, "all"), models):
        rows.append({
            **_head(m, t, v), "n": int(r["n"]), "failed": int(r["n_failed"]),
            "MAPE %": f"{r['mape']:.2f}", "MAE": f"{r['mae']:.3f}", "RMSE": f"{r['rmse']:.3f}",
            "r": f"{r['pearson_r']:.3f}",
            "CCC [95% CI]": f"{r['ccc']:.3f} [{r['ccc_lower']:.3f}, {r['ccc_upper']:.3f}]",
            "BA bias": f"{r['ba_bias']:+.3f}",
            "BA 95% LoA": f"{r['ba_loa_lower']:+.2f} to {r['ba_loa_upper']:+.2f}",
            "prop. slope": f"{r['ba_prop_slope']:+.3f}",
        })
    return pd.DataFrame(rows)


def _f(x, digits=2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def sex_table(metrics: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Pooled MAPE, CCC and screening by model, tier, view and sex."""
    p = pooled_rows(metrics, None)
    rows = []
    for m, t, v, _ in _each_model_view(p[p["sex"] == "all"], models):
        for s in ("M", "F"):
            sel = (p["model"] == m) & (p["view"] == v) & (p["sex"] == s)
            if t is not None:
                sel &= p["tier"] == t
            r = p[sel]
            if r.empty:
                continue
            r = r.iloc[0]
            rows.append({**_head(m, t, v), "sex": s, "n": int(r["n"]), "MAPE %": _f(r["mape"]),
                         "CCC": _f(r["ccc"], 3), "r": _f(r["pearson_r"], 3), "bias": _f(r["ba_bias"], 3),
                         "sens": _f(r["sens"]), "spec": _f(r["spec"]), "AUC": _f(r["auc"])})
    return pd.DataFrame(rows)


def screening_table(metrics: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """AWGS 2019 low-muscle-mass screening by model, tier and view (pooled, both sexes)."""
    rows = []
    for m, t, v, r in _each_model_view(pooled_rows(metrics, "all"), models):
        rows.append({**_head(m, t, v), "prevalence": _f(r["prevalence"]), "sens": _f(r["sens"]),
                     "spec": _f(r["spec"]), "PPV": _f(r["ppv"]), "NPV": _f(r["npv"]), "AUC": _f(r["auc"])})
    return pd.DataFrame(rows)
