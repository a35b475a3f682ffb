"""How much of the side view's calf-width error is the far leg: the features measured from oracle masks.

usage (from the repository root): python docs/scripts/seg/far_leg_oracle.py DATASET [VIEW]

For every photo of VIEW (default lateral) of a rendered cohort with label maps (labels/<stem>.png: 1 and 6 the
photographed leg, 2 the other leg), the maximum calf width the features measure (`measure_leg`, marker scale,
the manifest's height and side) from three working masks: the segmenter's own (`segment_leg`); the same with
the other leg's labelled pixels taken out; and the true photographed leg (labels 1 + 6). Each is handed to the
rest of the pipeline unchanged (upright mask, edge snapping and sub-pixel refinement on the photo), so the
third row is the floor that the mask alone cannot go below. Widths are compared with truth.csv's
`calf_width_seen_px` (in photo px: the scale is left out); prints MAPE, median and the share over 5 %.
"""
import sys

import cv2
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, ".")
import smi_image.segment as S  # noqa: E402
from smi_features.extractor import measure_leg  # noqa: E402
from smi_image.marker import find_marker  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)
d = sys.argv[1]
view = sys.argv[2] if len(sys.argv) > 2 else "lateral"
REAL = S.segment_leg
truth = pd.read_csv(f"{d}/truth.csv", dtype={"subject_id": str})
rows = []
for tr in truth[truth["view"] == view].to_dict("records"):
    img = cv2.imread(f"{d}/{tr['image']}", cv2.IMREAD_COLOR)
    stem = tr["image"].split("/")[-1].rsplit(".", 1)[0]
    lab = cv2.imread(f"{d}/labels/{stem}.png", cv2.IMREAD_UNCHANGED)
    mk = find_marker(img)
    seg = REAL(img, exclude_polygons=[mk[1]] if mk is not None else None, view=view, side=tr["side"])
    h, w = seg.work.shape
    small_lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
    true = np.isin(small_lab, (1, 6))
    # (mask, whether the edges are snapped to the photo's strongest step first, as for a learned mask)
    masks = {"segmenter": (seg.work, True), "segmenter minus the other leg": (seg.work & (small_lab != 2), True),
             "true photographed leg": (true, True), "segmenter, edges not snapped": (seg.work, False),
             "true photographed leg, edges not snapped": (true, False)}
    ref = tr["calf_width_seen_px"]
    row = {"image": stem}
    for name, (m, snap) in masks.items():
        # the snapping applies to learned masks only (smi_image.silhouette.photo_edges); the sub-pixel
        # refinement, whose window covers the coarse pixel, runs either way
        fake = S.LegSegmentation(work=m, photo_shape=seg.photo_shape, method=seg.method if snap else "canny",
                                 confidence=seg.confidence,
                                 n_legs=seg.n_legs, coarse_px=seg.coarse_px, work_image=seg.work_image)
        S.segment_leg = lambda *a, _f=fake, **k: _f
        try:
            r = measure_leg(img, height_cm=tr["height_cm"], view=view, side=tr["side"], marker=mk)
        finally:
            S.segment_leg = REAL
        wpx = r.features_px.get("calf_max_width", np.nan) if r.ok else np.nan
        row[name] = 100.0 * (wpx / ref - 1.0)
    rows.append(row)
t = pd.DataFrame(rows).set_index("image")
print(f"{d}, {view}: maximum calf width against the seen width, {len(t)} photos")
print("| mask | MAPE % | median APE % | bias % | over 5 % | refused |")
print("|---|---|---|---|---|---|")
for c in t.columns:
    e = t[c]
    print(f"| {c} | {e.abs().mean():.2f} | {e.abs().median():.2f} | {e.mean():+.2f} | {(e.abs() > 5).sum()} | "
          f"{e.isna().sum()} |")
