"""Offline study of cnn-geo's per-fold head (docs/cnn-geo.md, "Other heads"): trunk outputs from embed.py.

    python docs/scripts/geo/heads.py EMB.npz DATASET SPLITS.json [head,head,...]
    SUBSET=0:100 REPEATS=5 python docs/scripts/geo/heads.py EMB.npz DATASET kfold ridge,partial

Each head is fitted per fold on log SMI; ``ridge`` is what GeoCNNRegressor does (it reproduces the
benchmark's cnn-geo figures exactly). With ``kfold`` the folds are shuffled 5-folds (seeds
0..REPEATS-1) over the dataset's subjects (SUBSET: a slice of them).
"""
import sys, time, warnings
import numpy as np, pandas as pd
from smi_data.metrics import mape
from smi_data.splits import load_splits
from benchmarks.harness import fold_table
from smi_deep.geo import GEO_TARGETS
warnings.filterwarnings("ignore")
emb = np.load(sys.argv[1]); ds = sys.argv[2]; splits = sys.argv[3]
only = sys.argv[4].split(",") if len(sys.argv) > 4 else None
NT = len(GEO_TARGETS)
man = pd.read_csv(f"{ds}/manifest.csv", dtype={"subject_id": str}).drop_duplicates("subject_id").set_index("subject_id")
import os
if os.environ.get("SUBSET"):
    a, b = map(int, os.environ["SUBSET"].split(":")); man = man.iloc[a:b]
if splits.startswith("kfold"):
    from sklearn.model_selection import KFold
    folds = [(r, f, set(man.index[te])) for r in range(int(os.environ.get("REPEATS", "1")))
             for f, (_, te) in enumerate(KFold(5, shuffle=True, random_state=r).split(man.index))]
else:
    folds = [(r, f, set(te)) for r, f, _, te in fold_table(load_splits(splits), int(os.environ.get("REPEATS", "1")))]
COV = {"photo": [], "basic": ["male", "age", "log_height"], "weight": ["male", "age", "log_height", "log_weight"]}
man["male"] = (man.sex == "M").astype(float); man["log_height"] = np.log(man.height_cm); man["log_weight"] = np.log(man.weight_kg)

def view_block(view, emb_too=False):
    s = emb[f"{view}_subject"]; G = emb[f"{view}_out"]
    ok = np.all(np.isfinite(G), axis=1)
    cols = [f"log_{t}_{view}" for t in GEO_TARGETS]
    d = pd.DataFrame(np.log(np.maximum(G[ok, :NT], 0.1)), index=s[ok], columns=cols)
    if emb_too:
        d = d.join(pd.DataFrame(G[ok, NT:], index=s[ok], columns=[f"e{j}_{view}" for j in range(G.shape[1] - NT)]))
    return d

from sklearn.linear_model import RidgeCV, LinearRegression
from sklearn.preprocessing import StandardScaler, PolynomialFeatures
from sklearn.pipeline import make_pipeline
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import GridSearchCV, KFold
A = np.logspace(-3, 3, 13)

def ridge(Zg, Zc, y, Tg, Tc):
    Z = np.hstack([Zg, Zc]); T = np.hstack([Tg, Tc])
    m = make_pipeline(StandardScaler(), RidgeCV(alphas=A)).fit(Z, y); return m.predict(T)

def partial(Zg, Zc, y, Tg, Tc):
    """covariates unpenalised (OLS), geometry ridge on the residual, jointly: Frisch-Waugh via projection"""
    if Zc.shape[1] == 0:
        return ridge(Zg, Zc, y, Tg, Tc)
    c = LinearRegression().fit(Zc, y); r = y - c.predict(Zc)
    # geometry residualised on covariates too (so the ridge sees what the covariates do not say)
    cg = LinearRegression().fit(Zc, Zg); Rg = Zg - cg.predict(Zc)
    m = make_pipeline(StandardScaler(), RidgeCV(alphas=A)).fit(Rg, r)
    return c.predict(Tc) + m.predict(Tg - cg.predict(Tc))

