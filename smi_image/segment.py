"""The one photo → leg-mask function under both model families: :func:`segment_leg`.

Two segmenters behind one signature:

* ``'learned'``: the small U-Net shipped in this package (:mod:`smi_image.learned`),
  trained on randomised synthetic scenes; it finds both legs, splits them, and the
  side rule picks the photographed one (:func:`smi_image.learned.pick_instance`).
* ``'classical'``: background model + Canny + fill (:mod:`smi_image.classical`); it
  assumes one leg on a plain wall and floor (the studio look).

``'auto'`` (the default): the learned one when its weights are present. On a studio-like
photo (one plain background, :func:`plain_background`) where the learned one sees a single
leg (or none), the classical finder's mask is taken instead, which is exact on that look
(the studio cohort, drawn test photos), if it is leg-shaped, inside the frame and follows
the learned leg's outline (:func:`classical_agrees`: above the foot no more than a few
row sides reach more than :data:`AGREE_PX` px outside it, and no floor below its sole);
where it reaches out (a skirting strip, floor, the far leg behind in a side view, which
the classical finder takes with the near one) the learned mask stays. The outline test
applies only where the learned mask is itself leg-shaped: where it is not (it would be
refused as "no leg found"), the classical mask is taken. Where the learned
one sees two legs (both in frame, or one behind the other in a side view) the classical
finder, which takes every foreground region, is not used. Without weights
``'auto'`` is the classical one. Whatever the method, a region
that is not leg-shaped (:func:`leg_shaped`) is "no leg found". Both return the leg at a
working resolution (``work_px`` on the longest side); the upright, sub-pixel silhouette
(:func:`smi_image.silhouette.upright_silhouette`) finds every row's edges on the
full-resolution photo from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import SegmentationError
from .marker import exclusion_mask
from .pixels import to_uint8
from .settings import SilhouetteSettings

METHODS = ("auto", "learned", "classical")
#: A leg is at least this many times as long as its widest row above the foot: the classical
#: mask (the leg below the photo's top edge) and the learned one (the skin from the hem to the
#: sole, so longer; a mask wrapping both legs is shorter than this).
MIN_LEG_ASPECT = 2.0
MIN_LEG_ASPECT_LEARNED = 2.5
#: Plain background: the 90th percentile of the border strips' colour distance from their own
#: row model stays under this (CIELAB units).
PLAIN_BACKGROUND_DE = 6.0
#: The classical mask is taken instead of the learned one only where it follows the learned outline
#: (:func:`outline_excess`): in the rows ``AGREE_BAND`` of the learned mask (fractions from its top: above
#: the foot), at most ``AGREE_SHARE`` of the row sides may have the classical edge more than ``AGREE_PX``
#: working px (of 256 on the photo's long side) outside the learned one, and its sole may reach at most
#: ``AGREE_PX`` rows below. Chosen on fresh renders, never on the bundled cohorts (docs/segmentation.md,
#: "The classical finder only where it follows the learned outline").
AGREE_PX = 6
AGREE_SHARE = 0.01
AGREE_BAND = (0.1, 0.8)


@dataclass
class LegSegmentation:
    """The photographed leg found in one photo.

    Attributes
    ----------
    work : ndarray of bool, (h, w)
        The leg at working resolution.
    photo_shape : (int, int)
        The photo's (H, W), px.
    method : str
        ``'learned'``, ``'canny'`` or ``'otsu'``.
    thresholds : (float, float)
        Canny's thresholds (classical method), else NaN.
    confidence : float
        Learned method: mean certainty ``|2 p - 1|`` of the leg probability on the
        outline's band (1: sure everywhere); NaN for the classical method.
    n_legs : int
        Leg instances found (learned method; 1 for the classical one).
    notes : list of str
        Fallbacks and warnings.
    coarse_px : float
        Size of the pixel the mask was found at, in photo px (NaN: the working
        resolution's); the sub-pixel refinement's window covers it.
    work_image : ndarray or None
        The photo at working resolution (what the quality gate looks at).
    """

    work: np.ndarray
    photo_shape: tuple
    method: str
    thresholds: tuple = (np.nan, np.nan)
    confidence: float = np.nan
    n_legs: int = 1
    notes: list = field(default_factory=list)
    coarse_px: float = np.nan
    work_image: np.ndarray | None = None

    @property
    def fx(self) -> float:
        return self.work.shape[1] / self.photo_shape[1]

    @property
    def fy(self) -> float:
        return self.work.shape[0] / self.photo_shape[0]

    def full_mask(self) -> np.ndarray:
        """The leg at the photo's size (bool), the working mask scaled up (bilinear, halfway)."""
        import cv2

        h, w = self.photo_shape
        if self.work.shape == (h, w):
            return self.work.copy()
        up = cv2.resize(self.work.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR)
        return up >= 128


def working_image(img: np.ndarray, work_px: int) -> tuple[np.ndarray, float, float]:
    """The photo shrunk (area averaging) to ``work_px`` on its longest side; returns (small, fx, fy)."""
    import cv2

    h, w = img.shape[:2]
    f = work_px / max(h, w) if work_px else 1.0
    if f < 0.8:
        hs, ws = max(16, int(round(h * f))), max(16, int(round(w * f)))
        small = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA)
    else:
        small, hs, ws = img, h, w
    return small, ws / w, hs / h


