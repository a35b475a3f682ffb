"""An annotated copy of a photo: what was measured, where, and the result, checkable at a glance.

Drawn on the photo (OpenCV, no matplotlib): the leg's silhouette outline (green), the
knee and ankle levels (blue), the evenly spaced levels of the width profile (thin
ticks at both edges), the maximum calf width as a red line with its value, the ArUco
marker's outline when it was found (yellow), and a text box with the caller's result
(SMI estimate, AWGS flag) and the measurement (scale mode, calf width, circumference
under a circular cross-section). A photo where no leg was found still gets a copy,
with the reason in the box.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .extractor import ExtractionSettings, kept_measurement, measure_leg
from .features.width_profile import calf_maximum, level_fractions
from .scale import choose_scale

GREEN = (60, 200, 60)
BLUE = (230, 140, 30)
RED = (40, 40, 230)
YELLOW = (0, 220, 240)
WHITE = (255, 255, 255)


def _pts(sil, xy, f: float = 1.0) -> np.ndarray:
    return np.rint(sil.to_image_points(xy) * f).astype(np.int32)


def annotate_photo(image_path: str | os.PathLike, out_path: str | os.PathLike, *, result_text: str = "",
                   px_per_cm: float | None = None, height_cm: float | None = None,
                   settings: ExtractionSettings | None = None, max_side: int = 1024,
                   view: str | None = None) -> dict:
    """Write an annotated copy of a leg photo.

    Parameters
    ----------
    image_path : path-like
        The photo.
    out_path : path-like
        The annotated image (PNG or JPEG by suffix); written to a temporary name, then renamed.
    result_text : str, keyword-only
        Lines to print on the image (for example ``"SMI 6.4 kg/m2\\nAWGS 2019: low muscle mass"``).
    px_per_cm : float, keyword-only
        The scale when the photo has no marker (the manifest's or the user's).
    height_cm : float, keyword-only
        Standing height: places the knee and ankle levels from the floor (with a
        scale) or gives the relative scale (without one).
    settings : ExtractionSettings, keyword-only
    max_side : int, keyword-only
        Larger photos are shrunk for the copy, and photos under 640 px are enlarged,
        so that lines and text stay readable.
    view : str, keyword-only
        The photo's view: with it, the measurement the model was given in this request
        (:func:`.extractor.keep_measurements`) is drawn instead of measuring the photo again.

    Returns
    -------
    dict
        ``ok``, ``reason``, ``calf_max_width_cm``, ``scale_mode``, ``px_per_cm`` and ``path``.
    """
    import cv2

    from smi_data.images import read_image
    from smi_data.runs import atomic_write_bytes

    img = read_image(image_path, color=True)
    m = kept_measurement(image_path, settings, view) if view is not None else None
    if m is None:
        m = measure_leg(img, settings=settings, px_per_cm=px_per_cm, height_cm=height_cm)
    h, w = img.shape[:2]
    f = min(max_side / max(h, w), max(1.0, 640 / max(h, w)))
    canvas = cv2.resize(img, (int(round(w * f)), int(round(h * f))), interpolation=cv2.INTER_AREA if f < 1
                        else cv2.INTER_LINEAR) if f != 1.0 else img.copy()
    info = {"ok": m.ok, "reason": m.reason, "calf_max_width_cm": np.nan, "scale_mode": None, "px_per_cm": np.nan}
    lines = [ln for ln in str(result_text).splitlines() if ln.strip()]
    thick = max(1, int(round(max(canvas.shape[:2]) / 400)))
    if m.marker_corners is not None:
        cv2.polylines(canvas, [np.rint(m.marker_corners * f).astype(np.int32)], True, YELLOW, thick, cv2.LINE_AA)
    if m.ok:
        sil, geom = m.silhouette, m.geometry
        sc = choose_scale(m.marker_px_per_cm, px_per_cm, geom.length_px, height_cm)
        info.update(scale_mode=sc.mode, px_per_cm=sc.px_per_cm)
        contours, _ = cv2.findContours(sil.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        outline = [_pts(sil, c.reshape(-1, 2).astype(float), f) for c in contours]
        cv2.polylines(canvas, outline, True, GREEN, thick, cv2.LINE_AA)
        tick = max(3, int(round(0.015 * w)))
        for t in level_fractions(geom.settings.n_levels):
            y = float(geom.y_at(t))
            r = int(round(y))
            if 0 <= r < h and np.isfinite(geom.left[r]) and np.isfinite(geom.right[r]):
                for x0, x1 in ((geom.left[r] - tick, geom.left[r]), (geom.right[r], geom.right[r] + tick)):
                    cv2.line(canvas, *map(tuple, _pts(sil, [[x0, y], [x1, y]], f)), BLUE, max(1, thick - 1),
                             cv2.LINE_AA)
        for y, label in ((geom.knee_y, "knee"), (geom.ankle_y, "ankle")):
            r = int(round(y))
            if 0 <= r < h and np.isfinite(geom.left[r]):
                a, b = _pts(sil, [[geom.left[r] - 2 * tick, y], [geom.right[r] + 2 * tick, y]], f)
                cv2.line(canvas, tuple(a), tuple(b), BLUE, thick, cv2.LINE_AA)
                cv2.putText(canvas, label, (int(b[0]) + 3, int(b[1]) + 4), cv2.FONT_HERSHEY_SIMPLEX,
                            0.4 * thick, BLUE, thick, cv2.LINE_AA)
        wmax, tmax, ymax = calf_maximum(geom)
        if np.isfinite(ymax):
            r = int(round(ymax))
            a, b = _pts(sil, [[geom.left[r], ymax], [geom.right[r], ymax]], f)
            cv2.line(canvas, tuple(a), tuple(b), RED, thick + 1, cv2.LINE_AA)
            for p in (a, b):
                cv2.circle(canvas, tuple(p), thick + 2, RED, -1, cv2.LINE_AA)
            if np.isfinite(sc.px_per_cm):
                wcm = wmax / sc.px_per_cm
                info["calf_max_width_cm"] = wcm
                label = f"{wcm:.1f} cm"
                lines += [f"max calf width {wcm:.1f} cm at {100 * tmax:.0f}% knee-ankle",
                          f"circumference (circular) {np.pi * wcm:.1f} cm",
                          f"scale: {sc.mode} ({sc.px_per_cm:.2f} px/cm)"]
            else:
                label = f"{wmax:.0f} px"
                lines += [f"max calf width {wmax:.0f} px (no scale: {sc.reason})"]
            cv2.putText(canvas, label, (int(b[0]) + 6, int(b[1]) + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick,
                        RED, thick, cv2.LINE_AA)
        lines.append(f"silhouette: {sil.method}, roll {sil.roll_deg:+.1f} deg, levels from the {geom.levels_from}")
    else:
        lines.append(f"no measurement: {m.reason}")
    canvas = _text_box(canvas, lines)
    out = Path(out_path)
    ext = out.suffix.lower() if out.suffix.lower() in (".png", ".jpg", ".jpeg") else ".png"
    ok, buf = cv2.imencode(ext, canvas)
    if not ok:
        raise ValueError(f"{out}: could not encode the annotated image")
    atomic_write_bytes(out, buf.tobytes())
    info["path"] = str(out)
    return info


def _text_box(canvas: np.ndarray, lines: list[str]) -> np.ndarray:
    """The lines in a dark box above the photo (the photo itself is not covered)."""
    import cv2

    if not lines:
        return canvas
    h, w = canvas.shape[:2]
    fs = max(0.4, min(0.9, w / 900))
    th = 1 if fs < 0.7 else 2
    # Break long lines so the text fits the width.
    wrapped = []
    for ln in lines:
        words, cur = ln.split(), ""
        for word in words:
            trial = f"{cur} {word}".strip()
            if cv2.getTextSize(trial, cv2.FONT_HERSHEY_SIMPLEX, fs, th)[0][0] > w - 12 and cur:
                wrapped.append(cur)
                cur = word
            else:
                cur = trial
        wrapped.append(cur)
    step = int(cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, fs, th)[0][1] * 1.9)
    box = np.full((step * len(wrapped) + 10, w, 3), 30, np.uint8)
    for i, ln in enumerate(wrapped):
        cv2.putText(box, ln, (6, 6 + step * (i + 1) - step // 4), cv2.FONT_HERSHEY_SIMPLEX, fs, WHITE, th,
                    cv2.LINE_AA)
    return np.vstack([box, canvas])
