"""Group the faces of a photo folder or a video by person: one folder per person to label.

    cluster("holiday/", "people/")            # every face of every photo (recursive)
    cluster("meeting.mp4", "people/")         # one crop per appearance (track) in the video

Photos: every detected face is aligned, embedded (`Embedder.embed_faces`) and clustered.
Videos: one frame per `every_s` seconds; faces are linked across consecutive sampled frames into
tracks (box overlap + the model's own same-person decision; a camera cut ends every track), so a
person sitting still for a minute is one item, not sixty. Each track is clustered by its mean
embedding and shown by its best crop (sharpest x most frontal).

Output (built in a temp dir beside `out`, then renamed into place; the inputs are only read):

    out/person_001/<source>_<frame/time>_face<k>.jpg   crops, most typical first in the sheet
    out/person_001/contact_sheet.jpg                   all of that person's crops at a glance
    out/person_001/all/                                every face of every track (keep_all_crops)
    out/unassigned/                                    faces that matched nobody (singletons)
    out/overview.jpg                                   one row per person
    out/manifest.csv                                   one row per face (see MANIFEST_COLUMNS)
    out/summary.json                                   counts, settings, timings, metrics
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from siamese.clustering import graph
from siamese.clustering.alike import alike_bar, person_alike
from siamese.clustering.appearances import FaceItem, cannot_link, gather_faces, gather_tracks
from siamese.clustering.output import (
    MANIFEST_COLUMNS,
    UNASSIGNED,
    people_labels,
    person_names,
    write_crop_embeddings,
    write_people,
    write_table,
)
from siamese.clustering.scores import clustering_scores
from siamese.clustering.settings import CENTRED, clustering_settings, resolve
from siamese.faces.detect import Detector, YuNetDetector
from siamese.io.files import atomic_write_text, staged_dir
from siamese.io.images import NothingRead, list_images
from siamese.io.video import is_video
from siamese.model.centre import Centring, centring
from siamese.model.embedder import Embedder

__all__ = ["MANIFEST_COLUMNS", "UNASSIGNED", "cluster", "clustering_settings", "group_tracks"]

log = logging.getLogger(__name__)


def cluster(input: str | os.PathLike, out: str | os.PathLike, embedder=None,
            detector: Detector | None = None, *, algorithm: str = "agglomerative",
            threshold: float | None = None, floor: float | None = None, k: int = 10,
            eps: float | None = None, min_samples: int | None = None,
            every_s: float = 1.0, keep_all_crops: bool = False, labels: bool = False,
            overwrite: bool = False, min_sharpness: float = 10.0, crop_size: int = 112,
            crop_padding: float = 0.0, seed: int = 0, progress: bool = True) -> dict:
    """Cluster the faces of a photo folder or a video into `out/person_NNN/` folders.

    Args:
        input: a folder of photos (recursive), one photo, or a video file.
        out: the output folder; must not exist (or be empty) unless `overwrite`.
        embedder: a `siamese.model.Embedder` (default: the shipped model).
        detector: a `siamese.faces.Detector` (default: YuNet).
        algorithm: one of `siamese.clustering.graph.ALGORITHMS`; agglomerative (average linkage on cosine)
            was best on unseen LFW people (see `siamese.eval.bench.clustering.compare_algorithms`).
        threshold, floor: agglomerative: the mean cosine two single faces need to merge, and
            the lower bar for big groups (`siamese.clustering.linkage.agglomerative`); average: the
            mean cosine any two groups need (no floor); chinese_whispers / components: the head
            score an edge needs (no floor).
        eps, min_samples: dbscan only: cosine-distance radius, faces per core point.
            Each None = the model's calibrated one (`cluster.json`, fitted on its validation people;
            see `siamese.clustering.settings` for what happens without one). A setting the chosen
            algorithm does not use is refused (ValueError).
        k: cosine shortlist per face.
        every_s: videos: one frame per this many seconds.
        keep_all_crops: videos: also save every face of every track under `person_NNN/all/`.
        labels: `input` is `input/<person>/<photos>`: score the clustering of each photo's
            largest face against its folder (pairwise/BCubed P/R/F1, NMI) into the summary.
        overwrite: replace a previous result of this command in `out`.
        min_sharpness: faces (tracks: their best crop) whose `sharpness` is below this go to
            unassigned unclustered: featureless dark or blurred crops all embed alike. 10 is
            below every one of 2,000 random LFW crops (min 14.6) and above the dark audience
            faces of the Hamilton sample clip (1-10).
        crop_size, crop_padding: the saved crops (see `siamese.faces.align`).

    Returns:
        The summary (also `out/summary.json`): people, unassigned, faces, tracks, errors, ...

    Raises:
        FileExistsError: `out` holds a result (or anything) and `overwrite` is false.
        FileNotFoundError: `input` does not exist; ValueError: bad settings.
    """

    input, out = Path(input), Path(out)
    _check_args(input, out, overwrite, labels, algorithm, every_s)
    embedder = embedder or Embedder.load()
    detector = detector or YuNetDetector()
    algorithm, settings, sources = resolve(embedder, algorithm, threshold=threshold, floor=floor, eps=eps,
                                           min_samples=min_samples)
    with staged_dir(out) as tmp:  # `out` appears (or is replaced) only once complete
        t0 = time.perf_counter()
        items, counts, errors = gather_faces(input, embedder, detector, tmp / "_staging", every_s,
                                              crop_size, crop_padding, labels,
                                              exclude=(out.resolve(), tmp.resolve()), progress=progress)
        t1 = time.perf_counter()
        if counts["sources"] and not counts["frames"]:  # nothing could be read: no result folder either
            raise NothingRead(f"none of {input}'s {counts['sources']} source(s) could be read",
                              {"task": "cluster", "input": str(input), "sources": counts["sources"], "faces": 0,
                               "errors": sum(errors.values()), "errors_by_reason": dict(errors)})
        rows, people, cluster_s = group_and_write(tmp, items, embedder, algorithm, settings, sources, k=k,
                                                  seed=seed, min_sharpness=min_sharpness,
                                                  keep_all_crops=keep_all_crops, labels=labels)
        video = is_video(input)
        summary = {"task": "cluster", "input": str(input), "kind": "video" if video else "photos",
                   "sources": counts["sources"], "frames": counts["frames"], "cuts": counts["cuts"], **people,
                   "every_s": every_s if video else None, "model": str(embedder.path),
                   "errors": sum(errors.values()), "errors_by_reason": dict(errors),
                   "seconds": {"faces": round(t1 - t0, 2), "cluster": cluster_s}}
        if not items:
            log.warning("%s: no faces found — wrote an empty manifest", input)
        write_table(tmp / "manifest.csv", rows)
        summary["seconds"]["total"] = round(time.perf_counter() - t0, 2)
        atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2))
    log.info("%s: %d faces -> %d people, %d unassigned -> %s", input, len(items), summary["people"],
             summary["unassigned"], out)
    return summary


def group_and_write(tmp: Path, items: list[FaceItem], embedder, algorithm: str, settings: dict, sources: dict,
                    *, k: int, seed: int, min_sharpness: float, keep_all_crops: bool, labels: bool):
    """The step every `cluster` shares, whatever the faces came from: group `items` into people
    (`group_tracks`), write the person folders into `tmp` (`write_people`), drop `tmp/_staging`.

    Returns:
        (manifest rows, the summary's keys about the people: "faces", "tracks", "people",
        "people_sizes", "people_faces", "unassigned", "too_blurry", "different_people_pairs",
        "algorithm", its settings, "settings_from", "k", "min_sharpness", "alike" (person folders
        that may be one person: `siamese.clustering.alike.person_alike`), "metrics" with `labels`;
        the seconds the grouping took).
    """
    t0 = time.perf_counter()
    space = centring(embedder)  # cluster.json's space: agglomerative and average cluster in it, "alike" compares in it
    tracks, tlab, sharp, cl = group_tracks(items, embedder, algorithm, settings, k=k, seed=seed,
                                           min_sharpness=min_sharpness,
                                           space=space if algorithm in CENTRED else None)
    seconds = round(time.perf_counter() - t0, 3)
    temb = np.stack([t["emb"] for t in tracks]) if tracks else np.zeros((0, embedder.dim), np.float32)
    rows, sizes = write_people(tmp, items, tracks, tlab, temb, embedder, keep_all_crops, sharp)
    # What the review compares: each saved crop's faces as clustered (a track's best crop stands for
    # the whole track, as in `person_alike`; with every crop kept, each is its own face).
    if keep_all_crops:
        saved = [(items[i].crop_name, items[i].emb, 1) for t in tracks for i in t["members"]]
    else:
        saved = [(items[t["best"]].crop_name, t["sum"] / len(t["members"]), len(t["members"])) for t in tracks]
    write_crop_embeddings(tmp, [c for c, _, _ in saved],
                          np.stack([e for _, e, _ in saved]) if saved else np.zeros((0, embedder.dim)),
                          embedder.fingerprint(), faces=[n for _, _, n in saved])
    shutil.rmtree(tmp / "_staging", ignore_errors=True)
    people = {"faces": len(items), "tracks": len(tracks), "people": len(sizes),
              "people_sizes": [n for n, _ in sizes], "people_faces": [f for _, f in sizes],
              "unassigned": int((tlab < 0).sum()), "too_blurry": int((~sharp).sum()),
              "centred": algorithm in CENTRED and space is not None,
              "different_people_pairs": len(cl), "algorithm": algorithm,
              **{name: round(v, 6) for name, v in settings.items()}, "settings_from": sources, "k": k,
              "min_sharpness": min_sharpness}
    # Person folders and unassigned faces that may be one person (never two seen together), at the
    # bar big groups need; blurry faces (unclustered) are left out.
    loose = {n: f"{UNASSIGNED}/{items[t['best']].crop_name}" for n, t in enumerate(tracks) if tlab[n] < 0 and sharp[n]}
    people["alike"] = person_alike(tracks, tlab, person_names(len(sizes)), cl, bar=alike_bar(embedder, settings),
                                   loose=loose, space=space) if tracks else []
    if labels:
        people["metrics"] = _label_scores(items, tracks, tlab)
    return rows, people, seconds


def group_tracks(items: list[FaceItem], embedder, algorithm: str, settings: dict, *, k: int = 10,
                 seed: int = 0, min_sharpness: float = 10.0, space: Centring | None = None):
    """Cluster the appearances (tracks) of `items` into people.

    Args:
        algorithm, settings: as `siamese.clustering.settings.resolve` returns them (exactly the
            settings the algorithm uses: threshold, floor, eps, min_samples).
        space: the model's local centring (`siamese.model.centre.centring`) to cluster in, for the
            algorithms whose bars cluster.json fitted there (`CENTRED`); None: the embeddings as they are.

    Returns:
        (tracks (`gather_tracks`), labels (t,) int64 person per track, -1 unassigned, sharp (t,)
        bool: the track's best crop is sharp enough to be clustered, cannot-link (c, 2) pairs).
    """
    tracks = gather_tracks(items)
    temb = np.stack([t["emb"] for t in tracks]) if tracks else np.zeros((0, embedder.dim), np.float32)
    # Featureless crops (dark, blurred) all embed alike and would glue people together.
    sharp = np.array([items[t["best"]].sharpness >= min_sharpness for t in tracks], bool)
    keep = np.flatnonzero(sharp)
    cl = cannot_link(items, tracks)
    pos = np.full(len(tracks), -1)
    pos[keep] = np.arange(len(keep))
    cl_kept = pos[cl][(pos[cl] >= 0).all(1)] if len(cl) else cl
    tlab = np.full(len(tracks), -1, np.int64)
    # A track is one appearance: clustered as one item whose similarity is over its faces.
    tsum = np.stack([t["sum"] for t in tracks]) if tracks else temb
    tfaces = np.array([len(t["members"]) for t in tracks])
    if space is not None and len(tracks):
        temb, tsum = space.sums(tsum)
    tlab[keep] = graph.cluster_embeddings(temb[keep], embedder.score, settings.get("threshold"), algorithm, k=k,
                                          eps=settings.get("eps"), min_samples=settings.get("min_samples", 2),
                                          seed=seed, floor=settings.get("floor"), sums=tsum[keep],
                                          counts=tfaces[keep], cannot_link=cl_kept,
                                          link_threshold=embedder.threshold)
    return tracks, people_labels(tlab, tracks, sharp), sharp, cl


def _label_scores(items: list[FaceItem], tracks: list[dict], tlab: np.ndarray) -> dict:
    """The clustering of labelled photos' faces scored against their person folders."""
    scored = [i for i, it in enumerate(items) if it.label]
    track_of = {t["id"]: n for n, t in enumerate(tracks)}
    pred = np.array([tlab[track_of[items[i].track]] for i in scored], np.int64)
    return {**clustering_scores([items[i].label for i in scored], pred), "scored_faces": len(scored)}


def _check_args(input: Path, out: Path, overwrite: bool, labels: bool, algorithm: str, every_s: float) -> None:
    if not input.exists():
        if input.is_symlink():  # a loop or a broken link: say which, not "not found"
            list_images(input)  # raises the ImageError that names it
        raise FileNotFoundError(f"{input}: not found — give a folder of photos, a photo or a video file")
    _check_out(input, out, overwrite)
    if labels and (is_video(input) or not input.is_dir()):
        raise ValueError(f"{input}: labels=true needs a folder of person folders (INPUT/<person>/*.jpg)")
    if algorithm not in graph.ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r} — choose one of {list(graph.ALGORITHMS)}")
    if not every_s > 0:
        raise ValueError(f"every_s must be a positive number of seconds, got {every_s!r}")


def _check_out(input: Path, out: Path, overwrite: bool) -> None:
    if out.resolve() == input.resolve() or input.resolve().is_relative_to(out.resolve()):
        raise ValueError(f"{out}: the output folder would contain the input {input} — choose another out")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists — choose another out or pass overwrite=true to replace it")
    try:
        ours = json.loads((out / "summary.json").read_text()).get("task") == "cluster"
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:  # never delete a folder this command did not write
        raise FileExistsError(f"{out} is not a previous cluster result (no summary.json from "
                              "`siamese cluster`) — refusing to replace it; choose another out")
