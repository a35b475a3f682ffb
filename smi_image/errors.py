"""The image layer's one error: a photo in which the leg cannot be found or measured."""

from __future__ import annotations

from smi_data.errors import LegsmiError


class SegmentationError(LegsmiError, ValueError):
    """No usable leg in a photo; the message says why and what to do.

    ``code`` names the reason for tables and tests (see :data:`smi_image.quality.REASONS`).
    """

    def __init__(self, message: str, code: str = "no_leg"):
        super().__init__(message)
        self.code = code
