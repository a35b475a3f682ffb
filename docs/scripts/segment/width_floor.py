"""Calf width per photo against the seen width, and what a perfect segmenter would score on the same photos.

    PYTHONPATH=. python docs/scripts/segment/width_floor.py DATASET [SEGMENTER]   (auto | learned | classical)

For a phantom dataset with ``truth.csv`` (scene renders: ``calf_width_seen_cm``, ``mask_vs_seen_pct``,
``perspective_bias_pct``): per view, the measured maximum calf width's MAPE against the seen width (as
``smi_features.truthcheck.compare_with_truth``), the photos' leg finders, the MAPE a perfect mask would have
at the marker's true scale (the true mask's widest row, ``(1 + mask_vs_seen) (1 + perspective_bias) - 1``), and
the measured width against that perfect mask (the segmentation's own share), with the photos over 5 % off.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd  # noqa: E402

from smi_data.manifest import read_manifest, to_samples  # noqa: E402
from smi_features.extractor import ExtractionSettings, sample_features  # noqa: E402
from smi_image.settings import SilhouetteSettings  # noqa: E402

d = Path(sys.argv[1])
segmenter = sys.argv[2] if len(sys.argv) > 2 else "auto"
samples = to_samples(read_manifest(d), "both")
table, _ = sample_features(samples, settings=ExtractionSettings(silhouette=SilhouetteSettings(segmenter=segmenter)),
                           cache=False)
truth = pd.read_csv(d / "truth.csv", dtype={"subject_id": str})
by_image = {str((d / r["image"]).resolve()): r for r in truth.to_dict("records")}
for view, p in (("lateral", "lat_"), ("posterior", "post_")):
    rows = []
    for pos, srow in enumerate(samples.to_dict("records")):
        path = srow.get(f"image_{view}")
        if not isinstance(path, str):
            continue
        tr = by_image[str(Path(path).resolve())]
        perfect = (1 + tr["mask_vs_seen_pct"] / 100) * (1 + tr["perspective_bias_pct"] / 100)
        measured = table.iloc[pos][f"{p}calf_max_width_cm"] / tr["calf_width_seen_cm"]
        rows.append({"err": 100 * (measured - 1), "perfect": 100 * (perfect - 1), "seg": 100 * (measured / perfect - 1),
                     "finder": table.iloc[pos][f"{p}silhouette_method"]})
    x = pd.DataFrame(rows)
    seg = x["seg"].dropna()
    print(f"{view}: measured MAPE {x.err.abs().mean():.2f} % (bias {x.err.mean():+.2f}, "
          f"n {x.err.notna().sum()}/{len(x)}, finders {x.finder.value_counts().to_dict()}); "
          f"perfect mask {x.perfect.abs().mean():.2f} % "
          f"(bias {x.perfect.mean():+.2f}); measured against the perfect mask {seg.abs().mean():.2f} % "
          f"(bias {seg.mean():+.2f}; {(seg.abs() > 5).sum()} photos over 5 %, the rest "
          f"{seg[seg.abs() <= 5].abs().mean():.2f} %)")
