"""smi_features: the light model family.

The upright leg silhouette from the image layer (:mod:`smi_image`, named in
:mod:`.silhouette`), pixels to centimetres
(:mod:`.scale`), documented leg-shape features (:mod:`.features`), a cached, parallel
feature transformer (:mod:`.extractor`), the features model (:mod:`.estimators`: a
scikit-learn regressor on the sample table around a ``Pipeline`` of a column selector and
a log-linear base plus XGBoost on the numeric feature table),
model files (:mod:`.modelio`), SHAP explanations (:mod:`.explain`), annotated photos
(:mod:`.annotate`) and the extraction-speed benchmark (:mod:`.speed`).

The names below load their module on first use, so importing the package stays
light; xgboost, shap and matplotlib are imported inside the functions that use them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "XGBFeaturesRegressor": "estimators",
    "features_pipeline": "estimators",
    "FeatureSelector": "estimators",
    "LogLinearBoostRegressor": "estimators",
    "LegFeatureExtractor": "extractor",
    "sample_features": "extractor",
    "image_features": "extractor",
    "measure_leg": "extractor",
    "save_model": "modelio",
    "load_model": "modelio",
    "shap_summary_plot": "explain",
    "explain_model": "explain",
    "annotate_photo": "annotate",
    "extraction_speed": "speed",
    "FAMILY": "modelio",
    "MODEL_NAME": "modelio",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
