"""Average the trunk outputs of several embed.py files (same cohort, same order): a trunk ensemble, offline.

    python docs/scripts/geo/ensemble_emb.py OUT.npz EMB1.npz EMB2.npz ...   (then heads.py OUT.npz ...)
"""
import sys
import numpy as np
out, ins = sys.argv[1], sys.argv[2:]
embs = [dict(np.load(p, allow_pickle=False)) for p in ins]
res = dict(embs[0])
for view in ("lateral", "posterior"):
    for e in embs[1:]:
        assert np.array_equal(e[f"{view}_subject"], embs[0][f"{view}_subject"])
    nt = 18
    geo = np.stack([e[f"{view}_out"][:, :nt] for e in embs])
    # the geometry averaged in the log (the head takes logs); the embedding columns dropped (not comparable)
    res[f"{view}_out"] = np.exp(np.mean(np.log(np.maximum(geo, 0.1)), axis=0))
np.savez(out, **res)
print(out, {k: v.shape for k, v in res.items()})
