"""Photo → network input: find the leg, crop to it, grey, Canny edges (and the other input modes).

The study's pipeline is "photo → crop to the leg → grey → Canny edge image → CNN"
(Hashida et al. 2026). Its details are not published; this module is our reading of it,
split in two stages so that augmentation can act on the photo *before* the edges are
drawn (rotating an edge map would blur its one-pixel lines):

1. :func:`prepare_crop` (decoded once, cached): read the photo, paint the ArUco marker
   out, segment the leg, crop a square around it and resize it to ``size`` px.
   Returns the crop (BGR, uint8) and the leg mask (uint8, 0/255).
2. :func:`make_channels` (every epoch, after augmentation): the input channels of one
   view for the chosen mode.

Our reading of the study, choice by choice
------------------------------------------
- **Leg segmentation**: the image layer's one segmentation,
  :func:`smi_image.segment.segment_leg` (the same the features family measures; learned
  when its weights ship), with the ArUco marker (if detected) kept out of the leg; the
  marker is then painted over with the colour around it, quiet zone included
  (:func:`smi_image.marker.paint_out_marker`), so it cannot appear in the crop. A photo
  without a findable leg is a failure with the segmentation's reason.
- **Crop**, two readings. ``crop='leg'`` (the study's literal words): the leg's bounding box plus a
  margin of ``margin`` (default 5 %) of its longer side on every side, made square
  around its centre (the lower leg is tall and narrow, so the square is as tall as the
  leg and padded left and right), padded by replicating the photo's edge where it
  leaves the photo, then resized to ``size`` × ``size`` with area interpolation. A square keeps
  the aspect ratio, so the calf's width *relative to the leg's length* is kept, but the
  absolute size is not: a tall thin-calved and a short thick-calved leg can give the
  same crop. The study's photos were presumably taken at a fixed distance, where pixel
  size itself carries absolute size; ``crop='scale'`` (the estimator's default) keeps
  it with photos taken at any distance: a fixed ``window_cm`` (60 cm) square standing
  on the sole and centred on the leg, at the marker's (else the manifest's) pixels per
  cm. (:class:`CropSettings` itself defaults to ``'leg'``, which needs no scale.)
- **Grey**: OpenCV's BGR → grey (ITU-R BT.601 weights).
- **Canny**: on the resized grey crop (so edges are one pixel wide at the network's
  resolution), after a Gaussian blur of ``canny_sigma`` = 1.0 px, on OpenCV's L2 Sobel
  gradient of the uint8 image (aperture 3; uint8 in, 0/1 out, every option explicit, so
  no dtype ambiguity). Hysteresis thresholds are set per image: high = Otsu's
  threshold of the gradient magnitude (floored at 12), low = high / 2; fixed
  thresholds can be given instead.
- **Background**: ``fill_background=True`` (the estimator's default) replaces
  everything outside the dilated leg mask by the crop's border colour, so Canny draws
  the leg's outline and inner edges, not the wall's corners or the floor line;
  ``False`` keeps the crop as photographed.

Input modes (channels per view, values in [0, 1] before normalisation)
----------------------------------------------------------------------
``canny`` 1 (edges, the study) · ``grey`` 1 · ``rgb`` 3 (R, G, B) · ``mask`` 1 (the
silhouette) · ``canny+grey`` 2. For ``view='both'`` the two views' channels are stacked
(lateral first), so the network sees 2 × that many channels.

Cache
-----
:func:`cached_crop` keeps prepared crops in a module-level LRU (per process, in memory,
:data:`CACHE_ITEMS` entries, default 1024, about 200 kB each at 224 px; set
``LEGSMI_DEEP_CACHE_ITEMS`` to change it) keyed by the image's absolute path, its
modification time and size, and the crop settings. A five-fold cross-validation thus
decodes each image once; a changed file is read again. Failures are cached too.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from smi_data.errors import LegsmiError

INPUT_MODES = ("canny", "grey", "rgb", "mask", "canny+grey")
CROP_MODES = ("leg", "scale")
#: Where the crop's mask takes its outline from (:attr:`CropSettings.outline`).
OUTLINES = ("coarse", "photo")
#: Channels each input mode gives per view.
MODE_CHANNELS = {"canny": 1, "grey": 1, "rgb": 3, "mask": 1, "canny+grey": 2}
CACHE_ITEMS = int(os.environ.get("LEGSMI_DEEP_CACHE_ITEMS", "1024"))


class PreprocessError(LegsmiError, ValueError):
    """A photo from which no network input can be made (unreadable, no leg found)."""


@dataclass(frozen=True)
class CropSettings:
    """Settings of the cached stage (:func:`prepare_crop`); part of the cache key and of model.json.

    Attributes
    ----------
    size : int
        Side of the square crop, px.
    crop : {'leg', 'scale'}
        ``'leg'``: a square around the leg's bounding box (plus ``margin``), so the leg
        fills the crop whatever its size: the literal reading of the study, which
        keeps proportions but not absolute size. ``'scale'``: a square of ``window_cm``
        centimetres standing on the sole (:func:`scaled_box`), at the photo's pixels per cm
        (the ArUco marker, else the sample table's ``px_per_cm``), so one input pixel is
        always ``window_cm / size`` cm and the calf's absolute width survives. A photo
        without a scale fails, unless ``allow_unscaled``.
    margin : float
        ``'leg'`` crop: margin around the leg's bounding box, fraction of its longer side.
    window_cm : float
        ``'scale'`` crop: side of the window, cm (60: a lower leg of a 2 m tall person,
        knee to sole, is about 57 cm with the window standing 5 % below the sole).
    remove_marker : bool
        Paint the ArUco marker over with the background colour before segmenting.
    allow_unscaled : bool
        ``'scale'`` crop of a photo with no marker and no ``px_per_cm``: fall back to the
        ``'leg'`` crop (True) or fail that sample (False, default).
    outline : {'coarse', 'photo'}
        The mask's outline: ``'coarse'`` (default) the segmentation's working-resolution mask
        scaled up to the photo; ``'photo'`` every row's outer edges placed on the photo's own
        edges, as the features measure them (:func:`smi_image.silhouette.edge_refined_mask`).
    soft_mask : bool
        Return the mask resized to ``size`` as leg coverage (0–255, area-averaged, so a border
        pixel carries the share of it the leg covers) instead of thresholding it at half.
    """

    size: int = 224
    crop: str = "leg"
    margin: float = 0.05
    window_cm: float = 60.0
    remove_marker: bool = True
    allow_unscaled: bool = False
    outline: str = "coarse"
    soft_mask: bool = False

    def __post_init__(self):
        if self.outline not in OUTLINES:
            raise ValueError(f"outline must be one of {', '.join(OUTLINES)}, got {self.outline!r}")
        if int(self.size) < 16:
            raise ValueError(f"size must be at least 16 px, got {self.size}")
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {', '.join(CROP_MODES)}, got {self.crop!r}")
        if not 0 <= float(self.margin) < 1:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")
        if not float(self.window_cm) > 0:
            raise ValueError(f"window_cm must be > 0, got {self.window_cm}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ChannelSettings:
    """Settings of the per-epoch stage (:func:`make_channels`).

    Attributes
    ----------
    mode : str
        One of :data:`INPUT_MODES`.
    canny_sigma : float
        Gaussian blur before Canny, px (0 = none).
    canny_low, canny_high : float or None
        Hysteresis thresholds on the L2 Sobel gradient of the uint8 grey image; None
        (default): from the image (:func:`canny_thresholds`).
    canny_min_high : float
        Floor of the automatic high threshold (a flat image draws no edges).
    fill_background : bool
        Replace pixels outside the dilated leg mask by the background colour first.
    """

    mode: str = "canny"
    canny_sigma: float = 1.0
    canny_low: float | None = None
    canny_high: float | None = None
    canny_min_high: float = 12.0
    fill_background: bool = False

    def __post_init__(self):
        if self.mode not in INPUT_MODES:
            raise ValueError(f"input mode must be one of {', '.join(INPUT_MODES)}; got {self.mode!r}")
        if (self.canny_low is None) != (self.canny_high is None):
            raise ValueError("give both canny_low and canny_high, or neither (automatic thresholds)")
        if self.canny_high is not None and not 0 <= self.canny_low <= self.canny_high:
            raise ValueError(f"need 0 <= canny_low <= canny_high, got {self.canny_low}, {self.canny_high}")
        if self.canny_sigma < 0:
            raise ValueError(f"canny_sigma must be >= 0, got {self.canny_sigma}")

    @property
    def n_channels(self) -> int:
        return MODE_CHANNELS[self.mode]

    def to_dict(self) -> dict:
        return asdict(self)


def square_box(mask: np.ndarray, margin: float) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square around the mask's bounding box, grown by ``margin`` of its longer side."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    long_side = max(x1 - x0, y1 - y0)
    side = int(round(long_side * (1 + 2 * margin)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_square(image: np.ndarray, box: tuple[int, int, int], fill=None) -> np.ndarray:
    """Cut ``box`` out of ``image``; where it leaves the image, pad with ``fill`` (None: replicate the edge).

    Replicating the photo's edge continues the wall and the floor, so the padding draws
    no Canny edge of its own; the mask is padded with 0.
    """
    import cv2

    x0, y0, side = box
    h, w = image.shape[:2]
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x0 + side - w), max(0, y0 + side - h)
    if pad_l or pad_t or pad_r or pad_b:
        if fill is None:
            image = cv2.copyMakeBorder(image, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
        else:
            value = [int(v) for v in np.atleast_1d(fill)] if image.ndim == 3 else int(np.atleast_1d(fill)[0])
            image = cv2.copyMakeBorder(image, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_CONSTANT, value=value)
        x0, y0 = x0 + pad_l, y0 + pad_t
    return image[y0:y0 + side, x0:x0 + side]


def scaled_box(mask: np.ndarray, px_per_cm: float, window_cm: float, *, floor_margin: float = 0.05
               ) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of a ``window_cm`` square standing on the leg's lowest point.

    The window's bottom edge is ``floor_margin`` × side below the sole (the photo's
    lowest leg pixel), so the foot anchors it and the knee falls inside whatever the
    framing above the knee; it is centred horizontally on the leg within those rows.
    """
    ys, _ = np.nonzero(mask)
    side = max(2, int(round(window_cm * px_per_cm)))
    y1 = int(ys.max()) + 1 + int(round(floor_margin * side))
    y0 = y1 - side
    rows = mask[max(0, y0):max(0, y1)]
    xs = np.nonzero(rows.any(axis=0))[0] if rows.size else np.nonzero(mask.any(axis=0))[0]
    cx = (xs.min() + xs.max() + 1) / 2
    return int(round(cx - side / 2)), y0, side


def prepare_crop(image: np.ndarray, settings: CropSettings = CropSettings(), *,
                 px_per_cm: float | None = None, view: str | None = None, side: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Marker out, leg mask, square crop around the leg, resized to ``settings.size``.

    Parameters
    ----------
    image : ndarray, (H, W, 3) uint8
        BGR photo.
    settings : CropSettings
    px_per_cm : float, optional, keyword-only
        Scale from the sample table, used by the ``'scale'`` crop when the photo has no
        detectable marker (the marker wins when both exist).
    view, side : str, optional, keyword-only
        Which leg of two (see :func:`smi_image.segment.segment_leg`).

    Returns
    -------
    crop : ndarray, (size, size, 3) uint8
        BGR crop.
    mask : ndarray, (size, size) uint8
        Leg mask of the crop, 0/255 (with ``soft_mask``: leg coverage, 0–255).

    Raises
    ------
    PreprocessError
        If no leg is found, or a ``'scale'`` crop has no scale (and not ``allow_unscaled``).
    """
    import cv2

    from smi_image.errors import SegmentationError
    from smi_image.marker import find_marker, paint_out_marker
    from smi_image.segment import segment_leg

    found = find_marker(image) if (settings.remove_marker or settings.crop == "scale") else None
    marker_ppc = found[0] if found is not None else None
    from smi_image.quality import check_photo

    try:
        seg = segment_leg(image, exclude_polygons=[found[1]] if found is not None else None, view=view, side=side)
    except SegmentationError as exc:
        raise PreprocessError(f"refused: {exc}") from None
    verdict = check_photo(seg.work_image, seg.work, marker_found=found is not None)
    if not verdict.accepted:
        raise PreprocessError(f"refused: {verdict.reason}")
    if settings.outline == "photo":
        from smi_image.silhouette import edge_refined_mask

        # with soft_mask the pixels an edge crosses keep their share of leg, so the sub-pixel edge survives
        mask = edge_refined_mask(image, seg, coverage=settings.soft_mask) * np.float32(255)
    else:
        mask = seg.full_mask().astype(np.uint8) * 255
    if settings.remove_marker and found is not None:
        image = paint_out_marker(image, found)[0]
    if settings.crop == "scale":
        ppc = marker_ppc or (px_per_cm if px_per_cm is not None and np.isfinite(px_per_cm) and px_per_cm > 0
                             else None)
        if ppc is None and not settings.allow_unscaled:
            raise PreprocessError("no scale for the 'scale' crop: no ArUco marker found and no px_per_cm in the "
                                  "manifest; add one, or use crop='leg'")
        box = scaled_box(mask, ppc, settings.window_cm) if ppc else square_box(mask, settings.margin)
    else:
        box = square_box(mask, settings.margin)
    crop = crop_square(image, box)
    mcrop = crop_square(mask, box, 0)
    size = int(settings.size)
    interp = cv2.INTER_AREA if crop.shape[0] >= size else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (size, size), interpolation=interp)
    mcrop = cv2.resize(mcrop, (size, size), interpolation=interp)
    mcrop = np.round(mcrop).astype(np.uint8) if settings.soft_mask else np.where(mcrop >= 128, 255, 0).astype(np.uint8)
    return np.ascontiguousarray(crop), np.ascontiguousarray(mcrop)


def canny_thresholds(blurred: np.ndarray, *, min_high: float = 12.0) -> tuple[float, float]:
    """Hysteresis thresholds from the image itself: Otsu on its gradient magnitude.

    The magnitude is OpenCV's L2 Sobel (aperture 3, the one ``cv2.Canny`` uses) of the
    blurred uint8 image; ``high`` is the Otsu threshold of that magnitude's histogram
    (edges against flat regions), floored at ``min_high`` so a flat or noise-only image
    draws no edges; ``low = high / 2``.
    """
    import cv2

    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    mag = np.sqrt(gx * gx + gy * gy)
    peak = float(mag.max())
    if peak <= min_high:
        return 2 * peak + 1.0, 2 * peak + 1.0  # nothing above the floor: no edges
    scaled = np.round(mag * (255.0 / peak)).astype(np.uint8)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    high = max(float(otsu) * peak / 255.0, float(min_high))
    return high / 2.0, high


def canny_edges(grey: np.ndarray, settings: ChannelSettings = ChannelSettings()) -> np.ndarray:
    """Canny edges of a uint8 grey image as float32 0/1, every option explicit.

    Thresholds are ``settings.canny_low``/``canny_high`` if given, else
    :func:`canny_thresholds` of the blurred image (``'auto'``, the default: photos
    differ in contrast, and fixed thresholds drew no edge at all on a fifth of the toy
    cohort's low-contrast legs).
    """
    import cv2

    if grey.dtype != np.uint8 or grey.ndim != 2:
        raise ValueError(f"expected an (H, W) uint8 grey image, got {grey.shape} {grey.dtype}")
    if settings.canny_sigma > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), sigmaX=settings.canny_sigma, sigmaY=settings.canny_sigma,
                                borderType=cv2.BORDER_REPLICATE)
    if settings.canny_high is None:
        low, high = canny_thresholds(grey, min_high=settings.canny_min_high)
    else:
        low, high = float(settings.canny_low), float(settings.canny_high)
    edges = cv2.Canny(grey, threshold1=low, threshold2=high, apertureSize=3, L2gradient=True)
    return (edges > 0).astype(np.float32)


def make_channels(crop: np.ndarray, mask: np.ndarray, settings: ChannelSettings = ChannelSettings()) -> np.ndarray:
    """Input channels of one view, ``(C, size, size)`` float32 in [0, 1].

    Parameters
    ----------
    crop : ndarray, (S, S, 3) uint8
        BGR crop from :func:`prepare_crop` (possibly augmented).
    mask : ndarray, (S, S) uint8
        Its leg mask, 0/255.
    settings : ChannelSettings
    """
    import cv2

    if settings.fill_background:
        from smi_image.marker import border_colour

        bg = border_colour(crop)
        k = max(3, (crop.shape[0] // 40) | 1)
        keep = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
        crop = np.where(keep[..., None], crop, bg[None, None, :]).astype(np.uint8)
    mode = settings.mode
    if mode == "rgb":
        return np.ascontiguousarray(crop[..., ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0
    if mode == "mask":
        return (mask > 0).astype(np.float32)[None]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    if mode == "grey":
        return (grey.astype(np.float32) / 255.0)[None]
    edges = canny_edges(grey, settings)
    if mode == "canny":
        return edges[None]
    return np.stack([edges, grey.astype(np.float32) / 255.0])  # canny+grey


# ----------------------------------------------------------------------------- cache
_CACHE: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray] | str]" = OrderedDict()


def _cache_key(path: str, settings: CropSettings, px_per_cm: float | None, view=None, side=None) -> tuple:
    p = Path(path)
    try:
        st = p.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (None, None)
    ppc = float(px_per_cm) if settings.crop == "scale" and px_per_cm is not None and np.isfinite(px_per_cm) else None
    return (str(p.resolve()), *stamp, tuple(sorted(settings.to_dict().items())), ppc, view, side)


def cached_crop(path: str, settings: CropSettings = CropSettings(), *,
                px_per_cm: float | None = None, view: str | None = None, side: str | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`prepare_crop` of an image file, memoised in the module's LRU.

    Raises
    ------
    PreprocessError
        Unreadable image or no leg; the message names the file. Cached too.
    """
    from smi_data.images import ImageError, read_image

    key = _cache_key(path, settings, px_per_cm, view, side)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        if isinstance(hit, str):
            raise PreprocessError(hit)
        return hit
    try:
        result: tuple[np.ndarray, np.ndarray] | str = prepare_crop(read_image(path, color=True), settings,
                                                                  px_per_cm=px_per_cm, view=view, side=side)
    except ImageError as exc:
        result = str(exc)
    except PreprocessError as exc:
        result = f"{path}: {exc}"
    if isinstance(result, tuple):
        for a in result:
            a.setflags(write=False)  # shared between calls: nobody may change a cached crop
    _CACHE[key] = result
    while len(_CACHE) > CACHE_ITEMS:
        _CACHE.popitem(last=False)
    if isinstance(result, str):
        raise PreprocessError(result)
    return result


def clear_cache() -> None:
    """Empty the in-memory crop cache."""
    _CACHE.clear()


def cache_info() -> dict:
    """Number of cached entries and their approximate size in bytes."""
    nbytes = sum(sum(a.nbytes for a in v) for v in _CACHE.values() if isinstance(v, tuple))
    return {"items": len(_CACHE), "bytes": nbytes, "max_items": CACHE_ITEMS}
