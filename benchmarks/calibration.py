"""Prediction intervals in the benchmark: which scheme each model gets, and how well they cover.

The harness wraps a model in :class:`smi_data.conformal.IntervalRegressor` (when a task
asks for intervals) with the scheme of its family (:data:`SCHEMES`): the cheap models
(baselines, ``xgb-features``) are refit inside the training fold for cross-conformal
scores, the CNNs hold out a share of the training fold's subjects (split conformal).
Everything the calibration learns comes from the training fold; the test fold's
predictions get their intervals, screening result and the conformal p-value of the
true SMI (``p_true``), from which the coverage at every nominal level follows.

:func:`calibration_table` gives, per model, view, tier (when the predictions carry one)
and sex, pooled over the test folds: the empirical coverage of the 90 % and 95 %
intervals, their mean width, and the share of people screened indeterminate.
:func:`report_parts` makes the report's section and the calibration plot (nominal
against empirical coverage).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: Calibration scheme by model family: (method, IntervalRegressor parameters).
SPLIT_PARAMS = {"calibration_fraction": 0.25, "min_calibration_subjects": 24}
SCHEMES = {
    "baseline": ("cv", {"n_splits": 5}),
    # 10 folds: XGBoost's fold models on 4/5 of the people err 5-8 % more than the full model
    # (clinic cohort), which widened its intervals by 1-2 coverage points; on 9/10 about half that
    "features": ("cv", {"n_splits": 10}),
    "deep": ("split", dict(SPLIT_PARAMS)),
}
#: Values of ``method`` (``train --intervals``, the benchmark's ``intervals``): 'auto' is
#: :data:`SCHEMES`; 'refit' is 'auto' with the split-scheme models refit on the whole
#: training data afterwards (``split-refit``); the others force one scheme on every model.
METHOD_CHOICES = ("auto", "refit", "cv", "split", "split-refit")
#: Columns the harness adds to the test predictions of a task with intervals.
INTERVAL_COLUMNS = ("lo90", "hi90", "lo95", "hi95", "awgs_cutoff", "p_low", "screening", "p_true")
#: Targets of issue 11 (95 % intervals, pooled over the test folds).
TARGET_COVERAGE_95 = (0.93, 0.97)
TARGET_MIN_SEX_COVERAGE_95 = 0.90
NOMINAL_GRID = tuple(np.round(np.arange(0.50, 0.991, 0.01), 2))


def scheme_for(family: str, method: str = "auto") -> tuple[str, dict]:
    """``(method, params)`` for a model family; ``method`` other than 'auto' overrides the family's.

    A family not in :data:`SCHEMES` (a plug-in) gets the cross-conformal scheme, whose point
    estimate is the model fit on all the training data.
    """
    default, params = SCHEMES.get(family, SCHEMES["features"])
    if method in (None, "auto", True):
        return default, dict(params)
    if method == "refit":
        return ("split-refit" if default == "split" else default), dict(params)
    if method == "cv":
        return "cv", (dict(params) if default == "cv" else {"n_splits": 5})
    if method in ("split", "split-refit"):
        return method, dict(SPLIT_PARAMS)
    raise ValueError(f"calibration method {method!r}: expected one of {', '.join(METHOD_CHOICES)}")


def wrap(estimator, family: str, random_state: int, method: str = "auto"):
    """``estimator`` inside an :class:`~smi_data.conformal.IntervalRegressor` with its family's scheme."""
    from smi_data.conformal import IntervalRegressor

    m, params = scheme_for(family, method)
    return IntervalRegressor(estimator, method=m, random_state=int(random_state), **params)


def unwrap(estimator):
    """The point-estimate model inside a fitted wrapper (the estimator itself otherwise)."""
    return getattr(estimator, "estimator_", estimator) if hasattr(estimator, "calibration_") else estimator


