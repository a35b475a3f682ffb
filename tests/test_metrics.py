"""Agreement metrics and AWGS 2019 cut-offs, checked against independent computations."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import (
    confusion_matrix,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    roc_auc_score,
)

from smi_data import cutoffs, metrics
from smi_data.cutoffs import low_muscle_mass, smi_cutoff, smi_cutoffs
from smi_data.metrics import (
    AGREEMENT_KEYS,
    agreement_table,
    bland_altman,
    ccc,
    mae,
    mape,
    mcbride_strength,
    pearson_r,
    rmse,
    screening,
)

Z975 = 1.959963984540054  # standard normal 97.5 % quantile


def _cohort(n: int, seed: int = 0, bias: float = 0.1, noise: float = 0.35):
    """Reference SMI like the study's (7.0 ± 1.1 kg/m²) and a noisy, biased estimate."""
    rng = np.random.default_rng(seed)
    sex = np.where(rng.random(n) < 0.5, "M", "F")
    ref = np.where(sex == "M", 7.6, 6.2) + rng.normal(0.0, 0.8, n)
    est = ref + bias + rng.normal(0.0, noise, n) + 0.05 * (ref - ref.mean())
    return ref, est, sex


# ----------------------------------------------------------------------------- basic errors
def test_error_metrics_match_scikit_learn_and_scipy():
    ref, est, _ = _cohort(80)
    assert mape(ref, est) == pytest.approx(100 * mean_absolute_percentage_error(ref, est), rel=1e-12)
    assert mae(ref, est) == pytest.approx(mean_absolute_error(ref, est), rel=1e-12)
    assert rmse(ref, est) == pytest.approx(math.sqrt(mean_squared_error(ref, est)), rel=1e-12)
    assert pearson_r(ref, est) == pytest.approx(stats.pearsonr(ref, est)[0], rel=1e-12)


