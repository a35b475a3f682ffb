"""Drawn test shapes of known size for the smi_features tests (and checks of the drawing itself).

``drawn_leg`` renders a leg-shaped silhouette whose geometry is known exactly: a thigh
running off the top of the picture, a calf whose width follows a smooth profile with
its maximum ``calf_cm`` at relative level ``calf_t`` between the knee and the ankle,
and a foot pointing forward (left). The knee and ankle sit where smi_features places
them from the floor (0.285 and 0.039 of the height above the sole), so the measured
levels coincide with the drawn ones. Coverage is rendered by 8x supersampling, so
edges are anti-aliased like a photo's.
"""

from __future__ import annotations

import numpy as np
import pytest

KNEE, ANKLE = 0.285, 0.039
WALL = (205, 200, 190)
SKIN = (95, 125, 170)


def width_profile(t, knee_cm, calf_cm, ankle_cm, calf_t):
    """Leg width (cm) at relative levels t (0 knee, 1 ankle); maximum calf_cm at t = calf_t."""
    t = np.asarray(t, float)
    up = knee_cm + (calf_cm - knee_cm) * np.sin(0.5 * np.pi * np.clip(t / calf_t, 0, 1))
    down = ankle_cm + (calf_cm - ankle_cm) * np.cos(0.5 * np.pi * np.clip((t - calf_t) / (1 - calf_t), 0, 1))
    return np.where(t <= calf_t, up, down)


def leg_polygon(*, px_per_cm, height_cm, calf_cm=12.0, knee_cm=10.5, ankle_cm=6.0, calf_t=0.4,
                size=256, sole_frac=0.94, cx_frac=0.5):
    """Outline (x, y) of the drawn leg in px, and the drawn knee and ankle rows."""
    sole = sole_frac * size
    knee_y = sole - KNEE * height_cm * px_per_cm
    ankle_y = sole - ANKLE * height_cm * px_per_cm
    cx = cx_frac * size
    t = np.linspace(-knee_y / (ankle_y - knee_y), 1.0, 400)  # from the top of the picture
    y = knee_y + t * (ankle_y - knee_y)
    w = np.where(t < 0, knee_cm * (1 - 0.15 * t), width_profile(np.clip(t, 0, 1), knee_cm, calf_cm, ankle_cm, calf_t))
    half = 0.5 * w * px_per_cm
    foot_top = ankle_y + 0.35 * (sole - ankle_y)
    a = 0.5 * ankle_cm * px_per_cm
    left = np.stack([cx - half, y], 1)
    right = np.stack([cx + half, y], 1)[::-1]
    foot = np.array([[cx - a, ankle_y], [cx - a, foot_top], [cx - a - 9 * px_per_cm, sole - 0.6 * px_per_cm],
                     [cx - a - 9 * px_per_cm, sole], [cx + a + 0.5 * px_per_cm, sole], [cx + a, ankle_y]])
    top = np.array([[cx + half[0], -2.0], [cx - half[0], -2.0]])
    poly = np.vstack([top[1:], left, foot, right, top[:1]])
    return poly, knee_y, ankle_y


def render_polygon(poly, size, ss=8):
    """Coverage (size, size) in [0, 1] of a polygon, by ss x ss supersampling."""
    import cv2

    big = np.zeros((size * ss, size * ss), np.uint8)
    pts = np.rint((np.asarray(poly) + 0.5) * ss * 16 - 0.5 * 16).astype(np.int32)
    cv2.fillPoly(big, [pts], 255, lineType=cv2.LINE_8, shift=4)
    return big.reshape(size, ss, size, ss).mean(axis=(1, 3)) / 255.0


def compose(cov, *, fg=SKIN, bg=WALL, roll_deg=0.0, noise=0.0, seed=0):
    """uint8 BGR picture from a coverage map, optionally rolled about the centre and noisy."""
    import cv2

    size = cov.shape[0]
    if roll_deg:
        rot = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), roll_deg, 1.0)
        cov = cv2.warpAffine(cov.astype(np.float32), rot, (size, size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    img = cov[..., None] * np.array(fg, float) + (1 - cov[..., None]) * np.array(bg, float)
    if noise:
        img = img + np.random.default_rng(seed).normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def drawn_leg(*, px_per_cm=2.5, height_cm=170.0, calf_cm=12.0, knee_cm=10.5, ankle_cm=6.0, calf_t=0.4,
              size=256, roll_deg=0.0, noise=0.0, seed=0, **kw):
    """A drawn leg photo (uint8 BGR) and its truth (cm)."""
    poly, knee_y, ankle_y = leg_polygon(px_per_cm=px_per_cm, height_cm=height_cm, calf_cm=calf_cm,
                                        knee_cm=knee_cm, ankle_cm=ankle_cm, calf_t=calf_t, size=size, **kw)
    img = compose(render_polygon(poly, size), roll_deg=roll_deg, noise=noise, seed=seed)
    truth = {"calf_cm": calf_cm, "ankle_cm": ankle_cm, "knee_y": knee_y, "ankle_y": ankle_y,
             "length_cm": (ANKLE - KNEE) * -height_cm, "px_per_cm": px_per_cm, "height_cm": height_cm}
    return img, truth


def ellipse_picture(a, b, *, size=256, cx=None, cy=None, angle_deg=0.0, ss=8):
    """An anti-aliased ellipse 'calf' with semi-axes a (across) and b (along), px."""
    cx = (size - 1) / 2 + 0.3 if cx is None else cx
    cy = (size - 1) / 2 if cy is None else cy
    ys = (np.arange(size * ss) + 0.5) / ss - 0.5
    X, Y = np.meshgrid(ys, ys)
    t = np.radians(angle_deg)
    u = (X - cx) * np.cos(t) + (Y - cy) * np.sin(t)
    v = -(X - cx) * np.sin(t) + (Y - cy) * np.cos(t)
    cov = ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(np.float32).reshape(size, ss, size, ss).mean(axis=(1, 3))
    return compose(cov)


# ----------------------------------------------------------------------------- checks of the drawing
def test_drawn_profile_has_its_maximum_where_stated():
    t = np.linspace(0, 1, 10001)
    w = width_profile(t, 10.5, 12.0, 6.0, 0.4)
    assert w.max() == pytest.approx(12.0, abs=1e-9)
    assert t[np.argmax(w)] == pytest.approx(0.4, abs=1e-3)


def test_rendered_coverage_matches_the_polygon_area():
    import cv2

    poly = np.array([[20.2, 30.0], [80.7, 30.0], [80.7, 90.5], [20.2, 90.5]])
    cov = render_polygon(poly, 128)
    assert cov.sum() == pytest.approx(cv2.contourArea(poly.astype(np.float32)), rel=0.01)
