"""Clustering a face index (`siamese index`) instead of photos: `siamese cluster INDEX.parquet --out people/`.

The index already holds every face's box, landmarks, quality and embedding, so nothing is detected
or embedded again: the rows are streamed by Parquet row group into one (n, D) array and the faces'
few fields, clustered exactly as `siamese.clustering.group.cluster` clusters a photo folder (each
face one item; two faces of one photo or frame never share a person; agglomerative on the kNN
shortlist, no n x n matrix), and written as the same person folders, contact sheets, overview and
manifest, so `siamese review` works on the result. The crops are cut again from the source files at
the stored landmarks (each file read once); a source that is gone or changed since it was indexed
(its SHA-256 differs) gets grey crops and one warning line. Video rows are clustered face by face
(an index has no tracks). Memory: the embeddings (n x D x 4 bytes) plus about 1 kB per face.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from siamese.clustering.appearances import FaceItem
from siamese.clustering.group import _check_out, group_and_write
from siamese.clustering.output import write_table
from siamese.clustering.settings import resolve
from siamese.faces.align import align, face_inside
from siamese.faces.detect import Face
from siamese.io.files import atomic_write_text, file_digest, flat_name, safe_name, staged_dir
from siamese.io.images import ImageError, read_image, write_image
from siamese.io.video import FrameSource, SourceError
from siamese.library.table import open_index

__all__ = ["cluster_index", "index_faces"]

log = logging.getLogger(__name__)

_FIELDS = ["source", "frame", "time_s", "face", "score", "box", "landmarks", "image_w", "image_h", "frontalness",
           "sharpness", "sha256", "label"]


def _crop_stem(source: str, frame: int, time_s: float) -> str:
    if frame < 0:
        return flat_name(source)
    return safe_name(f"{flat_name(Path(source).with_suffix('').as_posix())}_f{frame:06d}_t{time_s:.1f}s")


def index_faces(index, crop_padding: float = 0.0) -> tuple[list[FaceItem], list[str], dict]:
    """The index's faces as `FaceItem`s (one track each), streamed by row group.

    Returns:
        (items, sha256 of each item's source, the index's `_index.json`).
    """
    idx = open_index(index)
    emb = idx.embeddings()
    items, shas, i = [], [], 0
    for b in idx.batches(_FIELDS):
        for j in range(len(b["source"])):
            frame = int(b["frame"][j])
            face = Face(b["box"][j].copy(), b["landmarks"][j].reshape(5, 2).copy(), float(b["score"][j]))
            t = float(b["time_s"][j])
            items.append(FaceItem(b["source"][j], frame if frame >= 0 else "", round(t, 2) if frame >= 0 else "",
                                  int(b["face"][j]), face, emb[i], float(b["sharpness"][j]),
                                  float(b["frontalness"][j]),
                                  f"{_crop_stem(b['source'][j], frame, t)}_face{int(b['face'][j])}.jpg", track=i,
                                  label=b["label"][j],
                                  inside=face_inside(face, (int(b["image_h"][j]), int(b["image_w"][j])), crop_padding)))
            shas.append(b["sha256"][j])
            i += 1
    # Shards are named by hash, so read in no useful order: put the faces in the order a photo folder
    # or a video gives them (by path, frame, rank), which decides ties between equal groups as `cluster` does.
    order = sorted(range(len(items)), key=lambda n: (items[n].source, items[n].frame != "", items[n].frame or 0,
                                                     items[n].k))
    items, shas = [items[n] for n in order], [shas[n] for n in order]
    for n, it in enumerate(items):
        it.track = n
    return items, shas, idx.meta


def _cut_crops(items: list[FaceItem], shas: list[str], root: Path, staging: Path, size: int, padding: float,
               progress: bool) -> int:
    """Every item's crop into `staging`, cut from its source file; returns how many sources failed."""
    from tqdm import tqdm

    by_source: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_source.setdefault(it.source, []).append(i)
    failed = 0
    for source, idx in tqdm(by_source.items(), desc="crops", unit="source", disable=not progress):
        path, grey = root / source, np.full((size, size, 3), 128, np.uint8)
        try:
            if file_digest(path) != shas[idx[0]]:
                raise ValueError("changed since it was indexed (SHA-256 differs)")
            if items[idx[0]].frame == "":
                images = {"": read_image(path)}
            else:
                wanted = {items[i].frame for i in idx}
                with FrameSource(str(path)) as src:
                    images = {fr.index: fr.image for fr in src if fr.index in wanted}
        except (OSError, ValueError, ImageError, SourceError) as err:
            log.warning("%s: no crops from it (%s) — grey crops instead", path, err)
            images, failed = {}, failed + 1
        for i in idx:
            image = images.get(items[i].frame)
            crop = align(image, items[i].face.landmarks, size, padding) if image is not None else grey
            write_image(staging / items[i].crop_name, crop)
    return failed


