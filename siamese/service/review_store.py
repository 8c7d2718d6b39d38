"""A `siamese cluster` result under review: its manifest is the one truth, and every change
(name, merge, move, split, not a face, undo) is a new manifest that the folders then follow.

    store = ReviewStore("people/")            # ReviewError when people/ is not a cluster result
    state = store.state()                      # folders, their faces, the revision, what undo would do
    store.merge(state["revision"], "Alice", ["person_003"])
    store.undo(store.state()["revision"])

What is written, all inside the result folder:
    manifest.csv            rewritten atomically per change (`cluster` names the face's folder, `crop` its file)
    FOLDER/NAME.jpg         crops moved (renamed) between folders; nothing is copied or deleted, and
                            the user's originals (the `source` column) are never opened
    FOLDER/contact_sheet.jpg, overview.jpg   redrawn for the folders a change touched
    .review/history.json    the undo log (each change's rows before and after), written atomically
    .review/lock            held while a change is written (threads and other processes wait)

Folders: `person_NNN` (unnamed, as clustered), a person's name (`check_name`), `unassigned` and
`not_a_face`. A face is a manifest row with a crop, known by its crop's file name (unique in a
result); a video's rows without a crop (the other frames of a track) follow their track's crop.

Revisions: the revision is a hash of the manifest's bytes, so a change based on what another tab
(or an edit outside) replaced is refused (`Stale`, HTTP 409) rather than applied to the wrong state.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
import threading
import time
from pathlib import Path, PurePosixPath

from siamese.clustering.output import UNASSIGNED
from siamese.io.files import atomic_write_text
from siamese.io.names import BadName, check_name
from siamese.service import review_folders as folders
from siamese.service.review_folders import ReviewError

try:
    import fcntl  # POSIX: two processes reviewing one folder take turns
except ImportError:  # pragma: no cover - Windows: the thread lock alone
    fcntl = None

__all__ = ["NOT_A_FACE", "ReviewError", "ReviewStore", "Stale"]

NOT_A_FACE = "not_a_face"
SPECIAL = (UNASSIGNED, NOT_A_FACE)
GENERATED = re.compile(r"person_(\d+)")
NEEDED = ("crop", "source", "frame", "time_s", "face", "track", "cluster", "cosine_to_centre", "score_to_centre")
HISTORY_MAX = 500  # changes undo can walk back


class Stale(ReviewError):
    """A change based on a revision that is no longer the manifest's (another tab wrote first)."""

    def __init__(self, message: str = "the result changed since this page loaded it (another tab?) — "
                 "reload and try again"):
        super().__init__(409, message)