def interval_columns(estimator, rows: pd.DataFrame) -> pd.DataFrame:
    """:data:`INTERVAL_COLUMNS` for test rows (``y_pred``, ``y_true``, ``sex``, ``reference_device``).

    NaN (and an empty screening) where the model failed or has no calibration.
    """
    out = pd.DataFrame({c: np.full(len(rows), np.nan) for c in INTERVAL_COLUMNS}, index=rows.index)
    out["screening"] = ""
    cal = getattr(estimator, "calibration_", None)
    if cal is None or rows.empty:
        return out
    y_hat = rows["y_pred"].to_numpy(dtype=float)
    dev = rows["reference_device"].to_numpy() if "reference_device" in rows.columns else "BIA"
    t = cal.table(y_hat, rows["sex"].to_numpy(), dev)
    t.index = rows.index
    for c in t.columns:
        out[c] = t[c]
    out["p_true"] = cal.p_values(y_hat, rows["y_true"].to_numpy(dtype=float), rows["sex"].to_numpy())
    return out


# --------------------------------------------------------------------------- measuring
def _keys(predictions: pd.DataFrame) -> list[str]:
    return ["model", "view"] + (["tier"] if "tier" in predictions.columns else [])


def _group_stats(g: pd.DataFrame) -> dict:
    ok = np.isfinite(g["lo95"].to_numpy(dtype=float)) & np.isfinite(g["y_true"].to_numpy(dtype=float))
    g = g[ok]
    y = g["y_true"].to_numpy(dtype=float)
    row = {"n": int(ok.sum()), "n_without_interval": int((~ok).sum())}
    for lev in ("90", "95"):
        lo, hi = g[f"lo{lev}"].to_numpy(dtype=float), g[f"hi{lev}"].to_numpy(dtype=float)
        row[f"coverage_{lev}"] = float(np.mean((y >= lo) & (y <= hi))) if len(y) else np.nan
        row[f"width_{lev}"] = float(np.mean(hi - lo)) if len(y) else np.nan
    row["indeterminate"] = float(np.mean(g["screening"].astype(str) == "indeterminate")) if len(y) else np.nan
    return row


def calibration_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Coverage, width and indeterminate share per model, view, (tier) and sex, pooled over folds.

    Repeats are pooled too (every test prediction counts once per repeat). ``sex`` is
    ``all``, ``M`` or ``F``. Empty when the predictions carry no intervals.
    """
    if predictions is None or predictions.empty or "lo95" not in predictions.columns:
        return pd.DataFrame()
    keys = _keys(predictions)
    rows = []
    for key, g in predictions.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(keys, key))
        rows.append({**base, "sex": "all", **_group_stats(g)})
        for sex in ("M", "F"):
            gs = g[g["sex"].astype(str) == sex]
            if len(gs):
                rows.append({**base, "sex": sex, **_group_stats(gs)})
    df = pd.DataFrame(rows)
    return df[df["n"] > 0].reset_index(drop=True) if len(df) else df


def _target_checks(table: pd.DataFrame):
    """Per model, view and tier: ``(keys, key, pooled row, coverage, lowest sex, met)`` against the targets."""
    lo, hi = TARGET_COVERAGE_95
    keys = [k for k in ("model", "view", "tier") if k in table.columns]
    for key, g in table.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        allrow = g[g["sex"] == "all"]
        if allrow.empty:
            continue
        cov = float(allrow["coverage_95"].iloc[0])
        sexes = g[g["sex"].isin(["M", "F"])]
        worst = float(sexes["coverage_95"].min()) if len(sexes) else float("nan")
        ok = lo <= cov <= hi and (not np.isfinite(worst) or worst >= TARGET_MIN_SEX_COVERAGE_95)
        yield keys, key, allrow, cov, worst, ok


def target_lines(table: pd.DataFrame) -> list[str]:
    """One line per model and view: pooled 95 % coverage and the worst sex, against the targets."""
    if table is None or table.empty:
        return []
    lo, hi = TARGET_COVERAGE_95
    return [f"{' / '.join(map(str, key))}: 95 % interval coverage {cov:.1%} (target {lo:.0%}–{hi:.0%}), "
            f"lowest sex {worst:.1%} (target ≥ {TARGET_MIN_SEX_COVERAGE_95:.0%}), mean width "
            f"{float(allrow['width_95'].iloc[0]):.2f} kg/m², indeterminate "
            f"{float(allrow['indeterminate'].iloc[0]):.1%}: {'met' if ok else 'NOT met'}"
            for _, key, allrow, cov, worst, ok in _target_checks(table)]


def target_table(table: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Per model and view: pooled 95 % coverage, the lower of the two sexes, and whether the targets are met."""
    if table is None or table.empty:
        return pd.DataFrame()
    rows = [{**dict(zip(keys, key)), "95 % coverage": f"{100 * cov:.1f} %", "lowest sex": f"{100 * worst:.1f} %",
             "target": "met" if ok else "NOT met"}
            for keys, key, _, cov, worst, ok in _target_checks(table)]
    out = pd.DataFrame(rows)
    out["_m"] = out["model"].map({m: i for i, m in enumerate(models)}).fillna(len(models))
    return out.sort_values("_m", kind="stable").drop(columns="_m").reset_index(drop=True)


