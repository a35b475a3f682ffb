"""The upside-down rule on folders of photos, upright and turned 180° (docs/segmentation.md, "Upside-down photos").

usage: python docs/scripts/seg/orientation_check.py FOLDER ...

FOLDER is a rendered cohort (manifest.csv with image and view: one row per view) or a folder of photos
without a manifest (its images/*, no view: the real set). Every photo goes through `leg_silhouette` with the
shipped segmenter and the shipped rule, as it is and turned 180°. Counted are the photos whose upright copy
is measured or refused as upside down (a photo refused upright for another reason says nothing about the
rule); of those, how many upright are refused as upside down (should be none) and how many turned are
refused as upside down, measured anyway, or refused for another reason.
"""

import sys
from collections import Counter
from pathlib import Path

import cv2
import pandas as pd

from smi_data.images import read_image
from smi_image.silhouette import SilhouetteError, leg_silhouette


def verdict(img, view) -> str:
    try:
        leg_silhouette(img, view=view)
    except SilhouetteError as e:
        return "upside_down" if e.code == "upside_down" else "other"
    return "measured"


def photos(folder: Path):
    man = folder / "manifest.csv"
    if man.is_file():
        for row in pd.read_csv(man, dtype=str).itertuples(index=False):
            yield folder / row.image, row.view
    else:
        for p in sorted((folder / "images").iterdir()):
            yield p, None


def main(folders: list[str]) -> None:
    print("| photos | upright: refused as upside down | turned 180°: refused as upside down | turned: measured "
          "anyway | turned: refused otherwise |")
    print("|---|---:|---:|---:|---:|")
    for folder in map(Path, folders):
        counts = {}
        for path, view in photos(folder):
            img = read_image(path)
            up = verdict(img, view)
            if up == "other":
                continue
            c = counts.setdefault(view or "all", Counter())
            c["n"] += 1
            c["up_" + up] += 1
            c["turned_" + verdict(cv2.rotate(img, cv2.ROTATE_180), view)] += 1
        for view, c in counts.items():
            n = c["n"]
            print(f"| `{folder.name}` {view} | {c['up_upside_down']} of {n} | {c['turned_upside_down']} of {n} | "
                  f"{c['turned_measured']} | {c['turned_other']} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