def quad(Zg, Zc, y, Tg, Tc):
    Z = np.hstack([Zg, Zc]); T = np.hstack([Tg, Tc])
    m = make_pipeline(StandardScaler(), PolynomialFeatures(2), StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(Z, y)
    return m.predict(T)

def pls(Zg, Zc, y, Tg, Tc):
    Z = np.hstack([Zg, Zc]); T = np.hstack([Tg, Tc])
    g = GridSearchCV(make_pipeline(StandardScaler(), PLSRegression(scale=False)),
                     {"plsregression__n_components": [1, 2, 3, 4, 6, 8]}, cv=KFold(5, shuffle=True, random_state=0),
                     scoring="neg_mean_squared_error").fit(Z, y)
    return g.predict(T).ravel()

def gp(Zg, Zc, y, Tg, Tc):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, WhiteKernel, ConstantKernel, DotProduct
    Z = np.hstack([Zg, Zc]); T = np.hstack([Tg, Tc])
    sc = StandardScaler().fit(Z); mu = y.mean()
    k = ConstantKernel(0.1) * DotProduct(1.0) + ConstantKernel(0.01) * RBF(5.0) + WhiteKernel(0.01)
    m = GaussianProcessRegressor(k, normalize_y=False, random_state=0, n_restarts_optimizer=0).fit(sc.transform(Z), y - mu)
    return m.predict(sc.transform(T)) + mu

def lasso(Zg, Zc, y, Tg, Tc):
    from sklearn.linear_model import LassoCV
    Z = np.hstack([Zg, Zc]); T = np.hstack([Tg, Tc])
    m = make_pipeline(StandardScaler(), LassoCV(cv=KFold(5, shuffle=True, random_state=0), alphas=np.logspace(-5, -1, 25), max_iter=20000)).fit(Z, y)
    return m.predict(T)

def enet(Zg, Zc, y, Tg, Tc):
    from sklearn.linear_model import ElasticNetCV
    Z = np.hstack([Zg, Zc]); T = np.hstack([Tg, Tc])
    m = make_pipeline(StandardScaler(), ElasticNetCV(l1_ratio=[0.1, 0.5, 0.9], cv=KFold(5, shuffle=True, random_state=0), alphas=np.logspace(-5, -1, 25), max_iter=20000)).fit(Z, y)
    return m.predict(T)

def few(Zg, Zc, y, Tg, Tc, idx=None):
    return ridge(Zg[:, idx], Zc, y, Tg[:, idx], Tc)

def covonly(Zg, Zc, y, Tg, Tc):
    if Zc.shape[1] == 0:
        return np.full(len(Tg), y.mean())
    return LinearRegression().fit(Zc, y).predict(Tc)

def stack(Zg, Zc, y, Tg, Tc):
    """covariates OLS; geometry ridge on the residual, then the two combined by a second-level weight chosen by inner CV"""
    if Zc.shape[1] == 0:
        return ridge(Zg, Zc, y, Tg, Tc)
    from sklearn.model_selection import cross_val_predict
    c = LinearRegression().fit(Zc, y); r = y - c.predict(Zc)
    g = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13)))
    inner = cross_val_predict(g, np.hstack([Zg, Zc]), r, cv=KFold(5, shuffle=True, random_state=0))
    w = max(0.0, min(1.0, float(np.dot(inner, r) / max(np.dot(inner, inner), 1e-12))))
    g.fit(np.hstack([Zg, Zc]), r)
    return c.predict(Tc) + w * g.predict(np.hstack([Tg, Tc]))

def viewscale(Zg, Zc, y, Tg, Tc, scales=(0.0, 0.25, 0.5, 0.75, 1.0)):
    """both views: the lateral block's standardised columns scaled by s before the ridge (a penalty of
    alpha / s^2 on them), s and alpha chosen together by the ridge's leave-one-out error on the training
    fold; one view: the ridge"""
    if Zg.shape[1] != 2 * NT:
        return ridge(Zg, Zc, y, Tg, Tc)
    sc = StandardScaler().fit(np.hstack([Zg, Zc])); Z, T = sc.transform(np.hstack([Zg, Zc])), sc.transform(np.hstack([Tg, Tc]))
    best = None
    for s_ in scales:
        w = np.ones(Z.shape[1]); w[:NT] = s_
        m = RidgeCV(alphas=A, scoring="neg_mean_squared_error").fit(Z * w, y)
        if best is None or m.best_score_ > best[0]:
            best = (m.best_score_, w, m)
    _, w, m = best
    return m.predict(T * w)

def viewscale2(Zg, Zc, y, Tg, Tc, scales=(0.25, 0.5, 1.0)):
    """as viewscale, a scale for each view's block (the larger fixed at 1, the other from ``scales`` or 0)"""
    if Zg.shape[1] != 2 * NT:
        return ridge(Zg, Zc, y, Tg, Tc)
    sc = StandardScaler().fit(np.hstack([Zg, Zc])); Z, T = sc.transform(np.hstack([Zg, Zc])), sc.transform(np.hstack([Tg, Tc]))
    best = None
    pairs = {(1.0, s_) for s_ in (0.0, *scales)} | {(s_, 1.0) for s_ in (0.0, *scales)}
    for a, b in sorted(pairs):
        w = np.ones(Z.shape[1]); w[:NT] = a; w[NT:2 * NT] = b
        m = RidgeCV(alphas=A, scoring="neg_mean_squared_error").fit(Z * w, y)
        if best is None or m.best_score_ > best[0]:
            best = (m.best_score_, w, m)
    _, w, m = best
    return m.predict(T * w)

HEADS = {"viewscale2": viewscale2, "viewscale": viewscale, "covonly": covonly, "stack": stack, "ridge": ridge, "partial": partial, "quad": quad, "pls": pls, "lasso": lasso, "enet": enet, "gp": gp}
if only: HEADS = {k: v for k, v in HEADS.items() if k in only}

def run(view, tier, head, emb_too=False):
    views = ["lateral", "posterior"] if view == "both" else [view]
    g = view_block(views[0], emb_too)
    for v in views[1:]:
        g = g.join(view_block(v, emb_too), how="inner")
    tab = g.join(man, how="inner")
    subj = tab.index.to_numpy(str)
    Zg = tab[g.columns].to_numpy(float); Zc = tab[COV[tier]].to_numpy(float).reshape(len(tab), -1)
    y = np.log(tab.smi.to_numpy(float)); preds = {}
    for r, f, te in folds:
        m = np.isin(subj, list(te))
        pred = preds.setdefault(r, np.full(len(tab), np.nan))
        pred[m] = head(Zg[~m], Zc[~m], y[~m], Zg[m], Zc[m])
    return np.mean([mape(np.exp(y), np.exp(p)) for p in preds.values()]), len(tab)

t0 = time.process_time()
print("head       tier    lateral posterior both")
for name, h in HEADS.items():
    for tier in ("photo", "basic", "weight"):
        cells = []
        for view in ("lateral", "posterior", "both"):
            c = time.process_time(); m, n = run(view, tier, h); cells.append(f"{m:.2f}")
        print(f"{name:10s} {tier:7s} " + "  ".join(cells) + f"   ({time.process_time() - c:.2f} s cpu last)", flush=True)
print(f"cpu {time.process_time() - t0:.0f} s")
