"""Save and load a trained CNNRegressor: ``weights.pt`` (a state_dict) + ``model.json``, never a pickle.

``model.json`` (written by :func:`smi_data.modelfile.write_model_meta`, family
``"deep"``) holds the estimator's parameters under ``config`` and, under ``deep``,
everything needed to rebuild the network and its inputs: the architecture, the views,
the crop and channel settings, the input normalisation, the covariate and target
scaling, a training summary, and the SHA-256 of ``weights.pt``.

Loading checks, in order: the common header (format, version, family); the deep
format version; that every parameter and setting is one this code knows; the weights'
checksum; then ``torch.load(..., weights_only=True)`` (no code in the file is ever
run) and a strict ``load_state_dict``. Anything that does not match is refused with a
:class:`smi_data.modelfile.ModelFileError` that says what was found and what to do.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from smi_data.modelfile import META_NAME, ModelFileError, check_config_values, read_model_meta, write_model_meta
from smi_data.runs import OutputExistsError, atomic_write_bytes

from . import FAMILY

WEIGHTS_NAME = "weights.pt"
#: Layout of the ``deep`` section of model.json; bump when it changes incompatibly.
DEEP_FORMAT_VERSION = 1


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def save_model(estimator, model_dir: str | os.PathLike, *, extra_meta: dict | None = None,
               overwrite: bool = False) -> Path:
    """Write a fitted :class:`~smi_deep.regressor.CNNRegressor` to ``model_dir``.

    Parameters
    ----------
    estimator : CNNRegressor
        Fitted.
    model_dir : path-like
        Folder to write ``weights.pt`` and ``model.json`` into (created if needed).
    extra_meta : dict, optional, keyword-only
        Added to model.json at the top level (e.g. the dataset and view it was trained on).
    overwrite : bool, keyword-only
        Replace an existing model in ``model_dir``; without it an existing one is refused.

    Returns
    -------
    Path
        ``model_dir``.
    """
    import torch

    if getattr(estimator, "model_name", None) == "cnn-geo":  # a head over the committed trunks: model.json only
        from .geo import save_geo_model

        return save_geo_model(estimator, model_dir, extra_meta=extra_meta, overwrite=overwrite)
    estimator._check_fitted()
    d = Path(model_dir)
    for name in (WEIGHTS_NAME, META_NAME):
        if (d / name).exists() and not overwrite:
            raise OutputExistsError(f"{d / name}: exists; pass overwrite=True (--overwrite) or choose another folder")
    state = {k: v.detach().to("cpu").clone() for k, v in estimator.net_.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    deep = {
        "deep_format_version": DEEP_FORMAT_VERSION,
        "architecture": {"class": "VGGRegressor", "in_channels": int(estimator.in_channels_),
                         "n_covariates": int(estimator.n_covariates_), **_jsonable(estimator.arch_)},
        "views": list(estimator.views_),
        "input": {"crop": dict(estimator.crop_settings_), "channels": dict(estimator.channel_settings_),
                  "augment": estimator.augment_settings_},
        "normalisation": {"input_mean": _jsonable(np.asarray(estimator.input_mean_, float)),
                          "input_std": _jsonable(np.asarray(estimator.input_std_, float))},
        "target_scaling": {"mean": float(estimator.y_mean_), "std": float(estimator.y_std_), "unit": "kg/m^2"},
        "covariates": None if estimator.cov_mean_ is None else {
            "names": ["sex (M=1, F=0)", "age", "height_cm"],
            "mean": _jsonable(np.asarray(estimator.cov_mean_, float)),
            "std": _jsonable(np.asarray(estimator.cov_std_, float))},
        "training": {"n_train": int(estimator.n_train_), "epochs_run": len(estimator.history_),
                     "best_epoch": int(estimator.best_epoch_), "device": estimator.device_,
                     "fit_seconds": round(float(estimator.fit_seconds_), 3),
                     "final_train_loss": float(estimator.history_[-1]["train_loss"]),
                     "n_failures": len(estimator.failures_)},
        "weights": {"file": WEIGHTS_NAME, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
    }
    if hasattr(estimator, "hybrid_meta"):  # cnn-hybrid: the ridge under the CNN, as plain numbers
        deep["hybrid"] = estimator.hybrid_meta()
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(d / WEIGHTS_NAME, data)
    write_model_meta(d, family=FAMILY, model=getattr(estimator, "model_name", estimator.variant),
                     config=_jsonable(estimator.get_params()), extra={**(extra_meta or {}), "deep": deep})
    return d


def load_model(model_dir: str | os.PathLike, *, device: str = "cpu"):
    """Load a model folder written by :func:`save_model`; refuse anything that does not match this code.

    Parameters
    ----------
    model_dir : path-like
    device : str, keyword-only
        Where to put the network (``'cpu'`` default; ``'auto'`` picks CUDA, MPS, CPU).

    Returns
    -------
    CNNRegressor
        Fitted, ready to ``predict``.

    Raises
    ------
    ModelFileError
        Not a deep legsmi model, another deep format version, unknown parameters or
        settings, a damaged or altered ``weights.pt``, or weights that do not fit the
        architecture described in model.json.
    """
    import torch

    from .nets import VARIANTS, VGGRegressor
    from .preprocess import ChannelSettings, CropSettings
    from .hybrid import MODEL_NAME as HYBRID_NAME
    from .hybrid import HybridCNNRegressor
    from .regressor import CNNRegressor, resolve_device

    d = Path(model_dir)
    meta = read_model_meta(d, family=FAMILY)
    where = d / META_NAME
    if meta.get("model") == "cnn-geo":
        from .geo import load_geo_model

        return load_geo_model(d, meta)
    deep = meta.get("deep")
    if not isinstance(deep, dict):
        raise ModelFileError(f"{where}: no 'deep' section; the file was not written by smi_deep.save_model")
    if deep.get("deep_format_version") != DEEP_FORMAT_VERSION:
        raise ModelFileError(f"{where}: deep model format version {deep.get('deep_format_version')!r}, this code "
                             f"reads version {DEEP_FORMAT_VERSION}; retrain the model with this legsmi or use "
                             "the legsmi that wrote it")
    hybrid = meta.get("model") == HYBRID_NAME
    if not hybrid and meta.get("model") not in VARIANTS:
        raise ModelFileError(f"{where}: model {meta.get('model')!r} is not a CNN this code knows "
                             f"({', '.join((*VARIANTS, HYBRID_NAME))})")
    if hybrid != isinstance(deep.get("hybrid"), dict):
        raise ModelFileError(f"{where}: model {meta.get('model')!r} and the 'hybrid' section do not go together; "
                             "the file was altered or written by another version; retrain it")
    cls = HybridCNNRegressor if hybrid else CNNRegressor
    config = meta.get("config") or {}
    defaults = cls().get_params()
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ModelFileError(f"{where}: parameter(s) {', '.join(unknown)} unknown to this smi_deep; the model was "
                             "written by a different version; retrain it or use the matching legsmi")
    check_config_values(where, config, defaults)
    try:
        est = cls(**config)
        if hybrid:
            est.set_hybrid_meta(deep["hybrid"])
        check_config_values(where, deep["input"]["crop"], CropSettings().to_dict())
        check_config_values(where, deep["input"]["channels"], ChannelSettings().to_dict())
        crop = CropSettings(**deep["input"]["crop"])
        channels = ChannelSettings(**deep["input"]["channels"])
        arch = dict(deep["architecture"])
        if arch.pop("class", None) != "VGGRegressor":
            raise ModelFileError(f"{where}: architecture class is not VGGRegressor")
        in_channels = int(arch.pop("in_channels"))
        n_cov = int(arch.pop("n_covariates"))
        net = VGGRegressor(in_channels, n_covariates=n_cov, **arch)
        mean = np.asarray(deep["normalisation"]["input_mean"], float)
        std = np.asarray(deep["normalisation"]["input_std"], float)
        views = tuple(deep["views"])
        y_mean, y_std = float(deep["target_scaling"]["mean"]), float(deep["target_scaling"]["std"])
        cov = deep.get("covariates")
        weights = deep["weights"]
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: model settings do not match this code ({type(exc).__name__}: {exc}); "
                             "the model was written by a different version of smi_deep; retrain it") from None
    if mean.shape != (in_channels,) or std.shape != (in_channels,):
        raise ModelFileError(f"{where}: input normalisation has {mean.size} channel(s), the network {in_channels}")
    if in_channels != channels.n_channels * len(views):
        raise ModelFileError(f"{where}: {in_channels} input channels, but mode {channels.mode!r} with "
                             f"{len(views)} view(s) gives {channels.n_channels * len(views)}")
    if crop.size != int(arch.get("image_size", crop.size)):
        raise ModelFileError(f"{where}: crop size {crop.size} != network input size {arch.get('image_size')}")
    if not isinstance(weights, dict) or weights.get("file", WEIGHTS_NAME) != WEIGHTS_NAME:
        raise ModelFileError(f"{where}: weights must be the file {WEIGHTS_NAME!r} inside the model folder; "
                             "the file was altered or written by another version; retrain it")
    wpath = d / WEIGHTS_NAME
    if not wpath.is_file():
        raise ModelFileError(f"{d}: no {WEIGHTS_NAME} next to model.json; the model folder is incomplete")
    data = wpath.read_bytes()
    if hashlib.sha256(data).hexdigest() != weights.get("sha256"):
        raise ModelFileError(f"{wpath}: checksum does not match model.json; the weights were changed or damaged "
                             "after saving; copy the model folder again")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors of every kind when the file is not a plain state_dict
        raise ModelFileError(f"{wpath}: cannot be read as a plain state_dict ({exc})") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{wpath}: weights do not fit the architecture in model.json ({exc})") from None
    net.to(resolve_device(device)).eval()
    est.net_ = net
    est.arch_ = {k: (tuple(v) if isinstance(v, list) else v) for k, v in arch.items()}
    est.in_channels_, est.n_covariates_ = in_channels, n_cov
    est.views_ = views
    est.image_size_ = crop.size
    est.crop_settings_, est.channel_settings_ = crop.to_dict(), channels.to_dict()
    est.augment_settings_ = deep["input"].get("augment")
    est.input_mean_, est.input_std_ = mean, std
    est.y_mean_, est.y_std_ = y_mean, y_std
    if cov is None:
        est.cov_mean_ = est.cov_std_ = None
    else:
        est.cov_mean_, est.cov_std_ = np.asarray(cov["mean"], float), np.asarray(cov["std"], float)
    training = deep.get("training", {})
    est.history_ = []
    est.best_epoch_ = training.get("best_epoch")
    est.n_train_ = training.get("n_train")
    est.device_ = str(resolve_device(device))
    est.fit_seconds_ = training.get("fit_seconds")
    est.failures_ = {}
    est.model_meta_ = meta
    return est
