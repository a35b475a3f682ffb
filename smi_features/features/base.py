"""Shared pieces of the feature families: documentation records and the leg's levels.

Every feature is documented the pyradiomics way in its family's ``FEATURES`` table: a
title, what it measures, the formula, the unit, the view(s) it needs, its group (which
switch of the regressor turns it on) and its length dimension ``dim``: a value measured
in pixels is converted to centimetres by dividing by ``px_per_cm ** dim`` (widths 1,
areas 2, curvatures -1, ratios 0). ``tests/test_features.py`` fails when a computed
feature has no record.

Levels
------
All per-view features are measured on the upright silhouette (:mod:`..silhouette`)
between the knee and the ankle level. A *relative level* ``t`` runs from 0 at the knee
to 1 at the ankle; the knee-to-ankle length is ``L = ankle_y - knee_y``.

* **From the floor** (``levels_from = "floor"``, used whenever the photo's scale and
  the person's height are known): the sole is the silhouette's lowest row (the foot
  stands on the floor) and the joints sit at fixed fractions of standing height above
  it: knee :data:`KNEE_HEIGHT_FRAC` = 0.285 H, ankle :data:`ANKLE_HEIGHT_FRAC` = 0.039 H
  (Winter DA, *Biomechanics and Motor Control of Human Movement*, 4th ed., 2009,
  fig. 4.1, after Drillis & Contini 1966). Photos frame the thigh above the knee, so
  the top of the silhouette is not the knee; these levels need no knee landmark.
* **From the silhouette** (``levels_from = "silhouette"``: no scale or no height, the
  relative scale mode): the knee is the top of the silhouette and the ankle its
  narrowest row in the lower part (``ankle_band``, fractions of the silhouette's height).
  This reads the thigh's end as the knee when the photo frames the thigh; features in
  this mode are less comparable between photos.

Calf-search band
----------------
The maximum calf width is searched over ``t`` in ``calf_band`` = (0.20, 0.60) by
default, the band the synthetic cohort's truth uses (``smi_data.phantom.truth.CALF_BAND``).
Men's widest slice is at t = 0.28-0.38 on the body model behind the cohort; women's
shanks often taper straight down from the knee, so that a band that starts right below
the knee (t = 0.10) reads the flare of the knee joint instead of the calf on them.
Starting at 0.20 keeps the knee out; a leg whose width falls all the way through the
band gives its width at t = 0.20 and ``calf_max_level_frac`` = 0.20, which itself tells
a columnar leg from a bulging one. The minimum ankle width is searched over
``ankle_search`` = (0.70, 1.00).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from smi_data.errors import LegsmiError

#: Knee and ankle joint heights above the floor as fractions of standing height
#: (Winter 2009, after Drillis & Contini 1966).
KNEE_HEIGHT_FRAC = 0.285
ANKLE_HEIGHT_FRAC = 0.039


@dataclass(frozen=True)
class FeatureDoc:
    """Documentation record of one feature (see the module docstring)."""

    title: str
    measures: str
    formula: str
    unit: str
    dim: int
    group: str
    views: str = "lateral or posterior"


@dataclass(frozen=True)
class LevelSettings:
    """Where the knee, the ankle and the calf are looked for; part of the cache key.

    Attributes
    ----------
    knee_offset_frac : float
        Silhouette levels only: knee below the top row when the silhouette is cut by
        the top of the photo, as a fraction of the silhouette's height.
    ankle_band : tuple of float
        Silhouette levels only: rows searched for the ankle (narrowest row),
        fractions of the silhouette's height from its top.
    calf_band : tuple of float
        Relative levels (0 knee, 1 ankle) searched for the maximum calf width.
    ankle_search : tuple of float
        Relative levels searched for the minimum ankle width.
    smooth_frac : float
        Gaussian smoothing of the width profile along the leg, sigma as a fraction of
        the knee-to-ankle length (removes pixel noise before maxima and minima are taken).
    n_levels : int
        Number of evenly spaced levels of the width profile (``width_l01`` ...).
    n_dense : int
        Number of levels of the dense profile used for paired (two-view) features.
    """

    knee_offset_frac: float = 0.0
    ankle_band: tuple = (0.55, 0.97)
    calf_band: tuple = (0.20, 0.60)
    ankle_search: tuple = (0.70, 1.00)
    smooth_frac: float = 0.01
    n_levels: int = 15
    n_dense: int = 60

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def gaussian_smooth(y: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a 1-D array that may hold NaN (NaN-aware, edges renormalised)."""
    y = np.asarray(y, dtype=float)
    if sigma <= 0.3:
        return y.copy()
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    ok = np.isfinite(y)
    num = np.convolve(np.where(ok, y, 0.0), k, mode="same")
    den = np.convolve(ok.astype(float), k, mode="same")
    out = np.where(den > 1e-9, num / np.maximum(den, 1e-12), np.nan)
    out[~ok] = np.nan
    return out


