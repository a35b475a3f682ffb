"""Data layer shared by every model family: manifest, images, scale, splits, metrics, run records.

Nothing here imports torch, xgboost or shap; the model families (``smi_features``,
``smi_deep``) build on this package and never import each other.
"""

__version__ = "0.1.0"
