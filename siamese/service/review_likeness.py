"""Which person folders of a review may be one person: the page's "May be the same person" list.

    likeness = Likeness(engine)                       # the server's model and detector
    likeness.pairs({"person_001": (False, [crop, ...]), "Ann": (True, [...]), ...})

Clustering splits a person when his faces fall into groups that are each tighter than the bar
between them (a frontal track and a head-down one; docs/benchmarks.md). Such splits are found
again by the same measure the default clustering merges by: each crop is embedded once (its
largest face, found again as enrolling does), a folder stands for the sum of its faces' unit
embeddings, and two folders' likeness is the mean cosine over their cross pairs of faces (average
linkage, `siamese.clustering.linkage`). Merging two folders therefore gives the merged one the
faces-weighted mean of their likenesses to a third.

Listed: the most alike pairs first, at most `top`, only those at or above the bar two big groups
need to merge (the model's cluster.json `floor`: a pair below it would not merge in clustering at
any size); without a cluster.json for the model, the most alike pairs whatever their likeness, and
"bar" is null. Pairs of two named folders are left out: the user has told them apart.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from siamese.clustering.settings import clustering_settings
from siamese.io.images import ImageError, read_image

__all__ = ["Likeness"]


class Likeness:
    """Embeddings of a review's crops, kept in memory by file name, size and modification time (a
    crop moved between folders keeps all three), and the folder pairs they make alike.

    Args:
        engine: the server's `siamese.service.engine.Engine` (its `faces` and `model`).
        top: at most this many pairs are listed.
    """

    def __init__(self, engine, top: int = 8):
        self.engine, self.top = engine, int(top)
        self._cache: dict[tuple[str, int, int], np.ndarray | None] = {}
        self._lock = threading.Lock()  # one computation at a time; a second caller then finds the cache
        cal = clustering_settings(engine.model)
        self.bar = float(cal["floor"]) if cal else None

    def embedding(self, path: Path) -> np.ndarray | None:
        """(D,) unit embedding of the largest face in the crop at `path`; None when the detector
        finds no face in it. Raises OSError / ImageError for a file that cannot be read."""
        st = path.stat()
        key = (path.name, st.st_size, st.st_mtime_ns)
        if key not in self._cache:
            rgb = read_image(path)
            faces = self.engine.faces(rgb)
            face = max(faces, key=lambda f: float(f.box[2] * f.box[3])) if faces else None
            self._cache[key] = None if face is None else self.engine.model.embed_faces(rgb, [face])[0]
        return self._cache[key]

    def pairs(self, folders: dict[str, tuple[bool, list[Path]]]) -> dict:
        """The person folders most alike.

        Args:
            folders: {folder: (named, [crop files])} of the person folders (not unassigned or not a face).

        Returns:
            {"pairs": [{"folders": [a, b], "likeness": mean cosine, "faces": [faces of a, of b]}],
            most alike first; a is the named one, else the one with more faces (the folder to keep
            when merging); "bar": the floor listed pairs reach, or None; "faces": crops embedded;
            "no_face": crops in which no face was found; "unreadable": crops that could not be read}.
        """
        with self._lock:
            names, named, sums, counts, no_face, unreadable = [], [], [], [], 0, 0
            for folder, (is_named, crops) in folders.items():
                embs = []
                for path in crops:
                    try:
                        e = self.embedding(path)
                    except (OSError, ImageError):
                        unreadable += 1
                        continue
                    if e is None:
                        no_face += 1
                    else:
                        embs.append(e)
                if embs:
                    names.append(folder)
                    named.append(bool(is_named))
                    sums.append(np.sum(embs, axis=0, dtype=np.float64))
                    counts.append(len(embs))
        out = {"pairs": [], "bar": self.bar, "faces": int(sum(counts)), "no_face": no_face,
               "unreadable": unreadable}
        if len(names) < 2:
            return out
        means = np.stack(sums) / np.asarray(counts, np.float64)[:, None]
        like = means @ means.T  # (F, F): mean cosine over each pair of folders' cross pairs of faces
        i, j = np.triu_indices(len(names), 1)
        keep = ~(np.asarray(named)[i] & np.asarray(named)[j])
        if self.bar is not None:
            keep &= like[i, j] >= self.bar
        i, j = i[keep], j[keep]
        for n in np.argsort(-like[i, j], kind="stable")[: self.top]:
            a, b = int(i[n]), int(j[n])
            if (named[b], counts[b]) > (named[a], counts[a]):
                a, b = b, a
            out["pairs"].append({"folders": [names[a], names[b]], "likeness": round(float(like[a, b]), 4),
                                 "faces": [counts[a], counts[b]]})
        return out
