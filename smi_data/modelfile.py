"""Model folder metadata: ``model.json`` written with every model and checked before use.

A model folder never holds a pickle. Its ``model.json`` names the format, the family
that can load it, the configuration and the versions it was made with. A folder from
elsewhere (no model.json, another format, another family, a newer format version) is
refused with a message that says what was found and what was expected.

Integrity: at save, ``model.json`` records the SHA-256 and size of every other file in
the folder (``files``: the booster, the network weights, ...). Before a model is used,
every listed file must be a regular file inside the folder (a symbolic link is refused,
wherever it points) with that checksum. So a booster whose leaf values were edited, a weight
file swapped for another, or a ``model.json`` copied from another model folder is refused instead of predicting.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .errors import LegsmiError
from .manifest import VIEW_CHOICES
from .runs import atomic_write_json, git_commit, now_iso, package_versions

MODEL_FORMAT = "legsmi-model"
MODEL_FORMAT_VERSION = 1
META_NAME = "model.json"
#: Files of a model folder that are not part of the model (written after model.json).
NOT_MODEL_FILES = (META_NAME, "run.json")
#: Views a model can be trained on (``view`` in model.json).
MODEL_VIEWS = VIEW_CHOICES


class ModelFileError(LegsmiError, ValueError):
    """A model folder that this code cannot or must not load."""


def write_model_meta(model_dir: str | os.PathLike, *, family: str, model: str, config: dict,
                     extra: dict | None = None) -> Path:
    meta: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "family": family,
        "model": model,
        "config": config,
        "created": now_iso(),
        "versions": package_versions(),
        "git_commit": git_commit(),
    }
    if extra:
        meta.update(extra)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    meta["files"] = file_checksums(model_dir)
    return atomic_write_json(Path(model_dir) / META_NAME, meta)


def file_checksums(model_dir: str | os.PathLike) -> dict[str, dict]:
    """``{name: {"sha256": ..., "bytes": ...}}`` for every model file in the folder (not model.json, run.json)."""
    from .images import sha256_file

    d = Path(model_dir)
    out = {}
    for p in sorted(d.iterdir()):
        if p.name in NOT_MODEL_FILES or p.name.startswith("."):
            continue
        if p.is_symlink() or not p.is_file():
            raise ModelFileError(f"{p}: a model folder holds regular files only (this is a link or a folder)")
        out[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


def verify_files(model_dir: str | os.PathLike, meta: dict) -> None:
    """Refuse a folder whose files are not the ones ``model.json`` recorded (see the module docstring)."""
    from .images import sha256_file

    d = Path(model_dir)
    where = d / META_NAME
    files = meta.get("files")
    if not isinstance(files, dict):
        raise ModelFileError(f"{where}: no checksums of the model files ('files'); the folder was written by an "
                             "older legsmi or altered; train the model again with this legsmi")
    for name, info in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ModelFileError(f"{where}: file entry {name!r} is not a file name inside the model folder")
        p = d / name
        try:
            st = os.lstat(p)
        except OSError:
            raise ModelFileError(f"{d}: {name} is missing; the model folder is incomplete, copy it again") from None
        if stat.S_ISLNK(st.st_mode):
            raise ModelFileError(f"{p}: is a symbolic link; a model folder must hold its own files (copy the "
                                 "file itself into the folder, or copy the whole model folder again)")
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(f"{p}: not a regular file")
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
            raise ModelFileError(f"{where}: checksum entry of {name} is malformed")
        if info.get("bytes") != st.st_size or sha256_file(p) != info["sha256"]:
            raise ModelFileError(f"{p}: checksum does not match model.json; the file was changed or damaged after "
                                 "saving, or model.json comes from another model; copy the model folder again")


def read_model_meta(model_dir: str | os.PathLike, family: str | None = None, *, verify: bool = True) -> dict:
    """The checked ``model.json`` of a model folder.

    Checks the format, version and family, the kinds of the top-level settings
    (``view``, ``model``, ``config``) and, with ``verify``, the files' checksums
    (:func:`verify_files`).

    Raises
    ------
    ModelFileError
        With what was found and what to do.
    """
    d = Path(model_dir)
    path = d / META_NAME
    if path.is_symlink():
        raise ModelFileError(f"{path}: is a symbolic link; a model folder must hold its own model.json")
    if not d.is_dir():
        raise ModelFileError(f"{d}: not a model folder; give the folder written by `legsmi train --out`")
    if not path.is_file():
        raise ModelFileError(f"{d}: no {META_NAME}; this is not a legsmi model folder")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc}); the model file is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: format is {meta.get('format') if isinstance(meta, dict) else None!r}, "
                             f"expected {MODEL_FORMAT!r}; this file was not written by legsmi")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {meta.get('format_version')!r}, this legsmi reads "
                             f"version {MODEL_FORMAT_VERSION}; retrain the model or use the matching legsmi")
    if family is not None and meta.get("family") != family:
        raise ModelFileError(f"{path}: model family {meta.get('family')!r}, expected {family!r}")
    if "view" in meta and meta["view"] not in MODEL_VIEWS:
        raise ModelFileError(f"{path}: view {meta['view']!r} is not one of {', '.join(MODEL_VIEWS)}; the file was "
                             "altered; copy the model folder again or retrain")
    for key in ("model", "model_name", "family"):
        if key in meta and not isinstance(meta[key], str):
            raise ModelFileError(f"{path}: {key} {meta[key]!r} is not text; the file was altered")
    if "config" in meta and not isinstance(meta["config"], dict):
        raise ModelFileError(f"{path}: config is not a mapping; the file was altered")
    if verify:
        verify_files(d, meta)
    return meta


def check_config_values(where, config: dict, defaults: dict) -> None:
    """Refuse settings in ``config`` whose value is of another kind than the estimator's default."""
    from .params import value_problem

    for name, value in config.items():
        if name in defaults:
            problem = value_problem(defaults[name], value)
            if problem:
                raise ModelFileError(f"{where}: setting {name}={value!r}: {problem}; the file was altered or "
                                     "written by another version; retrain the model")
