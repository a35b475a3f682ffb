"""How fast features are extracted: images per second, single process and in parallel.

Each run measures every image of a dataset from its file (read, decode, marker,
silhouette, features), without the cache. One process runs with OpenCV limited to
one thread (torch too, for the learned segmenter), so "images/s per core" means what it says, and
reports its CPU time (images per CPU-second, which other work on the machine does not change);
``jobs = k`` runs ``k`` worker processes (started and warmed up before the clock starts). Targets (issue 13):
at least 200 images/s per core at 512 x 512 (studio), 60 on clinic photos with the learned segmenter.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .extractor import ExtractionSettings, _measure_worker, measure_image_file, one_thread


def _images(dataset_dir) -> tuple[list[str], list[tuple]]:
    """Image paths and their (manifest px_per_cm, height_cm) contexts."""
    from smi_data.manifest import read_manifest

    from .extractor import _context

    manifest = read_manifest(dataset_dir, require_label=False)
    ppc = manifest["px_per_cm"] if "px_per_cm" in manifest.columns else [None] * len(manifest)
    ctx = [_context((p, h)) for p, h in zip(ppc, manifest["height_cm"])]
    return [str(p) for p in manifest["image_path"]], ctx


def extraction_speed(dataset_dir: str | os.PathLike, jobs=(1, 2), *, settings: ExtractionSettings | None = None,
                     repeats: int = 1, limit: int | None = None, echo=print) -> dict:
    """Time feature extraction on a dataset's images and print images/s.

    Parameters
    ----------
    dataset_dir : path-like
        Dataset folder (manifest.csv).
    jobs : sequence of int
        Process counts to time.
    settings : ExtractionSettings, keyword-only
    repeats : int, keyword-only
        Passes over the images per setting (the best pass is reported).
    limit : int, keyword-only
        Use only the first ``limit`` images.
    echo : callable or None, keyword-only
        Where the summary lines go (None: silent).

    Returns
    -------
    dict
        ``n_images``, ``image_size`` (median width x height, px), ``cpu_count`` and
        ``runs``: one dict per job count with ``jobs``, ``seconds``, ``images_per_s``,
        ``images_per_s_per_core``, ``failed`` and (single process) ``cpu_ms_per_image``.
    """
    from smi_data.images import image_size

    paths, ctxs = _images(dataset_dir)
    if limit:
        paths, ctxs = paths[:limit], ctxs[:limit]
    if not paths:
        raise ValueError(f"{dataset_dir}: no images")
    s = settings or ExtractionSettings()
    sizes = [image_size(p) for p in paths[:50]]
    sizes = [sz for sz in sizes if sz]
    med = (int(np.median([a for a, _ in sizes])), int(np.median([b for _, b in sizes]))) if sizes else None
    result = {"n_images": len(paths), "image_size": med, "cpu_count": os.cpu_count(), "runs": []}
    for k in jobs:
        k = int(k)
        best, cpu, failed = np.inf, np.nan, 0
        if k == 1:
            with one_thread(s):  # OpenCV and the segmenter's torch on one thread: "per core" as it says
                measure_image_file(paths[0], s, *ctxs[0])  # warm-up (imports, OpenCV tables)
                for _ in range(max(1, repeats)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    recs = [measure_image_file(p, s, *c) for p, c in zip(paths, ctxs)]
                    wall = time.perf_counter() - t0
                    if wall < best:
                        best, cpu = wall, time.process_time() - c0
        else:
            from joblib import Parallel, delayed

            sd = s.as_dict()
            with Parallel(n_jobs=k, backend="loky") as par:
                par(delayed(_measure_worker)(p, sd, c) for p, c in zip(paths[: 2 * k], ctxs[: 2 * k]))  # warm-up
                for _ in range(max(1, repeats)):
                    t0 = time.perf_counter()
                    recs = par(delayed(_measure_worker)(p, sd, c) for p, c in zip(paths, ctxs))
                    best = min(best, time.perf_counter() - t0)
        failed = sum(1 for r in recs if not r.get("ok"))
        ips = len(paths) / best
        run = {"jobs": k, "seconds": best, "images_per_s": ips, "images_per_s_per_core": ips / k, "failed": failed,
               "cpu_ms_per_image": 1000.0 * cpu / len(paths) if np.isfinite(cpu) else None}
        result["runs"].append(run)
        if echo:
            size = f"{med[0]}x{med[1]}" if med else "?"
            extra = (f"; {run['cpu_ms_per_image']:.1f} ms CPU per image = "
                     f"{1000.0 / run['cpu_ms_per_image']:.0f} images per CPU-second") if run["cpu_ms_per_image"] else ""
            echo(f"feature extraction, {len(paths)} images of {size} px, jobs={k}: {ips:.1f} images/s "
                 f"({ips / k:.1f} per core{extra}), {failed} failed")
    if echo:
        try:
            load = os.getloadavg()[0]
            echo(f"(load average {load:.1f} on {os.cpu_count()} CPU(s) during the run: other processes slow it)")
        except OSError:
            pass
    return result
