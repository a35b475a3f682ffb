"""The estimate form: fields checked one by one, photos capped, sniffed and written to a private folder.

Nothing here trusts the client: a photo's file name and declared type are ignored
(the content is sniffed), its bytes are capped while the request streams in
(:class:`BodyLimit`), its pixel count is read from the header and refused before any
pixel is decoded, and it is written under a name chosen here (``lateral.jpg``) inside
a temporary folder that the caller removes after the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from smi_data.manifest import VIEWS

#: Largest photo accepted, bytes (a 48 MP phone JPEG is about 12 MB).
MAX_PHOTO_BYTES = 20 * 1024 * 1024
#: Largest photo accepted, pixels (width x height), checked from the header before decoding.
MAX_PHOTO_PIXELS = 50_000_000
#: Room for the form's text fields and multipart framing.
FORM_OVERHEAD_BYTES = 256 * 1024

PHOTO_FIELDS = VIEWS  # one photo field per view
TEXT_FIELDS = ("sex", "age", "height_cm", "weight_kg", "reference_device")

#: (field, low, high, unit) of the numbers; the CLI's `predict` takes the same ranges, adults only here.
NUMBER_RANGES = {"age": (18.0, 120.0, "years"), "height_cm": (100.0, 230.0, "cm"), "weight_kg": (20.0, 300.0, "kg")}


class FieldError(ValueError):
    """One or more form fields that cannot be used: ``errors`` is ``[(field, message), ...]``."""

    def __init__(self, errors: list[tuple[str, str]], status: int = 422):
        self.errors = errors
        self.status = status
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))

    def payload(self) -> dict:
        field, message = self.errors[0]
        return {"error": f"{field}: {message}", "field": field,
                "errors": [{"field": f, "message": m} for f, m in self.errors]}


@dataclass
class Covariates:
    sex: str
    age: float
    height_cm: float
    weight_kg: float | None
    reference_device: str


def _number(form, name: str, errors: list, required: bool) -> float | None:
    raw = form.get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            errors.append((name, f"required ({NUMBER_RANGES[name][2]})"))
        return None
    if not isinstance(raw, str):
        errors.append((name, "must be a number, not a file"))
        return None
    lo, hi, unit = NUMBER_RANGES[name]
    try:
        value = float(raw.strip().replace(",", "."))
    except ValueError:
        errors.append((name, f"must be a number in {unit} (got {raw[:40]!r})"))
        return None
    if not math.isfinite(value) or not lo <= value <= hi:
        errors.append((name, f"must be from {lo:g} to {hi:g} {unit} (got {raw[:40]})"))
        return None
    return value


def parse_fields(form) -> Covariates:
    """Check the text fields of the estimate form.

    Raises
    ------
    FieldError
        Every problem at once: a missing or malformed field, a value out of range,
        a field given twice, a field this form does not have.
    """
    errors: list[tuple[str, str]] = []
    keys = list(form.keys())
    for name in dict.fromkeys(keys):
        if name not in TEXT_FIELDS + PHOTO_FIELDS:
            errors.append((name, f"unknown field; the form takes {', '.join(TEXT_FIELDS + PHOTO_FIELDS)}"))
        elif len(form.getlist(name)) > 1:
            errors.append((name, "given more than once"))
    sex = form.get("sex")
    if sex is None or (isinstance(sex, str) and not sex.strip()):
        errors.append(("sex", "required (M or F)"))
        sex = None
    elif not isinstance(sex, str) or sex.strip().upper() not in ("M", "F"):
        errors.append(("sex", f"must be M or F (got {str(sex)[:40]!r})"))
        sex = None
    else:
        sex = sex.strip().upper()
    age = _number(form, "age", errors, True)
    height = _number(form, "height_cm", errors, True)
    weight = _number(form, "weight_kg", errors, False)
    device = form.get("reference_device")
    if device is None or (isinstance(device, str) and not device.strip()):
        device = "BIA"
    elif not isinstance(device, str) or device.strip().upper() not in ("BIA", "DXA"):
        errors.append(("reference_device", f"must be BIA or DXA (got {str(device)[:40]!r})"))
    else:
        device = device.strip().upper()
    for name in PHOTO_FIELDS:
        value = form.get(name)
        if value is not None and isinstance(value, str) and value != "":
            errors.append((name, "must be a photo file (multipart upload), not text"))
    if not any(_is_upload(form.get(n)) for n in PHOTO_FIELDS) and not any(f in PHOTO_FIELDS for f, _ in errors):
        errors.append(("lateral", "give a lateral or a posterior photo (or both)"))
    if errors:
        raise FieldError(errors)
    return Covariates(sex, age, height, weight, device)


def _is_upload(value) -> bool:
    """A file part that carries a photo; a browser's empty file input (no name, no bytes) is not one."""
    if value is None or isinstance(value, str) or not hasattr(value, "read"):
        return False
    return bool(getattr(value, "filename", None)) or bool(getattr(value, "size", 0))


# ----------------------------------------------------------------------------- photos
def sniff_image(head: bytes) -> str | None:
    """The image format from the first bytes (``jpg``, ``png``, ``webp``), or None."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _describe(head: bytes) -> str:
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
        return ("an HEIC photo (iPhone); set Camera > Formats > Most Compatible, or export it as JPEG")
    if head[:4] == b"%PDF":
        return "a PDF document; send the photo itself (JPEG or PNG)"
    if not head:
        return "an empty file"
    return "not a JPEG, PNG or WebP image; choose a photo"


async def save_photo(upload, field: str, folder, *, max_bytes: int = MAX_PHOTO_BYTES,
                     max_pixels: int = MAX_PHOTO_PIXELS):
    """Write one uploaded photo into ``folder`` under a fixed name; return its path.

    Raises
    ------
    FieldError
        413 for a photo over ``max_bytes`` or whose header declares more than
        ``max_pixels`` pixels (a decompression bomb: refused before decoding); 415 for
        content that is not a JPEG, PNG or WebP image, whatever its name or type says.
    """
    from pathlib import Path

    from smi_data.images import image_size

    await upload.seek(0)
    head = await upload.read(64)
    kind = sniff_image(head)
    if kind is None:
        raise FieldError([(field, f"the file is {_describe(head)}")], status=415)
    path = Path(folder) / f"{field}.{kind}"
    size = 0
    await upload.seek(0)
    with open(path, "wb") as fh:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > max_bytes:
                raise FieldError([(field, f"the photo is over the {max_bytes / 2**20:.0f} MB limit; "
                                          "send it at a lower resolution")], status=413)
            fh.write(chunk)
    wh = image_size(path)  # header only: no pixel is decoded here
    if wh is not None and wh[0] * wh[1] > max_pixels:
        raise FieldError([(field, f"the image declares {wh[0]}x{wh[1]} pixels, over the "
                                  f"{max_pixels / 1e6:.0f} megapixel limit; send a smaller photo")], status=413)
    return path


# ----------------------------------------------------------------------------- the whole request
class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 as soon as it is known.

    A ``Content-Length`` over the limit is refused before any byte is read; a body
    without one (chunked) is counted as it streams and cut off at the limit, so an
    upload never fills the disk of the clinic's laptop.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                return await self._refuse(send)
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send):
        import json

        body = json.dumps({"error": f"request: over the {self.max_bytes / 2**20:.0f} MB limit for two photos "
                                    "and the form; send smaller photos", "field": "request"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
