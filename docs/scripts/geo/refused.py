"""Which photos of rendered cohorts the current code refuses at the cnn-geo input (segmentation, gate, scale), per view.

    PYTHONPATH=. python docs/scripts/geo/refused.py FOLDER...     (e.g. the eight pretraining folders)
"""
import sys
import pandas as pd
from smi_deep import geo
from smi_deep.preprocess import PreprocessError
for view in ("lateral", "posterior"):
    bad = []
    for d in sys.argv[1:]:
        man = pd.read_csv(f"{d}/manifest.csv", dtype={"subject_id": str})
        for r in man[man.view == view].itertuples():
            ppc = None if ("px_per_cm" not in man.columns or pd.isna(r.px_per_cm)) else float(r.px_per_cm)
            try:
                geo.geo_input(f"{d}/{r.image}", px_per_cm=ppc, view=view, side=r.side)
            except PreprocessError as exc:
                bad.append((d, r.image, str(exc)[-140:]))
    print(view, len(bad))
    for b in bad:
        print("  ", *b)
