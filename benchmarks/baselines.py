"""The baselines every image model has to beat.

Three regressors on the sample table (see ``docs/architecture.md``), each a
scikit-learn estimator refit inside every fold by the harness:

``mean``
    :class:`MeanRegressor` predicts the training fold's mean SMI for everyone. Any
    model that does not beat it has learnt nothing.
``covariates``
    :class:`CovariatesRegressor`: ordinary least squares on sex (1 = man, 0 = woman),
    age (years) and height (cm). What a clinic knows before any photo is taken.
``tape``
    :class:`TapeRegressor`: the tape-measure analogue. Calf circumference (cm) measured
    from the photos by ``smi_features``' extractor, in one straight line per sex,
    ``SMI = a_sex + b_sex * circumference``, as clinics use a tape (Kawakami et al. 2015,
    Geriatr Gerontol Int 15:969, doi:10.1111/ggi.12377: r = 0.80 in men, 0.69 in women).

All three keep the estimator contract: parameters in ``__init__`` only, learned
attributes end in ``_``, ``predict`` returns NaN for a sample it cannot score and
records why in ``failures_`` (``{sample_id: reason}``). None reads ``smi`` from ``X``.

Model folders (``save_model`` / ``load_model``) hold only ``model.json``: the fitted
coefficients are a handful of numbers, stored as JSON, never as a pickle.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

#: ``family`` written into model.json by :func:`save_model`.
FAMILY = "baseline"
#: Column of the feature table that holds the calf circumference, cm.
CIRCUMFERENCE_COLUMN = "calf_circumference_cm"
#: Fewest training samples of one sex for a sex-specific line; fewer use the pooled line.
MIN_PER_SEX = 3


def _check_y(X: pd.DataFrame, y) -> np.ndarray:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a sample table (pandas DataFrame), got {type(X).__name__}")
    y = np.asarray(y, dtype=float).ravel()
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} values")
    if len(y) == 0:
        raise ValueError("cannot fit on an empty training set")
    if not np.all(np.isfinite(y)):
        raise ValueError("y holds NaN or infinite SMI values; every training sample needs a label")
    return y


def _sample_ids(X: pd.DataFrame) -> list[str]:
    if "sample_id" in X.columns:
        return [str(s) for s in X["sample_id"]]
    return [str(i) for i in X.index]


def _sex_code(X: pd.DataFrame) -> np.ndarray:
    """1.0 for 'M', 0.0 for 'F', NaN for anything else."""
    if "sex" not in X.columns:
        raise ValueError("X lacks the 'sex' column; give a sample table from smi_data.manifest.to_samples")
    from smi_data.manifest import male_indicator

    return male_indicator(X["sex"])


class MeanRegressor(RegressorMixin, BaseEstimator):
    """Predict the training mean SMI (kg/m^2) for every sample.

    Attributes
    ----------
    mean_ : float
        Mean of the training targets, kg/m^2.
    failures_ : dict
        Always empty: this model can score any sample.
    """

    def fit(self, X, y):
        y = _check_y(X, y)
        self.mean_ = float(np.mean(y))
        self.n_features_in_ = 0
        self.failures_ = {}
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_, dtype=float)

    def predict_with_reasons(self, X):
        return self.predict(X), {}


class CovariatesRegressor(RegressorMixin, BaseEstimator):
    """Linear regression of SMI (kg/m^2) on sex, age (years) and height (cm).

    ``SMI = b0 + b1 * [sex == M] + b2 * age + b3 * height_cm (+ b4 * weight_kg)``,
    fitted by ordinary least squares on the training fold.

    Parameters
    ----------
    use_weight : bool, default False
        Also use ``weight_kg`` (needs the column on every training row). Off by default:
        the study's population has weight, but the baseline the issue asks for is
        sex, age and height.

    Attributes
    ----------
    coef_ : ndarray of shape (n_covariates,)
    intercept_ : float
    covariates_ : list of str
        Names of the columns used, in coefficient order.
    failures_ : dict
        ``{sample_id: reason}`` for samples with a missing covariate (predicted NaN).
    """

    def __init__(self, use_weight: bool = False):
        self.use_weight = use_weight

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        cols = [_sex_code(X)]
        for name in self._columns()[1:]:
            if name not in X.columns:
                raise ValueError(f"X lacks the '{name}' column needed by the covariates model")
            cols.append(pd.to_numeric(X[name], errors="coerce").to_numpy(dtype=float))
        return np.column_stack(cols)

    def _columns(self) -> list[str]:
        return ["sex_male", "age", "height_cm"] + (["weight_kg"] if self.use_weight else [])

    def fit(self, X, y):
        y = _check_y(X, y)
        A = self._design(X)
        ok = np.all(np.isfinite(A), axis=1)
        self.failures_ = {sid: "missing covariate" for sid, good in zip(_sample_ids(X), ok) if not good}
        if ok.sum() < 2:
            raise ValueError(f"covariates model needs at least 2 training rows with all of "
                             f"{', '.join(self._columns())}; found {int(ok.sum())}")
        design = np.column_stack([np.ones(int(ok.sum())), A[ok]])
        beta, *_ = np.linalg.lstsq(design, y[ok], rcond=None)
        self.intercept_ = float(beta[0])
        self.coef_ = np.asarray(beta[1:], dtype=float)
        self.covariates_ = self._columns()
        self.n_features_in_ = len(self.covariates_)
        return self

    def predict(self, X):
        return self.predict_with_reasons(X)[0]

    def predict_with_reasons(self, X):
        """``(SMI per sample, {sample_id: reason})`` of the samples predicted NaN; the estimator is left unchanged."""
        A = self._design(X)
        ok = np.all(np.isfinite(A), axis=1)
        pred = np.full(len(X), np.nan)
        pred[ok] = self.intercept_ + A[ok] @ self.coef_
        reasons = {sid: "missing covariate (sex, age or height)" for sid, good in zip(_sample_ids(X), ok) if not good}
        return pred, reasons


def _default_extractor():
    """smi_features' feature transformer (sample table -> feature table with calf_circumference_cm)."""
    from smi_features.extractor import LegFeatureExtractor

    return LegFeatureExtractor()


