"""cnn-hybrid: a ridge regression on the clinic's covariates plus a CNN on its residual.

``SMI = ridge(sex, age, height[, weight]) + residual_scale * CNN(photo)``

Inside ``fit`` (training fold only):

1. a ridge regression of SMI on the covariates the sample table has: sex (M = 1), age
   (years), height (cm), and, when ``weight_kg`` is present on every training row
   (``use_weight=None``, the default) or asked for (``use_weight=True``), weight (kg). No
   BMI: it is a function of weight and height, which are in the ridge already, and two
   inputs that are functions of each other make the coefficients (and their SHAP) cancel
   each other (issue 10). The covariates are standardised on the training fold; the intercept is
   not penalised; ``ridge_alpha`` is the penalty on the standardised coefficients;
2. the residual ``y − ridge(X)`` is the CNN's target (:class:`~smi_deep.regressor.CNNRegressor`,
   cnn-lite's network and preprocessing by default; the CNN standardises it inside).

``predict`` returns ``ridge(X) + residual_scale * CNN(X)``; NaN where the photo or a
covariate is missing. ``residual_scale`` (default 1) shrinks the CNN's contribution; it
is a fixed parameter, not fitted (an in-sample estimate would be biased towards 1 by the
CNN's over-fit on 80 images, and an inner cross-validation multiplies the training time).

Measured results (with weight and BMI in the ridge, as it was then, the CNN added nothing;
without the weight the posterior silhouette recovers most of what it carries): docs/results.md,
"cnn-hybrid". BMI is no longer in the ridge (it is a function of weight and height).

The ridge's coefficients are saved in model.json as plain numbers (``deep.hybrid``),
next to the CNN's state_dict; :func:`smi_deep.modelio.load_model` rebuilds the hybrid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .regressor import CNNRegressor

MODEL_NAME = "cnn-hybrid"
BASE_COLUMNS = ("sex_male", "age", "height_cm")
WEIGHT_COLUMNS = ("weight_kg",)
#: Ridge columns a saved model may name: models saved before BMI left the ridge have ``bmi``.
KNOWN_COLUMNS = BASE_COLUMNS + WEIGHT_COLUMNS + ("bmi",)


def base_design(X: pd.DataFrame, columns) -> np.ndarray:
    """Covariate matrix ``(N, len(columns))`` of the sample table; NaN where a value is missing.

    ``sex_male`` is 1 for M, 0 for F; ``bmi`` is ``weight_kg / (height_cm / 100)²`` (kg/m²).
    """
    out = []
    for name in columns:
        if name == "sex_male":
            if "sex" not in X.columns:
                raise ValueError("sample table lacks the 'sex' column the hybrid's ridge needs")
            from smi_data.manifest import male_indicator

            out.append(male_indicator(X["sex"]))
        elif name == "bmi":
            for c in ("weight_kg", "height_cm"):
                if c not in X.columns:
                    raise ValueError(f"sample table lacks the {c!r} column the hybrid's ridge needs (BMI)")
            w = pd.to_numeric(X["weight_kg"], errors="coerce").to_numpy(dtype=float)
            h = pd.to_numeric(X["height_cm"], errors="coerce").to_numpy(dtype=float) / 100.0
            out.append(w / (h * h))
        else:
            if name not in X.columns:
                raise ValueError(f"sample table lacks the {name!r} column the hybrid's ridge needs")
            out.append(pd.to_numeric(X[name], errors="coerce").to_numpy(dtype=float))
    return np.column_stack(out) if out else np.empty((len(X), 0))


def fit_ridge(Z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge on standardised columns with an unpenalised intercept.

    Returns
    -------
    mean, scale, coef : ndarray (k,)
        Column means and standard deviations (1 where constant) and the coefficients on
        the standardised columns.
    intercept : float
        ``mean(y)`` (the standardised columns are centred).
    """
    mean = Z.mean(axis=0)
    sd = Z.std(axis=0)
    scale = np.where(sd > 0, sd, 1.0)
    Zs = (Z - mean) / scale
    yc = y - y.mean()
    k = Zs.shape[1]
    coef = np.linalg.solve(Zs.T @ Zs + float(alpha) * np.eye(k), Zs.T @ yc)
    return mean, scale, coef, float(y.mean())


