"""smi_deep: the study's CNN on Canny-edge images of the lower leg, as a scikit-learn regressor.

Modules: :mod:`~smi_deep.preprocess` (the image layer's leg mask, crop, grey, Canny, input
modes, crop cache),
:mod:`~smi_deep.transforms` (seeded augmentation), :mod:`~smi_deep.nets` (pure
``nn.Module``s), :mod:`~smi_deep.regressor` (:class:`CNNRegressor`),
:mod:`~smi_deep.modelio` (``save_model`` / ``load_model``), :mod:`~smi_deep.speed`
(training and inference timings), :mod:`~smi_deep.hybrid` (``cnn-hybrid``: a ridge on the
covariates plus a CNN on its residual). torch is imported only by the modules that need it,
so ``import smi_deep`` stays light.
"""

FAMILY = "deep"
MODEL_NAMES = ("cnn-paper", "cnn-lite", "cnn-hybrid")


def __getattr__(name):  # lazy: keep `import smi_deep` free of torch
    if name in ("CNNRegressor", "make_cnn"):
        from . import regressor

        return getattr(regressor, name)
    if name in ("save_model", "load_model"):
        from . import modelio

        return getattr(modelio, name)
    raise AttributeError(f"module 'smi_deep' has no attribute {name!r}")
