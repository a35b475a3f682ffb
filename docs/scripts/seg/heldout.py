"""Held-out wild renders: IoU of the photographed leg (labels 1 + 6) by the full `segment_leg`, two framings.

usage (from the repository root): python docs/scripts/seg/heldout.py RENDERS OUT.csv
RENDERS: `legsmi phantom --scene wild --subjects 15 --seed 2000 --size 300x400 --out RENDERS` (P001-P015 of
seed 2000, never trained on). "frame": the whole photo with the manifest's view and side; "crop": the leg's
rows, 0.75 as wide, centred on its calf, no view (as the real crops).
"""
import sys

import cv2
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, ".")
from smi_image.errors import SegmentationError  # noqa: E402
from smi_image.evaluate import iou  # noqa: E402
from smi_image.segment import segment_leg  # noqa: E402

torch.set_num_threads(1)
d = sys.argv[1]
MIN_LEG_PX = 200
rows = []
for r in pd.read_csv(f"{d}/manifest.csv").itertuples():
    img = cv2.imread(f"{d}/{r.image}")
    stem = r.image.split("/")[-1].rsplit(".", 1)[0]
    lab = cv2.imread(f"{d}/labels/{stem}.png", 0)
    photo = (lab == 1) | (lab == 6)
    ys, xs = np.nonzero(photo)
    if len(ys) < MIN_LEG_PX:  # the photographed leg hidden behind the other: nothing to score
        print(f"{stem}: skipped, {len(ys)} px of the photographed leg")
        continue
    top, bot = ys.min(), ys.max()
    h = bot - top + 1
    w = int(0.75 * h)
    band = (ys > top + 0.2 * h) & (ys < top + 0.7 * h)
    cx = int(xs[band if band.any() else slice(None)].mean())  # a leg hidden mid-shank: centre on what shows
    x0 = max(0, cx - w // 2)
    crop = (np.ascontiguousarray(img[top:bot + 1, x0:x0 + w]), photo[top:bot + 1, x0:x0 + w])
    side = r.side if isinstance(r.side, str) else None
    for kind, (im, t) in {"frame": (img, photo), "crop": crop}.items():
        try:
            s = segment_leg(im, method="learned", view=r.view if kind == "frame" else None,
                            side=side if kind == "frame" else None)
            m, status = s.full_mask(), "ok"
        except SegmentationError as e:
            m, status = None, e.code
        rows.append({"image": stem, "kind": kind, "status": status, "iou": iou(m, t) if m is not None else 0.0})
t = pd.DataFrame(rows)
for k, g in t.groupby("kind"):
    ok = g[g.status == "ok"]
    print(f"{k}: n {len(g)}, accepted {len(ok) / len(g):.0%}, IoU accepted median {ok.iou.median():.3f} "
          f"mean {ok.iou.mean():.3f}, >=0.8 {np.mean(ok.iou >= 0.8):.0%}; refusals {g.status.value_counts().to_dict()}")
t.to_csv(sys.argv[2], index=False)