def resolve_method(method: str | None) -> str:
    """``'auto'`` to ``'learned'`` when the shipped weights exist, else ``'classical'``."""
    m = method or "auto"
    if m not in METHODS:
        raise ValueError(f"segmenter must be one of {', '.join(METHODS)}, got {m!r}")
    if m == "auto":
        from .learned import weights_available

        return "learned" if weights_available() else "classical"
    return m


def segment_leg(image: np.ndarray, *, settings: SilhouetteSettings | None = None, exclude_polygons=None,
                method: str | None = None, view: str | None = None, side: str | None = None) -> LegSegmentation:
    """Find the photographed lower leg (knee down, foot included) in a photo.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        BGR or grey photo; uint8, uint16 or float in [0, 1].
    settings : SilhouetteSettings, keyword-only
        ``work_px`` and the classical method's options; ``segmenter`` picks the method.
    exclude_polygons : list of (N, 2) arrays, keyword-only
        Regions that are not leg (the ArUco marker's corners), x, y in photo px.
    method : {'auto', 'learned', 'classical'}, keyword-only
        Overrides ``settings.segmenter``.
    view : {'lateral', 'posterior'}, keyword-only
    side : {'L', 'R'}, keyword-only
        Which leg was photographed (the manifest's ``side``); with ``view='posterior'``
        it picks the leg (the subject's left leg is on the image's left). Without it the
        leg nearest the image centre is taken.

    Returns
    -------
    LegSegmentation

    Raises
    ------
    SegmentationError
        The leg cannot be found (``code``: ``no_leg``, ``legs_merged``, ``unsure``).
    """
    s = settings or SilhouetteSettings()
    img = to_uint8(image)
    requested = method or s.segmenter
    if resolve_method(requested) == "learned":
        c = auto_candidates(img, s, exclude_polygons=exclude_polygons, view=view, side=side,
                            with_classical=requested == "auto")
        seg = c.learned
        if c.plain is not None and (seg is None or leg_aspect(seg.work) < MIN_LEG_ASPECT_LEARNED
                                    or classical_agrees(c.plain.work, seg.work)):
            seg = c.plain  # else it took in more than the learned leg: floor, skirting, the far leg
        if seg is None:
            # a plain photo with nothing on it: "no leg" (the classical finder's), not "unsure"
            raise c.plain_error if c.plain_error is not None and c.learned is None else c.learned_error
        small = c.small
    else:
        small, fx, fy = working_image(img, s.work_px)
        seg = _classical(img, small, s, exclusion_mask(small.shape, exclude_polygons, fx, fy))
    seg.work_image = small
    aspect = leg_aspect(seg.work)
    need = MIN_LEG_ASPECT_LEARNED if seg.method == "learned" else MIN_LEG_ASPECT
    if aspect < need:
        raise SegmentationError(f"no leg found: the region found is {aspect:.1f} times as long as wide, not "
                                f"leg-shaped (a lower leg is at least {need:g}); photograph the lower "
                                "leg from above the knee to the floor", code="no_leg")
    return seg


