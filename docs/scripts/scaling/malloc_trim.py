"""CPU and page faults of measuring the bundled clinic photos in this process, for comparing malloc settings.

usage (from the repository root):
    OMP_NUM_THREADS=1 python docs/scripts/scaling/malloc_trim.py [DATASET]
    MALLOC_TRIM_THRESHOLD_=65536 OMP_NUM_THREADS=1 python docs/scripts/scaling/malloc_trim.py [DATASET]
The second is the environment Dask's nanny gives its workers by default (docs/scaling.md, section 2).
"""
import resource
import sys

sys.path.insert(0, ".")
from smi_data.manifest import read_manifest  # noqa: E402
from smi_features.extractor import ExtractionSettings, _measure_worker  # noqa: E402

m = read_manifest(sys.argv[1] if len(sys.argv) > 1 else "data/phantom-v2", require_label=False)
calls = [(str(r.image_path), (r.px_per_cm, r.height_cm, r.view, r.side)) for r in m.itertuples()]
sd = ExtractionSettings().as_dict()
for p, ctx in calls[:8]:
    _measure_worker(p, sd, ctx)  # warm-up: weights, OpenCV's tables
for k in range(2):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for p, ctx in calls:
        _measure_worker(p, sd, ctx)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(f"round {k + 1}, {len(calls)} photos: user {r1.ru_utime - r0.ru_utime:.2f} s, system "
          f"{r1.ru_stime - r0.ru_stime:.2f} s, page faults {r1.ru_minflt - r0.ru_minflt}")
