"""How long each model takes: training seconds per fold and prediction images per second.

``legsmi speed`` times one fold of each model under the benchmark's own harness (same
sample table, same seeds), so the numbers say what a benchmark run will cost on this
machine: ``fit_s`` is the wall time of ``fit`` on the training fold (feature extraction
or image preprocessing included, so a warm cache makes a second fit faster), and
``images_per_s`` is test images scored per second by ``predict``. It also runs
``smi_features.speed.extraction_speed`` (feature extraction, images/s, 1 and 2
processes) when asked.
"""

from __future__ import annotations

import os
import time

import pandas as pd

from . import registry
from .harness import BenchmarkError, Task, fold_table, run_task


def model_speed(dataset: str | os.PathLike, models, *, view: str = "lateral", folds: int = 5, seed: int = 0,
                overrides: dict | None = None, echo=print) -> pd.DataFrame:
    """Fit each model on the first training fold and predict its test fold, timing both.

    Returns
    -------
    DataFrame
        ``model``, ``view``, ``n_train``, ``n_test``, ``fit_s``, ``predict_s``,
        ``images_per_s`` (test images per second of ``predict``; a ``both`` sample
        counts as two images), ``status``, ``estimated_benchmark_s`` (fit + predict
        times ``folds``: one view of a ``--repeats 1`` benchmark).
    """
    from smi_data.manifest import read_manifest, to_samples
    from smi_data.splits import make_splits

    unavailable = registry.check_available(models)
    if unavailable:
        raise BenchmarkError("cannot build: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    manifest = read_manifest(dataset)
    splits = make_splits(manifest, n_folds=folds, seeds=[seed], dataset=str(dataset))
    r, f, train, test = fold_table(splits, 1)[0]
    samples = to_samples(manifest, view)
    per_sample = 2 if view == "both" else 1
    rows = []
    for m in models:
        t0 = time.perf_counter()
        res = run_task(Task(m, view, r, f, overrides=tuple(sorted((overrides or {}).get(m, {}).items()))),
                       samples, train, test, seed)
        ips = (res.n_test * per_sample / res.predict_s) if res.predict_s > 0 else float("nan")
        rows.append({"model": m, "view": view, "n_train": res.n_train, "n_test": res.n_test,
                     "fit_s": round(res.fit_s, 2), "predict_s": round(res.predict_s, 3),
                     "images_per_s": round(ips, 1), "status": res.status,
                     "estimated_benchmark_s": round((res.fit_s + res.predict_s) * folds, 1)})
        echo(f"{m:14s} fit {res.fit_s:7.2f} s/fold, predict {ips:8.1f} images/s  "
             f"({time.perf_counter() - t0:.1f} s, {res.status})")
    return pd.DataFrame(rows)


def run_speed(dataset: str | os.PathLike, *, models=registry.DEFAULT_MODELS, view: str = "lateral",
              folds: int = 5, seed: int = 0, extraction: bool = True, jobs=(1, 2), limit: int | None = None,
              overrides: dict | None = None, echo=print) -> dict:
    """The ``legsmi speed`` command: feature extraction speed, then each model's fold timings."""
    out: dict = {}
    if extraction:
        try:
            from smi_features.speed import extraction_speed
        except ImportError as exc:
            echo(f"feature extraction speed not measured: {exc}")
        else:
            echo("feature extraction (no cache):")
            out["extraction"] = extraction_speed(dataset, jobs=tuple(jobs), limit=limit, echo=echo)
    if models:
        echo(f"models, one fold of {folds} on the {view} view:")
        out["models"] = model_speed(dataset, list(models), view=view, folds=folds, seed=seed,
                                    overrides=overrides, echo=echo)
    return out
