"""A tiny drawn dataset for fast tests: leg-shaped silhouettes of known size, in the dataset format.

Not a substitute for the synthetic cohort (``data/phantom-v1``, rendered from a 3D body
model): these are flat 2-D drawings whose calf width is a known function of SMI, so a
test can check that a pipeline measures and learns what was drawn. Everything is drawn
from one seed; the same seed gives the same files.

Geometry (cm), for each subject: knee-to-ankle length ``L = 0.245 * height``; calf
circumference ``C``; the calf's cross-section is an ellipse with front-to-back depth
``d = 1.10 * C / pi * k`` and side-to-side width ``w = 0.90 * C / pi * k`` where ``k``
makes Ramanujan's perimeter equal ``C``. The width profile from knee (t = 0) to ankle
(t = 1) rises from the knee width to the calf maximum at ``t = calf_level`` and falls to
the ankle width. SMI is linear in ``C`` by sex plus noise (``smi_true``); ``smi`` adds a
2.5 % measurement error.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .runs import atomic_write_csv, atomic_write_bytes
from .scale import MARKER_SIZE_CM, marker_image


def ellipse_perimeter(a: float, b: float) -> float:
    """Ramanujan's second approximation of an ellipse's perimeter from semi-axes a, b."""
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def width_profile(t: np.ndarray, knee: float, calf: float, ankle: float, level: float) -> np.ndarray:
    """Leg width at relative levels ``t`` (0 knee .. 1 ankle), same unit as the widths."""
    t = np.asarray(t, dtype=float)
    up = knee + (calf - knee) * np.sin(0.5 * np.pi * np.clip(t / level, 0, 1))
    s = np.clip((t - level) / (1 - level), 0, 1)
    down = ankle + (calf - ankle) * np.cos(0.5 * np.pi * s) ** 1.6
    return np.where(t <= level, up, down)


def _draw_leg(view: str, subj: dict, ppc: float, size: int, rng: np.random.Generator, marker: bool,
              roll_deg: float) -> np.ndarray:
    import cv2

    bg = rng.integers(150, 255, 3).astype(np.uint8)
    skin = np.array([rng.integers(60, 200), rng.integers(80, 210), rng.integers(120, 235)], np.uint8)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = bg
    calf = subj["calf_width_lateral_cm"] if view == "lateral" else subj["calf_width_posterior_cm"]
    ankle = subj["ankle_width_lateral_cm"] if view == "lateral" else subj["ankle_width_posterior_cm"]
    knee = calf * 0.92
    L = subj["leg_length_cm"]
    top_y = 0.04 * size  # knee a little below the top edge; thigh continues above
    cx = 0.42 * size
    t = np.linspace(0, 1, 120)
    w = width_profile(t, knee, calf, ankle, subj["calf_level_frac"]) * ppc
    ys = top_y + t * L * ppc
    # the calf bulges backward in the lateral view (asymmetric), symmetric in the posterior view
    back = 0.58 if view == "lateral" else 0.5
    left = cx - back * w
    right = cx + (1 - back) * w
    pts = np.vstack([[[left[0], 0]], np.stack([left, ys], 1), np.stack([right[::-1], ys[::-1]], 1), [[right[0], 0]]])
    scale_ss = 4
    big = np.zeros((size * scale_ss, size * scale_ss), np.uint8)
    cv2.fillPoly(big, [np.round(pts * scale_ss).astype(np.int32)], 255, lineType=cv2.LINE_8)
    # foot: an ellipse at the ankle, forward (to the left) in the lateral view
    fy = top_y + L * ppc + 2.5 * ppc
    if view == "lateral":
        fc, fax = (cx - 6 * ppc, fy), (13 * ppc, 3.5 * ppc)
    else:
        fc, fax = (cx, fy), (ankle * 0.55 * ppc, 4.0 * ppc)
    cv2.ellipse(big, (int(fc[0] * scale_ss), int(fc[1] * scale_ss)),
                (int(fax[0] * scale_ss), int(fax[1] * scale_ss)), 0, 0, 360, 255, -1)
    mask = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    shade = 0.85 + 0.15 * np.linspace(1, 0, size)[None, :]
    leg = skin[None, None, :].astype(np.float32) * shade[..., None]
    img = (img.astype(np.float32) * (1 - mask[..., None]) + leg * mask[..., None])
    if marker:
        side = int(round(MARKER_SIZE_CM * ppc))
        quiet = max(3, side // 5)
        m = marker_image(side)
        x0 = int(0.72 * size)
        y0 = int(0.45 * size)
        img[y0 - quiet:y0 + side + quiet, x0 - quiet:x0 + side + quiet] = 255
        img[y0:y0 + side, x0:x0 + side] = m[..., None]
    if roll_deg:
        rot = cv2.getRotationMatrix2D((size / 2, size / 2), roll_deg, 1.0)
        img = cv2.warpAffine(img, rot, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    img = img + rng.normal(0, 2.0, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def sample_toy_subjects(n_subjects: int, seed: int = 0) -> pd.DataFrame:
    """Subject table with covariates, calf geometry and SMI (half men, half women)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_subjects):
        sex = "M" if i % 2 == 0 else "F"
        height = rng.normal(171 if sex == "M" else 158, 6)
        age = float(np.clip(rng.normal(38, 9), 20, 70))
        circ = rng.normal(37.0 if sex == "M" else 35.0, 2.6)
        k_ell = circ / ellipse_perimeter(1.10 * circ / (2 * math.pi), 0.90 * circ / (2 * math.pi))
        depth = 1.10 * circ / math.pi * k_ell
        width = 0.90 * circ / math.pi * k_ell
        smi_true = (7.6 if sex == "M" else 6.1) + 0.32 * (circ - (37.0 if sex == "M" else 35.0)) + rng.normal(0, 0.15)
        smi = smi_true * (1 + rng.normal(0, 0.025))
        weight = 22.5 * (height / 100) ** 2 * (1 + 0.03 * (circ - 36))
        rows.append({
            "subject_id": f"T{i + 1:03d}", "sex": sex, "age": round(age, 1), "height_cm": round(height, 1),
            "weight_kg": round(weight, 1), "smi_true": smi_true, "smi": round(smi, 3),
            "calf_circ_cm": circ, "calf_width_lateral_cm": depth, "calf_width_posterior_cm": width,
            "ankle_width_lateral_cm": 0.36 * depth + 2.0, "ankle_width_posterior_cm": 0.36 * width + 1.6,
            "calf_level_frac": float(rng.uniform(0.25, 0.38)), "leg_length_cm": 0.245 * height,
        })
    return pd.DataFrame(rows)


