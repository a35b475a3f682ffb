"""The ceiling: how well SMI can be predicted from the true calf geometry and the covariates.

An image model can at best recover the calf's true geometry from a photo; it also gets sex,
age, height and weight. A cross-validated regression of the label on exactly these (read from
``truth.csv``, no image involved) is therefore the best accuracy any image model can hope for
on the phantom cohort. Needs only numpy, pandas and scikit-learn (no anny).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

#: Covariates every model receives (sex coded 1 = male; BMI derived from height and weight).
COVARIATES = ("male", "age", "height_cm", "weight_kg", "bmi")
#: True geometry a photo of each view can show (``both``: everything from both views).
GEOMETRY = {
    "lateral": ("ratio_lateral", "calf_width_lateral_cm", "ankle_width_lateral_cm", "calf_level_frac", "shank_length_cm"),
    "posterior": ("ratio_posterior", "calf_width_posterior_cm", "ankle_width_posterior_cm", "calf_level_frac", "shank_length_cm"),
    "both": ("ratio_lateral", "ratio_posterior", "calf_width_lateral_cm", "calf_width_posterior_cm", "ankle_width_lateral_cm",
             "ankle_width_posterior_cm", "calf_circ_cm", "ankle_circ_cm", "calf_level_frac",
             "shank_length_cm", "lowerleg_volume_l"),
}


def _ccc(y, p) -> float:
    """Lin's concordance correlation coefficient with 1/n moments (Lin 1989)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    sxy = np.mean((y - y.mean()) * (p - p.mean()))
    return float(2 * sxy / (y.var() + p.var() + (y.mean() - p.mean()) ** 2))


def _mape(y, p) -> float:
    y, p = np.asarray(y, float), np.asarray(p, float)
    return float(100.0 * np.mean(np.abs(y - p) / np.abs(y)))


