"""The benchmark report: ``report.md``, a self-contained ``report.html`` and the plots.

Plots (``plots/``, one matplotlib ``Figure`` per file on its own Agg canvas; the global backend is
never switched):

``pred_vs_ref_<view>.png``
    Predicted against reference SMI, one panel per model, the identity line, men and
    women in two colours (all test predictions of the first repeat).
``bland_altman_<view>.png``
    Difference (predicted - reference) against the mean of the two, one panel per
    model, with the bias and the 95 % limits of agreement.
``fold_metrics.png``
    MAPE and CCC of every fold as dots, per model and view, with the study's published
    ranges as bands.
``shap_xgb-features_<tier>.png``
    SHAP beeswarm of xgb-features on its first view beside the mean |SHAP| per block of
    features (covariates, each leg-dimension family): every test sample of the first
    repeat explained by the fold model that did not see it. The ``photo`` tier's comes
    first: it answers which leg dimensions drive SMI.

``report.html`` carries the plots as base64 PNGs, so the one file can be mailed or
archived on its own.
"""

from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from smi_data.runs import atomic_write_text

from . import aggregate

SEX_COLOURS = {"M": "#1f77b4", "F": "#d62728"}
VIEW_COLOURS = {"lateral": "#1f77b4", "posterior": "#ff7f0e", "both": "#2ca02c"}


# --------------------------------------------------------------------------- plots

