"""Synthetic regression with known noise: coverage of the conformal schemes, averaged over many
training sets of the benchmark's size (80 people), for a line and for a flexible model (XGBoost).

python docs/scripts/intervals/synth.py REPS
"""
import sys

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from smi_data.conformal import IntervalRegressor


class LineOnX(RegressorMixin, BaseEstimator):
    def fit(self, X, y):
        A = np.c_[np.ones(len(X)), X[["x", "x2"]].to_numpy(float)]
        self.coef_ = np.linalg.lstsq(A, np.asarray(y, float), rcond=None)[0]
        return self

    def predict(self, X):
        return self.coef_[0] + X[["x", "x2"]].to_numpy(float) @ self.coef_[1:]


class XGB(RegressorMixin, BaseEstimator):
    def __init__(self, random_state=0):
        self.random_state = random_state

    def fit(self, X, y):
        from xgboost import XGBRegressor

        self.m_ = XGBRegressor(n_estimators=300, learning_rate=0.05, max_depth=3, subsample=0.8, n_jobs=1,
                               random_state=self.random_state).fit(X[["x", "x2"]].to_numpy(float), y)
        return self

    def predict(self, X):
        return self.m_.predict(X[["x", "x2"]].to_numpy(float))


def synthetic(n, rng):
    """SMI-like: y = 4 + 0.8 x + 0.3 sin(2 x) + 0.2 x2 + e, e ~ N(0, 0.04 mu) (relative noise, sd ~ 0.25)."""
    x = rng.uniform(0, 5, n)
    x2 = rng.normal(0, 1, n)
    mu = 4 + 0.8 * x + 0.3 * np.sin(2 * x) + 0.2 * x2
    y = mu + rng.normal(0, 0.04 * mu)
    sex = np.where(np.arange(n) % 2 == 0, "M", "F")
    return pd.DataFrame({"subject_id": [f"S{i}" for i in range(n)], "sex": sex, "x": x, "x2": x2}), y


reps = int(sys.argv[1])
rng = np.random.default_rng(7)
rows = []
for rep in range(reps):
    X, y = synthetic(80, rng)
    Xt, yt = synthetic(2000, rng)
    for name, est in (("line", LineOnX()), ("xgb", XGB(rep))):
        for method, k, norm, mond, rule in (("cv", 5, "relative", "sex", "conservative"),
                                            ("cv", 5, "relative", "sex", "midpoint"),
                                            ("cv", 10, "relative", "sex", "midpoint"),
                                            ("cv", 5, "relative", "none", "midpoint"),
                                            ("split", 5, "relative", "sex", "midpoint"),
                                            ("split-refit", 5, "relative", "sex", "midpoint")):
            m = IntervalRegressor(est, method=method, n_splits=k, normalise=norm, mondrian=mond, random_state=rep,
                                  min_calibration_subjects=24, rule=rule).fit(X, y)
            p = m.predict(Xt)
            iv = m.calibration_.intervals(p, Xt["sex"])
            for c in (0.90, 0.95):
                lo, hi = iv[c][:, 0], iv[c][:, 1]
                rows.append(dict(model=name, method=f"{method}/K{k}" if method == "cv" else method, norm=norm,
                                 mondrian=mond, rule=rule, rep=rep, level=c,
                                 coverage=np.mean((yt >= lo) & (yt <= hi)), width=np.mean(hi - lo),
                                 mape=100 * np.mean(np.abs(p - yt) / yt)))
df = pd.DataFrame(rows)
df.to_csv(f"synth-{reps}.csv", index=False)
g = df.groupby(["model", "method", "norm", "mondrian", "rule", "level"]).agg(
    coverage=("coverage", "mean"), cov_sd=("coverage", "std"), width=("width", "mean"), mape=("mape", "mean"))
g["se_mean"] = g["cov_sd"] / np.sqrt(reps)
print(g.round(4).to_string())
