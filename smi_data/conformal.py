"""Prediction intervals and the probability of low muscle mass, by conformal prediction.

Family-agnostic: every model is a scikit-learn regressor on the sample table, and
:class:`IntervalRegressor` wraps any of them. What it learns beyond the wrapped model is
a handful of plain numbers, the *calibration scores*, which :class:`Calibration` writes
as JSON (``intervals.json`` in the model folder; never a pickle). The conformal
arithmetic is done by **crepes** (Boström 2022, *crepes: a Python package for
generating conformal regressors and predictive systems*, PMLR 179), rebuilt from the
saved scores whenever it is needed:

* the intervals come from a normalised Mondrian ``crepes.ConformalRegressor``:
  ``y_hat ± q_c · sigma`` where ``q_c`` is a conformal quantile of the ``n`` calibration
  scores ``|y - y_hat| / sigma`` of the bin at level ``c``: the ``k``-th smallest. The
  ``rule`` picks ``k``. ``"conservative"`` (crepes' own, the textbook split-conformal
  quantile) takes ``k = ceil(c (n + 1))``, which covers at least ``c`` and on average
  ``k / (n + 1)``: for 19 ≤ n ≤ 38 that is the largest score, ``n / (n + 1)`` (97.4 % at
  n = 38, the size of a sex's bin in a 100-person cohort's training fold).
  ``"midpoint"`` (the default) takes ``k = floor(c (n + 1) + 1/2)``, the order statistic whose
  coverage ``k / (n + 1)`` is nearest ``c`` (the wider of two equally near): exactly the values
  whose *smoothed* conformal p-value with the random tie-breaker fixed at 1/2 is at least
  ``1 - c`` (the same midpoint as the probability below). On average it covers ``c`` to within
  ``1 / (2 (n + 1))``, above or below, instead of never below; the guarantee "at least ``c``" is given up for that.
  crepes is handed the confidence that makes its own index equal ``k``;
* the probability of being below a cut-off comes from a ``crepes.ConformalPredictiveSystem``
  on the signed scores ``(y - y_hat) / sigma``: its predictive distribution evaluated
  at the cut-off. crepes' unsmoothed value is the upper of the two conformal bounds,
  ``(#{scores below} + 1) / (n + 1)``; we report the midpoint, ``(#{scores below} + 0.5) / (n + 1)``
  (a smoothed p-value with its random tie-breaker fixed at 1/2, so the same inputs give the
  same number). It lies in ``[0.5/(n+1), 1 - 0.5/(n+1)]``.

Calibration schemes (``method``), all inside the data handed to ``fit``:

``"cv"`` (cross-conformal, K folds by subject)
    The model is refit K times, each time without one fold of subjects; the scores
    are the out-of-fold residuals of all training samples, and the final model is fit
    on all of them. This is the K-fold "CV" scheme of Barber et al. 2021 (*Ann Stat*
    49:486) with the full model's prediction at the centre (MAPIE's ``method="base"``);
    its coverage is measured by the benchmark rather than guaranteed. For cheap models.
``"split"`` (split conformal)
    A share of the training subjects is held out, the model is fit on the rest and
    scored on them; the model used for prediction is the one fit without them, so the
    guarantee of split conformal prediction holds. For models too slow to refit.
``"split-refit"`` (split scores, the model refit on everything)
    The scores of ``"split"``, but the model used for prediction is then fit again on all
    the data handed to ``fit``. Its guarantee rests on an assumption: the model fit on
    more people errs no more than the one the scores came from (a learning curve that
    does not rise), so the intervals are, if anything, conservative. Costs one more fit.

``normalise="relative"`` uses ``sigma = |y_hat|`` (errors in proportion to the estimate,
as MAPE assumes), ``"none"`` uses ``sigma = 1``. ``mondrian="sex"`` calibrates men and
women apart, when each sex has enough scores for the highest level; otherwise the
scores are pooled and the calibration says so (``bins_used``).

Screening at the AWGS 2019 cut-off with the 95 % interval ``[lo, hi]`` (low muscle mass
is SMI strictly below the cut-off): **low** if ``hi < cut-off``; **not low** if
``lo >= cut-off``; **indeterminate** otherwise (the interval holds values on both sides).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone

from .cutoffs import smi_cutoffs

__all__ = [
    "LEVELS", "CALIBRATION_FILE", "CalibrationError", "Calibration", "IntervalRegressor",
    "calibrate", "screening_result", "min_scores", "held_out_subjects", "save_calibration", "load_calibration",
]

#: Interval levels every model reports.
LEVELS = (0.90, 0.95)
#: File name in the model folder.
CALIBRATION_FILE = "intervals.json"
CALIBRATION_FORMAT = "legsmi-intervals"
CALIBRATION_FORMAT_VERSION = 2
#: Versions this legsmi reads: 1 had no ``rule`` (it was the conservative quantile).
READABLE_FORMAT_VERSIONS = (1, 2)
METHODS = ("cv", "split", "split-refit")
NORMALISATIONS = ("relative", "none")
MONDRIAN = ("sex", "none")
RULES = ("midpoint", "conservative")
#: Smallest sigma for relative normalisation (kg/m^2); keeps a near-zero estimate from collapsing the interval.
MIN_SIGMA = 0.5
SCREEN_LOW, SCREEN_NOT_LOW, SCREEN_INDETERMINATE = "low", "not low", "indeterminate"


class CalibrationError(ValueError):
    """Calibration numbers that cannot be used (too few, damaged, from another model)."""


def min_scores(level: float) -> int:
    """Fewest calibration scores for a finite two-sided conformal interval at ``level``.

    The interval uses the ``ceil((n + 1) * level)``-th smallest score, which exists only
    when ``n >= level / (1 - level)``: 9 for 90 %, 19 for 95 %.
    """
    return int(math.ceil(level / (1.0 - level) - 1e-9))


def held_out_subjects(n_subjects: int, fraction: float, at_least: int = 0) -> int:
    """Subjects the split schemes hold out: ``round(fraction * n)``, topped up to ``at_least``
    but never beyond half of them."""
    n_cal = int(round(float(fraction) * n_subjects))
    return max(n_cal, min(int(at_least), n_subjects // 2))


def crepes_confidence(n: int, level: float, rule: str) -> float:
    """The confidence to hand crepes so that its interval over ``n`` scores is the ``rule``'s.

    crepes uses the ``m``-th largest score, ``m = int((1 - confidence) (n + 1))``; the
    ``midpoint`` rule wants ``m = n + 1 - floor(level (n + 1) + 1/2)``.
    """
    if rule == "conservative":
        return float(level)
    m = n + 1 - int(math.floor(level * (n + 1) + 0.5))
    return 1.0 - (m + 0.5) / (n + 1)


def _sigmas(y_hat: np.ndarray, normalise: str) -> np.ndarray:
    y_hat = np.asarray(y_hat, dtype=float)
    if normalise == "relative":
        return np.maximum(np.abs(y_hat), MIN_SIGMA)
    return np.ones_like(y_hat)


def _sex_labels(sex) -> np.ndarray:
    return np.asarray([str(s).strip().upper() for s in np.asarray(sex, dtype=object).ravel()], dtype=object)


@dataclass
class Calibration:
    """Conformal calibration scores of one fitted model: plain numbers, saved as JSON.

    Attributes
    ----------
    method : {'cv', 'split'}
    normalise : {'relative', 'none'}
    mondrian : {'sex', 'none'}
        What was asked; ``bins_used`` says what was possible.
    bins_used : {'sex', 'none'}
    rule : {'midpoint', 'conservative'}
        Which conformal quantile makes the intervals (module docstring).
    scores : dict of str to list of float
        Signed normalised residuals ``(y - y_hat) / sigma`` per bin (``"M"``, ``"F"``, or
        ``"all"``), sorted.
    details : dict
        How they were obtained (folds or held-out share, sample counts).
    """

    method: str
    normalise: str
    mondrian: str
    bins_used: str
    scores: dict[str, list[float]]
    details: dict = field(default_factory=dict)
    rule: str = "midpoint"

    # ------------------------------------------------------------------ checks
    def check(self, where: str = "calibration") -> "Calibration":
        """Raise :class:`CalibrationError` unless every field is usable."""
        if self.method not in METHODS:
            raise CalibrationError(f"{where}: method {self.method!r}, expected one of {', '.join(METHODS)}")
        if self.normalise not in NORMALISATIONS:
            raise CalibrationError(f"{where}: normalise {self.normalise!r}, "
                                   f"expected one of {', '.join(NORMALISATIONS)}")
        if self.mondrian not in MONDRIAN or self.bins_used not in MONDRIAN:
            raise CalibrationError(f"{where}: mondrian {self.mondrian!r} / bins_used {self.bins_used!r}, "
                                   f"expected one of {', '.join(MONDRIAN)}")
        if self.rule not in RULES:
            raise CalibrationError(f"{where}: rule {self.rule!r}, expected one of {', '.join(RULES)}")
        want = {"M", "F"} if self.bins_used == "sex" else {"all"}
        if not isinstance(self.scores, dict) or set(self.scores) != want:
            raise CalibrationError(f"{where}: score bins "
                                   f"{sorted(self.scores) if isinstance(self.scores, dict) else self.scores!r}, "
                                   f"expected {sorted(want)}")
        need = min_scores(max(LEVELS))
        for b, s in self.scores.items():
            ok = (isinstance(s, (list, tuple))
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in s))
            arr = np.asarray(s, dtype=float) if ok else None
            if arr is None or arr.ndim != 1 or not np.all(np.isfinite(arr)):
                raise CalibrationError(f"{where}: scores of bin {b!r} are not a list of finite numbers")
            if arr.size < need:
                raise CalibrationError(f"{where}: bin {b!r} has {arr.size} score(s); a {max(LEVELS):.0%} interval "
                                       f"needs at least {need}")
        return self

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        return {"format": CALIBRATION_FORMAT, "format_version": CALIBRATION_FORMAT_VERSION,
                "library": "crepes", "levels": list(LEVELS), "method": self.method, "normalise": self.normalise,
                "mondrian": self.mondrian, "bins_used": self.bins_used, "rule": self.rule,
                "scores": {k: [float(v) for v in vals] for k, vals in self.scores.items()},
                "details": self.details}

    @classmethod
    def from_json(cls, d, where: str = "calibration") -> "Calibration":
        if not isinstance(d, dict) or d.get("format") != CALIBRATION_FORMAT:
            raise CalibrationError(f"{where}: not a legsmi interval calibration (format "
                                   f"{d.get('format') if isinstance(d, dict) else None!r})")
        if d.get("format_version") not in READABLE_FORMAT_VERSIONS:
            raise CalibrationError(f"{where}: calibration format version {d.get('format_version')!r}, this legsmi "
                                   f"reads {', '.join(map(str, READABLE_FORMAT_VERSIONS))}; retrain the model")
        try:
            # version 1 files were made with the conservative quantile
            rule = d["rule"] if d["format_version"] >= 2 else "conservative"
            cal = cls(method=d["method"], normalise=d["normalise"], mondrian=d["mondrian"],
                      bins_used=d["bins_used"], scores=d["scores"], details=dict(d.get("details") or {}), rule=rule)
        except (KeyError, TypeError) as exc:
            raise CalibrationError(f"{where}: damaged calibration ({exc!r}); retrain the model") from None
        return cal.check(where)

    # ------------------------------------------------------------------ prediction
    def _bins(self, sex, n: int) -> np.ndarray:
        if self.bins_used == "none":
            return np.full(n, "all", dtype=object)
        labels = _sex_labels(sex) if sex is not None else np.full(n, "", dtype=object)
        if labels.size == 1 and n != 1:
            labels = np.full(n, labels[0], dtype=object)
        bad = [s for s in labels if s not in ("M", "F")]
        if bad:
            raise ValueError(f"sex {bad[0]!r}: the intervals were calibrated by sex; expected 'M' or 'F'")
        return labels

    def _fitted(self, kind: str):
        from crepes import ConformalPredictiveSystem, ConformalRegressor

        bins = np.concatenate([np.full(len(v), k, dtype=object) for k, v in self.scores.items()])
        res = np.concatenate([np.asarray(v, dtype=float) for v in self.scores.values()])
        model = ConformalRegressor() if kind == "cr" else ConformalPredictiveSystem()
        return model.fit(res, sigmas=np.ones_like(res), bins=bins)

    def intervals(self, y_hat, sex=None, levels=LEVELS) -> dict[float, np.ndarray]:
        """``{level: array (n, 2)}`` of interval bounds (kg/m²); NaN where ``y_hat`` is NaN."""
        y_hat = np.asarray(y_hat, dtype=float).ravel()
        bins = self._bins(sex, y_hat.size)
        out = {float(c): np.full((y_hat.size, 2), np.nan) for c in levels}
        ok = np.isfinite(y_hat)
        if ok.any():
            cr = self._fitted("cr")
            for b in np.unique(bins[ok]):  # one confidence per bin: the rule's index depends on its size
                sel = ok & (bins == b)
                n = len(self.scores[b])
                for c in levels:
                    out[float(c)][sel] = cr.predict_int(y_hat[sel], sigmas=_sigmas(y_hat[sel], self.normalise),
                                                        bins=bins[sel], confidence=crepes_confidence(n, c, self.rule))
        return out

    def prob_below(self, y_hat, threshold, sex=None) -> np.ndarray:
        """P(y < threshold) from the conformal predictive distribution; NaN where ``y_hat`` is NaN."""
        y_hat = np.asarray(y_hat, dtype=float).ravel()
        thr = np.broadcast_to(np.asarray(threshold, dtype=float), y_hat.shape)
        bins = self._bins(sex, y_hat.size)
        out = np.full(y_hat.size, np.nan)
        ok = np.isfinite(y_hat) & np.isfinite(thr)
        if ok.any():
            cps = self._fitted("cps")
            upper = cps.predict_p(y_hat[ok], thr[ok], sigmas=_sigmas(y_hat[ok], self.normalise),
                                  bins=bins[ok], smoothing=False)
            n_bin = np.array([len(self.scores[b]) for b in bins[ok]], dtype=float)
            out[ok] = upper - 0.5 / (n_bin + 1)  # midway between the two conformal bounds
        return out

    def p_values(self, y_hat, y, sex=None) -> np.ndarray:
        """Conformal p-value of each ``y`` under the interval regressor, for calibration plots:
        ``y`` is inside the ``c`` interval when its p-value exceeds ``1 - c`` (conservative
        rule) or reaches it (midpoint rule, whose p-value is the smoothed one with the
        tie-breaker at 1/2)."""
        y_hat = np.asarray(y_hat, dtype=float).ravel()
        y = np.asarray(y, dtype=float).ravel()
        bins = self._bins(sex, y_hat.size)
        out = np.full(y_hat.size, np.nan)
        ok = np.isfinite(y_hat) & np.isfinite(y)
        if ok.any():
            out[ok] = self._fitted("cr").predict_p(y_hat[ok], y[ok], sigmas=_sigmas(y_hat[ok], self.normalise),
                                                   bins=bins[ok], smoothing=False)
            if self.rule == "midpoint":
                n_bin = np.array([len(self.scores[b]) for b in bins[ok]], dtype=float)
                out[ok] = out[ok] - 0.5 / (n_bin + 1)
        return out

    def table(self, y_hat, sex, device=None) -> pd.DataFrame:
        """Everything ``predict`` reports per sample, as columns.

        ``lo90``, ``hi90``, ``lo95``, ``hi95`` (kg/m²), ``awgs_cutoff``, ``p_low``
        (probability of SMI below the cut-off) and ``screening`` (low, not low,
        indeterminate; empty where there is no estimate).
        """
        y_hat = np.asarray(y_hat, dtype=float).ravel()
        sex = _sex_labels(sex)
        dev = "BIA" if device is None else device
        cut = smi_cutoffs(sex, dev) if y_hat.size else np.zeros(0)
        iv = self.intervals(y_hat, sex)
        df = pd.DataFrame({"lo90": iv[0.90][:, 0], "hi90": iv[0.90][:, 1], "lo95": iv[0.95][:, 0],
                           "hi95": iv[0.95][:, 1], "awgs_cutoff": cut})
        df["p_low"] = self.prob_below(y_hat, cut, sex)
        df["screening"] = screening_result(df["lo95"].to_numpy(), df["hi95"].to_numpy(), cut)
        return df


def screening_result(lo95, hi95, cutoff) -> np.ndarray:
    """AWGS screening from the 95 % interval: 'low', 'not low', 'indeterminate' ('' for NaN).

    Low muscle mass is SMI strictly below the cut-off, so an interval that ends exactly at
    the cut-off still holds a not-low value (indeterminate), and one that starts exactly at
    it holds only not-low values (not low).
    """
    lo = np.asarray(lo95, dtype=float)
    hi = np.asarray(hi95, dtype=float)
    cut = np.broadcast_to(np.asarray(cutoff, dtype=float), lo.shape)
    out = np.full(lo.shape, SCREEN_INDETERMINATE, dtype=object)
    out[hi < cut] = SCREEN_LOW
    out[lo >= cut] = SCREEN_NOT_LOW
    out[~(np.isfinite(lo) & np.isfinite(hi) & np.isfinite(cut))] = ""
    return out


def calibrate(y, y_hat, sex, *, method: str, normalise: str = "relative", mondrian: str = "sex",
              details: dict | None = None, rule: str = "midpoint") -> Calibration:
    """A :class:`Calibration` from out-of-sample predictions ``y_hat`` of labels ``y``.

    Samples with a NaN prediction are left out. Mondrian bins by sex are used when each
    sex has at least :func:`min_scores` (95 %) scores, else the scores are pooled.

    Raises
    ------
    CalibrationError
        When fewer than :func:`min_scores` (95 %) usable scores remain.
    """
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise={normalise!r}: expected one of {', '.join(NORMALISATIONS)}")
    if mondrian not in MONDRIAN:
        raise ValueError(f"mondrian={mondrian!r}: expected one of {', '.join(MONDRIAN)}")
    if rule not in RULES:
        raise ValueError(f"rule={rule!r}: expected one of {', '.join(RULES)}")
    y = np.asarray(y, dtype=float).ravel()
    y_hat = np.asarray(y_hat, dtype=float).ravel()
    sex = _sex_labels(sex)
    ok = np.isfinite(y) & np.isfinite(y_hat)
    scores = (y[ok] - y_hat[ok]) / _sigmas(y_hat[ok], normalise)
    sex_ok = sex[ok]
    need = min_scores(max(LEVELS))
    if scores.size < need:
        raise CalibrationError(f"only {scores.size} usable calibration score(s); a {max(LEVELS):.0%} interval needs "
                               f"at least {need} (train on more people)")
    per_sex = {s: np.sort(scores[sex_ok == s]) for s in ("M", "F")}
    if mondrian == "sex" and all(v.size >= need for v in per_sex.values()):
        binned, used = {k: v.tolist() for k, v in per_sex.items()}, "sex"
    else:
        binned, used = {"all": np.sort(scores).tolist()}, "none"
    info = dict(details or {})
    info.update({"n_scores": int(scores.size), "n_left_out": int((~ok).sum()),
                 "n_per_bin": {k: len(v) for k, v in binned.items()}})
    return Calibration(method, normalise, mondrian, used, binned, info, rule).check()


# --------------------------------------------------------------------------- the wrapper
class IntervalRegressor(RegressorMixin, BaseEstimator):
    """Any sample-table regressor plus its conformal calibration, learned inside ``fit``'s data.

    Parameters
    ----------
    estimator : regressor
        Unfitted; cloned for every fit.
    method : {'cv', 'split', 'split-refit'}
        See the module docstring.
    n_splits : int
        Folds of the ``cv`` scheme (by subject); with fewer subjects, one fold per subject.
    calibration_fraction : float
        Share of subjects held out by the ``split`` schemes.
    min_calibration_subjects : int
        The ``split`` schemes hold out at least this many subjects (but never more than
        half): a share that would leave fewer than a 95 % interval needs once some photos
        are refused by the quality gate is topped up.
    normalise, mondrian, rule : str
        See :func:`calibrate` and the module docstring.
    random_state : int
        Seeds the assignment of subjects to folds or to the held-out share.

    Attributes
    ----------
    estimator_ : the fitted model that makes the point estimates.
    split_estimator_ : the model fit without the held-out subjects (``split-refit`` only;
        the one the scores came from).
    calibration_ : :class:`Calibration` or None
        None when too few usable calibration scores remained (``calibration_error_`` says why).
    failures_ : dict, the wrapped model's ``{sample_id: reason}``.
    """

    def __init__(self, estimator=None, method: str = "cv", n_splits: int = 5, calibration_fraction: float = 0.25,
                 normalise: str = "relative", mondrian: str = "sex", random_state: int = 0,
                 min_calibration_subjects: int = 0, rule: str = "midpoint"):
        self.estimator = estimator
        self.method = method
        self.n_splits = n_splits
        self.calibration_fraction = calibration_fraction
        self.min_calibration_subjects = min_calibration_subjects
        self.rule = rule
        self.normalise = normalise
        self.mondrian = mondrian
        self.random_state = random_state

    def _groups(self, X: pd.DataFrame) -> np.ndarray:
        col = "subject_id" if "subject_id" in X.columns else None
        return X[col].astype(str).to_numpy() if col else np.arange(len(X)).astype(str)

    def fit(self, X: pd.DataFrame, y):
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: expected one of {', '.join(METHODS)}")
        y = np.asarray(y, dtype=float).ravel()
        groups = self._groups(X)
        subjects = np.unique(groups)
        rng = np.random.default_rng(np.random.SeedSequence([int(self.random_state), 11]))
        oof = np.full(len(y), np.nan)
        if self.method == "cv":
            k = min(int(self.n_splits), len(subjects))  # at most one fold per subject (leave-one-out)
            if k < 2:
                raise ValueError(f"n_splits={self.n_splits} with {len(subjects)} subject(s): need at least 2 folds")
            fold_of = dict(zip(rng.permutation(subjects), np.arange(len(subjects)) % k))
            fold = np.array([fold_of[g] for g in groups])
            for f in range(k):
                te = fold == f
                est = clone(self.estimator).fit(X[~te].reset_index(drop=True), y[~te])
                oof[te] = np.asarray(est.predict(X[te].reset_index(drop=True)), dtype=float).ravel()
            self.estimator_ = clone(self.estimator).fit(X, y)
            details = {"n_splits": k, "n_subjects": int(len(subjects))}
            cal_mask = np.ones(len(y), bool)
        else:
            frac = float(self.calibration_fraction)
            if not 0.0 < frac < 1.0:
                raise ValueError(f"calibration_fraction={frac}: expected a share in (0, 1)")
            n_cal = held_out_subjects(len(subjects), frac, self.min_calibration_subjects)
            if n_cal < 1 or n_cal >= len(subjects):
                raise ValueError(f"calibration_fraction={frac} of {len(subjects)} subjects leaves no "
                                 "training or no calibration subjects")
            held = set(rng.choice(subjects, n_cal, replace=False))
            cal_mask = np.array([g in held for g in groups])
            split_model = clone(self.estimator).fit(X[~cal_mask].reset_index(drop=True), y[~cal_mask])
            oof[cal_mask] = np.asarray(split_model.predict(X[cal_mask].reset_index(drop=True)), dtype=float).ravel()
            details = {"calibration_fraction": frac, "n_calibration_subjects": int(n_cal),
                       "n_training_subjects": int(len(subjects) - n_cal)}
            if self.method == "split-refit":  # the scores stay the split model's; the estimate is the full fit's
                self.split_estimator_ = split_model
                self.estimator_ = clone(self.estimator).fit(X, y)
                details["refit_subjects"] = int(len(subjects))
            else:
                self.estimator_ = split_model
        sex = X["sex"].to_numpy() if "sex" in X.columns else np.full(len(y), "")
        mondrian = self.mondrian if "sex" in X.columns else "none"
        try:
            self.calibration_ = calibrate(y[cal_mask], oof[cal_mask], sex[cal_mask], method=self.method,
                                          normalise=self.normalise, mondrian=mondrian, details=details,
                                          rule=self.rule)
            self.calibration_error_ = None
        except CalibrationError as exc:  # the model stands; it just has no intervals
            self.calibration_, self.calibration_error_ = None, str(exc)
        self.failures_ = dict(getattr(self.estimator_, "failures_", {}) or {})
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.estimator_.predict(X)

    def predict_with_reasons(self, X: pd.DataFrame) -> tuple[np.ndarray, dict]:
        """The wrapped model's predictions and reasons (:mod:`smi_data.reasons`)."""
        from smi_data.reasons import predict_with_reasons

        return predict_with_reasons(self.estimator_, X)

    def predict_table(self, X: pd.DataFrame) -> pd.DataFrame:
        """``smi_pred`` and the columns of :meth:`Calibration.table` for each row of ``X``."""
        y_hat = np.asarray(self.predict(X), dtype=float).ravel()
        if self.calibration_ is None:
            raise CalibrationError(f"no intervals: {self.calibration_error_}")
        dev = X["reference_device"].to_numpy() if "reference_device" in X.columns else "BIA"
        df = self.calibration_.table(y_hat, X["sex"].to_numpy(), dev)
        df.insert(0, "smi_pred", y_hat)
        return df


