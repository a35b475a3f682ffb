"""Run models x views x folds x repeats under one saved splits file.

The harness is the only place where data are divided into training and test sets,
so the guarantees live here:

* Folds come from ``splits.json`` (``smi_data.splits``), made once and read by every
  model; folds are by subject, so both views of a person are in the same fold.
* Every model is built afresh (a new estimator from its factory) and fitted on the
  training fold only; whatever it learns (feature scaling, target scaling, early
  stopping, hyper-parameters) it learns from the rows it is given. The test rows are
  handed to ``predict`` without the ``smi`` column.
* Each fit gets ``random_state`` derived from the run seed, the repeat and the fold
  (not from the model), so every model of one fold sees the same seed and the same
  seed gives the same numbers (on one machine, with the same ``--jobs``: with parallel
  jobs each CNN gets fewer torch threads, which may change the last bits).
* Views: ``--views auto`` (the default) runs every model on the study's two views,
  lateral and posterior, and the cheap models (baselines, xgb-features) also on
  ``both``; the CNNs skip ``both`` there because they are the slow part of the
  quick start (fold times: docs/results.md). Name the views to run every model on them.
* Information tiers (:mod:`smi_data.tiers`): every fit is made at one tier, ``photo``
  (the photos alone), ``basic`` (+ sex, age, height) or ``weight`` (+ weight). The
  harness sets the model up for its tier (``ModelSpec.tier_params``) **and** hands
  ``fit`` and ``predict`` a sample table with only the columns the tier gives
  (:func:`smi_data.tiers.restrict_to_tier`), so a ``photo``-tier model cannot see a
  covariate whatever its settings. ``--tiers auto`` (the default) runs every model at
  each tier it supports, except the CNNs, which run at ``photo`` only there (the
  study's setting; they are the slow part of the quick start); ``--tiers all`` runs
  the CNNs at every tier too; a list (``photo,weight``) runs every model at each
  listed tier it supports.
* A model that fails (an exception, NaN for some samples, the wrong number of
  predictions) is recorded and the run goes on: its rows get NaN and a reason.

The public entry points are :func:`run_folds` (the loop, returns tables) and
:func:`benchmarks.harness.run_benchmark` (the ``legsmi benchmark`` command: run folder,
metrics, report).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from smi_data.reasons import predict_with_reasons
from smi_data.tiers import TIERS, parse_tiers

from . import registry
from smi_data.errors import LegsmiError

#: Views a benchmark can run.
ALL_VIEWS = ("lateral", "posterior", "both")
#: ``--views auto``: every model on the study's two views, cheap models also on ``both``.
AUTO_VIEWS = "auto"
#: Sample-table columns that are inputs only and do not go into predictions.csv.
_INPUT_ONLY = ("image_lateral", "image_posterior", "px_per_cm_lateral", "px_per_cm_posterior", "smi")


class BenchmarkError(LegsmiError, ValueError):
    """A benchmark that cannot start (bad splits, unknown model, ...), with what to do."""

    exit_code = 2


# --------------------------------------------------------------------------- seeds and tasks
def fold_seed(seed: int, repeat: int, fold: int) -> int:
    """The ``random_state`` of every model fitted in (repeat, fold) of a run seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(repeat), int(fold)]).generate_state(1)[0] % (2**31 - 1))


@dataclass(frozen=True)
class Task:
    """One fit and predict: a model on one view, one fold of one repeat.

    ``arm`` names an ablation arm (empty for the main benchmark); ``overrides`` are
    parameters passed to the model's factory (after the tier's set-up);
    ``train_fraction`` < 1 keeps that share of the training fold's subjects (a learning
    curve); ``tier`` is the information tier (:mod:`smi_data.tiers`); None: the
    model's widest (the last of its ``ModelSpec.tiers``). ``scale_on_all`` is a
    protocol *error* kept for the leaky-protocol ablation (:mod:`benchmarks.leaky`): the
    model's feature scaling is fitted on the training and test rows together.
    """

    model: str
    view: str
    repeat: int
    fold: int
    arm: str = ""
    overrides: tuple = ()
    train_fraction: float = 1.0
    # conformal intervals: True/'auto' or a scheme (benchmarks.calibration.METHOD_CHOICES)
    intervals: bool | str = False
    tier: str | None = None
    scale_on_all: bool = False


