"""Named ablations under one set of saved splits, printed as one table.

Each ablation is a list of *arms*: a model, a view, parameter overrides and a share of
the training fold. Every arm runs through the same harness as the benchmark (same
``splits.json``, same per-fold seeds, refit inside each fold), so arms differ only in
what the ablation changes. Arms that are identical across ablations (say the CNN's
default arm in ``canny`` and ``augment``) are fitted once and reported in each.

==================  =====================================================================
ablation            arms
==================  =====================================================================
canny               cnn-lite on Canny edges (the study's input) vs the grey photo (Canny off)
augment             cnn-lite with and without training-time augmentation
views               the chosen model on lateral, posterior and both views
feature-groups      xgb-features on width only; + area; + curvature; + covariates
resolution          cnn-lite at 64, 96 (its default) and 128 px input (the default arm is the default fits)
train-size          the chosen model on 20/40/60/80/100 % of each training fold's subjects
leaky-protocols     the chosen model under four protocol errors beside the honest protocol
                    (:mod:`benchmarks.leaky`): its own table, ``leaky.csv``
==================  =====================================================================

Tiers (``--tiers``, :mod:`smi_data.tiers`): ``auto`` runs each arm at its model's
natural tier (the CNNs at ``photo``, the study's setting; every other model at the
widest tier it supports, as before tiers) and the leaky protocols at ``photo`` and
``weight``; a list runs every arm at each listed tier its model supports.

The parameter names each arm sets are in :data:`ARM_PARAMS`, next to the model
families' constructors they refer to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import aggregate, registry
from .harness import (BenchmarkError, Task, check_folds, fold_table, load_or_make_splits, run_folds,
                      thread_overrides)

#: Parameter names and values the arms set, per model family (see smi_deep / smi_features).
ARM_PARAMS = {
    "cnn_input_mode": "input_mode",          # 'canny' (the study) or 'grey'
    "cnn_augment": "augment",                # bool
    "cnn_image_size": "image_size",          # input side, px
    "feature_groups": "feature_groups",      # tuple of group names for xgb-features
}
FEATURE_GROUP_STEPS = (
    ("width", ("width",)),
    ("+area", ("width", "area")),
    ("+curvature", ("width", "area", "curvature")),
    ("+covariates", ("width", "area", "curvature", "covariates")),
)
TRAIN_FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
RESOLUTIONS = (64, 96, 128)
ABLATIONS = ("canny", "augment", "views", "feature-groups", "resolution", "train-size", "leaky-protocols")
#: What ``--ablations`` runs when not given (the leaky protocols are asked for by name).
DEFAULT_ABLATIONS = ABLATIONS[:-1]
LEAKY = "leaky-protocols"


@dataclass(frozen=True)
class Arm:
    """One configuration inside an ablation."""

    ablation: str
    label: str
    model: str
    view: str
    overrides: tuple = ()
    train_fraction: float = 1.0
    tier: str | None = None

    @property
    def key(self) -> tuple:
        """Arms with the same key are the same fits."""
        return (self.model, self.tier, self.view, self.overrides, self.train_fraction)


def _default_image_size(cnn_model: str) -> int | None:
    """The CNN variant's own input size (smi_deep.nets.VARIANTS), or None if unknown."""
    try:
        from smi_deep.nets import VARIANTS
    except ImportError:
        return None
    return int(VARIANTS.get(cnn_model, {}).get("image_size", 0)) or None


def _ov(**kw) -> tuple:
    return tuple(sorted(kw.items()))


