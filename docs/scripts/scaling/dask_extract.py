"""Extraction of a cohort's photos in-process and on a Dask LocalCluster of 1 and 2 workers (docs/scaling.md).

usage (from the repository root): python docs/scripts/scaling/dask_extract.py DATASET [N_PHOTOS] [ROUNDS]

Each cluster is started and timed on its own, then warmed (every worker measures a task of photos first,
which loads the segmenter and OpenCV's tables), then the N photos are measured in tasks of 8
(`benchmarks.cluster.chunked_mapper`, as `legsmi features --cluster`) without the feature cache, ROUNDS
times; the in-process pass runs the same photos through the same function on one thread. Prints wall and
CPU seconds (the workers' own CPU from `resource.getrusage` in each worker) and photos per second, and
checks that every pass gives the same records.
"""

import resource
import sys
import time

sys.path.insert(0, ".")

from benchmarks.cluster import chunked_mapper, open_client, parse_cluster  # noqa: E402
from smi_data.manifest import read_manifest  # noqa: E402
from smi_features.extractor import ExtractionSettings, measure_files, one_thread  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _key(recs):
    """The records without their timing (``extract_ms``), for comparing passes."""
    return [repr(sorted((k, v) for k, v in r.items() if k != "extract_ms")) for r in recs]


def main(dataset: str, n: int = 200, rounds: int = 2) -> None:
    m = read_manifest(dataset, require_label=False).head(n)
    paths = [str(p) for p in m["image_path"]]
    ctxs = [(r.get("px_per_cm"), r.get("height_cm"), r["view"], r.get("side")) for _, r in m.iterrows()]
    s = ExtractionSettings()
    with one_thread(s):
        measure_files(paths[:8], settings=s, cache=False, contexts=ctxs[:8])  # warm-up
        ref = None
        for k in range(rounds):
            w0, c0 = time.perf_counter(), _cpu()
            recs = measure_files(paths, settings=s, cache=False, contexts=ctxs)
            wall, cpu = time.perf_counter() - w0, _cpu() - c0
            ref = ref or _key(recs)
            print(f"in-process, round {k + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU, {len(paths) / wall:.1f} photos/s")
    for workers in (1, 2):
        t0 = time.perf_counter()
        with open_client(parse_cluster(f"local:{workers}")) as client:
            client.wait_for_workers(workers)
            start = time.perf_counter() - t0
            mapper = chunked_mapper(client, 8)
            measure_files(paths[:8 * workers], settings=s, cache=False, contexts=ctxs[:8 * workers],
                          mapper=mapper)  # a task for every worker first
            for k in range(rounds):
                before = sum(client.run(_cpu).values())
                w0 = time.perf_counter()
                recs = measure_files(paths, settings=s, cache=False, contexts=ctxs, mapper=mapper)
                wall = time.perf_counter() - w0
                cpu = sum(client.run(_cpu).values()) - before
                same = _key(recs) == ref
                print(f"{workers} worker(s), round {k + 1}: {wall:.2f} s wall, {cpu:.2f} s worker CPU, "
                      f"{len(paths) / wall:.1f} photos/s (start-up {start:.1f} s; records as in-process: {same})")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
