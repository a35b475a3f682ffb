"""Options of the classical leg finder and of the upright, sub-pixel silhouette (one dataclass).

Part of the features' cache key; see :mod:`smi_image.classical` and :mod:`smi_image.silhouette`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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
    segmenter : {'auto', 'learned', 'classical'}
        Which leg finder :func:`smi_image.segment.segment_leg` uses (``auto``: the
        learned one when its weights ship, else the classical one).
    check_upright : bool
        Refuse a photo whose leg stands upside down (:mod:`smi_image.orientation`).
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
    segmenter: str = "auto"
    check_upright: bool = True

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}
