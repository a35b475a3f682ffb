"""Safe image reading: path containment, size limits, clear errors.

Every image the toolkit reads goes through :func:`read_image`, so a truncated file,
a decompression bomb or a path that escapes the dataset folder fails the same way
everywhere: with an :class:`ImageError` that names the file and says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Largest image (width x height, in pixels) decoded. Larger files are refused before decoding.
MAX_PIXELS = 40_000_000
# OpenCV has its own limit; keep it at least as large as ours so ours speaks first.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**30))


class ImageError(ValueError):
    """An image that cannot be used, with the reason and what to do."""


def resolve_inside(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """Resolve ``relative`` against ``root`` and refuse anything that escapes ``root``.

    Absolute paths, ``..`` components that climb out, and symbolic links that point
    outside the folder are all refused.

    Raises
    ------
    ImageError
        If the resolved path is not inside ``root``.
    """
    root_resolved = Path(root).resolve()
    rel = Path(str(relative))
    if rel.is_absolute() or str(relative).startswith(("/", "\\")):
        raise ImageError(f"{relative}: absolute paths are not allowed; give the path relative to the dataset folder")
    try:
        full = (root_resolved / rel).resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # NUL byte, symlink loop, name too long
        raise ImageError(f"{relative!r}: not a usable path ({exc})") from None
    try:
        full.relative_to(root_resolved)
    except ValueError:
        raise ImageError(
            f"{relative}: path leaves the dataset folder {root_resolved} (via '..' or a symbolic link); "
            "copy the image into the dataset folder"
        ) from None
    return full


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """Width and height in pixels from the file header, without decoding any pixel.

    PNG and JPEG headers are read directly; other formats go through PIL's lazy
    ``Image.open``. PIL's own decompression-bomb guard is bypassed here on purpose
    (it would hide the size of a huge image behind a generic error); the caller
    compares the size with its own limit.

    Returns
    -------
    (int, int) or None
        ``(width, height)``, or None if the file is not an image this can read.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError:
        return None
    size = _png_size(head) or _jpeg_size(head)
    if size is not None:
        return size
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as exc:
        # Only raised above 2 x PIL's limit, far over ours; report the size PIL saw.
        import re

        m = re.search(r"\((\d+) pixels\)", str(exc))
        n = int(m.group(1)) if m else 2**62
        return n, 1
    except Exception:
        return None


def _png_size(head: bytes) -> tuple[int, int] | None:
    # Signature, then the IHDR chunk: length (4), type (4), width (4), height (4).
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 24 or head[12:16] != b"IHDR":
        return None
    w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return (w, h) if w > 0 and h > 0 else None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    # Walk the marker segments up to the first start-of-frame (SOF0..SOF15 except DHT/JPG/DAC).
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = int.from_bytes(head[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(head):
                return None
            h = int.from_bytes(head[i + 5:i + 7], "big")
            w = int.from_bytes(head[i + 7:i + 9], "big")
            return (w, h) if w > 0 and h > 0 else None
        if marker == 0xDA or length < 2:  # start of scan before any frame header: give up
            return None
        i += 2 + length
    return None


def read_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS, color: bool = True) -> np.ndarray:
    """Read an image file into an array, refusing unusable files with a clear message.

    Parameters
    ----------
    path : path-like
        Image file (JPEG, PNG, TIFF, BMP, ...).
    max_pixels : int, keyword-only
        Refuse images whose header declares more pixels than this (decompression bombs)
        before any pixel is decoded.
    color : bool, keyword-only
        True: ``(H, W, 3)`` uint8 BGR (OpenCV order). False: ``(H, W)`` uint8 grey.

    Raises
    ------
    ImageError
        Missing, empty, truncated, oversized or non-image files.
    """
    import cv2

    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: file not found; check the 'image' column of the manifest")
    if not p.is_file():
        raise ImageError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: file is empty (0 bytes); re-export the photo")
    size = image_size(p)
    if size is None:
        raise ImageError(f"{p}: not a readable image (unknown or corrupt format); re-export it as JPEG or PNG")
    if size[0] * size[1] > max_pixels:
        raise ImageError(
            f"{p}: image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, over the safety limit of "
            f"{max_pixels:,}; downscale the photo"
        )
    if _looks_truncated(p):
        raise ImageError(f"{p}: image file is truncated (incomplete download or copy); copy it again")
    data = np.fromfile(p, dtype=np.uint8)
    flag = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE
    img = cv2.imdecode(data, flag)
    if img is None:
        raise ImageError(f"{p}: could not decode the image; re-export it as JPEG or PNG")
    return img


def _looks_truncated(path: Path) -> bool:
    """True if a JPEG lacks its end marker or a PNG lacks its IEND chunk; else ask PIL to decode."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        fh.seek(max(0, path.stat().st_size - 32))
        tail = fh.read()
    if head[:3] == b"\xff\xd8\xff":  # JPEG
        return b"\xff\xd9" not in tail
    if head == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in tail
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except Exception:
        return True
    return False
