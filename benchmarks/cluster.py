"""Run independent tasks (per-fold fits, per-image extraction) on a Dask cluster.

``--cluster local:N`` starts a :class:`distributed.LocalCluster` of N worker processes
(one thread each) on this machine; ``--cluster tcp://HOST:PORT`` connects to a running
scheduler (``dask scheduler`` on one machine, ``dask worker tcp://HOST:PORT
--nthreads 1`` on each of the others). The work is the same function the serial loop
calls, with the same arguments and its own seed, so the results do not depend on where
or in which order a task runs; they are gathered back in the order they were given.

What the workers need: the same installed package (``pip install .[cluster]``) and the
image paths of the manifest readable under the same names (a shared file system, or
paths that fsspec opens; see docs/scaling.md).

Dask is an optional dependency (the ``cluster`` extra): it is imported only here.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from smi_data.errors import LegsmiError

log = logging.getLogger(__name__)

_LOCAL = re.compile(r"^local:(\d+)$")
_REMOTE = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/:]+(:\d+)?/?$")


class ClusterError(LegsmiError, ValueError):
    """A cluster that cannot be used (bad address, dask missing), with what to do."""

    exit_code = 2


@dataclass(frozen=True)
class ClusterSpec:
    """Where tasks run: ``kind`` 'local' (``n_workers`` processes here) or 'remote' (``address``)."""

    kind: str
    n_workers: int = 0
    address: str = ""

    def describe(self) -> str:
        return f"LocalCluster of {self.n_workers} worker(s)" if self.kind == "local" else f"scheduler {self.address}"


def parse_cluster(spec: str | None) -> ClusterSpec | None:
    """``'local:2'`` → a local spec, ``'tcp://10.0.0.5:8786'`` → a remote one, None/'' → None.

    Raises
    ------
    ClusterError
        For anything else, saying what is accepted.
    """
    if spec is None or not str(spec).strip():
        return None
    text = str(spec).strip()
    m = _LOCAL.match(text)
    if m:
        n = int(m.group(1))
        if not 1 <= n <= 256:
            raise ClusterError(f"--cluster {text}: the number of local workers must be 1 to 256")
        return ClusterSpec("local", n_workers=n)
    if _REMOTE.match(text):
        return ClusterSpec("remote", address=text.rstrip("/"))
    raise ClusterError(f"--cluster {text!r}: expected local:N (N worker processes here) or tcp://HOST:PORT "
                       "(a running `dask scheduler`)")


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("--cluster needs dask.distributed: pip install 'legsmi[cluster]' "
                           "(or pip install distributed)") from None
    return distributed


@contextmanager
def open_client(spec: ClusterSpec):
    """A :class:`distributed.Client` for ``spec``, closed (and a local cluster shut down) on exit."""
    distributed = _import_distributed()
    if spec.kind == "local":
        import dask

        # one thread per worker: the CNNs set their own torch threads, and the GIL would
        # serialise Python-heavy fits that shared a worker process
        with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ()}):
            cluster = distributed.LocalCluster(n_workers=spec.n_workers, threads_per_worker=1, processes=True,
                                               dashboard_address=None, silence_logs=logging.WARNING)
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
    else:
        try:
            client = distributed.Client(spec.address, timeout="20s")
        except OSError as exc:
            raise ClusterError(f"--cluster {spec.address}: cannot reach the scheduler ({exc}); start it with "
                               "`dask scheduler` and the workers with `dask worker ADDRESS --nthreads 1`") from None
        try:
            yield client
        finally:
            client.close()


def worker_environ() -> dict:
    """The environment Dask's nanny sets in a local worker before it starts, without ``MALLOC_TRIM_THRESHOLD_``.

    Dask sets that variable so that workers hand freed memory back to the system. Setting it at
    all switches off glibc's adaptive malloc thresholds, so every photo-sized array is mapped and
    unmapped afresh, and a worker spent markedly more CPU on the same photos than this process
    (measured in docs/scaling.md, section 2). The thread limits (``OMP_NUM_THREADS`` and the like)
    are kept. Read after ``distributed`` is imported, which adds its defaults (dask/distributed#8143).
    """
    import dask

    _import_distributed()
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


def worker_threads(spec: ClusterSpec) -> int | None:
    """Torch threads per CNN fit on a local cluster (the cores shared out), None for a remote one."""
    if spec.kind == "local":
        return max(1, (os.cpu_count() or 1) // spec.n_workers)
    return None


def map_ordered(client, fn: Callable, calls: Iterable[tuple], *, priorities: Iterable[int] | None = None,
                on_done: Callable[[Any], None] | None = None) -> list:
    """``[fn(*args) for args in calls]`` computed on the cluster, returned in the order given.

    An argument may be a future from :func:`share` (a large table scattered to the
    workers once instead of shipped with every call). ``priorities`` (higher first)
    start the long tasks early so the cluster does not wait on one at the end.
    ``on_done`` is called with each result as it arrives (a progress bar). An exception
    in a task is raised here, as it would be in the serial loop.
    """
    distributed = _import_distributed()
    calls = list(calls)
    prio = list(priorities) if priorities is not None else [0] * len(calls)
    futures = [client.submit(fn, *args, pure=False, priority=int(p)) for args, p in zip(calls, prio)]
    index = {f.key: i for i, f in enumerate(futures)}
    out: list = [None] * len(futures)
    try:
        for fut in distributed.as_completed(futures):
            res = fut.result()
            out[index[fut.key]] = res
            if on_done is not None:
                on_done(res)
    finally:
        client.cancel([f for f in futures if not f.done()])
    return out


def share(client, value):
    """``value`` scattered to every worker once; pass the returned future as a task argument."""
    return client.scatter(value, broadcast=True, hash=False)


def _run_chunk(fn: Callable, calls: list[tuple]) -> list:
    return [fn(*c) for c in calls]


def chunked_mapper(client, chunk: int = 8) -> Callable[[Callable, list], list]:
    """A ``mapper(fn, calls)`` for :func:`smi_features.extractor.measure_files`: ``chunk`` calls a task.

    One photo takes a few milliseconds, so one task per photo would be mostly
    scheduling; results come back in the order of ``calls``.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")

    def mapper(fn: Callable, calls: list) -> list:
        calls = list(calls)
        parts = [calls[i:i + chunk] for i in range(0, len(calls), chunk)]
        done = map_ordered(client, _run_chunk, [(fn, part) for part in parts])
        return [rec for part in done for rec in part]

    return mapper