class HybridCNNRegressor(CNNRegressor):
    """Ridge on sex, age, height (and weight) plus a CNN trained on the ridge's residual.

    Parameters
    ----------
    variant, input_mode, ... : as :class:`~smi_deep.regressor.CNNRegressor`
        The residual CNN (default cnn-lite).
    use_weight : bool or None
        Add weight (kg) to the ridge. None (default): if ``weight_kg`` is present
        and finite on every training row.
    ridge_alpha : float
        Ridge penalty on the standardised covariates (sum of squares scale, as
        scikit-learn's ``Ridge``).
    residual_scale : float
        Multiplies the CNN's residual at prediction (1: full; 0: the ridge alone).

    Attributes
    ----------
    base_columns_ : tuple of str
        Ridge covariates, in coefficient order.
    base_mean_, base_scale_, base_coef_ : ndarray
        Column standardisation and coefficients on the standardised columns.
    base_intercept_ : float
        kg/m².
    (plus every attribute of CNNRegressor; its ``y_mean_``/``y_std_`` scale the residual.)
    """

    model_name = MODEL_NAME

    def __init__(self, variant: str = "cnn-lite", input_mode: str = "canny", image_size: int | None = None,
                 epochs: int | None = None, batch_size: int = 16, lr: float = 2e-3, weight_decay: float = 1e-4,
                 augment: bool = True, covariates: bool = False, validation_fraction: float | None = None,
                 patience: int = 10, fill_background: bool = True, device: str = "auto",
                 n_threads: int | None = None, random_state: int = 0, verbose: int = 0,
                 pool: str | None = None, crop: str = "scale", use_weight: bool | None = None,
                 ridge_alpha: float = 1.0, residual_scale: float = 1.0):
        super().__init__(variant=variant, input_mode=input_mode, image_size=image_size, epochs=epochs,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay, augment=augment,
                         covariates=covariates, validation_fraction=validation_fraction, patience=patience,
                         fill_background=fill_background, device=device, n_threads=n_threads,
                         random_state=random_state, verbose=verbose, pool=pool, crop=crop)
        self.use_weight = use_weight
        self.ridge_alpha = ridge_alpha
        self.residual_scale = residual_scale

    def _base_columns(self, X: pd.DataFrame) -> tuple[str, ...]:
        if self.use_weight is None:
            has = "weight_kg" in X.columns and np.all(np.isfinite(
                pd.to_numeric(X["weight_kg"], errors="coerce").to_numpy(dtype=float)))
        else:
            has = bool(self.use_weight)
        return BASE_COLUMNS + (WEIGHT_COLUMNS if has else ())

    def fit(self, X: pd.DataFrame, y) -> "HybridCNNRegressor":
        """Fit the ridge on the covariates, then the CNN on its residual; returns self."""
        if float(self.ridge_alpha) < 0:
            raise ValueError(f"ridge_alpha must be >= 0, got {self.ridge_alpha}")
        y = np.asarray(y, dtype=float)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"y must be 1-D with one SMI per sample of X ({len(X)}), got shape {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y holds NaN or infinite values; drop those samples before fit")
        columns = self._base_columns(X)
        Z = base_design(X, columns)
        ok = np.all(np.isfinite(Z), axis=1)
        ids = X["sample_id"].astype(str).tolist() if "sample_id" in X.columns else [str(i) for i in range(len(X))]
        missing = {ids[i]: f"missing or invalid covariate(s) for the ridge ({', '.join(columns)})"
                   for i in np.flatnonzero(~ok)}
        if ok.sum() < len(columns) + 2:
            raise ValueError(f"only {int(ok.sum())} training sample(s) have all of {', '.join(columns)}; "
                             "the hybrid's ridge needs more")
        self.base_columns_ = tuple(columns)
        self.base_mean_, self.base_scale_, self.base_coef_, self.base_intercept_ = fit_ridge(
            Z[ok], y[ok], float(self.ridge_alpha))
        resid = y[ok] - self._ridge(Z[ok])
        super().fit(X.loc[ok] if isinstance(X, pd.DataFrame) else X[ok], resid)
        self.failures_ = {**missing, **self.failures_}
        return self

    def _ridge(self, Z: np.ndarray) -> np.ndarray:
        return self.base_intercept_ + ((Z - self.base_mean_) / self.base_scale_) @ self.base_coef_

    def predict_base(self, X: pd.DataFrame) -> np.ndarray:
        """The ridge's SMI (kg/m²) alone, 1-D; NaN where a covariate is missing."""
        self._check_fitted()
        return self._ridge(base_design(X, self.base_columns_))

    def predict_residual(self, X: pd.DataFrame, batch_size: int = 64) -> np.ndarray:
        """The CNN's residual (kg/m², unscaled by ``residual_scale``); NaN where the photo failed."""
        return CNNRegressor.predict_with_reasons(self, X, batch_size=batch_size)[0]

    def predict(self, X: pd.DataFrame, batch_size: int = 64) -> np.ndarray:
        """SMI (kg/m²): ridge + ``residual_scale`` × CNN residual; NaN where the photo or a covariate failed."""
        return self.predict_with_reasons(X, batch_size=batch_size)[0]

    def predict_with_reasons(self, X: pd.DataFrame, batch_size: int = 64) -> tuple[np.ndarray, dict]:
        """``(SMI per sample, {sample_id: reason})`` of the samples predicted NaN; the estimator is left unchanged."""
        self._check_fitted()
        if isinstance(X, pd.DataFrame) and len(X) == 0:
            return np.empty(0, dtype=float), {}
        resid, failures = CNNRegressor.predict_with_reasons(self, X, batch_size=batch_size)
        failures = dict(failures)
        base = self.predict_base(X)
        ids = X["sample_id"].astype(str).tolist() if "sample_id" in X.columns else [str(i) for i in range(len(X))]
        for i in np.flatnonzero(~np.isfinite(base)):
            failures.setdefault(ids[i], f"missing or invalid covariate(s) ({', '.join(self.base_columns_)})")
        return base + float(self.residual_scale) * resid, failures

    def hybrid_meta(self) -> dict:
        """The ridge as plain numbers, for model.json."""
        return {"columns": list(self.base_columns_), "mean": [float(v) for v in self.base_mean_],
                "scale": [float(v) for v in self.base_scale_], "coef": [float(v) for v in self.base_coef_],
                "intercept": float(self.base_intercept_), "unit": "kg/m^2",
                "note": "SMI = intercept + sum(coef * (x - mean) / scale) + residual_scale * CNN residual"}

    def set_hybrid_meta(self, meta: dict) -> None:
        """Restore the ridge from :meth:`hybrid_meta`'s dict (checked)."""
        cols = tuple(str(c) for c in meta["columns"])
        known = set(KNOWN_COLUMNS)
        if not set(cols) <= known:
            raise ValueError(f"unknown ridge covariate(s) {sorted(set(cols) - known)}")
        arrs = [np.asarray(meta[k], dtype=float) for k in ("mean", "scale", "coef")]
        if any(a.shape != (len(cols),) for a in arrs) or not all(np.all(np.isfinite(a)) for a in arrs):
            raise ValueError("ridge mean/scale/coef must be finite lists of one number per column")
        self.base_columns_ = cols
        self.base_mean_, self.base_scale_, self.base_coef_ = arrs
        self.base_intercept_ = float(meta["intercept"])


def make_hybrid(random_state: int = 0, **params) -> HybridCNNRegressor:
    """The registry's constructor: ``make_hybrid(random_state=0, input_mode='mask')``."""
    return HybridCNNRegressor(random_state=random_state, **params)