def circumference_cm(X: pd.DataFrame, extractor=None) -> tuple[np.ndarray, dict[str, str]]:
    """Calf circumference (cm) of every sample, measured from its photos.

    Parameters
    ----------
    X : DataFrame
        Sample table.
    extractor : transformer or None
        Anything with ``transform(X) -> DataFrame`` holding :data:`CIRCUMFERENCE_COLUMN`
        (one row per sample, same order). None: ``smi_features``' default extractor.

    Returns
    -------
    circ : ndarray of shape (n_samples,)
        Circumference in cm, NaN where it could not be measured.
    reasons : dict
        ``{sample_id: reason}`` for the NaN rows.
    """
    extractor = _default_extractor() if extractor is None else extractor
    transform = getattr(extractor, "transform_with_reasons", None)
    feats, known = transform(X) if transform is not None else (extractor.transform(X), {})
    if CIRCUMFERENCE_COLUMN not in feats.columns:
        raise ValueError(f"the feature extractor gave no '{CIRCUMFERENCE_COLUMN}' column; "
                         f"columns were: {', '.join(map(str, feats.columns[:20]))}")
    if len(feats) != len(X):
        raise ValueError(f"the feature extractor returned {len(feats)} rows for {len(X)} samples")
    circ = pd.to_numeric(feats[CIRCUMFERENCE_COLUMN], errors="coerce").to_numpy(dtype=float)
    known = {str(k): str(v) for k, v in (known or {}).items()}
    reasons = {sid: known.get(sid, "calf circumference not measured")
               for sid, value in zip(_sample_ids(X), circ) if not np.isfinite(value)}
    return circ, reasons


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)``; slope 0 when x does not vary."""
    if np.ptp(x) == 0:
        return float(np.mean(y)), 0.0
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


class TapeRegressor(RegressorMixin, BaseEstimator):
    """The tape-measure analogue: SMI (kg/m^2) from calf circumference (cm), one line per sex.

    Parameters
    ----------
    extractor : transformer or None
        Gives ``calf_circumference_cm`` per sample (see :func:`circumference_cm`).
        None: ``smi_features``' default extractor (cached per image, so the
        benchmark measures each photo once).

    Attributes
    ----------
    lines_ : dict
        ``{'M': (intercept, slope), 'F': (...), 'all': (...)}``; a sex with fewer than
        :data:`MIN_PER_SEX` measured training samples uses the pooled line ``'all'``.
    failures_ : dict
        ``{sample_id: reason}`` for samples predicted NaN (no circumference).
    """

    def __init__(self, extractor=None):
        self.extractor = extractor

    def fit(self, X, y):
        y = _check_y(X, y)
        circ, reasons = circumference_cm(X, self.extractor)
        sex = _sex_code(X)
        ok = np.isfinite(circ)
        if ok.sum() < 2:
            raise ValueError(f"tape model: calf circumference measured on only {int(ok.sum())} of "
                             f"{len(X)} training samples; first reason: {next(iter(reasons.values()), '-')}")
        self.lines_ = {"all": _line(circ[ok], y[ok])}
        for code, name in ((1.0, "M"), (0.0, "F")):
            m = ok & (sex == code)
            self.lines_[name] = _line(circ[m], y[m]) if m.sum() >= MIN_PER_SEX else self.lines_["all"]
        self.failures_ = dict(reasons)
        self.n_features_in_ = 1
        return self

    def predict_from_circumference(self, circ_cm, sex) -> np.ndarray:
        """Apply the fitted lines to circumferences (cm) and sexes ('M'/'F')."""
        circ_cm = np.asarray(circ_cm, dtype=float)
        out = np.full(len(circ_cm), np.nan)
        for i, (c, s) in enumerate(zip(circ_cm, sex)):
            a, b = self.lines_.get(str(s).strip().upper(), self.lines_["all"])
            out[i] = a + b * c
        return out

    def predict(self, X):
        return self.predict_with_reasons(X)[0]

    def predict_with_reasons(self, X):
        """``(SMI per sample, {sample_id: reason})`` of the samples predicted NaN; the estimator is left unchanged."""
        circ, reasons = circumference_cm(X, self.extractor)
        return self.predict_from_circumference(circ, X["sex"]), dict(reasons)


BASELINES = {"mean": MeanRegressor, "covariates": CovariatesRegressor, "tape": TapeRegressor}


def save_model(estimator, model_dir: str | os.PathLike, *, extra_meta: dict | None = None) -> Path:
    """Write a fitted baseline as ``model.json`` (coefficients as JSON, no pickle)."""
    from smi_data.modelfile import write_model_meta

    name = next((k for k, cls in BASELINES.items() if type(estimator) is cls), None)
    if name is None:
        raise TypeError(f"not a baseline estimator: {type(estimator).__name__}")
    if name == "mean":
        state = {"mean_": estimator.mean_}
    elif name == "covariates":
        state = {"intercept_": estimator.intercept_, "coef_": list(map(float, estimator.coef_)),
                 "covariates_": list(estimator.covariates_)}
    else:
        state = {"lines_": {k: list(v) for k, v in estimator.lines_.items()}}
    params = {k: v for k, v in estimator.get_params().items() if k != "extractor"}
    extra = {"state": state, **(extra_meta or {})}
    return write_model_meta(model_dir, family=FAMILY, model=name, config=params, extra=extra)


def load_model(model_dir: str | os.PathLike):
    """Rebuild a baseline written by :func:`save_model`; checks model.json first."""
    from smi_data.modelfile import ModelFileError, read_model_meta

    meta = read_model_meta(model_dir, family=FAMILY)
    name = meta.get("model")
    if name not in BASELINES:
        raise ModelFileError(f"{model_dir}: unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    state = meta.get("state") or {}
    try:
        est = BASELINES[name](**(meta.get("config") or {}))
        if name == "mean":
            est.mean_ = float(state["mean_"])
            est.n_features_in_ = 0
        elif name == "covariates":
            est.intercept_ = float(state["intercept_"])
            est.coef_ = np.asarray(state["coef_"], dtype=float)
            est.covariates_ = list(state["covariates_"])
            if est.covariates_ != est._columns():
                raise ModelFileError(f"{model_dir}: covariates {est.covariates_} do not match the settings")
            est.n_features_in_ = len(est.covariates_)
        else:
            est.lines_ = {k: (float(v[0]), float(v[1])) for k, v in state["lines_"].items()}
            if "all" not in est.lines_:
                raise KeyError("lines_['all']")
            est.n_features_in_ = 1
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{model_dir}/model.json: damaged baseline state ({exc!r}); retrain the model") from None
    est.failures_ = {}
    return est
