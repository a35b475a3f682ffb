"""From the leg's mask to the upright silhouette, measured row by row at sub-pixel precision.

1. **Find the leg** (:func:`smi_image.segment.segment_leg`): learned or classical, on a
   copy shrunk to ``work_px`` on its longest side (the marker card left out).
2. **Upright.** The leg's axis is the straight line fitted through the mid-points of
   the rows of the shank (the upper ``axis_band`` of the mask), or through the rows
   just below the knee and above the ankle when the joints' heights are known; the
   mask is rotated about its centroid so the axis is vertical. Photos are assumed
   upright within ``max_roll_deg`` (knee up, foot down); a larger tilt is refused, not
   guessed. The working mask is scaled up and rotated to the photo's size in one warp.
3. **Sub-pixel edges** (:func:`refine_edges`): every row's left and right edge is
   placed on the full-resolution photo from its grey levels around the mask's edge,
   so widths keep full-resolution precision whatever the working resolution.

Canny serves here only inside the classical finder; the CNN's Canny input mode is drawn
by :mod:`smi_deep.preprocess` on its crop.

The result is a :class:`Silhouette` with the upright mask, the left and right edge of
every row, and the affine transform back to the photo's pixel coordinates (for drawing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import SegmentationError
from .pixels import to_uint8
from .segment import LegSegmentation
from .settings import SilhouetteSettings

#: The features family's name for the image layer's error.
SilhouetteError = SegmentationError


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
    return _at_least_128(rot), fwd, inv


def _warp_mask(mask: np.ndarray, affine: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask carried by a 2x3 ``affine`` (source to output px) onto an output of ``shape``, bilinear, halfway.

    Only the box around where the mask lands is warped (the rest of the output is empty): the leg
    covers a third of a photo, so this does a third of the work of warping the whole frame.
    """
    import cv2

    h, w = shape
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    out = np.zeros((h, w), bool)
    if ys.size == 0:
        return out
    corners = np.array([[xs[0] - 1, ys[0] - 1], [xs[-1] + 1, ys[0] - 1], [xs[0] - 1, ys[-1] + 1],
                        [xs[-1] + 1, ys[-1] + 1]], float)
    land = corners @ affine[:, :2].T + affine[:, 2]
    x0, y0 = (max(0, int(np.floor(v)) - 2) for v in land.min(axis=0))
    x1, y1 = (min(n, int(np.ceil(v)) + 3) for v, n in zip(land.max(axis=0), (w, h)))
    if x1 <= x0 or y1 <= y0:
        return out
    shifted = affine - np.array([[0.0, 0.0, x0], [0.0, 0.0, y0]])
    out[y0:y1, x0:x1] = _at_least_128(cv2.warpAffine(mask.astype(np.uint8) * 255, shifted, (x1 - x0, y1 - y0),
                                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                                     borderValue=0))
    return out


def _at_least_128(u8: np.ndarray) -> np.ndarray:
    """``u8 >= 128`` (bool) by OpenCV's threshold, several times faster on a full photo."""
    import cv2

    return cv2.threshold(u8, 127, 1, cv2.THRESH_BINARY)[1].view(bool)


def leg_silhouette(
    image: np.ndarray,
    *,
    settings: SilhouetteSettings | None = None,
    exclude_polygons: list | None = None,
    joint_heights_px: tuple | None = None,
    view: str | None = None,
    side: str | None = None,
    segmentation: LegSegmentation | None = None,
) -> Silhouette:
    """Find the lower leg in a photo (:func:`smi_image.segment.segment_leg`) and return it upright.

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
        person's height, :mod:`smi_features.features.base`). When given, the leg's axis is
        the line through the silhouette's mid-points just below the knee and just above
        the ankle (:func:`joint_axis_angle_deg`), which follows the knee-to-ankle axis; the
        calf's bulge does not pull it as it pulls a fit through every row.
    view, side : str, keyword-only
        Passed to :func:`~smi_image.segment.segment_leg` (which leg of two).
    segmentation : LegSegmentation, keyword-only
        A segmentation already made for this photo (then ``exclude_polygons``, ``view``
        and ``side`` are not used).

    Returns
    -------
    Silhouette

    Raises
    ------
    SilhouetteError
        No leg found, or the leg tilts more than ``settings.max_roll_deg``.
    """
    from .segment import segment_leg

    s = settings or SilhouetteSettings()
    img = to_uint8(image)
    seg = segmentation if segmentation is not None else segment_leg(
        img, settings=s, exclude_polygons=exclude_polygons, view=view, side=side)
    return upright_silhouette(img, seg, settings=s, joint_heights_px=joint_heights_px)