@dataclass
class FoldResult:
    """What one :class:`Task` produced."""

    task: Task
    predictions: pd.DataFrame
    status: str
    fit_s: float
    predict_s: float
    n_train: int
    n_test: int
    n_failed: int
    estimator: Any = field(default=None, repr=False)
    tier: str = ""

    def record(self) -> dict:
        t = self.task
        return {"arm": t.arm, "model": t.model, "tier": self.tier, "view": t.view, "repeat": t.repeat, "fold": t.fold,
                "train_fraction": t.train_fraction, "status": self.status, "n_train": self.n_train,
                "n_test": self.n_test, "n_failed": self.n_failed,
                "fit_s": round(self.fit_s, 3), "predict_s": round(self.predict_s, 3)}


def parse_views(views: str | Iterable[str]) -> list[str] | str:
    """``'lateral,posterior'`` -> ``['lateral', 'posterior']``; ``'auto'`` stays ``'auto'``."""
    from smi_data.params import parse_name_list

    return parse_name_list(views, ALL_VIEWS, keywords=(AUTO_VIEWS,), error=BenchmarkError, what="view")


def parse_overrides(items: Iterable[str]) -> dict[str, dict]:
    """``['cnn-lite.epochs=3', 'xgb-features.n_estimators=50']`` -> ``{model: {param: value}}``.

    Values are read as JSON where they parse (numbers, true/false, lists), else kept as text.
    """
    import json

    out: dict[str, dict] = {}
    for item in items or ():
        head, sep, raw = str(item).partition("=")
        model, dot, param = head.strip().rpartition(".")
        if not sep or not dot or not model or not param:
            raise BenchmarkError(f"--set {item!r}: expected MODEL.PARAM=VALUE, e.g. cnn-lite.epochs=3")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, list):
            value = tuple(value)
        out.setdefault(model, {})[param] = value
    return out


def plan_views(models: list[str], views, specs: dict | None = None) -> tuple[dict[str, list[str]], list[str]]:
    """Which views each model runs on, and notes about combinations left out.

    ``views='auto'``: lateral and posterior for every model, ``both`` for cheap models
    only (the CNNs are the slow part of the quick start). An explicit list runs every
    model on every listed view it supports.
    """
    plan, notes = {}, []
    for name in models:
        spec = registry.get_spec(name, specs)
        if views == AUTO_VIEWS:
            wanted = ["lateral", "posterior"] + (["both"] if spec.cheap else [])
            left = [] if spec.cheap else ["both"]
            if left and "both" in spec.views:
                notes.append(f"{name}: 'both' view left out by --views auto (slow model); "
                             f"pass --views lateral,posterior,both to include it")
        else:
            wanted = list(views)
        plan[name] = [v for v in wanted if v in spec.views]
        for v in wanted:
            if v not in spec.views:
                notes.append(f"{name}: does not take the '{v}' view; skipped")
    return plan, notes


def plan_tiers(models: list[str], tiers, specs: dict | None = None) -> tuple[dict[str, list[str]], list[str]]:
    """Which information tiers each model runs at, and notes about combinations left out.

    ``tiers='auto'``: every tier a model supports, but the slow models (the CNNs) at
    ``photo`` only (the study's setting). ``'all'``: every tier each model supports.
    A list: each listed tier the model supports.
    """
    from smi_data.tiers import ALL, AUTO, TIERS

    plan, notes = {}, []
    for name in models:
        spec = registry.get_spec(name, specs)
        if tiers == AUTO:
            wanted = list(TIERS) if spec.cheap else [t for t in TIERS if t in spec.tiers][:1]
            left = [t for t in spec.tiers if t not in wanted]
            if left:
                notes.append(f"{name}: tier(s) {', '.join(left)} left out by --tiers auto (slow model); "
                             f"pass --tiers all to include them")
        elif tiers == ALL:
            wanted = list(TIERS)
        else:
            wanted = list(tiers)
            for t in wanted:
                if t not in spec.tiers:
                    notes.append(f"{name}: does not run at the '{t}' tier; skipped")
        plan[name] = [t for t in TIERS if t in wanted and t in spec.tiers]
    return plan, notes


# --------------------------------------------------------------------------- splits
def n_repeats(splits) -> int:
    """Number of repeats (seeds) in a :class:`smi_data.splits.Splits`."""
    return int(splits.n_repeats)


def fold_table(splits, repeats: int) -> list[tuple[int, int, list[str], list[str]]]:
    """``[(repeat, fold, train_subjects, test_subjects), ...]`` for ``repeats`` repeats."""
    from smi_data.splits import iter_folds

    out = []
    for r in range(repeats):
        for fold, train, test in iter_folds(splits, r):
            out.append((r, int(fold), sorted(map(str, train)), sorted(map(str, test))))
    return out


