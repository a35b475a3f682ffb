"""The features family's view of the image layer: the upright, sub-pixel leg silhouette.

The silhouette is found by :mod:`smi_image` (one segmentation under both families); this
module only names what the features use.
"""

from smi_image.pixels import to_uint8
from smi_image.settings import SilhouetteSettings
from smi_image.silhouette import Silhouette, SilhouetteError, leg_silhouette, refine_edges

__all__ = ["Silhouette", "SilhouetteError", "SilhouetteSettings", "leg_silhouette", "refine_edges", "to_uint8"]
