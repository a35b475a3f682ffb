"""Agreement metrics between a reference SMI and an estimate.

Pure functions on 1-D arrays. By convention ``y_true`` is the reference
measurement (BIA or DXA SMI, kg/m²) and ``y_pred`` the estimate from the photo;
differences are always ``y_pred - y_true`` (estimate minus reference).

Every function checks its input up front and raises :class:`ValueError` with an
exact message for: arrays that are not 1-D, lengths that differ, empty input,
NaN or infinite values (drop failed predictions first; the benchmark harness
does this and reports how many it dropped), and too few pairs for the metric.
Quantities that are mathematically undefined for valid input (Pearson r of a
constant prediction, a CCC confidence interval at n = 2, sensitivity with no
positives, ...) come back as NaN, never as an exception: one degenerate fold
must not kill a benchmark.

References
----------
.. [Lin1989] Lin LI. A concordance correlation coefficient to evaluate
   reproducibility. *Biometrics* 1989; 45: 255-268. doi:10.2307/2532051
.. [Lin2000] Lin LI. A note on the concordance correlation coefficient.
   *Biometrics* 2000; 56: 324-325. doi:10.1111/j.0006-341X.2000.00324.x
.. [McBride2005] McBride GB. A proposal for strength-of-agreement criteria for
   Lin's concordance correlation coefficient. NIWA Client Report HAM2005-062, 2005.
.. [BA1999] Bland JM, Altman DG. Measuring agreement in method comparison
   studies. *Stat Methods Med Res* 1999; 8: 135-160. doi:10.1177/096228029900800204
.. [AWGS2019] Chen L-K, et al. *J Am Med Dir Assoc* 2020; 21: 300-307.e2.
   doi:10.1016/j.jamda.2019.12.012 (cut-offs in :mod:`smi_data.cutoffs`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from smi_data.cutoffs import smi_cutoffs

__all__ = [
    "CCCResult",
    "BlandAltmanResult",
    "ScreeningResult",
    "mape",
    "mae",
    "rmse",
    "pearson_r",
    "ccc",
    "mcbride_strength",
    "bland_altman",
    "screening",
    "agreement_table",
    "AGREEMENT_KEYS",
]

#: Keys of :func:`agreement_table`, in order.
AGREEMENT_KEYS = (
    "n",
    "mape",
    "mae",
    "rmse",
    "pearson_r",
    "ccc",
    "ccc_lower",
    "ccc_upper",
    "ba_bias",
    "ba_sd",
    "ba_loa_lower",
    "ba_loa_upper",
    "ba_prop_slope",
    "ba_prop_intercept",
    "ba_prop_p",
    "sens",
    "spec",
    "ppv",
    "npv",
    "auc",
    "tp",
    "fp",
    "tn",
    "fn",
    "prevalence",
)


# ----------------------------------------------------------------------------- checks
def _as_1d(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric: could not convert it to float") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_pair(y_true, y_pred, *, min_n: int = 1, func: str = "metric") -> tuple[np.ndarray, np.ndarray]:
    """Convert to float 1-D arrays and check them; raise ValueError with an exact message."""
    t = _as_1d(y_true, "y_true")
    p = _as_1d(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true and y_pred have different lengths ({t.shape[0]} and {p.shape[0]})")
    n = t.shape[0]
    if n == 0:
        raise ValueError(f"{func}: y_true and y_pred are empty")
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf), first at index {first}: "
                "drop those pairs before computing agreement metrics"
            )
    if n < min_n:
        raise ValueError(f"{func} needs at least {min_n} pairs, got {n}")
    return t, p


# ----------------------------------------------------------------------------- error metrics
def mape(y_true, y_pred) -> float:
    """Mean absolute percentage error.

    .. math:: \\mathrm{MAPE} = \\frac{100}{n} \\sum_i \\frac{|y_i - \\hat y_i|}{|y_i|}

    Parameters
    ----------
    y_true : array_like, shape (n,)
        Reference SMI (kg/m²); must not contain 0.
    y_pred : array_like, shape (n,)
        Estimated SMI (kg/m²).

    Returns
    -------
    float
        MAPE in percent (0 = perfect). Equals scikit-learn's
        ``mean_absolute_percentage_error`` × 100 for non-zero ``y_true``.

    Raises
    ------
    ValueError
        On bad input (see module docstring) or a zero reference value.
    """
    t, p = _check_pair(y_true, y_pred, func="mape")
    zero = t == 0
    if zero.any():
        raise ValueError(
            f"mape is undefined where y_true is 0 ({int(zero.sum())} value(s), first at index "
            f"{int(np.flatnonzero(zero)[0])})"
        )
    return float(100.0 * np.mean(np.abs(t - p) / np.abs(t)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error, :math:`\\frac{1}{n}\\sum_i |y_i - \\hat y_i|`, in the unit of the input (kg/m²)."""
    t, p = _check_pair(y_true, y_pred, func="mae")
    return float(np.mean(np.abs(t - p)))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error, :math:`\\sqrt{\\frac{1}{n}\\sum_i (y_i - \\hat y_i)^2}`, in kg/m²."""
    t, p = _check_pair(y_true, y_pred, func="rmse")
    return float(np.sqrt(np.mean((t - p) ** 2)))


def pearson_r(y_true, y_pred) -> float:
    """Pearson product-moment correlation.

    .. math:: r = \\frac{\\sum_i (x_i - \\bar x)(y_i - \\bar y)}
                        {\\sqrt{\\sum_i (x_i - \\bar x)^2 \\sum_i (y_i - \\bar y)^2}}

    Parameters
    ----------
    y_true, y_pred : array_like, shape (n,), n >= 2

    Returns
    -------
    float
        r in [-1, 1], dimensionless. **NaN** (no warning) when either input is
        constant, where r is undefined. At n = 2 it is ±1 for any two distinct
        points.
    """
    t, p = _check_pair(y_true, y_pred, min_n=2, func="pearson_r")
    dt, dp = t - t.mean(), p - p.mean()
    sxx, syy = float(np.dot(dt, dt)), float(np.dot(dp, dp))
    if sxx == 0.0 or syy == 0.0:
        return float("nan")
    r = float(np.dot(dt, dp)) / math.sqrt(sxx * syy)
    return float(min(1.0, max(-1.0, r)))


# ----------------------------------------------------------------------------- CCC
class CCCResult(NamedTuple):
    """Lin's concordance correlation coefficient with its confidence interval."""

    ccc: float
    lower: float
    upper: float


