"""The /v1 routes: detect, embed, verify, identify, subjects and their faces, health.

Each route reads its fields (`Inputs`), hands the CPU work to the engine's bounded pool and
answers JSON with the model's fingerprint under "model". Request bodies are documented in the
OpenAPI schema (/docs) for both multipart and JSON.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

from siamese.service.engine import Engine
from siamese.service.http import ApiError, Inputs, subject_name

__all__ = ["add_routes"]


def _body(images: dict[str, str], texts: dict[str, str] | None = None, required: list[str] | None = None) -> dict:
    """OpenAPI `requestBody` for a route that reads images (as files or base64) and text fields."""
    texts = texts or {}
    file_props = {k: {"type": "string", "format": "binary", "description": d} for k, d in images.items()}
    b64_props = {k: {"type": "string", "format": "byte", "description": d + " (base64)"} for k, d in images.items()}
    text_props = {k: {"type": "string", "description": d} for k, d in texts.items()}
    req = required if required is not None else list(images)
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {**file_props, **text_props},
                                           "required": req}},
        "application/json": {"schema": {"type": "object", "properties": {**b64_props, **text_props},
                                        "required": req}}}}}


def add_routes(app: FastAPI, limit: int) -> None:
    """Register the /v1 routes; `limit` is the upload limit in bytes."""

    def engine(request: Request) -> Engine:
        return request.app.state.engine

    async def answer(request: Request, fn, *args) -> dict:
        eng = engine(request)
        return {**await eng.run(fn, *args), "model": eng.model.fingerprint()}

    @app.post("/v1/detect", tags=["faces"], openapi_extra=_body({"image": "a photo"}))
    async def detect(request: Request) -> dict:
        """Every face in the photo, left to right: box [x, y, w, h] px, five landmarks, score."""
        up = (await (await Inputs.read(request, limit)).images("image"))[0]
        return await answer(request, engine(request).detect, up)

    @app.post("/v1/embed", tags=["faces"], openapi_extra=_body({"image": "a photo"}))
    async def embed(request: Request) -> dict:
        """Every face with its unit embedding (the model's `dim` floats)."""
        up = (await (await Inputs.read(request, limit)).images("image"))[0]
        return await answer(request, engine(request).embed, up)

    @app.post("/v1/verify", tags=["faces"], openapi_extra=_body(
            {"image_a": "the first photo", "image_b": "the second photo (or give subject)",
             "image": "a photo to check against subject"}, {"subject": "an enrolled name"}, required=[]))
    async def verify(request: Request) -> dict:
        """Same person? Either two photos (`image_a`, `image_b`: the head's score against the model's
        threshold) or a photo and an enrolled subject (`image`, `subject`: the share of their faces matched
        against the calibrated verification threshold). The largest face of each photo is used."""
        inputs = await Inputs.read(request, limit)
        subject = inputs.text("subject")
        if subject is not None:
            up = (await inputs.images("image"))[0]
            return await answer(request, engine(request).verify_subject, up, subject_name(subject))
        a, b = await inputs.images("image_a", required=False), await inputs.images("image_b", required=False)
        if not a or not b:
            raise ApiError(400, "give image_a and image_b, or image and subject")
        return await answer(request, engine(request).verify_pair, a[0], b[0])

    @app.post("/v1/identify", tags=["faces"], openapi_extra=_body({"image": "a photo"}))
    async def identify(request: Request) -> dict:
        """Every face, left to right: the enrolled name, or "unknown" (the gallery's calibrated threshold)."""
        up = (await (await Inputs.read(request, limit)).images("image"))[0]
        return await answer(request, engine(request).identify, up)

    @app.get("/v1/subjects", tags=["subjects"])
    async def subjects(request: Request) -> dict:
        """Everyone enrolled, with how many faces each."""
        return await answer(request, lambda: {"subjects": engine(request).subjects()})

    @app.post("/v1/subjects", tags=["subjects"], status_code=201,
              openapi_extra=_body({"image": "one or more photos of them"}, {"name": "the subject's name"},
                                  required=["name", "image"]))
    async def add_subject(request: Request) -> dict:
        """Enrol a subject from one or more photos (the largest face of each); adds to them if they exist."""
        inputs = await Inputs.read(request, limit)
        name = inputs.text("name")
        if not name:
            raise ApiError(400, "missing the field 'name'")
        name = subject_name(name)
        return await answer(request, engine(request).add_faces, name, await inputs.images("image"))

    @app.delete("/v1/subjects/{name}", tags=["subjects"])
    async def remove_subject(name: str, request: Request) -> dict:
        """Delete a subject and all their faces."""
        return await answer(request, engine(request).remove_subject, subject_name(name))

    @app.get("/v1/subjects/{name}/faces", tags=["subjects"])
    async def faces(name: str, request: Request) -> dict:
        """A subject's stored faces: id (for DELETE), source, box, landmarks."""
        return await answer(request, lambda: {"faces": engine(request).faces_of(subject_name(name))})

    @app.post("/v1/subjects/{name}/faces", tags=["subjects"], status_code=201,
              openapi_extra=_body({"image": "one or more photos of them"}))
    async def add_faces(name: str, request: Request) -> dict:
        """Add faces to a subject (created if new)."""
        ups = await (await Inputs.read(request, limit)).images("image")
        return await answer(request, engine(request).add_faces, subject_name(name), ups)

    @app.delete("/v1/subjects/{name}/faces/{face_id}", tags=["subjects"])
    async def remove_face(name: str, face_id: int, request: Request) -> dict:
        """Delete one face of a subject."""
        return await answer(request, engine(request).remove_face, subject_name(name), face_id)

    @app.get("/v1/health", tags=["service"])
    async def health(request: Request) -> dict:
        """The model, its thresholds and where each came from, and the gallery."""
        return await answer(request, engine(request).health)
