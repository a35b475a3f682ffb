"""far_leg_oracle.py with the edge snap searching only the inner half of its window (an edge never moves out).

An experiment, not the shipped code (docs/segmentation.md, "Session 9: where the clinic cohort's calf-width
error lives"). usage (from the repository root): python docs/scripts/seg/snap_inward.py DATASET VIEW base|inward
"""
import functools
import runpy
import sys

sys.path.insert(0, ".")
import smi_image.silhouette as SIL  # noqa: E402

if __name__ == "__main__":
    if sys.argv[3] == "inward":
        SIL.snap_edges = functools.partial(SIL.snap_edges, inward_only=True)
    sys.argv = sys.argv[:3]
    runpy.run_path("docs/scripts/seg/far_leg_oracle.py", run_name="__main__")
