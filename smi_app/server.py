"""The FastAPI application: the page, ``POST /api/estimate`` and ``GET /healthz``.

The page is a Jinja2 template with a small script (``static/app.js``, no framework)
that sends the form to the API and shows what it answers, so the page shows exactly
what the API returns. Every asset is served from this package; the Content Security
Policy forbids loading anything from elsewhere. Every error is JSON (``error``,
``field``) and never a traceback: 422 for a bad field, 413 for a photo or request
over the caps, 415 for content that is not an image, 500 with a plain message (the
traceback goes to the server's log only). Bound to loopback, the app refuses (400) a
request whose ``Host`` is not a loopback name (:class:`TrustedHosts`; ``[::1]:PORT``
included). Each photo is measured once per request: the annotated copy reuses the
measurement the model was given.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import logging
import math
import tempfile
import threading
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from . import NOT_VALIDATED
from .models import ModelSet
from .records import ResultStore, csv_row, csv_text
from .uploads import (FORM_OVERHEAD_BYTES, MAX_PHOTO_BYTES, MAX_PHOTO_PIXELS, PHOTO_FIELDS, BodyLimit,
                      BodyTooLarge, FieldError, _is_upload, parse_fields, save_photo)

logger = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


def _clean(obj):
    """JSON-safe: NaN and infinities to None, numpy scalars and tuples to Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _data_url(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def build_result(est, view: str | None, cov, models: ModelSet) -> dict:
    """The API's answer for one estimate (what the page shows and the CSV holds)."""
    photos = []
    for ph in est.photos:
        photos.append({"view": ph.view, "status": ph.status, "reason": ph.reason, "advice": ph.advice,
                       "annotated": _data_url(ph.annotated_path),
                       "measurement": {k: v for k, v in (ph.measurement or {}).items() if k != "annotation_error"}})
    result = {
        "id": uuid.uuid4().hex[:12],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "smi": est.smi, "interval_95": est.interval_95, "interval_90": est.interval_90,
        "screening": est.screening, "p_low": est.p_low,
        "low_muscle_mass": est.low_muscle_mass, "awgs_cutoff": est.awgs_cutoff,
        "reference_device": est.reference_device, "status": est.status, "reason": est.reason,
        "caution": est.caution, "outside_training_range": est.outside_training_range,
        "photos": photos, "model_view": view, "model": models.describe(),
        "inputs": {"sex": cov.sex, "age": cov.age, "height_cm": cov.height_cm, "weight_kg": cov.weight_kg,
                   "reference_device": cov.reference_device},
        "notice": NOT_VALIDATED,
    }
    result = _clean(result)
    result["csv"] = csv_text([csv_row(result)])
    return result


class SecurityHeaders:
    """ASGI middleware: every response says to load nothing from elsewhere and not to be framed.

    Plain ASGI rather than ``@app.middleware("http")``: that one runs the app in a task
    group, which turns the upload cap's signal into an exception group.
    """

    HEADERS = ((b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"))

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((k, v) for k, v in self.HEADERS if k not in have)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_name(header: str | None) -> str | None:
    """The host of a ``Host`` header without its port, lower case; an IPv6 address without
    its brackets (``[::1]:8000`` -> ``::1``); None for a malformed header."""
    h = (header or "").strip().lower()
    if not h:
        return None
    if h.startswith("["):
        end = h.find("]")
        rest = h[end + 1:] if end > 0 else ""
        if end <= 1 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return h[1:end]
    name, _, port = h.partition(":")
    if not name or (port and not port.isdigit()) or ":" in port:
        return None  # a bare IPv6 address must be bracketed in a Host header (RFC 7230 section 5.4)
    return name


class TrustedHosts:
    """Refuse (400) a request whose ``Host`` is not one of ``allowed_hosts``.

    Starlette's ``TrustedHostMiddleware`` does this too, but Starlette releases before the fix
    of its issue #3357 (August 2026; our FastAPI range allows them) cut the header at its first
    colon, so ``Host: [::1]:8000`` (a browser on the IPv6 loopback) was refused; here the host
    is parsed by :func:`host_name`, brackets and all, whatever Starlette is installed.
    ``allowed_hosts`` may name an IPv6 address with or without brackets.
    """

    def __init__(self, app, allowed_hosts):
        self.app = app
        bracketed = (f"[{h}]" if ":" in h and not h.startswith("[") else h for h in allowed_hosts)
        self.allowed = {n for n in map(host_name, bracketed) if n}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = None
        for k, v in scope.get("headers", []):
            if k == b"host":
                host = host_name(v.decode("latin-1"))
                break
        if host is None or host not in self.allowed:
            from starlette.responses import PlainTextResponse

            return await PlainTextResponse("Invalid host header", status_code=400)(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(models: ModelSet, *, save_dir=None, max_photo_bytes: int = MAX_PHOTO_BYTES,
               max_photo_pixels: int = MAX_PHOTO_PIXELS, max_concurrent: int = 2,
               allowed_hosts: list[str] | None = None, tmp_dir=None):
    """The application for a set of models.

    Parameters
    ----------
    models : ModelSet
    save_dir : path-like, optional
        Keep every result there (:class:`~smi_app.records.ResultStore`); None keeps nothing.
    max_photo_bytes, max_photo_pixels : int
        Caps per photo (413 above them; the pixel cap is read from the header).
    max_concurrent : int
        Estimates computed at once; further requests wait their turn.
    allowed_hosts : list of str, optional
        Host names the server answers to (others get 400): the CLI gives the loopback
        names when it binds loopback, so a web page elsewhere cannot reach the app
        through DNS rebinding.
    tmp_dir : path-like, optional
        Where each request's private temporary folder is made (default: the system's).
    """
    app = FastAPI(title="legsmi", docs_url=None, redoc_url=None, openapi_url=None, debug=False)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    store = ResultStore(save_dir) if save_dir else None
    gate = {"sem": None}
    gate_lock = threading.Lock()

    def semaphore() -> asyncio.Semaphore:
        with gate_lock:
            if gate["sem"] is None:
                gate["sem"] = asyncio.Semaphore(max(1, int(max_concurrent)))
            return gate["sem"]

    def error(status: int, message: str, field: str | None = None, extra: dict | None = None):
        return JSONResponse({"error": message, "field": field, **(extra or {})}, status_code=status,
                            headers={"Cache-Control": "no-store"})

    @app.exception_handler(FieldError)
    async def _field_error(request, exc: FieldError):
        p = exc.payload()
        return error(exc.status, p["error"], p["field"], {"errors": p["errors"]})

    @app.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        errs = [(".".join(str(x) for x in e.get("loc", [])[1:]) or "request", e.get("msg", "invalid"))
                for e in exc.errors()]
        return error(422, f"{errs[0][0]}: {errs[0][1]}", errs[0][0])

    @app.exception_handler(Exception)
    async def _internal_error(request, exc: Exception):
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, "internal error: no estimate could be made; the server's log says why", None)

    @app.get("/")
    async def page(request: Request):
        return templates.TemplateResponse(request, "index.html", {
            "model": models.describe(), "notice": NOT_VALIDATED, "saving": store is not None,
            "max_mb": max_photo_bytes / 2**20, "max_mp": max_photo_pixels / 1e6})

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": models.describe()["name"], "views": models.views,
                "saving": store is not None}

    @app.post("/api/estimate")
    async def estimate(request: Request):
        try:
            form = await request.form(max_files=len(PHOTO_FIELDS), max_fields=16, max_part_size=16 * 1024)
        except HTTPException as exc:  # malformed multipart, too many parts
            return error(400, f"request: {exc.detail}", "request")
        try:
            cov = parse_fields(form)
            with tempfile.TemporaryDirectory(prefix="legsmi-app-", dir=tmp_dir) as tmp:
                photos = {}
                for name in PHOTO_FIELDS:
                    upload = form.get(name)
                    if _is_upload(upload):
                        photos[name] = await save_photo(upload, name, tmp, max_bytes=max_photo_bytes,
                                                        max_pixels=max_photo_pixels)
                async with semaphore():
                    est, view = await run_in_threadpool(
                        models.estimate, photos, sex=cov.sex, age=cov.age, height_cm=cov.height_cm,
                        weight_kg=cov.weight_kg, reference_device=cov.reference_device, out_dir=tmp,
                        annotated_suffix=".jpg")
                result = build_result(est, view, cov, models)
        finally:
            await form.close()
        if store is not None:
            await run_in_threadpool(store.save, result)
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    app.add_middleware(SecurityHeaders)
    if allowed_hosts:
        app.add_middleware(TrustedHosts, allowed_hosts=list(allowed_hosts))
    # outermost: a body over the cap is refused before the form parser spools it to disk
    app.add_middleware(BodyLimit, max_bytes=len(PHOTO_FIELDS) * max_photo_bytes + FORM_OVERHEAD_BYTES)
    app.state.models = models
    app.state.store = store
    return app


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def uvicorn_config(app, host: str, port: int, **kwargs):
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=kwargs.pop("log_level", "info"),
                          server_header=False, limit_concurrency=kwargs.pop("limit_concurrency", 64),
                          timeout_keep_alive=5, **kwargs)


class BackgroundServer:
    """Serve an app on a free loopback port in a thread (tests, the load benchmark).

    ``with BackgroundServer(app) as url: ...``; the server stops when the block ends.
    """

    def __init__(self, app, host: str = "127.0.0.1", log_level: str = "warning"):
        self.app, self.host, self.log_level = app, host, log_level

    def __enter__(self) -> str:
        import socket
        import time

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, 0))
        port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(self.app, self.host, port, log_level=self.log_level,
                                                    limit_concurrency=256))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > 30:
                raise RuntimeError("the app server did not start")
            time.sleep(0.02)
        return f"http://{self.host}:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


__all__ = ["create_app", "build_result", "BackgroundServer", "is_loopback", "uvicorn_config", "BodyTooLarge"]
