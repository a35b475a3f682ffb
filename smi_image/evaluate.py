"""``legsmi segment`` (masks of photos) and ``legsmi segeval`` (scores against hand-made masks).

:func:`segment_photo` runs the image layer on one photo file (the mask's row edges placed on
the photo's own edges, as the features measure them:
:func:`smi_image.silhouette.edge_refined_mask`) and says ``ok`` or
``refused``: refused only where the leg itself cannot be found (``no_leg``,
``legs_merged``, ``unsure``); photo and protocol problems (exposure, blur, the leg cut
by the frame, tilt) are warnings in ``reason`` with status ``ok``, for ``features`` and
``predict`` to refuse (:mod:`smi_image.quality`).

:func:`evaluate_set` scores a folder of ``images/`` and ``masks/`` (label 1 is the leg;
pixels labelled 3, footwear, are left out of the score, since the segmenter is trained
barefoot and includes the foot): per photo the IoU of the segmented leg with label 1
(0 for a refused photo), the maximum row width (px) of both masks over the upper 70 % of
the true leg's rows (the calf, above any shoe), and the time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import SegmentationError
from .quality import SEGMENT_REFUSALS, check_photo

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def segment_array(img: np.ndarray, *, view: str | None = None, side: str | None = None,
                  method: str | None = None, settings=None) -> tuple[np.ndarray | None, str, str]:
    """``(mask or None, status, reason)`` for a uint8 BGR photo (see the module docstring)."""
    from .marker import find_marker
    from .segment import segment_leg
    from .settings import SilhouetteSettings
    from .silhouette import axis_angle_deg, edge_refined_mask

    s = settings or SilhouetteSettings()
    marker = find_marker(img)
    try:
        seg = segment_leg(img, settings=s, exclude_polygons=[marker[1]] if marker else None, method=method,
                          view=view, side=side)
    except SegmentationError as exc:
        if exc.code in SEGMENT_REFUSALS:
            return None, "refused", str(exc)
        raise
    mask = edge_refined_mask(img, seg, settings=s)
    verdict = check_photo(seg.work_image, seg.work, marker_found=marker is not None)
    warnings = [msg for _, msg in verdict.refused] + list(seg.notes)
    tilt = axis_angle_deg(seg.work, s.axis_band)
    if abs(tilt) > s.max_roll_deg:
        warnings.append(f"the leg's axis is tilted {tilt:.1f} degrees from vertical (more than "
                        f"{s.max_roll_deg:g}); photograph the leg upright")
    return mask, "ok", "; ".join(warnings)


def segment_photo(path: str | os.PathLike, **kwargs) -> tuple[np.ndarray | None, dict]:
    """Segment one photo file; returns ``(mask or None, row)`` with ``photo, status, reason, ms``."""
    from smi_data.images import ImageError, read_image

    t0 = time.perf_counter()
    try:
        img = read_image(path, color=True)
        mask, status, reason = segment_array(img, **kwargs)
    except ImageError as exc:
        mask, status, reason, img = None, "refused", str(exc), None
    ms = (time.perf_counter() - t0) * 1000.0
    return mask, {"photo": str(path), "status": status, "reason": reason, "ms": round(ms, 2),
                  "shape": None if img is None else img.shape[:2]}


def segment_photos(photos, out_dir: str | os.PathLike, *, view=None, side=None, method=None, echo=None
                   ) -> pd.DataFrame:
    """``legsmi segment``: ``out_dir/<stem>.png`` (uint8 0/1, the photo's size; all 0 if refused) and
    ``segment.csv``."""
    import cv2

    from smi_data.runs import atomic_write_bytes, atomic_write_csv

    out = Path(out_dir)
    rows, used = [], set()
    for p in photos:
        mask, row = segment_photo(p, view=view, side=side, method=method)
        stem, k = Path(p).stem, 1
        while stem in used:  # same name from another folder: keep both
            k += 1
            stem = f"{Path(p).stem}-{k}"
        used.add(stem)
        shape = row.pop("shape")
        if mask is None and shape is not None:
            mask = np.zeros(shape, bool)
        if mask is not None:
            ok, buf = cv2.imencode(".png", mask.astype(np.uint8))
            atomic_write_bytes(out / f"{stem}.png", buf.tobytes())
        rows.append(row)
        if echo:
            echo(f"{p}: {row['status']}" + (f" ({row['reason']})" if row["reason"] else "") + f", {row['ms']:.0f} ms")
    table = pd.DataFrame(rows, columns=["photo", "status", "reason", "ms"])
    atomic_write_csv(table, out / "segment.csv")
    return table


def iou(pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union of two bool masks, pixels in ``ignore`` left out (NaN if both empty)."""
    keep = ~ignore if ignore is not None else np.ones(pred.shape, bool)
    p, t = pred & keep, truth & keep
    union = (p | t).sum()
    return float((p & t).sum() / union) if union else float("nan")


def calf_width_px(mask: np.ndarray, rows: np.ndarray) -> float:
    """Widest row (first to last leg pixel + 1) of ``mask`` among ``rows``, px (NaN if none)."""
    sub = mask[rows]
    have = sub.any(axis=1)
    if not have.any():
        return float("nan")
    sub = sub[have]
    w = sub.shape[1]
    left = sub.argmax(axis=1)
    right = w - 1 - sub[:, ::-1].argmax(axis=1)
    return float((right - left + 1).max())


def score_photo(pred: np.ndarray | None, labels: np.ndarray) -> dict:
    """IoU and calf widths of one predicted mask against a label map (1 leg, 3 footwear)."""
    truth, shoe = labels == 1, labels == 3
    rows = np.flatnonzero(truth.any(axis=1))
    calf_rows = rows[: max(1, int(round(0.7 * rows.size)))] if rows.size else rows
    t_w = calf_width_px(truth, calf_rows) if rows.size else float("nan")
    if pred is None:
        return {"iou": 0.0, "calf_width_true_px": t_w, "calf_width_px": float("nan"), "calf_width_err_px": float("nan")}
    p_w = calf_width_px(pred & ~shoe, calf_rows) if rows.size else float("nan")
    return {"iou": iou(pred, truth, shoe), "calf_width_true_px": t_w, "calf_width_px": p_w,
            "calf_width_err_px": abs(p_w - t_w) if np.isfinite(p_w) and np.isfinite(t_w) else float("nan")}


def _pairs(set_dir: Path) -> list[tuple[Path, Path]]:
    images = set_dir / "images"
    masks = set_dir / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise FileNotFoundError(f"{set_dir}: needs images/ and masks/ folders (masks/<stem>.png, label 1 = the leg)")
    out = []
    for p in sorted(images.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            m = masks / f"{p.stem}.png"
            if m.is_file():
                out.append((p, m))
    if not out:
        raise FileNotFoundError(f"{set_dir}: no image in images/ has its mask in masks/<stem>.png")
    return out


def evaluate_set(set_dir: str | os.PathLike, *, method: str | None = None, limit: int | None = None,
                 echo=None) -> tuple[pd.DataFrame, dict, dict]:
    """Segment every image of a set and score it; returns (per-photo table, summary, masks by photo)."""
    import cv2

    pairs = _pairs(Path(set_dir))[:limit]
    rows, masks = [], {}
    for img_path, mask_path in pairs:
        pred, row = segment_photo(img_path, method=method)
        row.pop("shape")
        labels = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if labels is None:
            raise FileNotFoundError(f"{mask_path}: not a readable PNG label map")
        if labels.ndim == 3:
            labels = labels[..., 0]
        if pred is not None and pred.shape != labels.shape:
            raise ValueError(f"{mask_path}: mask is {labels.shape[1]}x{labels.shape[0]}, the photo "
                             f"{pred.shape[1]}x{pred.shape[0]}")
        row.update(score_photo(pred, labels))
        row["photo"] = img_path.name
        rows.append(row)
        masks[img_path.name] = (pred, labels)
    table = pd.DataFrame(rows)
    return table, summarise(table), masks


def summarise(table: pd.DataFrame) -> dict:
    """The figures ``legsmi segeval`` prints (IoU over accepted photos; refused count 0 in ``*_all``)."""
    acc = table[table["status"] == "ok"]
    n = len(table)
    i_acc = acc["iou"].astype(float)
    return {
        "n": n,
        "accepted_share": len(acc) / n if n else float("nan"),
        "refused_share": 1 - len(acc) / n if n else float("nan"),
        "iou_median": float(i_acc.median()) if len(acc) else float("nan"),
        "iou_mean": float(i_acc.mean()) if len(acc) else float("nan"),
        "iou_ge_0.8_of_accepted": float((i_acc >= 0.8).mean()) if len(acc) else float("nan"),
        "iou_ge_0.8_of_all": float((table["iou"].astype(float) >= 0.8).mean()) if n else float("nan"),
        "iou_median_all": float(table["iou"].astype(float).median()) if n else float("nan"),
        "calf_width_err_px_median": float(acc["calf_width_err_px"].median()) if len(acc) else float("nan"),
        "calf_width_err_pct_median": float((acc["calf_width_err_px"] / acc["calf_width_true_px"]).median() * 100)
        if len(acc) else float("nan"),
        "ms_median": float(table["ms"].median()) if n else float("nan"),
    }


def contact_sheet(table: pd.DataFrame, masks: dict, path: str | os.PathLike, set_dir: str | os.PathLike, *,
                  n: int = 24, tile: int = 160) -> Path:
    """PNG of the ``n`` lowest-IoU photos: truth outline green, segmentation red, IoU written under."""
    import cv2

    from smi_data.runs import atomic_write_bytes

    worst = table.sort_values("iou").head(n)
    tiles = []
    for _, r in worst.iterrows():
        img = cv2.imread(str(Path(set_dir) / "images" / r["photo"]))
        pred, labels = masks[r["photo"]]
        for m, colour in ((labels == 1, (0, 200, 0)), (pred, (0, 0, 255))):
            if m is None:
                continue
            cs, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(img, cs, -1, colour, max(1, img.shape[0] // 150))
        f = tile / max(img.shape[:2])
        img = cv2.resize(img, (max(1, int(img.shape[1] * f)), max(1, int(img.shape[0] * f))))
        canvas = np.full((tile + 18, tile, 3), 255, np.uint8)
        canvas[: img.shape[0], : img.shape[1]] = img
        text = f"{r['photo'][:14]} {r['iou']:.2f}" + (" R" if r["status"] != "ok" else "")
        cv2.putText(canvas, text, (2, tile + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(canvas)
    cols = 8
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    sheet = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
    ok, buf = cv2.imencode(".png", sheet)
    return atomic_write_bytes(path, buf.tobytes())


def format_summary(s: dict, *, targets: bool = True) -> str:
    lines = [
        f"photos {s['n']}: accepted {s['accepted_share']:.1%}, refused {s['refused_share']:.1%}",
        f"IoU of accepted: median {s['iou_median']:.3f}, mean {s['iou_mean']:.3f}, "
        f"IoU >= 0.8 {s['iou_ge_0.8_of_accepted']:.1%} (of all photos, refused as 0: {s['iou_ge_0.8_of_all']:.1%})",
        f"calf width error of accepted: median {s['calf_width_err_px_median']:.1f} px "
        f"({s['calf_width_err_pct_median']:.1f} %); median {s['ms_median']:.0f} ms per photo",
    ]
    if targets:
        a = s["accepted_share"] >= 0.8
        b = s["iou_ge_0.8_of_accepted"] >= 0.9
        lines.append(f"targets (issue 9, real photos): accepted >= 80 %: {'met' if a else 'NOT met'}; "
                     f">= 90 % of accepted with IoU >= 0.8: {'met' if b else 'NOT met'}")
    return "\n".join(lines)
