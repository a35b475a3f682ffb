"""IoU of the `segment` mask (`smi_image.evaluate.segment_array`, manifest view and side) against labels 1 + 6.

usage (from the repository root): python docs/scripts/seg/clinic_iou.py data/phantom-v2 OUT.csv
"""
import sys

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, ".")
from smi_image.evaluate import iou, segment_array  # noqa: E402

d = sys.argv[1]
rows = []
for r in pd.read_csv(f"{d}/manifest.csv").itertuples():
    img = cv2.imread(f"{d}/{r.image}")
    stem = r.image.split("/")[-1].rsplit(".", 1)[0]
    lab = cv2.imread(f"{d}/labels/{stem}.png", 0)
    m, status, reason = segment_array(img, view=r.view, side=r.side)
    t = (lab == 1) | (lab == 6)
    if m is None:
        rows.append(dict(image=stem, view=r.view, status=status, iou=0.0, other=np.nan))
        continue
    rows.append(dict(image=stem, view=r.view, status=status, iou=iou(m, t),
                     other=(m & (lab == 2)).sum() / t.sum()))
df = pd.DataFrame(rows)
df.to_csv(sys.argv[2], index=False)
print(df.groupby("view").apply(lambda g: pd.Series({"refused": (g.status != "ok").mean(), "iou_mean": g.iou.mean(),
                                                     "ge08": (g.iou >= 0.8).mean()})).to_string())
