"""Two-view features: the calf's cross-section from a lateral and a posterior photo of one person.

Both views' dense width profiles (:func:`.width_profile.dense_profile`, in cm) are
sampled at the same relative levels ``t`` (0 knee, 1 ankle). At every level the
cross-section is taken as an ellipse with axes ``d(t)`` (lateral view: front-to-back
depth) and ``w(t)`` (posterior view: side-to-side width). Its perimeter is Ramanujan's
(second) approximation, exact to better than 0.01 % for calf-like ellipses:

``C(a, b) = pi (a + b) (1 + 3h / (10 + sqrt(4 - 3h)))``, ``h = ((a - b) / (a + b))^2``,
``a = d/2``, ``b = w/2``.

Ramanujan S. Modular equations and approximations to pi. Q J Math 1914; 45: 350-372.
"""

from __future__ import annotations

import numpy as np

from .base import FeatureDoc

VIEWS = "lateral and posterior (one person)"

FEATURES = {
    "pair_calf_circ": FeatureDoc(
        title="Calf circumference (ellipse)",
        measures="largest circumference of the elliptical cross-section within the calf-search band: "
                 "what a tape measure around the calf reads",
        formula="max over t in calf_band of C(d(t)/2, w(t)/2) (Ramanujan)", unit="cm", dim=1, group="width",
        views=VIEWS),
    "pair_calf_depth": FeatureDoc(
        title="Calf depth at the circumference level",
        measures="lateral view's front-to-back width where the circumference is largest",
        formula="d(t*)", unit="cm", dim=1, group="width", views=VIEWS),
    "pair_calf_width": FeatureDoc(
        title="Calf width at the circumference level",
        measures="posterior view's side-to-side width where the circumference is largest",
        formula="w(t*)", unit="cm", dim=1, group="width", views=VIEWS),
    "pair_calf_axis_ratio": FeatureDoc(
        title="Cross-section axis ratio",
        measures="shape of the calf's cross-section (depth over width)",
        formula="d(t*) / w(t*)", unit="1", dim=0, group="width", views=VIEWS),
    "pair_ankle_circ": FeatureDoc(
        title="Ankle circumference (ellipse)",
        measures="smallest elliptical circumference in the lowest fifth of the shank",
        formula="min over t in [0.8, 1] of C(d(t)/2, w(t)/2)", unit="cm", dim=1, group="width", views=VIEWS),
    "pair_calf_ankle_circ_ratio": FeatureDoc(
        title="Calf-to-ankle circumference ratio",
        measures="calf bulge over the ankle in circumference (tracks muscularity at equal volume)",
        formula="pair_calf_circ / pair_ankle_circ", unit="1", dim=0, group="width", views=VIEWS),
    "pair_volume": FeatureDoc(
        title="Lower-leg volume (stacked elliptical slices)",
        measures="volume of the shank from the knee to the ankle level",
        formula="V = sum over levels of (pi/4) d(t) w(t) dz, dz = L / n_dense, L = mean of both views' "
                "knee-to-ankle lengths", unit="cm^3", dim=3, group="area", views=VIEWS),
}


def ramanujan_perimeter(a, b) -> np.ndarray:
    """Perimeter of an ellipse with semi-axes ``a`` and ``b`` (Ramanujan's second formula), same unit."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    s = a + b
    h = np.where(s > 0, ((a - b) / np.where(s > 0, s, 1.0)) ** 2, 0.0)
    return np.pi * s * (1.0 + 3.0 * h / (10.0 + np.sqrt(4.0 - 3.0 * h)))


def compute(depth_cm: np.ndarray, width_cm: np.ndarray, t: np.ndarray, length_lat_cm: float,
            length_post_cm: float, calf_band: tuple) -> dict[str, float]:
    """Paired features from the two views' dense profiles, already in cm.

    Parameters
    ----------
    depth_cm, width_cm : ndarray, (n,)
        Lateral depth ``d(t)`` and posterior width ``w(t)`` at relative levels ``t``, cm.
    t : ndarray, (n,)
        The levels (0 knee, 1 ankle).
    length_lat_cm, length_post_cm : float
        Knee-to-ankle length measured in each view, cm.
    calf_band : (float, float)
        Relative levels searched for the largest circumference.
    """
    circ = ramanujan_perimeter(depth_cm / 2.0, width_cm / 2.0)
    band = (t >= calf_band[0]) & (t <= calf_band[1]) & np.isfinite(circ)
    low = (t >= 0.8) & np.isfinite(circ)
    out = {name: np.nan for name in FEATURES}
    if band.any():
        j = np.flatnonzero(band)[np.argmax(circ[band])]
        out.update(pair_calf_circ=float(circ[j]), pair_calf_depth=float(depth_cm[j]),
                   pair_calf_width=float(width_cm[j]),
                   pair_calf_axis_ratio=float(depth_cm[j] / width_cm[j]) if width_cm[j] > 0 else np.nan)
    if low.any():
        out["pair_ankle_circ"] = float(np.min(circ[low]))
        if np.isfinite(out["pair_calf_circ"]) and out["pair_ankle_circ"] > 0:
            out["pair_calf_ankle_circ_ratio"] = out["pair_calf_circ"] / out["pair_ankle_circ"]
    lengths = [v for v in (length_lat_cm, length_post_cm) if np.isfinite(v)]
    ok = np.isfinite(depth_cm) & np.isfinite(width_cm)
    if lengths and ok.all():
        dz = float(np.mean(lengths)) / len(t)
        out["pair_volume"] = float(np.sum(np.pi / 4.0 * depth_cm * width_cm) * dz)
    return out