def check_folds(folds, subjects: Iterable[str], source: str = "splits") -> None:
    """Refuse splits that leak (a subject in train and test) or do not fit the dataset.

    Raises
    ------
    BenchmarkError
        With the subjects concerned and what to do.
    """
    subjects = set(map(str, subjects))
    by_repeat: dict[int, set] = {}
    for r, fold, train, test in folds:
        overlap = set(train) & set(test)
        if overlap:
            raise BenchmarkError(f"{source}: repeat {r} fold {fold} has subject(s) in both training and test "
                                 f"({', '.join(sorted(overlap)[:5])}); remake the splits with `legsmi splits`")
        seen = by_repeat.setdefault(r, set())
        dup = seen & set(test)
        if dup:
            raise BenchmarkError(f"{source}: repeat {r}: subject(s) {', '.join(sorted(dup)[:5])} are in more than "
                                 f"one test fold; remake the splits with `legsmi splits`")
        seen |= set(test)
        unknown = (set(train) | set(test)) - subjects
        if unknown:
            raise BenchmarkError(f"{source}: subject(s) {', '.join(sorted(unknown)[:5])} are not in the dataset; "
                                 "these splits were made for another dataset (make them again for this one)")
    for r, seen in by_repeat.items():
        missing = subjects - seen
        if missing:
            raise BenchmarkError(f"{source}: repeat {r}: {len(missing)} subject(s) of the dataset are in no test "
                                 f"fold ({', '.join(sorted(missing)[:5])}); these splits were made for another "
                                 "dataset (make them again for this one)")


