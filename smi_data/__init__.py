"""Data layer shared by every model family: manifest, images, scale, splits, metrics, run records.

Nothing here imports torch, xgboost or shap; the model families (``smi_features``,
``smi_deep``) build on this package and never import each other.
"""

from importlib.metadata import PackageNotFoundError, version

try:  # the one version string: pyproject.toml's, as installed
    __version__ = version("legsmi")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
