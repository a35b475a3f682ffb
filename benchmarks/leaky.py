"""Protocol errors that inflate small-cohort imaging results, each run beside its honest twin.

``legsmi ablate --ablations leaky-protocols`` runs the same model under four common
errors and under the honest protocol they corrupt, and reports what each error gains:

=====================  ===============================================  =======================================
protocol               the error                                        its honest twin
=====================  ===============================================  =======================================
``augment-before``     augmented copies of every photo made before the  the same copies, made after the split:
                       split, each copy a "subject" of its own, so      only training people's copies train,
                       copies of a test person train the model          only original test photos are scored
``folds-by-image``     folds over photos instead of people (both        the same pooled-photo model with folds
                       views pooled as single-image samples): a         over people (both photos of a person
                       person's lateral photo trains, the posterior     in one fold)
                       one is tested
``tune-on-test``       hyper-parameters chosen by the test folds' own   the same grid chosen by an inner
                       score (best grid point reported)                 cross-validation over the training
                                                                        fold's people (nested)
``scale-on-all``       feature scaling (the features model's linear     scaling from the training fold only
                       base standardisation) fitted on all rows,
                       test rows included
=====================  ===============================================  =======================================

Inflation is honest minus leaky: MAPE points gained (positive = the error flatters the
model) and CCC points gained (leaky minus honest), pooled and as the range over folds
(fold k of the leaky run against fold k of the honest one; for the two protocols that
change the folds the pairing is by fold number only).

``scale-on-all`` can leak only the distribution of the test photos' features, never
their labels; a model without feature scaling gains nothing from it (the table says
so when the model does not take a ``scaling_X``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from . import aggregate, registry

PROTOCOLS = ("augment-before", "folds-by-image", "tune-on-test", "scale-on-all")
#: Augmented copies per photo for ``augment-before``.
N_COPIES = 2
#: Hyper-parameter grids of ``tune-on-test`` (per model; others: :data:`DEFAULT_GRID` if it has the keys).
GRIDS = {
    "xgb-features": {"max_depth": (1, 2, 3), "n_estimators": (100, 300), "learning_rate": (0.03, 0.1)},
    "covariates": {"use_weight": (False, True)},
}
#: Inner folds of the honest (nested) hyper-parameter choice.
INNER_FOLDS = 3
COPY_MARK, IMAGE_MARK = "~aug", "@"


# --------------------------------------------------------------------------- data for the protocols
def augment_copies(manifest: pd.DataFrame, out_dir: str | Path, *, n_copies: int = N_COPIES,
                   seed: int = 0) -> pd.DataFrame:
    """The manifest plus ``n_copies`` augmented copies of every photo, each copy a new "subject".

    A copy of subject ``S`` is subject ``S~aug<k>`` (both views of one copy together, as a
    study that augments people would have it): every photo rotated by a few degrees and
    its brightness and contrast changed (seeded per copy), written as JPEG under
    ``out_dir``. The marker stays readable, so the copies keep their scale.
    """
    import cv2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(1, n_copies + 1):
        for i, row in manifest.iterrows():
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), k, int(i)]))
            img = cv2.imread(str(row["image_path"]), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{row['image_path']}: cannot read the image to augment it")
            h, w = img.shape[:2]
            angle = float(rng.uniform(-4.0, 4.0))
            m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
            img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            gain, bias = float(rng.uniform(0.9, 1.1)), float(rng.uniform(-10.0, 10.0))
            img = np.clip(img.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
            sid = f"{row['subject_id']}{COPY_MARK}{k}"
            path = out_dir / f"{sid}_{row['view']}.jpg"
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            rows.append({**row.to_dict(), "subject_id": sid, "image": path.name, "image_path": str(path)})
    return pd.concat([manifest, pd.DataFrame(rows, columns=manifest.columns)], ignore_index=True)


def image_manifest(manifest: pd.DataFrame) -> pd.DataFrame:
    """Each photo as a one-photo "subject" ``S@view`` in the lateral slot (both views pooled).

    The single-image model that a study pooling both views as independent photos trains.
    """
    out = manifest.copy()
    out["subject_id"] = [f"{s}{IMAGE_MARK}{v}" for s, v in zip(out["subject_id"], out["view"])]
    out["view"] = "lateral"
    return out


def person_of(pseudo: str) -> str:
    """The person behind a copy (``S~aug2``) or a pooled photo (``S@posterior``)."""
    return str(pseudo).split(COPY_MARK)[0].split(IMAGE_MARK)[0]


def made_folds(manifest: pd.DataFrame, n_folds: int, seed: int, repeats: int = 1) -> list:
    """Stratified folds over the manifest's (pseudo-)subjects: ``[(repeat, fold, train, test)]``."""
    from smi_data.splits import make_splits

    from .harness import fold_table

    splits = make_splits(manifest, n_folds=n_folds, seeds=list(range(seed, seed + repeats)))
    return fold_table(splits, repeats)


