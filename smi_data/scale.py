"""Pixels to centimetres: the ArUco marker convention shared by the phantom and the models.

A square ArUco marker (OpenCV dictionary :data:`MARKER_DICTIONARY`, id :data:`MARKER_ID`)
whose black square measures :data:`MARKER_SIZE_CM` on a side is placed beside the leg,
at the leg's depth, facing the camera. ``px_per_cm = mean side length in px / MARKER_SIZE_CM``.
"""

from __future__ import annotations

import numpy as np

MARKER_DICTIONARY = "DICT_4X4_50"
MARKER_ID = 0
#: Side of the marker's black square (the outer edge of its border cells), cm.
MARKER_SIZE_CM = 5.0


def _dictionary(name: str = MARKER_DICTIONARY):
    import cv2

    return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))


def marker_image(side_px: int, *, marker_id: int = MARKER_ID, dictionary: str = MARKER_DICTIONARY) -> np.ndarray:
    """The marker as a ``(side_px, side_px)`` uint8 image (black square with its pattern), no quiet zone."""
    import cv2

    return cv2.aruco.generateImageMarker(_dictionary(dictionary), marker_id, int(side_px))


def detect_marker_px_per_cm(
    image: np.ndarray,
    *,
    marker_cm: float = MARKER_SIZE_CM,
    marker_id: int = MARKER_ID,
    dictionary: str = MARKER_DICTIONARY,
) -> tuple[float, np.ndarray] | None:
    """Find the marker and return ``(px_per_cm, corners)``, or None if it is not found.

    Fast passes first (on a half-size copy for photos of 400 px and more, then one
    adaptive-threshold window on the full photo); if they find nothing, OpenCV's full
    default search runs. The corners are always refined on the full photo by
    :func:`refine_marker_corners`, so every pass gives the same scale.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3) uint8
        Photo (grey or BGR).
    marker_cm : float
        Side of the marker's black square, cm.

    Returns
    -------
    (float, ndarray (4, 2)) or None
        Pixels per centimetre (mean of the four side lengths / ``marker_cm``) and the
        corner coordinates in pixels (x, y), clockwise from top-left.
    """
    import cv2

    if marker_cm <= 0:
        raise ValueError(f"marker_cm must be > 0, got {marker_cm}")
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if grey.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {grey.dtype}")
    dic = _dictionary(dictionary)

    def detect(img, window=None):
        params = cv2.aruco.DetectorParameters()
        if window:
            params.adaptiveThreshWinSizeMin = window
            params.adaptiveThreshWinSizeMax = window
        corners, ids = cv2.aruco.ArucoDetector(dic, params).detectMarkers(img)[:2]
        # nothing found: OpenCV 4 returns None, OpenCV 5 an empty array (which let the fast pass's miss
        # stop the search before the later passes ran: 19 of the 200 studio photos lost their marker)
        return (corners, ids) if ids is not None and len(ids) else (None, None)

    corners, ids = None, None
    h, w = grey.shape[:2]
    if max(h, w) >= 400:
        half = cv2.resize(grey, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        corners, ids = detect(half, 13)
        if ids is not None:
            corners = [(np.asarray(c, dtype=float) + 0.5) * [w / (w // 2), h / (h // 2)] - 0.5 for c in corners]
    if ids is None:
        corners, ids = detect(grey, 23)
    if ids is None:
        corners, ids = detect(grey)
    if ids is None:
        return None
    for c, i in zip(corners, ids.ravel()):
        if int(i) == marker_id:
            pts = refine_marker_corners(grey, np.asarray(c, dtype=float).reshape(4, 2))
            sides = np.linalg.norm(pts - np.roll(pts, -1, axis=0), axis=1)
            return float(sides.mean() / marker_cm), pts
    return None


def refine_marker_corners(grey: np.ndarray, corners: np.ndarray, *, n_samples: int = 11) -> np.ndarray:
    """Sub-pixel corners from the marker's four outer edges.

    OpenCV's corner refinement is biased inward by a few tenths of a pixel, which is
    1-2 % of a 20-40 px marker. Here each side is located where the intensity profile
    across it crosses halfway between the black border cell (inside) and the white quiet
    zone (outside), at ``n_samples`` points along the side's middle 70 %; a straight line
    is fitted through them and adjacent lines are intersected. All 4 x ``n_samples``
    profiles are sampled in one call on a crop around the marker. Coordinates are pixel
    centres (x, y). Falls back to the input corners if a profile is unusable.
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
