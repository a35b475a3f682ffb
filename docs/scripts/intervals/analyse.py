"""Score interval variants offline on the probe's fits.

python docs/scripts/intervals/analyse.py PROBE.pkl
"""
import math
import pickle
import sys

import numpy as np
import pandas as pd

rows = pickle.load(open(sys.argv[1], "rb"))
LEVELS = (0.90, 0.95)


def sig(p, norm):
    return np.maximum(np.abs(p), 0.5) if norm == "relative" else np.ones_like(p)


RULE = "conservative"


def kth(n, c):
    return math.ceil((n + 1) * c - 1e-9) if RULE == "conservative" else math.ceil((n + 1) * c - 0.5)


def q_hi(s, c):
    """Conformal upper quantile of sorted scores s: the k-th smallest (inf if beyond n)."""
    n = len(s)
    k = kth(n, c)
    return np.inf if k > n else np.sort(s)[k - 1]


def variant(r, centre, norm, mond, rule="conservative"):
    """Per test sample: (lo, hi) at each level."""
    global RULE
    RULE = rule
    y, oof, sex_tr = r["train_y"], r["oof"], r["train_sex"]
    ok = np.isfinite(oof) & np.isfinite(y)
    full = r["test_full"]
    out = {c: np.full((len(full), 2), np.nan) for c in LEVELS}
    bins = {}
    if mond == "sex" and all(((sex_tr == s) & ok).sum() >= 19 for s in ("M", "F")):
        for s in ("M", "F"):
            bins[s] = ok & (sex_tr == s)
        test_bin = r["test_sex"]
    else:
        bins["all"] = ok
        test_bin = np.full(len(full), "all", dtype=object)
    for b, m in bins.items():
        t = test_bin == b
        if centre in ("full", "ens"):
            c_hat = full if centre == "full" else np.nanmean(r["test_folds"], axis=0)
            scores = np.abs(y[m] - oof[m]) / sig(oof[m], norm)
            for c in LEVELS:
                q = q_hi(scores, c)
                s_ = sig(c_hat[t], norm)
                out[c][t, 0] = c_hat[t] - q * s_
                out[c][t, 1] = c_hat[t] + q * s_
        elif centre == "cvplus":
            idx = np.flatnonzero(m)
            R = np.abs(y[idx] - oof[idx]) / sig(oof[idx], norm)
            k_of = r["inner"][idx]
            mu = r["test_folds"][k_of][:, t]  # (n_cal, n_test): the fold model of each calibration sample
            s_ = sig(mu, norm)
            lo_v, hi_v = mu - R[:, None] * s_, mu + R[:, None] * s_
            n = len(idx)
            for c in LEVELS:
                k = kth(n, c)
                hi = np.sort(hi_v, axis=0)[k - 1] if k <= n else np.full(t.sum(), np.inf)
                lo = -np.sort(-lo_v, axis=0)[k - 1] if k <= n else np.full(t.sum(), -np.inf)
                out[c][t, 0], out[c][t, 1] = lo, hi
    return out


VARIANTS = [("full", "relative", "sex"), ("full", "relative", "none"), ("full", "none", "sex"),
            ("full", "none", "none"), ("cvplus", "relative", "sex"), ("cvplus", "none", "none"),
            ("ens", "relative", "sex"), ("full", "relative", "sex", "mid"), ("full", "relative", "none", "mid"),
            ("full", "none", "none", "mid"), ("full", "none", "sex", "mid"), ("cvplus", "relative", "sex", "mid")]
