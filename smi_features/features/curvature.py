"""Curvature of the calf's outline (one view).

Each side's outline ``x(y)`` between the knee and the ankle is smoothed along the leg
(Gaussian, sigma = ``SMOOTH_FRAC`` of the knee-to-ankle length: pixel steps would
otherwise dominate), and its signed curvature is
``kappa(y) = x''(y) / (1 + x'(y)^2)^(3/2)``. The features pool both sides over the
relative levels ``t`` in ``BAND`` (the ends are left out, where smoothing meets the cut
lines). A mirrored photo swaps the sides and flips the sign, so the features, built from
``|kappa|`` and ``kappa^2``, do not change.
"""

from __future__ import annotations

import numpy as np

from .base import FeatureDoc, LegGeometry, gaussian_smooth

GROUP = "curvature"
SMOOTH_FRAC = 0.03
BAND = (0.05, 0.95)

FEATURES = {
    "curv_mean": FeatureDoc(
        title="Mean absolute curvature",
        measures="how strongly the outline bends on average (bulging calves bend more)",
        formula="mean over both sides and rows of |kappa|, kappa = x'' / (1 + x'^2)^(3/2)",
        unit="1/cm", dim=-1, group=GROUP),
    "curv_max": FeatureDoc(
        title="Maximum absolute curvature",
        measures="the sharpest bend of the outline (calf bulge or the taper to the Achilles tendon)",
        formula="max over both sides and rows of |kappa|", unit="1/cm", dim=-1, group=GROUP),
    "bending_energy": FeatureDoc(
        title="Bending energy",
        measures="mean squared curvature along the outline, per unit outline length",
        formula="E = (sum kappa^2 ds) / (sum ds), ds = sqrt(1 + x'^2) dy", unit="1/cm^2", dim=-2, group=GROUP),
    "calf_convexity": FeatureDoc(
        title="Calf convexity",
        measures="net outward bending of the outline over the calf band (positive: bulging calf, "
                 "near 0: straight taper)",
        formula="mean over both sides of the outward-signed curvature, t in [0.1, 0.6]",
        unit="1/cm", dim=-1, group=GROUP),
}


def compute(geom: LegGeometry) -> dict[str, float]:
    """Curvature features of one view, in px units (see :data:`FEATURES`)."""
    sigma = max(SMOOTH_FRAC * geom.length_px, 1.0)
    y0, y1 = geom.y_at(BAND[0]), geom.y_at(BAND[1])
    c0, c1 = geom.y_at(0.1), geom.y_at(0.6)
    kap_all, ds_all, outward = [], [], []
    for side, sign in ((geom.left, -1.0), (geom.right, 1.0)):
        x = gaussian_smooth(side, sigma)
        d1 = np.gradient(x)
        d2 = np.gradient(d1)
        kappa = d2 / (1.0 + d1 * d1) ** 1.5
        rows = np.arange(x.size)
        sel = (rows >= y0) & (rows <= y1) & np.isfinite(kappa)
        kap_all.append(kappa[sel])
        ds_all.append(np.sqrt(1.0 + d1[sel] ** 2))
        calf = (rows >= c0) & (rows <= c1) & np.isfinite(kappa)
        # Outward bulge: the right edge bulges out when x'' < 0, the left when x'' > 0.
        outward.append(-sign * kappa[calf])
    k = np.concatenate(kap_all)
    ds = np.concatenate(ds_all)
    if k.size == 0:
        return {name: np.nan for name in FEATURES}
    out_k = np.concatenate(outward)
    return {
        "curv_mean": float(np.mean(np.abs(k))),
        "curv_max": float(np.max(np.abs(k))),
        "bending_energy": float(np.sum(k * k * ds) / np.sum(ds)),
        "calf_convexity": float(np.mean(out_k)) if out_k.size else np.nan,
    }
