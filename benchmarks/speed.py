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
    """The ``legsmi speed`` command: per-stage times and the segmenter, extraction speed, each model's fold."""
    out: dict = {}
    if extraction:
        out["stages"] = stage_speed(dataset, limit=min(limit or 50, 50), echo=echo)
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


STAGES = ("decode", "marker", "segmentation", "gate", "edges", "features")


def stage_speed(dataset: str | os.PathLike, *, limit: int | None = 50, echo=print) -> dict:
    """Per-stage CPU milliseconds per photo of the features pipeline, one thread, and the segmenter's own time.

    Stages: ``decode`` (read, check and decode the file, the photo rule), ``marker`` (ArUco
    search and sub-pixel corners), ``segmentation`` (:func:`smi_image.segment.segment_leg`), ``gate`` (the quality
    checks), ``edges`` (upright silhouette, sub-pixel row edges), ``features`` (levels and
    every feature). Stage times are CPU time of this process (OpenCV and torch on one
    thread), so they do not move with other work on the machine; the wall time of the
    whole pass is reported beside them. ``segmenter_ms`` is the learned network alone
    (resize, forward pass; CPU) on the same photos. Refused photos count in the stages
    they reached.
    """
    import numpy as np

    from smi_data.images import photo_problem, read_image
    from smi_data.manifest import read_manifest
    from smi_features.extractor import ExtractionSettings, image_context, measure_leg, one_thread
    from smi_image.marker import find_marker
    from smi_image.segment import resolve_method

    manifest = read_manifest(dataset, require_label=False)
    rows = manifest.head(limit) if limit else manifest
    settings = ExtractionSettings()
    method = resolve_method(settings.silhouette.segmenter)
    with one_thread(settings):
        first = read_image(rows["image_path"].iloc[0])
        measure_leg(first, settings=settings)  # warm-up: imports, weights, OpenCV tables
        totals = {k: 0.0 for k in STAGES}
        net = []
        refused = 0
        methods: dict[str, int] = {}
        w0 = time.perf_counter()
        for _, r in rows.iterrows():
            # as smi_features.extractor.measure_image_file: decode, the marker, then the photo
            # rule (size, colour, mirror: a marker found the right way round settles the last)
            c0 = time.process_time()
            img = read_image(r["image_path"], check_photo=False)
            c1 = time.process_time()
            marker = find_marker(img) if settings.use_marker else None
            c2 = time.process_time()
            problem = photo_problem(img, marker_found=(marker is not None) if settings.use_marker else None)
            totals["decode"] += (c1 - c0) + (time.process_time() - c2)
            totals["marker"] += c2 - c1
            if problem:
                refused += 1
                continue
            ctx = image_context(r.rename({"px_per_cm": f"px_per_cm_{r['view']}"}), r["view"])
            m = measure_leg(img, settings=settings, px_per_cm=ctx[0], height_cm=ctx[1], view=ctx[2], side=ctx[3],
                            timings=totals, marker=marker)
            refused += not m.ok
            if m.silhouette is not None:
                methods[m.silhouette.method] = methods.get(m.silhouette.method, 0) + 1
        wall = time.perf_counter() - w0
        if method == "learned":
            from smi_image.learned import leg_probabilities

            for _, r in rows.iterrows():
                img = read_image(r["image_path"])
                c1 = time.process_time()
                leg_probabilities(img)
                net.append(time.process_time() - c1)
    n = len(rows)
    ms = {k: 1000.0 * v / n for k, v in totals.items()}
    total = sum(ms.values())
    out = {"n_images": n, "segmenter": method, "stages_ms": ms, "total_ms": total,
           "images_per_cpu_s": 1000.0 / total if total > 0 else float("nan"), "wall_s": wall,
           "segmenter_ms": 1000.0 * float(np.median(net)) if net else None, "refused": refused,
           "methods": methods}
    if echo:
        load = _load_average()
        used = ", ".join(f"{k} {v}" for k, v in sorted(methods.items()))
        echo(f"per-stage CPU time, {n} photos of {dataset}, one thread (segmenter setting {method}; "
             f"silhouettes by {used or 'none'}; {refused} refused):")
        for k in STAGES:
            echo(f"  {k:13s} {ms[k]:7.2f} ms/photo  ({100.0 * ms[k] / total if total else 0:4.1f} %)")
        echo(f"  {'total':13s} {total:7.2f} ms/photo CPU = {out['images_per_cpu_s']:.0f} photos per CPU-second "
             f"(wall {wall:.2f} s for {n}: {n / wall:.0f} photos/s{load})")
        if net:
            echo(f"segmenter network alone: {out['segmenter_ms']:.1f} ms CPU/photo (median, torch on 1 thread; "
                 "target <= 20 ms)")
    return out


def _load_average() -> str:
    try:
        return f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        return ""
