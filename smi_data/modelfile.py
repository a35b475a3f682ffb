"""Model folder metadata: ``model.json`` written with every model and checked before use.

A model folder never holds a pickle. Its ``model.json`` names the format, the family
that can load it, the configuration and the versions it was made with. A folder from
elsewhere (no model.json, another format, another family, a newer format version) is
refused with a message that says what was found and what was expected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .runs import atomic_write_json, git_commit, now_iso, package_versions

MODEL_FORMAT = "legsmi-model"
MODEL_FORMAT_VERSION = 1
META_NAME = "model.json"


class ModelFileError(ValueError):
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
    return atomic_write_json(Path(model_dir) / META_NAME, meta)


def read_model_meta(model_dir: str | os.PathLike, family: str | None = None) -> dict:
    d = Path(model_dir)
    path = d / META_NAME
    if not d.is_dir():
        raise ModelFileError(f"{d}: not a model folder; give the folder written by `legsmi train --out`")
    if not path.is_file():
        raise ModelFileError(f"{d}: no {META_NAME}; this is not a legsmi model folder")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc}); the model file is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: format is {meta.get('format') if isinstance(meta, dict) else None!r}, "
                             f"expected {MODEL_FORMAT!r}; this file was not written by legsmi")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {meta.get('format_version')!r}, this legsmi reads "
                             f"version {MODEL_FORMAT_VERSION}; retrain the model or use the matching legsmi")
    if family is not None and meta.get("family") != family:
        raise ModelFileError(f"{path}: model family {meta.get('family')!r}, expected {family!r}")
    return meta
