"""Covariates: what is known about the person besides the photos.

They enter the regressor as explicit columns and can be switched off
(``use_covariates=False`` or leaving ``"covariates"`` out of ``feature_groups``) to
measure what the photos alone carry. Missing values stay NaN (XGBoost routes them).
BMI is not a column: it is a function of weight and height, and an input that is a
function of others splits one effect between them in the SHAP values.
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
}


def compute(samples: pd.DataFrame) -> pd.DataFrame:
    """Covariate columns for a sample table (one row per sample, same index); NaN where a column is absent."""
    out = pd.DataFrame(index=samples.index)

    def numeric(name: str) -> pd.Series:
        if name not in samples:
            return pd.Series(np.nan, index=samples.index, dtype=float)
        return pd.to_numeric(samples[name], errors="coerce").astype(float)

    if "sex" in samples:
        from smi_data.manifest import male_indicator

        out["cov_sex_male"] = male_indicator(samples["sex"])
    else:
        out["cov_sex_male"] = np.nan
    out["cov_age"] = numeric("age")
    out["cov_height_cm"] = numeric("height_cm")
    out["cov_weight_kg"] = numeric("weight_kg")
    return out
