"""The quality gate: a photo is accepted for measurement, or refused with a reason a person can act on.

Reasons (:data:`REASONS`, ``code: what it means``), checked in this order:

* the leg itself (from :func:`smi_image.segment.segment_leg`): ``no_leg``,
  ``legs_merged``, ``unsure``; these are refused by ``legsmi segment`` too;
* the photo (:func:`photo_problems`): ``too_dark`` (the leg nearly black, or nothing in
  the photo lit), ``overexposed`` (the leg's mean brightness, or the share of clipped
  pixels on it), ``blurred`` (the sharpness of the
  leg's outline: the grey-level step across it per pixel, relative to the step's size);
* the protocol (:func:`protocol_problems`): ``cut_by_frame`` (the leg touches the
  photo's top edge, so the knee is outside, or its bottom edge, so the sole is),
  ``no_marker`` (a marker was required and not found), ``tilted`` (raised by the
  upright step of :mod:`smi_image.silhouette` beyond ``max_roll_deg``), ``upside_down``
  (raised by the same step where :mod:`smi_image.orientation` finds the foot at the top).

``legsmi segment`` reports photo and protocol problems as warnings (status ``ok``);
``features``, ``predict``, ``train`` and ``benchmark`` refuse them (the features and the
CNN turn a refused photo into NaN with the reason, which the harness counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REASONS = {
    "no_leg": "no lower leg found in the photo",
    "legs_merged": "the two legs merge and cannot be told apart",
    "unsure": "the segmentation is unsure along the leg's outline",
    "too_dark": "the photo is too dark",
    "overexposed": "the photo is overexposed",
    "blurred": "the photo is blurred",
    "cut_by_frame": "the leg is cut by the frame (knee or sole missing)",
    "no_marker": "the scale marker was expected but not found",
    "tilted": "the leg is tilted beyond what is corrected",
    "upside_down": "the photo is upside down (the foot at the top)",
}
#: A phrase of each code's refusal message (the messages of segment_leg and of this module), for
#: :func:`reason_code`; the first that a message contains names its code.
_MESSAGE_CODES = (("no leg found", "no_leg"), ("no closed leg-shaped outline", "no_leg"),
                  ("legs merge", "legs_merged"), ("segmentation unsure", "unsure"), ("too dark", "too_dark"),
                  ("overexposed", "overexposed"), ("blurred", "blurred"), ("cut by the frame", "cut_by_frame"),
                  ("marker expected", "no_marker"), ("tilted", "tilted"),
                  ("upside down", "upside_down"))


def reason_code(message: str) -> str:
    """The code (:data:`REASONS`) of a refusal message such as a features ``failure`` cell; ``'other'``
    for a failure that is not a refusal (a file missing, a crash), ``''`` for no failure. A message that
    joins several reasons (``; ``) gives the first one's code."""
    text = str(message or "").strip()
    if not text:
        return ""
    low = text.lower()
    if not low.startswith("refused"):
        return "other"
    for phrase, code in _MESSAGE_CODES:
        if phrase in low:
            return code
    return "other"


#: Codes ``legsmi segment`` refuses (the leg itself cannot be found); the rest are warnings there.
SEGMENT_REFUSALS = ("no_leg", "legs_merged", "unsure")
#: Too dark: the leg's mean grey level (0-255) under DARK_MEAN, or the photo's 99th percentile under
#: DARK_P99 (nothing in it is lit: a dark skin in a well-lit photo is not "too dark").
DARK_MEAN, DARK_P99 = 12.0, 70.0
#: Overexposed: the leg's mean grey level above this.
BRIGHT_MEAN = 240.0
#: At most this share of the leg's pixels may be clipped (>= 250).
MAX_CLIPPED = 0.5
#: A leg that reaches the top edge must be this many times as long as its widest row (else the knee is cut).
MIN_LENGTH_TO_WIDTH = 3.2
#: The outline's mean edge sharpness (grey-level gradient over the step across it, 1/px) must reach this.
MIN_SHARPNESS = 0.085


@dataclass
class Verdict:
    """Accepted (``refused`` empty) or the refusal codes with their messages; warnings beside."""

    refused: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.refused

    @property
    def reason(self) -> str:
        return "; ".join(msg for _, msg in self.refused)

    @property
    def codes(self) -> list:
        return [c for c, _ in self.refused]


def photo_problems(img: np.ndarray, leg: np.ndarray) -> list[tuple[str, str]]:
    """Exposure and blur of a uint8 photo (any size) on its leg mask (bool, same size)."""
    import cv2

    grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    out = []
    on = grey[leg]
    if on.size == 0:
        return out
    mean = float(on.mean())
    p99 = float(np.percentile(grey, 99))
    if mean < DARK_MEAN or p99 < DARK_P99:
        out.append(("too_dark", f"too dark: the leg's mean brightness is {mean:.0f}/255 and the photo's "
                                f"brightest 1 % under {p99:.0f}/255; add light or retake without backlight"))
    clipped = float((on >= 250).mean())
    if mean > BRIGHT_MEAN or clipped > MAX_CLIPPED:
        out.append(("overexposed", f"overexposed: {clipped:.0%} of the leg is clipped white (mean "
                                   f"{mean:.0f}/255); retake without flash or direct sun"))
    sharp = outline_sharpness(grey, leg)
    if np.isfinite(sharp) and sharp < MIN_SHARPNESS:
        out.append(("blurred", f"blurred: the leg's outline is soft (sharpness {sharp:.3f}/px < "
                               f"{MIN_SHARPNESS:g}); hold the camera still and focus on the leg"))
    return out


