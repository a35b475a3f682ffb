"""Model folders of the features family: ``model.json`` + XGBoost's own JSON model file.

Layout of a folder written by :func:`save_model`::

    model.json        legsmi metadata (smi_data.modelfile): family "features", model
                      "xgb-features", the estimator's parameters, the feature list,
                      the extraction settings, the booster's file name and the
                      linear base's coefficients (plain numbers)
    xgb_model.json    the booster in XGBoost's JSON format (Booster.save_model)

Nothing is pickled; :func:`load_model` checks the metadata before it reads the booster
and checks that the booster's feature names match the list in ``model.json``, then
rebuilds the estimator's fitted pipeline (selector, base, booster) from these parts
(:meth:`.estimators.XGBFeaturesRegressor.from_fitted_parts`); the format is the same
as before the estimator became a pipeline, so older folders load.
"""

from __future__ import annotations

import os
from pathlib import Path

from smi_data.modelfile import ModelFileError, check_config_values, read_model_meta, write_model_meta

from .estimators import LogLinearBase, XGBFeaturesRegressor
from .extractor import EXTRACTOR_VERSION, ExtractionSettings
from .features.base import LevelSettings
from .silhouette import SilhouetteSettings

#: ``family`` and ``model`` in model.json (benchmarks.registry dispatches on the family).
FAMILY = "features"
MODEL_NAME = "xgb-features"
BOOSTER_FILE = "xgb_model.json"


def _config(est: XGBFeaturesRegressor) -> dict:
    params = est.get_params(deep=False)
    params["feature_groups"] = list(params["feature_groups"])
    settings = est.extraction_settings()
    params["silhouette_settings"] = settings.silhouette.as_dict()
    params["level_settings"] = settings.levels.as_dict()
    return params


def save_model(estimator: XGBFeaturesRegressor, model_dir: str | os.PathLike, *,
               extra_meta: dict | None = None) -> Path:
    """Write a fitted :class:`XGBFeaturesRegressor` to ``model_dir`` (created if needed).

    Parameters
    ----------
    estimator : XGBFeaturesRegressor
        Fitted.
    model_dir : path-like
        Folder; existing files of the same names are replaced (callers that must not
        overwrite use :func:`smi_data.runs.prepare_output_dir` first).
    extra_meta : dict, keyword-only
        More keys for ``model.json`` (training data, metrics, ...).

    Returns
    -------
    Path
        The folder.
    """
    if not hasattr(estimator, "xgb_"):
        raise ValueError("the estimator is not fitted; fit it before saving")
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{BOOSTER_FILE}.tmp.json"
    estimator.xgb_.get_booster().save_model(str(tmp))
    os.replace(tmp, d / BOOSTER_FILE)
    extra = {
        "weights": BOOSTER_FILE,
        "feature_names": list(estimator.feature_names_),
        "n_train": int(getattr(estimator, "n_train_", 0)),
        "extraction": estimator.extraction_settings().as_dict(),
        "extractor_version": EXTRACTOR_VERSION,
        "linear_base": estimator.base_.to_dict() if getattr(estimator, "base_", None) is not None else None,
    }
    if extra_meta:
        extra.update(extra_meta)
    write_model_meta(d, family=FAMILY, model=MODEL_NAME, config=_config(estimator), extra=extra)
    return d


def load_model(model_dir: str | os.PathLike) -> XGBFeaturesRegressor:
    """Read a folder written by :func:`save_model` and return the fitted estimator.

    Raises
    ------
    smi_data.modelfile.ModelFileError
        Not a legsmi model folder, another family or model, a missing booster file or
        a feature list that does not match the booster.
    """
    import xgboost

    d = Path(model_dir)
    meta = read_model_meta(d, family=FAMILY)
    if meta.get("model") != MODEL_NAME:
        raise ModelFileError(f"{d / 'model.json'}: model {meta.get('model')!r}, expected {MODEL_NAME!r}")
    weights = meta.get("weights", BOOSTER_FILE)
    if Path(weights).name != weights:
        raise ModelFileError(f"{d / 'model.json'}: weights {weights!r} must be a file name inside the model folder")
    booster_path = d / weights
    if not booster_path.is_file():
        raise ModelFileError(f"{d}: no {weights}; the model folder is incomplete, train the model again")
    names = meta.get("feature_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ModelFileError(f"{d / 'model.json'}: feature_names missing or malformed")
    if meta.get("extractor_version") != EXTRACTOR_VERSION:
        raise ModelFileError(
            f"{d / 'model.json'}: features of extractor version {meta.get('extractor_version')!r}, this legsmi "
            f"extracts version {EXTRACTOR_VERSION}; retrain the model")
    cfg = dict(meta.get("config") or {})
    try:
        settings = ExtractionSettings.from_dict(meta.get("extraction"))
    except (AttributeError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{d / 'model.json'}: extraction settings do not match this code ({exc}); "
                             "retrain the model with this legsmi") from None
    for part, default in ((settings.silhouette, SilhouetteSettings()), (settings.levels, LevelSettings())):
        check_config_values(d / "model.json", part.as_dict(), default.as_dict())  # e.g. a number edited into text
    cfg["silhouette_settings"] = settings.silhouette if settings.silhouette != SilhouetteSettings() else None
    cfg["level_settings"] = settings.levels if settings.levels != LevelSettings() else None
    cfg["feature_groups"] = tuple(cfg.get("feature_groups", ()))
    defaults = XGBFeaturesRegressor().get_params()
    unknown = set(cfg) - set(defaults)
    if unknown:
        raise ModelFileError(f"{d / 'model.json'}: unknown parameter(s) {sorted(unknown)} for {MODEL_NAME}")
    check_config_values(d / "model.json", {k: v for k, v in cfg.items() if not k.endswith("_settings")}, defaults)
    model = xgboost.XGBRegressor()
    try:
        model.load_model(str(booster_path))
    except xgboost.core.XGBoostError as exc:
        raise ModelFileError(f"{booster_path}: not a readable XGBoost model ({exc})") from None
    booster_names = model.get_booster().feature_names
    if booster_names is not None and list(booster_names) != names:
        raise ModelFileError(f"{booster_path}: the booster's features do not match model.json's feature_names")
    model.get_booster().feature_names = list(names)
    base = None
    if meta.get("linear_base") is not None:
        try:
            base = LogLinearBase.from_dict(meta["linear_base"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{d / 'model.json'}: linear_base is malformed ({exc})") from None
        if not set(base.columns) <= set(names):
            raise ModelFileError(f"{d / 'model.json'}: linear_base uses columns the model does not have")
    elif cfg.get("linear_base", False):
        raise ModelFileError(f"{d / 'model.json'}: linear_base is switched on but its coefficients are missing")
    est = XGBFeaturesRegressor.from_fitted_parts(cfg, booster=model, base=base, feature_names=names,
                                                 n_train=int(meta.get("n_train", 0)))
    return est
