"""Model names -> factories: every model the benchmark knows, built the same way.

A factory is called as ``factory(random_state=seed, **overrides)`` and returns an
unfitted scikit-learn regressor that takes the sample table. Families are imported
only when a model of theirs is built, so importing this module stays cheap.

=============  ==========  ================================================================
name           family      what it is
=============  ==========  ================================================================
mean           baseline    training-fold mean SMI for everyone                      photo
covariates     baseline    linear regression on sex, age, height (+ weight)          basic, weight
tape           baseline    calf circumference from the photos, one line per sex      basic
xgb-features   features    leg dimensions from the silhouette -> XGBoost             photo, basic, weight
cnn-paper      deep        the study's CNN on Canny-edge images (smi_deep)           photo, basic, weight
cnn-lite       deep        a smaller, faster CNN for CPUs (smi_deep)                 photo, basic, weight
cnn-hybrid     deep        ridge on the covariates + cnn-lite on its residual        basic, weight
cnn-geo        deep        trunk pretrained on leg geometry + a head per fold        photo, basic, weight
=============  ==========  ================================================================

The last column is the information tiers (:mod:`smi_data.tiers`) a model runs at: what
it is told besides the photos. ``ModelSpec.tier_params(tier)`` gives the parameters
that set a model up for a tier; the harness also drops every column the tier does not
give (:func:`smi_data.tiers.restrict_to_tier`), so a model cannot see more than its tier
whatever its parameters say. A new model (a pretrained CNN, say) slots in with a
``ModelSpec`` naming its tiers and a ``tier_params`` function.

``cheap`` models are also run on the ``both`` view (one sample per person, both
photos) in the default benchmark; the CNNs run on ``lateral`` and ``posterior``, the
study's two views, so the quick start stays within its time budget on 2 cores.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable
from smi_data.errors import LegsmiError

#: The default model list of ``legsmi benchmark``: the baselines, the features model, the study's
#: CNN (the reproduction) and cnn-geo (ours). cnn-lite and cnn-hybrid run when named (``--models``).
DEFAULT_MODELS = ("mean", "covariates", "tape", "xgb-features", "cnn-paper", "cnn-geo")


class ModelUnavailableError(LegsmiError, RuntimeError):
    """A named model whose implementation cannot be imported here."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model.

    Attributes
    ----------
    name : str
    family : str
        ``baseline``, ``features`` or ``deep``: the value of ``family`` in model.json.
    factory : callable
        ``factory(random_state=int, **overrides) -> estimator``.
    description : str
    cheap : bool
        True if a fold takes well under a second or two; cheap models also run on
        the ``both`` view and at every tier by default.
    views : tuple of str
        Views the model accepts.
    tiers : tuple of str
        Information tiers the model runs at (:mod:`smi_data.tiers`), narrowest first;
        default ``('weight',)``: a model that declares none is given every covariate.
    tier_setup : callable or None
        ``tier -> {param: value}``: how the model is set up for a tier.
    interval_scheme : str or None
        The family whose conformal scheme (:data:`benchmarks.calibration.SCHEMES`) calibrates
        the model's intervals; default its own ``family``. A deep model whose fold costs
        well under a second (``cnn-geo``'s ridge head) affords cross-conformal refits, so
        its point estimate comes from the whole training fold, as the features model's does.
    """

    name: str
    family: str
    factory: Callable[..., Any]
    description: str = ""
    cheap: bool = True
    views: tuple[str, ...] = ("lateral", "posterior", "both")
    defaults: dict = field(default_factory=dict)
    tiers: tuple[str, ...] = ("weight",)
    tier_setup: Callable[[str], dict] | None = None
    interval_scheme: str | None = None

    @property
    def calibration_family(self) -> str:
        return self.interval_scheme or self.family

    def tier_params(self, tier: str) -> dict:
        """Parameters that set the model up for ``tier`` (empty for a model with one setting)."""
        if tier not in self.tiers:
            raise KeyError(f"model {self.name!r} does not run at tier {tier!r}; its tiers: {', '.join(self.tiers)}")
        return dict(self.tier_setup(tier)) if self.tier_setup else {}

    def build(self, random_state: int = 0, tier: str | None = None, **overrides):
        """An unfitted estimator with ``random_state``, set up for ``tier``, with the given overrides.

        ``tier=None`` builds the model with its own defaults (no tier set-up). Overrides named the
        scikit-learn way (``outer__inner``) are set on the nested estimator after construction.
        """
        params = {**self.defaults, **(self.tier_params(tier) if tier else {}), **overrides}
        nested = {k: params.pop(k) for k in [k for k in params if "__" in k]}  # scikit-learn 'outer__inner'
        est = self.factory(random_state=int(random_state), **params)
        return est.set_params(**nested) if nested else est


# --------------------------------------------------------------------------- factories
def _mean(random_state: int = 0, **overrides):
    from .baselines import MeanRegressor

    return MeanRegressor(**overrides)


def _covariates(random_state: int = 0, **overrides):
    from .baselines import CovariatesRegressor

    return CovariatesRegressor(**overrides)


def _tape(random_state: int = 0, **overrides):
    from .baselines import TapeRegressor

    return TapeRegressor(**overrides)


def _import(module: str, what: str):
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        hint = ("XGBoost comes from an extra: pip install -e '.[cpu]' (CPU-only wheel) or '.[gpu]'"
                if getattr(exc, "name", "") == "xgboost"
                else "install legsmi with its model families (pip install -e .)")
        raise ModelUnavailableError(f"{module} cannot be imported ({exc}); {hint}") from None
    try:
        return getattr(mod, what)
    except AttributeError as exc:
        raise ModelUnavailableError(f"{module} has no {what} ({exc}); this legsmi checkout lacks that model") from None


def _xgb_features(random_state: int = 0, **overrides):
    cls = _import("smi_features.estimators", "XGBFeaturesRegressor")
    return cls(random_state=random_state, **overrides)


def _cnn(variant: str):
    def factory(random_state: int = 0, **overrides):
        make = _import("smi_deep.regressor", "make_cnn")
        return make(variant, random_state=random_state, **overrides)

    factory.__name__ = f"_{variant.replace('-', '_')}"
    return factory


def _cnn_geo(random_state: int = 0, **overrides):
    make = _import("smi_deep.geo", "make_geo")
    return make(random_state=random_state, **overrides)


def _cnn_hybrid(random_state: int = 0, **overrides):
    make = _import("smi_deep.hybrid", "make_hybrid")
    return make(random_state=random_state, **overrides)


ALL_TIERS = ("photo", "basic", "weight")


def _covariates_tier(tier: str) -> dict:
    return {"use_weight": tier == "weight"}


def _features_tier(tier: str) -> dict:
    return {"tier": tier}


def _cnn_tier(tier: str) -> dict:
    return {"covariates": False if tier == "photo" else tier}


def _hybrid_tier(tier: str) -> dict:
    return {"use_weight": tier == "weight"}


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("mean", "baseline", _mean, "training-fold mean for everyone", tiers=("photo",)),
        ModelSpec("covariates", "baseline", _covariates, "linear regression on sex, age, height (+ weight)",
                  tiers=("basic", "weight"), tier_setup=_covariates_tier),
        ModelSpec("tape", "baseline", _tape, "calf circumference from the photos, a line per sex",
                  tiers=("basic",)),
        ModelSpec("xgb-features", "features", _xgb_features, "silhouette dimensions -> XGBoost",
                  tiers=ALL_TIERS, tier_setup=_features_tier),
        ModelSpec("cnn-paper", "deep", _cnn("cnn-paper"), "the study's CNN on Canny edges", cheap=False,
                  tiers=ALL_TIERS, tier_setup=_cnn_tier),
        ModelSpec("cnn-lite", "deep", _cnn("cnn-lite"), "a small CNN for CPUs", cheap=False,
                  tiers=ALL_TIERS, tier_setup=_cnn_tier),
        ModelSpec("cnn-hybrid", "deep", _cnn_hybrid, "ridge on covariates + cnn-lite on its residual",
                  cheap=False, tiers=("basic", "weight"), tier_setup=_hybrid_tier),
        # cheap: the frozen trunk runs once per photo (cached), a fold fits only the ridge head
        ModelSpec("cnn-geo", "deep", _cnn_geo, "CNN pretrained on leg geometry, a ridge head per fold",
                  tiers=ALL_TIERS, tier_setup=_cnn_tier, interval_scheme="features"),
    )
}


def model_names() -> list[str]:
    return list(MODELS)


def get_spec(name: str, extra: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """The :class:`ModelSpec` called ``name`` (``extra`` specs first), or a clear KeyError."""
    table = {**MODELS, **(extra or {})}
    if name not in table:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(table)}")
    return table[name]


def make_model(name: str, random_state: int = 0, **overrides):
    """Build the unfitted estimator called ``name``."""
    return get_spec(name).build(random_state, **overrides)


def check_available(names, extra: dict[str, ModelSpec] | None = None) -> dict[str, str]:
    """``{name: reason}`` for each named model that cannot be built here (empty if all can)."""
    problems = {}
    for name in names:
        try:
            get_spec(name, extra).build(0)
        except (KeyError, ModelUnavailableError) as exc:
            problems[name] = str(exc).strip("'\"")
    return problems


_LOADERS = {
    "baseline": ("benchmarks.baselines", "load_model"),
    "features": ("smi_features.modelio", "load_model"),
    "deep": ("smi_deep.modelio", "load_model"),
}


def load_any_model(model_dir: str | os.PathLike):
    """Load a fitted model from a model folder, whatever its family.

    Reads and checks ``model.json`` (format, version), then hands the folder to the
    family's ``load_model``, which checks its own metadata again.

    Raises
    ------
    smi_data.modelfile.ModelFileError
        Not a legsmi model folder, or a family this legsmi does not know.
    """
    from smi_data.modelfile import ModelFileError, read_model_meta

    meta = read_model_meta(model_dir)
    family = meta.get("family")
    if family not in _LOADERS:
        raise ModelFileError(f"{model_dir}/model.json: unknown model family {family!r}; "
                             f"known families: {', '.join(_LOADERS)}")
    module, func = _LOADERS[family]
    try:
        loader = _import(module, func)
    except ModelUnavailableError as exc:
        raise ModelFileError(f"{model_dir}: cannot load a {family} model: {exc}") from None
    return loader(model_dir)
