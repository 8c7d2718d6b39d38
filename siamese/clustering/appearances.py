"""Faces in, with where they came from: every face of a photo folder, or the faces of a video
linked into tracks (one person's continuous appearance).

Each face is aligned twice: once as the model saw faces in training (`embed_faces`) and once at
the size the user looks at (`crop_size`, `crop_padding`), which is saved into a staging folder.
Tracks link a face to one in the previous sampled frame when the boxes overlap and the model
says "same person", each being the other's best match; a camera cut (the frames' colour
histograms differ) ends every track.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from siamese.faces.align import align, face_inside, sharpness
from siamese.faces.detect import Detector, Face, box_iou, frontalness
from siamese.io.files import flat_name, safe_name
from siamese.io.images import iter_images, list_images, write_image
from siamese.io.video import FrameSource, is_video

log = logging.getLogger(__name__)

CUT_CORRELATION = 0.5  # HSV-histogram correlation of consecutive samples below this = a new shot
TRACK_IOU = 0.2        # boxes in consecutive samples overlapping at least this may be one face
FULLY_INSIDE = 1.0 - 1e-9  # `FaceItem.inside` of a face whose box and crop are wholly in the image


@dataclass
class FaceItem:
    """One detected face: where it came from, its embedding, and the track it belongs to.

    Attributes:
        source: the photo's path relative to the input folder, or the video's file name.
        frame, time_s: frame index and seconds in a video; "" for photos.
        k: the face's rank among the detections of its photo or frame (0 = best score).
        face: the detection (box and landmarks in source pixels).
        emb: (D,) float32 unit embedding.
        sharpness: `sharpness` of the saved crop; frontal: `siamese.faces.frontalness`.
        crop_name: file name of its crop in the staging folder.
        track: its track id (photos: one track per face).
        label: the person folder of a labelled photo's largest face, else "".
        inside: share of the face inside the image (`siamese.faces.align.face_inside` for the
            saved crop: a face cut by the border gets smeared edge pixels in its crop).
    """

    source: str
    frame: int | str
    time_s: float | str
    k: int
    face: Face
    emb: np.ndarray
    sharpness: float
    frontal: float
    crop_name: str
    track: int = -1
    label: str = ""
    inside: float = 1.0


def _histogram(image: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(cv2.resize(image, (160, 90), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1], None, [32, 32], [0, 180, 0, 256])
    return cv2.normalize(h, h)


def link(prev: list[FaceItem], cur: list[FaceItem], score_fn, threshold: float) -> dict[int, int]:
    """Which face of the previous sample each current face continues: {cur index: prev index}.

    A pair links when the model says "same person" (score >= threshold), each is the other's
    best-scoring match, and the boxes overlap (IoU >= TRACK_IOU). Overlap alone is not enough:
    in a camera pan one person's new box lands on where a neighbour was (seen in the news
    sample clip at 0.5 s sampling), while the faces' own scores stay 0.85-0.99 for the same
    person and mostly under 0.3 for another. A missed link only splits a track, which
    clustering joins again; a wrong one would mix two people in one crop set.
    """
    if not prev or not cur:
        return {}
    ov = box_iou(np.stack([p.face.box for p in prev]), np.stack([c.face.box for c in cur]))
    a, b = np.meshgrid(np.arange(len(prev)), np.arange(len(cur)), indexing="ij")
    s = np.asarray(score_fn(np.stack([prev[i].emb for i in a.ravel()]),
                            np.stack([cur[j].emb for j in b.ravel()]))).reshape(ov.shape)
    best_cur, best_prev = s.argmax(1), s.argmax(0)
    return {int(j): int(i) for i, j in enumerate(best_cur)
            if best_prev[j] == i and s[i, j] >= threshold and ov[i, j] >= TRACK_IOU}


def _faces_of_image(embedder, image, faces, source, frame, time_s, stem, crop_size, crop_padding,
                    staging: Path) -> list[FaceItem]:
    if not faces:
        return []
    embs = embedder.embed_faces(image, faces)
    items = []
    for k, (face, e) in enumerate(zip(faces, embs)):
        crop = align(image, face.landmarks, crop_size, crop_padding)
        name = f"{stem}_face{k}.jpg"
        write_image(staging / name, crop)
        items.append(FaceItem(source, frame, time_s, k, face, e, sharpness(crop), frontalness(face),
                              name, inside=face_inside(face, image.shape, crop_padding)))
    return items


def gather_faces(input: Path, embedder, detector: Detector, staging: Path, every_s: float = 1.0,
                  crop_size: int = 112, crop_padding: float = 0.0, labels: bool = False,
                  exclude: tuple[Path, ...] = (), progress: bool = True) -> tuple[list[FaceItem], Counter, Counter]:
    """Detect, align, embed (and for videos track) every face; crops go to `staging`.

    Returns:
        (faces with `track` set, counts {"sources", "frames"}, errors by reason).
    """
    from tqdm import tqdm

    items: list[FaceItem] = []
    counts, errors = Counter(), Counter()
    if is_video(input):
        counts["sources"] = 1
        prev: list[FaceItem] = []
        prev_hist, n_tracks = None, 0
        with FrameSource(str(input), every_s=every_s) as src:
            for fr in tqdm(src, desc="frames", unit="frame", disable=not progress):
                counts["frames"] += 1
                hist = _histogram(fr.image)
                cut = prev_hist is not None and cv2.compareHist(prev_hist, hist, cv2.HISTCMP_CORREL) < CUT_CORRELATION
                counts["cuts"] += cut
                prev_hist = hist
                cur = _faces_of_image(embedder, fr.image, detector.detect(fr.image), input.name, fr.index,
                                      round(fr.time_s, 2), safe_name(f"{input.stem}_f{fr.index:06d}_t{fr.time_s:.1f}s"),
                                      crop_size, crop_padding, staging)
                links = {} if cut else link(prev, cur, embedder.score, embedder.threshold)
                for c, item in enumerate(cur):
                    if c in links:
                        item.track = prev[links[c]].track
                    else:
                        item.track, n_tracks = n_tracks, n_tracks + 1
                items += cur
                prev = cur
            errors["undecodable_frame"] += src.failed_frames
        return items, counts, errors
    root = input if input.is_dir() else input.parent
    paths = [p for p in list_images(input, errors)  # realpath: unlike resolve(), never raises on a symlink loop
             if not any(Path(os.path.realpath(p)).is_relative_to(x) for x in exclude)]
    counts["sources"] += len(paths)
    for path, image in iter_images(tqdm(paths, desc="photos", unit="img", disable=not progress),
                                   errors):
        counts["frames"] += 1
        rel = path.relative_to(root)
        stem = flat_name(rel)  # one per photo: a.jpg and a.png, a/b.jpg and a__b.jpg, long names
        faces = detector.detect(image)
        new = _faces_of_image(embedder, image, faces, rel.as_posix(), "", "", stem, crop_size,
                              crop_padding, staging)
        if labels and new and len(rel.parts) > 1:  # the photo is about its largest face
            max(new, key=lambda f: float(f.face.box[2] * f.face.box[3])).label = rel.parts[0]
        for item in new:
            item.track = len(items)
            items.append(item)
    return items, counts, errors


def gather_tracks(items: list[FaceItem]) -> list[dict]:
    """One entry per track: id, member indices, mean embedding ("emb", unit length), the sum of
    its faces' embeddings ("sum", for clustering over faces), best member ("best": the one shown).

    The best member is the most frontal x sharpest x most inside the frame, among the faces fully
    inside it when the track has any: a face cut by the border never stands for a person whose
    track also shows them whole."""
    members: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        members.setdefault(it.track, []).append(i)
    out = []
    for tid, idx in members.items():
        total = np.sum([items[i].emb for i in idx], axis=0)
        top = max(items[i].sharpness for i in idx) or 1.0
        # Sharpness only ranks within a track (its scale depends on the face and the lighting).
        best = max(idx, key=lambda i: (items[i].inside >= FULLY_INSIDE, (0.1 + items[i].frontal)
                                       * (0.1 + items[i].sharpness / top) * items[i].inside))
        out.append({"id": tid, "members": idx, "best": best, "sum": total.astype(np.float32),
                    "emb": (total / max(np.linalg.norm(total), 1e-12)).astype(np.float32)})
    return out


def cannot_link(items: list[FaceItem], tracks: list[dict]) -> np.ndarray:
    """(c, 2) pairs of tracks (indices into `tracks`) seen together in one photo or frame:
    one image never shows the same person twice, whatever the embeddings say."""
    index = {t["id"]: n for n, t in enumerate(tracks)}
    together: dict[tuple, set[int]] = {}
    for it in items:
        together.setdefault((it.source, it.frame), set()).add(index[it.track])
    pairs = {(a, b) for group in together.values() for a in group for b in group if a < b}
    return np.array(sorted(pairs), np.int64).reshape(-1, 2)
