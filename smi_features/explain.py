"""SHAP explanations of the features model (TreeExplainer, exact for trees).

For a fitted :class:`..estimators.XGBFeaturesRegressor`, every prediction splits into a
base value plus one contribution per feature (Lundberg et al. 2020, *From local
explanations to global understanding with explainable AI for trees*, Nat Mach Intell
2: 56-67, doi:10.1038/s42256-019-0138-9). XGBoost computes the same values itself
(``Booster.predict(..., pred_contribs=True)``); ``tests/test_features_model.py`` checks
that SHAP's TreeExplainer and XGBoost agree to 1e-4. With the linear base
(:mod:`.estimators`), :func:`shap_values` adds the base's exact per-feature
contributions to the trees' values, so the attributions still sum to the prediction.

Inputs that are functions of one another would split one effect between them, often as
large contributions of opposite sign (BMI beside weight and height did: +-4 kg/m^2 on a
target with an SD of 1.1). The features model has no such pair (:mod:`.estimators`).
Correlated inputs still share credit, so :func:`grouped_shap` also sums the values over
blocks (the covariates as one block, each leg-dimension family as one:
:func:`..features.feature_families`); SHAP values are additive, so a block's value is
the exact contribution of the block. Read the blocks first, the single features second.

Which leg dimensions drive SMI is answered by a ``photo``-tier model (no covariates:
:mod:`smi_data.tiers`); a model with covariates answers what the photos add to them.

:func:`explain_model` is what ``legsmi explain`` runs: for each model folder given
(photo tier first) it writes a beeswarm plot, a bar plot of mean |SHAP| per feature, a
bar plot per block, the attributions of every sample as CSV, the mean |SHAP| tables and
``run.json``. :func:`shap_summary_plot` draws a plot for a fitted estimator.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .estimators import XGBFeaturesRegressor


def tree_shap_values(estimator: XGBFeaturesRegressor, table: pd.DataFrame) -> tuple[np.ndarray, float, np.ndarray]:
    """SHAP values of the booster alone (TreeExplainer): ``(values (n, p), expected value, X)``.

    Without a linear base this is the whole model. With one, the trees' output is added
    to the base's prediction, and these values explain the trees' part only; they are
    what XGBoost's ``pred_contribs`` gives per feature.
    """
    import shap

    X = estimator.matrix(table)
    explainer = shap.TreeExplainer(estimator.xgb_)
    values = np.asarray(explainer.shap_values(X), dtype=float)
    base = float(np.ravel(explainer.expected_value)[0])
    return values, base, X


def shap_values(estimator: XGBFeaturesRegressor, table: pd.DataFrame) -> tuple[np.ndarray, float, np.ndarray]:
    """SHAP values of a fitted features model on a feature table.

    The trees' SHAP values (:func:`tree_shap_values`) plus, with a linear base, the
    base's exact per-column contributions (``coef * standardised term``, summed over a
    column's raw and log terms; baseline: the training mean), so that
    ``base_value + values.sum(1)`` is the model's prediction.

    Parameters
    ----------
    estimator : XGBFeaturesRegressor
        Fitted.
    table : DataFrame
        Feature table (:func:`..extractor.sample_features`) of the samples to explain.

    Returns
    -------
    values : ndarray, (n, p)
        Contribution of each of the model's ``feature_names_`` to each prediction, kg/m^2.
    base_value : float
        The model's expected output.
    X : ndarray, (n, p)
        The model's input matrix.
    """
    values, base, X = tree_shap_values(estimator, table)
    lin = getattr(estimator, "base_", None)
    if lin is not None:
        contrib = lin.contributions(table[lin.columns].to_numpy(dtype=float))
        idx = [estimator.feature_names_.index(c) for c in lin.columns]
        values = values.copy()
        values[:, idx] += contrib
        base = base + lin.intercept_
    return values, base, X


def xgb_contributions(estimator: XGBFeaturesRegressor, X: np.ndarray) -> np.ndarray:
    """XGBoost's own per-feature contributions (``pred_contribs``), ``(n, p + 1)``; last column the bias."""
    import xgboost

    booster = estimator.xgb_.get_booster()
    dm = xgboost.DMatrix(np.asarray(X, dtype=float), feature_names=list(estimator.feature_names_), missing=np.nan)
    return np.asarray(booster.predict(dm, pred_contribs=True), dtype=float)


def grouped_shap(values: np.ndarray, names: list[str], families: dict[str, str] | None = None
                 ) -> tuple[np.ndarray, list[str]]:
    """SHAP values summed over blocks of features: ``(values (n, g), block names)``.

    ``families`` maps a column to its block (default :func:`..features.feature_families`);
    a column it does not know is a block of its own. Blocks are in order of first column.
    """
    from .features import feature_families

    families = feature_families() if families is None else families
    blocks = list(dict.fromkeys(families.get(n, n) for n in names))
    out = np.zeros((values.shape[0], len(blocks)))
    for j, n in enumerate(names):
        out[:, blocks.index(families.get(n, n))] += values[:, j]
    return out, blocks