def subject_table(dataset_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per subject: the manifest's covariates and label, and the truth's calf geometry."""
    d = Path(dataset_dir)
    tp, mp = d / "truth.csv", d / "manifest.csv"
    for p in (tp, mp):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not found; the ceiling needs a phantom dataset (legsmi phantom)")
    truth = pd.read_csv(tp)
    man = pd.read_csv(mp, dtype={"subject_id": str})
    truth["subject_id"] = truth["subject_id"].astype(str)
    derived = {"ratio_lateral", "ratio_posterior"}
    need = ({c for cols in GEOMETRY.values() for c in cols} - derived) | {"subject_id"}
    missing = sorted(need - set(truth.columns))
    if missing:
        raise ValueError(f"{tp}: missing column(s) {', '.join(missing)}")
    geo = truth.drop_duplicates("subject_id").set_index("subject_id")[sorted(need - {"subject_id"})]
    subj = man.drop_duplicates("subject_id").set_index("subject_id")[["sex", "age", "height_cm", "weight_kg", "smi"]]
    df = subj.join(geo, how="inner")
    df["male"] = (df["sex"] == "M").astype(float)
    df["bmi"] = df["weight_kg"] / (df["height_cm"] / 100.0) ** 2
    # calf-to-ankle width ratios: the shape each view shows
    df["ratio_lateral"] = df["calf_width_lateral_cm"] / df["ankle_width_lateral_cm"]
    df["ratio_posterior"] = df["calf_width_posterior_cm"] / df["ankle_width_posterior_cm"]
    if "smi_true" in truth.columns:
        df["smi_true"] = truth.drop_duplicates("subject_id").set_index("subject_id")["smi_true"]
    return df.sort_index()


def _models(seed: int) -> dict:
    """The candidate regressions: plain linear, log-log linear (SMI as a product of powers, which is how
    mass scales with lengths), and a ridge-penalised quadratic surface."""
    from sklearn.linear_model import LinearRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures, StandardScaler

    def log_features(X):
        X = np.asarray(X, float)
        return np.column_stack([X, np.log(np.clip(X, 1e-3, None))])

    return {
        "linear": (make_pipeline(StandardScaler(), LinearRegression()), False),
        "log-linear": (make_pipeline(FunctionTransformer(log_features), StandardScaler(), LinearRegression()), True),
        "quadratic ridge": (make_pipeline(StandardScaler(), PolynomialFeatures(2), StandardScaler(),
                                          RidgeCV(alphas=np.logspace(-3, 3, 25))), False),
    }


def _cv_predict(model, log_target: bool, X: np.ndarray, y: np.ndarray, folds: int, seed: int):
    from sklearn.base import clone
    from sklearn.model_selection import KFold

    pred = np.full(len(y), np.nan)
    fold_of = np.zeros(len(y), int)
    target = np.log(y) if log_target else y
    for k, (tr, te) in enumerate(KFold(n_splits=folds, shuffle=True, random_state=seed).split(X)):
        p = clone(model).fit(X[tr], target[tr]).predict(X[te])
        pred[te] = np.exp(p) if log_target else p
        fold_of[te] = k
    return pred, fold_of


def _scores(y, pred, fold_of, folds) -> dict:
    per_m = [_mape(y[fold_of == k], pred[fold_of == k]) for k in range(folds)]
    per_c = [_ccc(y[fold_of == k], pred[fold_of == k]) for k in range(folds)]
    return {"mape": _mape(y, pred), "ccc": _ccc(y, pred), "mape_folds": [min(per_m), max(per_m)],
            "ccc_folds": [min(per_c), max(per_c)]}


def compute_ceiling(dataset_dir: str | os.PathLike, *, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated accuracy of an ideal predictor on a phantom dataset.

    Regressions of the label ``smi`` on the covariates (sex, age, height, weight, BMI) plus the
    true calf geometry a view shows (:data:`GEOMETRY`), fitted in ``folds``-fold cross-validation
    over subjects (shuffled with ``seed``). Three regressions are tried (:func:`_models`); each
    setting reports the best of them (choosing the best of three on the same folds flatters it a
    little, which suits a ceiling).

    Returns
    -------
    dict
        ``mape`` (%) and ``ccc`` of the best predictor from both views' geometry (the ceiling),
        ``mape_folds`` and ``ccc_folds`` (min, max over folds, as the study reports), ``model``,
        ``n_subjects``, ``folds``, ``seed``; per setting (``covariates_only``, ``lateral``,
        ``posterior``, ``both``) the best model's scores, its name, the ``features`` and
        ``all_models`` (every candidate's MAPE and CCC); ``label_noise_floor`` gives the scores of
        ``smi_true`` itself as a prediction of the label (the device error alone).
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    df = subject_table(dataset_dir)
    if len(df) < 2 * folds:
        raise ValueError(f"{dataset_dir}: {len(df)} subjects are too few for {folds}-fold cross-validation")
    y = df["smi"].to_numpy(float)
    if np.any(y <= 0) or not np.all(np.isfinite(y)):
        raise ValueError(f"{dataset_dir}: smi must be positive and finite for every subject")
    out: dict = {"n_subjects": int(len(df)), "folds": folds, "seed": seed}
    settings = {"covariates_only": ()} | GEOMETRY
    for name, geo in settings.items():
        feats = list(COVARIATES) + list(geo)
        X = df[feats].to_numpy(float)
        results = {}
        for mname, (model, log_target) in _models(seed).items():
            pred, fold_of = _cv_predict(model, log_target, X, y, folds, seed)
            results[mname] = _scores(y, pred, fold_of, folds)
        best = min(results, key=lambda m: results[m]["mape"])
        out[name] = {**results[best], "model": best, "features": feats,
                     "all_models": {m: {"mape": r["mape"], "ccc": r["ccc"]} for m, r in results.items()}}
    for key in ("mape", "ccc", "mape_folds", "ccc_folds", "model"):
        out[key] = out["both"][key]
    if "smi_true" in df.columns:
        out["label_noise_floor"] = {"mape": _mape(y, df["smi_true"]), "ccc": _ccc(y, df["smi_true"])}
    return out
