"""Identity-level splits and anchor/positive/negative sampling for training. No TensorFlow.

A `FaceSet` is a set of face images (rows of an array) with an identity label each. Training
draws batches of pairs from it: half anchor/positive (two different images of one person, from
people with at least two images) and half anchor/negative (two people). Negatives can be made
hard by drawing the second person among those most similar to the first, given a similarity
matrix between identities (from the model's identity centres, refreshed during training).

Every draw takes an explicit `np.random.Generator`, so a seed reproduces a run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FaceSet:
    """Faces and their identities.

    Attributes:
        images: (N, S, S, 3) uint8 RGB aligned crops.
        labels: (N,) int64 identity index in [0, len(names)).
        names: identity names, index = label.
        targets: optional (N, 2, D) float32 per image: a teacher's unit embedding of the image
            and of its mirror (distillation); all zero where there is none.
        rows: optional (N,) int64 row of each image in the face cache it came from (-1: none).
        views: optional (N, K, S, S, 3) uint8: K harder copies of each image (already mirrored
            or not), with `view_targets` (N, K, D) float32, the teacher's unit embedding of each
            (`siamese.model.teacher_views`); all zero where there is none.
        extra: optional (M, S, S, 3) uint8 faces of nobody in particular (a user's own photos,
            `siamese.model.teacher_extra`), with `extra_targets` (M, 2, D) float32: the teacher's
            unit embedding of each and of its mirror. Batches swap images for them
            (`siamese.train.batches.PairBatches`' `extra_p`); they have no label.
    """

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    targets: np.ndarray | None = None
    rows: np.ndarray | None = None
    views: np.ndarray | None = None
    view_targets: np.ndarray | None = None
    extra: np.ndarray | None = None
    extra_targets: np.ndarray | None = None

    def __post_init__(self):
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(len(self.names) + 1))
        # rows of identity k: self._order[self._bounds[k]:self._bounds[k + 1]]
        self._order, self._bounds = order, bounds

    def __len__(self) -> int:
        return len(self.labels)

    def rows_of(self, label: int) -> np.ndarray:
        """(n_k,) rows holding identity `label`."""
        return self._order[self._bounds[label]:self._bounds[label + 1]]

    @property
    def counts(self) -> np.ndarray:
        """(K,) images per identity."""
        return np.diff(self._bounds)

    def subset(self, people: list[str] | set[str]) -> "FaceSet":
        """The faces of `people` only, relabelled 0..len-1 in the order of `self.names`."""
        keep_names = [n for n in self.names if n in set(people)]
        remap = {self.names.index(n): i for i, n in enumerate(keep_names)}
        mask = np.isin(self.labels, list(remap))
        labels = np.array([remap[int(k)] for k in self.labels[mask]], dtype=np.int64)
        targets, rows, views, view_targets = (None if a is None else a[mask] for a in
                                              (self.targets, self.rows, self.views, self.view_targets))
        return FaceSet(self.images[mask], labels, keep_names, targets, rows, views, view_targets)


def add_people(faces: FaceSet, images: np.ndarray, names: list[str], prefix: str = "") -> FaceSet:
    """`faces` plus new identities: `images` (M, S, S, 3) uint8 of the people in `names` (M,).

    New people get labels after the existing ones; `prefix` keeps their names apart (a user
    called "George_W_Bush" stays a different person from LFW's).
    """
    if not len(images):
        return faces
    new = sorted(set(names))
    index = {n: len(faces.names) + k for k, n in enumerate(new)}
    labels = np.concatenate([faces.labels, [index[n] for n in names]]).astype(np.int64)
    targets = None if faces.targets is None else np.concatenate(  # no teacher target for them
        [faces.targets, np.zeros((len(images), *faces.targets.shape[1:]), np.float32)])
    rows = None if faces.rows is None else np.concatenate([faces.rows, np.full(len(images), -1)])
    views, view_targets = (None if a is None else np.concatenate([a, np.zeros((len(images), *a.shape[1:]), a.dtype)])
                           for a in (faces.views, faces.view_targets))  # no harder views of them either
    return FaceSet(np.concatenate([faces.images, images]), labels,
                   faces.names + [prefix + n for n in new], targets, rows, views, view_targets)


def split_people(names: list[str], counts: np.ndarray, fraction: float,
                 rng: np.random.Generator, min_images: int = 2) -> tuple[list[str], list[str]]:
    """Hold out a share of identities (with >= `min_images` images) for validation.

    Returns:
        (train_people, val_people): disjoint; every person is in exactly one.
    """
    eligible = [n for n, c in zip(names, counts) if c >= min_images]
    n_val = int(round(fraction * len(eligible)))
    val = set(rng.choice(eligible, size=n_val, replace=False).tolist()) if n_val else set()
    return [n for n in names if n not in val], sorted(val)


def sample_pairs(faces: FaceSet, n: int, rng: np.random.Generator, positive_share: float = 0.5,
                 similar: np.ndarray | None = None, hard_share: float = 0.0) -> np.ndarray:
    """Draw `n` image pairs.

    Args:
        faces: where to draw from; positives need identities with >= 2 images.
        n: number of pairs.
        rng: the random generator.
        positive_share: fraction of same-person pairs.
        similar: optional (K, k) int array, for each identity its k most similar others.
        hard_share: fraction of the negatives whose second person comes from `similar`.

    Returns:
        (n, 3) int64: row_a, row_b, same (1/0). Shuffled.
    """
    counts = faces.counts
    multi = np.flatnonzero(counts >= 2)
    n_pos = int(round(n * positive_share)) if len(multi) else 0
    out = np.empty((n, 3), dtype=np.int64)
    # Positives: a person uniformly (so frequent people don't dominate), two distinct images.
    for i, k in enumerate(rng.choice(multi, size=n_pos) if n_pos else []):
        a, b = rng.choice(faces.rows_of(k), size=2, replace=False)
        out[i] = (a, b, 1)
    # Negatives: any image, then an image of someone else (or of a similar someone).
    n_neg = n - n_pos
    rows_a = rng.integers(0, len(faces), size=n_neg)
    n_hard = int(round(n_neg * hard_share)) if similar is not None else 0
    for j, a in enumerate(rows_a):
        la = faces.labels[a]
        if j < n_hard:
            lb = similar[la][rng.integers(0, similar.shape[1])]
        else:
            lb = la
            while lb == la:
                lb = faces.labels[rng.integers(0, len(faces))]
        out[n_pos + j] = (a, rng.choice(faces.rows_of(lb)), 0)
    return out[rng.permutation(n)]


def fixed_pairs(faces: FaceSet, n: int, seed: int) -> np.ndarray:
    """A reproducible balanced pair list (for validation): same as `sample_pairs` with a seed."""
    return sample_pairs(faces, n, np.random.default_rng(seed))


def most_similar(centres: np.ndarray, k: int) -> np.ndarray:
    """For each identity, the `k` others whose centres have the highest cosine similarity.

    Args:
        centres: (K, D) identity centres (any scale).

    Returns:
        (K, k) int64 identity indices, most similar first. Memory: one (chunk, K) block at a time.
    """
    c = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    k = min(k, len(c) - 1)
    out = np.empty((len(c), k), dtype=np.int64)
    for s in range(0, len(c), 1024):
        sim = c[s:s + 1024] @ c.T
        sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -np.inf  # not yourself
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1)
        out[s:s + 1024] = np.take_along_axis(top, order, axis=1)
    return out
