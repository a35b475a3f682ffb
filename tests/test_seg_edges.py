"""A coarse mask a few network pixels off the photo's edge is snapped back to it before the sub-pixel step."""

import cv2
import numpy as np


def test_snap_moves_coarse_edges_to_the_photo_edge():
    from smi_image.silhouette import refine_edges, snap_edges

    img = np.full((200, 300, 3), (90, 140, 200), np.uint8)  # wall
    img[:, 100:181] = (60, 90, 170)                          # the leg: columns 100-180 (81 px)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    rng = np.random.default_rng(0)
    img = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
    left = np.full(200, 92.0)    # the coarse mask: 8 px too wide on the left,
    right = np.full(200, 186.0)  # 6 px too wide on the right
    left[50:53] = 110.0          # and a few rows inside the leg
    sl, sr = snap_edges(img, left, right, 10)
    assert np.all(np.abs(sl - 100) <= 1) and np.all(np.abs(sr - 180) <= 1)
    el, er = refine_edges(img, sl, sr, 4)
    assert np.all(np.abs((er - el) - 81) < 1.0) and np.median(np.abs((er - el) - 81)) < 0.3
    el0, er0 = refine_edges(img, left, right, 4)  # without the snap the window misses the edge
    assert np.median(np.abs((er0 - el0) - 81)) > 5


def test_snap_keeps_edges_without_contrast():
    from smi_image.silhouette import snap_edges

    img = np.full((100, 200, 3), 128, np.uint8)
    left, right = np.full(100, 50.0), np.full(100, 150.0)
    left[:10] = np.nan
    sl, sr = snap_edges(img, left, right, 8)
    assert np.isnan(sl[:10]).all()
    assert np.all(np.abs(sl[10:] - 50) <= 8) and np.all(np.abs(sr - 150) <= 8)