def _photo_labels(items: list[FaceItem], labels: bool) -> None:
    """As `cluster` labels a photo folder: a photo is about its largest face, which alone keeps its
    folder as label (and without `labels`, none does)."""
    best: dict[str, tuple[float, int]] = {}
    for i, it in enumerate(items):
        area = float(it.face.box[2] * it.face.box[3])
        if labels and it.frame == "" and it.label and area > best.get(it.source, (-1.0, -1))[0]:
            best[it.source] = (area, i)
    keep = {i for _, i in best.values()}
    for i, it in enumerate(items):
        if i not in keep:
            it.label = ""


def cluster_index(index: str | os.PathLike, out: str | os.PathLike, embedder, *, algorithm: str = "agglomerative",
                  threshold: float | None = None, floor: float | None = None, k: int = 10, eps: float | None = None,
                  min_samples: int | None = None, labels: bool = False, overwrite: bool = False,
                  min_sharpness: float = 10.0, crop_size: int = 112, crop_padding: float = 0.0, seed: int = 0,
                  progress: bool = True) -> dict:
    """`siamese.clustering.group.cluster` for a face index: the same settings, output and summary
    (plus "index"); the embedder must be the one the index was built with (its fingerprint).

    Raises:
        ValueError: the index was built with another model; FileExistsError: as `cluster`.
    """
    index, out = Path(index), Path(out)
    _check_out(index, out, overwrite)
    items, shas, meta = index_faces(index, crop_padding)
    if meta.get("model") != embedder.fingerprint():
        raise ValueError(f"{index} was built with another model ({meta.get('model_path')}) — pass "
                         f"model_path={meta.get('model_path')} or index again with this one")
    _photo_labels(items, labels)
    algorithm, settings, sources = resolve(embedder, algorithm, threshold=threshold, floor=floor, eps=eps,
                                           min_samples=min_samples)
    with staged_dir(out) as tmp:
        t0 = time.perf_counter()
        failed = _cut_crops(items, shas, Path(meta["root"]), tmp / "_staging", crop_size, crop_padding, progress)
        t1 = time.perf_counter()
        rows, people, cluster_s = group_and_write(tmp, items, embedder, algorithm, settings, sources, k=k,
                                                  seed=seed, min_sharpness=min_sharpness, keep_all_crops=False,
                                                  labels=labels)
        summary = {"task": "cluster", "input": str(index), "kind": "index", "index": str(index),
                   "sources": len(set(shas)), "frames": len({(it.source, it.frame) for it in items}), "cuts": 0,
                   **people, "every_s": meta.get("every_s"), "model": str(embedder.path),
                   "errors": failed, "errors_by_reason": {"source_gone_or_changed": failed} if failed else {},
                   "seconds": {"crops": round(t1 - t0, 2), "cluster": cluster_s}}
        write_table(tmp / "manifest.csv", rows)
        summary["seconds"]["total"] = round(time.perf_counter() - t0, 2)
        atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2))
    log.info("%s: %d faces -> %d people, %d unassigned -> %s", index, len(items), summary["people"],
             summary["unassigned"], out)
    return summary