def coverage_curve(predictions: pd.DataFrame, grid=NOMINAL_GRID) -> pd.DataFrame:
    """Empirical coverage at each nominal level from the conformal p-values of the true SMI.

    The ``c`` interval holds the true value exactly when its p-value exceeds ``1 - c``.
    """
    if predictions is None or predictions.empty or "p_true" not in predictions.columns:
        return pd.DataFrame()
    keys = _keys(predictions)
    rows = []
    for key, g in predictions.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        p = g["p_true"].to_numpy(dtype=float)
        p = p[np.isfinite(p)]
        if p.size == 0:
            continue
        for c in grid:
            rows.append({**dict(zip(keys, key)), "nominal": float(c), "empirical": float(np.mean(p > 1 - c - 1e-12))})
    return pd.DataFrame(rows)


def plot_calibration(predictions: pd.DataFrame, models: list[str], path: Path) -> Path | None:
    """Nominal against empirical coverage, one panel per view, a line per model."""
    curve = coverage_curve(predictions)
    if curve.empty:
        return None
    from matplotlib.figure import Figure

    views = [v for v in ("lateral", "posterior", "both") if v in set(curve["view"])]
    fig = Figure(figsize=(3.8 * len(views), 3.8))
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    for ax, view in zip(axes, views):
        d = curve[curve["view"] == view]
        for m in [m for m in models if (d["model"] == m).any()]:
            g = d[d["model"] == m]
            for tier, gt in (g.groupby("tier") if "tier" in g.columns else [(None, g)]):
                ax.plot(gt["nominal"], gt["empirical"], lw=1.2, label=m if tier is None else f"{m} ({tier})")
        ax.plot([0.5, 1], [0.5, 1], color="black", lw=0.8, ls="--")
        for c in (0.90, 0.95):
            ax.axvline(c, color="grey", lw=0.5, ls=":")
        ax.set_xlim(0.5, 1.0)
        ax.set_ylim(0.3, 1.0)
        ax.set_title(f"{view} view", fontsize=9)
        ax.set_xlabel("nominal coverage", fontsize=8)
        ax.set_ylabel("empirical coverage (test folds)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle("Calibration of the conformal intervals (dashed: ideal)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return Path(path)


def _fmt_table(table: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    if table.empty:
        return table
    d = table.copy()
    d["_m"] = d["model"].map({m: i for i, m in enumerate(models)}).fillna(len(models))
    order = {"sex": {"all": 0, "M": 1, "F": 2}, "view": {"lateral": 0, "posterior": 1, "both": 2}}
    d = d.sort_values(["_m", "view", "sex"], kind="stable",
                      key=lambda c: c.map(order[c.name]) if c.name in order else c).drop(columns="_m")
    for c in ("coverage_90", "coverage_95", "indeterminate"):
        d[c] = d[c].map(lambda x: f"{100 * x:.1f} %" if np.isfinite(x) else "n/a")
    for c in ("width_90", "width_95"):
        d[c] = d[c].map(lambda x: f"{x:.2f}" if np.isfinite(x) else "n/a")
    return d.rename(columns={"coverage_90": "90 % coverage", "coverage_95": "95 % coverage",
                             "width_90": "90 % width (kg/m²)", "width_95": "95 % width (kg/m²)",
                             "indeterminate": "screened indeterminate"})


def report_parts(predictions: pd.DataFrame, models: list[str], plots_dir: Path) -> tuple[list, list]:
    """``([(title, text, table)], [(caption, plot path)])`` for the benchmark report; empty without intervals."""
    table = calibration_table(predictions)
    if table.empty:
        return [], []
    text = ("Conformal prediction intervals (crepes; `smi_data.conformal`), calibrated inside each training fold "
            "only: cross-conformal (folds by subject, the model refit on each: 5 for the baselines, 10 for "
            "xgb-features), split conformal (25 % of the training fold's subjects, at least 24, held out, the model "
            "fit on the rest; with `--intervals refit` then refit on the whole training fold) for the CNNs; "
            "residuals relative to the estimate; Mondrian by sex where each sex has at least 19 calibration "
            "scores; the order statistic whose average coverage k/(n+1) is nearest nominal (the midpoint rule, "
            "docs/intervals.md). Coverage is the share of test-fold people whose reference SMI lies inside "
            "their interval, pooled over folds and repeats. **Indeterminate**: the 95 % interval holds the AWGS "
            "2019 cut-off. Targets: 95 % coverage 93–97 % for every model, no sex below 90 %.")
    plots = []
    p = plot_calibration(predictions, models, Path(plots_dir) / "calibration.png")
    if p:
        plots.append(("Calibration of the intervals: nominal against empirical coverage (test folds)", p))
    return [("Prediction intervals: calibration", text, _fmt_table(table, models)),
            ("Prediction intervals: targets", "95 % intervals pooled over the test folds; met when coverage is "
             f"{TARGET_COVERAGE_95[0]:.0%}–{TARGET_COVERAGE_95[1]:.0%} and no sex is below "
             f"{TARGET_MIN_SEX_COVERAGE_95:.0%}.", target_table(table, models))], plots


# --------------------------------------------------------------------------- train command
def plan_intervals(estimator, family: str, samples: pd.DataFrame, seed: int, method: str = "auto"):
    """``(wrapper or None, note)`` for ``legsmi train``: None where intervals are off or impossible.

    Impossible means the scheme would yield fewer calibration scores than a 95 % interval
    needs (:func:`smi_data.conformal.min_scores`); the note says why.
    """
    from smi_data.conformal import LEVELS, min_scores

    if method == "none":
        return None, "no prediction intervals (--intervals none)"
    m, params = scheme_for(family, method)
    n_subj = int(samples["subject_id"].astype(str).nunique())
    per = len(samples) / max(n_subj, 1)
    from smi_data.conformal import held_out_subjects

    n_scores = len(samples) if m == "cv" else int(held_out_subjects(n_subj, params["calibration_fraction"],
                                                                     params.get("min_calibration_subjects", 0)) * per)
    need = min_scores(max(LEVELS))
    if n_scores < need:
        return None, (f"no prediction intervals: the {m} scheme would calibrate on {n_scores} sample(s) of "
                      f"{n_subj} people, and a {max(LEVELS):.0%} interval needs at least {need}")
    return wrap(estimator, family, seed, method), ""


def describe_calibration(cal) -> str:
    """One line for the train command: scheme, bins and the 95 % half-width at each sex's cut-off."""
    how = (f"cross-conformal, {cal.details.get('n_splits')} folds by subject" if cal.method == "cv" else
           f"split conformal, {cal.details.get('n_calibration_subjects')} of "
           f"{cal.details.get('n_calibration_subjects', 0) + cal.details.get('n_training_subjects', 0)} "
           "subjects held out" + (", the model then refit on all" if cal.method == "split-refit" else ""))
    bins = "Mondrian by sex" if cal.bins_used == "sex" else "men and women pooled"
    parts = []
    from smi_data.cutoffs import smi_cutoff

    for sex, cut in ((s, smi_cutoff(s, "BIA")) for s in ("M", "F")):
        iv = cal.intervals([cut], [sex], levels=(0.95,))[0.95][0]
        parts.append(f"±{(iv[1] - iv[0]) / 2:.2f} kg/m² for {'a man' if sex == 'M' else 'a woman'} at {cut}")
    return (f"prediction intervals: {how} ({cal.details.get('n_scores')} calibration scores), {bins}, relative to "
            f"the estimate, {cal.rule} quantile; 95 % interval {', '.join(parts)}")
