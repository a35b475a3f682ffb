"""From a photo to the lower-leg silhouette, upright and measured row by row.

Pipeline (every option is in :class:`SilhouetteSettings`):

1. **Normalise the input.** Any dtype becomes float32 in [0, 1] (``uint8 / 255``,
   ``uint16 / 65535``, float must already lie in [0, 1]), so that uint8, uint16 and
   float versions of one picture give the same silhouette. Grey images are used as
   one channel, colour images keep their three channels.
2. **Canny edges.** Gaussian blur (``blur_sigma`` px), Sobel derivatives per channel,
   and at each pixel the channel with the strongest gradient (a leg can differ from
   the wall in hue only). The hysteresis thresholds come from the image's own
   gradient statistics: ``high = max(high_min, high_quantile_factor * q)`` where ``q`` is
   the ``high_quantile`` of the gradient magnitude; ``low = low_ratio * high``. OpenCV's
   ``Canny`` runs on the int16 derivatives (``Canny(dx, dy, ...)``, L2 gradient).
3. **Close and fill.** Edges are dilated by ``close_px`` so small gaps close; every
   region of the non-edge image that touches the left or right image border is
   background (the leg stands in the middle; the floor and the wall reach the sides);
   all the rest is filled foreground, then eroded by ``close_px`` so that the boundary
   is back on the edge line.
4. **Keep the leg.** Connected components of the foreground; the ArUco marker's
   polygon (when found) is removed first; the leg is the largest component that is
   tall (``min_height_frac`` of the image height) and large (``min_area_frac``).
5. **Fallback.** Where step 3 gives no plausible leg (an edge that does not close
   lets the background flood into the leg), the colour distance from the background
   colour (median of the top image border) is thresholded with Otsu's method and the
   same component rule is applied. ``method`` records ``"canny"`` or ``"otsu"``.
6. **Upright.** The leg's axis is the straight line fitted through the mid-points of
   the rows of the shank (the upper ``axis_band`` of the mask); the mask is rotated
   about its centre so the axis is vertical. Photos are assumed upright within
   ``max_roll_deg`` (knee up, foot down); a larger tilt is a failure, not a guess.

The result is a :class:`Silhouette` with the upright mask, the left and right edge of
every row, and the affine transform back to the photo's pixel coordinates (for
drawing). No step needs more than one pass over the image; at 512 x 512 the whole
pipeline takes a few milliseconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np


class SilhouetteError(ValueError):
    """No leg-shaped region in a photo; the message says why."""


@dataclass(frozen=True)
class SilhouetteSettings:
    """Options of :func:`leg_silhouette`; part of the feature-cache key.

    Attributes
    ----------
    blur_sigma : float
        Gaussian blur before the derivatives, px (at the photo's own resolution).
    high_quantile, high_quantile_factor, high_min : float
        Canny's high threshold: ``max(high_min, high_quantile_factor *
        quantile(|grad|, high_quantile))``, in units of intensity per px on a [0, 1]
        scale (Sobel 3 x 3 divided by 8, so a sharp step of contrast c gives about c/2).
    low_ratio : float
        Canny's low threshold as a fraction of the high one.
    close_px : int
        Radius of the dilation that closes gaps in the edge map, px.
    min_height_frac, min_area_frac : float
        A leg component spans at least this fraction of the image height and covers at
        least this fraction of its area.
    max_roll_deg : float
        Largest tilt of the leg axis from vertical that is corrected.
    axis_band : tuple of float
        Rows (fractions of the mask's height from its top) whose mid-points define the
        leg's axis; the foot, which sticks out forward in a lateral view, is left out.
    fallback : bool
        Use the Otsu colour-distance fallback when the edges do not close.
    refine_px : int
        Half-width of the window for the sub-pixel edge of each row
        (:func:`refine_edges`), px; 0 keeps the binary mask's edges.
    """

    blur_sigma: float = 1.5
    high_quantile: float = 0.98
    high_quantile_factor: float = 0.5
    high_min: float = 0.02
    low_ratio: float = 0.4
    close_px: int = 2
    min_height_frac: float = 0.35
    min_area_frac: float = 0.02
    max_roll_deg: float = 30.0
    axis_band: tuple = (0.05, 0.7)
    fallback: bool = True
    refine_px: int = 3

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


@dataclass
class Silhouette:
    """An upright leg silhouette.

    Attributes
    ----------
    mask : ndarray of bool, (H, W)
        The leg in the upright frame (same size as the photo).
    left, right : ndarray of float, (H,)
        Sub-pixel left and right edge of each row of ``mask`` in pixel-centre
        coordinates (NaN for empty rows), px; the row's width is ``right - left``.
    method : {'canny', 'otsu'}
        How the mask was found.
    roll_deg : float
        Angle the mask was rotated by to make the leg vertical, degrees
        (counter-clockwise in the image as displayed).
    to_image : ndarray, (2, 3)
        Affine transform from upright-frame (x, y) to photo (x, y) pixel coordinates.
    canny_thresholds : tuple of float
        ``(low, high)`` used, gradient units as in :class:`SilhouetteSettings`.
    """

    mask: np.ndarray
    left: np.ndarray
    right: np.ndarray
    method: str
    roll_deg: float
    to_image: np.ndarray
    canny_thresholds: tuple = (np.nan, np.nan)
    notes: list = field(default_factory=list)

    @property
    def widths(self) -> np.ndarray:
        """Width of every row, px (NaN where the row is empty)."""
        return self.right - self.left

    @property
    def top(self) -> int:
        return int(np.flatnonzero(np.isfinite(self.left))[0])

    @property
    def bottom(self) -> int:
        return int(np.flatnonzero(np.isfinite(self.left))[-1])

    def to_image_points(self, pts) -> np.ndarray:
        """Map ``(N, 2)`` upright-frame (x, y) points to photo coordinates."""
        pts = np.asarray(pts, dtype=float).reshape(-1, 2)
        return pts @ self.to_image[:, :2].T + self.to_image[:, 2]


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """Any image as float32 in [0, 1], shape (H, W, C) with C = 1 or 3.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3|4)
        uint8 (divided by 255), uint16 (by 65535), bool, or float in [0, 1].
        A fourth (alpha) channel is dropped. Channel order does not matter here.

    Raises
    ------
    ValueError
        Wrong shape, empty image, another integer type, float values outside [0, 1]
        or not finite.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"expected an image of shape (H, W) or (H, W, 3), got {a.shape}")
    if a.shape[0] < 16 or a.shape[1] < 16:
        raise ValueError(f"image of {a.shape[1]}x{a.shape[0]} px is too small to find a leg (need at least 16x16)")
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / np.float32(255.0)
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / np.float32(65535.0)
    elif a.dtype == bool:
        f = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError("float image holds NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float image must lie in [0, 1], got values from {lo:g} to {hi:g}; divide by the maximum first")
        # Round to the 16-bit grid so float32/float64 versions of one picture are identical.
        f = (np.round(a.astype(np.float64) * 65535.0) / 65535.0).astype(np.float32)
    else:
        raise ValueError(f"unsupported image dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    if f.ndim == 2:
        f = f[..., None]
    return np.ascontiguousarray(f)


def canny_edges(img: np.ndarray, settings: SilhouetteSettings) -> tuple[np.ndarray, tuple[float, float]]:
    """Canny edge map of a (H, W, C) float image in [0, 1] (see the module docstring).

    Returns
    -------
    edges : ndarray of uint8, (H, W)
        255 on edges.
    thresholds : (float, float)
        ``(low, high)`` in gradient units (intensity per px on a [0, 1] scale).
    """
    import cv2

    blurred = cv2.GaussianBlur(img, (0, 0), settings.blur_sigma, borderType=cv2.BORDER_REPLICATE)
    if blurred.ndim == 2:
        blurred = blurred[..., None]
    best_dx = best_dy = best_m = None
    for c in range(blurred.shape[2]):
        ch = np.ascontiguousarray(blurred[..., c])
        dx = cv2.Sobel(ch, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        dy = cv2.Sobel(ch, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        m = dx * dx + dy * dy
        if best_m is None:
            best_dx, best_dy, best_m = dx, dy, m
        else:
            take = m > best_m
            best_dx = np.where(take, dx, best_dx)
            best_dy = np.where(take, dy, best_dy)
            best_m = np.maximum(m, best_m)
    mag = np.sqrt(best_m) / 8.0  # Sobel 3x3 sums 8 x the slope; report the slope per px
    sample = mag[::2, ::2]
    q = float(np.quantile(sample, settings.high_quantile))
    high = max(settings.high_min, settings.high_quantile_factor * q)
    low = settings.low_ratio * high
    # int16 derivatives for OpenCV: scale so the gradient units map to integer steps.
    scale = 1000.0
    dx16 = np.clip(np.rint(best_dx / 8.0 * scale), -32767, 32767).astype(np.int16)
    dy16 = np.clip(np.rint(best_dy / 8.0 * scale), -32767, 32767).astype(np.int16)
    edges = cv2.Canny(dx16, dy16, low * scale, high * scale, L2gradient=True)
    return edges, (low, high)


def _disk(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def fill_from_edges(edges: np.ndarray, close_px: int) -> np.ndarray:
    """Foreground (uint8 0/1) enclosed by the edges: regions not reaching the left or right border."""
    import cv2

    walls = cv2.dilate(edges, _disk(close_px)) if close_px > 0 else edges.copy()
    free = (walls == 0).astype(np.uint8)
    n, labels = cv2.connectedComponents(free, connectivity=4)
    side = np.unique(np.concatenate([labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, side[side > 0]) if n > 1 else np.zeros_like(free, bool)
    fg = (~background).astype(np.uint8)
    if close_px > 0:
        fg = cv2.erode(fg, _disk(close_px), borderType=cv2.BORDER_REPLICATE)
    return fg


def otsu_foreground(img: np.ndarray) -> np.ndarray:
    """Fallback foreground (uint8 0/1): colour distance from the top border's median, Otsu threshold."""
    import cv2

    h = img.shape[0]
    border = img[: max(2, h // 50)].reshape(-1, img.shape[2])
    bg = np.median(border, axis=0)
    dist = np.sqrt(((img - bg) ** 2).sum(axis=2))
    dist = cv2.GaussianBlur(dist, (0, 0), 1.0)
    d8 = np.clip(np.rint(dist / max(float(dist.max()), 1e-6) * 255), 0, 255).astype(np.uint8)
    _, fg = cv2.threshold(d8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, _disk(2))
    # Fill holes: background is what reaches the image border through non-foreground.
    return fill_holes(fg)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a 0/1 mask (regions of 0 that do not touch the image border)."""
    import cv2

    free = (mask == 0).astype(np.uint8)
    n, labels = cv2.connectedComponents(free, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = (labels > 0) & ~np.isin(labels, border)
    out = mask.copy()
    out[holes] = 1
    return out


def pick_leg(fg: np.ndarray, settings: SilhouetteSettings) -> np.ndarray | None:
    """The largest tall, large component of a 0/1 mask as bool, or None if there is none."""
    import cv2

    h, w = fg.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    best, best_area = None, 0
    for i in range(1, n):
        area = stats[i, cv2.CC_STAT_AREA]
        height = stats[i, cv2.CC_STAT_HEIGHT]
        if height < settings.min_height_frac * h or area < settings.min_area_frac * h * w:
            continue
        if area > best_area:
            best, best_area = i, area
    if best is None:
        return None
    return labels == best


def row_extents(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leftmost and rightmost True column of each row (float, NaN for empty rows)."""
    h, w = mask.shape
    any_row = mask.any(axis=1)
    left = np.full(h, np.nan)
    right = np.full(h, np.nan)
    if any_row.any():
        left[any_row] = mask[any_row].argmax(axis=1)
        right[any_row] = w - 1 - mask[any_row, ::-1].argmax(axis=1)
    return left, right


def axis_angle_deg(mask: np.ndarray, band: tuple) -> float:
    """Tilt of the leg's axis from vertical, degrees (positive: the top leans right).

    The axis is the least-squares line ``x = a y + b`` through the mid-points of the
    rows in ``band`` (fractions of the mask's height from its top).
    """
    left, right = row_extents(mask)
    rows = np.flatnonzero(np.isfinite(left))
    if rows.size < 10:
        return 0.0
    top, bottom = rows[0], rows[-1]
    y0 = top + band[0] * (bottom - top)
    y1 = top + band[1] * (bottom - top)
    sel = rows[(rows >= y0) & (rows <= y1)]
    if sel.size < 5:
        return 0.0
    mid = 0.5 * (left[sel] + right[sel])
    a = np.polyfit(sel.astype(float), mid, 1)[0]
    # x grows with y (downwards) when the top leans left, so the tilt is -atan(a).
    return float(-np.degrees(np.arctan(a)))


def _rotate_mask(mask: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate a bool mask about its centroid; returns (rotated, forward 2x3, inverse 2x3)."""
    import cv2

    ys, xs = np.nonzero(mask)
    centre = (float(xs.mean()), float(ys.mean()))
    fwd = cv2.getRotationMatrix2D(centre, angle_deg, 1.0)
    inv = cv2.invertAffineTransform(fwd)
    h, w = mask.shape
    rot = cv2.warpAffine(mask.astype(np.uint8) * 255, fwd, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return rot >= 128, fwd, inv


def leg_silhouette(
    image: np.ndarray,
    *,
    settings: SilhouetteSettings | None = None,
    exclude_polygons: list | None = None,
) -> Silhouette:
    """Find the lower leg in a photo and return it upright.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        The photo; uint8, uint16 or float in [0, 1] (see :func:`to_unit_float`).
    settings : SilhouetteSettings, keyword-only
        Options; defaults are tuned on the bundled cohort.
    exclude_polygons : list of (N, 2) arrays, keyword-only
        Image regions that are not leg (the ArUco marker's corners), x, y in px.

    Returns
    -------
    Silhouette

    Raises
    ------
    SilhouetteError
        No leg-shaped region (none tall and large enough), or the leg tilts more than
        ``settings.max_roll_deg``.
    """
    import cv2

    s = settings or SilhouetteSettings()
    img = to_unit_float(image)
    h, w = img.shape[:2]
    notes: list[str] = []

    def _exclude(fg: np.ndarray) -> np.ndarray:
        for poly in exclude_polygons or []:
            pts = np.asarray(poly, dtype=float).reshape(-1, 2)
            c = pts.mean(axis=0)
            grown = c + (pts - c) * 1.6  # the marker's white quiet zone and paper
            cv2.fillPoly(fg, [np.rint(grown).astype(np.int32)], 0)
        return fg

    edges, thresholds = canny_edges(img, s)
    leg = pick_leg(_exclude(fill_from_edges(edges, s.close_px)), s)
    method = "canny"
    if leg is None:
        if not s.fallback:
            raise SilhouetteError("no closed leg-shaped outline in the Canny edges (fallback switched off)")
        notes.append("Canny edges did not close around a leg; used the Otsu colour-distance fallback")
        leg = pick_leg(_exclude(otsu_foreground(img)), s)
        method = "otsu"
        if leg is None:
            raise SilhouetteError(
                f"no leg-shaped region: nothing spans {s.min_height_frac:.0%} of the image height and "
                f"{s.min_area_frac:.0%} of its area (checked Canny edges and the Otsu fallback); "
                "photograph the lower leg from knee to foot against a plain background"
            )
    angle = axis_angle_deg(leg, s.axis_band)
    if abs(angle) > s.max_roll_deg:
        raise SilhouetteError(
            f"the leg's axis is tilted {angle:.1f} degrees from vertical (more than {s.max_roll_deg:g}); "
            "photograph the leg upright, knee at the top and foot at the bottom"
        )
    to_image = None
    if abs(angle) >= 0.25:
        original = leg
        leg, _, to_image = _rotate_mask(original, angle)
        # The band of rows moves with the rotation: measure what tilt is left and
        # rotate the original once more by the total (one interpolation only).
        residual = axis_angle_deg(leg, s.axis_band)
        if abs(residual) >= 0.1:
            angle += residual
            leg, _, to_image = _rotate_mask(original, angle)
    upright = img if to_image is None else _warp_image(img, to_image)
    left, right = row_extents(leg)
    left_sub, right_sub = refine_edges(upright, left, right, s.refine_px) if s.refine_px > 0 else (left - 0.5, right + 0.5)
    if to_image is None:
        to_image = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return Silhouette(mask=leg, left=left_sub, right=right_sub, method=method, roll_deg=angle,
                      to_image=to_image, canny_thresholds=thresholds, notes=notes)


def _warp_image(img: np.ndarray, to_image: np.ndarray) -> np.ndarray:
    """The photo in the upright frame (inverse of ``to_image``), bilinear, edges replicated."""
    import cv2

    h, w = img.shape[:2]
    out = cv2.warpAffine(img, to_image, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    return out if out.ndim == 3 else out[..., None]


def refine_edges(img: np.ndarray, left: np.ndarray, right: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel left and right edge of every row from the photo's grey levels.

    Along each row the leg's coverage of the pixels within ``k`` px of the binary
    edge is ``alpha = <p - out, in - out> / |in - out|^2`` (clipped to [0, 1]), with
    ``in`` and ``out`` the mean colour 2 px beyond the window on the leg and on the
    background side. A step edge at position ``e`` covers ``sum(alpha)`` of the window,
    so ``e = (last pixel of the window + 0.5) - sum(alpha)`` on the left (mirrored on the
    right). This removes the up-to-one-pixel bias of the binary mask per edge (anti-
    aliasing, blur, JPEG) and makes widths continuous in the drawing's size.

    Parameters
    ----------
    img : ndarray, (H, W, C) float
        The photo in the same frame as ``left`` and ``right``.
    left, right : ndarray, (H,)
        Integer columns of the first and last leg pixel per row (NaN for empty rows).
    k : int
        Half-width of the refinement window, px.

    Returns
    -------
    left_edge, right_edge : ndarray, (H,)
        Edge positions in pixel-centre coordinates (the binary mask's edges are at
        ``left - 0.5`` and ``right + 0.5``); rows whose window does not fit keep those.
    """
    h, w, _ = img.shape
    left_e = left - 0.5
    right_e = right + 0.5
    rows = np.flatnonzero(np.isfinite(left) & (right - left >= 2 * k + 4))
    if rows.size == 0:
        return left_e, right_e
    offs = np.arange(-k, k + 1)

    def one_side(col: np.ndarray, sign: int) -> tuple[np.ndarray, np.ndarray]:
        # sign = +1: leg to the right of the edge (left edge); -1: leg to the left.
        idx = col[:, None] + sign * offs[None, :]
        out_idx = col[:, None] - sign * np.array([k + 1, k + 2])[None, :]
        in_idx = col[:, None] + sign * np.array([k + 1, k + 2])[None, :]
        ok = (idx.min(axis=1) >= 0) & (idx.max(axis=1) < w) & (out_idx.min(axis=1) >= 0) & (out_idx.max(axis=1) < w) \
            & (in_idx.min(axis=1) >= 0) & (in_idx.max(axis=1) < w)
        r = rows[:, None]
        idx_c = np.clip(idx, 0, w - 1)
        p = img[r, idx_c]                                     # (n, 2k+1, C)
        out_v = img[r, np.clip(out_idx, 0, w - 1)].mean(axis=1)  # (n, C)
        in_v = img[r, np.clip(in_idx, 0, w - 1)].mean(axis=1)
        d = in_v - out_v
        dd = (d * d).sum(axis=1)
        ok &= dd > 1e-4                                        # no contrast: keep the binary edge
        alpha = ((p - out_v[:, None, :]) * d[:, None, :]).sum(axis=2) / np.maximum(dd, 1e-12)[:, None]
        alpha = np.clip(alpha, 0.0, 1.0).sum(axis=1)
        return alpha, ok

    lc = left[rows].astype(int)
    rc = right[rows].astype(int)
    a_l, ok_l = one_side(lc, +1)
    a_r, ok_r = one_side(rc, -1)
    # Left edge: window lc-k..lc+k, leg to the right: e = (lc + k + 0.5) - sum(alpha).
    left_e[rows[ok_l]] = (lc + k + 0.5 - a_l)[ok_l]
    # Right edge: window rc-k..rc+k, leg to the left: e = (rc - k - 0.5) + sum(alpha).
    right_e[rows[ok_r]] = (rc - k - 0.5 + a_r)[ok_r]
    return left_e, right_e
