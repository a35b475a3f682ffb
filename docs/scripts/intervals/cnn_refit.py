"""CNN intervals: the split scheme (predict from the fit without the held-out subjects) against
split-refit (same scores, predict from a refit on the whole training fold), on the same fits.

Per (model, view, fold) of the quick start's splits (seed 0, photo tier): one
IntervalRegressor(method='split-refit') fit; test predictions of its split model and of its
refit model, each with its intervals from the one calibration; CPU seconds of each fit.

python docs/scripts/intervals/cnn_refit.py DATASET OUT.pkl MODELS JOBS
"""
import pickle
import sys
import time

import numpy as np
from joblib import Parallel, delayed


def one(model, view, r, f, train_s, test_s, dataset):
    import torch

    torch.set_num_threads(1)
    from benchmarks import calibration, registry
    from benchmarks.harness import fold_seed, tier_inputs
    from smi_data.conformal import IntervalRegressor
    from smi_data.manifest import read_manifest, to_samples

    smp = to_samples(read_manifest(dataset), view)
    sid = smp["subject_id"].astype(str)
    train = smp[sid.isin(set(train_s))].reset_index(drop=True)
    test = smp[sid.isin(set(test_s))].reset_index(drop=True)
    Xtr, Xte = tier_inputs(train, "photo"), tier_inputs(test, "photo")
    seed = fold_seed(0, r, f)
    spec = registry.get_spec(model)
    import os

    extra = {"epochs": int(os.environ["SMOKE_EPOCHS"])} if os.environ.get("SMOKE_EPOCHS") else {}
    est = spec.build(seed, tier="photo", n_threads=1, **extra)
    _, params = calibration.scheme_for("deep", "refit")
    w = IntervalRegressor(est, method="split-refit", random_state=seed, **params)
    # time the two fits apart: the wrapper's fit = split fit + refit
    cls = type(est)
    if not getattr(cls, "_timed", False):
        orig = cls.fit

        def timed(self, *a, **k):
            c = time.process_time()
            res = orig(self, *a, **k)
            cls._times.append(time.process_time() - c)
            return res

        cls.fit, cls._timed = timed, True
    cls._times = []
    c0 = time.process_time()
    w.fit(Xtr, train["smi"].to_numpy(float))
    cpu_total = time.process_time() - c0
    out = dict(model=model, view=view, fold=f, test_id=test["sample_id"].astype(str).to_numpy(),
               sex=test["sex"].astype(str).to_numpy(), y=test["smi"].to_numpy(float),
               device=test["reference_device"].to_numpy() if "reference_device" in test else None,
               cpu_total=cpu_total, cpu_fits=list(cls._times), details=w.calibration_.details if w.calibration_ is not None else None,
               cal_error=w.calibration_error_,
               scores=w.calibration_.scores if w.calibration_ is not None else None)
    for name, m in (("split", w.split_estimator_), ("refit", w.estimator_)):
        p = np.asarray(m.predict(Xte), float)
        out[f"pred_{name}"] = p
        if w.calibration_ is not None:
            iv = w.calibration_.intervals(p, test["sex"].to_numpy())
            out[f"iv_{name}"] = iv
            out[f"ptrue_{name}"] = w.calibration_.p_values(p, test["smi"].to_numpy(float), test["sex"].to_numpy())
    return out


if __name__ == "__main__":
    from benchmarks.harness import fold_table
    from smi_data.manifest import read_manifest
    from smi_data.splits import make_splits

    dataset, out_path, models, jobs = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
    man = read_manifest(dataset)
    folds = fold_table(make_splits(man, n_folds=5, seeds=[0], dataset=dataset), 1)
    tasks = [(m, v, r, f, tr, te, dataset) for r, f, tr, te in folds for m in models for v in ("lateral", "posterior")]
    t0 = time.time()
    import os

    res = pickle.load(open(out_path, "rb")) if os.path.exists(out_path) else []
    done = {(o["model"], o["view"], o["fold"]) for o in res}
    tasks = [t for t in tasks if (t[0], t[1], t[3]) not in done]
    for out in Parallel(n_jobs=jobs, return_as="generator")(delayed(one)(*t) for t in tasks):
        res.append(out)
        print(f"{out['model']} {out['view']} fold {out['fold']}: cpu {out['cpu_fits']} "
              f"{time.time() - t0:.0f} s wall", flush=True)
        with open(out_path, "wb") as fh:
            pickle.dump(res, fh)