# --------------------------------------------------------------------------- one fold
def subsample_subjects(subjects: list[str], fraction: float, seed: int, repeat: int, fold: int) -> list[str]:
    """The first ``round(fraction * n)`` (at least 2) subjects of a seeded permutation.

    The permutation depends on (seed, repeat, fold) only, so a smaller fraction's
    subjects are a subset of a larger one's: a learning curve adds people, it does not
    swap them.
    """
    subjects = sorted(subjects)
    if fraction >= 1.0:
        return subjects
    if not 0.0 < fraction < 1.0:
        raise BenchmarkError(f"train fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(repeat), int(fold), 7]))
    order = rng.permutation(len(subjects))
    k = max(2, int(round(fraction * len(subjects))))
    return sorted(subjects[i] for i in order[:k])


def _pass_through(samples: pd.DataFrame) -> list[str]:
    return [c for c in samples.columns if c not in _INPUT_ONLY]


def resolve_tier(task: Task, specs: dict | None = None) -> str:
    """The task's tier; for ``tier=None`` the widest tier its model supports."""
    spec = registry.get_spec(task.model, specs)
    tier = task.tier or spec.tiers[-1]
    if tier not in spec.tiers:
        raise KeyError(f"model {task.model!r} does not run at tier {tier!r}; its tiers: {', '.join(spec.tiers)}")
    return tier


def tier_inputs(samples: pd.DataFrame, tier: str) -> pd.DataFrame:
    """What a model at ``tier`` is handed: the sample table without the label and every column
    the tier does not give (:func:`smi_data.tiers.restrict_to_tier`), as a copy."""
    from smi_data.tiers import restrict_to_tier

    return restrict_to_tier(samples.drop(columns=["smi"], errors="ignore"), tier).copy()


def run_task(task: Task, samples: pd.DataFrame, train_subjects: list[str], test_subjects: list[str],
             seed: int, specs: dict | None = None, keep_estimator: bool = False) -> FoldResult:
    """Fit one model on the training subjects' samples and predict the test subjects' samples.

    Never raises for a model's own failure: the result's ``status`` says what went
    wrong and the predictions are NaN with the reason in ``failure``.
    """
    overlap = set(train_subjects) & set(test_subjects)
    if overlap:  # check_folds already refuses this; a second guard costs nothing
        raise BenchmarkError(f"subjects in both training and test: {sorted(overlap)[:5]}")
    train_subjects = subsample_subjects(list(train_subjects), task.train_fraction, seed, task.repeat, task.fold)
    sid = samples["subject_id"].astype(str)
    train = samples[sid.isin(set(train_subjects))].reset_index(drop=True)
    test = samples[sid.isin(set(test_subjects))].reset_index(drop=True)
    y_train = train["smi"].to_numpy(dtype=float)
    try:
        tier = resolve_tier(task, specs)
    except KeyError as exc:
        raise BenchmarkError(str(exc).strip("'\"")) from None
    X_train, X_test = tier_inputs(train, tier), tier_inputs(test, tier)

    pred = np.full(len(test), np.nan)
    reasons: dict[str, str] = {}
    fit_s = predict_s = 0.0
    estimator = None
    status = "ok"
    try:
        spec = registry.get_spec(task.model, specs)
        estimator = spec.build(fold_seed(seed, task.repeat, task.fold), tier=tier, **dict(task.overrides))
        if task.intervals:
            from . import calibration

            estimator = calibration.wrap(estimator, spec.calibration_family, fold_seed(seed, task.repeat, task.fold),
                                         method=task.intervals)
        t0 = time.perf_counter()
        if task.scale_on_all:  # the leaky protocol: the test rows' features reach the scaling
            estimator.fit(X_train, y_train, scaling_X=pd.concat([X_train, X_test], ignore_index=True))
        else:
            estimator.fit(X_train, y_train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out, reasons = predict_with_reasons(estimator, X_test)
        predict_s = time.perf_counter() - t0
        if out.shape[0] != len(X_test):
            raise ValueError(f"predict returned {out.shape[0]} values for {len(X_test)} samples")
        pred = out
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:  # a failing model is reported, never fatal
        from smi_data.runs import RunInterrupted, interrupted

        if interrupted():  # XGBoost's ctypes callback turns Ctrl-C into an XGBoostError: end the run
            raise RunInterrupted(interrupted()) from exc
        status = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        pred = np.full(len(test), np.nan)
        estimator = None

    bad = ~np.isfinite(pred)
    failure = np.full(len(test), "", dtype=object)
    for i in np.flatnonzero(bad):
        s = str(test["sample_id"].iloc[i])
        failure[i] = status if status != "ok" else reasons.get(s, "non-finite prediction (no reason given)")
    pred = np.where(bad, np.nan, pred)
    if status == "ok" and bad.all() and len(test):
        status = "failed: every prediction is NaN"
    elif status == "ok" and bad.any():
        status = f"ok ({int(bad.sum())} of {len(test)} samples not scored)"

    cols = _pass_through(test)
    rows = test[cols].copy()
    rows.insert(0, "fold", task.fold)
    rows.insert(0, "repeat", task.repeat)
    rows.insert(0, "view_run", task.view)
    rows.insert(0, "tier", tier)
    rows.insert(0, "model", task.model)
    rows.insert(0, "arm", task.arm)
    rows = rows.drop(columns=["view"]).rename(columns={"view_run": "view"})
    rows["y_true"] = test["smi"].to_numpy(dtype=float)
    rows["y_pred"] = pred
    rows["failure"] = failure
    if task.intervals:
        from . import calibration

        rows = pd.concat([rows, calibration.interval_columns(estimator, rows)], axis=1)
        estimator = calibration.unwrap(estimator)
    return FoldResult(task, rows, status, fit_s, predict_s, len(train), len(test), int(bad.sum()),
                      estimator if keep_estimator else None, tier)


# --------------------------------------------------------------------------- the loop
def progress_bar(total: int, desc: str, enabled: bool | None = None):
    """A tqdm bar on stderr, shown only when stderr is a terminal (or ``enabled=True``)."""
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr,
                dynamic_ncols=True)


def run_folds(manifest: pd.DataFrame, folds, tasks: list[Task], *, seed: int, specs: dict | None = None,
              jobs: int = 1, progress: bool | None = None, keep: Iterable[Task] = (),
              log=None, cluster=None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Run every task and gather predictions and per-fold records.

    Parameters
    ----------
    manifest : DataFrame
        From ``smi_data.manifest.read_manifest`` (with labels).
    folds : list
        From :func:`fold_table` (checked with :func:`check_folds`).
    tasks : list of Task
    seed : int
        The run seed (see :func:`fold_seed`).
    specs : dict, optional
        Extra :class:`~benchmarks.registry.ModelSpec` by name (tests, plug-ins).
    jobs : int
        Tasks run in parallel processes when > 1 (each task is seeded on its own, so
        the numbers do not depend on ``jobs``; the slow fits are started first).
    cluster : str or ClusterSpec, optional
        Run the tasks on a Dask cluster instead (``'local:N'`` or ``'tcp://HOST:PORT'``,
        :mod:`benchmarks.cluster`); ``jobs`` is then ignored. Same results as the loop.
    progress : bool or None
        Progress bar; None shows it only when stderr is a terminal.
    keep : iterable of Task
        Tasks whose fitted estimator is returned (for SHAP plots).
    log : callable or None
        Called with one line per failed task.

    Returns
    -------
    predictions : DataFrame
        A row per (task, test sample), in task order.
    records : DataFrame
        A row per task: status, sizes, fit and predict seconds.
    kept : dict
        ``{task: (estimator, X_test)}`` for the tasks in ``keep`` that fitted.
    """
    from smi_data.manifest import to_samples

    fold_by_key = {(r, f): (train, test) for r, f, train, test in folds}
    views = sorted({t.view for t in tasks})
    samples = {v: to_samples(manifest, v) for v in views}
    keep = set(keep)

    def args(t: Task):
        train, test = fold_by_key[(t.repeat, t.fold)]
        return (t, samples[t.view], train, test, seed, specs, t in keep)

    results: list[FoldResult] = []
    bar = progress_bar(len(tasks), "benchmark", progress)
    # the slow fits first, so parallel workers do not end waiting on one CNN
    cost = [0 if registry.get_spec(t.model, specs).cheap else 1 for t in tasks]
    try:
        if cluster is not None:
            from . import cluster as dask_cluster

            spec = dask_cluster.parse_cluster(cluster) if isinstance(cluster, str) else cluster
            with dask_cluster.open_client(spec) as client:
                shared = {v: dask_cluster.share(client, samples[v]) for v in views}
                calls = [(t, shared[t.view], *fold_by_key[(t.repeat, t.fold)], seed, specs, t in keep)
                         for t in tasks]
                results = dask_cluster.map_ordered(client, run_task, calls, priorities=cost,
                                                   on_done=lambda r: bar.update(1))
        elif jobs and jobs > 1 and len(tasks) > 1:
            import tempfile

            from joblib import Parallel, delayed

            order = sorted(range(len(tasks)), key=lambda i: -cost[i])
            with tempfile.TemporaryDirectory(prefix="legsmi-crops-") as store:
                warm_crops(store, crop_plan(tasks, samples, seed, specs), int(jobs))
                gen = Parallel(n_jobs=int(jobs), return_as="generator")(
                    delayed(_run_task_in_store)(store, *args(tasks[i])) for i in order)
                done = {}
                for i, res in zip(order, gen):
                    done[i] = res
                    bar.set_postfix_str(f"{res.task.model}/{res.task.view}")
                    bar.update(1)
            results = [done[i] for i in range(len(tasks))]
        else:
            for t in tasks:
                bar.set_postfix_str(f"{t.model}/{t.view} r{t.repeat} f{t.fold}")
                results.append(run_task(*args(t)))
                bar.update(1)
    finally:
        bar.close()
    for res in results:
        if res.status != "ok" and log is not None:
            t = res.task
            log(f"{t.arm or t.model + ' / ' + t.view} / repeat {t.repeat} fold {t.fold}: {res.status}")
    preds = pd.concat([r.predictions for r in results], ignore_index=True) if results else pd.DataFrame()
    records = pd.DataFrame([r.record() for r in results])
    kept = {}
    for r in results:
        if r.task in keep and r.estimator is not None:
            train, test = fold_by_key[(r.task.repeat, r.task.fold)]
            smp = samples[r.task.view]
            kept[r.task] = (r.estimator, tier_inputs(smp[smp["subject_id"].astype(str).isin(set(test))],
                                                     resolve_tier(r.task, specs)).reset_index(drop=True))
    return preds, records, kept


def crop_plan(tasks: list[Task], samples: dict, seed: int, specs: dict | None = None) -> list[tuple]:
    """Every (photo, crop settings, px_per_cm) the CNN tasks will prepare, each once.

    Shared by CNN models, tiers and folds whose crop settings are equal (the same photo
    at the same size and scale is one crop).
    """
    if not any(registry.get_spec(t.model, specs).family == "deep" for t in tasks):
        return []
    from smi_deep.cropstore import side_code
    from smi_deep.regressor import VIEWS, CNNRegressor

    items: dict = {}
    seen: set = set()
    for t in tasks:
        spec = registry.get_spec(t.model, specs)
        if spec.family != "deep" or (t.model, t.view, t.tier, t.overrides) in seen:
            continue
        seen.add((t.model, t.view, t.tier, t.overrides))
        try:
            est = spec.build(fold_seed(seed, t.repeat, t.fold), tier=resolve_tier(t, specs), **dict(t.overrides))
            crop = est._resolved()["crop"] if isinstance(est, CNNRegressor) else None
        except Exception:  # a model that cannot be built fails in its own task, with its reason
            crop = None
        if crop is None:
            continue
        smp = samples[t.view]
        for v in (VIEWS if t.view == "both" else (t.view,)):
            if f"image_{v}" not in smp.columns:
                continue
            ppcs = smp[f"px_per_cm_{v}"] if f"px_per_cm_{v}" in smp.columns else [None] * len(smp)
            sides = smp["side"] if "side" in smp.columns else [None] * len(smp)
            for path, ppc, side in zip(smp[f"image_{v}"], ppcs, sides):
                if isinstance(path, str) and path:
                    ppc = float(ppc) if ppc is not None and pd.notna(ppc) else None
                    key = (path, tuple(sorted(crop.to_dict().items())), ppc, v, side_code(side))
                    items.setdefault(key, crop.to_dict())
    return [(path, sd, ppc, v, side) for (path, _, ppc, v, side), sd in items.items()]


def warm_crops(store: str, items: list[tuple], jobs: int) -> None:
    """Prepare the CNN crops once, spread over ``jobs`` processes, into the run's crop store.

    Without it each worker process would decode and segment every photo it meets again
    (the in-memory crop cache is per process); the numbers do not change, only the time.
    """
    if not items:
        return
    from joblib import Parallel, delayed

    from smi_deep.cropstore import warm

    n = max(1, min(len(items), 4 * int(jobs)))
    Parallel(n_jobs=int(jobs))(delayed(warm)(store, items[k::n]) for k in range(n))


#: A joblib (loky) worker whose memory grew by more than this since its first task is replaced.
#: loky's own limit (300 MB) is below what one CNN fit keeps (torch's allocator, the crops): it
#: replaced a worker every few CNN fits, and each new one imports torch, OpenCV and scikit-learn again.
WORKER_MEMORY_GROWTH_BYTES = 2 * 1024**3


def keep_worker_alive(limit_bytes: int = WORKER_MEMORY_GROWTH_BYTES) -> None:
    """Raise loky's memory-growth guard in this worker process to ``limit_bytes`` (never lowers it).

    loky reads the module-level limit after every task, so setting it inside the worker takes
    effect from the next check; a joblib without that attribute is left alone.
    """
    try:
        from joblib.externals.loky import process_executor
    except ImportError:  # pragma: no cover - joblib without loky
        return
    current = getattr(process_executor, "_MAX_MEMORY_LEAK_SIZE", None)
    if isinstance(current, int) and current < limit_bytes:
        process_executor._MAX_MEMORY_LEAK_SIZE = int(limit_bytes)


def _run_task_in_store(store: str, *args) -> FoldResult:
    """:func:`run_task` in a worker process, CNN crops read from (and added to) the run's crop store."""
    from smi_deep.cropstore import using

    keep_worker_alive()
    with using(store):
        return run_task(*args)


# --------------------------------------------------------------------------- the benchmark command
@dataclass
class BenchmarkConfig:
    """Everything ``legsmi benchmark`` needs; stored in run.json so a run can be repeated."""

    dataset: str
    out: str
    models: list[str] = field(default_factory=lambda: list(registry.DEFAULT_MODELS))
    views: Any = AUTO_VIEWS
    tiers: Any = "auto"
    folds: int = 5
    repeats: int = 1
    seed: int = 0
    splits: str | None = None
    overwrite: bool = False
    jobs: int | None = 1  # None: one per core (:func:`default_jobs`; the CLI's default)
    overrides: dict = field(default_factory=dict)
    progress: bool | None = None
    cluster: str | None = None
    report: bool = True
    ceiling: bool = True
    intervals: bool | str = True  # False: none; True/'auto' or 'refit' (benchmarks.calibration.METHOD_CHOICES)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("progress")
        return d


def load_or_make_splits(manifest: pd.DataFrame, cfg: BenchmarkConfig, out_dir: Path):
    """Read ``cfg.splits`` or make the splits; either way write ``out_dir/splits.json``."""
    from smi_data.runs import atomic_write_text
    from smi_data.splits import load_splits, make_splits, save_splits

    if cfg.splits:
        path = Path(cfg.splits)
        if not path.is_file():
            raise BenchmarkError(f"{path}: no such splits file; make one with `legsmi splits` or leave out --splits")
        splits = load_splits(path, manifest)
        atomic_write_text(out_dir / "splits.json", path.read_text(encoding="utf-8"))
    else:
        splits = make_splits(manifest, n_folds=cfg.folds, seeds=list(range(cfg.seed, cfg.seed + cfg.repeats)),
                             dataset=cfg.dataset)
        save_splits(splits, out_dir / "splits.json")
    return splits


def run_benchmark(cfg: BenchmarkConfig, *, specs: dict | None = None, echo=None) -> dict:
    """The ``legsmi benchmark`` command as a function: run, aggregate, report.

    Writes into ``cfg.out``: ``splits.json``, ``predictions.csv``, ``folds.csv`` (status
    and timings per fit), ``metrics.csv``, ``table.csv`` (the study's layout),
    ``report.md``, ``report.html``, ``plots/`` and ``run.json``.

    Returns
    -------
    dict
        ``out``, ``table`` (DataFrame), ``metrics``, ``predictions``, ``records``,
        ``notes`` (list of str), ``seconds``.
    """
    from smi_data.manifest import read_manifest
    from smi_data.runs import RunRecord, atomic_write_csv, stage_output

    from . import aggregate

    echo = echo or (lambda s: None)
    models = list(dict.fromkeys(cfg.models))
    if not models:
        raise BenchmarkError("no models given; choose from " + ", ".join(registry.model_names()))
    unknown = [m for m in models if m not in {**registry.MODELS, **(specs or {})}]
    if unknown:
        raise BenchmarkError(f"unknown model(s) {', '.join(unknown)}; known: "
                             f"{', '.join({**registry.MODELS, **(specs or {})})}")
    views = parse_views(cfg.views)
    tiers = parse_tiers(cfg.tiers)
    stray = [m for m in cfg.overrides if m not in models]
    if stray:
        raise BenchmarkError(f"--set names model(s) not in this run: {', '.join(stray)} "
                             f"(models: {', '.join(models)})")
    unavailable = registry.check_available(models, specs)
    if unavailable:
        raise BenchmarkError("cannot build: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    from .overrides import check_overrides

    check_overrides(cfg.overrides, specs, models=models)  # before any fit: a bad --set stops here (exit 2)
    manifest = read_manifest(cfg.dataset)
    stage = stage_output(cfg.out, overwrite=cfg.overwrite, protect=(cfg.dataset, cfg.splits))
    out_dir = stage.path  # swapped into cfg.out when the run ends ok; the old result is kept until then
    started = time.perf_counter()
    with RunRecord(out_dir, "benchmark", cfg.to_json(), seed=cfg.seed, stage=stage) as rec:
        splits = load_or_make_splits(manifest, cfg, out_dir)
        reps = n_repeats(splits) if cfg.splits else cfg.repeats
        if cfg.splits and cfg.repeats > reps:
            raise BenchmarkError(f"{cfg.splits}: holds {reps} repeat(s) but --repeats {cfg.repeats} was asked")
        reps = min(reps, cfg.repeats)
        folds = fold_table(splits, reps)
        check_folds(folds, manifest["subject_id"].astype(str).unique(), cfg.splits or "splits")
        plan, notes = plan_views(models, views, specs)
        tier_plan, tier_notes = plan_tiers(models, tiers, specs)
        notes += tier_notes
        if cfg.splits and reps < n_repeats(splits):
            notes.append(f"{cfg.splits} holds {n_repeats(splits)} repeats; {reps} used "
                         f"(pass --repeats {n_repeats(splits)} to use them all)")
        jobs = default_jobs() if cfg.jobs is None else int(cfg.jobs)
        cluster = None
        if cfg.cluster:
            from .cluster import parse_cluster

            cluster = parse_cluster(cfg.cluster)
            jobs = cluster.n_workers if cluster.kind == "local" else 1
            notes.append(f"fits run on {cluster.describe()} (dask.distributed)")
        rec.data["jobs"] = jobs
        overrides = {m: thread_overrides(m, cfg.overrides.get(m) or {}, jobs, specs) for m in models}
        tasks = [Task(m, v, r, f, overrides=tuple(sorted(overrides[m].items())), tier=t, intervals=cfg.intervals)
                 for m in models for t in tier_plan[m] for v in plan[m] for (r, f, _, _) in folds]
        keep = shap_tasks(tasks)
        rec.data["tiers"] = tier_record(models, tier_plan, specs)
        echo(f"benchmark: {len(models)} model(s), {len(tasks)} fits on {manifest['subject_id'].nunique()} subjects "
             f"({reps} repeat(s) x {len(folds) // max(reps, 1)} folds)")
        preds, records, kept = run_folds(manifest, folds, tasks, seed=cfg.seed, specs=specs, jobs=jobs,
                                         progress=cfg.progress, keep=keep, log=lambda s: notes.append(s),
                                         cluster=cluster)
        preds = preds.sort_values(["model", "tier", "view", "repeat", "fold", "sample_id"], kind="stable",
                                  key=_model_order_key(models)).reset_index(drop=True)
        preds = preds.drop(columns=["arm"], errors="ignore")
        atomic_write_csv(preds, out_dir / "predictions.csv")
        atomic_write_csv(records, out_dir / "folds.csv")
        metrics = aggregate.compute_metrics(preds, keys=("model", "tier", "view"), model_order=models)
        atomic_write_csv(metrics, out_dir / "metrics.csv")
        from .calibration import calibration_table, target_lines

        calib = calibration_table(preds)
        if not calib.empty:
            atomic_write_csv(calib, out_dir / "calibration.csv")
        run_tiers = [t for t in TIERS if any(t in tier_plan[m] for m in models)]
        ceiling = compute_ceiling_safe(cfg.dataset, folds, run_tiers, notes) if cfg.ceiling else None
        table = aggregate.tier_tables(metrics, models, ceiling=ceiling)
        atomic_write_csv(table, out_dir / "table.csv")
        seconds = time.perf_counter() - started
        if cfg.report:
            from . import report

            report.write_report(out_dir, predictions=preds, metrics=metrics, records=records, models=models,
                                ceiling=ceiling, notes=notes, kept=kept, config=cfg.to_json(), seconds=seconds)
        rec.data["results"] = {
            "n_subjects": int(manifest["subject_id"].nunique()),
            "n_fits": len(tasks),
            "failed_fits": int((~records["status"].str.startswith("ok")).sum()) if len(records) else 0,
            "seconds": round(time.perf_counter() - started, 1),
            "ceiling": ceiling,
            "notes": notes,
            "table": table.to_dict(orient="records"),
            "calibration_targets": target_lines(calib),
        }
    return {"out": stage.target, "table": table, "metrics": metrics, "predictions": preds, "records": records,
            "notes": notes, "seconds": time.perf_counter() - started, "ceiling": ceiling,
            "calibration": calib, "calibration_targets": target_lines(calib)}


def default_jobs() -> int:
    """Parallel fits when ``--jobs`` is not given: one process per core.

    Each CNN then gets one torch thread (:func:`thread_overrides`), the setting the
    serial run uses on two cores too, so on two cores the numbers are those of
    ``--jobs 1``; the quick start's wall time about halves (docs/scaling.md).
    """
    return max(1, os.cpu_count() or 1)


def thread_overrides(model: str, overrides: dict, jobs: int, specs: dict | None = None) -> dict:
    """With ``jobs`` > 1 parallel fits, give each CNN ``cpu_count // jobs`` torch threads.

    Without this every worker process would start torch with one thread per core and
    the fits would fight over the cores. An explicit ``n_threads`` override wins.
    """
    out = dict(overrides)
    if jobs > 1 and "n_threads" not in out and registry.get_spec(model, specs).family == "deep":
        out["n_threads"] = max(1, (os.cpu_count() or 1) // jobs)
    return out


def _model_order_key(models: list[str]):
    order = {m: i for i, m in enumerate(models)}
    view_order = {v: i for i, v in enumerate(ALL_VIEWS)}

    def key(col: pd.Series):
        if col.name == "model":
            return col.map(lambda m: order.get(m, len(order)))
        if col.name == "view":
            return col.map(lambda v: view_order.get(v, 9))
        if col.name == "tier":
            return col.map(lambda t: TIERS.index(t) if t in TIERS else 9)
        return col

    return key


def shap_tasks(tasks: list[Task]) -> set[Task]:
    """The fits whose models the report explains: xgb-features, first repeat, its first view,
    at the ``photo`` tier (the answer to "which leg dimensions drive SMI") and the widest tier run."""
    xgb = [t for t in tasks if t.model == "xgb-features" and t.repeat == 0]
    if not xgb:
        return set()
    view = xgb[0].view
    tiers = sorted({t.tier for t in xgb}, key=lambda t: TIERS.index(t) if t in TIERS else 9)
    wanted = {tiers[0], tiers[-1]}
    return {t for t in xgb if t.view == view and t.tier in wanted}


def tier_record(models: list[str], tier_plan: dict, specs: dict | None = None) -> dict:
    """run.json's account of the tiers: what each tier gives and each model's set-up per tier."""
    from smi_data.tiers import tier_columns, tier_covariates

    return {
        "definitions": {t: {"covariates": list(tier_covariates(t)), "columns_given": list(tier_columns(t))}
                        for t in TIERS},
        "models": {m: {t: registry.get_spec(m, specs).tier_params(t) for t in tier_plan[m]} for m in models},
    }


def compute_ceiling_safe(dataset: str | os.PathLike, folds, tiers, notes: list[str]) -> dict | None:
    """The cohort ceiling per tier on the run's own folds (``smi_data.phantom.ceiling``) when the
    dataset has truth.csv, else None: ``{tier: ceiling dict}``."""
    if not (Path(dataset) / "truth.csv").is_file():
        return None
    try:
        from smi_data.phantom.ceiling import compute_ceiling
    except ImportError as exc:
        notes.append(f"cohort ceiling not computed: {exc}")
        return None
    fold_list = [(r, f, test) for r, f, _, test in folds]
    out = {}
    for tier in tiers:
        try:
            out[tier] = dict(compute_ceiling(dataset, folds=fold_list, tier=tier))
        except Exception as exc:  # the ceiling is extra information; its failure must not sink the run
            notes.append(f"cohort ceiling ({tier} tier) not computed: {type(exc).__name__}: {exc}")
    return out or None