# --------------------------------------------------------------------------- model folder
def save_calibration(calibration: Calibration, model_dir: str | os.PathLike, *, model_meta: dict) -> Path:
    """Write ``intervals.json`` beside ``model.json``; it names the model it belongs to."""
    from .runs import atomic_write_json

    d = calibration.check().to_json()
    d["model"] = {"model": model_meta.get("model_name", model_meta.get("model")), "family": model_meta.get("family"),
                  "view": model_meta.get("view"), "created": model_meta.get("created")}
    return atomic_write_json(Path(model_dir) / CALIBRATION_FILE, d)


def load_calibration(model_dir: str | os.PathLike, *, model_meta: dict) -> Calibration | None:
    """Read and check ``intervals.json``; None when the folder has none (a model trained without intervals).

    Raises
    ------
    CalibrationError
        Damaged numbers, another format, or a file written for another model.
    """
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        if model_meta.get("intervals"):
            raise CalibrationError(f"{path}: missing, but model.json says the model was trained with intervals; "
                                   "the model folder is incomplete: retrain the model")
        return None
    if path.is_symlink():
        raise CalibrationError(f"{path}: a symbolic link; a model folder's files must be its own")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: not valid JSON ({exc}); retrain the model") from None
    cal = Calibration.from_json(d, str(path))
    mine = d.get("model") or {}
    theirs = {"model": model_meta.get("model_name", model_meta.get("model")), "family": model_meta.get("family"),
              "view": model_meta.get("view"), "created": model_meta.get("created")}
    if mine != theirs:
        raise CalibrationError(f"{path}: written for model {mine}, but model.json is {theirs}; the files are from "
                               "different trainings: retrain the model")
    return cal