def arms_for(name: str, *, cnn_model: str = "cnn-lite", model: str = "xgb-features",
             view: str = "lateral") -> list[Arm]:
    """The arms of the ablation called ``name``.

    Parameters
    ----------
    cnn_model : str
        The CNN for the input, augmentation and resolution ablations (cnn-lite: fast).
    model : str
        The model for the views and training-size ablations.
    view : str
        The view of every ablation except ``views``.
    """
    p = ARM_PARAMS
    if name == "canny":
        return [Arm(name, "canny on (edges)", cnn_model, view, _ov(**{p["cnn_input_mode"]: "canny"})),
                Arm(name, "canny off (grey)", cnn_model, view, _ov(**{p["cnn_input_mode"]: "grey"}))]
    if name == "augment":
        return [Arm(name, "augmentation on", cnn_model, view, _ov(**{p["cnn_augment"]: True})),
                Arm(name, "augmentation off", cnn_model, view, _ov(**{p["cnn_augment"]: False}))]
    if name == "views":
        return [Arm(name, v, model, v) for v in ("lateral", "posterior", "both")]
    if name == "feature-groups":
        return [Arm(name, label, "xgb-features", view, _ov(**{p["feature_groups"]: groups}))
                for label, groups in FEATURE_GROUP_STEPS]
    if name == "resolution":
        default = _default_image_size(cnn_model)
        return [Arm(name, f"{s} px" + (" (default)" if s == default else ""), cnn_model, view,
                    () if s == default else _ov(**{p["cnn_image_size"]: s}))
                for s in sorted(set(RESOLUTIONS) | ({default} if default else set()))]
    if name == "train-size":
        return [Arm(name, f"{int(round(f * 100))} %", model, view, train_fraction=f) for f in TRAIN_FRACTIONS]
    raise BenchmarkError(f"unknown ablation {name!r}; choose from {', '.join(ABLATIONS)}")


@dataclass
class AblateConfig:
    """Everything ``legsmi ablate`` needs; stored in run.json."""

    dataset: str
    out: str
    ablations: list[str] = field(default_factory=lambda: list(DEFAULT_ABLATIONS))
    tiers: object = "auto"
    folds: int = 5
    repeats: int = 1
    seed: int = 0
    splits: str | None = None
    overwrite: bool = False
    jobs: int = 1
    cnn_model: str = "cnn-lite"
    model: str = "xgb-features"
    view: str = "lateral"
    overrides: dict = field(default_factory=dict)
    progress: bool | None = None

    def to_json(self) -> dict:
        from dataclasses import asdict

        d = asdict(self)
        d.pop("progress")
        return d


def _range(values, digits):
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return "n/a" if v.size == 0 else f"{v.min():.{digits}f}–{v.max():.{digits}f}"


