"""Covariates: what is known about the person besides the photos.

They enter the regressor as explicit columns and can be switched off
(``use_covariates=False`` or leaving ``"covariates"`` out of ``feature_groups``) to
measure what the photos alone carry. Missing values stay NaN (XGBoost routes them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import FeatureDoc

GROUP = "covariates"
VIEWS = "none (manifest)"

FEATURES = {
    "cov_sex_male": FeatureDoc("Sex", "sex of the person", "1 if sex == 'M' else 0 (NaN if unknown)", "1", 0,
                               GROUP, VIEWS),
    "cov_age": FeatureDoc("Age", "age of the person", "manifest age", "years", 0, GROUP, VIEWS),
    "cov_height_cm": FeatureDoc("Height", "standing height", "manifest height_cm", "cm", 0, GROUP, VIEWS),
    "cov_weight_kg": FeatureDoc("Weight", "body mass (NaN where the manifest has none)", "manifest weight_kg",
                                "kg", 0, GROUP, VIEWS),
    "cov_bmi": FeatureDoc("Body-mass index", "weight over height squared", "weight_kg / (height_cm / 100)^2",
                          "kg/m^2", 0, GROUP, VIEWS),
}


def compute(samples: pd.DataFrame) -> pd.DataFrame:
    """Covariate columns for a sample table (one row per sample, same index)."""
    out = pd.DataFrame(index=samples.index)
    sex = samples["sex"].astype(str).str.strip().str.upper() if "sex" in samples else pd.Series(np.nan, samples.index)
    out["cov_sex_male"] = np.where(sex == "M", 1.0, np.where(sex == "F", 0.0, np.nan))
    out["cov_age"] = pd.to_numeric(samples.get("age", np.nan), errors="coerce").astype(float)
    out["cov_height_cm"] = pd.to_numeric(samples.get("height_cm", np.nan), errors="coerce").astype(float)
    if "weight_kg" in samples:
        out["cov_weight_kg"] = pd.to_numeric(samples["weight_kg"], errors="coerce").astype(float)
    else:
        out["cov_weight_kg"] = np.nan
    out["cov_bmi"] = out["cov_weight_kg"] / (out["cov_height_cm"] / 100.0) ** 2
    return out
