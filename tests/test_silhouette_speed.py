"""The faster edge steps give the plain code's numbers exactly (uint8 photos), upright and rotated."""

import cv2
import numpy as np
import pytest
from scipy.ndimage import median_filter

from smi_image import orientation, silhouette
from smi_image.silhouette import SNAP_SMOOTH_ROWS, _gather


def _snap_reference(img, left, right, m, to_image=None):
    """snap_edges as it was: float32 samples, cumulative sums, one gather per side."""
    h, w = img.shape[:2]
    rows = np.flatnonzero(np.isfinite(left) & (right - left >= 2 * m + 6))
    if rows.size == 0 or m < 1:
        return left, right
    offs = np.arange(-m - 2, m + 3)
    prior = 1.0 - 0.5 * np.abs(np.arange(-m, m + 1)) / m
    out = []
    for edge in (left, right):
        col = edge[rows].astype(int)[:, None] + offs[None, :]
        ok = (col.min(axis=1) >= 0) & (col.max(axis=1) < w)
        v = _gather(img, rows[:, None], np.clip(col, 0, w - 1), to_image)
        c = np.cumsum(np.concatenate([np.zeros_like(v[:, :1]), v], axis=1), axis=1)
        after = c[:, 5:] - c[:, 3:-2]
        before = c[:, 2:-3] - c[:, :-5]
        step = np.sqrt(((after - before) ** 2).sum(axis=2)) * prior[None, :]
        best = np.where(ok, np.argmax(step, axis=1) - m, 0)
        new = edge.copy()
        new[rows] = median_filter(edge[rows] + best, size=SNAP_SMOOTH_ROWS, mode="nearest")
        out.append(new)
    return out[0], out[1]


def _refine_alpha_reference(vals, k):
    p = vals[:, : 2 * k + 1]
    out_v = vals[:, 2 * k + 1: 2 * k + 3].mean(axis=1)
    in_v = vals[:, 2 * k + 3:].mean(axis=1)
    d = in_v - out_v
    dd = (d * d).sum(axis=1)
    alpha = ((p - out_v[:, None, :]) * d[:, None, :]).sum(axis=2) / np.maximum(dd, 1e-12)[:, None]
    return np.clip(alpha, 0.0, 1.0).sum(axis=1)