def make_toy_dataset(out_dir, n_subjects: int = 12, *, seed: int = 0, size: int = 256,
                     views=("lateral", "posterior"), marker: bool = True, jpeg_quality: int = 92,
                     max_roll_deg: float = 0.0, takes: int = 1) -> Path:
    """Write a drawn dataset (manifest.csv, images/, truth.csv) to ``out_dir`` and return its path.

    ``takes`` > 1 photographs every subject that many times (repeat photos for a
    reliability study): the body is the same, the camera distance (scale), roll, light,
    skin shade and noise are drawn afresh for each take, and the manifest gets a ``take``
    column (1, 2, ...).
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    subjects = sample_toy_subjects(n_subjects, seed)
    man, truth = [], []
    for take in range(1, int(takes) + 1):
        # take 1 draws exactly what a one-take dataset of this seed draws
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1] if take == 1 else [seed, 1, take]))
        _draw_take(out, subjects, views, size, rng, marker, max_roll_deg, jpeg_quality, man, truth,
                   take if takes > 1 else None)
    atomic_write_csv(pd.DataFrame(man), out / "manifest.csv")
    atomic_write_csv(pd.DataFrame(truth), out / "truth.csv", float_format="%.5f")
    return out


def _draw_take(out, subjects, views, size, rng, marker, max_roll_deg, jpeg_quality, man, truth, take):
    import cv2

    for _, s in subjects.iterrows():
        for view in views:
            frame_cm = s["leg_length_cm"] + 10.0
            ppc = size * 0.88 / frame_cm * rng.uniform(0.93, 1.07)
            # draw at a scale where the marker is a whole number of pixels, so the truth is exact
            ppc = round(MARKER_SIZE_CM * ppc) / MARKER_SIZE_CM
            roll = float(rng.uniform(-max_roll_deg, max_roll_deg)) if max_roll_deg else 0.0
            img = _draw_leg(view, s.to_dict(), ppc, size, rng, marker, roll)
            rel = f"images/{s['subject_id']}_{view}.jpg" if take is None else \
                f"images/{s['subject_id']}_{view}_t{take}.jpg"
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            atomic_write_bytes(out / rel, buf.tobytes())
            extra = {} if take is None else {"take": take}
            man.append({"subject_id": s["subject_id"], "view": view, "image": rel, "sex": s["sex"],
                        "age": s["age"], "height_cm": s["height_cm"], "weight_kg": s["weight_kg"],
                        "smi": s["smi"], "side": "L", "reference_device": "BIA", **extra})
            truth.append({"subject_id": s["subject_id"], "view": view, "image": rel, **extra, "px_per_cm_true": ppc,
                          "roll_deg": roll, **{k: s[k] for k in (
                              "calf_circ_cm", "calf_width_lateral_cm", "calf_width_posterior_cm", "calf_level_frac",
                              "ankle_width_lateral_cm", "ankle_width_posterior_cm", "smi_true", "smi")}})
