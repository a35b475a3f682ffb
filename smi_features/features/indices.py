"""Body-size indices: leg dimensions combined with height the way SMI combines mass and height.

SMI = appendicular skeletal muscle mass / height^2. Limb muscle mass grows with the
limbs' cross-sectional area times their length, and limb length with height, so
``ASM ~ c^2 * H`` for a calf circumference ``c`` and ``SMI ~ c^2 / H``. Trees split on
one column at a time and need many splits to build such a product from ``c`` and ``H``
separately; with about a hundred people they cannot, so the products are given as
columns. They need the height, so they belong to the ``covariates`` group and are off
whenever the covariates are (the photo-only arms of the ablation do not see height).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import FeatureDoc

GROUP = "covariates"
VIEWS = "any (with height)"

FEATURES = {
    "idx_calf_circ2_per_height": FeatureDoc(
        "Calf index", "squared calf circumference over height (tracks c^2 H / H^2 = SMI's form)",
        "calf_circumference_cm^2 / height_cm", "cm", 1, GROUP, VIEWS),
    "idx_lat_width2_per_height": FeatureDoc(
        "Lateral calf-depth index", "squared maximum calf width of the lateral view over height",
        "lat_calf_max_width_cm^2 / height_cm", "cm", 1, GROUP, "lateral (with height)"),
    "idx_post_width2_per_height": FeatureDoc(
        "Posterior calf-width index", "squared maximum calf width of the posterior view over height",
        "post_calf_max_width_cm^2 / height_cm", "cm", 1, GROUP, "posterior (with height)"),
    "idx_lat_area_per_height": FeatureDoc(
        "Lateral shank-area index", "lateral shank silhouette area over height: mean width x length / H",
        "lat_shank_area_cm2 / height_cm", "cm", 1, GROUP, "lateral (with height)"),
    "idx_post_area_per_height": FeatureDoc(
        "Posterior shank-area index", "posterior shank silhouette area over height",
        "post_shank_area_cm2 / height_cm", "cm", 1, GROUP, "posterior (with height)"),
    "idx_volume_per_height2": FeatureDoc(
        "Lower-leg volume index", "two-view lower-leg volume over height squared (the form of SMI)",
        "pair_volume_cm3 / (height_cm / 100)^2", "cm^3/m^2", 0, GROUP, "lateral and posterior (with height)"),
}


def compute(table: pd.DataFrame) -> pd.DataFrame:
    """Index columns from a feature table that has the measured columns and ``cov_height_cm``."""
    h = pd.to_numeric(table["cov_height_cm"], errors="coerce").astype(float)
    h = h.where(h > 0)
    out = pd.DataFrame(index=table.index)
    out["idx_calf_circ2_per_height"] = table["calf_circumference_cm"] ** 2 / h
    out["idx_lat_width2_per_height"] = table["lat_calf_max_width_cm"] ** 2 / h
    out["idx_post_width2_per_height"] = table["post_calf_max_width_cm"] ** 2 / h
    out["idx_lat_area_per_height"] = table["lat_shank_area_cm2"] / h
    out["idx_post_area_per_height"] = table["post_shank_area_cm2"] / h
    out["idx_volume_per_height2"] = table["pair_volume_cm3"] / (h / 100.0) ** 2
    return out.astype(float).replace([np.inf, -np.inf], np.nan)
