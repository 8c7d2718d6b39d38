"""Several trained models as one: concatenated embeddings, averaged pair scores.

Models trained apart (another input size, another seed) make partly different mistakes, so their
embeddings side by side separate people better than any one of them: on unseen LFW people the
64, 80 and 96 px CPU runs together cluster at BCubed F1 0.902, the best of them alone at 0.873
(docs/benchmarks.md; the shipped 112 px model alone now reaches 0.907). The price is one forward
pass per member.

    python -m siamese.ensemble OUT MODEL MODEL [MODEL ...] [--cache DIR] [--lfw ROOT]

writes OUT/model.json (the members, as paths relative to OUT), people.json, and the ensemble's own
pair threshold and cluster.json, both fitted on the validation people all members held out.
`siamese.export.Embedder.load(OUT)` then loads it wherever a model path is taken
(`siamese cluster INPUT --out DIR model_path=OUT`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from siamese.export import Embedder
from siamese.faces import resize_faces
from siamese.images import atomic_write_text

__all__ = ["Ensemble", "build", "main"]

log = logging.getLogger(__name__)


class Ensemble(Embedder):
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

    @classmethod
    def from_dir(cls, root: Path, meta: dict, prefer=("onnx", "keras"),
                 threads: int | None = None) -> "Ensemble":
        members = [Embedder.load((root / p).resolve(), prefer, threads) for p in meta["ensemble"]]
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


def _people(members: list[Embedder]) -> dict:
    """Who any member saw, and the validation people every member held out."""
    from siamese.calibration import validation_people
    from siamese.evaluate import seen_people

    seen, validation = set(), None
    for m in members:
        held_out = set(validation_people(m.path))  # the ensemble's thresholds are fitted on these
        seen |= seen_people(m.path)
        validation = held_out if validation is None else validation & held_out
    if not validation or len(validation) < 2:
        raise ValueError("the members share fewer than two validation people — train them with "
                         "the same seed and val_fraction (their split of DevTrain)")
    return {"dataset": "lfw", "seen": sorted(seen), "validation": sorted(validation)}


def build(out: str | os.PathLike, models: list[str | os.PathLike], lfw_root=None, *,
          cache_dir=None, detector=None, overwrite: bool = False, seed: int = 0) -> Ensemble:
    """Make an ensemble dir `out` from trained models and fit its thresholds.

    The pair threshold (`Embedder.threshold`) is the best-accuracy cut on all same-person pairs
    of the shared validation people and as many random different-person pairs; cluster.json
    comes from `siamese.calibration.calibrate_clustering` on the same faces.

    Args:
        out: the new dir; must not hold a model unless `overwrite`.
        models: two or more model dirs (run dirs, model/ or export dirs), same alignment.
        lfw_root, cache_dir, detector: where the validation faces come from (as for
            `siamese.calibration.calibrate`).
        seed: for the different-person pairs.

    Raises:
        ValueError: fewer than two models, different alignments, no shared validation people.
        FileExistsError: `out` holds a model and not `overwrite`.
    """
    from siamese.calibration import calibrate_clustering, validation_faces
    from siamese.metrics import best_threshold

    out = Path(out)
    if len(models) < 2:
        raise ValueError("an ensemble needs two or more models")
    if (out / "model.json").exists() and not overwrite:
        raise FileExistsError(f"{out} holds a model — pass overwrite=True (--overwrite)")
    members = [Embedder.load(m) for m in models]
    aligns = {json.dumps(m.meta.get("alignment", {}), sort_keys=True) for m in members}
    if len(aligns) != 1:
        raise ValueError(f"the models were aligned differently ({sorted(aligns)}): one ensemble "
                         "needs one alignment")
    align = members[0].meta["alignment"]
    people = _people(members)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"input_size": int(align.get("cache_size", 112)), "colour": "RGB", "range": "uint8 in",
            "alignment": align, "threshold": 0.5, "flip_tta": True,
            "ensemble": [os.path.relpath(Path(m.path).resolve(), out.resolve()) for m in members]}
    ens = Ensemble(out, meta, members)
    faces, labels = validation_faces(ens, people["validation"], lfw_root, cache_dir=cache_dir,
                                     detector=detector)
    emb = ens.embed(faces)
    i, j = np.triu_indices(len(emb), 1)
    same = labels[i] == labels[j]
    rng = np.random.default_rng(seed)
    diff = rng.choice(np.flatnonzero(~same), min(int(same.sum()), int((~same).sum())), replace=False)
    pick = np.r_[np.flatnonzero(same), diff]
    meta["threshold"], acc = best_threshold(ens.score(emb[i[pick]], emb[j[pick]]), same[pick])
    meta["threshold_from"] = (f"validation people held out of every member: best accuracy "
                              f"{acc:.4f} on {len(pick)} pairs")
    ens.threshold = float(meta["threshold"])
    atomic_write_text(out / "people.json", json.dumps(people))
    atomic_write_text(out / "model.json", json.dumps(meta, indent=2))
    calibrate_clustering(ens, faces=faces, labels=labels, overwrite=True)
    log.info("%s: %d members, pair threshold %.3f", out, len(members), ens.threshold)
    return ens


def main(argv: list[str] | None = None) -> None:
    """`python -m siamese.ensemble OUT MODEL MODEL [...] [--cache DIR] [--lfw ROOT] [--overwrite]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m siamese.ensemble",
                                     description="combine trained models into one ensemble dir")
    parser.add_argument("out")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--lfw", default=None, help="LFW root (default: LFW_ROOT or data/lfw)")
    parser.add_argument("--cache", default=None, help="aligned LFW face cache (much faster)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ens = build(args.out, args.models, args.lfw, cache_dir=args.cache, overwrite=args.overwrite)
        print(f"{args.out}: {len(ens.members)} members, {ens.dim}-d, pair threshold "
              f"{ens.threshold:.3f}; cluster.json written")
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
