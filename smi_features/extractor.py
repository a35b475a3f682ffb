"""From photos to the feature table: one measurement per image, cached; one row per sample.

Three layers:

* :func:`measure_leg` (pure, on an array): marker, silhouette, levels and every
  per-view feature **in pixels**, with the geometry kept for drawing.
* :func:`measure_image_file`: reads a file and returns a JSON-able *record* of the
  measurement (features in px, the dense width profile, the marker's scale, the
  silhouette method, the roll, or the failure and its reason). Records are cached per
  image in ``$LEGSMI_CACHE_DIR`` (default ``~/.cache/legsmi``) under
  ``features/``, keyed by the SHA-256 of the image file, the extraction settings and
  :data:`EXTRACTOR_VERSION`; the manifest's scale and the person's height are applied
  afterwards, so they are not part of the key.
* :func:`sample_features` / :class:`LegFeatureExtractor`: a sample table (see
  docs/architecture.md) to the feature table, in centimetres, with per view the scale
  mode, px_per_cm, silhouette method, roll and failure reason, the paired two-view
  features, ``calf_circumference_cm`` and the covariates.

``calf_circumference_cm`` is the ellipse's circumference (``pair_calf_circ_cm``) when
both views were measured, otherwise ``pi * calf_max_width_cm`` of the one view: a
circular cross-section, which over-reads the circumference of a deep (lateral) calf
and under-reads it from a narrow (posterior) one by a few per cent.
``calf_circumference_source`` says which (``ellipse``, ``circle_lateral``,
``circle_posterior``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import os
import tempfile
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from .features import VIEW_PREFIX, all_feature_docs, column_name, covariates, paired, view_feature_docs
from .features import curvature, indices, shape, width_profile
from .features.base import GeometryError, LegGeometry, LevelSettings, joint_heights_px, leg_geometry
from .scale import choose_scale, find_marker
from .silhouette import Silhouette, SilhouetteError, SilhouetteSettings, to_uint8

#: Bump when a change alters any feature value (invalidates caches; note it in the changelog).
EXTRACTOR_VERSION = "4"
#: Non-feature columns written per view.
META_FIELDS = ("scale_mode", "px_per_cm", "silhouette_method", "roll_deg", "levels_from", "failure")


@dataclass(frozen=True)
class ExtractionSettings:
    """Everything that changes a per-image measurement (the cache key holds all of it)."""

    silhouette: SilhouetteSettings = field(default_factory=SilhouetteSettings)
    levels: LevelSettings = field(default_factory=LevelSettings)
    use_marker: bool = True
    #: Refuse a photo without the ArUco marker (quality gate reason ``no_marker``).
    require_marker: bool = False

    def as_dict(self) -> dict:
        from smi_image.learned import weights_digest

        return {"silhouette": self.silhouette.as_dict(), "levels": self.levels.as_dict(),
                "use_marker": self.use_marker, "require_marker": self.require_marker,
                "segmenter_weights": weights_digest(), "version": EXTRACTOR_VERSION}

    @classmethod
    def from_dict(cls, d: dict | None) -> "ExtractionSettings":
        d = d or {}
        sil = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (d.get("silhouette") or {}).items()}
        lev = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (d.get("levels") or {}).items()}
        return cls(SilhouetteSettings(**sil), LevelSettings(**lev), bool(d.get("use_marker", True)),
                   bool(d.get("require_marker", False)))


@dataclass
class LegMeasurement:
    """One photo measured in pixels (see :func:`measure_leg`)."""

    ok: bool
    reason: str = ""
    features_px: dict = field(default_factory=dict)
    dense_px: list = field(default_factory=list)
    marker_px_per_cm: float | None = None
    marker_corners: np.ndarray | None = None
    silhouette: Silhouette | None = None
    geometry: LegGeometry | None = None

    def record(self) -> dict:
        """JSON-able summary (what the cache stores)."""
        sil = self.silhouette
        return {
            "ok": self.ok,
            "reason": self.reason,
            "features_px": {k: _num(v) for k, v in self.features_px.items()},
            "dense_px": [_num(v) for v in self.dense_px],
            "marker_px_per_cm": _num(self.marker_px_per_cm),
            "silhouette_method": sil.method if sil is not None else None,
            "roll_deg": _num(sil.roll_deg) if sil is not None else None,
            "knee_ankle_px": _num(self.geometry.length_px) if self.geometry is not None else None,
            "levels_from": self.geometry.levels_from if self.geometry is not None else None,
        }


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def measure_leg(image: np.ndarray, *, settings: ExtractionSettings | None = None,
                px_per_cm: float | None = None, height_cm: float | None = None, view: str | None = None,
                side: str | None = None, timings: dict | None = None, marker=...) -> LegMeasurement:
    """Measure the lower leg in one photo, in pixels. Never raises for a photo without a leg.

    ``marker``, if given, is the photo's :func:`find_marker` result already found (None:
    no marker), so it is not searched again.

    ``timings``, if given, gets the CPU seconds of each stage added (``marker``,
    ``segmentation``, ``gate``, ``edges``, ``features``), for ``legsmi speed``.

    The photo goes through the image layer: the marker, the one segmentation
    (:func:`smi_image.segment.segment_leg`, ``view`` and ``side`` pick the leg), the
    quality gate (:func:`smi_image.quality.check_photo`: a refused photo is not measured,
    ``reason`` starts with "refused:"), then the upright sub-pixel silhouette.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        BGR or grey; uint8, uint16 or float in [0, 1].
    settings : ExtractionSettings, keyword-only
    px_per_cm : float, keyword-only
        The manifest's scale (used when the photo has no marker).
    height_cm : float, keyword-only
        Standing height: with a scale, the knee and ankle levels are placed from the
        floor (:mod:`.features.base`); without, from the silhouette.

    Returns
    -------
    LegMeasurement
        ``ok`` False with ``reason`` when no leg (or no knee-to-ankle span) was found.
        Otherwise ``features_px``: every per-view feature with lengths in px, areas in
        px^2, curvatures in 1/px (see :mod:`.features`); ``dense_px``: the dense width
        profile; the marker's scale and corners if found; the silhouette and levels.
    """
    s = settings or ExtractionSettings()
    m = LegMeasurement(ok=False)
    try:
        u8 = to_uint8(image)
    except ValueError as exc:
        m.reason = f"unusable image: {exc}"
        return m
    clock = _StageClock(timings)
    if marker is ...:
        marker = find_marker(u8) if s.use_marker else None
    clock.lap("marker")
    if marker is not None:
        m.marker_px_per_cm, m.marker_corners = marker
    ppc = m.marker_px_per_cm if m.marker_px_per_cm else px_per_cm
    joints = joint_heights_px(ppc, height_cm)
    from smi_image.quality import check_photo
    from smi_image.segment import segment_leg
    from smi_image.silhouette import upright_silhouette

    try:
        seg = segment_leg(u8, settings=s.silhouette, view=view, side=side,
                          exclude_polygons=[m.marker_corners] if m.marker_corners is not None else None)
        clock.lap("segmentation")
        verdict = check_photo(seg.work_image, seg.work, marker_found=marker is not None,
                              marker_required=s.require_marker)
        clock.lap("gate")
        if not verdict.accepted:
            m.reason = f"refused: {verdict.reason}"
            return m
        sil = upright_silhouette(u8, seg, settings=s.silhouette, joint_heights_px=joints)
        clock.lap("edges")
        m.silhouette = sil
        geom = leg_geometry(sil.left, sil.right, s.levels, top_cut=bool(sil.mask[0].any()),
                            px_per_cm=ppc, height_cm=height_cm)
        m.geometry = geom
    except SilhouetteError as exc:
        m.reason = f"refused: {exc}"
        return m
    except GeometryError as exc:
        m.reason = str(exc)
        return m
    feats: dict[str, float] = {}
    feats.update(width_profile.compute(geom))
    feats.update(shape.compute(geom))
    feats.update(curvature.compute(geom))
    m.features_px = feats
    m.dense_px = list(width_profile.dense_profile(geom))
    clock.lap("features")
    m.ok = True
    return m


class _StageClock:
    """Adds the CPU seconds (this process, every thread) since the last lap to ``timings[stage]``.

    CPU rather than wall time, so a stage's share does not move with other work on the
    machine. Nothing is recorded when ``timings`` is None.
    """

    def __init__(self, timings: dict | None):
        self.timings = timings
        self.t = time.process_time()

    def lap(self, stage: str) -> None:
        if self.timings is not None:
            now = time.process_time()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.t
            self.t = now


def measure_image_file(path: str | os.PathLike, settings: ExtractionSettings | None = None,
                       px_per_cm: float | None = None, height_cm: float | None = None, view: str | None = None,
                       side: str | None = None) -> dict:
    """Read one image and return its measurement record (never raises for a bad image)."""
    from smi_data.images import ImageError, photo_problem, read_image

    s = settings or ExtractionSettings()
    t0 = time.perf_counter()
    try:
        img = read_image(path, color=True, check_photo=False)
        # the photo rule after the marker search: a marker found the right way round
        # answers the mirror question, so the rule need not look for it again
        marker = find_marker(img) if s.use_marker else None
        problem = photo_problem(img, marker_found=(marker is not None) if s.use_marker else None)
        if problem:
            raise ImageError(f"{Path(path)}: {problem}")
    except ImageError as exc:
        return {"ok": False, "reason": str(exc), "features_px": {}, "dense_px": [], "marker_px_per_cm": None,
                "silhouette_method": None, "roll_deg": None, "knee_ankle_px": None, "read_error": True}
    m = measure_leg(img, settings=s, px_per_cm=px_per_cm, height_cm=height_cm, view=view, side=side, marker=marker)
    kept = _KEPT.get()
    if kept is not None:
        kept[_kept_key(path, settings, view)] = m
    rec = m.record()
    rec["extract_ms"] = (time.perf_counter() - t0) * 1000.0
    return rec


#: Measurements kept inside :func:`keep_measurements` (None outside): ``{(path, settings, view): LegMeasurement}``.
_KEPT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("legsmi_kept_measurements", default=None)


def _kept_key(path, settings: ExtractionSettings | None, view: str | None) -> tuple:
    s = settings or ExtractionSettings()
    return os.path.abspath(os.fspath(path)), json.dumps(s.as_dict(), sort_keys=True), view


@contextlib.contextmanager
def keep_measurements():
    """Inside the block, every photo this process measures is kept in memory (never on disk), so
    a later step of the same request (the annotated copy) reuses that measurement, the one the
    model was given, instead of measuring the photo again (:func:`kept_measurement`)."""
    token = _KEPT.set({})
    try:
        yield
    finally:
        _KEPT.reset(token)


def kept_measurement(path, settings: ExtractionSettings | None = None, view: str | None = None):
    """The :class:`LegMeasurement` of ``path`` kept inside :func:`keep_measurements`, or None."""
    kept = _KEPT.get()
    return None if kept is None else kept.get(_kept_key(path, settings, view))


# ----------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """``$LEGSMI_CACHE_DIR`` or ``~/.cache/legsmi`` (never inside the repository)."""
    env = os.environ.get("LEGSMI_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "legsmi"


def file_sha256(path: str | os.PathLike) -> str:
    from smi_data.images import sha256_file

    return sha256_file(path)  # refuses a named pipe (OSError) instead of waiting on it forever


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of the measuring code (this package, the image layer with its weights, the data layer's
    image and scale modules).

    Part of every cache key, so a record measured by older code is never reused, even when
    a change forgot to bump :data:`EXTRACTOR_VERSION`.
    """
    import smi_data
    import smi_image

    here = Path(__file__).resolve().parent
    data = Path(smi_data.__file__).resolve().parent
    image = Path(smi_image.__file__).resolve().parent
    files = (sorted(here.rglob("*.py")) + sorted(image.rglob("*.py")) + sorted(image.rglob("*.pt"))
             + [data / "scale.py", data / "images.py"])
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(f.parents[1]).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


