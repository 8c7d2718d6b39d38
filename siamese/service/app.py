"""`siamese serve`: the HTTP API (FastAPI), JSON in and out, OpenAPI docs at /docs.

Images come as multipart uploads (`-F image=@a.jpg`) or as base64 strings in a JSON body
(`{"image": "<base64>"}`), at most `max_upload_mb` each, and go through the same header checks
as the command line (`siamese.io.images.decode_image`). Every JSON response carries the model's
fingerprint (`"model"`). Bad input is a 4xx with one line in `"error"`, never a traceback:
400 a malformed request, 401 a missing or wrong API key, 404 an unknown subject or face,
409 a write that contradicts the gallery, 413 an upload over the limit, 422 an image that cannot
be used (not an image, truncated, no face), 503 the worker queue is full.

Writes (subjects and their faces) need the API key (header `x-api-key`) when one is configured,
and every route does when the server listens on anything but loopback. With `review_dir` set the
app also serves the review page of a cluster result (`siamese.service.review`, loopback only).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from siamese.service.engine import Engine
from siamese.service.http import Guard, Settings, install_errors
from siamese.service.review import add_review
from siamese.service.routes import add_routes

__all__ = ["create_app"]


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The API over one `Engine` (made from `settings` at start-up unless given, for tests)."""
    settings.check()
    limit = int(settings.max_upload_mb * 1e6)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = engine or Engine(settings.model_path, settings.db, workers=settings.workers,
                                            queue=settings.queue, far_target=settings.far_target)
        yield
        if engine is None:  # one given by the caller (a test) is theirs to close
            app.state.engine.close()

    app = FastAPI(title="siamese", version="1", lifespan=lifespan,
                  description="Detect, embed, verify and identify faces with your own Siamese model.")
    install_errors(app)
    app.add_middleware(Guard, settings=settings, limit=limit * 4 + 65536)  # a few images of the limit, in base64
    add_routes(app, limit)
    if settings.review_dir:  # `siamese review DIR`: the page and its routes (loopback only)
        add_review(app, Path(settings.review_dir))
    return app


