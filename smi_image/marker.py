"""The ArUco scale card in a photo: find it, keep it out of the leg, paint it out.

The marker convention (dictionary, id, 5 cm side) and the detector with sub-pixel
corners are the data layer's (:mod:`smi_data.scale`), shared with the phantom; this
module is what the image layer does with a found marker.
"""

from __future__ import annotations

import numpy as np

#: The marker's polygon grown by this factor about its centre covers its white quiet zone and paper.
QUIET_ZONE_GROWTH = 1.6


def find_marker(image_u8: np.ndarray) -> tuple[float, np.ndarray] | None:
    """The ArUco marker's ``(px_per_cm, corners (4, 2))`` in a uint8 photo (grey or BGR), or None."""
    from smi_data.scale import detect_marker_px_per_cm

    return detect_marker_px_per_cm(image_u8)


def exclusion_mask(shape: tuple, polygons, fx: float = 1.0, fy: float = 1.0) -> np.ndarray | None:
    """Bool mask (``shape``) of the marker cards, quiet zone included, or None without polygons.

    ``polygons`` are (N, 2) corner arrays (x, y) in photo pixels; ``fx``, ``fy`` scale them
    to an image of ``shape`` (pixel-centre coordinates).
    """
    import cv2

    polys = [np.asarray(p, dtype=float).reshape(-1, 2) for p in (polygons or []) if p is not None]
    if not polys:
        return None
    out = np.zeros(shape[:2], np.uint8)
    for pts in polys:
        c = pts.mean(axis=0)
        grown = c + (pts - c) * QUIET_ZONE_GROWTH
        grown = (grown + 0.5) * [fx, fy] - 0.5
        cv2.fillPoly(out, [np.rint(grown).astype(np.int32)], 1)
    return out > 0


def border_colour(image: np.ndarray, width: int = 4) -> np.ndarray:
    """Median colour of the outer ``width`` px of an ``(H, W, 3)`` image: the simplest background estimate."""
    h, w = image.shape[:2]
    width = max(1, min(width, h // 4, w // 4))
    strips = [image[:width].reshape(-1, 3), image[-width:].reshape(-1, 3),
              image[:, :width].reshape(-1, 3), image[:, -width:].reshape(-1, 3)]
    return np.median(np.concatenate(strips), axis=0).astype(np.uint8)


def paint_out_marker(image: np.ndarray, found: tuple | None = None
                     ) -> tuple[np.ndarray, float | None, np.ndarray | None]:
    """Cover the ArUco marker (and its white quiet zone) with the colour around it.

    Parameters
    ----------
    image : ndarray, (H, W, 3) uint8
    found : (px_per_cm, corners), optional
        A marker already found (:func:`find_marker`); otherwise it is looked for.

    Returns
    -------
    (image, px_per_cm, polygon)
        The painted copy (or the input if no marker), the marker's pixels per cm and the
        painted polygon ``(4, 2)`` (or None, None).
    """
    import cv2

    found = found if found is not None else find_marker(image)
    if found is None:
        return image, None, None
    px_per_cm, corners = found
    centre = corners.mean(axis=0)
    inner = np.round(centre + QUIET_ZONE_GROWTH * (corners - centre)).astype(np.int32)
    outer = np.round(centre + 2.0 * (corners - centre)).astype(np.int32)
    ring = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(ring, outer, 1)
    cv2.fillConvexPoly(ring, inner, 0)
    colour = np.median(image[ring > 0], axis=0) if ring.any() else border_colour(image)
    out = image.copy()
    cv2.fillConvexPoly(out, inner, [int(c) for c in colour])
    return out, float(px_per_cm), inner