class FeatureCache:
    """Per-image records on disk, keyed by the image file's hash and the settings.

    Writes go to a temporary file that is renamed into place, so parallel workers and
    interrupted runs never leave a half-written record.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.root = Path(cache_dir) if cache_dir else default_cache_dir()
        self.dir = self.root / "features"

    @staticmethod
    def key(file_hash: str, settings: ExtractionSettings, context: tuple = (None, None)) -> str:
        """Cache key: the file's hash, the settings and the image's context (manifest px_per_cm, height)."""
        ctx = [v if isinstance(v, str) or v is None else (round(float(v), 6) if np.isfinite(v) else None)
               for v in context]
        blob = json.dumps({"file": file_hash, "settings": settings.as_dict(), "context": ctx,
                           "code": code_digest()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        p = self._path(key)
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, OSError):
            return None
        return rec if isinstance(rec, dict) and "ok" in rec else None

    def put(self, key: str, record: dict) -> None:
        p = self._path(key)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".rec.", suffix=".tmp", dir=p.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
            os.replace(tmp, p)
        except OSError:
            pass  # a cache that cannot be written only costs time


@contextmanager
def one_thread(settings: ExtractionSettings | None = None):
    """OpenCV and (for the learned segmenter) torch on one thread for the block, restored after.

    The photos are measured one after another and the networks and filters are small:
    one thread per process is the fastest per CPU-second, and parallelism comes from
    processes (``n_jobs``, a Dask cluster). Torch's default (one thread per core) was
    measured 2.4 times slower in wall time on a loaded two-core machine
    (docs/scaling.md); worker processes already set one thread each.
    """
    import cv2

    from smi_image.segment import resolve_method

    old_cv = cv2.getNumThreads()
    cv2.setNumThreads(1)
    torch_threads = None
    if resolve_method((settings or ExtractionSettings()).silhouette.segmenter) == "learned":
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(old_cv)
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)


def _measure_worker(path: str, settings_dict: dict, context: tuple = (None, None)) -> dict:
    import cv2

    cv2.setNumThreads(1)  # one core per worker process
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    return measure_image_file(path, ExtractionSettings.from_dict(settings_dict), *context)


def measure_files(paths: list[str], *, settings: ExtractionSettings | None = None, n_jobs: int = 1,
                  cache: bool | FeatureCache = True, contexts: list[tuple] | None = None,
                  mapper=None) -> list[dict]:
    """Measurement records of many image files, in order, from the cache or computed.

    Parameters
    ----------
    paths : list of str
        Image files (an image listed twice with the same context is measured once).
    settings : ExtractionSettings, keyword-only
    n_jobs : int, keyword-only
        Worker processes for the images not in the cache (1: in this process).
    cache : bool or FeatureCache, keyword-only
        False: no cache; True: the default cache folder.
    contexts : list of (px_per_cm, height_cm[, view, side]), keyword-only
        Per image: the manifest's scale, the person's height (NaN or None if unknown), the
        view and the photographed side (which leg of two).
    mapper : callable, keyword-only
        ``mapper(fn, calls) -> [fn(*c) for c in calls]`` run elsewhere (a Dask cluster,
        :func:`benchmarks.cluster.chunked_mapper`); replaces ``n_jobs`` when given.
    """
    s = settings or ExtractionSettings()
    store = cache if isinstance(cache, FeatureCache) else (FeatureCache() if cache else None)
    ctxs = [_context(c) for c in (contexts or [(None, None)] * len(paths))]
    if len(ctxs) != len(paths):
        raise ValueError(f"{len(ctxs)} contexts for {len(paths)} paths")
    items = list(dict.fromkeys(zip((str(p) for p in paths), ctxs)))
    records: dict = {}
    keys: dict = {}
    hashes: dict = {}
    todo = []
    settings_blob = json.dumps(s.as_dict(), sort_keys=True) if store is not None else ""
    seen: dict = {}
    for item in items:
        p, ctx = item
        if store is not None:
            seen[item] = _seen_key(store, p, settings_blob, ctx)
            rec = _SEEN.get(seen[item]) if seen[item] else None
            if rec is not None:  # read from (or written to) this cache by this process before
                _SEEN.move_to_end(seen[item])
                records[item] = rec
                continue
            try:
                if p not in hashes:
                    hashes[p] = file_sha256(p)
                keys[item] = store.key(hashes[p], s, ctx)
            except OSError:
                keys[item] = ""
            rec = store.get(keys[item]) if keys[item] else None
            if rec is not None:
                records[item] = rec
                _remember(seen[item], rec)
                continue
        todo.append(item)
    if todo:
        if mapper is not None:
            sd = s.as_dict()
            done = list(mapper(_measure_worker, [(p, sd, ctx) for p, ctx in todo]))
        elif n_jobs is not None and n_jobs != 1 and len(todo) > 1:
            from joblib import Parallel, delayed

            sd = s.as_dict()
            done = Parallel(n_jobs=n_jobs, backend="loky")(delayed(_measure_worker)(p, sd, ctx) for p, ctx in todo)
        else:
            with one_thread(s):
                done = [measure_image_file(p, s, *ctx) for p, ctx in todo]
        for item, rec in zip(todo, done):
            records[item] = rec
            if store is not None and keys.get(item) and not rec.get("read_error"):
                store.put(keys[item], rec)
                _remember(seen.get(item), rec)
    return [records[(str(p), c)] for p, c in zip(paths, ctxs)]


#: Records this process read from or wrote to a feature cache, by :func:`_seen_key` (most recent last).
#: A model that transforms the same photos in every inner fit (the features model's cross-conformal
#: refits, the tape baseline's folds) then neither hashes the files nor reads the JSON again. Keyed by
#: the file's path and ``stat`` (inode, mtime, ctime, size; the CNN crop cache uses path, mtime and
#: size), so a rewritten file is looked up afresh by its content hash.
_SEEN: "OrderedDict[tuple, dict]" = OrderedDict()
SEEN_ITEMS = 20_000


def _seen_key(store: FeatureCache, path: str, settings_blob: str, ctx: tuple) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(store.dir), os.path.abspath(path), st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, settings_blob,
            ctx)


def _remember(key: tuple | None, rec: dict) -> None:
    if key is None:
        return
    _SEEN[key] = rec
    _SEEN.move_to_end(key)
    while len(_SEEN) > SEEN_ITEMS:
        _SEEN.popitem(last=False)


def _context(c) -> tuple:
    """``(px_per_cm, height_cm, view, side)`` with unknowns as None (shorter tuples are padded)."""
    c = tuple(c) + (None,) * 4
    out = []
    for v in c[:2]:
        try:
            v = float(v)
        except (TypeError, ValueError):
            v = None
        out.append(v if v is not None and np.isfinite(v) and v > 0 else None)
    view = c[2] if c[2] in ("lateral", "posterior") else None
    side = str(c[3]).upper()[:1] if isinstance(c[3], str) and str(c[3]).upper()[:1] in ("L", "R") else None
    return tuple(out) + (view, side)


# ----------------------------------------------------------------------------- records to features
def record_to_view_features(record: dict, *, prefix: str, manifest_px_per_cm: float = np.nan,
                            height_cm: float = np.nan, levels: LevelSettings | None = None) -> tuple[dict, np.ndarray]:
    """One image's record to prefixed feature columns in cm, plus its dense profile in cm.

    Returns
    -------
    features : dict
        ``{prefix}{name}{unit suffix}`` for every per-view feature, and the meta columns
        ``{prefix}scale_mode``, ``px_per_cm``, ``silhouette_method``, ``roll_deg``,
        ``levels_from``, ``failure`` ("" when fine).
    dense_cm : ndarray
        The dense width profile in cm (NaN if failed or unscaled).
    """
    docs = view_feature_docs(levels)
    out: dict = {}
    n_dense = (levels or LevelSettings()).n_dense
    nan_feats = {column_name(prefix, n, d): np.nan for n, d in docs.items()}
    if not record.get("ok"):
        out.update(nan_feats)
        out.update({f"{prefix}scale_mode": None, f"{prefix}px_per_cm": np.nan,
                    f"{prefix}silhouette_method": record.get("silhouette_method"),
                    f"{prefix}roll_deg": _nan(record.get("roll_deg")),
                    f"{prefix}levels_from": record.get("levels_from"),
                    f"{prefix}failure": record.get("reason") or "failed"})
        return out, np.full(n_dense, np.nan)
    sc = choose_scale(record.get("marker_px_per_cm"), manifest_px_per_cm, record.get("knee_ankle_px"), height_cm)
    ppc = sc.px_per_cm
    fpx = record["features_px"]
    for name, doc in docs.items():
        v = _nan(fpx.get(name))
        out[column_name(prefix, name, doc)] = v / ppc ** doc.dim if doc.dim else v
    dense = np.array([_nan(v) for v in record.get("dense_px", [])], dtype=float)
    out.update({f"{prefix}scale_mode": sc.mode, f"{prefix}px_per_cm": ppc,
                f"{prefix}silhouette_method": record.get("silhouette_method"),
                f"{prefix}roll_deg": _nan(record.get("roll_deg")),
                f"{prefix}levels_from": record.get("levels_from"),
                f"{prefix}failure": sc.reason})
    return out, dense / ppc


def _nan(v) -> float:
    return np.nan if v is None else float(v)


def feature_table(samples: pd.DataFrame, records: dict[str, dict], *,
                  levels: LevelSettings | None = None) -> tuple[pd.DataFrame, dict]:
    """Assemble the feature table of a sample table from per-image records.

    Parameters
    ----------
    samples : DataFrame
        The sample table (docs/architecture.md).
    records : dict
        ``{(image path, (manifest px_per_cm, height_cm)): record}`` for every image the
        table refers to (see :func:`image_context`).

    Returns
    -------
    table : DataFrame
        One row per sample (same index), ``sample_id`` first.
    failures : dict
        ``{sample_id: reason}`` for every sample with an image that failed.
    """
    lv = levels or LevelSettings()
    t = width_profile.dense_fractions(lv.n_dense)
    docs = all_feature_docs(lv)
    pair_cols = {name: column_name("", name, d) for name, d in paired.FEATURES.items()}
    rows, failures = [], {}
    for srow in samples.to_dict("records"):  # plain dicts: what iterrows gave, without a Series per row
        row: dict = {"sample_id": srow.get("sample_id")}
        dense: dict = {}
        present = []
        reasons = []
        for view, prefix in VIEW_PREFIX.items():
            path = srow.get(f"image_{view}")
            has = isinstance(path, str) and bool(path)
            if has:
                present.append(view)
                ctx = image_context(srow, view)
                f, dense[view] = record_to_view_features(
                    records[(path, ctx)], prefix=prefix, manifest_px_per_cm=_nan(ctx[0]),
                    height_cm=_nan(ctx[1]), levels=lv)
                row.update(f)
                if f[f"{prefix}failure"]:
                    reasons.append(f"{view}: {f[f'{prefix}failure']}")
            else:
                for name, d in view_feature_docs(lv).items():
                    row[column_name(prefix, name, d)] = np.nan
                row.update({f"{prefix}{m}": (np.nan if m in ("px_per_cm", "roll_deg") else None) for m in META_FIELDS})
        both = {"lateral", "posterior"} <= set(present)
        pf = {c: np.nan for c in pair_cols.values()}
        if both and np.isfinite(dense["lateral"]).all() and np.isfinite(dense["posterior"]).all():
            vals = paired.compute(dense["lateral"], dense["posterior"], t,
                                  row["lat_knee_ankle_length_cm"], row["post_knee_ankle_length_cm"], lv.calf_band)
            pf = {pair_cols[k]: v for k, v in vals.items()}
        row.update(pf)
        if both:
            row["calf_circumference_cm"] = pf["pair_calf_circ_cm"]
            row["calf_circumference_source"] = "ellipse"
        elif present:
            p = VIEW_PREFIX[present[0]]
            row["calf_circumference_cm"] = np.pi * row[f"{p}calf_max_width_cm"]
            row["calf_circumference_source"] = f"circle_{present[0]}"
        else:
            row["calf_circumference_cm"] = np.nan
            row["calf_circumference_source"] = None
            reasons.append("the sample has no image")
        if reasons:
            failures[str(srow.get("sample_id"))] = "; ".join(reasons)
        rows.append(row)
    table = pd.DataFrame(rows, index=samples.index)
    cov = covariates.compute(samples)
    table = pd.concat([table, cov], axis=1)
    table = pd.concat([table, indices.compute(table)], axis=1)
    # Column order: id, features in documented order, then meta columns.
    feat_cols = [c for c in docs if c in table.columns]
    meta_cols = [f"{p}{m}" for p in VIEW_PREFIX.values() for m in META_FIELDS] + ["calf_circumference_source"]
    return table[["sample_id"] + feat_cols + meta_cols], failures


def image_context(srow, view: str) -> tuple:
    """``(manifest px_per_cm, height_cm, view, side)`` of one image of a sample-table row (None if unknown)."""
    side = srow.get("side") if hasattr(srow, "get") else None
    return _context((_get_num(srow, f"px_per_cm_{view}"), _get_num(srow, "height_cm"), view,
                     side if isinstance(side, str) else None))


def _get_num(row, name):
    v = row.get(name) if hasattr(row, "get") else None
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


def sample_features(samples: pd.DataFrame, *, settings: ExtractionSettings | None = None, n_jobs: int = 1,
                    cache: bool | FeatureCache = True, mapper=None) -> tuple[pd.DataFrame, dict]:
    """Feature table of a sample table (see :func:`feature_table`), extracting what is not cached."""
    from smi_data.manifest import sample_images

    s = settings or ExtractionSettings()
    refs = sample_images(samples)
    paths = [p for _, _, p in refs]
    ctxs = [image_context(samples.iloc[pos], view) for pos, view, _ in refs]
    recs = measure_files(paths, settings=s, n_jobs=n_jobs, cache=cache, contexts=ctxs, mapper=mapper)
    return feature_table(samples, dict(zip(zip(paths, ctxs), recs)), levels=s.levels)


class LegFeatureExtractor(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: sample table -> feature table (cm), cached and parallel.

    Parameters
    ----------
    silhouette_settings : SilhouetteSettings or None
    level_settings : LevelSettings or None
    use_marker : bool
        Look for the ArUco marker (else the manifest's scale, else relative).
    n_jobs : int
        Worker processes for images not in the cache.
    cache : bool
        Use the per-image cache (``$LEGSMI_CACHE_DIR`` or ``~/.cache/legsmi``).
    cache_dir : str or None
        Another cache folder.

    Attributes
    ----------
    failures_ : dict
        Empty after ``fit``; ``transform`` leaves the transformer unchanged, and
        :meth:`transform_with_reasons` gives ``{sample_id: reason}`` of the samples not measured.
    """

    def __init__(self, silhouette_settings=None, level_settings=None, use_marker=True, n_jobs=1, cache=True,
                 cache_dir=None):
        self.silhouette_settings = silhouette_settings
        self.level_settings = level_settings
        self.use_marker = use_marker
        self.n_jobs = n_jobs
        self.cache = cache
        self.cache_dir = cache_dir

    def settings(self) -> ExtractionSettings:
        return ExtractionSettings(self.silhouette_settings or SilhouetteSettings(),
                                  self.level_settings or LevelSettings(), bool(self.use_marker))

    def fit(self, X, y=None):
        self.failures_ = {}
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise TypeError("X must be a sample table (pandas DataFrame from smi_data.manifest.to_samples)")
        return self.transform_with_reasons(X)[0]

    def transform_with_reasons(self, X: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        """The feature table and ``{sample_id: reason}`` of the samples not measured; the transformer is left
        unchanged."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError("X must be a sample table (pandas DataFrame from smi_data.manifest.to_samples)")
        cache = FeatureCache(self.cache_dir) if (self.cache and self.cache_dir) else bool(self.cache)
        return sample_features(X, settings=self.settings(), n_jobs=self.n_jobs, cache=cache)


def image_features(manifest: pd.DataFrame, *, settings: ExtractionSettings | None = None, n_jobs: int = 1,
                   cache: bool | FeatureCache = True, mapper=None) -> pd.DataFrame:
    """One row per image of a manifest: ids, scale mode, failure and every per-view feature (cm).

    Columns: ``subject_id``, ``view``, ``image``, ``scale_mode``, ``px_per_cm``,
    ``silhouette_method``, ``roll_deg``, ``failure`` ("" when fine), then the per-view
    features without the view prefix (``calf_max_width_cm``, ...) and
    ``calf_circumference_cm`` (circular cross-section from this one view). What
    ``legsmi features`` writes.
    """
    from smi_data.manifest import to_samples

    parts = []
    for view, prefix in VIEW_PREFIX.items():
        samples = to_samples(manifest, view)
        if samples.empty:
            continue
        table, _ = sample_features(samples, settings=settings, n_jobs=n_jobs, cache=cache, mapper=mapper)
        cols = [c for c in table.columns if c.startswith(prefix)]
        part = table[cols].rename(columns={c: c[len(prefix):] for c in cols})
        part["calf_circumference_cm"] = table["calf_circumference_cm"]
        rel = manifest.set_index(manifest["subject_id"].astype(str) + ":" + manifest["view"])["image"]
        part.insert(0, "image", [rel.get(f"{sid}:{view}") for sid in samples["subject_id"]])
        part.insert(0, "view", view)
        part.insert(0, "subject_id", samples["subject_id"].to_numpy())
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["subject_id", "view", "image"])
    out = pd.concat(parts, ignore_index=True)
    meta = list(META_FIELDS)
    feats = [c for c in out.columns if c not in meta + ["subject_id", "view", "image"]]
    out["failure"] = out["failure"].fillna("")
    return (out[["subject_id", "view", "image"] + meta + feats].sort_values(["subject_id", "view"])
            .reset_index(drop=True))