def honest_twin_folds(folds: list, pseudo_subjects, *, test_originals_only: bool) -> list:
    """The run's person folds carried over to pseudo-subjects (copies or pooled photos).

    Every pseudo-subject goes where its person is; with ``test_originals_only`` the test
    keeps only original people (copies are training material, never scored).
    """
    by_person: dict[str, list[str]] = {}
    for p in pseudo_subjects:
        by_person.setdefault(person_of(p), []).append(str(p))
    out = []
    for r, f, train, test in folds:
        tr = sorted(p for s in train for p in by_person.get(str(s), ()))
        te = sorted(p for s in test for p in by_person.get(str(s), ())
                    if not test_originals_only or p == str(s))
        out.append((r, f, tr, te))
    return out


# --------------------------------------------------------------------------- the nested (honest) search
class SubjectGridSearch(RegressorMixin, BaseEstimator):
    """Choose a model's hyper-parameters by an inner cross-validation over the training people.

    ``fit`` splits the rows it is given by ``subject_id`` into ``inner_folds`` groups,
    scores every grid point by MAPE on the held-out groups, refits the best on all rows.
    """

    def __init__(self, model: str = "xgb-features", grid=None, tier: str | None = None, inner_folds: int = 3,
                 random_state: int = 0, specs=None):
        self.model = model
        self.grid = grid
        self.tier = tier
        self.inner_folds = inner_folds
        self.random_state = random_state
        self.specs = specs

    def _build(self, params: dict):
        return registry.get_spec(self.model, self.specs).build(self.random_state, tier=self.tier, **params)

    def fit(self, X: pd.DataFrame, y):
        from sklearn.model_selection import GroupKFold, ParameterGrid

        from smi_data.metrics import mape

        y = np.asarray(y, dtype=float)
        groups = X["subject_id"].astype(str).map(person_of).to_numpy()
        scores = []
        points = list(ParameterGrid({k: list(v) for k, v in (self.grid or {}).items()}))
        for params in points:
            pred = np.full(len(y), np.nan)
            for tr, te in GroupKFold(n_splits=int(self.inner_folds)).split(X, y, groups):
                est = self._build(params).fit(X.iloc[tr].reset_index(drop=True), y[tr])
                pred[te] = est.predict(X.iloc[te].reset_index(drop=True))
            ok = np.isfinite(pred)
            scores.append(mape(y[ok], pred[ok]) if ok.sum() >= 2 else np.inf)
        self.best_params_ = points[int(np.argmin(scores))]
        self.cv_scores_ = [(p, float(s)) for p, s in zip(points, scores)]
        self.estimator_ = self._build(self.best_params_).fit(X, y)
        self.failures_ = dict(getattr(self.estimator_, "failures_", {}) or {})
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.estimator_.predict(X)

    def predict_with_reasons(self, X: pd.DataFrame) -> tuple[np.ndarray, dict]:
        """The wrapped model's predictions and reasons (:mod:`smi_data.reasons`)."""
        from smi_data.reasons import predict_with_reasons

        return predict_with_reasons(self.estimator_, X)


def nested_spec(model: str, grid: dict, specs=None) -> registry.ModelSpec:
    """A registry entry for the nested search over ``grid`` of ``model`` (same tiers)."""
    inner = registry.get_spec(model, specs)

    def factory(random_state: int = 0, tier: str | None = None, **overrides):
        return SubjectGridSearch(model=model, grid=grid, tier=tier, inner_folds=INNER_FOLDS,
                                 random_state=random_state, specs=specs)

    return registry.ModelSpec(f"nested:{model}", inner.family, factory, f"{model}, grid chosen by inner CV",
                              cheap=inner.cheap, views=inner.views, tiers=inner.tiers,
                              tier_setup=lambda t: {"tier": t})


