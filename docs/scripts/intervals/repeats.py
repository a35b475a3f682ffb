"""95 % coverage per model/tier/view over the repeats of a `legsmi benchmark --repeats R` run.

python docs/scripts/intervals/repeats.py RUN_DIR [RUN_DIR ...]
Prints, per row: the coverage on repeat 0 (the quick start's split), mean ± SD over the repeats, the share
of repeats within 93-97 %, the lowest sex (mean over repeats) and the mean 95 % width.
"""
import sys

import numpy as np
import pandas as pd

for run in sys.argv[1:]:
    p = pd.read_csv(f"{run}/predictions.csv")
    p = p[p["lo95"].notna()]
    p["cov"] = (p["y_true"] >= p["lo95"]) & (p["y_true"] <= p["hi95"])
    p["w"] = p["hi95"] - p["lo95"]
    keys = ["model", "tier", "view"]
    per = p.groupby(keys + ["repeat"])["cov"].mean().unstack("repeat")
    sex = p.groupby(keys + ["repeat", "sex"])["cov"].mean().unstack("sex").min(axis=1).groupby(level=keys).mean()
    print(f"## {run} ({per.shape[1]} repeats)")
    print("| model | tier | view | repeat 0 | mean ± SD over repeats | repeats within 93-97 % | lowest sex (mean) | 95 % width |")
    print("|---|---|---|---|---|---|---|---|")
    for k, row in per.iterrows():
        v = row.to_numpy(float)
        inb = np.mean((v >= 0.93 - 1e-9) & (v <= 0.97 + 1e-9))
        w = p.set_index(keys).loc[k, "w"].mean()
        print(f"| {' | '.join(k)} | {100 * v[0]:.1f} % | {100 * v.mean():.1f} ± {100 * v.std(ddof=1):.1f} % | "
              f"{int(round(inb * len(v)))} of {len(v)} | {100 * sex.loc[k]:.1f} % | {w:.2f} |")
