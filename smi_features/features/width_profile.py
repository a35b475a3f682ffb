"""Width-profile features: how wide the leg is from the knee to the ankle (one view).

The width of a row is the distance between its sub-pixel left and right edges on the
upright silhouette, smoothed along the leg (:class:`.base.LevelSettings`). In a
lateral view this is the leg's front-to-back depth, in a posterior view its
side-to-side width. Relative level ``t``: 0 at the knee, 1 at the ankle.
"""

from __future__ import annotations

import numpy as np

from .base import FeatureDoc, LegGeometry

GROUP = "width"


def level_fractions(n_levels: int) -> np.ndarray:
    """Relative levels of the width profile: ``t_i = i / (n + 1)``, i = 1..n (knee and ankle excluded)."""
    return np.arange(1, n_levels + 1) / (n_levels + 1)


def dense_fractions(n_dense: int) -> np.ndarray:
    """Relative levels of the dense profile: ``t_j = (j + 0.5) / n``, j = 0..n-1."""
    return (np.arange(n_dense) + 0.5) / n_dense


def feature_docs(n_levels: int = 15) -> dict[str, FeatureDoc]:
    docs = {
        f"width_l{i:02d}": FeatureDoc(
            title=f"Width at level {i} of {n_levels}",
            measures=f"leg width at relative level t = {i}/{n_levels + 1} from the knee (0) to the ankle (1)",
            formula="w(t) = x_right(y(t)) - x_left(y(t)), y(t) = y_knee + t (y_ankle - y_knee), smoothed along the leg",
            unit="cm", dim=1, group=GROUP)
        for i in range(1, n_levels + 1)
    }
    docs.update({
        "calf_max_width": FeatureDoc(
            title="Maximum calf width",
            measures="largest width within the calf-search band (see features.base)",
            formula="max over t in calf_band of w(t)", unit="cm", dim=1, group=GROUP),
        "calf_max_level_frac": FeatureDoc(
            title="Relative height of the maximum calf width",
            measures="where the widest calf row lies between knee (0) and ankle (1)",
            formula="argmax over t in calf_band of w(t)", unit="1 (fraction of knee-to-ankle length)", dim=0,
            group=GROUP),
        "knee_width": FeatureDoc(
            title="Width below the knee",
            measures="width at t = 0.05, just below the knee level",
            formula="w(0.05)", unit="cm", dim=1, group=GROUP),
        "ankle_min_width": FeatureDoc(
            title="Minimum ankle width",
            measures="narrowest width of the lower shank",
            formula="min over t in ankle_search of w(t)", unit="cm", dim=1, group=GROUP),
        "calf_ankle_ratio": FeatureDoc(
            title="Calf-to-ankle width ratio",
            measures="how much the calf bulges over the ankle (muscular legs high, columnar legs low)",
            formula="calf_max_width / ankle_min_width", unit="1", dim=0, group=GROUP),
        "calf_knee_ratio": FeatureDoc(
            title="Calf-to-knee width ratio",
            measures="calf bulge relative to the knee",
            formula="calf_max_width / knee_width", unit="1", dim=0, group=GROUP),
        "knee_ankle_length": FeatureDoc(
            title="Knee-to-ankle length",
            measures="vertical distance from the knee level to the ankle level on the upright silhouette",
            formula="y_ankle - y_knee", unit="cm", dim=1, group=GROUP),
        "mean_width": FeatureDoc(
            title="Mean shank width",
            measures="average width from the knee to the ankle",
            formula="(1/L) sum over rows from knee to ankle of w(y)", unit="cm", dim=1, group=GROUP),
    })
    return docs


FEATURES = feature_docs()


def calf_maximum(geom: LegGeometry) -> tuple[float, float, float]:
    """``(width_px, t, row)`` of the widest smoothed row within the calf-search band."""
    t0, t1 = geom.settings.calf_band
    y0, y1 = geom.y_at(t0), geom.y_at(t1)
    rows = np.arange(int(np.ceil(y0)), int(np.floor(y1)) + 1)
    rows = rows[(rows >= 0) & (rows < geom.width_s.size)]
    w = geom.width_s[rows]
    if rows.size == 0 or not np.isfinite(w).any():
        return np.nan, np.nan, np.nan
    j = int(np.nanargmax(w))
    # Sub-row peak by a parabola through the maximum and its neighbours (interior only).
    y = float(rows[j])
    wmax = float(w[j])
    if 0 < j < len(w) - 1 and np.isfinite(w[j - 1]) and np.isfinite(w[j + 1]):
        den = w[j - 1] - 2 * w[j] + w[j + 1]
        if den < 0:
            off = 0.5 * (w[j - 1] - w[j + 1]) / den
            y += off
            wmax = float(w[j] - 0.25 * (w[j - 1] - w[j + 1]) * off)
    return wmax, (y - geom.knee_y) / geom.length_px, y


def compute(geom: LegGeometry) -> dict[str, float]:
    """Width-profile features of one view, in px (see :data:`FEATURES` for units after scaling)."""
    n = geom.settings.n_levels
    out: dict[str, float] = {}
    widths = geom.sample(geom.width_s, level_fractions(n))
    for i, w in enumerate(widths, start=1):
        out[f"width_l{i:02d}"] = float(w)
    wmax, tmax, _ = calf_maximum(geom)
    a0, a1 = geom.settings.ankle_search
    ys = np.arange(int(np.ceil(geom.y_at(a0))), int(np.floor(geom.y_at(a1))) + 1)
    ys = ys[(ys >= 0) & (ys < geom.width_s.size)]
    wa = geom.width_s[ys]
    ankle = float(np.nanmin(wa)) if ys.size and np.isfinite(wa).any() else np.nan
    knee = float(geom.sample(geom.width_s, 0.05))
    out["calf_max_width"] = wmax
    out["calf_max_level_frac"] = tmax
    out["knee_width"] = knee
    out["ankle_min_width"] = ankle
    out["calf_ankle_ratio"] = wmax / ankle if ankle > 0 else np.nan
    out["calf_knee_ratio"] = wmax / knee if knee > 0 else np.nan
    out["knee_ankle_length"] = geom.length_px
    rows = geom.shank_rows()
    out["mean_width"] = float(np.nanmean(geom.width_s[rows])) if rows.size else np.nan
    return out


def dense_profile(geom: LegGeometry) -> np.ndarray:
    """Widths at :func:`dense_fractions` levels, px (for the paired two-view features)."""
    return geom.sample(geom.width_s, dense_fractions(geom.settings.n_dense))
