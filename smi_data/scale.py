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
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.ArucoDetector(_dictionary(dictionary), params)
    corners, ids, _ = detector.detectMarkers(grey)
    if ids is None:
        return None
    for c, i in zip(corners, ids.ravel()):
        if int(i) == marker_id:
            pts = np.asarray(c, dtype=float).reshape(4, 2)
            sides = np.linalg.norm(pts - np.roll(pts, -1, axis=0), axis=1)
            return float(sides.mean() / marker_cm), pts
    return None