def outline_sharpness(grey: np.ndarray, leg: np.ndarray) -> float:
    """Median over the outline of ``|grad| / step``, in 1/px of the photo shrunk to 512 px.

    ``step`` is the grey-level difference between the leg and the background 8 px (of a
    512 px photo) either side of the outline, along the mask's normal; ``|grad|`` the
    largest gradient within 1 px of the outline. A step blurred by a Gaussian of ``s`` px
    gives about ``1 / (2.5 s)``. Pixels with a step under 12 grey levels (no contrast
    there) are left out; NaN if fewer than 20 are left.
    """
    import cv2

    h, w = grey.shape
    scale = max(h, w) / 512.0
    reach = max(3.0, 8.0 * scale)
    # Every value is read within reach + 1 px of the outline, and the filters reach 9 px (the
    # mask's blur of sigma 2 and its Sobel): on a crop that far around the leg the result is the
    # whole photo's, at a fraction of the cost.
    rows, cols = np.flatnonzero(leg.any(axis=1)), np.flatnonzero(leg.any(axis=0))
    if rows.size == 0:
        return float("nan")
    pad = int(np.ceil(reach)) + 12
    y0, x0 = max(0, rows[0] - pad), max(0, cols[0] - pad)
    grey, leg = grey[y0:rows[-1] + pad + 1, x0:cols[-1] + pad + 1], leg[y0:rows[-1] + pad + 1, x0:cols[-1] + pad + 1]
    g = cv2.GaussianBlur(grey, (0, 0), 0.7).astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    m = leg.astype(np.uint8)
    edge = (m - cv2.erode(m, np.ones((3, 3), np.uint8))) > 0
    ys, xs = np.nonzero(edge)
    if ys.size < 20:
        return float("nan")
    d = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 2.0)
    ny = cv2.Sobel(d, cv2.CV_32F, 0, 1, ksize=3)[ys, xs]
    nx = cv2.Sobel(d, cv2.CV_32F, 1, 0, ksize=3)[ys, xs]
    norm = np.hypot(nx, ny) + 1e-6
    nx, ny = nx / norm, ny / norm  # points into the leg
    h, w = grey.shape

    def at(sx, sy):
        return g[np.clip(np.rint(sy), 0, h - 1).astype(int), np.clip(np.rint(sx), 0, w - 1).astype(int)]
    step = np.abs(at(xs + reach * nx, ys + reach * ny) - at(xs - reach * nx, ys - reach * ny))
    mag = np.hypot(gx, gy)  # once, not once per k
    grad = np.maximum.reduce([mag[np.clip(np.rint(ys + k * ny), 0, h - 1).astype(int),
                                  np.clip(np.rint(xs + k * nx), 0, w - 1).astype(int)]
                              for k in (-1, 0, 1)])
    ok = step >= 12
    if ok.sum() < 20:
        return float("nan")
    return float(np.median(grad[ok] / step[ok]) * scale)


def protocol_problems(leg: np.ndarray, *, marker_found: bool = True, marker_required: bool = False
                      ) -> list[tuple[str, str]]:
    """Frame and marker problems of a leg mask (bool, the photo's size or a working copy).

    The sole is missing when the leg reaches the photo's bottom edge. The knee is missing
    when the leg reaches the top edge *and* is short for its calf (height under
    :data:`MIN_LENGTH_TO_WIDTH` times the widest row between 25 % and 70 % of its height from
    the top: the calf, below any thigh and above the foot): the mask runs on up the thigh to
    the hem, so a leg cut at the thigh still has the knee, one cut at the calf has not. (The
    widest row of the whole upper 70 % was the thigh's on photos framed from mid-thigh, whose
    knee is in frame: 4 of the 7 clinic photos refused on ``data/phantom-v2``.)
    """
    out = []
    rows = np.flatnonzero(leg.any(axis=1))
    if rows.size:
        all_widths = leg[rows].sum(axis=1)
        widths = all_widths[int(0.25 * rows.size): max(int(0.25 * rows.size) + 1, int(0.7 * rows.size))]
        ratio = rows.size / max(1.0, float(widths.max()))
        if rows[-1] == leg.shape[0] - 1:
            out.append(("cut_by_frame", "leg cut by the frame: it reaches the photo's bottom edge, so the sole is "
                                        "outside; frame the leg from above the knee to the floor"))
        elif rows[0] == 0 and ratio < MIN_LENGTH_TO_WIDTH:
            out.append(("cut_by_frame", f"leg cut by the frame: it reaches the photo's top edge and is only "
                                        f"{ratio:.1f} times as long as wide, so the knee is outside; frame the leg "
                                        "from above the knee to the floor"))
    if marker_required and not marker_found:
        out.append(("no_marker", "marker expected but not found: place the printed ArUco card (5 cm) beside the "
                                 "leg, flat, facing the camera, fully in frame"))
    return out


def check_photo(img: np.ndarray, leg: np.ndarray, *, marker_found: bool = True, marker_required: bool = False
                ) -> Verdict:
    """The gate after a leg was found: photo and protocol problems refuse it (see the module docstring).

    ``img`` and ``leg`` may be the photo at any resolution (the working copy is enough);
    sharpness is measured in px of a 512 px photo.
    """
    v = Verdict()
    v.refused.extend(photo_problems(img, leg))
    v.refused.extend(protocol_problems(leg, marker_found=marker_found, marker_required=marker_required))
    return v
