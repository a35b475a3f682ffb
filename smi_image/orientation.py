"""Which way up the leg stands: a photo saved upside down is refused, not measured with the thigh as the sole.

The tilt rule of :mod:`smi_image.silhouette` measures the leg's axis, which is vertical
whether the foot is at the bottom or at the top; a leg turned by 180° would then be
measured from the wrong end (the knee and ankle placed up from the thigh's cut). Phones'
EXIF orientation is applied on decoding (:mod:`smi_data.images`), so this takes a photo
saved upside down, but the fuzz campaign (docs/robustness.md) found such photos measured.

The cue is the leg's shape along its axis as the pipeline sees it: from the top, the thigh
or knee, the calf's bulge, the narrow ankle, then the foot. :func:`width_profile` reads the
upright mask's width at :data:`LEVELS` evenly spaced bands between its top and bottom rows,
divided by its median (so neither the scale nor the framing's height matters). A gradient
-boosted classifier (XGBoost, saved as its own JSON) scores a profile; the score is
**symmetrised**, ``(f(p) + 1 - f(p[::-1])) / 2``, so turning a mask over turns P(upside down)
into 1 - P and neither answer is favoured. It is fitted by :func:`fit_orientation` on the
masks the pipeline itself finds (the shipped segmenter, no orientation check) in rendered
``clinic`` and ``wild`` scenes, each photo once upright and once turned by 180°, each profile also read
backwards as the other class (``legsmi segmenter orientation``); the file records the
segmenter's digest it was fitted with (a mismatch is logged: refit after retraining the
segmenter).

:func:`upside_down_probability` gives P(upside down) of an upright mask (NaN for a mask
too short to tell, :func:`usable`); the silhouette step refuses a photo (reason
``upside_down``) where it is above the file's ``refuse_above`` (:data:`REFUSE_ABOVE`, odds
of 99 to 1). Measured refusal rates on good and on turned photos: docs/segmentation.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from smi_data.errors import LegsmiError

logger = logging.getLogger(__name__)

LEVELS = 24
FORMAT = "legsmi-orientation"
FORMAT_VERSION = 1
WEIGHTS = Path(__file__).resolve().parent / "weights" / "orientation.json"
#: P(upside down) above which a photo is refused (odds of 99 to 1; see docs/segmentation.md for why).
REFUSE_ABOVE = 0.99
#: XGBoost's settings for the classifier (small: 24 inputs, a few thousand profiles).
XGB_PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.05, "subsample": 0.8,
              "colsample_bytree": 0.8, "min_child_weight": 2.0, "lambda": 1.0, "tree_method": "hist",
              "nthread": 1}
N_ROUNDS = 300


class OrientationRuleError(LegsmiError, ValueError):
    """The orientation rule's file is missing, from elsewhere or damaged."""


