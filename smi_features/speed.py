"""How fast features are extracted: images per second, single process and in parallel.

Each run measures every image of a dataset from its file (read, decode, marker,
silhouette, features), without the cache. One process runs with OpenCV limited to
one thread, so "images/s per core" means what it says; ``jobs = k`` runs ``k`` worker
processes (started and warmed up before the clock starts). Target: at least 100
images/s per core at 512 x 512.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .extractor import ExtractionSettings, _measure_worker, measure_image_file


def _image_paths(dataset_dir) -> list[str]:
    from smi_data.manifest import read_manifest

    manifest = read_manifest(dataset_dir, require_label=False)
    return [str(p) for p in manifest["image_path"]]


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
        ``images_per_s_per_core`` and ``failed``.
    """
    import cv2

    from smi_data.images import image_size

    paths = _image_paths(dataset_dir)
    if limit:
        paths = paths[:limit]
    if not paths:
        raise ValueError(f"{dataset_dir}: no images")
    s = settings or ExtractionSettings()
    sizes = [image_size(p) for p in paths[:50]]
    sizes = [sz for sz in sizes if sz]
    med = (int(np.median([a for a, _ in sizes])), int(np.median([b for _, b in sizes]))) if sizes else None
    result = {"n_images": len(paths), "image_size": med, "cpu_count": os.cpu_count(), "runs": []}
    for k in jobs:
        k = int(k)
        best, failed = np.inf, 0
        if k == 1:
            old = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                measure_image_file(paths[0], s)  # warm-up (imports, OpenCV tables)
                for _ in range(max(1, repeats)):
                    t0 = time.perf_counter()
                    recs = [measure_image_file(p, s) for p in paths]
                    best = min(best, time.perf_counter() - t0)
            finally:
                cv2.setNumThreads(old)
        else:
            from joblib import Parallel, delayed

            sd = s.as_dict()
            with Parallel(n_jobs=k, backend="loky") as par:
                par(delayed(_measure_worker)(p, sd) for p in paths[: 2 * k])  # start and warm the workers
                for _ in range(max(1, repeats)):
                    t0 = time.perf_counter()
                    recs = par(delayed(_measure_worker)(p, sd) for p in paths)
                    best = min(best, time.perf_counter() - t0)
        failed = sum(1 for r in recs if not r.get("ok"))
        ips = len(paths) / best
        run = {"jobs": k, "seconds": best, "images_per_s": ips, "images_per_s_per_core": ips / k, "failed": failed}
        result["runs"].append(run)
        if echo:
            size = f"{med[0]}x{med[1]}" if med else "?"
            echo(f"feature extraction, {len(paths)} images of {size} px, jobs={k}: {ips:.1f} images/s "
                 f"({ips / k:.1f} per core), {failed} failed")
    return result