def ccc(y_true, y_pred, alpha: float = 0.05) -> CCCResult:
    """Lin's concordance correlation coefficient with a Fisher-z confidence interval.

    Point estimate (Lin 1989, eq. 2) with **1/n moments** as in Lin's paper.
    (With 1/(n-1) sample variances and covariance the squared mean difference
    is not rescaled, so that variant gives a slightly larger value.)

    .. math::

        \\hat\\rho_c = \\frac{2 s_{xy}}{s_x^2 + s_y^2 + (\\bar x - \\bar y)^2},
        \\quad s_x^2 = \\tfrac1n\\sum (x_i-\\bar x)^2,\\;
        s_{xy} = \\tfrac1n\\sum (x_i-\\bar x)(y_i-\\bar y).

    Confidence interval: :math:`z = \\operatorname{artanh}\\hat\\rho_c` is
    asymptotically normal with variance (Lin 1989 as corrected in Lin 2000; the
    form used by R's ``epiR::epi.ccc`` and ``DescTools::CCC``)

    .. math::

        \\sigma_z^2 = \\frac{1}{n-2}\\left[
            \\frac{(1-r^2)\\rho_c^2}{(1-\\rho_c^2)\\,r^2}
          + \\frac{2\\rho_c^3(1-\\rho_c)\\,u^2}{r\\,(1-\\rho_c^2)^2}
          - \\frac{\\rho_c^4 u^4}{2 r^2 (1-\\rho_c^2)^2}\\right],
        \\quad u = \\frac{\\bar x - \\bar y}{\\sqrt{s_x s_y}},

    with r Pearson's correlation and :math:`s_x, s_y` the 1/n standard
    deviations. The interval is
    :math:`\\tanh(z \\mp z_{1-\\alpha/2}\\,\\sigma_z)`. It is computed with
    :math:`\\rho_c / r = 2 s_x s_y / (s_x^2 + s_y^2 + (\\bar x-\\bar y)^2)` so
    that r = 0 (but non-constant data) still gives an interval.

    Parameters
    ----------
    y_true : array_like, shape (n,), n >= 2
        Reference SMI (kg/m²).
    y_pred : array_like, shape (n,)
        Estimated SMI (kg/m²).
    alpha : float, default 0.05
        1 - confidence level (0.05 gives a 95 % interval).

    Returns
    -------
    CCCResult
        ``(ccc, lower, upper)``, dimensionless, in [-1, 1].

        - ``ccc`` is NaN only when both inputs are the same constant (0/0).
          A constant prediction of a varying reference gives ccc = 0.
        - ``lower``/``upper`` are NaN where the interval is undefined: n <= 2
          (variance has n - 2 in the denominator), either input constant
          (u is infinite), or :math:`|\\hat\\rho_c| = 1` (z is infinite).

    Raises
    ------
    ValueError
        On bad input (see module docstring) or ``alpha`` outside (0, 1).
    """
    if not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    t, p = _check_pair(y_true, y_pred, min_n=2, func="ccc")
    n = t.shape[0]
    mx, my = float(t.mean()), float(p.mean())
    dx, dy = t - mx, p - my
    sxx = float(np.mean(dx * dx))
    syy = float(np.mean(dy * dy))
    sxy = float(np.mean(dx * dy))
    denom = sxx + syy + (mx - my) ** 2
    if denom == 0.0:
        return CCCResult(float("nan"), float("nan"), float("nan"))
    rho_c = 2.0 * sxy / denom
    rho_c = min(1.0, max(-1.0, rho_c))
    nan = float("nan")
    if n <= 2 or sxx == 0.0 or syy == 0.0 or abs(rho_c) >= 1.0:
        return CCCResult(rho_c, nan, nan)

    sx, sy = math.sqrt(sxx), math.sqrt(syy)
    r = min(1.0, max(-1.0, sxy / (sx * sy)))
    q = 2.0 * sx * sy / denom  # = rho_c / r (Lin's bias-correction factor C_b)
    u2 = (mx - my) ** 2 / (sx * sy)
    one_m = 1.0 - rho_c**2
    var_z = (
        (1.0 - r**2) * q**2 / one_m
        + 2.0 * rho_c**2 * (1.0 - rho_c) * u2 * q / one_m**2
        - rho_c**2 * q**2 * u2**2 / (2.0 * one_m**2)
    ) / (n - 2)
    if not (var_z > 0.0 and math.isfinite(var_z)):
        return CCCResult(rho_c, nan, nan)
    z = math.atanh(rho_c)
    half = NormalDist().inv_cdf(1.0 - float(alpha) / 2.0) * math.sqrt(var_z)
    return CCCResult(rho_c, math.tanh(z - half), math.tanh(z + half))


