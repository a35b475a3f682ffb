"""Cohort statistics and the two figures of docs/phantom.md (no anny needed).

``python -m smi_data.phantom.report data/phantom-v1 docs/img`` prints the statistics and the
ceiling as Markdown and writes ``phantom_smi_by_sex.png`` and ``phantom_smi_vs_calf.png``.
``python -m smi_data.phantom.report scenes docs/img/phantom_scenes.png CLINIC_DIR WILD_DIR`` draws
the scene montage (photos over their label maps) and prints each scene cohort's checks
(:func:`scene_checks`: marker detection, perspective bias of the true mask's widest row).
"""

from __future__ import annotations

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


def _figure(**kw):
    """One figure and its axes on an Agg canvas of its own (the global matplotlib backend is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def plot_smi_by_sex(dataset_dir, path) -> None:
    t = subjects(dataset_dir)
    fig, ax = _figure(figsize=(4.5, 4.0), dpi=120)
    data = [t.loc[t["sex"] == s, "smi"].to_numpy() for s in ("M", "F")]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks([1, 2], ["men", "women"])
    rng = np.random.default_rng(0)
    for k, d in enumerate(data, start=1):
        ax.scatter(k + rng.uniform(-0.12, 0.12, len(d)), d, s=12, alpha=0.7)
    from smi_data.cutoffs import smi_cutoff

    men, women = smi_cutoff("M", "BIA"), smi_cutoff("F", "BIA")
    for y, lab in ((men, f"AWGS men {men:g}"), (women, f"AWGS women (BIA) {women:g}")):
        ax.axhline(y, ls=":", lw=1, color="grey")
        ax.text(2.45, y, lab, fontsize=7, va="bottom", ha="right", color="grey")
    ax.set_ylabel("SMI label (kg/m$^2$)")
    ax.set_title(f"Phantom cohort: SMI by sex (n = {len(t)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def plot_smi_vs_calf(dataset_dir, path) -> None:
    t = subjects(dataset_dir)
    fig, ax = _figure(figsize=(5.0, 4.0), dpi=120)
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


#: Label map colours (RGB) for figures: background, leg, other leg, clothing, marker, distractor, thigh.
LABEL_COLOURS = np.array([[40, 40, 40], [40, 200, 60], [210, 60, 50], [50, 80, 220], [250, 230, 40],
                          [220, 60, 220], [60, 200, 210]], np.uint8)


def scene_montage(dataset_dirs, path, *, n: int = 4, width: int = 180) -> None:
    """The first ``n`` photos of each scene dataset, each over its colour-coded label map (a PNG)."""
    import cv2

    from ..images import read_image

    rows = []
    for d in dataset_dirs:
        t = pd.read_csv(Path(d) / "truth.csv", dtype={"subject_id": str}).head(n)
        tiles = []
        for r in t.itertuples():
            img = read_image(Path(d) / r.image)
            lab = cv2.imread(str(Path(d) / r.label_map), cv2.IMREAD_UNCHANGED)
            h = int(round(width * img.shape[0] / img.shape[1]))
            img = cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA)
            lab = cv2.resize(lab, (width, h), interpolation=cv2.INTER_NEAREST)
            tiles.append(np.vstack([img, LABEL_COLOURS[lab][..., ::-1]]))
        rows.append(np.hstack(tiles))
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    cv2.imwrite(str(path), np.vstack(rows))


def scene_checks(dataset_dir) -> dict:
    """Checks of a scene cohort from its photos and truth: marker detection, scale, widths.

    Returns a dict: ``marker_placed`` (share of photos with the card), ``marker_found`` (of those,
    share where :func:`smi_data.scale.detect_marker_px_per_cm` finds it), ``marker_ppc_error_pct``
    (mean, max |.|), ``marker_side_px`` (min, max), and per view the perspective bias of the true
    mask's widest row (``calf_width_seen_px`` over ``calf_width_seen_cm`` x ``px_per_cm_true``,
    mean and mean |.| in %), the mask against the projected mesh (``mask_vs_seen_pct``), and the mask
    against the truth's calf slice (``mask_vs_slice_pct``).
    """
    from ..images import read_image
    from ..scale import detect_marker_px_per_cm

    t = pd.read_csv(Path(dataset_dir) / "truth.csv", dtype={"subject_id": str})
    placed = t[t["marker"].astype(bool)]
    err = []
    for r in placed.itertuples():
        found = detect_marker_px_per_cm(read_image(Path(dataset_dir) / r.image))
        if found is not None:
            err.append(100.0 * (found[0] / r.px_per_cm_true - 1.0))
    err = np.asarray(err)
    out = {"photos": len(t), "marker_placed": len(placed) / max(len(t), 1),
           "marker_found": len(err) / max(len(placed), 1),
           "marker_ppc_error_pct": (float(err.mean()), float(np.abs(err).max())) if len(err) else (np.nan, np.nan),
           "marker_side_px": (float(placed["marker_side_px"].min()), float(placed["marker_side_px"].max()))
           if len(placed) else (np.nan, np.nan)}
    for view, g in t.groupby("view"):
        cols = [c for c in ("perspective_bias_pct", "mask_vs_seen_pct", "mask_vs_slice_pct") if c in g]
        # mean and mean |.| (%)
        out[view] = {c: (round(float(g[c].mean()), 3), round(float(g[c].abs().mean()), 3)) for c in cols}
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "scenes":
        if len(argv) < 3:
            print("usage: python -m smi_data.phantom.report scenes OUT_PNG DATASET_DIR...", file=sys.stderr)
            return 2
        scene_montage(argv[2:], argv[1])
        for d in argv[2:]:
            print(d, scene_checks(d))
        return 0
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
    from smi_data.cutoffs import smi_cutoff

    men, women = smi_cutoff("M", "BIA"), smi_cutoff("F", "BIA")
    low = np.where(t["sex"] == "M", t["smi"] < men, t["smi"] < women)
    print(f"below the AWGS 2019 BIA cut-offs (men < {men:g}, women < {women:g}): "
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