@dataclass
class LegGeometry:
    """The levels of one upright silhouette, px (rows of the upright frame).

    Attributes
    ----------
    left, right : ndarray (H,)
        Sub-pixel edges of every row (NaN where empty).
    width_s : ndarray (H,)
        Width profile smoothed along the leg, px.
    knee_y, ankle_y : float
        Knee and ankle rows; ``length_px = ankle_y - knee_y``.
    top, bottom : int
        First and last row of the silhouette.
    top_cut : bool
        The silhouette touches the top of the photo (thigh cut by the frame).
    levels_from : {'floor', 'silhouette'}
        How the knee and ankle were placed (module docstring).
    """

    left: np.ndarray
    right: np.ndarray
    width_s: np.ndarray
    knee_y: float
    ankle_y: float
    top: int
    bottom: int
    top_cut: bool
    settings: LevelSettings
    levels_from: str = "silhouette"

    @property
    def length_px(self) -> float:
        return float(self.ankle_y - self.knee_y)

    def y_at(self, t) -> np.ndarray:
        """Row (float) of relative level(s) ``t`` (0 knee, 1 ankle)."""
        return self.knee_y + np.asarray(t, dtype=float) * self.length_px

    def sample(self, values: np.ndarray, t) -> np.ndarray:
        """Linear interpolation of a per-row array at relative level(s) ``t``."""
        rows = np.arange(values.size, dtype=float)
        ok = np.isfinite(values)
        return np.interp(self.y_at(t), rows[ok], values[ok], left=np.nan, right=np.nan)

    def shank_rows(self) -> np.ndarray:
        """Integer rows from the knee to the ankle (inclusive) that lie in the photo."""
        rows = np.arange(int(np.ceil(self.knee_y)), int(np.floor(self.ankle_y)) + 1)
        return rows[(rows >= 0) & (rows < self.left.size)]


class GeometryError(LegsmiError, ValueError):
    """The silhouette has no usable knee-to-ankle span."""


def leg_geometry(left: np.ndarray, right: np.ndarray, settings: LevelSettings | None = None,
                 *, top_cut: bool | None = None, px_per_cm: float | None = None,
                 height_cm: float | None = None) -> LegGeometry:
    """Find the knee and ankle levels of an upright silhouette (see the module docstring).

    Parameters
    ----------
    left, right : ndarray, (H,)
        Edges of every row, px (NaN for empty rows), from :class:`..silhouette.Silhouette`.
    settings : LevelSettings
    top_cut : bool, keyword-only
        Whether the silhouette is cut by the top of the photo; default: its first row is row 0.
    px_per_cm, height_cm : float, keyword-only
        Scale of the photo and standing height; with both, the levels come from the floor.

    Raises
    ------
    GeometryError
        Fewer than 20 rows of silhouette, a knee-to-ankle span under 10 px, or a
        silhouette that does not reach the calf band.
    """
    s = settings or LevelSettings()
    width = right - left
    rows = np.flatnonzero(np.isfinite(width))
    if rows.size < 20:
        raise GeometryError(f"the silhouette spans only {rows.size} rows; need at least 20")
    top, bottom = int(rows[0]), int(rows[-1])
    height = bottom - top
    if top_cut is None:
        top_cut = top == 0
    if _positive(px_per_cm) and _positive(height_cm):
        levels_from = "floor"
        sole = bottom + 0.5  # the lowest row's lower edge
        knee_y = sole - KNEE_HEIGHT_FRAC * height_cm * px_per_cm
        ankle_y = sole - ANKLE_HEIGHT_FRAC * height_cm * px_per_cm
        if knee_y + s.calf_band[0] * (ankle_y - knee_y) < top:
            raise GeometryError(
                f"the photo does not reach the calf: the knee should be {top - knee_y:.0f} px above the top of the "
                "silhouette; frame the leg from above the knee to the floor (or check the height and the scale)")
    else:
        levels_from = "silhouette"
        knee_y = float(top) + (s.knee_offset_frac * height if top_cut else 0.0)
        # Smooth with sigma from the silhouette's height to find the ankle.
        width_s = gaussian_smooth(width, max(s.smooth_frac * height, 0.5))
        a0, a1 = int(top + s.ankle_band[0] * height), int(top + s.ankle_band[1] * height)
        band = width_s[a0:a1 + 1]
        if band.size == 0 or not np.isfinite(band).any():
            raise GeometryError("no finite width in the ankle band of the silhouette")
        ankle_y = float(a0 + np.nanargmin(band))
    length = ankle_y - knee_y
    if length < 10:
        raise GeometryError(f"knee-to-ankle length of {length:.0f} px is too short to measure")
    width_s = gaussian_smooth(width, max(s.smooth_frac * length, 0.5))
    return LegGeometry(left=left, right=right, width_s=width_s, knee_y=float(knee_y), ankle_y=float(ankle_y),
                       top=top, bottom=bottom, top_cut=bool(top_cut), settings=s, levels_from=levels_from)


def joint_heights_px(px_per_cm, height_cm) -> tuple | None:
    """Knee and ankle joint heights above the floor in px, or None without scale or height."""
    if _positive(px_per_cm) and _positive(height_cm):
        h = float(height_cm) * float(px_per_cm)
        return KNEE_HEIGHT_FRAC * h, ANKLE_HEIGHT_FRAC * h
    return None


def _positive(v) -> bool:
    try:
        return v is not None and np.isfinite(float(v)) and float(v) > 0
    except (TypeError, ValueError):
        return False
