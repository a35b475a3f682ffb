"""Probe: for every cheap model/view/tier and many split repeats, the inner 5-fold out-of-fold
predictions (calibration scores), the full model's test predictions and each fold model's test
predictions, so every interval variant can be scored offline on the same fits.

python docs/scripts/intervals/probe.py DATASET REPEATS OUT.pkl [FIRST_SEED]
"""
import pickle
import sys
import time

import numpy as np
import pandas as pd
from sklearn.base import clone

from benchmarks import registry
from benchmarks.harness import fold_seed, fold_table, tier_inputs
from smi_data.manifest import read_manifest, to_samples
from smi_data.splits import make_splits

dataset, R, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
first = int(sys.argv[4]) if len(sys.argv) > 4 else 0
combos = [("mean", "photo", ("lateral",)), ("covariates", "basic", ("lateral",)), ("covariates", "weight", ("lateral",))] + \
         [("xgb-features", t, ("lateral", "posterior", "both")) for t in ("weight", "basic", "photo")] + \
         [("tape", "basic", ("lateral", "posterior", "both"))]
import os

if os.environ.get("PROBE_COMBOS") == "toy":
    combos = [("mean", "photo", ("lateral",)), ("covariates", "basic", ("lateral",)),
              ("covariates", "weight", ("lateral",)), ("xgb-features", "weight", ("lateral", "posterior", "both")),
              ("xgb-features", "photo", ("lateral",)), ("tape", "basic", ("lateral",))]
man = read_manifest(dataset)
samples = {v: to_samples(man, v) for v in ("lateral", "posterior", "both")}
splits = make_splits(man, n_folds=5, seeds=list(range(first, first + R)), dataset=dataset)
folds = fold_table(splits, R)
rows = []
t0 = time.time()
for model, tier, views in combos:
    spec = registry.get_spec(model)
    for view in views:
        smp = samples[view]
        sid = smp["subject_id"].astype(str)
        for r, f, tr_s, te_s in folds:
            seed = fold_seed(first, r, f)
            train = smp[sid.isin(set(tr_s))].reset_index(drop=True)
            test = smp[sid.isin(set(te_s))].reset_index(drop=True)
            Xtr, Xte = tier_inputs(train, tier), tier_inputs(test, tier)
            y = train["smi"].to_numpy(float)
            est = spec.build(seed, tier=tier)
            groups = train["subject_id"].astype(str).to_numpy()
            subjects = np.unique(groups)
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), 11]))
            fold_of = dict(zip(rng.permutation(subjects), np.arange(len(subjects)) % 5))
            inner = np.array([fold_of[g] for g in groups])
            oof = np.full(len(y), np.nan)
            fold_test = np.full((5, len(test)), np.nan)
            for k in range(5):
                te = inner == k
                e = clone(est).fit(Xtr[~te].reset_index(drop=True), y[~te])
                oof[te] = np.asarray(e.predict(Xtr[te].reset_index(drop=True)), float)
                fold_test[k] = np.asarray(e.predict(Xte), float)
            full = clone(est).fit(Xtr, y)
            rows.append(dict(model=model, tier=tier, view=view, repeat=r + first, fold=f,
                             train_sex=train["sex"].astype(str).to_numpy(), train_y=y, oof=oof, inner=inner,
                             test_sex=test["sex"].astype(str).to_numpy(), test_y=test["smi"].to_numpy(float),
                             test_full=np.asarray(full.predict(Xte), float), test_folds=fold_test,
                             test_id=test["sample_id"].astype(str).to_numpy()))
        print(model, tier, view, f"{time.time() - t0:.0f}s", flush=True)
        with open(out, "wb") as fh:
            pickle.dump(rows, fh)
with open(out, "wb") as fh:
    pickle.dump(rows, fh)
print("done", len(rows))
