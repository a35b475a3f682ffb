"""Markdown tables of docs/intervals.md's clinic retake section from `legsmi reliability` folders.

python docs/scripts/intervals/reliability_tables.py PREFIX [MEAS]   (folders PREFIX-meas, PREFIX-xgb-lateral, ...)
"""
import os
import sys

import pandas as pd

ROOT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/intervals2-rel"
runs = [("xgb-features, lateral (default features)", "xgb-lateral"), ("xgb-features, lateral, `feature_set=repeatable`", "xgbrep-lateral"),
        ("xgb-features, posterior (default features)", "xgb-posterior"),
        ("xgb-features, posterior, `feature_set=repeatable`", "xgbrep-posterior"),
        ("xgb-features, both views (default features)", "xgb-both"), ("xgb-features, both views, `feature_set=repeatable`", "xgbrep-both"),
        ("cnn-geo, lateral", "geo-lateral"), ("cnn-geo, posterior", "geo-posterior"), ("cnn-geo, both views", "geo-both"),
        ("tape, lateral", "tape-lateral"), ("cnn-lite, lateral", "cnn-lite-lateral")]
print("| SMI estimate of | people × takes | ICC(2,1) [95 % CI] | ICC(3,1) | SEM (kg/m²) | MDC95 (kg/m²) | within-subject CV | Bland–Altman take 2 − 1: bias [95 % limits] |")
print("|---|---|---|---|---|---|---|---|")
for name, d in runs:
    p = f"{ROOT}-{d}/reliability.csv"
    if not os.path.exists(p):
        continue
    r = pd.read_csv(p)
    r = r[r["measure"] == "SMI estimate"].iloc[0]
    print(f"| {name} | {r.n_subjects} × {r.n_takes} | {r.icc21:.3f} [{r.icc21_lower:.3f}, {r.icc21_upper:.3f}] | {r.icc31:.3f} | "
          f"{r['sem']:.3f} | {r.mdc95:.2f} | {r.cv_within_pct:.2f} % | {r.ba_bias:+.3f} [{r.ba_loa_lower:+.3f}, {r.ba_loa_upper:+.3f}] |")
MEAS = sys.argv[2] if len(sys.argv) > 2 else "meas"   # e.g. meas-learned: `reliability --segmenter learned`
r = pd.read_csv(f"{ROOT}-{MEAS}/reliability.csv")
print()
print("| measure | unit | people × takes | ICC(2,1) [95 % CI] | ICC(3,1) [95 % CI] | SEM | MDC95 | within-subject CV | Bland–Altman take 2 − 1: bias [95 % limits] |")
print("|---|---|---|---|---|---|---|---|---|")
for _, x in r.iterrows():
    f = (lambda v: f"{v:.3f}") if x.unit != "cm³" else (lambda v: f"{v:.0f}")
    print(f"| {x.measure} | {x.unit} | {x.n_subjects} × {x.n_takes} | {x.icc21:.3f} [{x.icc21_lower:.3f}, {x.icc21_upper:.3f}] | "
          f"{x.icc31:.3f} [{x.icc31_lower:.3f}, {x.icc31_upper:.3f}] | {f(x['sem'])} | {f(x.mdc95)} | {x.cv_within_pct:.2f} % | "
          f"{f(x.ba_bias)} [{f(x.ba_loa_lower)}, {f(x.ba_loa_upper)}] |")