rec = []
for r in rows:
    ok_t = np.isfinite(r["test_full"])
    yt = r["test_y"]
    e_full = np.abs(r["test_full"] - yt)[ok_t]
    e_oof = np.abs(r["oof"] - r["train_y"])[np.isfinite(r["oof"])]
    base = dict(model=r["model"], tier=r["tier"], view=r["view"], repeat=r["repeat"], fold=r["fold"])
    rec.append({**base, "variant": "errors", "mae_test_full": e_full.mean(), "mae_oof": e_oof.mean(),
                "mae_test_ens": np.abs(np.nanmean(r["test_folds"], axis=0) - yt)[ok_t].mean(),
                "mae_test_fold": np.nanmean(np.abs(r["test_folds"] - yt), axis=1).mean()})
    for v in VARIANTS:
        iv = variant(r, *v)
        for i in np.flatnonzero(ok_t):
            d = {**base, "variant": "/".join(v), "sex": r["test_sex"][i], "id": r["test_id"][i]}
            for c in LEVELS:
                lo, hi = iv[c][i]
                d[f"in{int(c * 100)}"] = float(lo <= yt[i] <= hi)
                d[f"w{int(c * 100)}"] = hi - lo
            rec.append(d)
df = pd.DataFrame(rec)
df.to_pickle(sys.argv[1].replace(".pkl", "-scored.pkl"))
err = df[df["variant"] == "errors"].groupby(["model", "tier", "view"])[
    ["mae_oof", "mae_test_fold", "mae_test_full", "mae_test_ens"]].mean()
err["oof/full"] = err["mae_oof"] / err["mae_test_full"]
print(err.round(3).to_string())
d = df[df["variant"] != "errors"]
# coverage per repeat (pooled over folds), then mean and SD over repeats
per_rep = d.groupby(["model", "tier", "view", "variant", "repeat"]).agg(c95=("in95", "mean"), c90=("in90", "mean"),
                                                                        w95=("w95", "mean")).reset_index()
sex_rep = d.groupby(["model", "tier", "view", "variant", "repeat", "sex"])["in95"].mean().unstack("sex").reset_index()
per_rep = per_rep.merge(sex_rep, on=["model", "tier", "view", "variant", "repeat"])
per_rep["minsex"] = per_rep[["M", "F"]].min(axis=1)
per_rep["in_target"] = ((per_rep["c95"] >= 0.93) & (per_rep["c95"] <= 0.97) & (per_rep["minsex"] >= 0.90))
summ = per_rep.groupby(["model", "tier", "view", "variant"]).agg(
    c95=("c95", "mean"), sd95=("c95", "std"), c90=("c90", "mean"), M=("M", "mean"), F=("F", "mean"),
    w95=("w95", "mean"), share_in_target=("in_target", "mean"), n_rep=("c95", "size"))
pd.set_option("display.width", 250)
print((summ * 1).round(3).to_string())
# over all rows: mean coverage per variant
print(per_rep.groupby("variant").agg(c95=("c95", "mean"), c90=("c90", "mean"), sd95=("c95", "std"),
                                     minsex=("minsex", "mean"), w95=("w95", "mean"),
                                     share_in_target=("in_target", "mean")).round(4).to_string())

# compact: mean over repeats [repeat-0 value] per row and variant
keep = ["full/relative/sex", "full/relative/sex/mid", "full/relative/none/mid", "full/none/sex/mid", "cvplus/relative/sex/mid"]
pr = per_rep[per_rep["variant"].isin(keep)]
mean = pr.groupby(["model", "tier", "view", "variant"])["c95"].mean().unstack("variant")[keep]
r0 = pr[pr["repeat"] == pr["repeat"].min()].set_index(["model", "tier", "view", "variant"])["c95"].unstack("variant")[keep]
ms = pr.groupby(["model", "tier", "view", "variant"])["minsex"].mean().unstack("variant")[keep]
print("\nmean 95 % coverage over repeats")
print((100 * mean).round(1).to_string())
print("\nfirst repeat (the quick start's seed)")
print((100 * r0).round(1).to_string())
print("\nlower sex, mean over repeats")
print((100 * ms).round(1).to_string())
print("\nshare of (row, repeat) in target")
print(pr.groupby("variant")["in_target"].mean().round(3).to_string())