def mcbride_strength(ccc_value: float) -> str:
    """Strength of agreement for a CCC by McBride (2005).

    ========================  ==================
    CCC                       strength
    ========================  ==================
    < 0.90                    ``"poor"``
    0.90 <= CCC < 0.95        ``"moderate"``
    0.95 <= CCC <= 0.99       ``"substantial"``
    > 0.99                    ``"almost perfect"``
    NaN                       ``"undefined"``
    ========================  ==================

    McBride gives the bands as "0.90-0.95" etc.; the boundary values are
    assigned to the upper band except 0.99 (McBride: "> 0.99" is almost perfect).
    """
    value = float(ccc_value)
    if math.isnan(value):
        return "undefined"
    if value < 0.90:
        return "poor"
    if value < 0.95:
        return "moderate"
    if value <= 0.99:
        return "substantial"
    return "almost perfect"


# ----------------------------------------------------------------------------- Bland-Altman
@dataclass(frozen=True)
class BlandAltmanResult:
    """Bland-Altman agreement; all values in kg/m² except the slope and p."""

    bias: float
    sd: float
    loa_lower: float
    loa_upper: float
    prop_bias_slope: float
    prop_bias_intercept: float
    prop_bias_p: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def bland_altman(y_true, y_pred, *, z: float = 1.96) -> BlandAltmanResult:
    """Bland-Altman bias, 95 % limits of agreement and proportional bias.

    With differences :math:`d_i = \\hat y_i - y_i` (estimate minus reference)
    and means :math:`m_i = (\\hat y_i + y_i)/2`:

    - bias :math:`\\bar d`;
    - SD :math:`s_d = \\sqrt{\\sum (d_i-\\bar d)^2/(n-1)}` (sample SD, n - 1);
    - limits of agreement :math:`\\bar d \\pm 1.96\\,s_d` (Bland & Altman 1999);
    - proportional bias: ordinary least squares :math:`d_i = a + b\\,m_i`;
      ``prop_bias_slope`` = b (dimensionless), ``prop_bias_intercept`` = a
      (kg/m²), ``prop_bias_p`` the two-sided t-test p-value of b = 0 with
      n - 2 degrees of freedom (as ``scipy.stats.linregress``).

    Parameters
    ----------
    y_true : array_like, shape (n,), n >= 2
        Reference SMI (kg/m²).
    y_pred : array_like, shape (n,)
        Estimated SMI (kg/m²).
    z : float, default 1.96
        Multiplier of the SD for the limits.

    Returns
    -------
    BlandAltmanResult
        Slope and intercept are NaN when all means are equal; the p-value is
        NaN at n = 2 (no residual degrees of freedom) or when the slope is
        undefined; it is 0 for an exact non-zero linear trend.
    """
    t, p = _check_pair(y_true, y_pred, min_n=2, func="bland_altman")
    n = t.shape[0]
    d = p - t
    m = (p + t) / 2.0
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    nan = float("nan")
    dm = m - m.mean()
    sxx = float(np.dot(dm, dm))
    if sxx == 0.0:
        slope = intercept = pval = nan
    else:
        slope = float(np.dot(dm, d - bias)) / sxx
        intercept = bias - slope * float(m.mean())
        if n <= 2:
            pval = nan
        else:
            resid = d - (intercept + slope * m)
            sse = float(np.dot(resid, resid))
            se = math.sqrt(sse / (n - 2) / sxx)
            if se == 0.0:
                pval = 0.0 if slope != 0.0 else nan
            else:
                from scipy.special import stdtr  # light: no scipy.stats import

                tstat = abs(slope) / se
                pval = float(2.0 * stdtr(n - 2, -tstat))
    return BlandAltmanResult(
        bias=bias,
        sd=sd,
        loa_lower=bias - z * sd,
        loa_upper=bias + z * sd,
        prop_bias_slope=slope,
        prop_bias_intercept=intercept,
        prop_bias_p=pval,
        n=n,
    )


