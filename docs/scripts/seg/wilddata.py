"""One training folder for `legsmi segmenter train` out of several `phantom --scene wild` renders.

usage: python docs/scripts/seg/wilddata.py OUT SEED_DIR[:SKIP] ...

For each render folder (named by its seed, for example /tmp/seg5-w1000), links its images and label maps
into OUT/images/s<seed>_<stem>.jpg and OUT/labels/s<seed>_<stem>.png, and writes OUT/truth.csv (image,
turn_deg, one_leg) so that the trainer knows which side views were turned round. ``:SKIP`` leaves out the first SKIP
subjects (P001 ... P<SKIP>) of that folder: the held-out renders of the same seed
(`phantom --subjects 15 --seed 2000` draws the same first 15 people as `--subjects 300 --seed 2000`).
The seed in the prefix is the folder name's trailing digits. Links, not copies: OUT is only valid while the
render folders are.
"""

import re
import sys
from pathlib import Path

import pandas as pd


def main(out: str, sources: list[str]) -> None:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=False)
    (out / "labels").mkdir()
    rows = []
    for spec in sources:
        folder, _, skip = spec.partition(":")
        folder = Path(folder).resolve()
        seed = re.search(r"(\d+)$", folder.name).group(1)
        skip = int(skip or 0)
        truth = pd.read_csv(folder / "truth.csv")
        one = truth["one_leg"].fillna(False).astype(bool) if "one_leg" in truth.columns else [False] * len(truth)
        for image, turn, single in zip(truth["image"], truth["turn_deg"], one):
            stem = Path(str(image)).stem
            if int(re.match(r"P(\d+)_", stem).group(1)) <= skip:
                continue
            img, lab = folder / str(image), folder / "labels" / f"{stem}.png"
            if not (img.is_file() and lab.is_file()):
                continue
            name = f"s{seed}_{stem}"
            (out / "images" / f"{name}{img.suffix}").symlink_to(img)
            (out / "labels" / f"{name}.png").symlink_to(lab)
            rows.append({"image": f"images/{name}{img.suffix}", "turn_deg": float(turn), "one_leg": bool(single)})
    pd.DataFrame(rows).to_csv(out / "truth.csv", index=False)
    print(f"{out}: {len(rows)} photos")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
