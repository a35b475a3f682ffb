"""From a photo to the lower-leg silhouette, upright and measured row by row.

Pipeline (every option is in :class:`SilhouetteSettings`):

1. **Normalise the input.** Any dtype becomes an 8-bit copy (``uint16 / 257``,
   ``float * 255``, rounded; float must lie in [0, 1]), so that uint8, uint16 and
   float versions of one picture give the same silhouette. Grey images are used as
   one channel, colour images keep their three channels. Steps 2-6 run on a copy
   shrunk to ``work_px`` on its longest side (area averaging).
2. **Canny edges.** Gaussian blur (``blur_sigma`` px), then OpenCV's ``Canny`` (Sobel
   3 x 3, L2 gradient) on the colour image, which takes at each pixel the channel
   with the strongest gradient (a leg can differ from the wall in hue only). The
   hysteresis thresholds come from the image's own gradient statistics:
   ``high = max(high_min, high_quantile_factor * q)`` where ``q`` is the
   ``high_quantile`` of the grey image's gradient magnitude; ``low = low_ratio * high``.
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
from smi_data.errors import LegsmiError


class SilhouetteError(LegsmiError, ValueError):
    """No leg-shaped region in a photo; the message says why."""


@dataclass(frozen=True)
class SilhouetteSettings:
    """Options of :func:`leg_silhouette`; part of the feature-cache key.

    Attributes
    ----------
    blur_sigma : float
        Gaussian blur before the derivatives, px of the working image.
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
        (:func:`refine_edges`), px; 0 keeps the binary mask's edges. Widened
        automatically to cover the working resolution's pixel.
    distance_gain : float
        Background distance (CIELAB units) to 8-bit grey for its Canny pass.
    min_edge_px : int
        Edge pieces shorter than this (working-image px) are dropped as noise (0: keep
        all; on the bundled cohort the opening in :func:`fill_from_edges` already removes
        what they would enclose, and dropping them changed no measurement).
    canny_on_photo : bool
        Also run Canny on the photo's colour channels (OpenCV takes the strongest
        channel's gradient) and join its edges to those of the background distance.
    min_canny_share : float
        If the Canny region covers less than this share of the colour (Otsu) region,
        the outline leaked and the colour region is used.
    work_px : int
        Longest side of the working image on which steps 2-6 run (0: full
        resolution); the mask is then scaled up and every row's edges are found on
        the full-resolution photo, so widths keep full-resolution precision.
    """

    blur_sigma: float = 1.0
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
    work_px: int = 256
    distance_gain: float = 4.0
    min_edge_px: int = 0
    min_canny_share: float = 0.8
    canny_on_photo: bool = True

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


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Any image as a contiguous uint8 array, shape (H, W) or (H, W, 3).

    The silhouette is found on this 8-bit copy, so that uint8, uint16 and float
    versions of one picture give the same silhouette: uint8 as is, uint16 divided by
    257 and rounded, bool as 0/255, float (must lie in [0, 1]) times 255 and rounded.
    A fourth (alpha) channel is dropped; channel order does not matter here.

    Raises
    ------
    ValueError
        Wrong shape, an image under 16 x 16 px, another integer type, float values
        outside [0, 1] or not finite.
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
        out = a
    elif a.dtype == np.uint16:
        out = ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif a.dtype == bool:
        out = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError("float image holds NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float image must lie in [0, 1], got values from {lo:g} to {hi:g}; "
                             "divide by the maximum first")
        out = np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"unsupported image dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    return np.ascontiguousarray(out)


def canny_edges(u8: np.ndarray, settings: SilhouetteSettings) -> tuple[np.ndarray, tuple[float, float]]:
    """Canny edge map of a uint8 (H, W) or (H, W, 3) image (see the module docstring).

    Returns
    -------
    edges : ndarray of uint8, (H, W)
        255 on edges.
    thresholds : (float, float)
        ``(low, high)`` in gradient units (intensity per px on a [0, 1] scale).
    """
    import cv2

    # OpenCV's Canny takes the strongest of the three channels' gradients itself
    # (a leg can differ from the wall in hue only).
    blurred = cv2.GaussianBlur(u8, (0, 0), settings.blur_sigma, borderType=cv2.BORDER_REPLICATE)
    grey = cv2.cvtColor(blurred, cv2.COLOR_BGR2GRAY) if blurred.ndim == 3 else blurred
    sample = grey[::2, ::2]
    gx = cv2.Sobel(sample, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(sample, cv2.CV_32F, 0, 1, ksize=3)
    unit = 8.0 * 255.0  # Sobel 3x3 on 0..255 sums 8 x 255 x the slope on a [0, 1] scale
    # Sampling every other pixel halves the pixel pitch: slopes are per 2 px, so / 2.
    mag = np.sqrt(gx * gx + gy * gy) / unit / 2.0
    q = float(np.quantile(mag, settings.high_quantile))
    high = max(settings.high_min, settings.high_quantile_factor * q)
    low = settings.low_ratio * high
    edges = cv2.Canny(blurred, low * unit, high * unit, L2gradient=True)
    return edges, (low, high)


#: Radius of the opening that removes lines left by the walls (working-image px).
OPEN_PX = 2


def _disk(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def drop_short_edges(edges: np.ndarray, min_px: int) -> np.ndarray:
    """Edge map without its 8-connected pieces of fewer than ``min_px`` pixels (noise, texture)."""
    import cv2

    if min_px <= 1:
        return edges
    n, labels, stats, _ = cv2.connectedComponentsWithStats((edges > 0).astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return np.where(keep[labels], 255, 0).astype(np.uint8)


def fill_from_edges(edges: np.ndarray, close_px: int) -> np.ndarray:
    """Foreground (uint8 0/1) enclosed by the edges: regions not reaching the left or right border.

    The edges are dilated by ``close_px``; regions of the rest that touch the left or
    right border are background; the remainder is eroded by ``close_px + OPEN_PX``
    and dilated by ``OPEN_PX`` (undoing the dilation and opening away thin lines).
    """
    import cv2

    walls = cv2.dilate(edges, _disk(close_px)) if close_px > 0 else edges.copy()
    free = (walls == 0).astype(np.uint8)
    n, labels = cv2.connectedComponents(free, connectivity=4)
    side = np.zeros(n, bool)
    side[np.concatenate([labels[:, 0], labels[:, -1]])] = True
    side[0] = False  # label 0 is the walls
    fg = (~side[labels]).astype(np.uint8)
    # Undo the dilation, then an opening removes what is only a wall: a floor line or
    # a crease that touches the leg would otherwise join it as a thin spur.
    fg = cv2.erode(fg, _disk(close_px + OPEN_PX), borderType=cv2.BORDER_REPLICATE)
    return cv2.dilate(fg, _disk(OPEN_PX))


def background_distance(u8: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Colour distance of every pixel from the background behind it, CIELAB units (float32, (H, W)).

    The background is modelled row by row from the photo's left and right border strips
    (4 % of the width each; median per row, then a running median over 9 rows); a
    pixel's distance is to the nearest of these colours in its row and 6 px above and
    below. This follows a wall's shading and the floor below its line (also a tilted
    one), which a single background colour would not. Pixels in ``exclude`` (the
    marker card) are left out of the strips.
    """
    import cv2

    img = u8 if u8.ndim == 3 else cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)
    planes = [p.astype(np.float32) for p in cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2LAB))]
    # OpenCV's 8-bit Lab stores L * 255/100; back to CIELAB units so distances are Delta-E-like.
    planes[0] *= 100.0 / 255.0
    h, w = planes[0].shape
    k = max(2, int(round(0.04 * w)))
    sides = []
    for cols in (slice(0, k), slice(w - k, w)):
        med = np.stack([np.median(p[:, cols], axis=1) for p in planes], axis=1)  # (h, 3)
        ok = np.ones(h, bool) if exclude is None else ~(exclude[:, cols] > 0).any(axis=1)
        if not ok.any():
            med[:] = [np.median(p) for p in planes]
        elif not ok.all():
            idx = np.arange(h)
            for c in range(3):
                med[:, c] = np.interp(idx, idx[ok], med[ok, c])
        sides.append(np.stack([_running_median(med[:, c], 9) for c in range(3)], axis=1))
    # Distance to the nearest of the side colours of this row and of the rows 6 px above
    # and below: a tilted floor line puts wall on one side and floor on the other in the
    # same row, and a blend of the two would match neither. The shifted colours differ
    # from the row's own only near such a line, so they are evaluated on those rows only.
    def dist2(ref: np.ndarray, rows=slice(None)) -> np.ndarray:
        d = planes[0][rows] - ref[:, 0:1]
        d *= d
        for c in (1, 2):
            e = planes[c][rows] - ref[:, c:c + 1]
            e *= e
            d += e
        return d

    best = np.minimum(dist2(sides[0]), dist2(sides[1]))
    idx = np.arange(h)
    for med in sides:
        for shift in (-6, 6):
            ref = med[np.clip(idx - shift, 0, h - 1)]
            rows = np.flatnonzero(np.abs(ref - med).max(axis=1) > 1.0)
            if rows.size:
                best[rows] = np.minimum(best[rows], dist2(ref[rows], rows))
    return np.sqrt(best, out=best)


