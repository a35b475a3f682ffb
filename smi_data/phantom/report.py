"""Cohort statistics and the two figures of docs/phantom.md (no anny needed).

``python -m smi_data.phantom.report data/phantom-v1 docs/img`` prints the statistics and the
ceiling as Markdown and writes ``phantom_smi_by_sex.png`` and ``phantom_smi_vs_calf.png``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .ceiling import compute_ceiling


def subjects(dataset_dir) -> pd.DataFrame:
    """One truth row per subject."""
    return pd.read_csv(Path(dataset_dir) / "truth.csv", dtype={"subject_id": str}).drop_duplicates("subject_id")


def cohort_statistics(dataset_dir) -> pd.DataFrame:
    """Mean, SD, median, IQR, min and max by sex and overall for the main variables."""
    t = subjects(dataset_dir)
    cols = ["age", "height_cm", "weight_kg", "bmi", "fat_fraction", "calf_circ_cm", "calf_width_lateral_cm",
            "calf_width_posterior_cm", "calf_level_frac", "ankle_circ_cm", "lowerleg_volume_l", "asm_kg",
            "smi_true", "smi"]
    rows = []
    for name, g in [("men", t[t["sex"] == "M"]), ("women", t[t["sex"] == "F"]), ("all", t)]:
        for c in cols:
            x = g[c].astype(float)
            rows.append({"group": name, "variable": c, "n": len(x), "mean": x.mean(), "sd": x.std(),
                         "median": x.median(), "q1": x.quantile(0.25), "q3": x.quantile(0.75),
                         "min": x.min(), "max": x.max()})
    return pd.DataFrame(rows)


def plot_smi_by_sex(dataset_dir, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = subjects(dataset_dir)
    fig, ax = plt.subplots(figsize=(4.5, 4.0), dpi=120)
    data = [t.loc[t["sex"] == s, "smi"].to_numpy() for s in ("M", "F")]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks([1, 2], ["men", "women"])
    rng = np.random.default_rng(0)
    for k, d in enumerate(data, start=1):
        ax.scatter(k + rng.uniform(-0.12, 0.12, len(d)), d, s=12, alpha=0.7)
    for y, lab in ((7.0, "AWGS men 7.0"), (5.7, "AWGS women (BIA) 5.7")):
        ax.axhline(y, ls=":", lw=1, color="grey")
        ax.text(2.45, y, lab, fontsize=7, va="bottom", ha="right", color="grey")
    ax.set_ylabel("SMI label (kg/m$^2$)")
    ax.set_title(f"Phantom cohort: SMI by sex (n = {len(t)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_smi_vs_calf(dataset_dir, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = subjects(dataset_dir)
    fig, ax = plt.subplots(figsize=(5.0, 4.0), dpi=120)
    for s, lab in (("M", "men"), ("F", "women")):
        g = t[t["sex"] == s]
        r = np.corrcoef(g["calf_circ_cm"], g["smi"])[0, 1]
        ax.scatter(g["calf_circ_cm"], g["smi"], s=14, alpha=0.8, label=f"{lab} (r = {r:.2f})")
    ax.set_xlabel("maximum calf circumference from the mesh (cm)")
    ax.set_ylabel("SMI label (kg/m$^2$)")
    ax.set_title("Phantom cohort: SMI against calf circumference", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def example_montage(dataset_dir, path, *, n: int = 2, size: int = 224) -> None:
    """The first ``n`` subjects' lateral and posterior photos side by side (a PNG for the docs)."""
    import cv2

    from ..images import read_image

    man = pd.read_csv(Path(dataset_dir) / "manifest.csv", dtype={"subject_id": str})
    tiles = []
    for sid in man["subject_id"].drop_duplicates().iloc[:n]:
        for view in ("lateral", "posterior"):
            row = man[(man["subject_id"] == sid) & (man["view"] == view)]
            if len(row):
                img = read_image(Path(dataset_dir) / row["image"].iloc[0])
                tiles.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(path), np.hstack(tiles))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m smi_data.phantom.report DATASET_DIR IMG_DIR", file=sys.stderr)
        return 2
    ds, img = Path(argv[0]), Path(argv[1])
    img.mkdir(parents=True, exist_ok=True)
    plot_smi_by_sex(ds, img / "phantom_smi_by_sex.png")
    plot_smi_vs_calf(ds, img / "phantom_smi_vs_calf.png")
    example_montage(ds, img / "phantom_examples.png")
    st = cohort_statistics(ds)
    for group, g in st.groupby("group", sort=False):
        print(f"\n{group} (n = {int(g['n'].iloc[0])})\n")
        print("| variable | mean ± SD | median (IQR) | range |\n|---|---|---|---|")
        for r in g.itertuples():
            print(f"| {r.variable} | {r.mean:.2f} ± {r.sd:.2f} | {r.median:.2f} ({r.q1:.2f}–{r.q3:.2f}) | "
                  f"{r.min:.2f}–{r.max:.2f} |")
    t = subjects(ds)
    for s in ("M", "F"):
        g = t[t["sex"] == s]
        print(f"r(calf circumference, SMI) {s}: {np.corrcoef(g['calf_circ_cm'], g['smi'])[0, 1]:.3f}")
    low = np.where(t["sex"] == "M", t["smi"] < 7.0, t["smi"] < 5.7)
    print(f"below the AWGS 2019 BIA cut-offs (men < 7.0, women < 5.7): "
          f"men {low[t['sex'] == 'M'].sum()}, women {low[t['sex'] == 'F'].sum()}")
    c = compute_ceiling(ds, folds=5, seed=0)
    print("\n| predictor (5-fold CV) | best model | MAPE % | MAPE range over folds | CCC | CCC range over folds |")
    print("|---|---|---|---|---|---|")
    for k in ("covariates_only", "lateral", "posterior", "both"):
        d = c[k]
        print(f"| {k} | {d['model']} | {d['mape']:.2f} | {d['mape_folds'][0]:.2f}–{d['mape_folds'][1]:.2f} | "
              f"{d['ccc']:.3f} | {d['ccc_folds'][0]:.3f}–{d['ccc_folds'][1]:.3f} |")
    print(f"| smi_true as prediction (device error only) | | {c['label_noise_floor']['mape']:.2f} | | "
          f"{c['label_noise_floor']['ccc']:.3f} | |")
    for k in ("covariates_only", "lateral", "posterior", "both"):
        print(k, {m: (round(r["mape"], 2), round(r["ccc"], 3)) for m, r in c[k]["all_models"].items()})
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
