"""Pre-embedding features (conv map + row sums) of every photo, for finetune.py: python zfeat.py DATASET OUT.npz"""
import sys, numpy as np, pandas as pd, torch
from smi_deep import geo
ds, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
man = pd.read_csv(f"{ds}/manifest.csv", dtype={"subject_id": str})
res = {}
for view in geo.GEO_VIEWS:
    net, meta = geo.load_trunk(view)
    sub = man[man.view == view]
    xs, ss = [], []
    for r in sub.itertuples():
        try:
            xs.append(geo.geo_input(f"{ds}/{r.image}", view=view, side=r.side)); ss.append(r.subject_id)
        except geo.PreprocessError:
            pass
    x = torch.from_numpy(np.stack(xs).astype(np.float32)[:, None])
    with torch.no_grad():
        z = net.features(x).flatten(1); z = torch.cat([z, x.sum(dim=3).flatten(1) / 16.0], dim=1)
    res[f"{view}_z"] = z.numpy(); res[f"{view}_subject"] = np.array(ss); res[f"{view}_x"] = np.stack(xs).astype(np.float16)
np.savez(out, **res)
