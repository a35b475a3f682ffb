"""Prepared crops shared between the processes of one benchmark run, on disk.

:func:`smi_deep.preprocess.cached_crop` keeps crops in each process's memory, so with
parallel fits every worker process decoded and segmented each photo again. Inside
:func:`using` (the benchmark harness opens one store per run, in a temporary folder
it deletes afterwards) :func:`shared_crop` first looks in the store, and a crop made
in one process is written there for the others: each photo is then prepared once per
crop setting for the whole run, whichever worker needs it. The files are the arrays
themselves (``.npy``), so a crop read back is the crop made, to the bit; a photo that
cannot be used stores its reason. Outside a store :func:`shared_crop` is
:func:`~smi_deep.preprocess.cached_crop`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .preprocess import CACHE_ITEMS, CropSettings, PreprocessError, cached_crop

_STORE: dict = {"dir": None}
_LOADED: "OrderedDict[str, tuple[np.ndarray, np.ndarray] | str]" = OrderedDict()


@contextmanager
def using(store_dir: str | os.PathLike | None):
    """Share crops through ``store_dir`` for the block (None: no store)."""
    prev = _STORE["dir"]
    _STORE["dir"] = str(store_dir) if store_dir else None
    try:
        yield
    finally:
        _STORE["dir"] = prev
        _LOADED.clear()


def side_code(value) -> str | None:
    """A manifest's ``side`` as the segmentation's side rule takes it: 'L', 'R' or None."""
    side = str(value).strip().upper()[:1] if isinstance(value, str) else None
    return side if side in ("L", "R") else None


def crop_key(path: str, settings: CropSettings, px_per_cm: float | None, view: str | None = None,
             side: str | None = None) -> str:
    """The store's name for one photo's crop: its path, size and modification time, the settings, the scale,
    and the view and side that choose the leg."""
    p = Path(path)
    st = p.stat()
    ppc = float(px_per_cm) if settings.crop == "scale" and px_per_cm is not None and np.isfinite(px_per_cm) else None
    blob = json.dumps({"path": str(p.resolve()), "mtime_ns": st.st_mtime_ns, "size": st.st_size,
                       "settings": settings.to_dict(), "px_per_cm": ppc, "view": view, "side": side},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def shared_crop(path: str, settings: CropSettings, *, px_per_cm: float | None = None, view: str | None = None,
                side: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~smi_deep.preprocess.cached_crop` through the run's store when one is open.

    Raises
    ------
    PreprocessError
        As :func:`~smi_deep.preprocess.cached_crop` (the reason is stored too).
    """
    root = _STORE["dir"]
    if root is None:
        return cached_crop(path, settings, px_per_cm=px_per_cm, view=view, side=side)
    try:
        key = crop_key(path, settings, px_per_cm, view, side)
    except OSError:
        return cached_crop(path, settings, px_per_cm=px_per_cm, view=view, side=side)
    hit = _LOADED.get(key)
    if hit is None:
        hit = _read(Path(root), key)
        if hit is None:
            try:
                hit = cached_crop(path, settings, px_per_cm=px_per_cm, view=view, side=side)
            except PreprocessError as exc:
                hit = str(exc)
            _write(Path(root), key, hit)
        _LOADED[key] = hit
        while len(_LOADED) > CACHE_ITEMS:
            _LOADED.popitem(last=False)
    else:
        _LOADED.move_to_end(key)
    if isinstance(hit, str):
        raise PreprocessError(hit)
    return hit


def _read(root: Path, key: str):
    try:
        if (root / f"{key}.txt").exists():
            return (root / f"{key}.txt").read_text(encoding="utf-8")
        crop = np.load(root / f"{key}.crop.npy", allow_pickle=False)
        mask = np.load(root / f"{key}.mask.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None
    crop.setflags(write=False)
    mask.setflags(write=False)
    return crop, mask


def _write(root: Path, key: str, value) -> None:
    """Each file written under a temporary name and renamed, mask first, so a reader sees whole files."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        parts = [(".txt", value)] if isinstance(value, str) else [(".mask.npy", value[1]), (".crop.npy", value[0])]
        for suffix, data in parts:
            fd, tmp = tempfile.mkstemp(prefix=".crop.", suffix=".tmp", dir=root)
            with os.fdopen(fd, "wb") as fh:
                if isinstance(data, str):
                    fh.write(data.encode("utf-8"))
                else:
                    np.save(fh, data, allow_pickle=False)
            os.replace(tmp, root / f"{key}{suffix}")
    except OSError:
        pass  # a store that cannot be written only costs time


def warm(store_dir: str | os.PathLike, items: list[tuple]) -> int:
    """Prepare the crops ``items`` (path, ``CropSettings.to_dict()``, px_per_cm, view, side) into the store;
    returns how many."""
    with using(store_dir):
        for path, sd, ppc, view, side in items:
            try:
                shared_crop(path, CropSettings(**sd), px_per_cm=ppc, view=view, side=side)
            except (PreprocessError, OSError):
                pass
    return len(items)