def model_tier(estimator) -> str:
    """The information tier of a features model: its ``tier`` parameter, else read from its inputs."""
    tier = getattr(estimator, "tier", None)
    if tier:
        return str(tier)
    names = set(getattr(estimator, "feature_names_", ()))
    if not any(n.startswith(("cov_", "idx_")) for n in names):
        return "photo"
    return "weight" if "cov_weight_kg" in names else "basic"


def _explanation(values: np.ndarray, base: float, X: np.ndarray, names: list[str]):
    import shap

    return shap.Explanation(values=values, base_values=np.full(len(values), base), data=X, feature_names=list(names))


def shap_summary_plot(estimator: XGBFeaturesRegressor, table: pd.DataFrame, out_path: str | os.PathLike, *,
                      kind: str = "beeswarm", max_display: int = 20, title: str | None = None) -> Path:
    """Draw a SHAP summary of a fitted features model and save it.

    Parameters
    ----------
    estimator : XGBFeaturesRegressor
        Fitted.
    table : DataFrame
        The samples to summarise: a sample table (features are extracted, from the
        cache where possible, and samples that fail are left out) or a feature table.
    out_path : path-like
        Image file (PNG, SVG or PDF by its suffix).
    kind : {'beeswarm', 'bar', 'blocks'}, keyword-only
        Beeswarm of every sample's values, a bar plot of mean |SHAP| per feature, or of
        mean |SHAP| per block (:func:`grouped_shap`).
    max_display : int, keyword-only
        Features shown (the rest are summed into one row in the beeswarm).
    """
    # matplotlib's object API: the library never switches the global backend (a notebook keeps its plots)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if kind not in ("beeswarm", "bar", "blocks"):
        raise ValueError(f"kind must be 'beeswarm', 'bar' or 'blocks', got {kind!r}")
    table = as_feature_table(estimator, table)
    values, base, X = shap_values(estimator, table)
    names = list(estimator.feature_names_)
    if kind == "blocks":
        values, names = grouped_shap(values, names)
        kind_label = "mean |SHAP| per block"
    else:
        kind_label = kind
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_show = min(max_display, len(names))
    fig = Figure(figsize=(8.0, 1.2 + 0.38 * n_show))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if kind == "beeswarm":
        import shap

        shap.plots.beeswarm(_explanation(values, base, X, names), max_display=max_display, ax=ax, show=False,
                            plot_size=None)
        ax.set_xlabel("SHAP value: contribution to predicted SMI (kg/m²)")
    else:  # bar or blocks
        mean_abs = np.abs(values).mean(axis=0)
        order = np.argsort(mean_abs)[::-1][:n_show][::-1]
        ax.barh(np.arange(len(order)), mean_abs[order], color="#3b75af")
        ax.set_yticks(np.arange(len(order)), [names[i] for i in order], fontsize=8)
        ax.set_xlabel("mean |SHAP value| (kg/m²)")
    ax.set_title(title or f"Features model, {model_tier(estimator)} tier: SHAP {kind_label} "
                          f"(n = {len(values)}, base {base:.2f} kg/m²)", fontsize=10)
    fig.tight_layout()
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    fig.savefig(tmp, dpi=130)
    os.replace(tmp, out)
    return out


def as_feature_table(estimator: XGBFeaturesRegressor, table: pd.DataFrame) -> pd.DataFrame:
    """A feature table as is; a sample table turned into one (failed samples dropped)."""
    if all(c in table.columns for c in estimator.feature_names_):
        return table
    feats, failures = estimator.transform_features(table)
    keep = ~feats["sample_id"].astype(str).isin(set(failures)).to_numpy()
    if not keep.any():
        raise ValueError(f"no sample could be measured, e.g. {next(iter(failures.items()))}")
    return feats.loc[keep]


def infer_view(estimator: XGBFeaturesRegressor, meta: dict | None = None) -> str:
    """The sample view a model was trained on: ``model.json``'s ``view``, else from its feature names."""
    if meta and meta.get("view") in ("lateral", "posterior", "both"):
        return meta["view"]
    names = estimator.feature_names_
    lat = any(n.startswith("lat_") for n in names)
    post = any(n.startswith("post_") for n in names)
    if lat and post:
        return "both"
    return "posterior" if post else "lateral"


