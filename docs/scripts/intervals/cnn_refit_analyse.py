"""Scores the split and split-refit schemes of cnn_refit.py's output (both quantile rules).

python docs/scripts/intervals/cnn_refit_analyse.py OUT.pkl   (from the repository root)
"""
import pickle, sys
import numpy as np, pandas as pd
sys.path.insert(0, "/work/wt/intervals2")
from smi_data.conformal import Calibration
res = pickle.load(open(sys.argv[1], "rb"))
rows = []
for o in res:
    for rule in ("midpoint", "conservative"):
        if o["scores"] is None:
            continue
        cal = Calibration("split-refit", "relative", "sex", "sex" if set(o["scores"]) == {"M", "F"} else "none",
                          o["scores"], rule=rule)
        for name in ("split", "refit"):
            p = o[f"pred_{name}"]
            iv = cal.intervals(p, o["sex"])
            for i in range(len(p)):
                if not np.isfinite(p[i]):
                    continue
                rows.append(dict(model=o["model"], view=o["view"], fold=o["fold"], rule=rule, scheme=name,
                                 sex=o["sex"][i], ape=abs(p[i] - o["y"][i]) / o["y"][i] * 100,
                                 in95=float(iv[0.95][i, 0] <= o["y"][i] <= iv[0.95][i, 1]),
                                 in90=float(iv[0.90][i, 0] <= o["y"][i] <= iv[0.90][i, 1]),
                                 w95=iv[0.95][i, 1] - iv[0.95][i, 0]))
df = pd.DataFrame(rows)
g = df.groupby(["model", "view", "rule", "scheme"]).agg(n=("ape", "size"), folds=("fold", "nunique"), mape=("ape", "mean"),
                                                        c95=("in95", "mean"), c90=("in90", "mean"), w95=("w95", "mean"))
sx = df.groupby(["model", "view", "rule", "scheme", "sex"])["in95"].mean().unstack("sex")
print(g.join(sx).round(3).to_string())
cpu = pd.DataFrame([dict(model=o["model"], view=o["view"], fold=o["fold"], split_fit=o["cpu_fits"][0],
                         refit=o["cpu_fits"][1], n_scores=o["details"]["n_scores"] if o["details"] else None) for o in res])
print(cpu.to_string())
print(cpu.groupby("model")[["split_fit", "refit"]].sum())
