"""What stands between photo measurements and the ceiling (docs/cnn-geo.md):

1. the trunk's geometry against truth.csv, per photo;
2. the ceiling's own regressions fed the trunk's geometry instead of the truth (same folds, same subjects);
3. the ceiling's regressions on the true geometry with added noise (how precise must it be?);
4. the part of the geometry that the covariates do not predict, and how much of it the trunk recovers.

    python docs/scripts/geo/gap.py EMB.npz DATASET SPLITS.json      (EMB from embed.py)
"""
import sys, warnings
import numpy as np, pandas as pd
from smi_data.phantom import ceiling
from smi_data.splits import load_splits
from benchmarks.harness import fold_table
from smi_deep.geo import GEO_TARGETS
warnings.filterwarnings("ignore")
emb = np.load(sys.argv[1]); ds = sys.argv[2]; splits = sys.argv[3]
folds = [(r, f, t) for r, f, _, t in fold_table(load_splits(splits), 1)]
T8 = GEO_TARGETS[:8]
print("trunk geometry vs truth.csv (accepted photos): MAPE % (bias %)")
pred = {}
for view in ("lateral", "posterior"):
    G = emb[f"{view}_out"][:, :8]; Y = emb[f"{view}_truth"]; ok = np.all(np.isfinite(G), axis=1)
    e = (G[ok] - Y[ok]) / Y[ok] * 100
    print(view, ok.sum(), " ".join(f"{t}={np.mean(np.abs(e[:, j])):.2f}({np.mean(e[:, j]):+.1f}) r={np.corrcoef(G[ok, j], Y[ok, j])[0,1]:.3f}" for j, t in enumerate(T8)))
    pred[view] = pd.DataFrame(G[ok], index=emb[f"{view}_subject"][ok], columns=T8)
df = ceiling.subject_table(ds)
acc = {"lateral": set(pred["lateral"].index), "posterior": set(pred["posterior"].index)}
acc["both"] = acc["lateral"] & acc["posterior"]
def swap(view):
    d = df.copy()
    for v in (["lateral", "posterior"] if view == "both" else [view]):
        p = pred[v]
        for c in (f"calf_width_{v}_cm", f"ankle_width_{v}_cm"):
            d.loc[p.index, c] = p[c]
        if view != "both":
            for c in ("shank_length_cm", "calf_circ_cm", "ankle_circ_cm", "lowerleg_volume_l"):
                d.loc[p.index, c] = p[c]
    if view == "both":  # the mean of the two trunks' estimates of the view-free measures
        for c in ("shank_length_cm", "calf_circ_cm", "ankle_circ_cm", "lowerleg_volume_l"):
            idx = sorted(acc["both"]); d.loc[idx, c] = (pred["lateral"].loc[idx, c] + pred["posterior"].loc[idx, c]) / 2
    d["ratio_lateral"] = d.calf_width_lateral_cm / d.ankle_width_lateral_cm
    d["ratio_posterior"] = d.calf_width_posterior_cm / d.ankle_width_posterior_cm
    return d
def score(d, view, tier, drop_level):
    sub = d.loc[sorted(acc[view])]
    feats = list(ceiling.TIER_COVARIATES[tier]) + [c for c in ceiling.GEOMETRY[view] if not (drop_level and c == "calf_level_frac")]
    X = sub[feats].to_numpy(float); y = sub.smi.to_numpy(float)
    fl = [(r, f, [t for t in te if t in acc[view]]) for r, f, te in folds]
    asg = ceiling.fold_assignments(sub.index, fl)
    res = {m: ceiling._scores(y, ceiling._cv_predict(mod, lt, X, y, asg))["mape"] for m, (mod, lt) in ceiling._models(0).items()}
    b = min(res, key=res.get); return f"{res[b]:.2f} ({b[:5]})"
print("\nceiling regressions (best of 3) on the accepted subjects of each view: true geometry / true without calf_level_frac / the trunk's geometry (no calf_level_frac)")
for tier in ("photo", "basic", "weight"):
    print(tier, " | ".join(f"{v}: {score(df, v, tier, False)} / {score(df, v, tier, True)} / {score(swap(v), v, tier, True)}" for v in ("lateral", "posterior", "both")))


# --------------------------------------------------------------------------- how precise must the geometry be?
print("\nthe ceiling's regressions at the weight tier on the true geometry with s % multiplicative noise "
      "(independent per measure and person; mean of 3 draws)")
asg_all = ceiling.fold_assignments(df.index, folds)
y_all = df.smi.to_numpy(float)
raw = ["calf_width_lateral_cm", "calf_width_posterior_cm", "ankle_width_lateral_cm", "ankle_width_posterior_cm",
       "calf_circ_cm", "ankle_circ_cm", "calf_level_frac", "shank_length_cm", "lowerleg_volume_l"]
for s in (0, 0.5, 1, 1.5, 2, 3):
    res = {v: [] for v in ("lateral", "posterior", "both")}
    for k in range(3 if s else 1):
        rng = np.random.default_rng(k)
        d = df.copy()
        for c in raw:
            d[c] = d[c] * (1 + s / 100 * rng.standard_normal(len(d)))
        d["ratio_lateral"] = d.calf_width_lateral_cm / d.ankle_width_lateral_cm
        d["ratio_posterior"] = d.calf_width_posterior_cm / d.ankle_width_posterior_cm
        for v in res:
            X = d[list(ceiling.TIER_COVARIATES["weight"]) + list(ceiling.GEOMETRY[v])].to_numpy(float)
            res[v].append(min(ceiling._scores(y_all, ceiling._cv_predict(m, lt, X, y_all, asg_all))["mape"]
                              for m, lt in ceiling._models(0).values()))
    print(f"noise {s:.1f} %: " + "  ".join(f"{v} {np.mean(r):.2f}" for v, r in res.items()))


# --------------------------------------------------------------------------- what the covariates leave
from sklearn.linear_model import LinearRegression  # noqa: E402

print("\nthe geometry the covariates do not predict (log space; residuals of a regression on sex, age, log height, "
      "log weight): how much is left, how it tells log SMI, and how much of it the trunk recovers")
man = pd.read_csv(f"{ds}/manifest.csv", dtype={"subject_id": str}).drop_duplicates("subject_id").set_index("subject_id")
for view in ("lateral", "posterior"):
    s = emb[f"{view}_subject"]
    G, Y = np.log(emb[f"{view}_out"][:, :8]), np.log(emb[f"{view}_truth"])
    t = man.loc[s]
    C = np.column_stack([(t.sex == "M").astype(float), t.age, np.log(t.height_cm), np.log(t.weight_kg)])
    ly = np.log(t.smi.to_numpy(float))

    def rest(a):
        return a - LinearRegression().fit(C, a).predict(C)

    print(view)
    for j, name in enumerate(T8):
        rg, ry = rest(G[:, j]), rest(Y[:, j])
        print(f"  {name}: r(trunk, truth) {np.corrcoef(G[:, j], Y[:, j])[0, 1]:.2f}; covariates explain "
              f"{100 * (1 - np.var(ry) / np.var(Y[:, j])):.0f} %; r(rest of trunk, rest of truth) "
              f"{np.corrcoef(rg, ry)[0, 1]:.2f}; r with the rest of log SMI: truth {np.corrcoef(ry, rest(ly))[0, 1]:.2f}, "
              f"trunk {np.corrcoef(rg, rest(ly))[0, 1]:.2f}")
