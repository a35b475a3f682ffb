"""Pixels to centimetres for one photo: marker, else the manifest, else relative.

Order (docs/architecture.md):

1. ``marker``: the ArUco marker of :mod:`smi_data.scale` (``DICT_4X4_50`` id 0, 5 cm)
   found in the photo; ``px_per_cm`` = its mean side in px / 5 cm, with the corner
   refinement of :func:`smi_data.scale.refine_marker_corners`.
2. ``manifest``: the manifest's ``px_per_cm`` for the image.
3. ``relative``: neither is known. Lengths are taken relative to the measured
   knee-to-ankle length and scaled by the person's height: the knee-to-ankle length is
   :data:`SHANK_FRACTION_OF_HEIGHT` of standing height (Winter DA. *Biomechanics and
   Motor Control of Human Movement*, 4th ed. 2009, table 4.1, after Drillis & Contini
   1966: knee 0.285 H, ankle 0.039 H above the floor), so
   ``px_per_cm = L_px / (0.246 * height_cm)``. Without a height the photo has no scale;
   its centimetre features are NaN and the reason says so.

The mode used is written next to every image's features (``lat_scale_mode``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smi_image.marker import find_marker  # noqa: F401  (the image layer finds the card)

#: Knee-to-ankle length as a fraction of standing height (Winter 2009, Drillis & Contini 1966).
SHANK_FRACTION_OF_HEIGHT = 0.246
SCALE_MODES = ("marker", "manifest", "relative")


@dataclass
class Scale:
    """Scale of one photo: ``px_per_cm`` (NaN when unknown), ``mode``, and why it is NaN, if it is."""

    px_per_cm: float
    mode: str
    reason: str = ""


def choose_scale(marker_px_per_cm: float | None, manifest_px_per_cm: float | None,
                 knee_ankle_px: float | None, height_cm: float | None) -> Scale:
    """Apply the scale order (marker, manifest, relative) for one photo.

    Parameters
    ----------
    marker_px_per_cm : float or None
        From :func:`find_marker` (None or NaN if no marker).
    manifest_px_per_cm : float or None
        The manifest's value (None or NaN if not given).
    knee_ankle_px : float or None
        Measured knee-to-ankle length, px (for the relative mode).
    height_cm : float or None
        Standing height, cm (for the relative mode).
    """
    def ok(v) -> bool:
        return v is not None and np.isfinite(v) and v > 0

    if ok(marker_px_per_cm):
        return Scale(float(marker_px_per_cm), "marker")
    if ok(manifest_px_per_cm):
        return Scale(float(manifest_px_per_cm), "manifest")
    if ok(knee_ankle_px) and ok(height_cm):
        return Scale(float(knee_ankle_px) / (SHANK_FRACTION_OF_HEIGHT * float(height_cm)), "relative")
    why = "no knee-to-ankle length" if not ok(knee_ankle_px) else "no height"
    return Scale(np.nan, "relative", f"no marker, no manifest px_per_cm and {why}: lengths in cm are unknown")
