"""The gallery of known faces: one SQLite file holding people, their embeddings and the model that
made them, plus what recognition derives from them. The one store of a person's faces: recognition
(`siamese recognize`) and verification (`siamese verify`) both read it. This module is the store
only (`Gallery`, `GalleryError` / `ModelMismatch`); filling it from photos, folders and cameras,
and re-embedding it, is `siamese.gallery.enrol`.

    people      id, name (unique), created
    embeddings  id, person_id, vector (D float32 bytes), source (absolute image path), sha256 of
                the source file, box [x, y, w, h] and landmarks (5, 2) px in it (JSON), created
    meta        key -> JSON: model (fingerprint, dim, path), revision, calibration (see recognize)
    impostors   LFW faces the model never saw, embedded once: what `recognize.calibrate` measures
                the unknown threshold on
    classifier  the SVC's arrays (coef, intercept, class names) for one gallery revision: no pickle

Safe to share: WAL journal (readers never block the writer), a busy timeout, and every write in
one `BEGIN IMMEDIATE` transaction, so two processes adding at once both land. Vectors from another
model are refused (`ModelMismatch`); `siamese.gallery.enrol.reembed` recomputes them from the stored source
images with the stored landmarks. Names follow `siamese.io.names.check_name` (display labels, never
paths). No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np

from siamese.io.files import create_sqlite
from siamese.io.names import check_name

__all__ = ["Gallery", "GalleryError", "ModelMismatch"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL, source TEXT, sha256 TEXT, box TEXT, landmarks TEXT, created TEXT NOT NULL,
    UNIQUE (person_id, sha256));
CREATE INDEX IF NOT EXISTS embeddings_person ON embeddings(person_id);
CREATE INDEX IF NOT EXISTS embeddings_sha ON embeddings(sha256);
CREATE TABLE IF NOT EXISTS impostors (id INTEGER PRIMARY KEY, label TEXT NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS classifier (name TEXT PRIMARY KEY, revision INTEGER NOT NULL,
    classes TEXT NOT NULL, coef BLOB NOT NULL, intercept BLOB NOT NULL);
"""


class GalleryError(ValueError):
    """A gallery that cannot be used as asked; the one-line message names the db and the fix."""


