"""The HTTP side of the service, shared by its routes: settings, errors as one JSON line each,
and reading the images of a request (multipart or base64 JSON) under the upload limit.

Status codes: 400 a malformed request or a bad name, 401 a missing or wrong API key, 404 an unknown
subject or face, 409 a write that contradicts the gallery, 413 an upload over the limit, 422 an
image that cannot be used (not an image, truncated, no face), 503 the worker queue is full; only a
bug is a 500 (logged with its traceback, never sent).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from siamese.gallery.store import GalleryError
from siamese.io.images import ImageError, decode_image
from siamese.io.names import BadName, BadSetting, check_name
from siamese.service.engine import Busy, Conflict, NoFace, NotFound, Upload

log = logging.getLogger(__name__)

__all__ = ["LOOPBACK", "ApiError", "Guard", "Inputs", "Settings", "error", "install_errors", "json_object",
           "subject_name"]

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass
class Settings:
    """How the service runs (`conf/serve.yaml`).

    Attributes:
        model_path: a model directory (None: the shipped model).
        db: the gallery file (the CLI's, by default).
        host: the address it listens on; anything but loopback requires `api_key`.
        api_key: the key writes (and, off loopback, all requests) must send as `x-api-key`; None
            makes a random one, printed at start-up (`generated_key` then says so).
        max_upload_mb: the largest image accepted, in megabytes.
        workers, queue: threads doing CPU work, and requests allowed to wait for one.
        far_target: the share of strangers `identify` may name (the gallery's calibration).
        review_dir: a `siamese cluster` result served at /review (None: none).
    """

    model_path: str | None = None
    db: str = "data/gallery.sqlite"
    host: str = "127.0.0.1"
    api_key: str | None = None
    max_upload_mb: float = 10.0
    workers: int = 2
    queue: int = 64
    far_target: float = 0.01
    review_dir: str | None = None
    generated_key: bool = False

    def __post_init__(self):
        if not self.api_key:  # as Jupyter's token: writes are never open to any local process
            self.api_key, self.generated_key = secrets.token_urlsafe(24), True

    def check(self) -> None:
        """ValueError (one line) for settings the server must not start with."""
        if self.host not in LOOPBACK and self.generated_key:
            raise BadSetting(f"host={self.host} listens beyond this machine: set api_key= (or SIAMESE_API_KEY) "
                             "so that requests must carry it")
        if self.review_dir and self.host not in LOOPBACK:
            raise BadSetting(f"host={self.host}: the review page serves this machine only — use host=127.0.0.1")
        if self.max_upload_mb <= 0:
            raise BadSetting(f"max_upload_mb={self.max_upload_mb}: must be above 0")


class ApiError(Exception):
    """A request that cannot be served: `status` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _b64(value: str, name: str) -> bytes:
    if value.startswith("data:") and "," in value:  # a data: URL from a browser
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{name}: not valid base64") from None


class Guard:
    """ASGI middleware in front of every route: the API key, and the body size limit.

    The key (header `x-api-key`, compared in constant time) is required for writes under
    /v1/subjects and, when the server listens beyond loopback, for every request. A body over
    `limit` bytes ends in a 413 whether or not it said its length up front: a chunked upload is
    counted as it arrives, never spooled whole.
    """

    def __init__(self, app, settings: Settings, limit: int):
        self.app, self.settings, self.limit = app, settings, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        writes = scope["method"] in ("POST", "DELETE") and scope["path"].startswith("/v1/subjects")
        if writes or self.settings.host not in LOOPBACK:
            sent = headers.get(b"x-api-key", b"")
            if not hmac.compare_digest(sent, self.settings.api_key.encode()):
                return await error(401, "missing or wrong API key (send it in the x-api-key header)")(
                    scope, receive, send)
        size = headers.get(b"content-length", b"")
        if size.isdigit() and int(size) > self.limit:
            return await error(413, f"request body of {int(size) / 1e6:.1f} MB is over the upload limit")(
                scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise ApiError(413, f"request body over {self.limit / 1e6:.1f} MB: over the upload limit")
            return message

        await self.app(scope, counted, send)


async def json_object(request: Request) -> dict:
    """The request's JSON body, which must be an object; ApiError 400 otherwise."""
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the JSON body must be an object")
    return body


class Inputs:
    """The fields of one request, multipart or JSON, with images read under the size limit."""

    def __init__(self, fields: dict, limit: int):
        self.fields, self.limit = fields, limit

    @classmethod
    async def read(cls, request: Request, limit: int) -> "Inputs":
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=64, max_fields=64)
            except ApiError:
                raise
            except Exception as err:  # starlette's parser errors: a malformed body
                raise ApiError(400, f"malformed multipart body ({err})") from None
            return cls({k: form.getlist(k) for k in form.keys()}, limit)
        if kind.startswith("application/json"):
            body = await json_object(request)
            return cls({k: v if isinstance(v, list) else [v] for k, v in body.items()}, limit)
        raise ApiError(400, "send multipart/form-data (-F image=@photo.jpg) or JSON ({\"image\": \"<base64>\"})")

    def text(self, key: str, default: str | None = None) -> str | None:
        values = self.fields.get(key) or []
        if not values:
            return default
        if not isinstance(values[0], str):
            raise ApiError(400, f"{key}: expected text, got a file")
        return values[0]

    async def images(self, key: str, *, required: bool = True) -> list[Upload]:
        """The images under `key` (several allowed), decoded; 413 over the limit, 422 unusable."""
        out = []
        for i, value in enumerate(self.fields.get(key) or []):
            if isinstance(value, UploadFile):
                name = Path(value.filename or f"{key}{i}").name or f"{key}{i}"
                data = await value.read(self.limit + 1)
            elif isinstance(value, str):
                name, data = f"{key}{i if i else ''}", _b64(value, key)
            else:
                raise ApiError(400, f"{key}: expected an image file or a base64 string")
            if len(data) > self.limit:
                raise ApiError(413, f"{name}: larger than the {self.limit / 1e6:g} MB upload limit")
            try:
                out.append(Upload.of(name, data, decode_image(data, name)))
            except ImageError as err:
                raise ApiError(422, str(err)) from None
        if required and not out:
            raise ApiError(400, f"missing the image field {key!r}")
        return out


def error(status: int, message: str, fingerprint: str | None = None) -> JSONResponse:
    body = {"error": message.splitlines()[0] if message else "error"}
    if fingerprint:
        body["model"] = fingerprint
    return JSONResponse(body, status_code=status)


def install_errors(app: FastAPI) -> None:
    """Every failure as one JSON line; only a bug is a 500 (logged with its traceback, not sent)."""
    statuses = [(ApiError, None), (NotFound, 404), (Conflict, 409), (NoFace, 422), (ImageError, 422),
                (Busy, 503), (GalleryError, 409), (BadName, 400)]
    for kind, status in statuses:
        def handler(request: Request, err: Exception, status=status):
            return error(status or err.status, str(err), _fingerprint(request))
        app.add_exception_handler(kind, handler)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):  # unknown route, wrong method
        return error(err.status_code, str(err.detail), _fingerprint(request))

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, f"internal error ({type(err).__name__}); the server log has the details")


def _fingerprint(request: Request) -> str | None:
    engine = getattr(request.app.state, "engine", None)
    return engine.model.fingerprint() if engine else None


def subject_name(name: str) -> str:
    """A path's subject name by the one name rule (`check_name`): 400 when it breaks it."""
    try:
        return check_name(name)
    except BadName as err:
        raise ApiError(400, str(err)) from None