@dataclass
class AutoCandidates:
    """What the ``auto`` rule chooses between, for one photo (:func:`auto_candidates`).

    ``small``: the working copy; ``exclude``: the marker's pixels there (or None); ``learned``:
    the learned finder's segmentation, or None with ``learned_error``; ``plain``: the classical
    finder's whole, in-frame, leg-shaped leg on a plain-background photo where the learned one
    sees at most one leg, or None (with ``plain_error`` when the classical finder found nothing).
    """

    small: np.ndarray
    exclude: np.ndarray | None
    learned: LegSegmentation | None
    learned_error: SegmentationError | None
    plain: LegSegmentation | None = None
    plain_error: SegmentationError | None = None


def auto_candidates(img: np.ndarray, settings: SilhouetteSettings | None = None, *, exclude_polygons=None,
                    view: str | None = None, side: str | None = None, with_classical: bool = True) -> AutoCandidates:
    """The learned segmentation and, where the ``auto`` rule would consider it, the classical one.

    ``img``: uint8 photo (:func:`smi_image.pixels.to_uint8`). The classical finder runs only with
    ``with_classical``, on a plain-background photo (:func:`plain_background`) where the learned
    finder saw at most one leg; :func:`segment_leg` then takes it where it follows the learned
    outline (:func:`classical_agrees`). Analysis scripts call this to see both masks.
    """
    from .learned import learned_leg_mask

    s = settings or SilhouetteSettings()
    small, fx, fy = working_image(img, s.work_px)
    exclude = exclusion_mask(small.shape, exclude_polygons, fx, fy)
    c = AutoCandidates(small=small, exclude=exclude, learned=None, learned_error=None)
    try:
        c.learned = learned_leg_mask(img, small.shape[:2], exclude=exclude, view=view, side=side, work_image=small)
    except SegmentationError as exc:
        c.learned_error = exc
    if with_classical and (c.learned is None or c.learned.n_legs == 1):
        from .classical import background_distance

        dist = background_distance(small, None if exclude is None else exclude.astype(np.uint8))
        if plain_background(small, exclude, dist=dist):
            try:
                c.plain = _plain_classical(img, small, s, exclude, dist)
            except SegmentationError as exc:
                c.plain_error = exc
    return c


def _plain_classical(img, small, s, exclude, dist=None) -> LegSegmentation | None:
    """The classical mask of a plain-background photo if it is a whole leg inside the frame, else None."""
    from .quality import protocol_problems

    seg = _classical(img, small, s, exclude, dist)
    if leg_aspect(seg.work) < MIN_LEG_ASPECT or protocol_problems(seg.work):
        return None
    seg.notes.append("plain background: used the classical finder")
    return seg


def _classical(img, small, s, exclude, dist=None) -> LegSegmentation:
    from .classical import classical_leg_mask

    leg, how, thresholds, notes = classical_leg_mask(small, s, exclude, dist=dist)
    return LegSegmentation(work=leg, photo_shape=img.shape[:2], method=how, thresholds=thresholds, notes=notes)


def classical_agrees(classical: np.ndarray, learned: np.ndarray) -> bool:
    """True if the classical mask follows the learned one's outline (see :func:`outline_excess`)."""
    share, below = outline_excess(classical, learned)
    return share <= AGREE_SHARE and below <= AGREE_PX