def explain_model(model_dir: str | os.PathLike, dataset: str | os.PathLike, out_dir: str | os.PathLike, *,
                  view: str | None = None, n_jobs: int = 1, overwrite: bool = False,
                  max_display: int = 20) -> dict:
    """SHAP explanation of a saved features model on a dataset (what ``legsmi explain`` runs).

    Writes to ``out_dir``: ``shap_blocks.png`` and ``shap_blocks.csv`` (mean |SHAP| per
    block of features, :func:`grouped_shap`), ``shap_beeswarm.png``, ``shap_bar.png``,
    ``shap_values.csv`` (one row per sample: ids, prediction, base value and one column
    per feature), ``shap_mean_abs.csv`` and ``run.json``. The summary names the model's
    information tier (a ``photo``-tier model answers which leg dimensions drive SMI).

    Parameters
    ----------
    model_dir : path-like
        Folder from ``legsmi train --model xgb-features`` (:func:`..modelio.save_model`).
    dataset : path-like
        Dataset folder (manifest.csv; the smi column is not needed).
    out_dir : path-like
        New or empty folder (or ``overwrite``).
    view : {'lateral', 'posterior', 'both'} or None, keyword-only
        Samples to explain; default the view the model was trained on.

    Returns
    -------
    dict
        Summary: counts, the largest mean |SHAP| features, the SHAP/XGBoost agreement and
        the files written.
    """
    from smi_data.manifest import read_manifest, to_samples
    from smi_data.modelfile import read_model_meta
    from smi_data.runs import RunRecord, atomic_write_csv, stage_output

    from .modelio import FAMILY, load_model

    est = load_model(model_dir)
    meta = read_model_meta(model_dir, family=FAMILY)
    view = view or infer_view(est, meta)
    stage = stage_output(out_dir, overwrite=overwrite, protect=(model_dir, dataset))
    out = stage.path  # swapped into out_dir when the run ends ok
    config = {"model_dir": str(model_dir), "dataset": str(dataset), "view": view, "n_jobs": n_jobs,
              "max_display": max_display}
    with RunRecord(out, "explain", config, seed=meta.get("config", {}).get("random_state"), stage=stage) as rec:
        manifest = read_manifest(dataset, require_label=False)
        samples = to_samples(manifest, view)
        if samples.empty:
            raise ValueError(f"{dataset}: no samples with the {view} view")
        est.n_jobs = n_jobs
        table, failures = est.transform_features(samples)
        ok = ~table["sample_id"].astype(str).isin(set(failures)).to_numpy()
        if not ok.any():
            raise ValueError(f"{dataset}: no sample could be measured; e.g. {next(iter(failures.items()))}")
        good = table.loc[ok]
        values, base, X = shap_values(est, good)
        tree_values, _, _ = tree_shap_values(est, good)
        contribs = xgb_contributions(est, X)
        agreement = float(np.max(np.abs(contribs[:, :-1] - tree_values))) if len(values) else 0.0
        pred = est.predict_table(good)
        names = list(est.feature_names_)
        attrib = pd.DataFrame(values, columns=names)
        ids = samples.loc[ok, ["sample_id", "subject_id", "view"]].reset_index(drop=True)
        attrib.insert(0, "base_value", base)
        attrib.insert(0, "prediction", pred)
        attrib = pd.concat([ids, attrib], axis=1)
        atomic_write_csv(attrib, out / "shap_values.csv", float_format="%.6g")
        mean_abs = pd.DataFrame({"feature": names, "mean_abs_shap": np.abs(values).mean(axis=0)})
        mean_abs = mean_abs.sort_values("mean_abs_shap", ascending=False).reset_index(drop=True)
        atomic_write_csv(mean_abs, out / "shap_mean_abs.csv", float_format="%.6g")
        block_values, blocks = grouped_shap(values, names)
        block_abs = pd.DataFrame({"block": blocks, "mean_abs_shap": np.abs(block_values).mean(axis=0)})
        block_abs = block_abs.sort_values("mean_abs_shap", ascending=False).reset_index(drop=True)
        atomic_write_csv(block_abs, out / "shap_blocks.csv", float_format="%.6g")
        shap_summary_plot(est, good, out / "shap_blocks.png", kind="blocks", max_display=max_display)
        shap_summary_plot(est, good, out / "shap_beeswarm.png", kind="beeswarm", max_display=max_display)
        shap_summary_plot(est, good, out / "shap_bar.png", kind="bar", max_display=max_display)
        summary = {
            "tier": model_tier(est), "blocks": block_abs.to_dict(orient="records"),
            "n_samples": int(len(samples)), "n_explained": int(ok.sum()), "failures": failures,
            "base_value": base, "max_abs_diff_vs_xgboost_pred_contribs": agreement,
            "top_features": mean_abs.head(10).to_dict(orient="records"),
            "files": ["shap_blocks.png", "shap_beeswarm.png", "shap_bar.png", "shap_values.csv",
                      "shap_mean_abs.csv", "shap_blocks.csv"],
        }
        rec.data["results"] = summary
    return summary