def _leg_photo(seed, h=400, w=300, grey=False):
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(60, 200, 3)
    yy, xx = np.mgrid[:h, :w]
    half = 30 + 12 * np.sin(yy / h * np.pi) + rng.normal(0, 1, (h, 1))
    inside = np.abs(xx - w / 2 - 0.05 * (yy - h / 2)) < half
    img[inside] = rng.integers(80, 240, 3)
    img = cv2.GaussianBlur(img, (0, 0), 1.2)
    img = np.clip(img.astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    left = np.full(h, np.nan)
    right = np.full(h, np.nan)
    rows = np.flatnonzero(inside.any(axis=1))[5:-5]
    left[rows] = inside[rows].argmax(axis=1) + rng.integers(-6, 7, rows.size)
    right[rows] = w - 1 - inside[rows, ::-1].argmax(axis=1) + rng.integers(-6, 7, rows.size)
    return (cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if grey else img), left, right


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rotated", [False, True])
@pytest.mark.parametrize("grey", [False, True])
def test_snap_edges_equals_the_plain_code(seed, rotated, grey):
    img, left, right = _leg_photo(seed, grey=grey)
    to_image = cv2.invertAffineTransform(cv2.getRotationMatrix2D((150.0, 200.0), 3.7, 1.0)) if rotated else None
    for m in (3, 5, 10):
        got = silhouette.snap_edges(img, left, right, m, to_image)
        ref = _snap_reference(img, left, right, m, to_image)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
        assert not np.array_equal(got[0][np.isfinite(left)], left[np.isfinite(left)])  # it did move edges


def test_inward_only_snap_never_moves_an_edge_out():
    img, left, right = _leg_photo(0)
    m = 8
    rows = np.flatnonzero(np.isfinite(left) & (right - left >= 2 * m + 6))
    both = silhouette.snap_edges(img, left, right, m)
    inward = silhouette.snap_edges(img, left, right, m, inward_only=True)
    # every row's own move is inward (>= 0 on the left, <= 0 on the right) and a median of the moved edges
    # is at least the median of the unmoved ones: no edge ends outside the smoothed coarse outline
    base_l = median_filter(left[rows], size=SNAP_SMOOTH_ROWS, mode="nearest")
    base_r = median_filter(right[rows], size=SNAP_SMOOTH_ROWS, mode="nearest")
    assert np.all(inward[0][rows] >= base_l) and np.all(inward[1][rows] <= base_r)
    assert np.any(both[0][rows] < base_l) or np.any(both[1][rows] > base_r)  # the plain snap does move out
    np.testing.assert_array_equal(silhouette.snap_edges(img, left, right, m, inward_only=False)[0], both[0])


@pytest.mark.parametrize("rotated", [False, True])
def test_refine_edges_equals_the_plain_arithmetic(rotated, monkeypatch):
    img, left, right = _leg_photo(4)
    to_image = cv2.invertAffineTransform(cv2.getRotationMatrix2D((150.0, 200.0), -2.2, 1.0)) if rotated else None
    seen = []
    real = silhouette._gather

    def spy(*a, **k):
        out = real(*a, **k)
        seen.append(out)
        return out

    monkeypatch.setattr(silhouette, "_gather", spy)
    for k in (4, 6):
        seen.clear()
        le, re = silhouette.refine_edges(img, left, right, k, to_image)
        alpha = _refine_alpha_reference(seen[0], k)
        rows = np.flatnonzero(np.isfinite(left) & (right - left >= 2 * k + 4))
        n = rows.size
        lc, rc = left[rows].astype(int), right[rows].astype(int)
        moved_l = le[rows] != left[rows] - 0.5
        moved_r = re[rows] != right[rows] + 0.5
        assert moved_l.mean() > 0.9 and moved_r.mean() > 0.9
        np.testing.assert_array_equal(le[rows][moved_l], (lc + k + 0.5 - alpha[:n])[moved_l])
        np.testing.assert_array_equal(re[rows][moved_r], (rc - k - 0.5 + alpha[n:])[moved_r])


def test_orientation_profile_and_fast_threshold_equal_numpy():
    rng = np.random.default_rng(7)
    for shape in [(800, 600), (37, 5), (256, 192)]:
        u8 = rng.integers(0, 256, shape, dtype=np.uint8)
        fast = silhouette._at_least_128(u8)
        assert fast.dtype == bool
        np.testing.assert_array_equal(fast, u8 >= 128)
        m = u8 > 90
        np.testing.assert_array_equal(orientation._row_widths(m), m.sum(axis=1).astype(np.float64))
        np.testing.assert_array_equal(orientation._row_widths(m[:, ::3]), m[:, ::3].sum(axis=1).astype(np.float64))
    per_row = np.r_[np.zeros(7), rng.integers(1, 90, 400).astype(np.float64), np.zeros(3)]
    rows = np.nonzero(per_row)[0]
    span = per_row[rows[0]:rows[-1] + 1]
    edges = np.linspace(0, span.size, orientation.LEVELS + 1).round().astype(int)
    ref = np.array([span[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    np.testing.assert_array_equal(orientation._profile(per_row, orientation.LEVELS), ref / np.median(ref))


@pytest.mark.parametrize("angle", [0.0, 2.6, -7.9, 14.0])
@pytest.mark.parametrize("shape, work", [((800, 600), (512, 384)), ((401, 333), (300, 249))])
def test_warp_mask_equals_warping_the_whole_frame(angle, shape, work):
    rng = np.random.default_rng(int(abs(angle) * 10) + shape[0])
    leg = np.zeros(work, bool)
    h, w = work
    leg[int(0.1 * h):int(0.9 * h), int(0.4 * w):int(0.55 * w)] = True
    leg[int(0.85 * h):int(0.9 * h), int(0.3 * w):int(0.6 * w)] = True  # a foot
    leg &= rng.random(work) > 0.02  # ragged, with holes
    fx, fy = work[1] / shape[1], work[0] / shape[0]
    up = np.array([[1 / fx, 0.0, 0.5 / fx - 0.5], [0.0, 1 / fy, 0.5 / fy - 0.5], [0.0, 0.0, 1.0]])
    affine = cv2.getRotationMatrix2D((0.47 * shape[1], 0.52 * shape[0]), angle, 1.0) @ up
    whole = cv2.warpAffine(leg.astype(np.uint8) * 255, affine, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 128
    got = silhouette._warp_mask(leg, affine, shape)
    assert got.shape == shape and got.dtype == bool and whole.sum() > 1000
    assert np.array_equal(got, whole)
    assert not silhouette._warp_mask(np.zeros(work, bool), affine, shape).any()


def _sharpness_on_the_whole_photo(grey, leg):
    """outline_sharpness as it was: every filter over the whole photo."""
    g = cv2.GaussianBlur(grey, (0, 0), 0.7).astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    m = leg.astype(np.uint8)
    ys, xs = np.nonzero((m - cv2.erode(m, np.ones((3, 3), np.uint8))) > 0)
    d = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 2.0)
    ny = cv2.Sobel(d, cv2.CV_32F, 0, 1, ksize=3)[ys, xs]
    nx = cv2.Sobel(d, cv2.CV_32F, 1, 0, ksize=3)[ys, xs]
    norm = np.hypot(nx, ny) + 1e-6
    nx, ny = nx / norm, ny / norm
    h, w = grey.shape
    scale = max(h, w) / 512.0
    reach = max(3.0, 8.0 * scale)

    def at(sx, sy):
        return g[np.clip(np.rint(sy), 0, h - 1).astype(int), np.clip(np.rint(sx), 0, w - 1).astype(int)]
    step = np.abs(at(xs + reach * nx, ys + reach * ny) - at(xs - reach * nx, ys - reach * ny))
    mag = np.hypot(gx, gy)
    grad = np.maximum.reduce([mag[np.clip(np.rint(ys + k * ny), 0, h - 1).astype(int),
                                  np.clip(np.rint(xs + k * nx), 0, w - 1).astype(int)] for k in (-1, 0, 1)])
    ok = step >= 12
    return float(np.median(grad[ok] / step[ok]) * scale)


@pytest.mark.parametrize("size, blur, box", [(512, 0.0, (60, 470, 150, 240)), (512, 1.5, (0, 300, 100, 200)),
                                             (1024, 0.8, (100, 1023, 0, 300))])
def test_outline_sharpness_on_the_leg_crop_equals_the_whole_photo(size, blur, box):
    from smi_image.quality import outline_sharpness

    rng = np.random.default_rng(size + int(10 * blur))
    grey = np.clip(rng.normal(170, 20, (size, int(0.75 * size))), 0, 255).astype(np.uint8)
    leg = np.zeros(grey.shape, bool)
    y0, y1, x0, x1 = box
    leg[y0:y1, x0:x1] = True  # a bar touching the frame in two of the cases
    grey[leg] = 90
    if blur:
        grey = cv2.GaussianBlur(grey, (0, 0), blur)
    want = _sharpness_on_the_whole_photo(grey, leg)
    assert np.isfinite(want)
    assert outline_sharpness(grey, leg) == want
