"""Per-fold fine-tuning study: the trunk's last layers (embedding and/or geometry read-out) trained jointly with a
linear head on log SMI, L2-SP toward the pretrained weights; conv features frozen (precomputed by zfeat.py).

    python docs/scripts/geo/finetune.py Z.npz DATASET SPLITS.json {out|emb|both} LAMBDA EPOCHS [views]

The head starts at the ridge solution on the frozen trunk (EPOCHS=0 is that head), then Adam (lr 1e-3,
full batch) on the mean squared error of log SMI + the ridge penalty + LAMBDA * ||W - W_pretrained||².
"""
import sys, time, warnings
import numpy as np, pandas as pd, torch
from smi_data.metrics import mape
from smi_data.splits import load_splits
from benchmarks.harness import fold_table
from smi_deep import geo
warnings.filterwarnings("ignore"); torch.set_num_threads(1)
Z = np.load(sys.argv[1]); ds = sys.argv[2]; splits = sys.argv[3]; part = sys.argv[4]; lam = float(sys.argv[5]); epochs = int(sys.argv[6])
views = sys.argv[7].split(",") if len(sys.argv) > 7 else ["lateral", "posterior"]
man = pd.read_csv(f"{ds}/manifest.csv", dtype={"subject_id": str}).drop_duplicates("subject_id").set_index("subject_id")
man["male"] = (man.sex == "M").astype(float); man["lh"] = np.log(man.height_cm); man["lw"] = np.log(man.weight_kg)
folds = [(r, f, set(te)) for r, f, _, te in fold_table(load_splits(splits), 1)]
COV = {"photo": [], "basic": ["male", "age", "lh"], "weight": ["male", "age", "lh", "lw"]}
t0 = time.process_time()
for tier in ("photo", "weight"):
    cells = []
    for view in views:
        net, meta = geo.load_trunk(view)
        mean = torch.tensor(meta["target_mean"], dtype=torch.float32); sd = torch.tensor(meta["target_std"], dtype=torch.float32)
        W1, b1 = net.embedding[1].weight.detach().clone(), net.embedding[1].bias.detach().clone()
        W2, b2 = net.out.weight.detach().clone(), net.out.bias.detach().clone()
        s = Z[f"{view}_subject"]; zf = torch.from_numpy(Z[f"{view}_z"]).float()
        tab = man.loc[s]; C = torch.from_numpy(tab[COV[tier]].to_numpy(float).reshape(len(s), -1)).float()
        y = torch.from_numpy(np.log(tab.smi.to_numpy(float))).float()
        pred = np.full(len(s), np.nan)
        for r, f, te in folds:
            m = np.isin(s, list(te)); tr = torch.from_numpy(~m); tt = torch.from_numpy(m)
            P = {"W1": W1.clone().requires_grad_(part in ("emb", "both")), "b1": b1.clone().requires_grad_(part in ("emb", "both")),
                 "W2": W2.clone().requires_grad_(part in ("out", "both")), "b2": b2.clone().requires_grad_(part in ("out", "both"))}
            def geom(zz):
                h = torch.relu(zz @ P["W1"].T + P["b1"]); g = (h @ P["W2"].T + P["b2"]) * sd + mean
                return torch.log(torch.clamp(g, min=0.1))
            with torch.no_grad():
                g0 = geom(zf[tr]); gm, gs = g0.mean(0), g0.std(0) + 1e-6
                cm, cs = (C[tr].mean(0), C[tr].std(0) + 1e-6) if C.shape[1] else (None, None)
            def design(zz, cc):
                g = (geom(zz) - gm) / gs
                return torch.cat([g, (cc - cm) / cs], 1) if C.shape[1] else g
            # head init: ridge (alpha by LOO) on the frozen design
            from sklearn.linear_model import RidgeCV
            with torch.no_grad():
                D = design(zf[tr], C[tr]).numpy()
            rc = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(D, y[tr].numpy())
            w = torch.tensor(rc.coef_, dtype=torch.float32, requires_grad=True); b = torch.tensor(float(rc.intercept_), requires_grad=True)
            alpha = float(rc.alpha_) / tr.sum().item()
            params = [p for p in P.values() if p.requires_grad] + [w, b]
            opt = torch.optim.Adam(params, lr=1e-3)
            ref = {k: v.detach().clone() for k, v in P.items()}
            for ep in range(epochs):
                opt.zero_grad()
                loss = torch.mean((design(zf[tr], C[tr]) @ w + b - y[tr]) ** 2) + alpha * torch.sum(w ** 2)
                loss = loss + lam * sum(torch.sum((P[k] - ref[k]) ** 2) for k in P if P[k].requires_grad)
                loss.backward(); opt.step()
            with torch.no_grad():
                pred[m] = (design(zf[tt], C[tt]) @ w + b).numpy()
        cells.append(f"{view} {mape(np.exp(y.numpy()), np.exp(pred)):.2f}")
    print(f"{part} lam={lam} ep={epochs} {tier}: " + "  ".join(cells), f"({time.process_time() - t0:.0f} s cpu)", flush=True)
