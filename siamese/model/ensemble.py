"""Several trained models as one `Embedder`: concatenated embeddings, averaged pair scores.

Models trained apart (another input size, another seed) make partly different mistakes, so their
embeddings side by side separate people better than any one of them: on unseen LFW people the
64, 80 and 96 px CPU runs together cluster at BCubed F1 0.902, the best of them alone at 0.873
(docs/benchmarks.md). The shipped model is one: the LFW-only 112 px network beside a 64 px student
distilled from dlib's descriptor (0.918 there, the LFW-only network alone 0.907; docs/distill.md).
The price is one forward pass per member.

    siamese ensemble OUT MODEL MODEL [MODEL ...]      (siamese.train.ensemble.build)

writes OUT/model.json (the members, as paths relative to OUT), people.json, and the ensemble's own
pair threshold and cluster.json, both fitted on the validation people all members held out.
`siamese.model.Embedder.load(OUT)` then loads it wherever a model path is taken
(`siamese cluster INPUT --out DIR model_path=OUT`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from siamese.faces.align import resize_faces
from siamese.model.embedder import PRECISIONS, Embedder

__all__ = ["Ensemble"]



class Ensemble(Embedder, kind="ensemble"):
    """An `Embedder` over member Embedders. Takes faces at the shared alignment size (the
    members' `cache_size`, 112 px), resizes them for each member, and returns the members' unit
    embeddings side by side, each scaled by 1/sqrt(m) so the whole is a unit vector and its
    cosine is the members' mean cosine. `score` is the members' mean head probability.

    Attributes: as `Embedder`, plus members (the member Embedders, in order).
    """

    def __init__(self, path: Path, meta: dict, members: list[Embedder]):
        self.members = members
        dims = [m.dim for m in members]
        self._cuts = np.cumsum([0, *dims])
        super().__init__(path, meta, "+".join(m.format for m in members), None, None, sum(dims))
        self.precision = meta.get("precision", "float32")  # its members'
        self.runs_in = "+".join(sorted({m.runs_in for m in members}))  # as `Embedder.runs_in`

    @classmethod
    def from_dir(cls, root: Path, meta: dict, prefer=("onnx", "keras"),
                 threads: int | None = None) -> "Ensemble":
        # The members run in turn: threads left spinning after one's run starve the next's (a single
        # face took 2.3x the members' sum with 2 threads, `siamese bench embed`), so they do not spin.
        # "precision": "int8" runs every member's int8 network (each member's quantization.json),
        # "bf16" every member's network on OpenVINO in bfloat16.
        precision = meta.get("precision", "float32")
        if precision not in PRECISIONS:
            raise ValueError(f"{root / 'model.json'}: precision is one of {', '.join(map(repr, PRECISIONS))}, "
                             f"not {precision!r}")
        members = [Embedder.load((root / p).resolve(), prefer, threads, spin=False, precision=precision)
                   for p in meta["ensemble"]]
        return cls(root, meta, members)

    def embed(self, images: np.ndarray, flip: bool = True, batch_size: int = 256) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB aligned faces at `input_size` -> (N, D) float32 unit vectors."""
        images = np.asarray(images)
        s = self.input_size
        if len(images) and (images.ndim != 4 or images.shape[1:] != (s, s, 3) or images.dtype != np.uint8):
            raise ValueError(f"expected (N, {s}, {s}, 3) uint8 RGB aligned faces, got "
                             f"{images.shape} {images.dtype}")
        parts = [m.embed(resize_faces(images, m.input_size), flip, batch_size) for m in self.members]
        return (np.concatenate(parts, 1) / np.sqrt(len(parts))).astype(np.float32)

    def _parts(self, emb: np.ndarray) -> list[np.ndarray]:
        emb = np.asarray(emb, np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) embeddings, got {emb.shape}")
        k = np.sqrt(len(self.members))
        return [emb[:, a:b] * k for a, b in zip(self._cuts[:-1], self._cuts[1:])]

    def score(self, emb_a: np.ndarray, emb_b: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(n,) float32 mean of the members' head probabilities for pairs of embeddings."""
        pa, pb = self._parts(emb_a), self._parts(emb_b)
        return np.mean([m.score(a, b, batch_size) for m, a, b in zip(self.members, pa, pb)],
                       axis=0).astype(np.float32)

    def fingerprint(self) -> str:
        """One SHA-256 over the members' fingerprints, in order."""
        if self._fingerprint is None:
            fps = ":".join(m.fingerprint() for m in self.members)
            self._fingerprint = hashlib.sha256(f"ensemble:{fps}".encode()).hexdigest()
        return self._fingerprint
