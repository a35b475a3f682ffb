"""xgb-features (every covariate) trained on data/phantom-v2 with a given segmenter; its SMI repeatability on the
retake cohort measured with the same segmenter (a what-if: the shipped models use 'auto').

PYTHONPATH=. python docs/scripts/intervals/smi_segmenter.py auto|learned lateral|posterior
"""
import sys

import pandas as pd

from benchmarks import registry
from benchmarks.reliability import _split_ids, read_retakes, reliability_stats
from smi_data.manifest import read_manifest, to_samples
from smi_features.extractor import SilhouetteSettings
seg, view = sys.argv[1], sys.argv[2]
train = to_samples(read_manifest("data/phantom-v2"), view)
est = registry.get_spec("xgb-features").build(0, silhouette_settings=SilhouetteSettings(segmenter=seg))
est.fit(train, train["smi"].to_numpy(float))
man = read_retakes("/tmp/intervals2-retake")
smp = to_samples(man, view)
pred = est.predict(smp.drop(columns=["smi"]))
d = _split_ids(pd.DataFrame({"subject_id": smp["subject_id"].to_numpy(), "v": pred}))
r = reliability_stats(d[["subject", "take", "v"]].rename(columns={"subject": "subject_id", "v": "value"}))
print(seg, view, {k: round(float(r[k]), 4) for k in ("n_subjects", "icc21", "sem", "mdc95", "cv_within_pct", "ba_bias")})