def upright_silhouette(img: np.ndarray, seg: LegSegmentation, *, settings: SilhouetteSettings | None = None,
                       joint_heights_px: tuple | None = None) -> Silhouette:
    """Steps 2-3 of the module docstring: tilt, upright full-resolution mask, sub-pixel row edges.

    ``img`` is the uint8 photo ``seg`` was found in; see :func:`leg_silhouette`.
    """
    import cv2

    s = settings or SilhouetteSettings()
    h, w = img.shape[:2]
    leg, fx, fy = seg.work, seg.fx, seg.fy
    method, thresholds, notes = seg.method, seg.thresholds, list(seg.notes)

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
            "photograph the leg upright, knee at the top and foot at the bottom", code="tilted"
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
            "photograph the leg upright, knee at the top and foot at the bottom", code="tilted"
        )
    # Working mask -> upright full-resolution mask in one warp: scale up, then rotate
    # about the leg's centroid (in full-resolution pixel-centre coordinates).
    up = np.array([[1 / fx, 0.0, 0.5 / fx - 0.5], [0.0, 1 / fy, 0.5 / fy - 0.5], [0.0, 0.0, 1.0]])
    mom = cv2.moments(leg.astype(np.uint8), binaryImage=True)
    centre = ((mom["m10"] / mom["m00"] + 0.5) / fx - 0.5, (mom["m01"] / mom["m00"] + 0.5) / fy - 0.5)
    rotate = cv2.getRotationMatrix2D(centre, angle if abs(angle) >= 0.25 else 0.0, 1.0)
    to_upright = rotate @ up
    full = _warp_mask(leg, to_upright, (h, w))
    if s.check_upright:
        from .orientation import load_orientation, upside_down_probability

        rule = load_orientation()
        p_turned = upside_down_probability(full, rule)
        if p_turned > rule["refuse_above"]:
            raise SilhouetteError(
                f"the photo looks upside down (the foot at the top: P = {p_turned:.3f}); turn it the right way up "
                "(knee at the top, foot at the bottom) and measure it again", code="upside_down")
    rotated = abs(angle) >= 0.25
    if not rotated:
        angle = 0.0
    to_image = cv2.invertAffineTransform(rotate)
    left, right = row_extents(full)
    left_sub, right_sub = photo_edges(img, seg, left, right, s, to_image if rotated else None)
    return Silhouette(mask=full, left=left_sub, right=right_sub, method=method, roll_deg=float(angle),
                      to_image=to_image, canny_thresholds=thresholds, notes=notes)


