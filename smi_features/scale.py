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

#: Knee-to-ankle length as a fraction of standing height (Winter 2009, Drillis & Contini 1966).
SHANK_FRACTION_OF_HEIGHT = 0.246
SCALE_MODES = ("marker", "manifest", "relative")


@dataclass
class Scale:
    """Scale of one photo: ``px_per_cm`` (NaN when unknown), ``mode``, and why it is NaN, if it is."""

    px_per_cm: float
    mode: str
    reason: str = ""


def find_marker(image_u8: np.ndarray) -> tuple[float, np.ndarray] | None:
    """The ArUco marker's ``(px_per_cm, corners (4, 2))`` in a uint8 photo, or None.

    Fast passes first (on a half-size copy for photos of 400 px and more, then one
    adaptive-threshold window on the full photo); if they find nothing, OpenCV's full
    default search runs. The corners are always refined on the full photo by the data
    layer's sub-pixel edge fit (:func:`refine_marker_corners`), so all passes give the
    same scale.
    """
    import cv2

    from smi_data import scale as dscale

    grey = image_u8 if image_u8.ndim == 2 else cv2.cvtColor(image_u8, cv2.COLOR_BGR2GRAY)
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dscale.MARKER_DICTIONARY))
    corners, ids = None, None
    h, w = grey.shape[:2]
    if max(h, w) >= 400:
        # Fast pass on a half-size copy; the corners are refined on the full image below.
        half = cv2.resize(grey, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        params = cv2.aruco.DetectorParameters()
        params.adaptiveThreshWinSizeMin = 13
        params.adaptiveThreshWinSizeMax = 13
        corners, ids, _ = cv2.aruco.ArucoDetector(dictionary, params).detectMarkers(half)
        if ids is not None:
            corners = [(np.asarray(c, dtype=float) + 0.5) * [w / (w // 2), h / (h // 2)] - 0.5 for c in corners]
    if ids is None:
        params = cv2.aruco.DetectorParameters()
        params.adaptiveThreshWinSizeMin = 23
        params.adaptiveThreshWinSizeMax = 23
        corners, ids, _ = cv2.aruco.ArucoDetector(dictionary, params).detectMarkers(grey)
    if ids is None:
        # The full default search (three threshold windows) before giving up.
        params = cv2.aruco.DetectorParameters()
        corners, ids, _ = cv2.aruco.ArucoDetector(dictionary, params).detectMarkers(grey)
    if ids is not None:
        for c, i in zip(corners, ids.ravel()):
            if int(i) == dscale.MARKER_ID:
                pts = refine_marker_corners(grey, np.asarray(c, dtype=float).reshape(4, 2))
                sides = np.linalg.norm(pts - np.roll(pts, -1, axis=0), axis=1)
                return float(sides.mean() / dscale.MARKER_SIZE_CM), pts
    return None


def refine_marker_corners(grey: np.ndarray, corners: np.ndarray, *, n_samples: int = 11) -> np.ndarray:
    """:func:`smi_data.scale.refine_marker_corners`, vectorised (same numbers, about 10x faster).

    All 4 x ``n_samples`` intensity profiles across the marker's sides are sampled in one
    call, on a crop around the marker; the test suite checks that the corners equal
    those of the data layer's function.
    """
    from scipy.ndimage import map_coordinates

    pts = np.asarray(corners, dtype=float)
    centre = pts.mean(axis=0)
    side = float(np.linalg.norm(pts - np.roll(pts, -1, axis=0), axis=1).mean())
    reach = max(2.5, side / 9.0)
    offsets = np.linspace(-reach, reach, int(round(2 * reach / 0.05)) + 1)
    p0 = pts
    p1 = np.roll(pts, -1, axis=0)
    u = (p1 - p0) / np.linalg.norm(p1 - p0, axis=1, keepdims=True)
    n = np.stack([u[:, 1], -u[:, 0]], axis=1)
    flip = np.einsum("ij,ij->i", n, (p0 + p1) / 2 - centre) < 0
    n[flip] = -n[flip]
    svals = np.linspace(0.15, 0.85, n_samples)
    q = p0[:, None, :] + svals[None, :, None] * (p1 - p0)[:, None, :]            # (4, S, 2)
    xy = q[:, :, None, :] + offsets[None, None, :, None] * n[:, None, None, :]   # (4, S, O, 2)
    # Sample on a crop (exactly what map_coordinates with mode="nearest" reads on the whole image).
    x0 = max(0, int(np.floor(xy[..., 0].min())) - 2)
    y0 = max(0, int(np.floor(xy[..., 1].min())) - 2)
    x1 = min(grey.shape[1], int(np.ceil(xy[..., 0].max())) + 3)
    y1 = min(grey.shape[0], int(np.ceil(xy[..., 1].max())) + 3)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return pts
    crop = grey[y0:y1, x0:x1].astype(float)
    xs = np.clip(xy[..., 0], 0, grey.shape[1] - 1) - x0
    ys = np.clip(xy[..., 1], 0, grey.shape[0] - 1) - y0
    prof = map_coordinates(crop, [ys.ravel(), xs.ravel()], order=1, mode="nearest").reshape(xy.shape[:3])
    m = prof.shape[2] // 4
    dark = np.median(prof[..., :m], axis=2)
    light = np.median(prof[..., -m:], axis=2)
    half = (dark + light) / 2
    above = prof >= half[..., None]
    j = np.argmax(above, axis=2)
    ok = (light - dark >= 20) & above.any(axis=2) & (j > 0)
    jm = np.maximum(j - 1, 0)
    pj = np.take_along_axis(prof, j[..., None], axis=2)[..., 0]
    pjm = np.take_along_axis(prof, jm[..., None], axis=2)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (half - pjm) / (pj - pjm)
        off = offsets[jm] + frac * (offsets[j] - offsets[jm])
    found = q + off[..., None] * n[:, None, :]
    lines = []
    for k in range(4):
        f = found[k][ok[k]]
        if len(f) < 3:
            return pts
        mean = f.mean(axis=0)
        _, _, vt = np.linalg.svd(f - mean)
        lines.append((mean, vt[0]))
    out = np.empty_like(pts)
    for k in range(4):
        (a, da), (b, db) = lines[(k - 1) % 4], lines[k]
        mat = np.array([da, -db]).T
        if abs(np.linalg.det(mat)) < 1e-6:
            return pts
        t = np.linalg.solve(mat, b - a)
        out[k] = a + t[0] * da
    return out


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