def _save_grid(fig, axes, n_used: int, title: str, path):
    """Blank the unused panels of a model grid, title it and save it."""
    for ax in list(axes.flat)[n_used:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def _figure(nrows: int = 1, ncols: int = 1, *, figsize, **subplots):
    """A figure on its own Agg canvas and its axes: matplotlib's object API, so the library never
    switches the global backend (a notebook keeps its inline plots) and nothing needs closing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplots)


def _grid(n: int, ncols: int = 3):
    ncols = max(1, min(ncols, n))
    nrows = int(math.ceil(n / ncols))
    return nrows, ncols


def plot_pred_vs_ref(predictions: pd.DataFrame, view: str, models: list[str], path: Path) -> Path | None:
    """Scatter of predicted against reference SMI per model on one view, with the identity line."""
    d = predictions[(predictions["view"] == view) & (predictions["repeat"] == predictions["repeat"].min())]
    models = [m for m in models if (d["model"] == m).any()]
    if not models:
        return None
    nrows, ncols = _grid(len(models))
    fig, axes = _figure(nrows, ncols, figsize=(3.6 * ncols, 3.5 * nrows), squeeze=False)
    lo = float(np.nanmin(d[["y_true", "y_pred"]].to_numpy(dtype=float))) - 0.3
    hi = float(np.nanmax(d[["y_true", "y_pred"]].to_numpy(dtype=float))) + 0.3
    for ax, m in zip(axes.flat, models):
        g = d[d["model"] == m]
        for sex, gs in g.groupby("sex"):
            ax.scatter(gs["y_true"], gs["y_pred"], s=12, alpha=0.75, color=SEX_COLOURS.get(str(sex), "grey"),
                       label={"M": "men", "F": "women"}.get(str(sex), str(sex)))
        ax.plot([lo, hi], [lo, hi], color="black", lw=1, ls="--", label="identity")
        ok = np.isfinite(g["y_pred"].to_numpy(dtype=float))
        title = m
        if ok.sum() >= 2:
            stats = aggregate.group_metrics(g["y_true"], g["y_pred"])
            title += f"\nMAPE {stats['mape']:.2f} %, CCC {stats['ccc']:.3f}"
        if (~ok).any():
            title += f" ({int((~ok).sum())} failed)"
        ax.set_title(title, fontsize=9)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel("reference SMI (kg/m²)", fontsize=8)
        ax.set_ylabel("predicted SMI (kg/m²)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    return _save_grid(fig, axes, len(models), f"Predicted vs reference SMI, {view} view (test folds)", path)


def plot_bland_altman(predictions: pd.DataFrame, view: str, models: list[str], path: Path) -> Path | None:
    """Bland-Altman plot per model on one view: difference against mean, bias and 95 % limits."""
    d = predictions[(predictions["view"] == view) & (predictions["repeat"] == predictions["repeat"].min())]
    d = d[np.isfinite(d["y_pred"].to_numpy(dtype=float))]
    models = [m for m in models if (d["model"] == m).sum() >= 2]
    if not models:
        return None
    nrows, ncols = _grid(len(models))
    fig, axes = _figure(nrows, ncols, figsize=(3.6 * ncols, 3.2 * nrows), squeeze=False, sharey=True)
    for ax, m in zip(axes.flat, models):
        g = d[d["model"] == m]
        t = g["y_true"].to_numpy(dtype=float)
        p = g["y_pred"].to_numpy(dtype=float)
        mean, diff = (t + p) / 2, p - t
        bias, sd = float(np.mean(diff)), float(np.std(diff, ddof=1))
        for sex in ("M", "F"):
            s = (g["sex"].astype(str) == sex).to_numpy()
            ax.scatter(mean[s], diff[s], s=10, alpha=0.75, color=SEX_COLOURS[sex])
        ax.axhline(bias, color="black", lw=1)
        for lim in (bias - 1.96 * sd, bias + 1.96 * sd):
            ax.axhline(lim, color="black", lw=0.8, ls="--")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{m}\nbias {bias:+.2f}, LoA {bias - 1.96 * sd:+.2f} to {bias + 1.96 * sd:+.2f}", fontsize=9)
        ax.set_xlabel("mean of reference and predicted (kg/m²)", fontsize=8)
        ax.set_ylabel("predicted − reference (kg/m²)", fontsize=8)
        ax.tick_params(labelsize=7)
    return _save_grid(fig, axes, len(models), f"Bland–Altman, {view} view (test folds)", path)


def plot_fold_metrics(metrics: pd.DataFrame, models: list[str], path: Path) -> Path | None:
    """MAPE and CCC of each fold as dots per model and view; the study's ranges as bands."""
    folds = aggregate.fold_rows(metrics)
    if folds.empty:
        return None
    views = [v for v in aggregate.VIEW_ORDER if v in set(folds["view"])]
    fig, axes = _figure(1, 2, figsize=(max(7.0, 1.3 * len(models) + 3), 3.8))
    width = 0.7 / max(1, len(views))
    for ax, metric, label in ((axes[0], "mape", "MAPE (%)"), (axes[1], "ccc", "CCC")):
        for j, view in enumerate(views):
            study = aggregate.STUDY_RANGES.get((view, metric))
            if study:
                ax.axhspan(study[0], study[1], color=VIEW_COLOURS[view], alpha=0.12, lw=0)
            for i, m in enumerate(models):
                vals = folds[(folds["model"] == m) & (folds["view"] == view)][metric].to_numpy(dtype=float)
                vals = vals[np.isfinite(vals)]
                if vals.size == 0:
                    continue
                x = i + (j - (len(views) - 1) / 2) * width
                jitter = np.linspace(-width / 4, width / 4, vals.size) if vals.size > 1 else np.zeros(1)
                ax.scatter(x + jitter, vals, s=14, color=VIEW_COLOURS[view], alpha=0.85,
                           label=view if i == 0 or not ax.get_legend_handles_labels()[1].count(view) else None)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    axes[0].legend(uniq.values(), uniq.keys(), fontsize=7, title="view (bands: study)", title_fontsize=7)
    fig.suptitle("Per-fold metrics (dots: folds of every repeat)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def plot_shap(kept: dict, path: Path, notes: list[str]) -> Path | None:
    """SHAP beeswarm and block bars of xgb-features, each test sample explained by its fold's model.

    ``kept`` maps tasks (one model, tier and view) to ``(fitted estimator, test sample
    table)``; the SHAP values of every fold's model on its own test fold
    (``smi_features.explain.shap_values``) are pooled into one summary. If the folds'
    models use different feature lists, only the first fold is shown.
    """
    if not kept:
        return None
    try:
        import shap

        from smi_features.explain import as_feature_table, grouped_shap, shap_values
    except ImportError as exc:
        notes.append(f"SHAP plot not made: {exc}")
        return None
    try:
        parts = []
        for task in sorted(kept, key=lambda t: (t.repeat, t.fold)):
            est, X_test = kept[task]
            values, base, X = shap_values(est, as_feature_table(est, X_test))
            parts.append((list(est.feature_names_), values, np.full(len(values), base), X))
        names = parts[0][0]
        if any(p[0] != names for p in parts):
            parts = parts[:1]
        values = np.vstack([p[1] for p in parts])
        bases = np.concatenate([p[2] for p in parts])
        data = np.vstack([p[3] for p in parts])
        block_values, blocks = grouped_shap(values, names)
        block_abs = np.abs(block_values).mean(axis=0)
        order = np.argsort(block_abs)
        n_show = min(15, len(names))
        fig, (ax, bx) = _figure(1, 2, figsize=(13.0, 1.4 + 0.38 * n_show), gridspec_kw={"width_ratios": [3, 2]})
        shap.plots.beeswarm(shap.Explanation(values=values, base_values=bases, data=data, feature_names=names),
                            max_display=15, ax=ax, show=False, plot_size=None)
        ax.set_xlabel("SHAP value: contribution to predicted SMI (kg/m²)")
        bx.barh(np.arange(len(order)), block_abs[order], color="#3b75af")
        bx.set_yticks(np.arange(len(order)), [blocks[i] for i in order], fontsize=8)
        bx.set_xlabel("mean |SHAP| of the block (kg/m²)")
        task = next(iter(kept))
        tier = task.tier or "widest"
        fig.suptitle(f"xgb-features, {tier} tier, {task.view} view: {len(values)} test samples, each "
                     f"explained by the model of its fold ({len(parts)} fold(s))", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    except Exception as exc:  # a plot must not sink a finished benchmark
        notes.append(f"SHAP plot not made: {type(exc).__name__}: {exc}")
        return None
    return Path(path)


def _cutoff_text() -> str:
    """The AWGS 2019 SMI cut-offs as the report states them, from :mod:`smi_data.cutoffs`."""
    from smi_data.cutoffs import SMI_CUTOFFS_KG_M2 as C

    return (f"SMI < {C[('BIA', 'M')]:g} kg/m² men; < {C[('BIA', 'F')]:g} BIA / < {C[('DXA', 'F')]:g} DXA women"
            + ("" if C[("BIA", "M")] == C[("DXA", "M")] else f"; men DXA < {C[('DXA', 'M')]:g}"))


def shap_plots(kept: dict, plots_dir: Path, notes: list[str]) -> list[tuple[str, Path]]:
    """One SHAP figure per tier of the kept fits, the ``photo`` tier first."""
    order = ("photo", "basic", "weight")
    by_tier: dict = {}
    for task, value in kept.items():
        by_tier.setdefault(task.tier, {})[task] = value
    out = []
    for tier in sorted(by_tier, key=lambda t: order.index(t) if t in order else 9):
        group = by_tier[tier]
        p = plot_shap(group, plots_dir / f"shap_xgb-features_{tier}.png", notes)
        if p:
            task = next(iter(group))
            what = ("which leg dimensions drive SMI (no covariates)" if tier == "photo"
                    else "what the photos add to the covariates")
            out.append((f"SHAP of xgb-features at the {tier} tier ({task.view} view): {what}; every test sample "
                        f"explained by the model fitted without it (repeat {task.repeat})", p))
    return out


# --------------------------------------------------------------------------- tables
def md_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    if df is None or df.empty:
        return "_(none)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "/") for v in r.tolist()) + " |")
    return "\n".join(lines) + "\n"


def html_table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "<p><em>(none)</em></p>"
    return df.to_html(index=False, border=0, classes="tbl", escape=True)


def model_table(models: list[str], predictions: pd.DataFrame) -> pd.DataFrame:
    from . import registry

    rows = []
    for m in models:
        try:
            spec = registry.get_spec(m)
            family, desc = spec.family, spec.description
        except KeyError:
            family, desc = "-", "-"
        views = [v for v in aggregate.VIEW_ORDER if ((predictions["model"] == m) & (predictions["view"] == v)).any()]
        tiers = ([t for t in aggregate.TIER_ORDER if ((predictions["model"] == m) & (predictions["tier"] == t)).any()]
                 if "tier" in predictions.columns else [])
        rows.append({"model": m, "family": family, "what it is": desc, "tiers": ", ".join(tiers),
                     "views": ", ".join(views)})
    return pd.DataFrame(rows)


def refusal_table(predictions: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Share of test photos refused per model, tier and view, with the count of each reason (first repeat)."""
    from smi_image.quality import reason_code

    if "failure" not in predictions.columns or predictions.empty:
        return pd.DataFrame()
    p = predictions[predictions["repeat"] == predictions["repeat"].min()] if "repeat" in predictions else predictions
    keys = [k for k in ("model", "tier", "view") if k in p.columns]
    codes = p["failure"].map(reason_code)
    rows = []
    for key, g in p.assign(_code=codes).groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        if key[0] not in models:
            continue
        counts = g["_code"][g["_code"] != ""].value_counts()
        refused = int(counts.drop("other", errors="ignore").sum())
        rows.append({**dict(zip(keys, key)), "photos": len(g), "refused": refused,
                     "refused %": round(100.0 * refused / max(1, len(g)), 1),
                     "reasons": ", ".join(f"{c} {n}" for c, n in counts.items()) or "-"})
    return pd.DataFrame(rows)


def timing_table(records: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    if records is None or records.empty:
        return pd.DataFrame()
    rows = []
    tiers = [t for t in aggregate.TIER_ORDER if "tier" in records.columns and (records["tier"] == t).any()] or [None]
    for m in models:
        for t in tiers:
            for v in aggregate.VIEW_ORDER:
                sel = (records["model"] == m) & (records["view"] == v)
                if t is not None:
                    sel &= records["tier"] == t
                r = records[sel]
                if r.empty:
                    continue
                ok = r["status"].astype(str).str.startswith("ok")
                rows.append({"model": m, **({} if t is None else {"tier": t}), "view": v, "fits": len(r),
                             "failed fits": int((~ok).sum()),
                             "fit s/fold (mean)": f"{r['fit_s'].mean():.2f}",
                             "predict s/fold (mean)": f"{r['predict_s'].mean():.2f}",
                             "fit s (total)": f"{r['fit_s'].sum():.1f}"})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- report
TIER_TEXT = {
    "photo": "the photos and nothing else, as in the study",
    "basic": "the photos plus sex, age and height (what every clinic records)",
    "weight": "the photos plus sex, age, height and body weight",
}


def _ceiling_text(ceiling: dict | None) -> str:
    if not ceiling:
        return ("No cohort ceiling: the dataset has no truth.csv (real data), or it could not be computed "
                "(see notes).")
    tier = ceiling.get("tier", "weight")
    text = (f"Cohort ceiling at this tier: cross-validated regressions of the label on the true calf geometry each "
            f"view shows (truth.csv, no image involved) and the tier's covariates, on the same folds of the same "
            f"`splits.json` as the models ({ceiling.get('folds', '?')} folds × {ceiling.get('repeats', 1)} "
            "repeat(s)): the best an image model told the same things can hope for on this cohort.")
    cov = ceiling.get("covariates_only")
    if isinstance(cov, dict) and "mape" in cov:
        used = ", ".join(str(f) for f in cov.get("features", ())) or "the covariates"
        text += f" The covariates alone ({used}) reach MAPE {cov['mape']:.2f} %, CCC {cov['ccc']:.3f}."
    elif tier == "photo":
        text += " (No covariates at this tier.)"
    floor = ceiling.get("label_noise_floor")
    if isinstance(floor, dict) and "mape" in floor:
        text += (f" The reference device's own error (true SMI against the label) is MAPE {floor['mape']:.2f} %, "
                 f"CCC {floor['ccc']:.3f}: no model can be more accurate than that.")
    return text


def tier_sections(metrics: pd.DataFrame, models: list[str], ceiling: dict | None) -> list[tuple]:
    """The study's table once per information tier, ``photo`` first: ``(title, text, table)`` each."""
    table = aggregate.tier_tables(metrics, models, ceiling=ceiling)
    if "tier" not in table.columns:
        return [("The study's table: range over folds", "Range (min–max) over the test folds.", table)]
    out = []
    for tier in dict.fromkeys(table["tier"]):
        part = table[table["tier"] == tier].drop(columns=["tier"])
        part = part.loc[:, [c for c in part.columns if not (part[c] == "n/a").all() or c == aggregate.CEILING_COLUMN]]
        if tier != "photo" and aggregate.STUDY_COLUMN in part.columns:
            part = part.drop(columns=[aggregate.STUDY_COLUMN])
        text = (f"**Tier `{tier}`: {TIER_TEXT.get(tier, tier)}.** Range (min–max) over the test folds of every "
                "repeat. ")
        if tier == "photo":
            text += ("The study's column comes from Hashida et al. 2026 (doi:10.2490/prm.20260025): 100 real adults "
                     "photographed in a clinic, a **different population** from this dataset, so the columns are "
                     "side by side for scale, not for a head-to-head ranking. ")
        text += _ceiling_text((ceiling or {}).get(tier))
        out.append((f"The study's table at the {tier} tier: range over folds", text, part))
    return out


def _tier_labelled(predictions: pd.DataFrame, metrics: pd.DataFrame, models: list[str]):
    """Predictions and metrics with each model named ``model [tier]``, for plots that take one panel per
    model; the tables keep the ``tier`` column instead."""
    if "tier" not in predictions.columns:
        return predictions, metrics, models
    order = [(m, t) for m in models for t in aggregate.TIER_ORDER
             if ((predictions["model"] == m) & (predictions["tier"] == t)).any()]
    label = {mt: f"{mt[0]} [{mt[1]}]" for mt in order}

    def relabel(df):
        df = df.copy()
        df["model"] = [label.get((m, t), f"{m} [{t}]") for m, t in zip(df["model"], df["tier"])]
        return df

    return relabel(predictions), relabel(metrics), [label[mt] for mt in order]


def write_report(out_dir, *, predictions: pd.DataFrame, metrics: pd.DataFrame, records: pd.DataFrame,
                 models: list[str], ceiling: dict | None, notes: list[str], kept: dict, config: dict,
                 seconds: float) -> dict:
    """Write plots, report.md and report.html into ``out_dir``; return ``{name: path}``."""
    out_dir = Path(out_dir)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    views = [v for v in aggregate.VIEW_ORDER if v in set(predictions["view"])]
    plots: list[tuple[str, Path]] = []
    tp, tm, tmodels = _tier_labelled(predictions, metrics, models)
    for v in views:
        p = plot_pred_vs_ref(tp, v, tmodels, plots_dir / f"pred_vs_ref_{v}.png")
        if p:
            plots.append((f"Predicted vs reference, {v} view", p))
    for v in views:
        p = plot_bland_altman(tp, v, tmodels, plots_dir / f"bland_altman_{v}.png")
        if p:
            plots.append((f"Bland–Altman, {v} view", p))
    p = plot_fold_metrics(tm, tmodels, plots_dir / "fold_metrics.png")
    if p:
        plots.append(("Per-fold MAPE and CCC", p))
    plots = shap_plots(kept, plots_dir, notes) + plots

    sections = [
        ("Models", "Each model was built afresh and fitted on the training fold only; the test fold's labels were "
         "never passed to it. `--views auto` runs every model on the lateral and posterior photos and the cheap "
         "ones also on `both` (one sample per person, both photos). Each model runs at the information tiers it "
         "supports (`photo`: the photos only; `basic`: + sex, age, height; `weight`: + weight); the harness hands "
         "it only the columns of its tier. `--tiers auto` runs the CNNs at `photo` only (`--tiers all` for every "
         "tier).", model_table(models, predictions)),
        *tier_sections(metrics, models, ceiling),
        ("Pooled agreement by model and view",
         "All test predictions of a repeat pooled (mean over repeats). MAPE in %; MAE, RMSE, bias and limits of "
         "agreement in kg/m²; Lin's CCC with its 95 % CI (Fisher z); Bland–Altman bias = mean(predicted − "
         "reference), limits = bias ± 1.96 SD; prop. slope: regression of the difference on the mean.",
         aggregate.pooled_table(metrics, models)),
        ("By sex", "Pooled over folds, men and women apart. Screening at the AWGS 2019 cut-offs "
         f"({_cutoff_text()}).", aggregate.sex_table(metrics, models)),
        ("Screening for low muscle mass (AWGS 2019)",
         "A person screens positive when the predicted SMI is below the sex- and device-specific cut-off; "
         "the reference label decides who truly is low. AUC uses the continuous estimate. n/a where no one in "
         "the test folds is below the cut-off.", aggregate.screening_table(metrics, models)),
        ("Refused photos", "Per model, tier and view: the test photos (first repeat) the quality gate refused "
         "(`smi_image.quality`: the photo is not measured and the sample not scored), as a share, and how many "
         "for each reason; `other` is a failure that is not a refusal.", refusal_table(predictions, models)),
        ("Fits and time", "Seconds per fold on this machine.", timing_table(records, models)),
    ]
    from .calibration import report_parts  # prediction intervals (issue 11): a section and a plot

    cal_sections, cal_plots = report_parts(predictions, models, plots_dir)
    sections[-1:-1] = cal_sections
    plots += cal_plots
    cmd = config_command(config)
    md = [f"# legsmi benchmark: {Path(str(config.get('dataset'))).name}", "",
          f"Command: `{cmd}`  ", f"Seed {config.get('seed')}, {config.get('folds')} folds × "
          f"{config.get('repeats')} repeat(s), {seconds:.0f} s on {os.cpu_count()} CPU core(s). Every model was "
          "refit inside each fold under the same `splits.json`.", ""]
    for title, text, df in sections:
        md += [f"## {title}", "", text, "", md_table(df)]
    if notes:
        md += ["## Notes and failures", ""] + [f"- {n}" for n in notes] + [""]
    md += ["## Plots", ""] + [f"![{t}](plots/{p.name})" for t, p in plots] + [""]
    md += ["Files: `predictions.csv` (a row per test sample, model, view, repeat and fold), `metrics.csv` "
           "(per fold and pooled, by sex), `folds.csv` (status and time per fit), `table.csv`, `splits.json`, "
           "`run.json`.", ""]
    md_path = atomic_write_text(out_dir / "report.md", "\n".join(md))

    body = [f"<h1>legsmi benchmark: {html.escape(Path(str(config.get('dataset'))).name)}</h1>",
            f"<p>Command: <code>{html.escape(cmd)}</code><br>Seed {config.get('seed')}, {config.get('folds')} "
            f"folds × {config.get('repeats')} repeat(s), {seconds:.0f} s on {os.cpu_count()} CPU core(s). Every "
            "model was refit inside each fold under the same <code>splits.json</code>.</p>"]
    for title, text, df in sections:
        body += [f"<h2>{html.escape(title)}</h2>", f"<p>{_md_inline(text)}</p>", html_table(df)]
    if notes:
        body += ["<h2>Notes and failures</h2>", "<ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    body.append("<h2>Plots</h2>")
    for t, p in plots:
        b64 = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        body.append(f"<figure><img alt=\"{html.escape(t)}\" src=\"data:image/png;base64,{b64}\">"
                    f"<figcaption>{html.escape(t)}</figcaption></figure>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>legsmi benchmark</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
            "table.tbl{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em}"
            "table.tbl th,table.tbl td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}"
            "table.tbl th{background:#f3f3f3}figure{margin:1em 0}img{max-width:100%}"
            "figcaption{font-size:0.85em;color:#555}code{background:#f5f5f5;padding:1px 3px}"
            "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    html_path = atomic_write_text(out_dir / "report.html", page)
    return {"report.md": md_path, "report.html": html_path, **{p.name: p for _, p in plots}}


def _md_inline(text: str) -> str:
    """Escape for HTML and turn **bold** into <strong>."""
    import re

    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def config_command(config: dict) -> str:
    """The ``legsmi benchmark`` command line that repeats a run with this config."""
    parts = ["legsmi benchmark", str(config.get("dataset"))]
    parts += ["--models", ",".join(config.get("models") or [])]
    views = config.get("views")
    parts += ["--views", views if isinstance(views, str) else ",".join(views)]
    tiers = config.get("tiers", "auto")
    parts += ["--tiers", tiers if isinstance(tiers, str) else ",".join(tiers)]
    parts += ["--folds", str(config.get("folds")), "--repeats", str(config.get("repeats")),
              "--seed", str(config.get("seed"))]
    if config.get("splits"):
        parts += ["--splits", str(config["splits"])]
    parts += ["--out", str(config.get("out"))]
    return " ".join(parts)