class ModelMismatch(GalleryError):
    """The gallery's embeddings were made by another model than the one given."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _blob(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, np.float32).tobytes()


def _matrix(blobs: list[bytes], dim: int) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), dim).copy()


class Gallery:
    """A SQLite gallery; one connection per instance (open one per thread or process).

    Args:
        path: the .sqlite file; created (with its folder) when missing and `create`.
        model: `Embedder.identity()`; needed to add, and checked against the stored one:
            a gallery holding embeddings of another model raises `ModelMismatch`. None opens it
            for reading, listing and removing only.
        create: False raises GalleryError for a missing file instead of creating it.
        timeout: seconds to wait for another writer before "database is locked".
    """

    def __init__(self, path: str | os.PathLike, model: dict | None = None, *, create: bool = True,
                 timeout: float = 30.0):
        self.path = Path(path)
        self._check_file(create)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # made whole, then linked in: never an empty file to another writer
            create_sqlite(self.path, SCHEMA)
        try:
            # isolation_level=None: we issue BEGIN ourselves, so every write is one explicit transaction.
            self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._check_tables()
            self.db.execute("PRAGMA foreign_keys = ON")
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode = WAL")  # persistent: set once per file
            self.db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, fast
            with self.transaction(bump=False):
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                self.model = self._check_model(model)
        except sqlite3.DatabaseError as err:
            raise GalleryError(f"{self.path}: not a readable gallery ({err}) — restore it from a copy, or "
                               "move it away to start a new one") from None
        self.writable = model is not None  # adding needs the caller's model, checked above

    def _check_file(self, create: bool) -> None:
        if self.path.is_dir():
            raise GalleryError(f"{self.path}: is a folder, not a gallery file — give db=FILE.sqlite")
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise GalleryError(f"{self.path}: 0 bytes, not a gallery (a copy cut short?) — restore it, or delete "
                               "it to start a new one")
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                head = f.read(100)
            page = int.from_bytes(head[16:18], "big") if head.startswith(b"SQLite format 3\x00") else 0
            page = 65536 if page == 1 else page
            size = self.path.stat().st_size
            if page in {1 << n for n in range(9, 17)} and (size < page or size % page):
                raise GalleryError(f"{self.path}: cut short ({size} bytes, not a whole number of {page}-byte "
                                   "pages) — restore it from a copy, or move it away to start a new one")
        if not self.path.is_file() and not create:
            raise GalleryError(f"{self.path}: no gallery here — create one with `siamese gallery "
                               "import DIR` or `siamese gallery add PHOTOS --person NAME`")

    def _check_tables(self) -> None:
        """Refuse another program's SQLite file: our tables are added only to an empty database."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and not {"meta", "people", "embeddings"} <= tables:
            self.db.close()
            raise GalleryError(f"{self.path}: not a siamese gallery (it holds the tables "
                               f"{', '.join(sorted(tables)[:5])}) — give another db=")

    def require(self, model: dict) -> None:
        """Raise `ModelMismatch` when the gallery holds embeddings of another model than `model`
        (an `Embedder.identity()`). Reads only: what a read command checks."""
        stored = self.get("model")
        n = self.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        if stored and n and stored["fingerprint"] != model["fingerprint"]:
            old = stored.get("path")
            hint = (f"the model at {old} has changed since" if old == model["path"]
                    else f"or keep using model_path={old}")
            raise ModelMismatch(
                f"{self.path}: its {n} embeddings were made by model {stored['fingerprint'][:12]} "
                f"({old}), not {model['fingerprint'][:12]} ({model['path']}) — re-embed them: "
                f"`siamese gallery reembed --db {self.path}` ({hint})")

    def _check_model(self, model: dict | None) -> dict | None:
        stored = self.get("model")
        if model is None or stored == model:
            return stored or model
        self.require(model)
        if not stored or stored["fingerprint"] != model["fingerprint"]:  # empty: adopt the model
            self.db.execute("DELETE FROM impostors")
            self.db.execute("DELETE FROM classifier")
            self.db.execute("DELETE FROM meta WHERE key = 'calibration'")
        self.set("model", model)  # same weights, maybe a new path: keep the latest
        return model

    def discard(self) -> None:
        """Close and delete this gallery's files (the database, its journal files, its frames):
        for a gallery a failed first enrolment created. Never called on one that holds people."""
        self.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(self.frames_dir, ignore_errors=True)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self, bump: bool = True):
        """One write transaction (BEGIN IMMEDIATE: takes the write lock up front, so two writers
        queue on the busy timeout instead of deadlocking); `bump` counts a content change.
        Inside another transaction it joins that one (which commits or rolls back both)."""
        if self.db.in_transaction:
            yield self.db
            if bump:
                self.set("revision", self.revision + 1)
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            if bump:
                self.set("revision", self.revision + 1)
            self.db.execute("COMMIT")
        except BaseException as err:
            if self.db.in_transaction:  # a failed COMMIT (disk full) may have ended it already
                self.db.execute("ROLLBACK")
            if isinstance(err, sqlite3.OperationalError):
                raise GalleryError(f"{self.path}: could not write ({err}) — nothing was changed; free some "
                                   "disk space (or check permissions) and run it again") from err
            raise

    # --- meta -------------------------------------------------------------------------------
    def get(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, key: str, value) -> None:
        """Store a JSON value in meta (callers hold a transaction, or it autocommits)."""
        self.db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE "
                        "SET value = excluded.value", (key, json.dumps(value)))

    @property
    def revision(self) -> int:
        """Increases with every change of people or embeddings: the key of derived caches."""
        return int(self.get("revision", 0))

    # --- people and embeddings ---------------------------------------------------------------
    def people(self) -> list[tuple[str, int]]:
        """[(name, embeddings)] sorted by name; people left with 0 embeddings (after a re-embed
        that lost their sources) are listed too."""
        return self.db.execute(
            "SELECT p.name, COUNT(e.id) FROM people p LEFT JOIN embeddings e ON e.person_id = p.id "
            "GROUP BY p.id ORDER BY p.name").fetchall()

    def owners(self, sha256: str) -> list[str]:
        """Names of the people enrolled from the file with this SHA-256."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT p.name FROM embeddings e JOIN people p ON p.id = e.person_id "
            "WHERE e.sha256 = ?", (sha256,))]

    def add(self, name: str, vectors: np.ndarray, sources: list[dict] | None = None) -> dict:
        """Add embeddings of one person (created if new, merged if not) in one transaction."""
        return self.add_many({name: (vectors, sources)})[check_name(name)]

    def add_many(self, items: dict[str, tuple[np.ndarray, list[dict] | None]]) -> dict[str, dict]:
        """Add several people's embeddings in one transaction (10,000 people: seconds).

        Args:
            items: {name: (vectors (n, D) float32 unit rows, sources)}; each source dict may
                hold "source" (path), "sha256", "box", "landmarks"; None for bare vectors.

        Returns:
            {name: {"added": rows inserted, "duplicates": rows skipped (same file, same person),
            "new_person": bool}}.
        """
        if not self.writable:
            raise GalleryError(f"{self.path}: open the gallery with a model to add faces "
                               "(Gallery(path, embedder.identity()))")
        dim, now, out = int(self.model["dim"]), _now(), {}
        checked = {}
        for name, (vectors, sources) in items.items():
            v = np.asarray(vectors, np.float32).reshape(-1, dim)
            if not np.isfinite(v).all():
                raise GalleryError(f"{self.path}: embeddings of {name!r} contain NaN or inf")
            checked[check_name(name)] = (v, sources or [{}] * len(v))
        with self.transaction():
            for name, (v, sources) in checked.items():
                if not len(v):  # nobody is created without a face
                    out[name] = {"added": 0, "duplicates": 0, "new_person": False}
                    continue
                cur = self.db.execute("INSERT OR IGNORE INTO people(name, created) VALUES(?, ?)",
                                      (name, now))
                pid = self.db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()[0]
                before = self.db.total_changes
                self.db.executemany(
                    "INSERT OR IGNORE INTO embeddings(person_id, vector, source, sha256, box, "
                    "landmarks, created) VALUES(?, ?, ?, ?, ?, ?, ?)",
                    [(pid, _blob(row), s.get("source"), s.get("sha256"),
                      json.dumps(s["box"]) if s.get("box") is not None else None,
                      json.dumps(s["landmarks"]) if s.get("landmarks") is not None else None, now)
                     for row, s in zip(v, sources)])
                added = self.db.total_changes - before
                out[name] = {"added": added, "duplicates": len(v) - added,
                             "new_person": cur.rowcount == 1}
        return out

    def remove(self, name: str) -> int:
        """Delete a person, their embeddings and any frames saved for them; returns rows deleted."""
        with self.transaction():
            row = self.db.execute("SELECT id FROM people WHERE name = ?", (str(name).strip(),)).fetchone()
            if row is None:
                raise GalleryError(f"{self.path}: no person {name!r} — `siamese gallery list` "
                                   "shows who is enrolled")
            n = self.db.execute("DELETE FROM embeddings WHERE person_id = ?", row).rowcount
            self.db.execute("DELETE FROM people WHERE id = ?", row)
        shutil.rmtree(self.frames_dir / str(row[0]), ignore_errors=True)  # ours, never the user's
        return n

    def remove_face(self, name: str, face_id: int) -> None:
        """Delete one embedding of `name` by its id (`sources()`); GalleryError when they have none such."""
        with self.transaction():
            if not self.db.execute("DELETE FROM embeddings WHERE id = ? AND person_id = (SELECT id FROM people "
                                   "WHERE name = ?)", (int(face_id), check_name(name))).rowcount:
                raise GalleryError(f"{self.path}: {check_name(name)!r} has no face {int(face_id)}")

    def person(self, name: str) -> np.ndarray:
        """(n, D) float32 embeddings of one person (what verification compares with).

        Raises:
            GalleryError: nobody of that name (with the command that enrols them).
        """
        name = check_name(name)
        row = self.db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        blobs = [] if row is None else [r[0] for r in self.db.execute(
            "SELECT vector FROM embeddings WHERE person_id = ? ORDER BY id", row)]
        if not blobs:
            raise GalleryError(f"{self.path}: nobody enrolled as {name!r} — run `siamese enroll "
                               f"SOURCE --person {name!r}` (or `siamese gallery list` to see who is)")
        return _matrix(blobs, int(self.model["dim"]))

    def embeddings(self) -> tuple[np.ndarray, np.ndarray, list[str], int]:
        """One consistent snapshot: (vectors (N, D) float32, labels (N,) int64 into names,
        names of the people with embeddings, revision). Loaded in one pass into one matrix."""
        dim = int(self.model["dim"]) if self.model else 0
        self.db.execute("BEGIN")  # a read transaction: WAL gives it a snapshot
        try:
            rows = self.db.execute("SELECT vector, person_id FROM embeddings "
                                   "ORDER BY person_id, id").fetchall()
            people = self.db.execute("SELECT id, name FROM people WHERE id IN (SELECT person_id "
                                     "FROM embeddings) ORDER BY name").fetchall()
            rev = self.revision
        finally:
            self.db.execute("COMMIT")
        if not rows:
            return np.zeros((0, dim), np.float32), np.zeros(0, np.int64), [], rev
        ids = np.array([p[0] for p in people])
        order = np.argsort(ids)  # label = the person's rank by name
        pid = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        labels = order[np.searchsorted(ids[order], pid)]
        return _matrix([r[0] for r in rows], dim), labels, [p[1] for p in people], rev

    def sources(self) -> list[dict]:
        """Every embedding's provenance: id, person, source, sha256, box, landmarks."""
        rows = self.db.execute("SELECT e.id, p.name, e.source, e.sha256, e.box, e.landmarks "
                               "FROM embeddings e JOIN people p ON p.id = e.person_id ORDER BY e.id")
        return [{"id": i, "person": n, "source": s, "sha256": h,
                 "box": json.loads(b) if b else None, "landmarks": json.loads(lm) if lm else None}
                for i, n, s, h, b, lm in rows]

    @property
    def frames_dir(self) -> Path:
        """Where frames captured from a camera or video are kept (the re-embed source)."""
        return self.path.with_name(self.path.name + ".frames")

    # --- derived data: calibration impostors and the SVC ----------------------------------
    def impostors(self) -> tuple[np.ndarray, list[str]]:
        rows = self.db.execute("SELECT vector, label FROM impostors ORDER BY id").fetchall()
        dim = int(self.model["dim"]) if self.model else 0
        return _matrix([r[0] for r in rows], dim) if rows else np.zeros((0, dim), np.float32), \
            [r[1] for r in rows]

    def set_impostors(self, vectors: np.ndarray, labels: list[str], source: str) -> None:
        with self.transaction(bump=False):
            self.db.execute("DELETE FROM impostors")
            self.db.executemany("INSERT INTO impostors(label, vector) VALUES(?, ?)",
                                [(lab, _blob(v)) for v, lab in zip(vectors, labels)])
            self.db.execute("DELETE FROM meta WHERE key = 'calibration'")  # measured on the old ones
            self.set("impostor_source", source)

    def classifier(self, name: str = "svc") -> dict | None:
        """{"revision", "classes", "coef" (C, D), "intercept" (C,)} as stored, or None."""
        row = self.db.execute("SELECT revision, classes, coef, intercept FROM classifier "
                              "WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        classes = json.loads(row[1])
        return {"revision": row[0], "classes": classes,
                "coef": np.frombuffer(row[2], np.float32).reshape(len(classes), -1).copy(),
                "intercept": np.frombuffer(row[3], np.float32).copy()}

    def set_classifier(self, revision: int, classes: list[str], coef: np.ndarray,
                       intercept: np.ndarray, name: str = "svc") -> None:
        with self.transaction(bump=False):
            self.db.execute("INSERT OR REPLACE INTO classifier VALUES(?, ?, ?, ?, ?)",
                            (name, revision, json.dumps(classes), _blob(coef), _blob(intercept)))

    def replace_model(self, model: dict, vectors: dict[int, np.ndarray], drop: list[int]) -> None:
        """Re-embed's commit: new vectors for `vectors`' rows, `drop` the rest, adopt `model`."""
        with self.transaction():
            self.db.executemany("UPDATE embeddings SET vector = ? WHERE id = ?",
                                [(_blob(v), i) for i, v in vectors.items()])
            self.db.executemany("DELETE FROM embeddings WHERE id = ?", [(i,) for i in drop])
            for table in ("impostors", "classifier"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("DELETE FROM meta WHERE key = 'calibration'")
            self.set("model", model)
        self.model = model
