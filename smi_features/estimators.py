"""The features model: leg-shape features and covariates -> XGBoost -> SMI (kg/m^2).

:class:`XGBFeaturesRegressor` is a scikit-learn regressor on the sample table
(docs/architecture.md): ``fit`` extracts (or reads from the cache) the features of
every image, then fits :func:`features_pipeline` on the numeric feature table of the
samples that could be measured: a ``Pipeline`` of :class:`FeatureSelector` (the columns
of the switched-on feature groups, as numbers) and :class:`LogLinearBoostRegressor`
(the linear base, then an ``xgboost.XGBRegressor`` from its margin). ``predict`` gives
NaN for samples whose images failed; ``predict_with_reasons`` also says why. The two pipeline
steps pass scikit-learn's estimator checks (tests/test_estimator_checks.py).

Feature groups (``feature_groups``), for the ablation "width only; + area;
+ curvature; + covariates":

* ``width``: width profile, maximum calf width and its level, knee and ankle widths and
  ratios, knee-to-ankle length, two-view ellipse circumferences and axes,
  ``calf_circumference_cm``;
* ``area``: shank area, outline length, convex hull, solidity, compactness, two-view volume;
* ``curvature``: mean and maximum curvature, bending energy, calf convexity;
* ``covariates``: sex, age, height, weight and the body-size indices (leg dimension over
  height; also switched off by ``use_covariates=False``).

Information tier (``tier``, :mod:`smi_data.tiers`): ``photo`` leaves the covariates
group out altogether (the indices need the height), ``basic`` leaves out weight, and
``weight`` keeps everything; ``None`` (the default) uses whatever covariates the sample
table holds. With a tier, ``transform_features`` drops the columns the tier does not
give before extraction (the extractor places the knee and ankle from the height when it
has one, so a photo-tier model must not see the height there either); the benchmark
drops them too, before ``fit`` and ``predict``.

No input is a function of another input alone (SHAP would split one effect between
the two, often as large contributions of opposite sign): BMI is not a column (the
linear base's log terms give ``log BMI = log weight - 2 log height`` exactly), and the
tape's ``calf_circumference_cm`` (pi x the calf width of a single view, the ellipse
circumference of both) and its index are left out of the model's inputs
(:data:`NOT_MODEL_INPUTS`); they stay in the feature table.

Linear base (``linear_base=True``, the default): muscle mass follows size laws (mass
~ cross-section x length), which a log-linear model captures from a hundred people
and a hundred trees do not. So a ridge regression of SMI on the logarithms and raw
values of a few core columns (:data:`LINEAR_CORE`: covariates, maximum calf and minimum
ankle widths, the calf's level, knee-to-ankle length, the two-view circumferences
and volume; only those of the switched-on groups) gives each sample a base prediction,
and XGBoost, started from that base (``base_margin``, ``base_score = 0``), learns what it
leaves. Prediction = base + trees. ``linear_base=False`` gives the plain booster.
The base's inputs are clipped to their training range widened by a quarter of it on each
side (``clip_base=True``, :data:`CLIP_MARGIN`): a value far outside it (a mis-segmented
ankle, read as 2 cm where the cohort's narrowest is 4.4 cm) would otherwise run far along
the log terms, which trees never do; a person a little beyond the training people is
still extrapolated. With both views and
covariates the base leaves out the posterior view's own columns and the ankle
circumference (:data:`TWO_VIEW_CORE_LEFT_OUT`): the ellipse circumference and the volume
already hold that view's width.

Repeatability (``feature_set``): ``all`` (the default) uses every feature;
``repeatable`` leaves out the columns that did not repeat between photo sessions of the
same people (:data:`UNREPEATABLE_FEATURES`, chosen on a retake cohort of their own by the
rule ICC(3,1) >= 0.90), so the estimate repeats better and is less accurate.
Measured figures: docs/benchmark.md, docs/intervals.md. Explanations add the base's exact
per-feature contributions to the trees' SHAP values (:mod:`.explain`).

Trees: shallow (depth 2), a slow learning rate and row and column subsampling, for
cohorts of about 100 people (Chen & Guestrin 2016, doi:10.1145/2939672.2939785).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .extractor import ExtractionSettings, sample_features
from .features import GROUPS, all_feature_docs
from .features.covariates import FEATURES as _COVARIATE_DOCS
from .features.base import LevelSettings
from .silhouette import SilhouetteSettings


#: Columns the linear base may use (those present and in the switched-on groups). Not the
#: calf-to-ankle ratio: its log is exactly log calf - log ankle, so beside those two the
#: ridge split one effect into large cancelling parts (SHAP +-1.6 kg/m^2 each at the photo
#: tier); the trees still see the ratio.
LINEAR_CORE = (
    "cov_sex_male", "cov_age", "cov_height_cm", "cov_weight_kg",
    "lat_calf_max_width_cm", "lat_ankle_min_width_cm", "lat_calf_max_level_frac", "lat_knee_ankle_length_cm",
    "post_calf_max_width_cm", "post_ankle_min_width_cm", "post_calf_max_level_frac", "post_knee_ankle_length_cm",
    "pair_calf_circ_cm", "pair_ankle_circ_cm", "pair_volume_cm3",
)
#: Left out of the linear base when the two-view columns and covariates are there (a ``both``
#: model at the basic or weight tier; at the photo tier they stay, it has no other size measure): the
#: posterior view's own core columns (its calf width and length are measured again in the
#: ellipse circumference and the volume, and 2 x 14 terms for about 80 people overfit) and the
#: ankle circumference (it holds the posterior ankle width, the least repeatable measurement:
#: ICC(3,1) 0.31 on repeat photos). Chosen on a retake cohort of its own (docs/benchmark.md).
TWO_VIEW_CORE_LEFT_OUT = ("post_calf_max_width_cm", "post_ankle_min_width_cm", "post_calf_max_level_frac",
                          "post_knee_ankle_length_cm", "pair_ankle_circ_cm")
#: Columns whose test-retest ICC(3,1) was below 0.90 on a retake cohort made for choosing them
#: (``legsmi phantom --subjects 30 --retakes 3 --seed 303``, seeds disjoint from the bundled cohort
#: and from the evaluation retake cohort; weight-tier feature table of both views, see
#: docs/intervals.md). ``feature_set="repeatable"`` leaves them out: the estimate repeats
#: better between photo sessions and is less accurate (the trade is measured in docs/benchmark.md).
UNREPEATABLE_FEATURES = (
    "lat_curv_max_per_cm", "post_curv_max_per_cm", "post_bending_energy_per_cm2", "lat_bending_energy_per_cm2",
    "post_calf_ankle_ratio", "post_width_l15_cm", "lat_curv_mean_per_cm", "post_ankle_min_width_cm",
    "post_width_l14_cm", "post_curv_mean_per_cm", "lat_solidity", "post_solidity", "post_width_l13_cm",
    "lat_calf_ankle_ratio", "post_compactness", "lat_compactness", "pair_calf_ankle_circ_ratio",
    "lat_calf_max_level_frac", "lat_width_l15_cm", "pair_calf_axis_ratio", "lat_width_l14_cm",
    "post_calf_max_level_frac", "post_width_l12_cm", "pair_ankle_circ_cm", "lat_width_l12_cm",
    "lat_shank_perimeter_cm", "lat_calf_knee_ratio", "lat_width_l13_cm", "lat_ankle_min_width_cm",
    "post_hull_area_cm2", "post_shank_perimeter_cm", "lat_calf_convexity_per_cm", "lat_hull_area_cm2",
)
#: ``feature_set`` -> the columns it leaves out.
FEATURE_SETS = {"all": (), "repeatable": UNREPEATABLE_FEATURES}
#: The linear base clips its inputs to the training range widened by this share of it on each side.
CLIP_MARGIN = 0.25
#: Smallest value before the logarithm (binary columns such as sex become log(1e-3) and 0).
LOG_FLOOR = 1e-3
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))
#: Covariate columns of the feature table.
COVARIATE_COLUMNS = tuple(_COVARIATE_DOCS)
#: Feature-table columns that are never model inputs: each duplicates another column
#: (``calf_circumference_cm`` is pi x ``*_calf_max_width_cm`` of a single view, or
#: ``pair_calf_circ_cm`` of both; its index is pi^2 x the width index).
NOT_MODEL_INPUTS = ("calf_circumference_cm", "idx_calf_circ2_per_height")
#: Covariate columns of the feature table each information tier allows (None: all).
TIER_FEATURE_COVARIATES = {"photo": (), "basic": ("cov_sex_male", "cov_age", "cov_height_cm"),
                           "weight": ("cov_sex_male", "cov_age", "cov_height_cm", "cov_weight_kg")}


class LogLinearBase:
    """Ridge regression on ``[x, log(max(x, 1e-3))]`` of a few columns, stored as plain arrays.

    Missing values are replaced by the training median; with ``clip=True`` every value is
    clipped to the training range widened by :data:`CLIP_MARGIN` (``lower_``, ``upper_``);
    the terms are standardised with
    the training mean and SD; the penalty is chosen by RidgeCV's efficient
    leave-one-out over :data:`RIDGE_ALPHAS`. ``to_dict`` / ``from_dict`` make it JSON.
    Because the terms are standardised on the training data, ``coef_k * z_k(x)`` summed
    over a column's two terms is that column's exact SHAP value (training mean as the
    baseline; the terms of one column depend on that column only).
    """

    def __init__(self, columns=(), clip=False):
        self.columns = list(columns)
        self.clip = clip

    def _terms(self, X: np.ndarray) -> np.ndarray:
        X = np.where(np.isfinite(X), X, self.medians_[None, :])
        lo, hi = getattr(self, "lower_", None), getattr(self, "upper_", None)
        if lo is not None:
            # a value outside the training range (a mis-segmented ankle) must not extrapolate the logs
            X = np.clip(X, lo[None, :], hi[None, :])
        return np.column_stack([X, np.log(np.clip(X, LOG_FLOOR, None))])

    def fit(self, X: np.ndarray, y: np.ndarray, scale_X: np.ndarray | None = None) -> "LogLinearBase":
        """Fit the ridge; the medians and standardisation come from ``scale_X`` when given
        (rows other than the training rows: only the leaky-protocol ablation does this)."""
        from sklearn.linear_model import RidgeCV

        X = np.asarray(X, dtype=float)
        S = X if scale_X is None else np.asarray(scale_X, dtype=float)
        med = np.nanmedian(np.where(np.isfinite(S), S, np.nan), axis=0)
        self.medians_ = np.where(np.isfinite(med), med, 0.0)
        self.lower_ = self.upper_ = None
        if self.clip:
            lo = np.nanmin(np.where(np.isfinite(S), S, np.nan), axis=0)
            hi = np.nanmax(np.where(np.isfinite(S), S, np.nan), axis=0)
            # widened by CLIP_MARGIN of the range: a person a little beyond the training people is
            # still extrapolated; a column without a training value was filled with its median
            span = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
            self.lower_ = np.where(np.isfinite(lo), lo - CLIP_MARGIN * span, self.medians_)
            self.upper_ = np.where(np.isfinite(hi), hi + CLIP_MARGIN * span, self.medians_)
        T = self._terms(X)
        TS = T if scale_X is None else self._terms(S)
        self.mean_ = TS.mean(axis=0)
        sd = TS.std(axis=0)
        self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit((T - self.mean_) / self.scale_, y)
        self.coef_ = np.asarray(ridge.coef_, dtype=float)
        self.intercept_ = float(ridge.intercept_)
        self.alpha_ = float(ridge.alpha_)
        return self

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-column additive contributions ``(n, len(columns))``; prediction = intercept + their sum."""
        Z = (self._terms(np.asarray(X, dtype=float)) - self.mean_) / self.scale_
        parts = Z * self.coef_
        k = len(self.columns)
        return parts[:, :k] + parts[:, k:]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.intercept_ + self.contributions(X).sum(axis=1)

    def to_dict(self) -> dict:
        return {"columns": self.columns, "medians": self.medians_.tolist(), "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "coef": self.coef_.tolist(), "intercept": self.intercept_,
                "alpha": self.alpha_, "log_floor": LOG_FLOOR,
                **({"lower": self.lower_.tolist(), "upper": self.upper_.tolist()} if self.lower_ is not None else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "LogLinearBase":
        b = cls(d["columns"])
        k = len(b.columns)
        b.medians_ = np.asarray(d["medians"], dtype=float)
        b.mean_ = np.asarray(d["mean"], dtype=float)
        b.scale_ = np.asarray(d["scale"], dtype=float)
        b.coef_ = np.asarray(d["coef"], dtype=float)
        if b.medians_.shape != (k,) or b.mean_.shape != (2 * k,) or b.scale_.shape != (2 * k,) \
                or b.coef_.shape != (2 * k,):
            raise ValueError("linear base arrays do not match its column list")
        b.intercept_ = float(d["intercept"])
        b.alpha_ = float(d.get("alpha", np.nan))
        b.lower_ = b.upper_ = None
        if "lower" in d:  # a base fitted with clip=True; older files have no bounds
            b.clip = True
            b.lower_ = np.asarray(d["lower"], dtype=float)
            b.upper_ = np.asarray(d["upper"], dtype=float)
            if b.lower_.shape != (k,) or b.upper_.shape != (k,) or np.any(np.isnan(b.lower_)) \
                    or np.any(np.isnan(b.upper_)) or np.any(b.lower_ > b.upper_):
                raise ValueError("linear base clip bounds do not match its column list")
        return b


def feature_columns(table_columns, feature_groups, use_covariates=True, levels: LevelSettings | None = None,
                    tier: str | None = None, exclude=()) -> list[str]:
    """Model columns of the chosen groups that a feature table has, in documented order.

    ``tier`` (``photo``, ``basic``, ``weight`` or None) limits the covariates: ``photo``
    drops the covariates group (indices included), ``basic`` drops the weight.
    ``exclude``: columns left out, by full name (``lat_width_l13_cm``) or by their
    per-view name without the view prefix (``width_l13_cm``: both views).
    """
    groups = set(feature_groups)
    unknown = groups - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown feature group(s) {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    if tier is not None and tier not in TIER_FEATURE_COVARIATES:
        raise ValueError(f"unknown tier {tier!r}; choose from {', '.join(TIER_FEATURE_COVARIATES)} or None")
    if not use_covariates or tier == "photo":
        groups.discard("covariates")
    cols = set(table_columns) - set(NOT_MODEL_INPUTS)
    cols = {c for c in cols if c not in set(exclude) and _per_view_name(c) not in set(exclude)}
    if tier is not None:
        cols -= {c for c in COVARIATE_COLUMNS if c not in TIER_FEATURE_COVARIATES[tier]}
    return [c for c, d in all_feature_docs(levels).items() if d.group in groups and c in cols]


def excluded_columns(feature_set: str = "all") -> tuple[str, ...]:
    """Columns the named ``feature_set`` leaves out (``all``: none; ``repeatable``:
    :data:`UNREPEATABLE_FEATURES`)."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set={feature_set!r}: choose from {', '.join(map(repr, FEATURE_SETS))}")
    return FEATURE_SETS[feature_set]


def _per_view_name(column: str) -> str:
    for prefix in ("lat_", "post_"):
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


class FeatureSelector(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: feature table (:func:`.extractor.sample_features`) -> model inputs.

    The first step of :func:`features_pipeline`. It keeps the columns of the switched-on
    feature groups that the table has (:func:`feature_columns`) and that hold at least one
    value in the training rows, and outputs them as a float array (numbers only: the
    table's ids, scale modes and failure reasons stay beside it, with the caller);
    :meth:`get_feature_names_out` names them.

    Parameters
    ----------
    feature_groups, use_covariates, tier, feature_set, level_settings
        As in :class:`XGBFeaturesRegressor`.

    Attributes
    ----------
    feature_names_ : list of str
        The selected columns, in documented order.
    """

    def __init__(self, feature_groups=GROUPS, use_covariates=True, tier=None, feature_set="all",
                 level_settings=None):
        self.feature_groups = feature_groups
        self.use_covariates = use_covariates
        self.tier = tier
        self.feature_set = feature_set
        self.level_settings = level_settings

    def fit(self, X, y=None):
        X = _feature_table(X)
        cols = feature_columns(X.columns, self.feature_groups, self.use_covariates, self.level_settings,
                               tier=self.tier, exclude=excluded_columns(self.feature_set))
        cols = [c for c in cols if X[c].notna().any()]
        if not cols:
            raise ValueError(f"no usable feature column for groups {tuple(self.feature_groups)}")
        self.feature_names_ = cols
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        X = _feature_table(X)
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise ValueError(f"feature table lacks {len(missing)} model column(s), e.g. {missing[:3]}")
        return X[self.feature_names_].to_numpy(dtype=float)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)


def _feature_table(X) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError("X must be a feature table (pandas DataFrame from smi_features.extractor.sample_features)")
    return X


class LogLinearBoostRegressor(RegressorMixin, BaseEstimator):
    """scikit-learn regressor on a numeric table: a log-linear ridge base, then XGBoost from its margin.

    The second step of :func:`features_pipeline` (module docstring: "Linear base").
    ``X`` is a float array or a DataFrame of numbers; missing values (NaN) are allowed.

    Parameters
    ----------
    linear_base : bool
        Fit the :class:`LogLinearBase` and start the trees from its prediction
        (``base_margin``, ``base_score = 0``); False gives the plain booster.
    clip_base : bool
        Clip the base's inputs to their widened training range.
    base_columns : 'core', 'all' or sequence of str
        Columns of the base: ``core`` the named columns of :data:`LINEAR_CORE` that ``X``
        has (with :data:`TWO_VIEW_CORE_LEFT_OUT` left out when both views' columns and
        covariates are there; none for an array without column names), ``all`` every
        column, or these column names.
    n_estimators, learning_rate, max_depth, min_child_weight, subsample, colsample_bytree, reg_lambda
        XGBoost's parameters (squared-error objective, ``hist`` tree method).
    random_state : int
        XGBoost's ``random_state``.
    n_jobs : int
        XGBoost's threads.

    Attributes
    ----------
    base_ : LogLinearBase or None
    base_index_ : list of int
        Positions of the base's columns in ``X``.
    xgb_ : xgboost.XGBRegressor
    n_features_in_, feature_names_in_ : as in scikit-learn.
    """

    def __init__(self, linear_base=True, clip_base=True, base_columns="core", n_estimators=200,
                 learning_rate=0.03, max_depth=2, min_child_weight=2.0, subsample=0.8, colsample_bytree=0.7,
                 reg_lambda=1.0, random_state=0, n_jobs=1):
        self.linear_base = linear_base
        self.clip_base = clip_base
        self.base_columns = base_columns
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _xgb(self):
        from xgboost import XGBRegressor

        return XGBRegressor(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate, max_depth=self.max_depth,
            min_child_weight=self.min_child_weight, subsample=self.subsample,
            colsample_bytree=self.colsample_bytree, reg_lambda=self.reg_lambda, objective="reg:squarederror",
            tree_method="hist", random_state=int(self.random_state), n_jobs=int(self.n_jobs or 1),
            **({"base_score": 0.0} if self.linear_base else {}),
        )

    def _base_names(self, names: list[str]) -> list[str]:
        if not self.linear_base:
            return []
        if isinstance(self.base_columns, str) and self.base_columns == "all":
            return list(names)
        if isinstance(self.base_columns, str) and self.base_columns == "core":
            core = [c for c in LINEAR_CORE if c in names]
            if any(c.startswith("pair_") for c in core) and any(c.startswith("cov_") for c in core):
                core = [c for c in core if c not in TWO_VIEW_CORE_LEFT_OUT]
            return core
        unknown = [c for c in self.base_columns if c not in names]
        if unknown:
            raise ValueError(f"base_columns {unknown} are not columns of X")
        return list(self.base_columns)

    def fit(self, X, y, scale_X=None):
        """Fit the base (its medians and standardisation from ``scale_X`` when given: only the
        leaky-protocol ablation does that) and the booster; returns ``self``."""
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", y_numeric=True)
        y = np.asarray(y, dtype=float)
        names = list(getattr(self, "feature_names_in_", [f"x{i}" for i in range(X.shape[1])]))
        if not hasattr(self, "feature_names_in_") and self.base_columns == "core":
            names = []  # an array without column names: no column is a named core column
        base_names = self._base_names(names) if names else []
        self.base_index_ = [names.index(c) for c in base_names]
        self.base_ = None
        margin = None
        if self.base_index_:
            S = None if scale_X is None else np.asarray(scale_X, dtype=float)[:, self.base_index_]
            self.base_ = LogLinearBase(base_names, clip=bool(self.clip_base)).fit(X[:, self.base_index_], y,
                                                                                  scale_X=S)
            margin = self.base_.predict(X[:, self.base_index_])
        model = self._xgb()
        model.fit(X, y, base_margin=margin)
        if hasattr(self, "feature_names_in_"):
            model.get_booster().feature_names = [str(c) for c in self.feature_names_in_]
        self.xgb_ = model
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "xgb_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        margin = self.base_.predict(X[:, self.base_index_]) if self.base_ is not None else None
        return self.xgb_.predict(X, base_margin=margin)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def features_pipeline(*, feature_groups=GROUPS, use_covariates=True, tier=None, feature_set="all",
                      level_settings=None, linear_base=True, clip_base=True, n_estimators=200,
                      learning_rate=0.03, max_depth=2, min_child_weight=2.0, subsample=0.8,
                      colsample_bytree=0.7, reg_lambda=1.0, random_state=0, n_jobs=1):
    """The features model on a feature table: ``Pipeline([("select", FeatureSelector),
    ("model", LogLinearBoostRegressor)])``, the selector's output a pandas table of numbers
    (so the regressor knows the column names its linear base uses)."""
    from sklearn.pipeline import Pipeline

    select = FeatureSelector(feature_groups=feature_groups, use_covariates=use_covariates, tier=tier,
                             feature_set=feature_set, level_settings=level_settings)
    model = LogLinearBoostRegressor(linear_base=linear_base, clip_base=clip_base, n_estimators=n_estimators,
                                    learning_rate=learning_rate, max_depth=max_depth,
                                    min_child_weight=min_child_weight, subsample=subsample,
                                    colsample_bytree=colsample_bytree, reg_lambda=reg_lambda,
                                    random_state=random_state, n_jobs=n_jobs)
    return Pipeline([("select", select), ("model", model)]).set_output(transform="pandas")


#: XGBFeaturesRegressor's parameters that go to the pipeline (the rest are extraction settings).
PIPELINE_PARAMS = ("feature_groups", "use_covariates", "tier", "feature_set", "level_settings", "linear_base",
                   "clip_base", "n_estimators", "learning_rate", "max_depth", "min_child_weight", "subsample",
                   "colsample_bytree", "reg_lambda", "random_state", "n_jobs")


class XGBFeaturesRegressor(RegressorMixin, BaseEstimator):
    """Leg-shape features + XGBoost, as a scikit-learn regressor on the sample table.

    ``fit`` and ``predict`` extract the features of every sample's photos (or read them from
    the cache: :func:`.extractor.sample_features`), leave out the samples that could not be
    measured (their reasons in ``failures_``) and hand the numeric feature table to
    :func:`features_pipeline` (selector, then base + trees), fitted as ``pipeline_``. The
    parameters are the pipeline's and the extraction's, so an ablation is a ``set_params``.

    Parameters
    ----------
    feature_groups : tuple of str
        Groups of features used: any of ``width``, ``area``, ``curvature``, ``covariates``.
    use_covariates : bool
        False drops the covariates even if their group is listed.
    tier : {'photo', 'basic', 'weight'} or None
        Information tier (module docstring); None uses every covariate the table has.
    linear_base : bool
        Start the trees from a log-linear ridge base prediction (module docstring).
    clip_base : bool
        Clip the linear base's inputs to their (widened) training range (module docstring).
    feature_set : {'all', 'repeatable'}
        ``repeatable`` leaves out :data:`UNREPEATABLE_FEATURES` (module docstring).
    n_estimators, learning_rate, max_depth, min_child_weight, subsample, colsample_bytree, reg_lambda
        XGBoost's parameters (squared-error objective, ``hist`` tree method).
    random_state : int
        The one seed (XGBoost's ``random_state``).
    n_jobs : int
        Threads for XGBoost and processes for feature extraction.
    cache : bool
        Use the per-image feature cache.
    use_marker : bool
        Look for the ArUco marker in each photo.
    silhouette_settings, level_settings : dataclass or None
        Extraction settings (None: the defaults).

    Attributes
    ----------
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted :func:`features_pipeline`.
    feature_names_ : list of str
        Columns the booster was trained on (all-NaN columns of the training table dropped);
        the selector's, read through.
    xgb_ : xgboost.XGBRegressor
        The fitted booster's wrapper (the pipeline's, read through).
    base_ : LogLinearBase or None
        The fitted linear base (None with ``linear_base=False``; the pipeline's).
    failures_ : dict
        ``{sample_id: reason}`` of training samples that could not be processed (``predict``
        leaves the estimator unchanged: its reasons come from :meth:`predict_with_reasons`).
    n_train_ : int
        Samples used for training.
    """

    def __init__(self, feature_groups=GROUPS, use_covariates=True, linear_base=True, n_estimators=200,
                 learning_rate=0.03, max_depth=2, min_child_weight=2.0, subsample=0.8, colsample_bytree=0.7,
                 reg_lambda=1.0, random_state=0, n_jobs=1, cache=True, use_marker=True, silhouette_settings=None,
                 level_settings=None, tier=None, feature_set="all", clip_base=True):
        self.feature_groups = feature_groups
        self.use_covariates = use_covariates
        self.linear_base = linear_base
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.cache = cache
        self.use_marker = use_marker
        self.silhouette_settings = silhouette_settings
        self.level_settings = level_settings
        self.tier = tier
        self.feature_set = feature_set
        self.clip_base = clip_base

    # ------------------------------------------------------------------ helpers
    def extraction_settings(self) -> ExtractionSettings:
        return ExtractionSettings(self.silhouette_settings or SilhouetteSettings(),
                                  self.level_settings or LevelSettings(), bool(self.use_marker))

    def transform_features(self, X: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        """The feature table of a sample table, and ``{sample_id: reason}`` of failures."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError("X must be a sample table (pandas DataFrame from smi_data.manifest.to_samples)")
        if self.tier is not None:
            # the extractor places the knee and ankle from the height when it has one: a photo-tier
            # model must not get it that way either
            from smi_data.tiers import restrict_to_tier

            X = restrict_to_tier(X, self.tier)
        return sample_features(X, settings=self.extraction_settings(), n_jobs=self.n_jobs,
                               cache=bool(self.cache))

    def make_pipeline(self):
        """The unfitted :func:`features_pipeline` with this estimator's parameters."""
        return features_pipeline(**{k: getattr(self, k) for k in PIPELINE_PARAMS})

    @staticmethod
    def _failed_mask(table: pd.DataFrame, failures: dict) -> np.ndarray:
        return table["sample_id"].astype(str).isin(set(failures)).to_numpy()

    # the fitted pipeline's parts, under the names the model files, SHAP and the report use
    @property
    def feature_names_(self) -> list[str]:
        return list(self._fitted_pipeline()["select"].feature_names_)

    @property
    def xgb_(self):
        return self._fitted_pipeline()["model"].xgb_

    @property
    def base_(self):
        return self._fitted_pipeline()["model"].base_

    def _fitted_pipeline(self):
        try:
            return self.__dict__["pipeline_"]
        except KeyError:
            raise AttributeError("XGBFeaturesRegressor is not fitted; call fit first") from None

    @classmethod
    def from_fitted_parts(cls, params: dict, *, booster, base, feature_names, n_train: int = 0):
        """A fitted estimator from saved parts (:mod:`.modelio`): its parameters, the
        ``xgboost.XGBRegressor``, the :class:`LogLinearBase` (or None) and the feature names."""
        est = cls(**params)
        pipe = est.make_pipeline()
        select, model = pipe["select"], pipe["model"]
        select.feature_names_ = list(feature_names)
        model.xgb_ = booster
        model.base_ = base
        model.base_index_ = [] if base is None else [list(feature_names).index(c) for c in base.columns]
        model.n_features_in_ = len(feature_names)
        model.feature_names_in_ = np.asarray(feature_names, dtype=object)
        est.pipeline_ = pipe
        est.n_features_in_ = len(feature_names)
        est.n_train_ = int(n_train)
        est.failures_ = {}
        return est

    def matrix(self, table: pd.DataFrame) -> np.ndarray:
        """The fitted model's input matrix (float, n x len(feature_names_)) from a feature table."""
        return self._fitted_pipeline()["select"].transform(table)

    def base_margin(self, table: pd.DataFrame) -> np.ndarray | None:
        """The linear base's prediction for each row of a feature table (None without a base)."""
        base = self.base_
        if base is None:
            return None
        return base.predict(table[base.columns].to_numpy(dtype=float))

    # ------------------------------------------------------------------ sklearn API
    def fit(self, X, y, scaling_X=None):
        """Extract features and fit the pipeline on the samples whose images were measured.

        ``scaling_X`` (a sample table) fits the linear base's standardisation on those
        rows instead of the training rows: a protocol error, there only for the
        leaky-protocol ablation (``legsmi ablate --ablations leaky-protocols``).

        Raises
        ------
        ValueError
            ``y`` of the wrong length or not finite, or no sample could be measured.
        """
        table, failures = self.transform_features(X)
        scaling = None
        if scaling_X is not None:
            s_table, s_fail = self.transform_features(scaling_X)
            scaling = s_table.loc[~self._failed_mask(s_table, s_fail)]
        return self.fit_table(table, y, failures, scaling_table=scaling)

    def fit_table(self, table: pd.DataFrame, y, failures: dict | None = None, scaling_table=None):
        """Fit from an already extracted feature table (same rows as ``y``)."""
        y = np.asarray(y, dtype=float).ravel()
        if len(y) != len(table):
            raise ValueError(f"y has {len(y)} values for {len(table)} samples")
        if not np.all(np.isfinite(y)):
            raise ValueError("y holds NaN or infinite SMI values; drop those samples before fitting")
        failures = dict(failures or {})
        bad = self._failed_mask(table, failures)
        if bad.all():
            raise ValueError(f"no sample could be measured ({len(failures)} failed), e.g. "
                             f"{next(iter(failures.items()), ('', ''))}; check the photos")
        train = table.loc[~bad]
        pipe = self.make_pipeline()
        if scaling_table is None:
            pipe.fit(train, y[~bad])
        else:  # the leaky protocol: the base's scaling from other rows, through the same selector
            select = pipe["select"].fit(train)
            pipe["model"].fit(select.transform(train), y[~bad], scale_X=select.transform(scaling_table))
        self.pipeline_ = pipe
        self.n_features_in_ = len(self.feature_names_)
        self.failures_ = failures
        self.n_train_ = int((~bad).sum())
        return self

    def predict(self, X):
        """SMI (kg/m^2) per sample; NaN where the sample's images could not be measured."""
        return self.predict_with_reasons(X)[0]

    def predict_with_reasons(self, X) -> tuple[np.ndarray, dict]:
        """``(SMI per sample, {sample_id: reason})`` of the samples predicted NaN (:mod:`smi_data.reasons`)."""
        table, failures = self.transform_features(X)
        return self.predict_table_with_reasons(table, failures)

    def predict_table(self, table: pd.DataFrame, failures: dict | None = None) -> np.ndarray:
        """Predict from an already extracted feature table (NaN for the ``failures``' rows)."""
        return self.predict_table_with_reasons(table, failures)[0]

    def predict_table_with_reasons(self, table: pd.DataFrame, failures: dict | None = None) -> tuple[np.ndarray, dict]:
        """:meth:`predict_table` and the reasons of this call's NaN rows; the estimator is left unchanged."""
        if "pipeline_" not in self.__dict__:
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("XGBFeaturesRegressor is not fitted; call fit first")
        failures = dict(failures or {})
        names = self.feature_names_
        for view, prefix in (("lateral", "lat_"), ("posterior", "post_")):
            if any(c.startswith(prefix) for c in names) and f"{prefix}scale_mode" in table.columns:
                missing = table[f"{prefix}scale_mode"].isna() & ~table["sample_id"].astype(str).isin(set(failures))
                for sid in table.loc[missing, "sample_id"].astype(str):
                    failures[sid] = (f"the model was trained with {view} photos and this sample has no {view} "
                                     "photo; use a model trained on the views you have")
        bad = self._failed_mask(table, failures)
        out = np.full(len(table), np.nan)
        if (~bad).any():
            out[~bad] = self.pipeline_.predict(table.loc[~bad])
        return out, failures

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.non_deterministic = False
        return tags