# ----------------------------------------------------------------------------- screening
@dataclass(frozen=True)
class ScreeningResult:
    """Screening for AWGS 2019 low muscle mass; positive = low SMI."""

    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    auc: float
    tp: int
    fp: int
    tn: int
    fn: int
    prevalence: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def _ratio(num: int, den: int) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def _roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney statistic with mid-ranks (ties count 1/2)."""
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=float)
    # average rank for each run of tied scores
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def screening(y_true, y_pred, sex, device="BIA") -> ScreeningResult:
    """Screening performance of the estimate for AWGS 2019 low muscle mass.

    A person is **positive** (low muscle mass) when the reference SMI is below
    the sex- and device-specific cut-off :math:`c` (:func:`smi_data.cutoffs.smi_cutoff`:
    BIA M 7.0 / F 5.7, DXA M 7.0 / F 5.4 kg/m²) and **screened positive** when
    the estimate is below the same cut-off.

    - sensitivity = TP / (TP + FN), specificity = TN / (TN + FP),
      PPV = TP / (TP + FP), NPV = TN / (TN + FN), prevalence = (TP + FN) / n;
    - ROC AUC of the continuous score :math:`c - \\hat y` (how far below its
      own cut-off the estimate lies), so men and women pooled are ranked on a
      common scale. Ties count one half (Mann-Whitney), equal to
      ``sklearn.metrics.roc_auc_score``.

    Parameters
    ----------
    y_true : array_like, shape (n,)
        Reference SMI (kg/m²).
    y_pred : array_like, shape (n,)
        Estimated SMI (kg/m²).
    sex : str or array_like of str, shape (n,)
        'M' or 'F' per person (a scalar applies to all).
    device : {'BIA', 'DXA'}, None or array_like, shape (n,), default 'BIA'
        Reference device per person or for all; missing entries (None, NaN,
        '') use BIA, see :mod:`smi_data.cutoffs`.

    Returns
    -------
    ScreeningResult
        Proportions in [0, 1]; a proportion whose denominator is 0 (e.g.
        sensitivity with no positives) is NaN, and AUC is NaN unless both
        classes are present.

    Raises
    ------
    ValueError
        On bad input, an unknown sex or device, or ``sex``/``device`` whose
        length differs from ``y_true``.
    """
    t, p = _check_pair(y_true, y_pred, func="screening")
    n = t.shape[0]
    for name, val in (("sex", sex), ("device", device)):
        if np.ndim(val) != 0 and np.shape(val)[0] != n:
            raise ValueError(f"{name} has length {np.shape(val)[0]} but y_true has {n}")
    cut = np.broadcast_to(smi_cutoffs(sex, device), (n,))
    truth = t < cut
    test = p < cut
    tp = int(np.sum(truth & test))
    fn = int(np.sum(truth & ~test))
    fp = int(np.sum(~truth & test))
    tn = int(np.sum(~truth & ~test))
    return ScreeningResult(
        sensitivity=_ratio(tp, tp + fn),
        specificity=_ratio(tn, tn + fp),
        ppv=_ratio(tp, tp + fp),
        npv=_ratio(tn, tn + fn),
        auc=_roc_auc(truth, cut - p),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        prevalence=_ratio(tp + fn, n),
        n=n,
    )


# ----------------------------------------------------------------------------- all at once
def agreement_table(y_true, y_pred, sex=None, device=None, *, alpha: float = 0.05) -> dict:
    """Every agreement metric at once, as one flat dict for a results table.

    Parameters
    ----------
    y_true : array_like, shape (n,), n >= 2
        Reference SMI (kg/m²); finite, non-zero.
    y_pred : array_like, shape (n,)
        Estimated SMI (kg/m²); finite (drop failed predictions first).
    sex : str or array_like of str, shape (n,), optional
        'M'/'F'; without it the screening entries are NaN.
    device : str, None or array_like, shape (n,), optional
        Reference device; None or missing entries mean BIA.
    alpha : float, default 0.05
        For the CCC confidence interval.

    Returns
    -------
    dict
        Keys :data:`AGREEMENT_KEYS`: ``n``; ``mape`` (%); ``mae``, ``rmse``
        (kg/m²); ``pearson_r``; ``ccc``, ``ccc_lower``, ``ccc_upper``;
        ``ba_bias``, ``ba_sd``, ``ba_loa_lower``, ``ba_loa_upper`` (kg/m²),
        ``ba_prop_slope``, ``ba_prop_intercept``, ``ba_prop_p``; ``sens``,
        ``spec``, ``ppv``, ``npv``, ``auc``, ``tp``, ``fp``, ``tn``, ``fn``,
        ``prevalence`` (screening; NaN when ``sex`` is None). Values are
        Python floats, ``n`` and the counts ints.
    """
    t, p = _check_pair(y_true, y_pred, min_n=2, func="agreement_table")
    c = ccc(t, p, alpha=alpha)
    ba = bland_altman(t, p)
    out = {
        "n": int(t.shape[0]),
        "mape": mape(t, p),
        "mae": mae(t, p),
        "rmse": rmse(t, p),
        "pearson_r": pearson_r(t, p),
        "ccc": c.ccc,
        "ccc_lower": c.lower,
        "ccc_upper": c.upper,
        "ba_bias": ba.bias,
        "ba_sd": ba.sd,
        "ba_loa_lower": ba.loa_lower,
        "ba_loa_upper": ba.loa_upper,
        "ba_prop_slope": ba.prop_bias_slope,
        "ba_prop_intercept": ba.prop_bias_intercept,
        "ba_prop_p": ba.prop_bias_p,
    }
    if sex is None:
        nan = float("nan")
        out.update({k: nan for k in ("sens", "spec", "ppv", "npv", "auc", "tp", "fp", "tn", "fn", "prevalence")})
    else:
        s = screening(t, p, sex, device)
        out.update(
            {
                "sens": s.sensitivity,
                "spec": s.specificity,
                "ppv": s.ppv,
                "npv": s.npv,
                "auc": s.auc,
                "tp": s.tp,
                "fp": s.fp,
                "tn": s.tn,
                "fn": s.fn,
                "prevalence": s.prevalence,
            }
        )
    return {k: out[k] for k in AGREEMENT_KEYS}
