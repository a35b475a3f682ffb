"""Run records and safe output: every run folder gets ``run.json``; nothing is overwritten silently.

Writers go through :func:`atomic_write_text` / :func:`atomic_write_bytes` /
:func:`atomic_write_csv`: write to a temporary name in the same folder, then
``os.replace`` it into place, so an interrupted run never leaves a half-written file
where a good one was.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose versions go into every run record and model file.
TRACKED_PACKAGES = (
    "legsmi", "numpy", "scipy", "pandas", "opencv-python-headless", "scikit-image",
    "scikit-learn", "xgboost", "shap", "torch", "matplotlib", "click", "anny",
)


class OutputExistsError(FileExistsError):
    """An output that exists and would be overwritten without ``--overwrite``."""


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
    """Create an output folder; refuse a non-empty existing one unless ``overwrite``.

    With ``overwrite`` the old folder is moved aside and removed only after the new
    one exists, so the call never leaves neither. An output folder that is, or holds,
    one of the ``protect`` paths (the command's inputs: dataset, model folder) is
    refused even with ``overwrite``, so a slip of ``--out`` cannot delete them.
    """
    p = Path(path)
    target = p.resolve()
    for keep in protect:
        if keep is None:
            continue
        k = Path(keep).resolve()
        if k == target or target in k.parents:
            raise OutputExistsError(f"{p}: this output folder would replace the input {keep}; choose another --out")
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{p}: exists and is not a folder; choose another --out")
    if p.is_dir() and any(p.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{p}: output folder exists and is not empty; pass --overwrite or choose another --out")
        trash = p.with_name(p.name + f".old-{os.getpid()}")
        p.rename(trash)
        p.mkdir(parents=True)
        shutil.rmtree(trash, ignore_errors=True)
    p.mkdir(parents=True, exist_ok=True)
    return p


def check_output_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an existing output file unless ``overwrite``."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p}: file exists; pass --overwrite or choose another name")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(df, path: str | os.PathLike, **kwargs) -> Path:
    kwargs.setdefault("index", False)
    return atomic_write_text(path, df.to_csv(**kwargs))


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
    on exit it writes ``run.json`` with the end time and status (``ok`` or the error).
    """

    def __init__(self, out_dir: str | os.PathLike, command: str, config: dict, seed: int | None = None):
        self.out_dir = Path(out_dir)
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
        self.write()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.data["end_time"] = now_iso()
        self.data["status"] = "ok" if exc is None else f"failed: {exc_type.__name__}: {exc}"
        self.write()

    def write(self) -> None:
        atomic_write_json(self.out_dir / "run.json", self.data)
