"""The classical leg finder: background model, Canny, closing and filling, the leg component.

Steps (options in :class:`~smi_image.settings.SilhouetteSettings`), on a working copy
shrunk to ``work_px`` on its longest side:

1. **Background distance.** The background is modelled row by row from the photo's left
   and right border strips (:func:`background_distance`); every pixel's CIELAB distance
   to it, as 8-bit grey.
2. **Canny edges** of that distance image and of the photo's colour channels
   (:func:`canny_edges`; OpenCV takes the strongest channel's gradient), thresholds
   from the image's own gradient statistics.
3. **Close and fill** (:func:`fill_from_edges`): regions of the non-edge image that
   touch the left or right border are background, the rest is foreground.
4. **Keep the leg** (:func:`pick_leg`): the largest tall and large component, the
   ArUco marker's polygon removed first.
5. **Fallback** (:func:`otsu_foreground`): where the outline leaks or does not close,
   Otsu's threshold on the background distance.

Works on studio photos (one leg on a plain wall and floor); a cluttered scene or two
legs defeat it, which is what the learned segmenter (:mod:`smi_image.learned`) is for.
"""

from __future__ import annotations

import numpy as np

from .settings import SilhouetteSettings


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


def _without(fg: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    if exclude is not None:
        fg[exclude] = 0
    return fg


def classical_leg_mask(small: np.ndarray, settings: SilhouetteSettings, exclude: np.ndarray | None = None,
                       *, dist: np.ndarray | None = None) -> tuple[np.ndarray, str, tuple, list]:
    """The leg in a working-resolution uint8 photo by steps 1-5 of the module docstring.

    Parameters
    ----------
    small : ndarray, (h, w) or (h, w, 3) uint8
        The photo at working resolution.
    settings : SilhouetteSettings
    exclude : ndarray of bool, (h, w), optional
        Pixels that are not leg (the marker card), True there.
    dist : ndarray, (h, w) float32, optional, keyword-only
        ``background_distance(small, exclude)`` when the caller has it already (not modified).

    Returns
    -------
    (leg, method, thresholds, notes)
        The leg (bool, (h, w)), ``'canny'`` or ``'otsu'``, Canny's ``(low, high)`` and
        notes on fallbacks taken.

    Raises
    ------
    SegmentationError
        No leg-shaped region.
    """
    import cv2

    from .errors import SegmentationError

    s = settings
    notes: list[str] = []
    if dist is None:
        dist = background_distance(small, None if exclude is None else exclude.astype(np.uint8))
    # Canny on the background distance: a leg that matches the wall in brightness on
    # its lit side still differs from it in colour. Optionally also on the photo itself.
    d8 = cv2.convertScaleAbs(dist, alpha=s.distance_gain)
    edges, thresholds = canny_edges(d8, s)
    if s.canny_on_photo:
        photo_edges, _ = canny_edges(small, s)
        edges = cv2.bitwise_or(edges, photo_edges)
    edges = drop_short_edges(edges, s.min_edge_px)
    leg = pick_leg(_without(fill_from_edges(edges, s.close_px), exclude), s)
    method = "canny"
    colour = None
    if s.fallback:
        # Cheap screen first: the colour region cannot be larger than all pixels above
        # Otsu's threshold; only when that could exceed the Canny region is it made.
        blurred = cv2.GaussianBlur(d8, (0, 0), 1.0)
        t_otsu, _ = cv2.threshold(blurred, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        n_above = int(np.count_nonzero(_without((blurred > t_otsu).astype(np.uint8), exclude)))
        if leg is None or leg.sum() < s.min_canny_share * n_above:
            colour = pick_leg(_without(otsu_foreground(d8), exclude), s)
    if leg is not None and colour is not None and leg.sum() < s.min_canny_share * colour.sum():
        # The outline leaked: part of the leg fell to the background through a gap.
        notes.append("the Canny outline leaked (it covers much less than the leg's colour region); "
                     "used the Otsu colour-distance fallback")
        leg, method = colour, "otsu"
    if leg is None:
        if not s.fallback:
            raise SegmentationError("no closed leg-shaped outline in the Canny edges (fallback switched off)")
        notes.append("Canny edges did not close around a leg; used the Otsu colour-distance fallback")
        leg = colour
        method = "otsu"
        if leg is None:
            raise SegmentationError(
                f"no leg-shaped region: nothing spans {s.min_height_frac:.0%} of the image height and "
                f"{s.min_area_frac:.0%} of its area (checked Canny edges and the Otsu fallback); "
                "photograph the lower leg from knee to foot against a plain background"
            )
    return leg, method, thresholds, notes
