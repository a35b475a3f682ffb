"""Load benchmark: the app on loopback, a bounded number of concurrent requests, latency and errors.

:func:`run_load` starts the application in a background uvicorn server on a free
loopback port, sends ``requests`` estimate requests (two bundled photos each by
default) from ``concurrency`` client threads, and reports throughput (requests/s),
p50 / p95 / max latency and the number of errors (any answer but 200, or an
estimate that was not made).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from .server import BackgroundServer


def bundled_person(subject: str = "P001") -> tuple[dict[str, Path], dict]:
    """Photos by view and the form fields of one person of the bundled cohort."""
    import pandas as pd

    from smi_data.paths import BUNDLED_COHORT

    m = pd.read_csv(BUNDLED_COHORT / "manifest.csv")
    rows = m[m["subject_id"] == subject]
    if rows.empty:
        raise ValueError(f"{subject}: not in the bundled cohort {BUNDLED_COHORT}")
    photos = {r["view"]: BUNDLED_COHORT / r["image"] for _, r in rows.iterrows()}
    r = rows.iloc[0]
    fields = {"sex": str(r["sex"]), "age": str(r["age"]), "height_cm": str(r["height_cm"]),
              "reference_device": str(r.get("reference_device") or "BIA")}
    if "weight_kg" in rows.columns and r["weight_kg"] == r["weight_kg"]:
        fields["weight_kg"] = str(r["weight_kg"])
    return photos, fields


def post_estimate(client, url: str, photos: dict[str, Path], fields: dict, blobs: dict[str, bytes] | None = None):
    """One ``POST /api/estimate``; returns the httpx response."""
    blobs = blobs or {v: Path(p).read_bytes() for v, p in photos.items()}
    files = {v: (Path(p).name, blobs[v], "image/jpeg") for v, p in photos.items()}
    return client.post(f"{url}/api/estimate", data=fields, files=files, timeout=120)


def run_load(app, *, requests: int = 40, concurrency: int = 4, photos: dict[str, Path] | None = None,
             fields: dict | None = None, warmup: int = 1, echo: Callable[[str], None] = print) -> dict:
    """Serve ``app`` on loopback and measure it under ``concurrency`` concurrent clients.

    Returns
    -------
    dict
        ``requests``, ``concurrency``, ``seconds``, ``throughput_rps``, ``p50_ms``,
        ``p95_ms``, ``max_ms``, ``errors`` and ``error_examples`` (up to three).
    """
    import httpx

    if photos is None or fields is None:
        photos, fields = bundled_person()
    blobs = {v: Path(p).read_bytes() for v, p in photos.items()}
    latencies: list[float] = []
    errors: list[str] = []

    def one(client) -> None:
        t0 = time.perf_counter()
        try:
            r = post_estimate(client, url, photos, fields, blobs)
            ok = r.status_code == 200 and r.json().get("smi") is not None
            why = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
        except Exception as exc:  # a refused connection, a timeout: counted, not fatal
            why = f"{type(exc).__name__}: {exc}"
        latencies.append((time.perf_counter() - t0) * 1000.0)
        if why:
            errors.append(why)

    with BackgroundServer(app) as url:
        with httpx.Client() as client:
            for _ in range(warmup):  # first request loads lazily imported code; not timed
                post_estimate(client, url, photos, fields, blobs)

        def worker(n: int) -> None:
            with httpx.Client() as client:
                for _ in range(n):
                    one(client)

        share = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(worker, [n for n in share if n]))
        seconds = time.perf_counter() - t0
    lat = np.asarray(latencies)
    out = {"requests": int(requests), "concurrency": int(concurrency), "views": sorted(photos),
           "seconds": round(seconds, 3), "throughput_rps": round(requests / seconds, 3),
           "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
           "max_ms": round(float(lat.max()), 1), "errors": len(errors), "error_examples": errors[:3]}
    echo(f"{out['requests']} requests ({'+'.join(out['views'])} photos each), {concurrency} concurrent, "
         f"on loopback: {out['throughput_rps']:.2f} requests/s, p50 {out['p50_ms']:.0f} ms, "
         f"p95 {out['p95_ms']:.0f} ms, max {out['max_ms']:.0f} ms, errors {out['errors']}")
    for e in out["error_examples"]:
        echo(f"  error: {e}")
    return out