def photo_edges(img: np.ndarray, seg: LegSegmentation, left: np.ndarray, right: np.ndarray,
                s: SilhouetteSettings, to_image: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel left and right edge of every row, placed on the full-resolution photo.

    ``left``, ``right``: integer columns of the mask scaled up to the photo (NaN for empty
    rows). For a learned mask whose network pixel is more than 2 photo px, each edge first
    moves to the photo's strongest colour step within 1.5 network px (:func:`snap_edges`);
    then :func:`refine_edges`, its window covering the coarse pixel, places it.
    """
    coarse = seg.coarse_px if np.isfinite(seg.coarse_px) else 1.0 / min(seg.fx, seg.fy)
    if seg.method == "learned" and s.refine_px > 0 and coarse > 2:
        # The network's pixel is several photo px: move each row's edge to the photo's own edge first.
        left, right = snap_edges(img, left, right, int(np.ceil(1.5 * coarse)), to_image)
    k = max(s.refine_px, int(np.ceil(0.5 * coarse)) + 2) if s.refine_px > 0 else 0
    if k:
        return refine_edges(img, left, right, k, to_image)
    return left - 0.5, right + 0.5


def edge_refined_mask(img: np.ndarray, seg: LegSegmentation, *, settings: SilhouetteSettings | None = None,
                      coverage: bool = False) -> np.ndarray:
    """The leg at the photo's size (bool) with every row's outer edges on the photo's own edges.

    The mask scaled up from the working resolution (:meth:`LegSegmentation.full_mask`) keeps
    the network's coarse outline; here each row's leftmost and rightmost leg pixel are moved
    to the edges :func:`photo_edges` places (the same as the features measure, without
    turning the leg upright): a pixel whose centre lies between them is leg, and the rest of
    the row (a row with two runs, such as heel and toes) keeps the coarse mask inside them.
    With ``coverage``: float32 in [0, 1], each pixel that an outer edge crosses carrying the
    share of it that lies between the edges (sub-pixel width survives resampling).
    """
    s = settings or SilhouetteSettings()
    img = to_uint8(img)
    mask = seg.full_mask()
    left, right = row_extents(mask)
    left_sub, right_sub = photo_edges(img, seg, left, right, s)
    rows = np.isfinite(left) & np.isfinite(left_sub) & np.isfinite(right_sub) & (right_sub > left_sub)
    xs = np.arange(mask.shape[1])[None, :]
    lo = np.where(rows, left_sub, -1.0)[:, None]
    hi = np.where(rows, right_sub, -2.0)[:, None]
    inside = (xs >= lo) & (xs <= hi)
    coarse_span = (xs >= np.nan_to_num(left, nan=0)[:, None]) & (xs <= np.nan_to_num(right, nan=-1)[:, None])
    out = (mask | (inside & ~coarse_span)) & inside
    out[~rows] = mask[~rows]
    if not coverage:
        return out
    share = np.clip(np.minimum(xs + 0.5, hi) - np.maximum(xs - 0.5, lo), 0.0, 1.0)
    border = rows[:, None] & (share > 0) & (share < 1)
    return np.where(border, share, out).astype(np.float32)


def _gather(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, to_image: np.ndarray | None,
            dtype=np.float32) -> np.ndarray:
    """Pixels at upright-frame (row, col) positions: direct, or bilinear through ``to_image``.

    ``(n, m, C)`` of ``dtype``. A uint8 photo gives whole numbers either way (OpenCV rounds its
    bilinear samples to uint8), so sums and differences of them are exact in any order.
    """
    import cv2

    h, w = img.shape[:2]
    if to_image is None:
        r = np.broadcast_to(rows, cols.shape)
        out = img[r, np.clip(cols, 0, w - 1)].astype(dtype)
        return out if out.ndim == 3 else out[..., None]
    y = np.broadcast_to(rows, cols.shape).astype(np.float32)
    x = cols.astype(np.float32)
    a = to_image.astype(np.float32)
    mx = a[0, 0] * x + a[0, 1] * y + a[0, 2]
    my = a[1, 0] * x + a[1, 1] * y + a[1, 2]
    out = cv2.remap(img.astype(np.float32) if img.dtype != np.uint8 else img, mx, my,
                    interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = out.astype(dtype)
    return out if out.ndim == 3 else out[..., None]


def _channel_sum(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=-1)`` over a short last axis (colour channels), one channel at a time."""
    out = a[..., 0].copy()
    for c in range(1, a.shape[-1]):
        out += a[..., c]
    return out


#: Rows over which the snapped edge offsets are median-filtered (an edge is smooth along the leg).
SNAP_SMOOTH_ROWS = 9


def snap_edges(img: np.ndarray, left: np.ndarray, right: np.ndarray, m: int,
               to_image: np.ndarray | None = None, *, inward_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Each row's left and right edge moved to the photo's strongest colour step within ``m`` px.

    A coarse mask scaled up from the network's resolution can be a few of its pixels off the
    photo's edge; :func:`refine_edges` only corrects within its small window. Along each row the
    step ``|sum of the 2 px beyond x - sum of the 2 px before x|`` (colour, over channels) is
    weighted by ``1 - 0.5 |x - edge| / m`` (the coarse edge stays likelier), its best position
    taken, and the new edges median-filtered over :data:`SNAP_SMOOTH_ROWS` rows so that a row
    caught by a shadow or texture follows its neighbours. Returns integer columns (NaN kept).
    With ``inward_only`` the outer half of each window is left out, so no edge moves outward (an
    experiment for side views, where the strongest step beyond the near leg can be the far leg's
    edge; not used by the pipeline: docs/segmentation.md, "Session 9").
    """
    from scipy.ndimage import median_filter

    h, w = img.shape[:2]
    rows = np.flatnonzero(np.isfinite(left) & (right - left >= 2 * m + 6))
    if rows.size == 0 or m < 1:
        return left, right
    n = rows.size
    offs = np.arange(-m - 2, m + 3)
    prior = 1.0 - 0.5 * np.abs(np.arange(-m, m + 1)) / m
    # Both sides in one gather: the rows' left edges, then their right edges. A uint8 photo gives
    # whole-number samples, so the steps below are exact integers (int32) before the square root.
    col = np.concatenate([left[rows], right[rows]]).astype(int)[:, None] + offs[None, :]
    ok = (col.min(axis=1) >= 0) & (col.max(axis=1) < w)
    exact = img.dtype == np.uint8
    v = _gather(img, np.concatenate([rows, rows])[:, None], np.clip(col, 0, w - 1), to_image,
                np.int32 if exact else np.float64)  # (2n, 2m+5, C)
    pair = v[:, :-1] + v[:, 1:]
    # step at window index j (offset -m..m): pixels j+3, j+4 minus j, j+1 of the padded profile
    d = pair[:, 3:] - pair[:, :-3]
    sq = _channel_sum(d * d)
    step = np.sqrt(sq.astype(np.float32) if exact else sq) * prior[None, :]
    if inward_only:
        j = np.arange(-m, m + 1)
        step[:n, j < 0] = -1  # a left edge does not move left
        step[n:, j > 0] = -1  # a right edge does not move right
    best = np.where(ok, np.argmax(step, axis=1) - m, 0)
    out = []
    for k, edge in enumerate((left, right)):
        new = edge.copy()
        new[rows] = median_filter(edge[rows] + best[k * n:(k + 1) * n], size=SNAP_SMOOTH_ROWS, mode="nearest")
        out.append(new)
    return out[0], out[1]


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
    # <p - out, d> channel by channel (for a uint8 photo every term is a multiple of 1/4, so exact)
    dot = (p[..., 0] - out_v[:, None, 0]) * d[:, None, 0]
    for c in range(1, p.shape[2]):
        dot += (p[..., c] - out_v[:, None, c]) * d[:, None, c]
    alpha = dot / np.maximum(dd, 1e-12)[:, None]
    alpha = np.clip(alpha, 0.0, 1.0).sum(axis=1)
    n = len(rows)
    a_l, a_r, ok_l, ok_r = alpha[:n], alpha[n:], ok[:n], ok[n:]
    # Left edge: window lc-k..lc+k, leg to the right: e = (lc + k + 0.5) - sum(alpha).
    left_e[rows[ok_l]] = (lc + k + 0.5 - a_l)[ok_l]
    # Right edge: window rc-k..rc+k, leg to the left: e = (rc - k - 0.5) + sum(alpha).
    right_e[rows[ok_r]] = (rc - k - 0.5 + a_r)[ok_r]
    return left_e, right_e