def ablation_table(arms: list[Arm], metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per arm: MAPE and CCC range over folds, pooled MAPE and CCC, failures."""
    folds = aggregate.fold_rows(metrics)
    pooled = aggregate.pooled_rows(metrics, "all")
    rows = []
    for arm in arms:
        tag = arm_tag(arm)
        f = folds[folds["arm"] == tag]
        p = pooled[pooled["arm"] == tag]
        rows.append({
            "ablation": arm.ablation, "arm": arm.label, "model": arm.model, "tier": arm.tier or "", "view": arm.view,
            "MAPE % (folds)": _range(f["mape"], 2), "CCC (folds)": _range(f["ccc"], 3),
            "MAPE % (pooled)": f"{p['mape'].iloc[0]:.2f}" if len(p) and np.isfinite(p["mape"].iloc[0]) else "n/a",
            "CCC (pooled)": f"{p['ccc'].iloc[0]:.3f}" if len(p) and np.isfinite(p["ccc"].iloc[0]) else "n/a",
            "failed": int(p["n_failed"].iloc[0]) if len(p) else 0,
        })
    return pd.DataFrame(rows)


def drop_defaults(arm: Arm, specs: dict | None = None) -> Arm:
    """The arm without overrides that equal the model's defaults, so equal configurations share fits.

    ``canny on`` (input_mode='canny'), ``augmentation on`` (augment=True) and ``96 px``
    are all cnn-lite's defaults: one set of fits serves the three.
    """
    from dataclasses import replace

    defaults = registry.get_spec(arm.model, specs).build(0, tier=arm.tier).get_params()
    kept = tuple((k, v) for k, v in arm.overrides if k not in defaults or defaults[k] != v)
    return replace(arm, overrides=kept)


def arm_tag(arm: Arm) -> str:
    """A readable, stable id of an arm's fits (shared by identical arms of different ablations).

    ``model/view``, then each override as ``name=value`` (sequences joined by ``+``), then
    ``train=fraction`` below 1: ``xgb-features/lateral feature_groups=width+area``.
    """
    parts = [f"{arm.model}/{arm.tier}/{arm.view}" if arm.tier else f"{arm.model}/{arm.view}"]
    for k, v in arm.overrides:
        parts.append(f"{k}={'+'.join(map(str, v)) if isinstance(v, (tuple, list)) else v}")
    if arm.train_fraction < 1:
        parts.append(f"train={arm.train_fraction:g}")
    return " ".join(parts)


def run_ablations(cfg: AblateConfig, *, specs: dict | None = None, echo=None) -> dict:
    """The ``legsmi ablate`` command as a function.

    Writes into ``cfg.out``: ``splits.json``, ``predictions.csv``, ``metrics.csv``,
    ``folds.csv``, ``ablation.csv`` and ``ablation.md`` (the one table) and ``run.json``.

    Returns
    -------
    dict
        ``out``, ``table`` (DataFrame), ``metrics``, ``notes``, ``seconds``.
    """
    from smi_data.manifest import read_manifest
    from smi_data.runs import RunRecord, atomic_write_csv, atomic_write_text, stage_output

    from .report import md_table

    echo = echo or (lambda s: None)
    names = list(dict.fromkeys(cfg.ablations))
    if not names:
        raise BenchmarkError(f"no ablation given; choose from {', '.join(ABLATIONS)}")
    arms = [a for n in names if n != LEAKY
            for a in arms_for(n, cnn_model=cfg.cnn_model, model=cfg.model, view=cfg.view)]
    arms = tiered_arms(arms, cfg.tiers, specs)
    models = list(dict.fromkeys([a.model for a in arms] + ([cfg.model] if LEAKY in names else [])))
    unavailable = registry.check_available(models, specs)
    if unavailable:
        raise BenchmarkError("cannot build: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    arms = [drop_defaults(a, specs) for a in arms]
    from .overrides import check_overrides

    check_overrides(cfg.overrides, specs, models=models)  # before any fit: a bad --set stops here (exit 2)
    manifest = read_manifest(cfg.dataset)
    stage = stage_output(cfg.out, overwrite=cfg.overwrite, protect=(cfg.dataset, cfg.splits))
    out_dir = stage.path  # swapped into cfg.out when the run ends ok
    started = time.perf_counter()
    notes: list[str] = []
    with RunRecord(out_dir, "ablate", cfg.to_json(), seed=cfg.seed, stage=stage) as rec:
        splits = load_or_make_splits(manifest, cfg, out_dir)
        reps = min(int(splits.n_repeats), cfg.repeats)
        if cfg.splits and reps < int(splits.n_repeats):
            notes.append(f"{cfg.splits} holds {int(splits.n_repeats)} repeats; {reps} used "
                         f"(pass --repeats {int(splits.n_repeats)} to use them all)")
        folds = fold_table(splits, reps)
        check_folds(folds, manifest["subject_id"].astype(str).unique(), cfg.splits or "splits")
        unique = {}
        for a in arms:
            unique.setdefault(a.key, a)
        tasks = []
        for a in unique.values():
            ov = dict(cfg.overrides.get(a.model) or {})
            ov.update(dict(a.overrides))
            ov = thread_overrides(a.model, ov, cfg.jobs, specs)
            for r, f, _, _ in folds:
                tasks.append(Task(a.model, a.view, r, f, arm=arm_tag(a), overrides=tuple(sorted(ov.items())),
                                  train_fraction=a.train_fraction, tier=a.tier))
        echo(f"ablate: {len(names)} ablation(s), {len(unique)} distinct arm(s), {len(tasks)} fits"
             + (" + the leaky protocols" if LEAKY in names else ""))
        parts, rec_parts = [], []
        if tasks:
            p, r, _ = run_folds(manifest, folds, tasks, seed=cfg.seed, specs=specs, jobs=cfg.jobs,
                                progress=cfg.progress, log=notes.append)
            parts.append(p)
            rec_parts.append(r)
        leaky_table = None
        if LEAKY in names:
            from . import leaky

            lt = ["photo", "weight"] if cfg.tiers == "auto" else list(cfg.tiers)
            lt = [t for t in lt if t in registry.get_spec(cfg.model, specs).tiers]
            ov = thread_overrides(cfg.model, dict(cfg.overrides.get(cfg.model) or {}), cfg.jobs, specs)
            p, r, lnotes = leaky.run_leaky(manifest, folds, model=cfg.model, tiers=lt, view=cfg.view,
                                           seed=cfg.seed, n_folds=int(splits.n_folds), work_dir=out_dir / "leaky",
                                           specs=specs, jobs=cfg.jobs, overrides=ov, progress=cfg.progress,
                                           log=notes.append)
            notes += lnotes
            parts.append(p)
            rec_parts.append(r)
        preds = pd.concat(parts, ignore_index=True)
        records = pd.concat(rec_parts, ignore_index=True)
        preds = preds.sort_values(["arm", "repeat", "fold", "sample_id"], kind="stable").reset_index(drop=True)
        atomic_write_csv(preds, out_dir / "predictions.csv")
        atomic_write_csv(records, out_dir / "folds.csv")
        metrics = aggregate.compute_metrics(preds, keys=("arm", "model", "tier", "view"))
        atomic_write_csv(metrics, out_dir / "metrics.csv")
        table = ablation_table(arms, metrics)
        atomic_write_csv(table, out_dir / "ablation.csv")
        if LEAKY in names:
            from . import leaky

            leaky_table = leaky.leaky_table(metrics)
            atomic_write_csv(leaky_table, out_dir / "leaky.csv")
        seconds = time.perf_counter() - started
        md = ["# legsmi ablate", "",
              f"Seed {cfg.seed}, {cfg.folds} folds × {reps} repeat(s), one `splits.json` for every arm; "
              f"{seconds:.0f} s. Ranges are min–max over test folds; pooled: all test predictions together.", ""]
        if arms:
            md += [md_table(table)]
        if leaky_table is not None:
            md += ["## Leaky protocols beside the honest one", "",
                   "Inflation = what the error gains: MAPE points (honest − leaky) and CCC points (leaky − honest), "
                   "pooled and as the range over folds. See benchmarks/leaky.py for each protocol.", "",
                   md_table(leaky_table)]
        if notes:
            md += ["## Notes and failures", ""] + [f"- {n}" for n in notes] + [""]
        atomic_write_text(out_dir / "ablation.md", "\n".join(md))
        rec.data["results"] = {"table": table.to_dict(orient="records"), "notes": notes,
                               "seconds": round(seconds, 1), "n_fits": len(records),
                               "leaky": None if leaky_table is None else leaky_table.to_dict(orient="records")}
        rec.data["tiers"] = {arm_tag(a): a.tier for a in arms}
    return {"out": stage.target, "table": table, "metrics": metrics, "notes": notes, "leaky": leaky_table,
            "seconds": time.perf_counter() - started, "records": records}


def tiered_arms(arms: list[Arm], tiers, specs: dict | None = None) -> list[Arm]:
    """Each arm at its tier(s): ``auto`` the CNNs at ``photo`` and the rest at their widest tier; a list:
    every listed tier the arm's model supports."""
    from dataclasses import replace

    from smi_data.tiers import AUTO, TIERS, parse_tiers

    tiers = parse_tiers(tiers)
    out = []
    for a in arms:
        spec = registry.get_spec(a.model, specs)
        if tiers == AUTO:
            chosen = [spec.tiers[0] if spec.family == "deep" else spec.tiers[-1]]
        else:
            chosen = [t for t in (TIERS if tiers == "all" else tiers) if t in spec.tiers]
        out += [replace(a, tier=t) for t in chosen]
    return out
