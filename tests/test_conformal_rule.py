"""The conformal quantile rule: which order statistic makes the interval, and old files."""

import json
import math

import numpy as np
import pytest

from smi_data.conformal import Calibration, CalibrationError, crepes_confidence


def _upper_rank(cal, n, level):
    """Rank (1 = smallest) of the score crepes used for the upper bound at y_hat = 0."""
    hi = cal.intervals([0.0], levels=(level,))[level][0, 1]
    return int(np.searchsorted(np.sort(np.abs(cal.scores["all"])), hi - 1e-12) + 1)


@pytest.mark.parametrize("n", [19, 24, 29, 30, 38, 39, 40, 57, 78, 80])
def test_midpoint_takes_the_order_statistic_nearest_nominal(n):
    """38 scores (a sex's bin in a 100-person cohort's training fold, two photos refused):
    the conservative rule takes the largest (97.4 % on average), the midpoint rule the 37th
    (94.9 %); the midpoint's k / (n + 1) is never further than 1 / (2 (n + 1)) from nominal."""
    s = np.linspace(0.01, 1.0, n)
    for level in (0.90, 0.95):
        mid = _upper_rank(Calibration("cv", "none", "none", "none", {"all": s.tolist()}, rule="midpoint"), n, level)
        con = _upper_rank(Calibration("cv", "none", "none", "none", {"all": s.tolist()}, rule="conservative"), n,
                          level)
        assert abs(mid / (n + 1) - level) <= 0.5 / (n + 1) + 1e-12
        assert con >= mid and con / (n + 1) >= level - 1e-12
        assert mid == math.floor(level * (n + 1) + 0.5)
        if n == 38 and level == 0.95:
            assert (mid, con) == (37, 38)
        if n == 24 and level == 0.90:  # 22.5: equally near 22 and 23, the wider is taken
            assert mid == 23


def test_p_values_agree_with_the_intervals_under_both_rules():
    rng = np.random.default_rng(0)
    s = np.sort(rng.normal(size=38)).tolist()
    ys = np.linspace(-4, 4, 801)
    for rule in ("midpoint", "conservative"):
        cal = Calibration("cv", "none", "none", "none", {"all": s}, rule=rule)
        p = cal.p_values(np.zeros_like(ys), ys)
        for c in (0.90, 0.95):
            iv = cal.intervals(np.zeros_like(ys), levels=(c,))[c]
            inside = (ys >= iv[:, 0]) & (ys <= iv[:, 1])
            agree = p >= 1 - c - 1e-12 if rule == "midpoint" else p > 1 - c
            assert np.array_equal(inside, agree), (rule, c)


def test_version_1_files_keep_their_conservative_rule():
    scores = {"all": np.linspace(-1, 1, 38).tolist()}
    d = Calibration("cv", "none", "none", "none", scores).to_json()
    assert d["format_version"] == 2 and d["rule"] == "midpoint"
    old = json.loads(json.dumps(d))
    old["format_version"] = 1
    del old["rule"]
    assert Calibration.from_json(old).rule == "conservative"
    assert Calibration.from_json(d).rule == "midpoint"
    d["rule"] = "magic"
    with pytest.raises(CalibrationError, match="rule"):
        Calibration.from_json(d)
    assert crepes_confidence(38, 0.95, "conservative") == 0.95
