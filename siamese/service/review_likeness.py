"""Which person folders and unassigned faces of a review may be one person: the page's "May be the
same person" list.

    likeness = Likeness(engine, stored=read_crop_embeddings(root, engine.model.fingerprint()))
    likeness.pairs({"person_001": (False, [crop, ...]), "unassigned/x.jpg": (False, [crop])}, apart={...})

Each crop stands for the faces `siamese cluster` saved for it with the same model (a video track's
best crop: every face of the track, as the command compared them), else for its largest face, found
again in the crop as enrolling does, embedded once and kept in memory. An item (a folder, or an
unassigned face) stands for the sum of its faces' unit embeddings, and the
pairs are `siamese.clustering.alike.alike_pairs`: the mean cosine over two items' cross pairs of faces
(average linkage, what the default clustering merges by), most alike first, at most `top`, only those
at or above the bar two big groups need to merge (the model's cluster.json `floor`; without one, any,
and "bar" is null), never two named folders (the user has told them apart) nor two items whose faces
were seen together in one photo or frame (`apart`) or that the user said are two people (`NotSame`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from siamese.clustering.alike import alike_bar, alike_pairs
from siamese.io.files import atomic_write_text
from siamese.io.images import ImageError, decode_image
from siamese.model.centre import centring
from siamese.service.engine import NoFace, Upload

__all__ = ["Likeness", "NotSame"]


class NotSame:
    """Pairs of folders the user said are two people ("Not the same"), kept in
    `DIR/.review/not_same.json` as pairs of faces (crop file names, one of each folder), so that a
    pair stays apart after renames, merges into other folders, reloads and restarts: two folders are
    apart while one holds a face of a recorded pair and the other its partner. Written atomically
    under the review's lock (`ReviewStore.locked`); a missing or unreadable file is no pairs.
    """

    def __init__(self, store):
        self.store, self.path = store, store.root / ".review" / "not_same.json"

    def faces(self) -> list[tuple[str, str]]:
        """The recorded pairs of face ids (crop file names), oldest first."""
        try:
            pairs = json.loads(self.path.read_text(encoding="utf-8"))
            return [(str(a), str(b)) for a, b in pairs]
        except (OSError, ValueError, TypeError):
            return []

    def add(self, a: list[Path], b: list[Path]) -> tuple[int, tuple[str, str]]:
        """Record the folders with crops `a` and `b` as two people; returns (how many pairs are kept,
        the pair of faces recorded: what `forget` takes to take this one back)."""
        pair = (a[0].name, b[0].name)
        with self.store.locked():
            pairs = [*self.faces(), pair]
            atomic_write_text(self.path, json.dumps(pairs))
        return len(pairs), pair

    def forget(self, pair: tuple[str, str] | None = None) -> int:
        """Every pair listed again, or only `pair` (the faces `add` recorded, either order); returns
        how many pairs are kept."""
        with self.store.locked():
            gone = None if pair is None else set(pair)
            kept = [] if gone is None else [p for p in self.faces() if set(p) != gone]
            atomic_write_text(self.path, json.dumps(kept))
        return len(kept)

    def folders(self, people: dict[str, tuple[bool, list[Path]]], faces: list[tuple[str, str]]
                ) -> set[frozenset[str]]:
        """The pairs of `people`'s items that hold a recorded pair's two faces (`faces`: `self.faces()`)."""
        folder_of = {p.name: f for f, (_, crops) in people.items() for p in crops}
        return {frozenset((folder_of[x], folder_of[y])) for x, y in faces
                if x in folder_of and y in folder_of and folder_of[x] != folder_of[y]}


class Likeness:
    """Embeddings of a review's crops, kept in memory by file name, size and modification time (a
    crop moved between folders keeps all three), and the folder pairs they make alike.

    Args:
        engine: the server's `siamese.service.engine.Engine` (its `largest` and `model`).
        top: at most this many pairs are listed.
        stored: {crop file name: (mean embedding of the faces it stands for, their number)} that
            `siamese cluster` saved with the same model (`siamese.clustering.output.read_crop_embeddings`):
            those crops are not embedded again.
    """

    def __init__(self, engine, top: int = 8, stored: dict[str, tuple[np.ndarray, int]] | None = None):
        self.engine, self.top, self.stored = engine, int(top), stored or {}
        self._cache: dict[tuple[str, int, int], np.ndarray | None] = {}
        self._lock = threading.Lock()  # one computation at a time; a second caller then finds the cache
        self.bar = alike_bar(engine.model)
        self.space = centring(engine.model)  # the space the bar (cluster.json's floor) was fitted in
        self.done, self.total = 0, 0  # crops looked at / to look at in the computation under way (`progress`)

    def progress(self) -> dict:
        """{"done", "total"}: crops looked at so far / in all, in the computation under way (or the last
        one); read without waiting for it, so that the page can say how far a first embedding is."""
        return {"done": self.done, "total": self.total}

    def faces(self, path: Path) -> tuple[np.ndarray, int] | None:
        """((D,) sum of the unit embeddings of the faces the crop at `path` stands for, their number):
        what `siamese cluster` saved for it (its track's faces, as clustered), else its largest face
        found again and embedded (one face); None when the detector finds no face in it. Raises
        OSError / ImageError for a file that cannot be read."""
        st = path.stat()  # a crop gone since the manifest was read: OSError, counted unreadable
        if path.name in self.stored:
            mean, n = self.stored[path.name]
            return mean * n, n
        key = (path.name, st.st_size, st.st_mtime_ns)
        if key not in self._cache:
            data = path.read_bytes()
            try:  # the largest face, as enrolling a crop does
                self._cache[key] = self.engine.largest(Upload.of(path.name, data, decode_image(data, path)))[1]
            except NoFace:
                self._cache[key] = None
        e = self._cache[key]
        return None if e is None else (e, 1)

    def pairs(self, folders: dict[str, tuple[bool, list[Path]]], apart: set[frozenset[str]] | None = None) -> dict:
        """The items most alike (`siamese.clustering.alike.alike_pairs`).

        Args:
            folders: {item: (named, [crop files])}: the person folders and each unassigned face
                ("unassigned/CROP"), as `ReviewStore.people` gives them.
            apart: pairs of items known to be different people (seen together, or marked not the same).

        Returns:
            {"pairs": [{"folders": [keep, other], "likeness": mean cosine, "faces": [n_keep, n_other]}],
            most alike first; "bar": the floor listed pairs reach, or None; "faces": the faces compared;
            "no_face": crops in which no face was found; "unreadable": crops that could not be read}.
        """
        with self._lock:
            names, named, item, crop_sums, crop_faces, no_face, unreadable = [], [], [], [], [], 0, 0
            self.done, self.total = 0, sum(len(crops) for _, crops in folders.values())
            for folder, (is_named, crops) in folders.items():
                found_any = False
                for path in crops:
                    self.done += 1
                    try:
                        found = self.faces(path)
                    except (OSError, ImageError):
                        unreadable += 1
                        continue
                    if found is None:
                        no_face += 1
                        continue
                    item.append(len(names))
                    crop_sums.append(found[0])
                    crop_faces.append(found[1])
                    found_any = True
                if found_any:
                    names.append(folder)
                    named.append(bool(is_named))
        pairs, counts = [], np.zeros(len(names))
        if names:  # each crop in the model's clustering space (one batch), then summed per item
            crop_sums = np.asarray(crop_sums, np.float64)
            if self.space is not None:
                crop_sums = self.space.sums(crop_sums)[1]
            sums = np.zeros((len(names), crop_sums.shape[1]))
            np.add.at(sums, item, crop_sums)
            np.add.at(counts, item, crop_faces)
            pairs = alike_pairs(names, sums, counts, bar=self.bar, named=named, apart=apart, top=self.top)
        return {"pairs": pairs, "bar": self.bar, "faces": int(counts.sum()), "no_face": no_face,
                "unreadable": unreadable}
