"""Run records and safe output: every run folder gets ``run.json``; nothing is overwritten silently.

Files go through :func:`atomic_write_text` / :func:`atomic_write_bytes` /
:func:`atomic_write_csv`: write to a temporary name in the same folder, then
``os.replace`` it into place, so an interrupted run never leaves a half-written file
where a good one was. CSV cells that a spreadsheet would run as a formula (``=``,
``+``, ``-``, ``@`` first) are written with a leading apostrophe.

Folders go through :func:`stage_output`, the one staged-output helper of every command:
the command writes into a temporary folder next to the target; on success the folder
is swapped into place and only then is the old result removed. On failure or after
SIGINT / SIGTERM the old result is kept untouched; where there was none, the staged
folder is moved into place so that its ``run.json`` says ``interrupted`` or
``failed``. (After SIGKILL the target is untouched and the staged folder stays as a
hidden ``.NAME.staging-PID-*`` sibling, removed by the next run to the same target.)
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import LegsmiError, OutputError, RunInterrupted, describe_os_error  # noqa: F401 (RunInterrupted re-exported)

log = logging.getLogger(__name__)

#: Packages whose versions go into every run record and model file.
TRACKED_PACKAGES = (
    "legsmi", "numpy", "scipy", "pandas", "opencv-python-headless", "scikit-image",
    "scikit-learn", "xgboost", "shap", "torch", "matplotlib", "click", "anny",
)


class OutputExistsError(LegsmiError, FileExistsError):
    """An output that exists and would be overwritten without ``--overwrite``."""

    exit_code = 2


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(repo: str | os.PathLike | None = None) -> str | None:
    """The current commit of the repository holding this code (with ``-dirty`` if modified), or None."""
    repo = Path(repo) if repo else Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except Exception:
        return None


def prepare_output_dir(path: str | os.PathLike, *, overwrite: bool = False,
                       protect: tuple = ()) -> Path:
    """Create an output folder in place; refuse a non-empty existing one unless ``overwrite``.

    Prefer :func:`stage_output`, which keeps the old result until the new one is complete.

    With ``overwrite`` the old folder is moved aside and removed only after the new
    one exists, so the call never leaves neither. An output folder that is, or holds,
    one of the ``protect`` paths (the command's inputs: dataset, model folder) is
    refused even with ``overwrite``, so a slip of ``--out`` cannot delete them.
    """
    p = Path(path)
    if _check_target(p, protect, overwrite):
        trash = p.with_name(p.name + f".old-{os.getpid()}")
        p.rename(trash)
        p.mkdir(parents=True)
        shutil.rmtree(trash, ignore_errors=True)
    p.mkdir(parents=True, exist_ok=True)
    return p


def _check_target(p: Path, protect: tuple, overwrite: bool) -> bool:
    """Refuse a target that would replace an input, is a file, or holds a result without ``overwrite``.

    Returns True when the target holds an old result (a non-empty folder).
    """
    target = p.resolve()
    for keep in protect:
        if keep is None:
            continue
        k = Path(keep).resolve()
        if k == target or target in k.parents:
            raise OutputExistsError(f"{p}: this output folder would replace the input {keep}; choose another --out")
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{p}: exists and is not a folder; choose another --out")
    old = p.is_dir() and any(p.iterdir())
    if old and not overwrite:
        raise OutputExistsError(f"{p}: output folder exists and is not empty; pass --overwrite or choose another --out")
    return old


class StagedOutput:
    """A command's output folder, written in a temporary folder next to it and swapped in on success.

    Use :func:`stage_output`. ``path`` is where the command writes; ``target`` is
    the folder the user named. :meth:`commit` swaps the finished folder in (the old
    result, if any, is removed only after the new one is in place); :meth:`abandon`
    keeps an old result untouched, or, where there was none, moves the staged folder
    (with its run record) into place. As a context manager it commits when the block
    ends normally and abandons when it raises.
    """

    def __init__(self, target: str | os.PathLike, *, overwrite: bool = False, protect: tuple = (),
                 keep_failed: bool = True):
        self.target = Path(target)
        self.keep_failed = keep_failed
        try:
            self.had_old = _check_target(self.target, protect, overwrite)
            self.target.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_stagings(self.target)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.staging-{os.getpid()}-",
                                              dir=self.target.parent))
        except OSError as exc:
            if isinstance(exc, LegsmiError):
                raise
            raise OutputError(describe_os_error(exc, str(self.target))) from None
        self.done = False

    def commit(self) -> Path:
        """Put the staged folder in place of the target; remove the old result afterwards."""
        if self.done:
            return self.target
        t = self.target
        try:
            if t.is_dir() and not any(t.iterdir()):
                t.rmdir()  # an empty folder (e.g. made beforehand by the user) holds nothing to keep
            if t.exists():
                old = _fresh_name(t, "old")
                t.rename(old)
                os.rename(self.path, t)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(self.path, t)
        except OSError as exc:
            raise OutputError(describe_os_error(exc, str(t))) from None
        self.done = True
        return t

    def abandon(self, *, interrupted: bool = True) -> Path | None:
        """After a failure: keep an old result (drop the staged folder), else move the staged folder in place.

        A failed (not interrupted) run of a stage made with ``keep_failed=False`` (a model
        folder: useless without its model) leaves nothing behind.
        """
        if self.done:
            return None
        self.done = True
        t = self.target
        try:
            if (t.is_dir() and any(t.iterdir())) or (not interrupted and not self.keep_failed):
                shutil.rmtree(self.path, ignore_errors=True)
                return None
            if t.is_dir():
                t.rmdir()
            os.rename(self.path, t)
            return t
        except OSError as exc:
            log.warning("could not put the record of the failed run in place (%s); it stays in %s", exc, self.path)
            return None

    def __enter__(self) -> "StagedOutput":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abandon(interrupted=issubclass(exc_type, KeyboardInterrupt))


def _remove_stale_stagings(target: Path) -> None:
    """Remove staged folders of ``target`` left by a run that was killed (SIGKILL: its process is gone)."""
    import glob

    for d in target.parent.glob(f".{glob.escape(target.name)}.staging-*"):
        pid = d.name.rsplit(".staging-", 1)[1].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        log.warning("removing %s, left by a run that was killed (process %s)", d, pid)
        shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _fresh_name(p: Path, tag: str) -> Path:
    # a fresh name: never touch a sibling folder of the user's (e.g. their own 'MODEL.old' backup)
    cand, k = p.with_name(f".{p.name}.{tag}-{os.getpid()}"), 0
    while cand.exists():
        k += 1
        cand = p.with_name(f".{p.name}.{tag}-{os.getpid()}-{k}")
    return cand


def stage_output(target: str | os.PathLike, *, overwrite: bool = False, protect: tuple = (),
                 keep_failed: bool = True) -> StagedOutput:
    """The staged-output helper of every command that writes a folder (see the module docstring).

    Raises
    ------
    OutputExistsError
        The target holds a result and ``overwrite`` is False, is a file, or is or holds
        one of the ``protect`` paths (the command's inputs).
    OutputError
        The staging folder cannot be made (read-only file system, disk full, ...).
    """
    return StagedOutput(target, overwrite=overwrite, protect=protect, keep_failed=keep_failed)


# --------------------------------------------------------------------------- signals
_SIGNAL: dict[str, Any] = {"name": None, "depth": 0, "saved": {}}


def interrupted() -> str | None:
    """The signal (``'SIGINT'``/``'SIGTERM'``) that arrived during a guarded run, or None.

    Code that calls libraries which swallow exceptions raised in signal handlers
    (XGBoost's ctypes callbacks turn a KeyboardInterrupt into an XGBoostError) checks
    this after a failure and re-raises :class:`~smi_data.errors.RunInterrupted`.
    """
    return _SIGNAL["name"]


def _handler(signum, frame):
    import signal

    name = signal.Signals(signum).name
    _SIGNAL["name"] = name
    raise RunInterrupted(name)


class interrupt_guard:
    """While active, SIGINT and SIGTERM raise :class:`RunInterrupted` and are remembered (nestable).

    Only the main thread can install signal handlers; elsewhere this does nothing.
    """

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self
        if _SIGNAL["depth"] == 0:
            _SIGNAL["name"] = None
            for sig in (signal.SIGINT, signal.SIGTERM):
                _SIGNAL["saved"][sig] = signal.signal(sig, _handler)
        _SIGNAL["depth"] += 1
        return self

    def __exit__(self, *exc) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread() or _SIGNAL["depth"] == 0:
            return
        _SIGNAL["depth"] -= 1
        if _SIGNAL["depth"] == 0:
            for sig, old in _SIGNAL["saved"].items():
                signal.signal(sig, old)
            _SIGNAL["saved"] = {}


def check_output_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an existing output file unless ``overwrite``."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p}: file exists; pass --overwrite or choose another name")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place.

    Raises
    ------
    OutputError
        The file cannot be written (disk full, read-only file system, ...); the old
        file, if any, is untouched and no temporary file is left.
    """
    p = Path(path)
    tmp = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, LegsmiError):
            raise OutputError(describe_os_error(exc, str(p))) from None
        raise
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(df, path: str | os.PathLike, **kwargs) -> Path:
    """Write a table as CSV atomically, with formula-like text cells neutralised (:func:`neutralise_formulas`)."""
    kwargs.setdefault("index", False)
    return atomic_write_text(path, neutralise_formulas(df).to_csv(**kwargs))


#: First characters that make a spreadsheet treat a cell as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def neutralise_cell(value):
    """``value`` with a leading apostrophe if it is text a spreadsheet would run as a formula.

    Plain numbers written as text (``-3.5``) are left alone.
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_PREFIXES):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def neutralise_formulas(df):
    """A copy of ``df`` whose text cells and column names cannot run as spreadsheet formulas."""
    import pandas as pd

    out = df.copy()
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if pd.api.types.is_object_dtype(col.dtype) or pd.api.types.is_string_dtype(col.dtype):
            out.isetitem(i, col.map(neutralise_cell))
    out.columns = [neutralise_cell(c) for c in out.columns]
    return out


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


class RunRecord:
    """Collects what is needed to rerun a command and writes ``run.json``.

    Use as a context manager: ``with RunRecord(out_dir, "benchmark", config, seed) as rec:``;
    on exit it writes ``run.json`` with the end time and status: ``ok``, ``interrupted
    (SIGINT)`` / ``interrupted (SIGTERM)``, or ``failed: <error>``. While it is open,
    SIGINT and SIGTERM raise :class:`~smi_data.errors.RunInterrupted` (see
    :class:`interrupt_guard`); a run that saw a signal is never recorded as ``ok``.

    With ``stage`` (from :func:`stage_output`, whose ``path`` is ``out_dir``), the
    staged folder is swapped into place after an ``ok`` and abandoned otherwise.
    """

    def __init__(self, out_dir: str | os.PathLike, command: str, config: dict, seed: int | None = None,
                 *, stage: StagedOutput | None = None):
        self.out_dir = Path(out_dir)
        self.stage = stage
        self._guard = interrupt_guard()
        self.data: dict[str, Any] = {
            "command": command,
            "argv": list(sys.argv),
            "config": config,
            "seed": seed,
            "versions": package_versions(),
            "git_commit": git_commit(),
            "platform": platform.platform(),
            "start_time": now_iso(),
            "end_time": None,
            "status": "running",
            "results": {},
        }

    def __enter__(self) -> "RunRecord":
        self._guard.__enter__()
        try:
            self.write()
        except BaseException:
            self._guard.__exit__(None, None, None)
            if self.stage is not None:
                self.stage.abandon()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        signame = interrupted()
        self._guard.__exit__(exc_type, exc, tb)
        self.data["end_time"] = now_iso()
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.data["status"] = f"interrupted ({getattr(exc, 'signame', None) or signame or 'SIGINT'})"
        elif signame is not None:
            self.data["status"] = f"interrupted ({signame})"
        elif exc is None:
            self.data["status"] = "ok"
        else:
            self.data["status"] = f"failed: {exc_type.__name__}: {exc}"
        try:
            self.write()
        except OSError as werr:  # e.g. the disk filled up: the original error matters more
            log.warning("could not write %s (%s)", self.out_dir / "run.json", werr)
            if exc is None:
                if self.stage is not None:
                    self.stage.abandon()
                raise
        if self.stage is not None:
            if self.data["status"] == "ok":
                self.stage.commit()
                self.out_dir = self.stage.target
            else:
                placed = self.stage.abandon(interrupted=self.data["status"].startswith("interrupted"))
                if placed is not None:
                    self.out_dir = placed
        if exc is None and signame is not None:
            raise RunInterrupted(signame)

    def write(self) -> None:
        atomic_write_json(self.out_dir / "run.json", self.data)
