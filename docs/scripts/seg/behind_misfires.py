"""How often a segmenter's *behind* map fires on photos of a single leg (docs/segmentation.md, "Session 8" and on).

usage (from the repository root): python docs/scripts/seg/behind_misfires.py WEIGHTS [STUDIO_DATASET]

The share of the leg map's pixels (p >= 0.5) that the behind map also marks (p >= 0.5), on the drawn test
ellipses of `tests/test_features_draw.py` and on every photo of the studio cohort (one leg on a plain wall:
nothing is behind anything); a photo counts as a misfire from 3 % (`smi_image.learned.MIN_BEHIND_SHARE`).
"""
import sys

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, ".")
sys.path.insert(0, "tests")
from smi_data.images import read_image  # noqa: E402
from smi_image.learned import MIN_BEHIND_SHARE, leg_probabilities  # noqa: E402
from test_features_draw import ellipse_picture  # noqa: E402

torch.set_num_threads(1)
weights = sys.argv[1]
studio = sys.argv[2] if len(sys.argv) > 2 else "data/phantom-v1"


def share(img) -> float:
    p = leg_probabilities(img, weights=weights)
    leg = p[0] >= 0.5
    return float((leg & (p[2] >= 0.5)).sum() / max(leg.sum(), 1))


print(f"drawn ellipses: {share(ellipse_picture(40.0, 100.0)):.3f} (40 px), {share(ellipse_picture(22.0, 100.0)):.3f} (22 px)")
m = pd.read_csv(f"{studio}/manifest.csv")
for view in ("lateral", "posterior"):
    s = np.array([share(read_image(f"{studio}/{r.image}")) for r in m.itertuples() if r.view == view])
    print(f"studio {view}: {int((s >= MIN_BEHIND_SHARE).sum())} of {len(s)} photos with >= {MIN_BEHIND_SHARE:.0%} "
          f"of the leg marked behind (median share {np.median(s):.3f})")