def outline_excess(classical: np.ndarray, learned: np.ndarray, *, margin_px: int | None = None) -> tuple[float, int]:
    """Where the classical mask reaches beyond the learned one: (share of row sides, rows below the sole).

    In every row of the learned mask's :data:`AGREE_BAND` (below the hem or the photo's top, above the
    foot), the classical mask's runs that overlap the learned row's span give its left and
    right edge there; a side counts when that edge lies more than ``margin_px`` (default
    :data:`AGREE_PX`) working px outside the learned one's, or when no classical run
    overlaps the learned row. Runs that do not touch the learned leg (the far foot, a
    distractor) are left out of the first value. The second is how many rows any classical
    pixel lies below the learned sole (floor taken in, whether joined to the leg or not: the
    classical finder's mask is one region, so a piece down there is part of what it measured).
    Both masks (h, w) of the same shape, at working resolution; any dtype, nonzero is True.
    """
    classical, learned = np.asarray(classical) != 0, np.asarray(learned) != 0
    if classical.shape != learned.shape or classical.ndim != 2:
        raise ValueError(f"outline_excess needs two 2-D masks of the same shape, got {classical.shape} "
                         f"and {learned.shape}")
    m = AGREE_PX if margin_px is None else margin_px
    w = learned.shape[1]
    rows = np.flatnonzero(learned.any(axis=1))
    if rows.size == 0:
        return 0.0, 0
    c_rows = np.flatnonzero(classical.any(axis=1))
    below = int(max(0, c_rows[-1] - rows[-1])) if c_rows.size else 0
    n = rows[-1] - rows[0] + 1
    band = np.arange(rows[0] + int(AGREE_BAND[0] * n), rows[0] + int(AGREE_BAND[1] * n))
    L = learned[band]
    band, L = band[L.any(axis=1)], L[L.any(axis=1)]
    if band.size == 0:
        return 0.0, below
    lo = L.argmax(axis=1)
    hi = w - 1 - L[:, ::-1].argmax(axis=1)
    C = classical[band]
    # Each row's classical runs numbered from 1; a run is kept when one of its pixels lies in [lo, hi].
    starts = C & ~np.concatenate([np.zeros((C.shape[0], 1), bool), C[:, :-1]], axis=1)
    run = np.cumsum(starts, axis=1) * C
    cols = np.arange(w)[None, :]
    span = (cols >= lo[:, None]) & (cols <= hi[:, None]) & C
    touching = np.zeros((C.shape[0], w + 1), bool)
    r_idx, c_idx = np.nonzero(span)
    touching[r_idx, run[r_idx, c_idx]] = True
    touching[:, 0] = False
    keep = np.take_along_axis(touching, run, axis=1)
    has = keep.any(axis=1)
    c_lo = np.where(has, keep.argmax(axis=1), -1)
    c_hi = np.where(has, w - 1 - keep[:, ::-1].argmax(axis=1), -1)
    out_left = ~has | (lo - c_lo > m)
    out_right = ~has | (c_hi - hi > m)
    return float((out_left.sum() + out_right.sum()) / (2 * band.size)), below


def leg_aspect(mask: np.ndarray) -> float:
    """Rows spanned by the mask over its widest row in the upper 70 % (above the foot)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0.0
    widths = mask[rows].sum(axis=1)[: max(1, int(0.7 * rows.size))]
    return rows.size / max(1.0, float(widths.max()))


def plain_background(small: np.ndarray, exclude: np.ndarray | None = None, *, dist: np.ndarray | None = None) -> bool:
    """True for a studio-like photo: the left and right border strips follow one smooth background.

    The classical background model (:func:`smi_image.classical.background_distance`) is
    built from those strips; on a plain wall and floor their own pixels stay within
    :data:`PLAIN_BACKGROUND_DE` of it (noise, texture, clutter and people do not).
    ``dist``: that model's distance map when the caller has made it already.
    """
    from .classical import background_distance

    d = dist if dist is not None else background_distance(small, None if exclude is None else exclude.astype(np.uint8))
    k = max(2, int(round(0.04 * d.shape[1])))
    strips = np.concatenate([d[:, :k].ravel(), d[:, -k:].ravel()])
    return float(np.percentile(strips, 90)) < PLAIN_BACKGROUND_DE
