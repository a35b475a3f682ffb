"""The trunk's outputs for every photo of a rendered cohort, and the truth beside them (for heads.py, gap.py).

    python docs/scripts/geo/embed.py DATASET OUT.npz [WEIGHTS_DIR]
"""
import sys, time
import numpy as np, pandas as pd
from smi_deep import geo
ds = sys.argv[1]; out = sys.argv[2]; wdir = sys.argv[3] if len(sys.argv) > 3 else None
man = pd.read_csv(f"{ds}/manifest.csv", dtype={"subject_id": str})
truth = pd.read_csv(f"{ds}/truth.csv", dtype={"subject_id": str}).set_index(["subject_id", "view"])
res = {}
c0 = time.process_time(); t0 = time.time()
for view in geo.GEO_VIEWS:
    sub = man[man.view == view].reset_index(drop=True)
    rows = [(f"{ds}/{r.image}", None if ("px_per_cm" not in sub.columns or pd.isna(r.px_per_cm)) else float(r.px_per_cm), view, r.side)
            for r in sub.itertuples()]
    G, fails, meta = geo.embed_images(rows, view, wdir)
    res[f"{view}_subject"] = sub.subject_id.to_numpy(str)
    res[f"{view}_out"] = G
    res[f"{view}_truth"] = np.array([[truth.loc[(s, view)].get(t, np.nan) for t in geo.GEO_TARGETS[:8]] for s in sub.subject_id])
    print(view, len(fails), "refused", meta["sha256"][:12], flush=True)
np.savez(out, **res)
print(f"cpu {time.process_time()-c0:.1f} s wall {time.time()-t0:.1f} s")
