"""The benchmark on data/phantom-v2 with every cross-conformal scheme patched to K inner folds.

PYTHONPATH=. python docs/scripts/intervals/bench_k.py K OUT MODELS REPEATS   (K >= 1000: leave-one-subject-out)
In-process (jobs=1), so the patch reaches every fit; no ceiling.
"""
import sys
from benchmarks import calibration
from benchmarks.harness import BenchmarkConfig, run_benchmark
K, out, models, R = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
calibration.SCHEMES["baseline"] = ("cv", {"n_splits": K})
calibration.SCHEMES["features"] = ("cv", {"n_splits": K})
cfg = BenchmarkConfig(dataset="data/phantom-v2", out=out, models=models, repeats=R, jobs=1, ceiling=False)
run_benchmark(cfg)
print("done")
