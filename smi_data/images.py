"""Safe image reading: path containment, size limits, strict decoding, clear errors.

Every image the toolkit reads goes through :func:`read_image`, so a truncated file,
a decompression bomb, a corrupt JPEG, a named pipe or a path that escapes the dataset
folder fails the same way everywhere: with an :class:`ImageError` that names the file
and says what to do.

Strict decoding: a JPEG is decoded once by libjpeg-turbo (``simplejpeg``) with its
recoverable errors treated as errors, so a file cut short (even with its end marker
put back), a zeroed block in the entropy-coded data or a broken marker is refused
instead of being measured on the grey or garbled pixels libjpeg would fill in. A PNG
must pass its chunk checksums (PIL ``verify``). A colour JPEG without EXIF data is
decoded once, by that strict pass straight into BGR (the same pixels as OpenCV's
decoder: both are libjpeg-turbo with the same settings, checked on every bundled
photo); a JPEG with EXIF data (which may carry an orientation) and every other format
are decoded by OpenCV after the check (EXIF orientation applied), so good photos give
the same numbers as before.

Photo rule (:func:`photo_problem`): a colour read of a photo also refuses what the
measuring code cannot measure right: images under :data:`MIN_PHOTO_SIDE` pixels on
a side, greyscale photos, and mirrored photos (the scale marker reads mirrored).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import LegsmiError

#: Largest image (width x height, in pixels) decoded. Larger files are refused before decoding.
MAX_PIXELS = 40_000_000
# OpenCV has its own limit; keep it at least as large as ours so ours speaks first.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**30))


#: Smallest photo side, pixels: below this the leg spans too few pixels to measure
#: (a 64 x 64 copy of a bundled photo gave SMI 18.2 against 7.8 before this rule; the
#: real-photo crops in ccp-legs-v1 start at 82 pixels).
MIN_PHOTO_SIDE = 80
#: Mean |B-G| + |G-R| (grey levels) under which a photo counts as greyscale.
GREY_CHROMA_LIMIT = 1.0


class ImageError(LegsmiError, ValueError):
    """An image that cannot be used, with the reason and what to do."""


def open_regular(path: str | os.PathLike):
    """Open ``path`` for reading only if it is a regular file; never blocks on a named pipe.

    The file is opened non-blocking and checked with ``fstat`` on the open descriptor,
    so a FIFO, device or socket is refused before any read (a FIFO opened by a plain
    ``open`` waits for a writer forever).

    Raises
    ------
    OSError
        Missing, unreadable, or not a regular file (``errno.EINVAL`` for the latter).
    """
    import errno
    import stat

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a named pipe, device, socket or folder)", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a regular file's bytes (a named pipe is refused with an OSError, never read)."""
    import hashlib

    h = hashlib.sha256()
    with open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        with open_regular(path) as fh:
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


