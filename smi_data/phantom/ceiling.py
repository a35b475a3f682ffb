"""The ceiling: how well SMI can be predicted from the true calf geometry and the covariates.

An image model can at best recover the calf's true geometry from a photo; it also gets sex,
age, height and weight. A cross-validated regression of the label on exactly these (read from
``truth.csv``, no image involved) is therefore the best accuracy any image model can hope for
on the phantom cohort. Needs only numpy, pandas and scikit-learn (no anny).

The ceiling is computed at an information tier (:mod:`smi_data.tiers`): ``photo`` (the true
geometry alone: all a photo can show), ``basic`` (+ sex, age, height) or ``weight`` (+ body weight,
the default). BMI is not among the covariates: it is a function of height and weight, which the
regression already has (issue 10: no input beside the inputs it is computed from; the log-linear
candidate spans log BMI). ``folds`` is either a number (a seeded shuffle of the subjects, as
before) or the benchmark's own folds, ``[(repeat, fold, test_subjects), ...]`` from the saved
``splits.json``, so the ceiling and the models are scored on the same people per fold; the
metrics are those of :mod:`smi_data.metrics`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

#: Covariates every model receives (sex coded 1 = male). No BMI: it is a function of height and weight.
COVARIATES = ("male", "age", "height_cm", "weight_kg")
#: Covariates of the ceiling at each information tier.
TIER_COVARIATES = {"photo": (), "basic": ("male", "age", "height_cm"), "weight": COVARIATES}
#: True geometry a photo of each view can show (``both``: everything from both views).
GEOMETRY = {
    "lateral": ("ratio_lateral", "calf_width_lateral_cm", "ankle_width_lateral_cm", "calf_level_frac",
                "shank_length_cm"),
    "posterior": ("ratio_posterior", "calf_width_posterior_cm", "ankle_width_posterior_cm", "calf_level_frac",
                  "shank_length_cm"),
    "both": ("ratio_lateral", "ratio_posterior", "calf_width_lateral_cm", "calf_width_posterior_cm",
             "ankle_width_lateral_cm", "ankle_width_posterior_cm", "calf_circ_cm", "ankle_circ_cm", "calf_level_frac",
             "shank_length_cm", "lowerleg_volume_l"),
}


def _ccc(y, p) -> float:
    from smi_data.metrics import ccc

    return float(ccc(y, p).ccc)


def _mape(y, p) -> float:
    from smi_data.metrics import mape

    return mape(y, p)


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


def fold_assignments(subjects, folds, seed: int = 0) -> list[tuple[int, int, np.ndarray]]:
    """``[(repeat, fold, test_mask), ...]`` over ``subjects`` (the subject table's index order).

    ``folds`` an int: one repeat of a shuffled K-fold (seeded). A list of ``(repeat, fold,
    test_subjects)``: those folds exactly (every test subject must be in ``subjects``).
    """
    subjects = np.asarray([str(s) for s in subjects])
    if isinstance(folds, (int, np.integer)):
        from sklearn.model_selection import KFold

        if folds < 2:
            raise ValueError(f"folds must be at least 2, got {folds}")
        return [(0, k, np.isin(np.arange(len(subjects)), te))
                for k, (_, te) in enumerate(KFold(n_splits=int(folds), shuffle=True, random_state=seed)
                                            .split(subjects))]
    out = []
    known = set(subjects)
    for repeat, fold, test in folds:
        test = {str(t) for t in test}
        unknown = test - known
        if unknown:
            raise ValueError(f"repeat {repeat} fold {fold}: subject(s) {', '.join(sorted(unknown)[:5])} are not "
                             "in truth.csv and manifest.csv; the splits were made for another dataset")
        out.append((int(repeat), int(fold), np.isin(subjects, list(test))))
    if not out:
        raise ValueError("no folds given")
    return out


def _cv_predict(model, log_target: bool, X: np.ndarray, y: np.ndarray, assignments) -> dict:
    """Out-of-fold predictions per repeat: ``{repeat: (pred, fold_of)}``."""
    from sklearn.base import clone

    target = np.log(y) if log_target else y
    out: dict = {}
    for repeat, fold, te in assignments:
        pred, fold_of = out.setdefault(repeat, (np.full(len(y), np.nan), np.full(len(y), -1)))
        tr = ~te
        p = clone(model).fit(X[tr], target[tr]).predict(X[te])
        pred[te] = np.exp(p) if log_target else p
        fold_of[te] = fold
    return out


def _scores(y, per_repeat: dict) -> dict:
    """Pooled scores (mean over repeats) and the min/max over every fold of every repeat."""
    per_m, per_c, pooled_m, pooled_c = [], [], [], []
    for pred, fold_of in per_repeat.values():
        done = fold_of >= 0
        pooled_m.append(_mape(y[done], pred[done]))
        pooled_c.append(_ccc(y[done], pred[done]))
        for k in np.unique(fold_of[done]):
            sel = fold_of == k
            per_m.append(_mape(y[sel], pred[sel]))
            per_c.append(_ccc(y[sel], pred[sel]))
    return {"mape": float(np.mean(pooled_m)), "ccc": float(np.mean(pooled_c)),
            "mape_folds": [min(per_m), max(per_m)], "ccc_folds": [min(per_c), max(per_c)],
            "fold_mape": per_m, "fold_ccc": per_c}


def compute_ceiling(dataset_dir: str | os.PathLike, *, folds=5, seed: int = 0, tier: str = "weight") -> dict:
    """Cross-validated accuracy of an ideal predictor on a phantom dataset.

    Regressions of the label ``smi`` on the tier's covariates (:data:`TIER_COVARIATES`) plus the
    true calf geometry a view shows (:data:`GEOMETRY`), fitted on the training subjects of each
    fold. Three regressions are tried (:func:`_models`); each setting reports the best of them
    (choosing the best of three on the same folds flatters it a little, which suits a ceiling).

    Parameters
    ----------
    folds : int or list of (repeat, fold, test_subjects)
        A number of shuffled folds (seeded with ``seed``), or the benchmark's folds from its
        ``splits.json`` (every repeat; fold ranges are over every fold of every repeat and
        pooled scores the mean over repeats).
    tier : {'photo', 'basic', 'weight'}
        Covariates the ideal predictor gets.

    Returns
    -------
    dict
        ``mape`` (%) and ``ccc`` of the best predictor from both views' geometry (the ceiling),
        ``mape_folds`` and ``ccc_folds`` (min, max over folds, as the study reports), ``model``,
        ``n_subjects``, ``folds`` (the number of folds per repeat), ``repeats``, ``tier``,
        ``fold_subjects`` (``{"repeat/fold": [test subjects]}``, what was iterated), ``seed``;
        per setting (``covariates_only``, ``lateral``, ``posterior``, ``both``) the best model's
        scores (with ``fold_mape``, ``fold_ccc`` per fold), its name, the ``features`` and
        ``all_models`` (every candidate's MAPE and CCC); ``label_noise_floor`` gives the scores
        of ``smi_true`` itself as a prediction of the label (the device error alone).
    """
    if tier not in TIER_COVARIATES:
        raise ValueError(f"unknown tier {tier!r}; choose from {', '.join(TIER_COVARIATES)}")
    df = subject_table(dataset_dir)
    n_folds = folds if isinstance(folds, (int, np.integer)) else len({f for _, f, _ in folds})
    if isinstance(folds, (int, np.integer)) and len(df) < 2 * folds:
        raise ValueError(f"{dataset_dir}: {len(df)} subjects are too few for {folds}-fold cross-validation")
    assignments = fold_assignments(df.index, folds, seed)
    y = df["smi"].to_numpy(float)
    if np.any(y <= 0) or not np.all(np.isfinite(y)):
        raise ValueError(f"{dataset_dir}: smi must be positive and finite for every subject")
    subjects = np.asarray(df.index.astype(str))
    out: dict = {"n_subjects": int(len(df)), "folds": int(n_folds), "seed": seed, "tier": tier,
                 "repeats": len({r for r, _, _ in assignments}),
                 "fold_subjects": {f"{r}/{f}": sorted(subjects[te].tolist()) for r, f, te in assignments}}
    covs = list(TIER_COVARIATES[tier])
    settings = ({"covariates_only": ()} if covs else {}) | GEOMETRY
    for name, geo in settings.items():
        feats = covs + list(geo)
        X = df[feats].to_numpy(float)
        results = {}
        for mname, (model, log_target) in _models(seed).items():
            results[mname] = _scores(y, _cv_predict(model, log_target, X, y, assignments))
        best = min(results, key=lambda m: results[m]["mape"])
        out[name] = {**results[best], "model": best, "features": feats,
                     "all_models": {m: {"mape": r["mape"], "ccc": r["ccc"]} for m, r in results.items()}}
    for key in ("mape", "ccc", "mape_folds", "ccc_folds", "model"):
        out[key] = out["both"][key]
    if "smi_true" in df.columns:
        out["label_noise_floor"] = {"mape": _mape(y, df["smi_true"]), "ccc": _ccc(y, df["smi_true"])}
    return out
