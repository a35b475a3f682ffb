"""Shape features of the shank's silhouette between the knee and the ankle levels (one view).

The shank region is the upright silhouette's rows from the knee to the ankle level
(the foot and anything above the knee left out), each row spanning its sub-pixel left
and right edges. Its outline is the polygon through the left edges going down and
the right edges coming back up.
"""

from __future__ import annotations

import numpy as np

from .base import FeatureDoc, LegGeometry

GROUP = "area"

FEATURES = {
    "shank_area": FeatureDoc(
        title="Shank silhouette area",
        measures="projected area of the lower leg from the knee to the ankle level",
        formula="A = sum over rows y in [y_knee, y_ankle] of (x_right(y) - x_left(y)) * 1 row",
        unit="cm^2", dim=2, group=GROUP),
    "shank_perimeter": FeatureDoc(
        title="Shank outline length",
        measures="length of the left and right outlines from the knee to the ankle (the cut lines excluded)",
        formula="P = sum over both sides and rows of sqrt(1 + (dx/dy)^2)", unit="cm", dim=1, group=GROUP),
    "hull_area": FeatureDoc(
        title="Convex-hull area",
        measures="area of the convex hull of the shank polygon",
        formula="A_hull = area(convex hull(outline polygon))", unit="cm^2", dim=2, group=GROUP),
    "solidity": FeatureDoc(
        title="Solidity",
        measures="how convex the shank is (1: convex, lower: concave outline, e.g. a slim ankle under a bulging calf)",
        formula="A_polygon / A_hull", unit="1", dim=0, group=GROUP),
    "compactness": FeatureDoc(
        title="Compactness",
        measures="area relative to a rectangle of the same length and maximum width",
        formula="A / (L * max width)", unit="1", dim=0, group=GROUP),
}


def shank_polygon(geom: LegGeometry) -> np.ndarray:
    """The shank outline as a closed ``(N, 2)`` polygon of (x, y) in the upright frame, px."""
    rows = geom.shank_rows()
    ok = np.isfinite(geom.left[rows]) & np.isfinite(geom.right[rows])
    rows = rows[ok]
    left = np.stack([geom.left[rows], rows], axis=1)
    right = np.stack([geom.right[rows][::-1], rows[::-1]], axis=1)
    return np.vstack([left, right]).astype(float)


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def compute(geom: LegGeometry) -> dict[str, float]:
    """Shape features of one view, in px units (see :data:`FEATURES`)."""
    import cv2

    rows = geom.shank_rows()
    w = (geom.right - geom.left)[rows]
    area = float(np.nansum(w))
    perim = 0.0
    for side in (geom.left[rows], geom.right[rows]):
        d = np.diff(side[np.isfinite(side)])
        perim += float(np.sum(np.sqrt(1.0 + d * d)))
    poly = shank_polygon(geom)
    poly_area = _polygon_area(poly)
    hull = cv2.convexHull(poly.astype(np.float32)).reshape(-1, 2).astype(float)
    hull_area = _polygon_area(hull)
    wmax = float(np.nanmax(w)) if np.isfinite(w).any() else np.nan
    return {
        "shank_area": area,
        "shank_perimeter": perim,
        "hull_area": hull_area,
        "solidity": poly_area / hull_area if hull_area > 0 else np.nan,
        "compactness": area / (geom.length_px * wmax) if wmax and wmax > 0 else np.nan,
    }