def read_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS, color: bool = True,
               check_photo: bool | None = None) -> np.ndarray:
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
    check_photo : bool or None, keyword-only
        Apply the photo rule (:func:`photo_problem`: size, greyscale, mirrored).
        None (default): for colour reads, which are the photo reads.

    Raises
    ------
    ImageError
        Missing, empty, truncated, corrupt, oversized or non-image files, files that
        are not regular files, and photos the photo rule refuses.
    """
    import cv2

    p = Path(path)
    try:
        with open_regular(p) as fh:
            data = np.frombuffer(_read_limited(fh, p, max_pixels), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{_short(p)}: file not found; check the 'image' column of the manifest") from None
    except IsADirectoryError:
        raise ImageError(f"{_short(p)}: not a regular file (a folder)") from None
    except OSError as exc:
        raise ImageError(f"{_short(p)}: cannot be read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{p}: file is empty (0 bytes); re-export the photo")
    head = data[:64 * 1024].tobytes()
    size = _png_size(head) or _jpeg_size(head) or image_size(p)
    if size is None:
        raise ImageError(f"{p}: not a readable image (unknown or corrupt format); re-export it as JPEG or PNG")
    if size[0] * size[1] > max_pixels:
        raise ImageError(
            f"{p}: image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, over the safety limit of "
            f"{max_pixels:,}; downscale the photo"
        )
    if _looks_truncated(p, data):
        raise ImageError(f"{p}: image file is truncated (incomplete download or copy); copy it again")
    img = None
    if color and head[:3] == b"\xff\xd8\xff" and not _jpeg_has_exif(head):
        img, corrupt = _decode_jpeg_bgr(data)  # the strict check and the pixels in one pass
    else:
        corrupt = decode_problem(data)
    if corrupt:
        raise ImageError(f"{p}: corrupt image data ({corrupt}); copy or export the photo again")
    if img is None:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ImageError(f"{p}: could not decode the image; re-export it as JPEG or PNG")
    if check_photo if check_photo is not None else color:
        problem = photo_problem(img)
        if problem:
            raise ImageError(f"{p}: {problem}")
    return img


def _short(p: Path) -> str:
    text = str(p)
    return text if len(text) <= 300 else f"{text[:120]}...{text[-120:]} ({len(text)} characters)"


def _read_limited(fh, p: Path, max_pixels: int) -> bytes:
    # A compressed image is far smaller than its pixels; refuse files larger than 3 bytes a pixel
    # of the limit (plus headers) before reading them into memory.
    limit = 3 * int(max_pixels) + (16 << 20)
    data = fh.read(limit + 1)
    if len(data) > limit:
        raise ImageError(f"{p}: file is over {limit:,} bytes, larger than any photo under the pixel limit; "
                         "downscale or re-export the photo")
    return data


def decode_problem(data: bytes | np.ndarray) -> str | None:
    """Why the encoded image ``data`` is corrupt, or None when it decodes cleanly.

    JPEG: libjpeg-turbo (``simplejpeg``) decodes it with recoverable errors (premature
    end of data, corrupt entropy-coded data, bad markers) raised as errors. PNG: PIL
    checks every chunk's CRC. Other formats: PIL decodes them fully.
    """
    data = bytes(data) if not isinstance(data, bytes) else data
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_problem(data)
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
            with Image.open(io.BytesIO(data)) as im:
                im.load()
    except Image.DecompressionBombError:
        return None  # the pixel limit above speaks for itself
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _jpeg_has_exif(head: bytes) -> bool:
    """True if the JPEG's segments before the first scan include an EXIF (APP1 ``Exif``) block.

    Such a file may carry an orientation, which OpenCV's decoder applies and a plain
    libjpeg decode does not; when unsure (a segment runs past ``head``) the answer is True.
    """
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return True
        marker = head[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker == 0xDA:  # start of scan: no EXIF before it
            return False
        length = int.from_bytes(head[i + 2:i + 4], "big")
        if marker == 0xE1 and head[i + 4:i + 10] == b"Exif\x00\x00":
            return True
        if length < 2:
            return True
        i += 2 + length
    return True


def _decode_jpeg_bgr(data: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """``(BGR image, None)`` from libjpeg-turbo's strict decode, or ``(None, problem)``.

    ``(None, None)`` when the strict decoder cannot give BGR directly (a CMYK JPEG):
    the caller then decodes with OpenCV after :func:`decode_problem` found nothing.
    """
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - simplejpeg is a dependency
        return None, decode_problem(data)
    try:
        return simplejpeg.decode_jpeg(data.tobytes(), colorspace="BGR", strict=True), None
    except ValueError as exc:
        msg = str(exc)
        if "color conversion" in msg.lower() or "colorspace" in msg.lower():
            return None, decode_problem(data)
        return None, msg.strip() or "libjpeg could not decode it"


def _jpeg_problem(data: bytes) -> str | None:
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - simplejpeg is a dependency
        import logging

        logging.getLogger(__name__).warning("simplejpeg is not installed: JPEG data are not checked strictly")
        return None
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
    except ValueError as exc:
        msg = str(exc)
        if "color conversion" in msg.lower() or "colorspace" in msg.lower():  # e.g. CMYK: check in its own space
            try:
                simplejpeg.decode_jpeg(data, colorspace="CMYK", strict=True)
                return None
            except ValueError as exc2:
                msg = str(exc2)
        return msg.strip() or "libjpeg could not decode it"
    return None


def photo_problem(img: np.ndarray, *, marker_found: bool | None = None) -> str | None:
    """Why a decoded photo cannot be measured right, or None.

    The rule: a photo must be at least :data:`MIN_PHOTO_SIDE` pixels on its shorter
    side, in colour (a greyscale photo loses the skin/background contrast the
    silhouette needs), and not mirrored (a mirrored ArUco marker is not found, so the
    scale silently falls back). Each refusal says what to do. ``marker_found=True``
    (the caller found the marker the right way round) skips the mirror search;
    ``marker_found=False`` says that :func:`smi_data.scale.detect_marker_px_per_cm` searched
    this very photo and found no marker, so the mirror search does not repeat the detector's
    quick pass (the same pass on the same pixels, which found nothing); None: not searched.
    """
    h, w = img.shape[:2]
    if min(h, w) < MIN_PHOTO_SIDE:
        return (f"photo is {w}x{h} pixels, under the minimum of {MIN_PHOTO_SIDE} pixels on a side; "
                "use the original photo, not a thumbnail")
    if img.ndim == 3 and img.shape[2] >= 3 and is_greyscale(img):
        return "photo is greyscale; the leg outline needs a colour photo, take or export it in colour"
    if img.ndim == 3 and not marker_found and is_mirrored(img, quick_pass=marker_found is None):
        return ("photo is mirrored (the scale marker reads as its mirror image, as with a selfie camera); "
                "flip it back or take it with the rear camera")
    return None


def is_greyscale(img: np.ndarray) -> bool:
    """True when the three channels are (nearly) equal everywhere (mean chroma under the limit).

    A flat frame (no content: grey-level SD under 3) is not called greyscale; the
    measuring code refuses it with its own reason (no leg found).
    """
    import cv2

    small = np.ascontiguousarray(img[:: max(1, img.shape[0] // 256), :: max(1, img.shape[1] // 256), :3])
    # the grey-level SD over every sample of the three channels (``small.std()``, to rounding)
    if float(cv2.meanStdDev(small.reshape(-1, 1))[1][0, 0]) < 3.0:
        return False
    b, g, r = small[..., 0], small[..., 1], small[..., 2]
    chroma = int(cv2.absdiff(b, g).sum(dtype=np.int64)) + int(cv2.absdiff(g, r).sum(dtype=np.int64))
    return chroma / b.size < GREY_CHROMA_LIMIT


def is_mirrored(img: np.ndarray, *, quick_pass: bool = True) -> bool:
    """True when the scale marker is found in the left-right mirrored photo (so the photo is mirrored).

    A photo without a marker, or with a marker the right way round, gives False. First
    one quick pass for the marker the right way round (a half-size copy, one threshold
    window: the marker detector's own first pass, which finds the card in most photos);
    only if that finds nothing, one ArUco pass on the mirrored copy at most 800 pixels
    wide and, if the mirror shows the marker, one on the straight copy. ``quick_pass=False``
    leaves out the first pass (the caller's marker search has just run it and found nothing).
    """
    import cv2

    from .scale import MARKER_DICTIONARY, MARKER_ID

    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    dic = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, MARKER_DICTIONARY))
    h, w = grey.shape[:2]
    if quick_pass and max(h, w) >= 400:
        quick = cv2.aruco.DetectorParameters()
        quick.adaptiveThreshWinSizeMin = quick.adaptiveThreshWinSizeMax = 13
        half = cv2.resize(grey, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        _, ids, _ = cv2.aruco.ArucoDetector(dic, quick).detectMarkers(half)
        if ids is not None and MARKER_ID in ids.ravel():
            return False  # the marker reads the right way round
    scale = min(1.0, 800.0 / max(grey.shape[:2]))
    if scale < 1.0:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    detector = cv2.aruco.ArucoDetector(dic, cv2.aruco.DetectorParameters())
    _, ids, _ = detector.detectMarkers(np.ascontiguousarray(grey[:, ::-1]))
    if ids is None or MARKER_ID not in ids.ravel():
        return False
    _, ids_straight, _ = detector.detectMarkers(grey)
    return ids_straight is None or MARKER_ID not in ids_straight.ravel()


def _looks_truncated(path: Path, data: np.ndarray | None = None) -> bool:
    """True if a JPEG lacks its end marker or a PNG lacks its IEND chunk; else ask PIL to decode."""
    if data is None:
        with open_regular(path) as fh:
            data = np.frombuffer(fh.read(), dtype=np.uint8)
    head = data[:8].tobytes()
    tail = data[-32:].tobytes()
    if head[:3] == b"\xff\xd8\xff":  # JPEG
        return b"\xff\xd9" not in tail
    if head == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in tail
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            im.load()
    except Exception:
        return True
    return False