def grid_points(model: str, grid: dict | None = None) -> list[dict]:
    from sklearn.model_selection import ParameterGrid

    grid = grid if grid is not None else GRIDS.get(model)
    if not grid:
        raise ValueError(f"no hyper-parameter grid for {model!r} (known: {', '.join(GRIDS)})")
    return list(ParameterGrid({k: list(v) for k, v in grid.items()}))


def takes_scaling(model: str, specs=None) -> bool:
    """Whether the model's ``fit`` accepts ``scaling_X`` (rows to fit its feature scaling on)."""
    est = registry.get_spec(model, specs).build(0)
    return "scaling_X" in inspect.signature(est.fit).parameters


# --------------------------------------------------------------------------- run and tabulate
@dataclass(frozen=True)
class LeakyRun:
    """One side (honest or leaky) of one protocol for one model at one tier and view."""

    protocol: str
    side: str          # 'honest' or 'leaky'
    model: str
    tier: str
    view: str

    @property
    def tag(self) -> str:
        return f"{self.protocol}/{self.side} {self.model}/{self.tier}/{self.view}"


def run_leaky(manifest: pd.DataFrame, folds: list, *, model: str, tiers: list[str], view: str, seed: int,
              n_folds: int, work_dir: Path, protocols=PROTOCOLS, specs: dict | None = None, jobs: int = 1,
              overrides: dict | None = None, progress=None, grid: dict | None = None,
              log=None) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Run every protocol's honest and leaky sides; ``(predictions, records, notes)``.

    ``folds`` are the run's person folds (:func:`benchmarks.harness.fold_table`); the
    ``arm`` column of the predictions is :attr:`LeakyRun.tag`.
    """
    from .harness import Task, run_folds

    notes: list[str] = []
    log = log or notes.append
    reps = len({r for r, _, _, _ in folds})
    ov = tuple(sorted((overrides or {}).items()))
    preds, records = [], []

    def run(manifest_, folds_, runs_and_tasks, extra_specs=None):
        tasks = [t for _, t in runs_and_tasks]
        p, rec, _ = run_folds(manifest_, folds_, tasks, seed=seed, specs={**(specs or {}), **(extra_specs or {})},
                              jobs=jobs, progress=progress, log=log)
        preds.append(p)
        records.append(rec)

    augmented = None
    for proto in protocols:
        if proto not in PROTOCOLS:
            raise ValueError(f"unknown protocol {proto!r}; choose from {', '.join(PROTOCOLS)}")
        for tier in tiers:
            shown = "images (both views pooled)" if proto == "folds-by-image" else view
            honest, leaky = LeakyRun(proto, "honest", model, tier, shown), LeakyRun(proto, "leaky", model, tier, shown)

            def tasks_for(r_: LeakyRun, folds_, name=model, extra=ov, scale=False, v=view, t=tier):
                return [(r_, Task(name, v, r, f, arm=r_.tag, overrides=extra, tier=t, scale_on_all=scale))
                        for r, f, _, _ in folds_]

            if proto == "augment-before":
                if augmented is None:
                    augmented = augment_copies(manifest, work_dir / "augmented", seed=seed)
                aug = augmented
                subjects = aug["subject_id"].astype(str).unique()
                run(aug, honest_twin_folds(folds, subjects, test_originals_only=True),
                    tasks_for(honest, folds))
                lf = made_folds(aug, n_folds, seed, reps)
                run(aug, lf, tasks_for(leaky, lf))
            elif proto == "folds-by-image":
                img = image_manifest(manifest)
                hf = honest_twin_folds(folds, img["subject_id"].astype(str).unique(), test_originals_only=False)
                run(img, hf, tasks_for(honest, hf, v="lateral"))
                lf = made_folds(img, n_folds, seed, reps)
                run(img, lf, tasks_for(leaky, lf, v="lateral"))
            elif proto == "tune-on-test":
                points = grid_points(model, grid)
                spec = nested_spec(model, grid or GRIDS[model], specs)
                run(manifest, folds, tasks_for(honest, folds, name=spec.name), {spec.name: spec})
                for i, params in enumerate(points):
                    point = LeakyRun(proto, f"leaky#{i}", model, tier, shown)
                    run(manifest, folds, tasks_for(point, folds, extra=tuple(sorted({**dict(ov), **params}.items()))))
            else:  # scale-on-all
                if not takes_scaling(model, specs):
                    notes.append(f"scale-on-all: {model} has no feature scaling to fit on all rows "
                                 "(its fit takes no scaling_X); nothing can leak that way")
                    continue
                run(manifest, folds, tasks_for(honest, folds))
                run(manifest, folds, tasks_for(leaky, folds, scale=True))
    p = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame()
    r = pd.concat(records, ignore_index=True) if records else pd.DataFrame()
    return p, r, notes


def _pick_tuned(metrics: pd.DataFrame) -> pd.DataFrame:
    """Keep, per tune-on-test configuration, the grid point with the best pooled MAPE as the 'leaky' side."""
    arms = metrics["arm"].astype(str)
    is_point = arms.str.contains(r"/leaky#\d+ ", regex=True)
    if not is_point.any():
        return metrics
    keep = metrics[~is_point]
    points = metrics[is_point].copy()
    points["_cfg"] = points["arm"].str.replace(r"/leaky#\d+ ", "/leaky ", regex=True)
    pooled = points[(points["fold"] == aggregate.POOLED) & (points["sex"] == "all")]
    best = pooled.groupby("_cfg")["mape"].mean()
    chosen = []
    for cfg, g in points.groupby("_cfg"):
        by_arm = pooled[pooled["_cfg"] == cfg].groupby("arm")["mape"].mean().dropna()
        arm = by_arm.idxmin() if len(by_arm) else None
        if arm is not None and np.isfinite(best.get(cfg, np.nan)):
            chosen.append(g[g["arm"] == arm].assign(arm=cfg))
    return pd.concat([keep] + [c.drop(columns=["_cfg"]) for c in chosen], ignore_index=True)


def _side(metrics: pd.DataFrame, tag: str):
    m = metrics[metrics["arm"] == tag]
    folds = aggregate.fold_rows(m)
    pooled = aggregate.pooled_rows(m, "all")
    by_fold = folds.groupby(["repeat", "fold"])[["mape", "ccc"]].mean()
    return by_fold, (float(pooled["mape"].iloc[0]) if len(pooled) else np.nan,
                     float(pooled["ccc"].iloc[0]) if len(pooled) else np.nan)


def _rng(v, digits: int) -> str:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    return "n/a" if v.size == 0 else f"{v.min():+.{digits}f} to {v.max():+.{digits}f}"


def _plain_rng(v, digits: int) -> str:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    return "n/a" if v.size == 0 else f"{v.min():.{digits}f}–{v.max():.{digits}f}"


def leaky_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per protocol, model, tier and view: honest and leaky scores and the inflation."""
    metrics = _pick_tuned(metrics)
    rows = []
    arms = sorted((a for a in dict.fromkeys(metrics["arm"].astype(str)) if "/honest " in a),
                  key=lambda a: PROTOCOLS.index(a.split("/")[0]) if a.split("/")[0] in PROTOCOLS else 9)
    for honest_tag in arms:
        leaky_tag = honest_tag.replace("/honest ", "/leaky ")
        proto = honest_tag.split("/")[0]
        rest = honest_tag.split(" ", 1)[1]
        model, tier, view = rest.split("/")
        hf, (hm, hc) = _side(metrics, honest_tag)
        lf, (lm, lc) = _side(metrics, leaky_tag)
        joined = hf.merge(lf, left_index=True, right_index=True, suffixes=("_h", "_l"), how="inner")
        rows.append({
            "protocol": proto, "model": model, "tier": tier, "view": view,
            "honest MAPE % (folds)": _plain_rng(hf["mape"], 2), "leaky MAPE % (folds)": _plain_rng(lf["mape"], 2),
            "honest MAPE % (pooled)": f"{hm:.2f}", "leaky MAPE % (pooled)": f"{lm:.2f}",
            "MAPE inflation (points, pooled)": f"{hm - lm:+.2f}",
            "MAPE inflation (points, folds)": _rng(joined["mape_h"] - joined["mape_l"], 2),
            "honest CCC (pooled)": f"{hc:.3f}", "leaky CCC (pooled)": f"{lc:.3f}",
            "CCC inflation (points, pooled)": f"{lc - hc:+.3f}",
            "CCC inflation (points, folds)": _rng(joined["ccc_l"] - joined["ccc_h"], 3),
        })
    return pd.DataFrame(rows)
