"""Which leg finder: the classical mask against the learned one, per photo, and the `auto` rule's thresholds.

For every photo of phantom datasets with truth (``truth.csv``): the learned mask, and the classical finder's mask
where the old `auto` rule took it (plain background, the learned one sees at most one leg, leg-shaped, inside the
frame); how far the classical mask reaches outside the learned one (``smi_image.segment.outline_excess``); and the
maximum calf width in photo px the features measure from each mask, against the width the camera sees
(``calf_width_seen_px``; studio renders have no seen width, so their truth is the slice
``calf_width_<view>_cm`` at the true scale).
Then the MAPE of each rule: learned only, the old `auto` (classical whenever it was taken), and the new one
(classical only where at most SHARE of the row sides reach more than MARGIN px outside the learned outline and the
sole at most MARGIN rows below) over a grid of MARGIN and SHARE.

    PYTHONPATH=. python docs/scripts/segment/auto_rule.py OUT.csv DATASET[:VIEWS[:N]] ...

Choose thresholds on fresh renders only (never on data/phantom-v1 or -v2, the benchmark's test data).
"""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import smi_image.segment as S  # noqa: E402
from smi_features.extractor import measure_leg  # noqa: E402
from smi_image.marker import find_marker  # noqa: E402
from smi_image.pixels import to_uint8  # noqa: E402
from smi_image.settings import SilhouetteSettings  # noqa: E402

REAL_SEGMENT = S.segment_leg
MARGINS = (3, 4, 5, 6, 7, 8)


def width_px(img, small, seg, tr, view):
    """Maximum calf width (photo px) the features measure when the segmentation is ``seg``."""
    seg.work_image = small
    S.segment_leg = lambda *a, **k: seg
    try:
        m = measure_leg(img, height_cm=tr["height_cm"], view=view, side=tr["side"])
    finally:
        S.segment_leg = REAL_SEGMENT
    return m.features_px.get("calf_max_width", np.nan) if m.ok else np.nan


def photo_rows(d, views, limit):
    import torch

    torch.set_num_threads(1)
    s = SilhouetteSettings()
    truth = pd.read_csv(os.path.join(d, "truth.csv"), dtype={"subject_id": str})
    for view in views:
        for tr in truth[truth["view"] == view].head(limit).to_dict("records"):
            img = to_uint8(cv2.imread(os.path.join(d, tr["image"]), cv2.IMREAD_COLOR))
            mk = find_marker(img)
            c = S.auto_candidates(img, s, exclude_polygons=[mk[1]] if mk is not None else None, view=view,
                                  side=tr["side"])  # the two masks segment_leg's auto rule chooses between
            small, learned, classical = c.small, c.learned, c.plain
            if learned is not None and S.leg_aspect(learned.work) < S.MIN_LEG_ASPECT_LEARNED:
                learned = None  # segment_leg's "not leg-shaped"
            ref = tr.get("calf_width_seen_px")
            if ref is None or not np.isfinite(ref):  # studio: the slice at the true scale
                ref = tr[f"calf_width_{view}_cm"] * tr["px_per_cm_true"]
            row = {"dataset": d, "image": tr["image"], "view": view, "truth_px": ref,
                   "learned_px": width_px(img, small, learned, tr, view) if learned is not None else np.nan,
                   "classical_px": np.nan, "below_rows": np.nan, **{f"excess_share_{m}": np.nan for m in MARGINS}}
            if classical is not None:
                row["classical_px"] = width_px(img, small, classical, tr, view)
                if learned is not None:
                    for m in MARGINS:
                        row[f"excess_share_{m}"], row["below_rows"] = S.outline_excess(classical.work, learned.work,
                                                                                      margin_px=m)
            yield row


def rule_mape(x, margin_share=None, classical_always=False, learned_only=False):
    """MAPE (%) of the widths a rule picks, and how many photos took the classical mask."""
    take = x["classical_px"].notna()
    if learned_only:
        take &= x["learned_px"].isna()  # only where the learned one found nothing
    elif not classical_always:
        take &= x["learned_px"].isna() | ((x[f"excess_share_{margin_share[0]}"] <= margin_share[1])
                                              & (x["below_rows"] <= margin_share[0]))
    w = np.where(take, x["classical_px"], x["learned_px"])
    return float(np.nanmean(np.abs(w / x["truth_px"] - 1.0)) * 100), int(take.sum())


if __name__ == "__main__":
    out, specs = sys.argv[1], sys.argv[2:]
    rows = []
    if os.path.exists(out):
        rows = pd.read_csv(out).to_dict("records")
    for spec in specs:
        parts = spec.split(":")
        d, views, limit = parts[0], (parts[1:2] or ["lateral,posterior"])[0], (parts[2:3] or ["1000000"])[0]
        if any(r["dataset"] == d for r in rows):
            continue  # measured before (the per-photo table is the cache)
        rows.extend(photo_rows(d, views.split(","), int(limit)))
        pd.DataFrame(rows).to_csv(out, index=False)
    x = pd.DataFrame(rows)
    groups = list(x.groupby(["dataset", "view"]))
    groups = [(k, g) for k, g in groups if g["classical_px"].notna().any()]
    print("| rule | " + " | ".join(f"{os.path.basename(d)} {v}" for (d, v), _ in groups) + " |")
    print("|---|" + "---|" * len(groups))
    cell = lambda r: f"{r[0]:.2f} % ({r[1]})"  # noqa: E731
    print("| learned only | " + " | ".join(cell(rule_mape(g, learned_only=True)) for _, g in groups) + " |")
    print("| old auto (classical whenever taken) | " + " | ".join(cell(rule_mape(g, classical_always=True))
                                                             for _, g in groups) + " |")
    for margin in MARGINS:
        for share in (0.005, 0.01, 0.02, 0.03):
            mark = " **(shipped)**" if (margin, share) == (S.AGREE_PX, S.AGREE_SHARE) else ""
            print(f"| margin {margin} px, share {share:g}{mark} | "
                  + " | ".join(cell(rule_mape(g, (margin, share))) for _, g in groups) + " |")