def _running_median(v: np.ndarray, n: int) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(v, size=n, mode="nearest")


def otsu_foreground(dist8: np.ndarray) -> np.ndarray:
    """Fallback foreground (uint8 0/1): Otsu's threshold on the background distance (uint8), holes filled."""
    import cv2

    d8 = cv2.GaussianBlur(dist8, (0, 0), 1.0)
    _, fg = cv2.threshold(d8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, _disk(2))
    # Fill holes: background is what reaches the image border through non-foreground.
    return fill_holes(fg)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a 0/1 mask (regions of 0 that do not touch the image border)."""
    import cv2

    free = (mask == 0).astype(np.uint8)
    n, labels = cv2.connectedComponents(free, connectivity=4)
    outside = np.zeros(n, bool)
    outside[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    outside[0] = True  # label 0 is the mask itself
    out = mask.copy()
    out[~outside[labels]] = 1
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


def joint_axis_angle_deg(mask: np.ndarray, knee_h: float, ankle_h: float) -> float:
    """Tilt from vertical of the line through the mid-points near the knee and the ankle, degrees.

    ``knee_h`` and ``ankle_h`` are the joints' heights above the mask's lowest row (the
    sole), px. Mid-points are averaged over ``t`` in [0.02, 0.10] (below the knee) and
    [0.80, 0.92] (above the ankle), ``t`` running from 0 at the knee to 1 at the ankle.
    Positive: the top leans right (as :func:`axis_angle_deg`). NaN if a window is empty.
    """
    left, right = row_extents(mask)
    rows = np.flatnonzero(np.isfinite(left))
    if rows.size < 10:
        return float("nan")
    sole = rows[-1] + 0.5
    yk, ya = sole - knee_h, sole - ankle_h
    mids = []
    for t0, t1 in ((0.02, 0.10), (0.80, 0.92)):
        r = rows[(rows >= yk + t0 * (ya - yk)) & (rows <= yk + t1 * (ya - yk))]
        if r.size == 0:
            return float("nan")
        mids.append((float(r.mean()), float(np.mean(0.5 * (left[r] + right[r])))))
    (y0, x0), (y1, x1) = mids
    if y1 - y0 < 5:
        return float("nan")
    return float(-np.degrees(np.arctan((x1 - x0) / (y1 - y0))))


def _rotate_mask(mask: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate a bool mask about its centroid; returns (rotated, forward 2x3, inverse 2x3)."""
    import cv2

    mom = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    centre = (mom["m10"] / mom["m00"], mom["m01"] / mom["m00"])
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
    joint_heights_px: tuple | None = None,
) -> Silhouette:
    """Find the lower leg in a photo and return it upright.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        The photo; uint8, uint16 or float in [0, 1] (see :func:`to_uint8`).
    settings : SilhouetteSettings, keyword-only
        Options; defaults are tuned on the bundled cohort.
    exclude_polygons : list of (N, 2) arrays, keyword-only
        Image regions that are not leg (the ArUco marker's corners), x, y in px.
    joint_heights_px : (float, float), keyword-only
        Knee and ankle joint heights above the sole, px (from the scale and the
        person's height, :mod:`.features.base`). When given, the leg's axis is the line
        through the silhouette's mid-points just below the knee and just above the
        ankle (:func:`joint_axis_angle_deg`), which follows the knee-to-ankle axis; the
        calf's bulge does not pull it as it pulls a fit through every row.

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
    img = to_uint8(image)
    h, w = img.shape[:2]
    notes: list[str] = []
    # Find the leg at a working resolution (speed), measure it at full resolution.
    f = s.work_px / max(h, w) if s.work_px else 1.0
    if f < 0.8:
        hs, ws = max(16, int(round(h * f))), max(16, int(round(w * f)))
        small = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA)
    else:
        small, hs, ws = img, h, w
    fx, fy = ws / w, hs / h

    def _exclude(fg: np.ndarray) -> np.ndarray:
        for poly in exclude_polygons or []:
            pts = np.asarray(poly, dtype=float).reshape(-1, 2)
            c = pts.mean(axis=0)
            grown = c + (pts - c) * 1.6  # the marker's white quiet zone and paper
            grown = (grown + 0.5) * [fx, fy] - 0.5
            cv2.fillPoly(fg, [np.rint(grown).astype(np.int32)], 0)
        return fg

    exclude = _exclude(np.zeros(small.shape[:2], np.uint8) + 1) == 0
    dist = background_distance(small, exclude.astype(np.uint8))
    # Canny on the background distance: a leg that matches the wall in brightness on
    # its lit side still differs from it in colour. Optionally also on the photo itself.
    d8 = cv2.convertScaleAbs(dist, alpha=s.distance_gain)
    edges, thresholds = canny_edges(d8, s)
    if s.canny_on_photo:
        photo_edges, _ = canny_edges(small, s)
        edges = cv2.bitwise_or(edges, photo_edges)
    edges = drop_short_edges(edges, s.min_edge_px)
    leg = pick_leg(_exclude(fill_from_edges(edges, s.close_px)), s)
    method = "canny"
    colour = None
    if s.fallback:
        # Cheap screen first: the colour region cannot be larger than all pixels above
        # Otsu's threshold; only when that could exceed the Canny region is it made.
        blurred = cv2.GaussianBlur(d8, (0, 0), 1.0)
        t_otsu, _ = cv2.threshold(blurred, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        n_above = int(np.count_nonzero(_exclude((blurred > t_otsu).astype(np.uint8))))
        if leg is None or leg.sum() < s.min_canny_share * n_above:
            colour = pick_leg(_exclude(otsu_foreground(d8)), s)
    if leg is not None and colour is not None and leg.sum() < s.min_canny_share * colour.sum():
        # The outline leaked: part of the leg fell to the background through a gap.
        notes.append("the Canny outline leaked (it covers much less than the leg's colour region); "
                     "used the Otsu colour-distance fallback")
        leg, method = colour, "otsu"
    if leg is None:
        if not s.fallback:
            raise SilhouetteError("no closed leg-shaped outline in the Canny edges (fallback switched off)")
        notes.append("Canny edges did not close around a leg; used the Otsu colour-distance fallback")
        leg = colour
        method = "otsu"
        if leg is None:
            raise SilhouetteError(
                f"no leg-shaped region: nothing spans {s.min_height_frac:.0%} of the image height and "
                f"{s.min_area_frac:.0%} of its area (checked Canny edges and the Otsu fallback); "
                "photograph the lower leg from knee to foot against a plain background"
            )
    def measure_tilt(mask: np.ndarray) -> float:
        if joint_heights_px is not None:
            return joint_axis_angle_deg(mask, joint_heights_px[0] * fy, joint_heights_px[1] * fy)
        return axis_angle_deg(mask, s.axis_band)

    angle = measure_tilt(leg)
    if not np.isfinite(angle):
        angle = axis_angle_deg(leg, s.axis_band)
    if abs(angle) > s.max_roll_deg:
        raise SilhouetteError(
            f"the leg's axis is tilted {angle:.1f} degrees from vertical (more than {s.max_roll_deg:g}); "
            "photograph the leg upright, knee at the top and foot at the bottom"
        )
    # The band of rows moves with the rotation: measure the tilt that is left on the
    # rotated working mask and add it (the full-resolution mask is made once, at the end).
    for _ in range(2):
        rot = _rotate_mask(leg, angle)[0] if abs(angle) >= 0.05 else leg
        residual = measure_tilt(rot)
        if not np.isfinite(residual) or abs(residual) < 0.1:
            break
        angle += residual
    if abs(angle) > s.max_roll_deg:
        raise SilhouetteError(
            f"the leg's axis is tilted {angle:.1f} degrees from vertical (more than {s.max_roll_deg:g}); "
            "photograph the leg upright, knee at the top and foot at the bottom"
        )
    # Working mask -> upright full-resolution mask in one warp: scale up, then rotate
    # about the leg's centroid (in full-resolution pixel-centre coordinates).
    up = np.array([[1 / fx, 0.0, 0.5 / fx - 0.5], [0.0, 1 / fy, 0.5 / fy - 0.5], [0.0, 0.0, 1.0]])
    mom = cv2.moments(leg.astype(np.uint8), binaryImage=True)
    centre = ((mom["m10"] / mom["m00"] + 0.5) / fx - 0.5, (mom["m01"] / mom["m00"] + 0.5) / fy - 0.5)
    rotate = cv2.getRotationMatrix2D(centre, angle if abs(angle) >= 0.25 else 0.0, 1.0)
    to_upright = rotate @ up
    full = cv2.warpAffine(leg.astype(np.uint8) * 255, to_upright, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 128
    rotated = abs(angle) >= 0.25
    if not rotated:
        angle = 0.0
    to_image = cv2.invertAffineTransform(rotate)
    left, right = row_extents(full)
    k = max(s.refine_px, int(np.ceil(0.5 / min(fx, fy))) + 2) if s.refine_px > 0 else 0
    if k:
        left_sub, right_sub = refine_edges(img, left, right, k, to_image if rotated else None)
    else:
        left_sub, right_sub = left - 0.5, right + 0.5
    return Silhouette(mask=full, left=left_sub, right=right_sub, method=method, roll_deg=float(angle),
                      to_image=to_image, canny_thresholds=thresholds, notes=notes)


def _gather(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, to_image: np.ndarray | None) -> np.ndarray:
    """Pixels at upright-frame (row, col) positions: direct, or bilinear through ``to_image``."""
    import cv2

    h, w = img.shape[:2]
    if to_image is None:
        r = np.broadcast_to(rows, cols.shape)
        out = img[r, np.clip(cols, 0, w - 1)].astype(np.float32)
        return out if out.ndim == 3 else out[..., None]
    y = np.broadcast_to(rows, cols.shape).astype(np.float32)
    x = cols.astype(np.float32)
    a = to_image.astype(np.float32)
    mx = a[0, 0] * x + a[0, 1] * y + a[0, 2]
    my = a[1, 0] * x + a[1, 1] * y + a[1, 2]
    out = cv2.remap(img.astype(np.float32) if img.dtype != np.uint8 else img, mx, my,
                    interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = out.astype(np.float32)
    return out if out.ndim == 3 else out[..., None]


def refine_edges(img: np.ndarray, left: np.ndarray, right: np.ndarray, k: int,
                 to_image: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
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
    img : ndarray, (H, W) or (H, W, C)
        The photo (any scale: the result depends on ratios of differences only).
    left, right : ndarray, (H,)
        Integer columns of the first and last leg pixel per row (NaN for empty rows).
    k : int
        Half-width of the refinement window, px.
    to_image : ndarray (2, 3) or None
        Affine from the frame of ``left``/``right`` (upright) to the photo; None: same frame.

    Returns
    -------
    left_edge, right_edge : ndarray, (H,)
        Edge positions in pixel-centre coordinates (the binary mask's edges are at
        ``left - 0.5`` and ``right + 0.5``); rows whose window does not fit keep those.
    """
    h, w = img.shape[:2]
    left_e = left - 0.5
    right_e = right + 0.5
    rows = np.flatnonzero(np.isfinite(left) & (right - left >= 2 * k + 4))
    if rows.size == 0:
        return left_e, right_e
    offs = np.arange(-k, k + 1)

    lc = left[rows].astype(int)
    rc = right[rows].astype(int)
    # Both sides in one gather: rows of the left edges, then of the right edges.
    # sign = +1: leg to the right of the edge (left edge); -1: leg to the left.
    col = np.concatenate([lc, rc])[:, None]
    sign = np.concatenate([np.ones(len(rows), int), -np.ones(len(rows), int)])[:, None]
    steps = np.concatenate([offs, -np.array([k + 1, k + 2]), np.array([k + 1, k + 2])])
    allc = col + sign * steps[None, :]
    ok = (allc.min(axis=1) >= 0) & (allc.max(axis=1) < w)
    vals = _gather(img, np.concatenate([rows, rows])[:, None], allc, to_image)
    p = vals[:, : 2 * k + 1]                              # (2n, 2k+1, C)
    out_v = vals[:, 2 * k + 1: 2 * k + 3].mean(axis=1)    # (2n, C)
    in_v = vals[:, 2 * k + 3:].mean(axis=1)
    d = in_v - out_v
    dd = (d * d).sum(axis=1)
    ok &= dd > 1e-4 * 255.0 ** 2                           # no contrast: keep the binary edge
    alpha = ((p - out_v[:, None, :]) * d[:, None, :]).sum(axis=2) / np.maximum(dd, 1e-12)[:, None]
    alpha = np.clip(alpha, 0.0, 1.0).sum(axis=1)
    n = len(rows)
    a_l, a_r, ok_l, ok_r = alpha[:n], alpha[n:], ok[:n], ok[n:]
    # Left edge: window lc-k..lc+k, leg to the right: e = (lc + k + 0.5) - sum(alpha).
    left_e[rows[ok_l]] = (lc + k + 0.5 - a_l)[ok_l]
    # Right edge: window rc-k..rc+k, leg to the left: e = (rc - k - 0.5) + sum(alpha).
    right_e[rows[ok_r]] = (rc - k - 0.5 + a_r)[ok_r]
    return left_e, right_e