def test_error_metrics_hand_values():
    ref = [5.0, 8.0, 10.0]
    est = [6.0, 6.0, 10.0]
    assert mape(ref, est) == pytest.approx(100 / 3 * (1 / 5 + 2 / 8 + 0))
    assert mae(ref, est) == pytest.approx(1.0)
    assert rmse(ref, est) == pytest.approx(math.sqrt(5 / 3))
    assert pearson_r([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_metrics_accept_lists_and_pandas():
    pd = pytest.importorskip("pandas")
    ref, est, _ = _cohort(20)
    assert mae(pd.Series(ref), list(est)) == pytest.approx(mae(ref, est))


# ----------------------------------------------------------------------------- CCC
def _ccc_from_definition(x, y):
    """Lin 1989 eq. 2 with 1/n moments, written with np.cov(bias=True)."""
    cov = np.cov(x, y, bias=True)
    return 2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (np.mean(x) - np.mean(y)) ** 2)


def _ccc_ci_desctools_form(x, y, alpha=0.05):
    """Independent transcription of the CI as DescTools::CCC / epiR::epi.ccc write it:
    standard error of rho_c first, then divided by (1 - rho_c^2) for the z scale."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    sx2, sy2 = x.var(), y.var()  # 1/n
    p = _ccc_from_definition(x, y)
    r = np.corrcoef(x, y)[0, 1]
    u = (y.mean() - x.mean()) / (sx2 * sy2) ** 0.25
    sep = math.sqrt(
        ((1 - r**2) * p**2 * (1 - p**2) / r**2 + 2 * p**3 * (1 - p) * u**2 / r - 0.5 * p**4 * u**4 / r**2)
        / (n - 2)
    )
    t = math.atanh(p)
    set_ = sep / (1 - p**2)
    q = stats.norm.ppf(1 - alpha / 2)
    return math.tanh(t - q * set_), math.tanh(t + q * set_)


def test_ccc_hand_worked_examples():
    # x = 1,2,3; y = x + 1: s_x² = s_y² = s_xy = 2/3, (x̄ - ȳ)² = 1 → ρc = (4/3) / (4/3 + 1) = 4/7
    assert ccc([1, 2, 3], [2, 3, 4]).ccc == pytest.approx(4 / 7, abs=1e-15)
    # x = 1,2,3,4; y = 1,3,2,4: equal means, s_x² = s_y² = 1.25, s_xy = 1.0 → ρc = 2/2.5 = 0.8 (= r).
    # With u = 0 and ρc = r the variance of z reduces to 1/(n - 2) = 1/2, so the 95 % CI is
    # tanh(atanh 0.8 ± 1.96 / √2) = (-0.27964, 0.98620).
    res = ccc([1, 2, 3, 4], [1, 3, 2, 4])
    assert res.ccc == pytest.approx(0.8, abs=1e-15)
    assert res.lower == pytest.approx(-0.279640, abs=1e-6)
    assert res.upper == pytest.approx(0.986196, abs=1e-6)
    assert res.lower == pytest.approx(math.tanh(math.atanh(0.8) - Z975 / math.sqrt(2)), abs=1e-12)


def test_ccc_matches_definition_and_independent_ci():
    ref, est, _ = _cohort(50, seed=3, bias=0.3)
    res = ccc(ref, est)
    assert res.ccc == pytest.approx(_ccc_from_definition(ref, est), rel=1e-12)
    lo, hi = _ccc_ci_desctools_form(ref, est)
    assert res.lower == pytest.approx(lo, rel=1e-10)
    assert res.upper == pytest.approx(hi, rel=1e-10)
    # 1/n convention: the 1/(n-1) variant differs, so a wrong convention is caught
    cov1 = np.cov(ref, est, ddof=1)
    other = 2 * cov1[0, 1] / (cov1[0, 0] + cov1[1, 1] + (ref.mean() - est.mean()) ** 2)
    assert abs(res.ccc - other) > 1e-6


def test_ccc_properties():
    ref, est, _ = _cohort(40, seed=5)
    res = ccc(ref, est)
    assert res.lower < res.ccc < res.upper
    assert ccc(est, ref).ccc == pytest.approx(res.ccc, rel=1e-12)  # symmetric
    assert ccc(ref, est + 0.5).ccc < res.ccc  # a location shift lowers agreement
    assert res.ccc <= abs(pearson_r(ref, est)) + 1e-12  # ρc = r · C_b with C_b ≤ 1
    narrow = ccc(ref, est, alpha=0.10)
    assert res.lower < narrow.lower < narrow.ccc < narrow.upper < res.upper


def test_ccc_interval_narrows_with_n():
    widths = []
    for n in (20, 80, 320):
        ref, est, _ = _cohort(n, seed=11)
        res = ccc(ref, est)
        assert res.lower < res.ccc < res.upper
        widths.append(res.upper - res.lower)
    assert widths[0] > widths[1] > widths[2]


def test_ccc_perfect_agreement_and_bad_alpha():
    x = np.array([5.5, 6.0, 7.2, 8.1])
    res = ccc(x, x)
    assert res.ccc == 1.0
    assert math.isnan(res.lower) and math.isnan(res.upper)  # z = atanh(1) is infinite
    assert ccc(x, 2 * x.mean() - x).ccc == pytest.approx(-1.0)
    with pytest.raises(ValueError, match=re.escape("alpha must be in (0, 1), got 1.5")):
        ccc(x, x, alpha=1.5)


# ----------------------------------------------------------------------------- edge cases
def test_constant_prediction():
    ref = np.array([5.0, 6.0, 7.0, 8.0])
    est = np.full(4, 6.5)
    assert math.isnan(pearson_r(ref, est))
    res = ccc(ref, est)
    assert res.ccc == 0.0  # s_xy = 0 and the denominator is s_x² > 0
    assert math.isnan(res.lower) and math.isnan(res.upper)
    assert mae(ref, est) == pytest.approx(1.0)
    ba = bland_altman(ref, est)
    assert ba.bias == pytest.approx(0.0)
    assert ba.prop_bias_slope == pytest.approx(-2.0)  # d = 6.5 - x, m = (6.5 + x)/2 → d = -2m + 19.5
    assert ba.prop_bias_p == 0.0  # exact linear relation
    # both constant and equal: ρc = 0/0
    assert math.isnan(ccc([6.0, 6.0, 6.0], [6.0, 6.0, 6.0]).ccc)
    # both constant, different: 0 / (x̄ - ȳ)² = 0
    assert ccc([6.0, 6.0, 6.0], [7.0, 7.0, 7.0]).ccc == 0.0


def test_n_equals_two():
    ref, est = [6.0, 7.0], [6.5, 7.1]
    assert pearson_r(ref, est) == pytest.approx(1.0)
    res = ccc(ref, est)
    assert res.ccc == pytest.approx(_ccc_from_definition(np.array(ref), np.array(est)))
    assert math.isnan(res.lower) and math.isnan(res.upper)  # n - 2 = 0
    ba = bland_altman(ref, est)
    assert ba.sd == pytest.approx(np.std([0.5, 0.1], ddof=1))
    assert ba.prop_bias_slope == pytest.approx((0.1 - 0.5) / (7.05 - 6.25))
    assert math.isnan(ba.prop_bias_p)
    table = agreement_table(ref, est, sex=["M", "F"])
    assert table["n"] == 2


@pytest.mark.parametrize("func", [mape, mae, rmse, pearson_r, ccc, bland_altman, agreement_table])
def test_bad_input_raises_clear_errors(func):
    with pytest.raises(ValueError, match=re.escape("y_true and y_pred have different lengths (3 and 2)")):
        func([6.0, 7.0, 8.0], [6.0, 7.0])
    with pytest.raises(ValueError, match=re.escape("y_pred has 1 non-finite value(s) (NaN or inf), first at index 1")):
        func([6.0, 7.0, 8.0], [6.0, np.nan, 8.0])
    with pytest.raises(ValueError, match=re.escape("y_true has 2 non-finite value(s) (NaN or inf), first at index 0")):
        func([np.inf, 7.0, np.nan], [6.0, 7.0, 8.0])
    with pytest.raises(ValueError, match="y_true and y_pred are empty"):
        func([], [])
    with pytest.raises(ValueError, match=re.escape("y_true must be 1-D, got shape (2, 2)")):
        func([[6.0, 7.0], [8.0, 9.0]], [6.0, 7.0])
    with pytest.raises(ValueError, match="y_pred must be numeric"):
        func([6.0, 7.0], ["a", "b"])


@pytest.mark.parametrize("func", [pearson_r, ccc, bland_altman])
def test_single_pair_too_few(func):
    with pytest.raises(ValueError, match=re.escape(f"{func.__name__} needs at least 2 pairs, got 1")):
        func([6.0], [6.5])


def test_single_pair_fine_for_error_metrics():
    assert mae([6.0], [6.5]) == pytest.approx(0.5)
    assert rmse([6.0], [6.5]) == pytest.approx(0.5)


def test_mape_zero_reference():
    with pytest.raises(ValueError,
                       match=re.escape("mape is undefined where y_true is 0 (1 value(s), first at index 1)")):
        mape([6.0, 0.0], [6.0, 1.0])


# ----------------------------------------------------------------------------- Bland-Altman
def test_bland_altman_matches_independent_computation():
    ref, est, _ = _cohort(60, seed=7)
    ba = bland_altman(ref, est)
    d = est - ref
    m = (est + ref) / 2
    assert ba.bias == pytest.approx(d.mean(), rel=1e-12)
    assert ba.sd == pytest.approx(np.std(d, ddof=1), rel=1e-12)
    assert ba.loa_lower == pytest.approx(d.mean() - 1.96 * np.std(d, ddof=1), rel=1e-12)
    assert ba.loa_upper == pytest.approx(d.mean() + 1.96 * np.std(d, ddof=1), rel=1e-12)
    lr = stats.linregress(m, d)
    assert ba.prop_bias_slope == pytest.approx(lr.slope, rel=1e-10)
    assert ba.prop_bias_intercept == pytest.approx(lr.intercept, rel=1e-10)
    assert ba.prop_bias_p == pytest.approx(lr.pvalue, rel=1e-8)
    assert ba.n == 60
    assert set(ba.as_dict()) >= {"bias", "sd", "loa_lower", "loa_upper", "prop_bias_slope"}


def test_bland_altman_sign_is_estimate_minus_reference():
    ba = bland_altman([6.0, 7.0, 8.0], [6.5, 7.5, 8.5])
    assert ba.bias == pytest.approx(0.5)
    assert ba.sd == pytest.approx(0.0)
    assert ba.loa_lower == pytest.approx(0.5) and ba.loa_upper == pytest.approx(0.5)
    assert ba.prop_bias_slope == pytest.approx(0.0)
    assert math.isnan(ba.prop_bias_p)  # exactly zero slope with zero residuals: undefined


# ----------------------------------------------------------------------------- screening
def test_screening_tiny_hand_example():
    # BIA cut-offs M 7.0, F 5.7. truth: low = ref < cut; test: low = est < cut.
    sex = ["M", "M", "M", "F", "F", "F"]
    ref = [6.5, 7.5, 6.8, 5.5, 6.0, 5.9]  # low: T F T | T F F
    est = [6.9, 6.9, 7.2, 5.8, 5.5, 6.2]  # low: T T F | F T F
    # TP idx0; FP idx1, idx4; FN idx2, idx3; TN idx5
    s = screening(ref, est, sex)
    assert (s.tp, s.fp, s.fn, s.tn) == (1, 2, 2, 1)
    assert s.sensitivity == pytest.approx(1 / 3)
    assert s.specificity == pytest.approx(1 / 3)
    assert s.ppv == pytest.approx(1 / 3)
    assert s.npv == pytest.approx(1 / 3)
    assert s.prevalence == pytest.approx(0.5)
    # scores cut - est: pos 0.1, -0.2, -0.1; neg 0.1, 0.2, -0.5 → (1.5 + 1 + 1) / 9 with one tie
    assert s.auc == pytest.approx(3.5 / 9)
    assert s.n == 6


def test_screening_matches_scikit_learn_pooled_sexes_and_devices():
    ref, est, sex = _cohort(120, seed=13, noise=0.5)
    rng = np.random.default_rng(2)
    device = np.where(rng.random(120) < 0.5, "DXA", "BIA")
    s = screening(ref, est, sex, device)
    cut = np.array([smi_cutoff(a, b) for a, b in zip(sex, device)])
    truth, test = ref < cut, est < cut
    tn, fp, fn, tp = confusion_matrix(truth, test, labels=[False, True]).ravel()
    assert (s.tp, s.fp, s.tn, s.fn) == (tp, fp, tn, fn)
    assert 0 < tp and 0 < tn  # the example exercises both classes
    assert s.sensitivity == pytest.approx(tp / (tp + fn))
    assert s.specificity == pytest.approx(tn / (tn + fp))
    assert s.ppv == pytest.approx(tp / (tp + fp))
    assert s.npv == pytest.approx(tn / (tn + fn))
    assert s.auc == pytest.approx(roc_auc_score(truth, cut - est), rel=1e-12)


def test_screening_auc_uses_distance_to_own_cutoff():
    # A low man (6.8 < 7.0) and a normal woman (6.0 ≥ 5.7), both estimated exactly.
    # Ranked by the raw estimate the woman looks "lower" (AUC 0); relative to each
    # one's own cut-off the man is the one below it (AUC 1).
    s = screening([6.8, 6.0], [6.8, 6.0], ["M", "F"])
    assert s.auc == 1.0
    assert roc_auc_score([True, False], [-6.8, -6.0]) == 0.0


def test_screening_undefined_parts_are_nan():
    s = screening([7.5, 8.0, 6.5], [7.4, 6.9, 6.8], "F")  # no woman below 5.7: no positives
    assert (s.tp, s.fn) == (0, 0)
    assert math.isnan(s.sensitivity) and math.isnan(s.ppv) and math.isnan(s.auc)
    assert s.specificity == 1.0 and s.npv == 1.0 and s.prevalence == 0.0


def test_screening_device_matters_for_women():
    ref, est = [5.5, 5.5], [5.6, 5.6]  # between the DXA (5.4) and BIA (5.7) cut-offs
    assert screening(ref, est, "F", "DXA").tp == 0
    assert screening(ref, est, "F", "BIA").tp == 2
    assert screening(ref, est, "F", [None, "DXA"]).tp == 1  # missing device → BIA


def test_screening_bad_sex_or_device():
    with pytest.raises(ValueError, match=re.escape("sex has length 2 but y_true has 3")):
        screening([6.0, 7.0, 8.0], [6.0, 7.0, 8.0], ["M", "F"])
    with pytest.raises(ValueError, match=re.escape("unknown sex 'X': expected 'M' or 'F' at index 1")):
        screening([6.0, 7.0], [6.0, 7.0], ["M", "X"])
    with pytest.raises(ValueError, match=re.escape("unknown reference device 'CT'")):
        screening([6.0, 7.0], [6.0, 7.0], "M", "CT")


# ----------------------------------------------------------------------------- table, McBride
def test_agreement_table_is_flat_and_consistent():
    ref, est, sex = _cohort(50, seed=17)
    t = agreement_table(ref, est, sex)
    assert tuple(t) == AGREEMENT_KEYS
    assert t["n"] == 50
    assert t["mape"] == mape(ref, est)
    c = ccc(ref, est)
    assert (t["ccc"], t["ccc_lower"], t["ccc_upper"]) == (c.ccc, c.lower, c.upper)
    assert t["ba_loa_upper"] == bland_altman(ref, est).loa_upper
    assert t["auc"] == screening(ref, est, sex).auc
    assert all(isinstance(v, (int, float)) and not isinstance(v, np.generic) for v in t.values())
    no_sex = agreement_table(ref, est)
    assert all(math.isnan(no_sex[k]) for k in ("sens", "spec", "ppv", "npv", "auc", "tp"))
    assert no_sex["rmse"] == t["rmse"]


@pytest.mark.parametrize(
    "value, label",
    [(0.5, "poor"), (0.8999, "poor"), (0.90, "moderate"), (0.93, "moderate"), (0.95, "substantial"),
     (0.99, "substantial"), (0.995, "almost perfect"), (float("nan"), "undefined")],
)
def test_mcbride_strength(value, label):
    assert mcbride_strength(value) == label


# ----------------------------------------------------------------------------- cut-offs
def test_awgs_cutoffs_by_sex_and_device():
    assert smi_cutoff("M", "DXA") == 7.0
    assert smi_cutoff("F", "DXA") == 5.4
    assert smi_cutoff("M", "BIA") == 7.0
    assert smi_cutoff("F", "BIA") == 5.7
    assert smi_cutoff("f") == 5.7  # default device BIA, case-insensitive
    assert smi_cutoff(" F ", " dxa ") == 5.4
    for missing in (None, float("nan"), "", "nan", "None"):
        assert smi_cutoff("F", missing) == 5.7
    assert cutoffs.calf_cutoff_cm("M") == 34.0 and cutoffs.calf_cutoff_cm("F") == 33.0
    assert "10.1016/j.jamda.2019.12.012" in cutoffs.AWGS2019_CITATION
    assert "10.1016/j.jamda.2019.12.012" in cutoffs.__doc__


def test_low_muscle_mass_vectorised_and_strict():
    smi = [6.99, 7.0, 5.69, 5.7, 5.39, 5.4]
    sex = ["M", "M", "F", "F", "F", "F"]
    dev = ["BIA", "DXA", "BIA", "BIA", "DXA", "DXA"]
    assert low_muscle_mass(smi, sex, dev).tolist() == [True, False, True, False, True, False]
    assert low_muscle_mass([5.5, 5.5], "F").tolist() == [True, True]
    assert low_muscle_mass([5.5, 5.5], "F", "DXA").dtype == bool
    np.testing.assert_array_equal(smi_cutoffs(["M", "F"], "DXA"), [7.0, 5.4])


def test_cutoff_errors():
    with pytest.raises(ValueError, match=re.escape("unknown sex 'male': expected 'M' or 'F'")):
        smi_cutoff("male")
    with pytest.raises(ValueError, match=re.escape("unknown reference device 'MRI': expected one of BIA, DXA")):
        smi_cutoff("M", "MRI")
    with pytest.raises(ValueError, match="sex has shape"):
        smi_cutoffs(["M", "F", "M"], ["BIA", "DXA"])
    with pytest.raises(ValueError, match="smi has shape"):
        low_muscle_mass([6.0, 6.0, 6.0], ["M", "F"])


def test_metrics_module_is_light():
    # the metrics module must not pull in scikit-learn or torch at import time
    import subprocess
    import sys

    code = "import sys, smi_data.metrics; print('sklearn' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert metrics.__doc__ and "Lin" in metrics.__doc__