def _row_widths(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {m.shape}")
    return _pixels_per_row(m).astype(np.float64)


def _pixels_per_row(m: np.ndarray) -> np.ndarray:
    """True pixels in each row of a 2-D bool mask (int), as ``m.sum(axis=1)``, by OpenCV's row reduction."""
    import cv2

    if m.shape[0] == 0 or m.shape[1] == 0:
        return m.sum(axis=1)
    return cv2.reduce(np.ascontiguousarray(m).view(np.uint8), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0]


def _profile(per_row: np.ndarray, levels: int) -> np.ndarray | None:
    rows = np.nonzero(per_row)[0]
    if rows.size < levels:
        return None
    per_row = per_row[rows[0]:rows[-1] + 1]
    edges = np.linspace(0, per_row.size, levels + 1).round().astype(int)
    # band means (no band is empty: at least ``levels`` rows); sums of whole pixel counts are exact,
    # so this equals each band's ``per_row[a:b].mean()``
    prof = np.add.reduceat(per_row, edges[:-1]) / np.diff(edges)
    med = float(np.median(prof))
    if not med > 0:
        return None
    return prof / med


def _usable(per_row: np.ndarray) -> bool:
    rows = np.nonzero(per_row)[0]
    if rows.size < LEVELS:
        return False
    span = rows[-1] - rows[0] + 1
    return bool(span >= 0.35 * per_row.size and span >= 2.5 * float(np.median(per_row[rows])))


def width_profile(mask: np.ndarray, levels: int = LEVELS) -> np.ndarray | None:
    """The mask's width (pixels per row) at ``levels`` bands from its top row to its bottom row, over its median.

    None when the mask has fewer rows than ``levels`` or no width.
    """
    return _profile(_row_widths(mask), levels)


def usable(mask: np.ndarray) -> bool:
    """True when the mask is tall enough to tell its ends apart: it spans at least 35 % of the
    image's height and at least 2.5 times its median width (a leg, not a scrap of one)."""
    return _usable(_row_widths(mask))


# --------------------------------------------------------------------------- fitting
def orientation_examples(folders, *, echo=None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Profiles of the pipeline's upright masks in rendered scene folders, each photo upright (label 0)
    and turned by 180° (label 1); photos the pipeline refuses either way are left out.

    Returns ``(profiles (N, LEVELS), labels (N,), sources)``; ``sources`` says per folder how it was
    made (its run.json command) and how many photos it gave.
    """
    import cv2
    import pandas as pd

    from smi_data.images import read_image

    from .settings import SilhouetteSettings
    from .silhouette import SilhouetteError, leg_silhouette

    settings = SilhouetteSettings(check_upright=False)
    profiles, labels, sources = [], [], []
    for folder in folders:
        folder = Path(folder)
        man_path = folder / "manifest.csv"
        if not man_path.is_file():
            raise FileNotFoundError(f"{folder}: no manifest.csv; render it with `legsmi phantom --out {folder}`")
        man = pd.read_csv(man_path, dtype=str)
        if not {"image", "view"} <= set(man.columns):
            raise ValueError(f"{man_path}: needs the columns image and view")
        used = 0
        for k, row in enumerate(man.itertuples(index=False)):
            img = read_image(folder / row.image)
            for label, im in ((0, img), (1, cv2.rotate(img, cv2.ROTATE_180))):
                try:
                    sil = leg_silhouette(im, view=row.view, settings=settings)
                except SilhouetteError:
                    continue
                per_row = _row_widths(sil.mask)
                prof = _profile(per_row, LEVELS) if _usable(per_row) else None
                if prof is not None:
                    profiles.append(prof)
                    labels.append(label)
                    used += 1
            if echo and (k + 1) % 200 == 0:
                echo(f"orientation: {folder.name}: {k + 1}/{len(man)} photos")
        argv = None
        try:
            argv = json.loads((folder / "run.json").read_text(encoding="utf-8")).get("argv")
        except (OSError, ValueError):
            pass
        sources.append({"folder": str(folder.resolve()), "photos": int(len(man)), "profiles": used,
                        "command": " ".join(argv) if argv else None})
    if not profiles:
        raise ValueError("no photo in the scene folders gave a usable leg mask")
    return np.asarray(profiles), np.asarray(labels, dtype=np.int64), sources


def fit_orientation(profiles: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                    refuse_above: float = REFUSE_ABOVE) -> dict:
    """Fit the classifier on profiles (label 1: upside down), each also read backwards as the other class.

    Returns the weights file's content (format, the booster as XGBoost's JSON, the threshold,
    the segmenter digest, and the share of training photos the rule refuses per label).
    """
    import xgboost as xgb

    from .learned import WEIGHTS as SEGMENTER, weights_digest

    P = np.asarray(profiles, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != LEVELS or len(P) != len(y):
        raise ValueError(f"profiles must be (N, {LEVELS}) with N labels; got {P.shape} and {y.shape}")
    if len(np.unique(y)) < 2 or len(P) < 40:
        raise ValueError(f"{len(P)} profiles of {len(np.unique(y))} kind(s); fitting needs upright and turned "
                         "photos, at least 40 in all")
    X = np.vstack([P, P[:, ::-1]])
    Y = np.r_[y, 1 - y]
    booster = xgb.train({**XGB_PARAMS, "seed": int(seed)}, xgb.DMatrix(X, label=Y), num_boost_round=N_ROUNDS)
    rule = {"format": FORMAT, "format_version": FORMAT_VERSION, "levels": LEVELS, "refuse_above": float(refuse_above),
            "booster": booster.save_raw(raw_format="json").decode("utf-8"),
            "segmenter_digest": weights_digest(SEGMENTER) if SEGMENTER.is_file() else None}
    p = _symmetric(booster, P)
    refused = p > refuse_above
    rule["training"] = {"profiles": int(len(P)), "seed": int(seed), "xgb_params": XGB_PARAMS, "rounds": N_ROUNDS,
                        "upright_refused": float(refused[y == 0].mean()),
                        "turned_refused": float(refused[y == 1].mean())}
    return rule


def _symmetric(booster, P: np.ndarray) -> np.ndarray:
    P = np.atleast_2d(np.asarray(P, dtype=np.float64))
    # each profile and itself read backwards; in-place prediction (no DMatrix) gives predict's numbers
    both = booster.inplace_predict(np.vstack([P, P[:, ::-1]]))
    return 0.5 * (both[:len(P)] + 1.0 - both[len(P):])


# --------------------------------------------------------------------------- use
_CACHE: dict[tuple, dict] = {}


def load_orientation(path: str | Path | None = None) -> dict:
    """The rule's file, checked (format, version, levels, threshold, a booster XGBoost reads)."""
    p = Path(path) if path else WEIGHTS
    try:
        stamp = p.stat()
    except OSError:
        raise OrientationRuleError(f"{p}: no orientation rule; make it with `legsmi segmenter orientation`") from None
    key = (str(p.resolve()), stamp.st_mtime_ns, stamp.st_size)
    if key in _CACHE:
        return _CACHE[key]
    try:
        blob = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OrientationRuleError(f"{p}: not a readable orientation rule ({exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("format_version") != FORMAT_VERSION:
        raise OrientationRuleError(f"{p}: not a legsmi orientation rule (format {FORMAT!r} v{FORMAT_VERSION}); "
                                   "make one with `legsmi segmenter orientation`")
    thr = blob.get("refuse_above")
    if blob.get("levels") != LEVELS or not isinstance(thr, (int, float)) or not 0.5 <= float(thr) < 1.0 \
            or not isinstance(blob.get("booster"), str):
        raise OrientationRuleError(f"{p}: orientation rule with levels {blob.get('levels')!r} and threshold "
                                   f"{thr!r}; expected {LEVELS} levels, a threshold in [0.5, 1) and a booster")
    import xgboost as xgb

    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(blob["booster"].encode("utf-8")))
    except xgb.core.XGBoostError as exc:
        raise OrientationRuleError(f"{p}: the orientation rule's booster does not load ({exc})") from None
    if booster.num_features() != LEVELS:
        raise OrientationRuleError(f"{p}: the booster reads {booster.num_features()} inputs, not {LEVELS}")
    from .learned import WEIGHTS as SEGMENTER, weights_digest

    seg = weights_digest(SEGMENTER) if SEGMENTER.is_file() else None
    if blob.get("segmenter_digest") and seg and blob["segmenter_digest"] != seg:
        logger.warning("%s was fitted on the masks of segmenter %s, the shipped one is %s; refit it with "
                       "`legsmi segmenter orientation`", p, blob["segmenter_digest"], seg)
    rule = {**blob, "refuse_above": float(thr), "booster": booster}
    _CACHE[key] = rule
    return rule


def upside_down_probability(mask: np.ndarray, rule: dict | None = None) -> float:
    """P(the leg in an upright mask stands upside down); NaN when the mask is not :func:`usable`."""
    rule = rule or load_orientation()
    per_row = _row_widths(mask)
    if not _usable(per_row):
        return float("nan")
    prof = _profile(per_row, int(rule["levels"]))
    if prof is None:
        return float("nan")
    return float(_symmetric(rule["booster"], prof)[0])
