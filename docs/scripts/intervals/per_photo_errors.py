"""Per photo of a retake cohort: the calf width measured with segmenter auto and learned against the width the
camera sees (truth.csv), by the finder that measured it; the worst photos.

PYTHONPATH=. python docs/scripts/intervals/per_photo_errors.py RETAKE_DIR   (writes /tmp/rel3-what/per_photo.csv)
"""
import sys

import pandas as pd
from pathlib import Path

from benchmarks.reliability import _split_ids, read_retakes
from smi_data.manifest import to_samples
from smi_features.extractor import ExtractionSettings, SilhouetteSettings, sample_features

pd.set_option('display.width', 250); pd.set_option('display.max_rows', 200)
ds = sys.argv[1]
man = read_retakes(ds)
samples = to_samples(man, "both")
t = pd.read_csv(f"{ds}/truth.csv")
out = {}
for seg in ("auto", "learned"):
    s = ExtractionSettings(silhouette=SilhouetteSettings(segmenter=seg))
    table, reasons = sample_features(samples, settings=s)
    table = table.copy(); table["subject_id"] = samples["subject_id"].to_numpy()
    out[seg] = _split_ids(table)
rows = []
for view, p in (("lateral", "lat_"), ("posterior", "post_")):
    tv = t[t.view == view].set_index(["subject_id", "take"])
    for seg, v in out.items():
        d = v.set_index(["subject", "take"])
        w = d[f"{p}calf_max_width_cm"]; seen = tv["calf_width_seen_cm"].reindex(w.index)
        e = 100 * (w / seen - 1)
        rows.append(pd.DataFrame({"view": view, "seg": seg, "method": d[f"{p}silhouette_method"], "err": e,
                                  "width": w, "seen": seen}))
r = pd.concat(rows).reset_index()
print(r.groupby(["view", "seg", "method"]).err.agg(["count", "mean", "median", lambda x: x.abs().gt(5).sum()]).round(2))
a = r[(r.seg == "auto")]
print(a[a.err.abs() > 8].sort_values("err", ascending=False)[["subject", "take", "view", "method", "width", "seen", "err"]].round(2).to_string())
Path("/tmp/rel3-what").mkdir(exist_ok=True)
r.to_csv("/tmp/rel3-what/per_photo.csv", index=False)
