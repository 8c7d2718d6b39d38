"""The review page of a `siamese cluster` result (`siamese review DIR`): /review and its JSON API.

    GET  /review                     the page (static/review.html, with the write token put in)
    GET  /review/static/{file}       review.js, review.css
    GET  /review/api/state           folders and faces, and the `revision` (also sent as the ETag)
    GET  /review/faces/{id}          one crop, by its file name, looked up in the manifest
    POST /review/api/{op}            name | merge | move | split | not-a-face | undo:
                                     {"revision": ..., ...} -> the new state; 409 when stale
    POST /review/api/export          the named people -> DIR_labelled/NAME/*.jpg (beside DIR)
    POST /review/api/gallery         enrol the named people in the server's gallery
    GET  /review/api/alike           folders and unassigned faces that may be one person, most alike first
                                     (`review_likeness.Likeness`: the crops' saved embeddings, or each crop
                                     embedded once)
    GET  /review/api/alike/progress  {"done", "total"}: how far that is (a first answer may embed every crop)
    POST /review/api/not-same        {"folders": [a, b]} (folders or "unassigned/CROP"): two people, never
                                     listed again (`NotSame`)
    POST /review/api/forget-not-same every pair listed again, or {"faces": [x, y]} the one not-same answered

The work is `review_store.ReviewStore`; this module only checks who asks and maps errors.

Who may ask: the review answers loopback clients only, and only requests whose Host header is a
loopback name (a web page cannot reach it by DNS rebinding); the server refuses to start a review on
any other address (`Settings.check`). Writes also need the header `x-review-token`: a random token
made at start-up and written into the page the server sends. Another site's script can neither read
that page (same-origin policy) nor send the header without a CORS preflight, which this server never
grants. The token is not the API key: it allows these routes only — moving crops inside DIR and
enrolling DIR's named people — and nothing under /v1 (no deleting subjects).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from siamese.clustering.output import read_crop_embeddings
from siamese.io.images import ImageError, decode_image
from siamese.service.engine import Upload
from siamese.service.http import ApiError, error, json_object
from siamese.service.review_likeness import Likeness, NotSame
from siamese.service.review_store import ReviewError, ReviewStore

__all__ = ["add_review"]

STATIC = Path(__file__).parent / "static"
FILES = {"review.js": "text/javascript", "review.css": "text/css"}  # all the page loads besides crops
TOKEN_SLOT = "__REVIEW_TOKEN__"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _host_name(header: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1'."""
    if header.startswith("["):
        return header[1:header.find("]")]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def add_review(app: FastAPI, root: Path) -> ReviewStore:
    """Serve the review of the cluster result `root` on `app`; ReviewError (one line) when it is none."""
    store = ReviewStore(root)
    not_same = NotSame(store)
    token = secrets.token_urlsafe(24)
    out = store.root.parent / f"{store.root.name}_labelled"
    app.state.review = store
    app.add_exception_handler(ReviewError, lambda request, err: error(err.status, str(err)))

    def check(request: Request, write: bool = False) -> None:
        client = request.client.host if request.client else ""
        if not _loopback(client) or not _loopback(_host_name(request.headers.get("host", ""))):
            raise ApiError(403, "the review answers this machine only (open it at http://127.0.0.1:PORT/review)")
        if write and not hmac.compare_digest(request.headers.get("x-review-token", "").encode(), token.encode()):
            raise ApiError(403, "missing or wrong review token — reload the review page")

    @app.get("/review", include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        check(request)
        html = (STATIC / "review.html").read_text(encoding="utf-8").replace(TOKEN_SLOT, token)
        return HTMLResponse(html, headers={"cache-control": "no-store"})

    @app.get("/review/static/{name}", include_in_schema=False)
    async def static(name: str, request: Request) -> Response:
        check(request)
        if name not in FILES:  # a fixed list: no name from the request is joined to a path
            raise ApiError(404, f"no file {name!r}")
        return Response((STATIC / name).read_bytes(), media_type=FILES[name], headers={"cache-control": "no-cache"})

    @app.get("/review/api/state", tags=["review"])
    async def state(request: Request) -> JSONResponse:
        """The result's folders and faces, what undo would take back, and the revision to send with a change."""
        check(request)
        s = await run_in_threadpool(store.state)
        return JSONResponse({**s, "export_to": str(out)}, headers={"etag": f'"{s["revision"]}"',
                                                                   "cache-control": "no-store"})

    @app.get("/review/faces/{face_id}", tags=["review"])
    async def face(face_id: str, request: Request) -> FileResponse:
        """One face crop, by its id (the crop's file name in the manifest)."""
        check(request)
        path = await run_in_threadpool(store.crop_path, face_id)
        return FileResponse(path, media_type="image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else None,
                            headers={"cache-control": "private, max-age=3600"})

    @app.get("/review/api/alike/progress", tags=["review"])
    async def alike_progress(request: Request) -> JSONResponse:
        """How far the "may be one person" computation under way is: {"done", "total"} crops (both 0
        before the first); answers at once while `/review/api/alike` is still embedding."""
        check(request)
        likeness = getattr(request.app.state, "likeness", None)
        return JSONResponse(likeness.progress() if likeness else {"done": 0, "total": 0},
                            headers={"cache-control": "no-store"})

    @app.get("/review/api/alike", tags=["review"])
    async def alike(request: Request) -> JSONResponse:
        """Person folders and unassigned faces that may be one person: the mean cosine of their faces,
        most alike first, those at or above the model's clustering floor and never seen together in one
        photo or frame nor marked not the same; with the revision they were computed on."""
        check(request)
        engine = _engine(request)
        if getattr(request.app.state, "likeness", None) is None:
            try:
                stored = read_crop_embeddings(store.root, engine.model.fingerprint())
                request.app.state.likeness = Likeness(engine, stored=stored)
            except ValueError as err:  # the model's cluster.json is malformed: one line, not a bug
                raise ApiError(500, str(err)) from None
        rev, people, apart = await run_in_threadpool(store.people)
        marked = not_same.faces()
        found = await engine.run(request.app.state.likeness.pairs, people, apart | not_same.folders(people, marked))
        return JSONResponse({"revision": rev, **found, "not_same": len(marked)},
                            headers={"cache-control": "no-store"})

    @app.post("/review/api/{op}", tags=["review"])
    async def change(op: str, request: Request) -> JSONResponse:
        """A change: name {folder, name}, merge {into, folders}, move {faces, to}, split {faces},
        not-a-face {faces}, undo {}; each with the revision it was based on. Also export, gallery,
        not-same {folders: [a, b]} and forget-not-same {} or {faces: [x, y]} (the "May be the same
        person" list's)."""
        check(request, write=True)
        body = await _body(request)
        if op == "export":
            return JSONResponse(await run_in_threadpool(store.export, out))
        if op == "gallery":
            return JSONResponse(await _enrol(request, store))
        if op == "not-same":  # not a change of the result: no revision, nothing to undo
            return JSONResponse(await run_in_threadpool(_not_same, store, not_same, _texts(body, "folders")))
        if op == "forget-not-same":  # {} every pair, or {"faces": [x, y]} the one not-same recorded
            pair = _texts(body, "faces") if "faces" in body else None
            if pair is not None and len(pair) != 2:
                raise ApiError(400, "forget-not-same takes the two faces not-same answered: {\"faces\": [x, y]}")
            return JSONResponse({"not_same": await run_in_threadpool(not_same.forget, pair)})
        rev = body.get("revision") or request.headers.get("if-match", "").strip('"')
        calls = {"name": lambda: store.name(rev, _text(body, "folder"), _text(body, "name")),
                 "merge": lambda: store.merge(rev, _text(body, "into"), _texts(body, "folders")),
                 "move": lambda: store.move(rev, _texts(body, "faces"), _text(body, "to")),
                 "split": lambda: store.split(rev, _texts(body, "faces")),
                 "not-a-face": lambda: store.not_a_face(rev, _texts(body, "faces")),
                 "undo": lambda: store.undo(rev)}
        if op not in calls:
            raise ApiError(404, f"no review operation {op!r} (one of {', '.join(calls)}, export, gallery, not-same, "
                           "forget-not-same)")
        if not isinstance(rev, str) or not rev:
            raise ApiError(400, "send the revision the change is based on (\"revision\" from /review/api/state)")
        s = await run_in_threadpool(calls[op])
        return JSONResponse({**s, "export_to": str(out)}, headers={"etag": f'"{s["revision"]}"'})

    return store


async def _body(request: Request) -> dict:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ApiError(400, "send a JSON body (content-type: application/json)")
    return await json_object(request)


def _text(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"missing the text field {key!r}")
    return value


def _texts(body: dict, key: str) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{key!r} must be a non-empty list of names")
    return value


def _not_same(store: ReviewStore, not_same: NotSame, names: list[str]) -> dict:
    """Record two items of the list (person folders or "unassigned/CROP") as two people; 404 for one
    that holds no face."""
    if len(set(names)) != 2:
        raise ApiError(400, "not-same takes two different folders: {\"folders\": [a, b]}")
    _, people, _ = store.people()
    if missing := [n for n in names if n not in people]:
        raise ApiError(404, f"no person folder {missing[0]!r} with a face")
    kept, faces = not_same.add(people[names[0]][1], people[names[1]][1])
    return {"not_same": kept, "faces": list(faces)}


def _engine(request: Request):
    """The server's `Engine`; 503 while the model is still loading."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise ApiError(503, "the model is not loaded yet — try again in a moment")
    return engine


async def _enrol(request: Request, store: ReviewStore) -> dict:
    """Each named person's crops into the gallery, through the engine as /v1/subjects would (the
    largest face of each crop); crops in which the detector finds no face are counted, not enrolled."""
    engine = _engine(request)

    def read() -> dict[str, tuple[list[Upload], int]]:
        people = {}
        with store.locked():  # no crop moves while they are read
            for name, paths in store.named().items():
                ups = []
                for p in paths:
                    with contextlib.suppress(OSError, ImageError):  # counted below as unreadable
                        ups.append(Upload.of(f"{name}/{p.name}", data := p.read_bytes(), decode_image(data, str(p))))
                people[name] = (ups, len(paths) - len(ups))
        return people

    def enrol(people: dict[str, tuple[list[Upload], int]]) -> dict:
        done = {}
        for name, (ups, unreadable) in people.items():
            kept = [u for u in ups if engine.faces(u.rgb)]
            r = engine.add_faces(name, kept) if kept else {"added": 0, "duplicates": 0}
            done[name] = {"added": r["added"], "duplicates": r["duplicates"], "no_face": len(ups) - len(kept),
                          "unreadable": unreadable}
        return done

    people = await run_in_threadpool(read)
    if not people:
        raise ApiError(400, "no named people yet — name a folder first")
    return {"gallery": str(engine.db), "people": await engine.run(enrol, people)}
