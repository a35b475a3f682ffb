"""far_leg_oracle.py with the edge snap searching only the inner half of its window (an edge never moves out).

An experiment, not the shipped code (docs/segmentation.md, "Session 9: where the clinic cohort's calf-width
error lives"). usage (from the repository root): python docs/scripts/seg/snap_inward.py DATASET VIEW base|inward
"""
import runpy
import sys

import numpy as np
from scipy.ndimage import median_filter

sys.path.insert(0, ".")
import smi_image.silhouette as SIL  # noqa: E402


def snap_inward(img, left, right, m, to_image=None):
    """:func:`smi_image.silhouette.snap_edges` with the outer half of each row's window left out."""
    h, w = img.shape[:2]
    rows = np.flatnonzero(np.isfinite(left) & (right - left >= 2 * m + 6))
    if rows.size == 0 or m < 1:
        return left, right
    n = rows.size
    offs = np.arange(-m - 2, m + 3)
    prior = 1.0 - 0.5 * np.abs(np.arange(-m, m + 1)) / m
    col = np.concatenate([left[rows], right[rows]]).astype(int)[:, None] + offs[None, :]
    ok = (col.min(axis=1) >= 0) & (col.max(axis=1) < w)
    v = SIL._gather(img, np.concatenate([rows, rows])[:, None], np.clip(col, 0, w - 1), to_image, np.int32)
    pair = v[:, :-1] + v[:, 1:]
    d = pair[:, 3:] - pair[:, :-3]
    step = np.sqrt(SIL._channel_sum(d * d).astype(np.float32)) * prior[None, :]
    j = np.arange(-m, m + 1)
    step[:n, j < 0] = -1  # a left edge does not move left
    step[n:, j > 0] = -1  # a right edge does not move right
    best = np.where(ok, np.argmax(step, axis=1) - m, 0)
    out = []
    for k, edge in enumerate((left, right)):
        new = edge.copy()
        new[rows] = median_filter(edge[rows] + best[k * n:(k + 1) * n], size=SIL.SNAP_SMOOTH_ROWS, mode="nearest")
        out.append(new)
    return out[0], out[1]


if __name__ == "__main__":
    if sys.argv[3] == "inward":
        SIL.snap_edges = snap_inward
    sys.argv = sys.argv[:3]
    runpy.run_path("docs/scripts/seg/far_leg_oracle.py", run_name="__main__")