def _revision(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class ReviewStore:
    """One cluster result folder and the operations on it (thread-safe; one change at a time).

    Args:
        root: the `--out` folder of `siamese cluster` (holds manifest.csv).

    Raises:
        ReviewError: no manifest.csv, or a manifest row that is not a cluster result's (named by line).
    """

    def __init__(self, root: str | Path):
        root = Path(root)
        if not (root / "manifest.csv").is_file():
            raise ReviewError(404, f"{root}: not a `siamese cluster` result (no manifest.csv) — give the --out "
                              "folder of `siamese cluster`")
        self.root = root.resolve()
        self.manifest = self.root / "manifest.csv"
        self.history_path = self.root / ".review" / "history.json"
        self._lock = threading.Lock()
        with self.locked():
            header, rows, rev = self._read()
            folders.repair(self.root, [r[self.col["crop"]] for r in rows])
            self._history(rev, save=True)  # drops an entry whose change never landed

    # --- reading ---------------------------------------------------------------------------
    def _read(self) -> tuple[list[str], list[list[str]], str]:
        """(header, rows, revision), every row checked; ReviewError names the first bad one."""
        try:
            text = self.manifest.read_bytes().decode("utf-8")  # as written: csv ends lines with \r\n
        except (OSError, UnicodeDecodeError) as err:
            raise ReviewError(500, f"{self.manifest}: cannot be read ({err})") from None
        table = list(csv.reader(io.StringIO(text)))
        header = table[0] if table else []
        if missing := [c for c in NEEDED if c not in header]:
            raise ReviewError(422, f"{self.manifest}: no {', '.join(missing)} column(s) — not a `siamese cluster` "
                              "manifest")
        self.header, self.col = header, {c: i for i, c in enumerate(header)}
        rows, seen = table[1:], {}
        for n, row in enumerate(rows, start=2):
            where = f"{self.manifest} line {n}"
            if len(row) != len(header):
                raise ReviewError(422, f"{where}: {len(row)} fields, expected {len(header)} — fix or remove the "
                                  "row (a `siamese cluster` manifest has one per face)")
            folder, crop = row[self.col["cluster"]], row[self.col["crop"]]
            if not _valid_folder(folder):
                raise ReviewError(422, f"{where}: cluster {folder!r} is not a folder name (person_NNN, a person's "
                                  f"name, {UNASSIGNED} or {NOT_A_FACE})")
            if crop:
                if not folders.valid_crop(crop, folder):
                    raise ReviewError(422, f"{where}: crop {crop!r} is not a file inside its folder {folder}/")
                if (other := seen.get(PurePosixPath(crop).name)) is not None:
                    raise ReviewError(422, f"{where}: crop {crop!r} has the file name of line {other}'s")
                seen[PurePosixPath(crop).name] = n
        return header, rows, _revision(text)

    def _history(self, revision: str, save: bool = False) -> list[dict]:
        """The undo log, without a last entry that never landed (the manifest is still its `before`)."""
        try:
            hist = json.loads(self.history_path.read_text(encoding="utf-8"))
            hist = hist if isinstance(hist, list) else []
        except (OSError, ValueError):
            hist = []
        if hist and hist[-1].get("after") != revision and hist[-1].get("before") == revision:
            hist.pop()
            if save:
                atomic_write_text(self.history_path, json.dumps(hist))
        return hist

    def state(self) -> dict:
        """What the page shows: revision, kind, folders with their faces, and what undo would do.

        Returns:
            {"revision", "dir", "kind": "video" | "photos", "can_undo", "undo": label or None,
            "folders": [{"name", "kind": "person" | UNASSIGNED | NOT_A_FACE, "named": bool,
            "faces": [{"id", "source", "frame", "time_s", "track_faces"}]}]} — named people first,
            then person_NNN by number, then unassigned and not a face (both always listed).
        """
        _, rows, rev = self._read()
        return self._state(rows, rev)

    def _state(self, rows: list[list[str]], rev: str) -> dict:
        c, groups = self.col, {name: [] for name in SPECIAL}
        for row in rows:
            groups.setdefault(row[c["cluster"]], [])
            if row[c["crop"]]:
                groups[row[c["cluster"]]].append(row)
        kind = "video" if any(r[c["time_s"]] for r in rows) else "photos"
        out = []
        for name in sorted(groups, key=_folder_order):
            faces = sorted(groups[name], key=lambda r: (r[c["source"]], _num(r[c["frame"]]), _num(r[c["face"]])))
            out.append({"name": name, "kind": name if name in SPECIAL else "person", "named": _named(name),
                        "faces": [{"id": PurePosixPath(r[c["crop"]]).name, "source": r[c["source"]],
                                   "frame": r[c["frame"]], "time_s": r[c["time_s"]],
                                   "track_faces": r[c["track_faces"]] if "track_faces" in c else ""}
                                  for r in faces]})
        hist = self._history(rev)
        last = hist[-1] if hist and hist[-1].get("after") == rev else None
        return {"revision": rev, "dir": str(self.root), "kind": kind, "folders": out,
                "can_undo": last is not None, "undo": last["label"] if last else None}

    def crop_path(self, face_id: str) -> Path:
        """The file of one face, by its id (the crop's file name), checked to lie inside the folder."""
        _, rows, _ = self._read()
        crop = self._find(rows, [face_id])[0][1]
        path = self.root / crop
        if not folders.inside(self.root, path) or not path.is_file():
            raise ReviewError(404, f"face {face_id!r}: its crop {crop} is missing")
        return path

    # --- changes ---------------------------------------------------------------------------
    def name(self, revision: str, folder: str, name: str) -> dict:
        """Give `folder` (person_NNN or a named one) a person's name: its folder is renamed."""
        def change(rows):
            self._person(rows, folder)
            new = self._new_name(rows, name, folder)
            return f"name {folder} {new}", self._relabel(rows, {folder: new}, keep_scores=True)
        return self._change(revision, change)

    def merge(self, revision: str, into: str, others: list[str]) -> dict:
        """Move every face of the `others` folders into `into` (which keeps its name)."""
        def change(rows):
            if not others or into in others:
                raise ReviewError(400, "merge needs a folder to merge into and one or more other folders")
            for f in [into, *others]:
                self._person(rows, f)
            return f"merge {', '.join(others)} into {into}", self._relabel(rows, dict.fromkeys(others, into), False)
        return self._change(revision, change)

    def move(self, revision: str, faces: list[str], to: str) -> dict:
        """Move faces (and the rest of their tracks) to an existing folder, `unassigned` or `not_a_face`."""
        def change(rows):
            if to not in SPECIAL:
                self._person(rows, to)
            return f"move {_count(faces)} to {to}", self._move_rows(rows, faces, to)
        return self._change(revision, change)

    def split(self, revision: str, faces: list[str]) -> dict:
        """Move faces into a new folder person_NNN (the next free number)."""
        def change(rows):
            numbers = [int(m[1]) for r in rows if (m := GENERATED.fullmatch(r[self.col["cluster"]]))]
            to = f"person_{max(numbers, default=0) + 1:03d}"
            return f"split {_count(faces)} into {to}", self._move_rows(rows, faces, to)
        return self._change(revision, change)

    def not_a_face(self, revision: str, faces: list[str]) -> dict:
        """Mark faces as not a face: they move to `not_a_face/` (export and the gallery leave them out)."""
        return self._change(revision, lambda rows: (f"mark {_count(faces)} not a face",
                                                    self._move_rows(rows, faces, NOT_A_FACE)))

    def undo(self, revision: str) -> dict:
        """Take back the last change (across reloads and restarts: the log is in .review/)."""
        with self.locked():
            _, rows, rev = self._read()
            if revision != rev:
                raise Stale()
            hist = self._history(rev)
            if not hist or hist[-1].get("after") != rev:
                raise ReviewError(409, "nothing to undo" + (" (the manifest was changed outside the review since)"
                                                            if hist else ""))
            entry, new = hist[-1], [list(r) for r in rows]
            for i, old, _ in entry["changes"]:  # the revision matched: the rows are the entry's `after`
                new[i] = old
            self._write(rows, new)
            atomic_write_text(self.history_path, json.dumps(hist[:-1]))
            return self._state(new, _revision(self._text(new)))

    # --- the parts of a change -------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self):
        """Hold the write lock (threads of this process, and other processes on POSIX)."""
        with self._lock:
            (self.root / ".review").mkdir(exist_ok=True)
            with open(self.root / ".review" / "lock", "a") as f:
                if fcntl:
                    fcntl.flock(f, fcntl.LOCK_EX)
                yield

    def _change(self, revision: str, change) -> dict:
        """Apply `change(rows) -> (label, new rows)` to the current manifest if it is `revision`.

        Order, so that a crash anywhere leaves a consistent result: the undo entry is logged, the
        crops are moved, then the manifest is replaced. Before that last step the manifest still
        says the old state: opening the folder again moves the crops back and drops the entry.
        """
        with self.locked():
            _, rows, rev = self._read()
            if revision != rev:
                raise Stale()
            label, new = change([list(r) for r in rows])
            changes = [[i, old, row] for i, (old, row) in enumerate(zip(rows, new)) if old != row]
            if not changes:
                raise ReviewError(400, f"{label}: nothing to change")
            after = _revision(self._text(new))
            hist = [*self._history(rev), {"label": label, "before": rev, "after": after, "time": time.time(),
                                         "changes": changes}][-HISTORY_MAX:]
            atomic_write_text(self.history_path, json.dumps(hist))
            self._write(rows, new)
            return self._state(new, after)

    def _write(self, old: list[list[str]], new: list[list[str]]) -> None:
        c = self.col["crop"]
        moves = [(a[c], b[c]) for a, b in zip(old, new) if a[c] != b[c]]
        folders.move_crops(self.root, moves)
        atomic_write_text(self.manifest, self._text(new))
        touched = {r[self.col["cluster"]] for a, b in zip(old, new) if a != b for r in (a, b)}
        groups = folders.sheet_items(new, self.col)
        folders.redraw(self.root, {f: groups[f] for f in sorted(groups, key=_folder_order)}, touched)

    def _text(self, rows: list[list[str]]) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.header)
        writer.writerows(rows)
        return buf.getvalue()

    def _person(self, rows, folder: str) -> None:
        if folder in SPECIAL or not any(r[self.col["cluster"]] == folder for r in rows):
            raise ReviewError(404, f"no person folder {folder!r}")

    def _new_name(self, rows, name: str, folder: str) -> str:
        try:
            name = check_name(name)
        except BadName as err:
            raise ReviewError(400, str(err)) from None
        if name.casefold() in SPECIAL or GENERATED.fullmatch(name.casefold()):
            raise ReviewError(400, f"{name!r} is a name the review keeps for its own folders — choose a person's name")
        taken = {r[self.col["cluster"]] for r in rows} - {folder}
        if name.casefold() in {t.casefold() for t in taken}:
            raise ReviewError(409, f"a folder {name!r} exists — merge {folder} into it instead")
        if (self.root / name).exists() and name != folder:
            raise ReviewError(409, f"{self.root / name} exists and is not a person folder — choose another name")
        return name

    def _relabel(self, rows, mapping: dict[str, str], keep_scores: bool) -> list[list[str]]:
        for r in rows:
            if (to := mapping.get(r[self.col["cluster"]])) is not None:
                self._set_folder(r, to, keep_scores)
        return rows

    def _move_rows(self, rows, faces: list[str], to: str) -> list[list[str]]:
        c, moved = self.col, set()
        for i, _ in self._find(rows, faces):
            moved.add((rows[i][c["source"]], rows[i][c["track"]]))
            self._set_folder(rows[i], to)
        for r in rows:  # a video track's other frames (no crop of their own) follow its crop
            if not r[c["crop"]] and (r[c["source"]], r[c["track"]]) in moved:
                self._set_folder(r, to)
        return rows

    def _set_folder(self, row: list[str], to: str, keep_scores: bool = False) -> None:
        c = self.col
        row[c["cluster"]] = to
        if crop := row[c["crop"]]:
            parts = PurePosixPath(crop).parts
            row[c["crop"]] = "/".join([to, *parts[1:]])  # keeps a track's all/ sub-folder
        if not keep_scores:  # distances to the old folder's centre no longer describe the face
            row[c["cosine_to_centre"]] = row[c["score_to_centre"]] = ""

    def _find(self, rows, faces: list[str]) -> list[tuple[int, str]]:
        """(row index, crop) of each face id; ReviewError for an unknown one."""
        if not faces or not all(isinstance(f, str) for f in faces):
            raise ReviewError(400, "select one or more faces")
        index = {PurePosixPath(r[self.col["crop"]]).name: i for i, r in enumerate(rows) if r[self.col["crop"]]}
        out = []
        for f in dict.fromkeys(faces):
            if f not in index:
                raise ReviewError(404, f"no face {f!r} in this result")
            out.append((index[f], rows[index[f]][self.col["crop"]]))
        return out

    # --- what leaves the folder ------------------------------------------------------------
    def named(self) -> dict[str, list[Path]]:
        """{name: [crop files]} of every named person (no person_NNN, unassigned or not a face)."""
        _, rows, _ = self._read()
        out = {}
        for r in rows:
            folder, crop = r[self.col["cluster"]], r[self.col["crop"]]
            if crop and _named(folder) and folders.inside(self.root, self.root / crop):
                out.setdefault(folder, []).append(self.root / crop)
        return out

    def people(self) -> tuple[str, dict[str, tuple[bool, list[Path]]], set[frozenset[str]]]:
        """(revision, {item: (named, [crop files])} of every person folder and each unassigned face
        ("unassigned/CROP"), and the pairs of them seen together: `review_folders.alike_items`)."""
        _, rows, rev = self._read()
        crops, apart = folders.alike_items(self.root, rows, self.col, UNASSIGNED, (NOT_A_FACE,))
        return rev, {f: ("/" not in f and _named(f), c) for f, c in crops.items()}, apart  # "unassigned/CROP": a face

    def export(self, out: str | Path) -> dict:
        """Copy the named people's crops to `out/NAME/*.jpg` (for `siamese gallery import` and
        training's `own_faces=`); `out` must not exist or be empty. Returns {"out", "people": {name: n}}."""
        with self.locked():  # no crop moves while they are copied
            people = self.named()
            if not people:
                raise ReviewError(400, "no named people yet — name a folder first")
            return {"out": str(folders.export(Path(out), people)), "people": {k: len(v) for k, v in people.items()}}


def _valid_folder(name: str) -> bool:
    if name in SPECIAL or GENERATED.fullmatch(name):
        return True
    try:
        return check_name(name) == name
    except BadName:
        return False


def _named(folder: str) -> bool:
    return folder not in SPECIAL and not GENERATED.fullmatch(folder)


def _folder_order(name: str):
    if name in SPECIAL:
        return (2, SPECIAL.index(name), "")
    if m := GENERATED.fullmatch(name):
        return (1, int(m[1]), name)
    return (0, 0, name.casefold())


def _num(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def _count(faces: list) -> str:
    return f"{len(faces)} face" + ("s" if len(faces) != 1 else "")
