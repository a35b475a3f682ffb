"""Any image to the 8-bit copy every step of the image layer works on."""

from __future__ import annotations

import numpy as np


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
