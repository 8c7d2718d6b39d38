"""Group the faces of a photo folder or a video by person: one folder per person to label.

    cluster("holiday/", "people/")            # every face of every photo (recursive)
    cluster("meeting.mp4", "people/")         # one crop per appearance (track) in the video

Photos: every detected face is aligned, embedded (`siamese.pipeline.embed_faces`) and clustered.
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

import csv
import io
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from siamese import graph, metrics
from siamese.faces import Detector
from siamese.images import atomic_write_text, read_image, write_image
from siamese.pipeline import is_video
from siamese.tracks import FaceItem, cannot_link, gather_faces, gather_tracks

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["crop", "source", "frame", "time_s", "face", "x", "y", "w", "h", "det_score",
                    "frontalness", "sharpness", "track", "track_faces", "best", "cluster",
                    "cosine_to_centre", "score_to_centre", "label", "note"]
UNASSIGNED = "unassigned"
SHEET_MAX = 200        # crops per contact sheet (a person folder can hold more)


def cluster(input: str | os.PathLike, out: str | os.PathLike, embedder=None,
            detector: Detector | None = None, *, algorithm: str = "agglomerative",
            threshold: float | None = None, floor: float | None = None, k: int = 10,
            eps: float = 0.4, min_samples: int = 2,
            every_s: float = 1.0, keep_all_crops: bool = False, labels: bool = False,
            overwrite: bool = False, min_sharpness: float = 10.0, crop_size: int = 112,
            crop_padding: float = 0.0, seed: int = 0, progress: bool = True) -> dict:
    """Cluster the faces of a photo folder or a video into `out/person_NNN/` folders.

    Args:
        input: a folder of photos (recursive), one photo, or a video file.
        out: the output folder; must not exist (or be empty) unless `overwrite`.
        embedder: a `siamese.export.Embedder` (default: the shipped model).
        detector: a `siamese.faces.Detector` (default: YuNet).
        algorithm: one of `siamese.graph.ALGORITHMS`; agglomerative (average linkage on cosine)
            was best on unseen LFW people (see `siamese.cluster_bench.compare_algorithms`).
        threshold, floor: agglomerative: the mean cosine two single faces need to merge, and
            the lower bar for big groups (`siamese.graph.agglomerative`); None = the model's
            calibrated ones (`cluster.json`, fitted on its validation people; without it the
            command falls back to chinese_whispers, with a warning). chinese_whispers /
            components: head score for an edge, None = `embedder.threshold`, the model's own.
        k: cosine shortlist per face.
        eps, min_samples: DBSCAN only.
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
    from siamese.export import Embedder
    from siamese.faces import YuNetDetector

    input, out = Path(input), Path(out)
    if not input.exists():
        raise FileNotFoundError(f"{input}: not found — give a folder of photos, a photo or a video file")
    _check_out(input, out, overwrite)
    if labels and (is_video(input) or not input.is_dir()):
        raise ValueError(f"{input}: labels=true needs a folder of person folders (INPUT/<person>/*.jpg)")
    if algorithm not in graph.ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r} — choose one of {list(graph.ALGORITHMS)}")
    if not every_s > 0:
        raise ValueError(f"every_s must be a positive number of seconds, got {every_s!r}")
    embedder = embedder or Embedder.load(Path(__file__).parent / "assets" / "default_model")
    detector = detector or YuNetDetector()
    algorithm, threshold, floor, source = _settings(embedder, algorithm, threshold, floor)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        t0 = time.perf_counter()
        items, counts, errors = gather_faces(input, embedder, detector, tmp / "_staging", every_s,
                                              crop_size, crop_padding, labels,
                                              exclude=(out.resolve(), tmp.resolve()), progress=progress)
        t1 = time.perf_counter()
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
        tlab[keep] = graph.cluster_embeddings(temb[keep], embedder.score, threshold, algorithm, k=k,
                                              eps=eps, min_samples=min_samples, seed=seed,
                                              floor=floor, sums=tsum[keep], counts=tfaces[keep],
                                              cannot_link=cl_kept, link_threshold=embedder.threshold)
        tlab = _people(tlab, tracks, sharp)
        t2 = time.perf_counter()
        rows, sizes = _write_people(tmp, items, tracks, tlab, temb, embedder, keep_all_crops, sharp)
        shutil.rmtree(tmp / "_staging", ignore_errors=True)
        video = is_video(input)
        summary = {"task": "cluster", "input": str(input), "kind": "video" if video else "photos",
                   "sources": counts["sources"], "frames": counts["frames"], "cuts": counts["cuts"],
                   "faces": len(items), "tracks": len(tracks), "people": len(sizes),
                   "people_sizes": [n for n, _ in sizes], "people_faces": [f for _, f in sizes],
                   "unassigned": int((tlab < 0).sum()), "too_blurry": int((~sharp).sum()),
                   "different_people_pairs": len(cl), "algorithm": algorithm,
                   "threshold": round(threshold, 6), "threshold_from": source, "k": k,
                   **({"floor": round(floor, 6)} if algorithm == "agglomerative" else {}),
                   **({"eps": eps, "min_samples": min_samples} if algorithm == "dbscan" else {}),
                   "min_sharpness": min_sharpness, "every_s": every_s if video else None,
                   "model": str(embedder.path), "errors": sum(errors.values()),
                   "errors_by_reason": dict(errors),
                   "seconds": {"faces": round(t1 - t0, 2), "cluster": round(t2 - t1, 3)}}
        if labels:
            scored = [i for i, it in enumerate(items) if it.label]
            track_of = {t["id"]: n for n, t in enumerate(tracks)}
            pred = np.array([tlab[track_of[items[i].track]] for i in scored], np.int64)
            summary["metrics"] = {**metrics.clustering_scores([items[i].label for i in scored], pred),
                                  "scored_faces": len(scored)}
        if not items:
            log.warning("%s: no faces found — wrote an empty manifest", input)
        _write_table(tmp / "manifest.csv", rows)
        summary["seconds"]["total"] = round(time.perf_counter() - t0, 2)
        atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2))
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("%s: %d faces -> %d people, %d unassigned -> %s", input, len(items), len(sizes),
             summary["unassigned"], out)
    return summary


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


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished `tmp` to `out`; an old `out` is moved aside first, then removed."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _people(tlab: np.ndarray, tracks: list[dict], sharp: np.ndarray) -> np.ndarray:
    """Final groups: a lone track seen in 2+ frames is a person too (one long appearance);
    groups are numbered by how many faces (frames x tracks) they hold, most first."""
    tlab = tlab.copy()
    nxt = int(tlab.max(initial=-1)) + 1
    for n, t in enumerate(tracks):
        if tlab[n] < 0 and sharp[n] and len(t["members"]) >= 2:
            tlab[n], nxt = nxt, nxt + 1
    if nxt == 0:
        return tlab
    faces = np.zeros(nxt)
    np.add.at(faces, tlab[tlab >= 0], [len(t["members"]) for n, t in enumerate(tracks) if tlab[n] >= 0])
    order = np.argsort(-faces, kind="stable")
    new = np.empty(nxt, np.int64)
    new[order] = np.arange(nxt)
    return np.where(tlab >= 0, new[np.maximum(tlab, 0)], -1)


def _write_people(tmp: Path, items, tracks, tlab, temb, embedder, keep_all: bool, sharp):
    """Move crops into person folders and draw the sheets.

    Returns:
        (manifest rows, [(crops, faces) per person]).
    """
    from siamese.sheets import contact_sheet, overview

    m = int(tlab.max(initial=-1)) + 1
    width = max(3, len(str(m)))
    names = [f"person_{g + 1:0{width}d}" for g in range(m)]
    cos = np.zeros(len(tracks), np.float32)
    score = np.zeros(len(tracks), np.float32)
    if m:
        centres = np.stack([temb[tlab == g].mean(0) for g in range(m)])
        centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
        has = tlab >= 0
        cos[has] = graph.cosine(temb[has], centres[tlab[has]])
        score[has] = embedder.score(temb[has], centres[tlab[has]])
    rows, groups = [], {name: [] for name in [*names, UNASSIGNED]}
    faces_in = dict.fromkeys(groups, 0)
    for n, t in enumerate(tracks):
        folder = names[tlab[n]] if tlab[n] >= 0 else UNASSIGNED
        faces_in[folder] += len(t["members"])
        for i in t["members"]:
            it, best = items[i], i == t["best"]
            rel = ""
            if best or keep_all:
                rel = f"{folder}/{it.crop_name}" if best else f"{folder}/all/{it.crop_name}"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / "_staging" / it.crop_name).rename(tmp / rel)
            if best:
                groups[folder].append((-float(score[n]), rel, _caption(it)))
            x, y, w, h = np.round(it.face.box, 1).tolist()
            rows.append([rel, it.source, it.frame, it.time_s, it.k, x, y, w, h, f"{it.face.score:.2f}",
                         f"{it.frontal:.2f}", f"{it.sharpness:.1f}", t["id"], len(t["members"]), int(best),
                         folder, f"{cos[n]:.4f}" if tlab[n] >= 0 else "",
                         f"{score[n]:.4f}" if tlab[n] >= 0 else "", it.label,
                         "" if sharp[n] else "blurry"])
    sheets = {}
    for folder, crops in groups.items():
        if not crops:
            continue
        crops.sort()  # most typical first (highest score to the centre); unassigned by name
        tiles = [(read_image(tmp / rel), cap) for _, rel, cap in crops[:SHEET_MAX]]
        # Videos keep one crop per track: say how many faces (sampled frames) they stand for.
        note = (f"{len(crops)} faces" if faces_in[folder] == len(crops)
                else f"{len(crops)} tracks, {faces_in[folder]} faces")
        write_image(tmp / folder / "contact_sheet.jpg",
                    contact_sheet(tiles, f"{folder}: {note}", max_tiles=SHEET_MAX, total=len(crops)))
        sheets[folder] = (note, tiles[:8])
    write_image(tmp / "overview.jpg", overview(sheets))
    rows.sort(key=lambda r: (r[15] == UNASSIGNED, r[15], r[1], str(r[2]), r[4]))
    return rows, [(len(groups[name]), faces_in[name]) for name in names]


def _caption(it: FaceItem) -> str:
    if it.time_s != "":
        return f"{float(it.time_s):.1f}s"
    return Path(it.source).stem[:14]


def _write_table(path: Path, rows: list[list]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _settings(embedder, algorithm: str, threshold: float | None,
              floor: float | None) -> tuple[str, float, float | None, str]:
    """(algorithm, threshold, floor, where the threshold came from) with the defaults filled in
    from the model: cluster.json for agglomerative, its pair threshold for the graph ones."""
    from siamese.calibration import clustering_settings

    if algorithm == "agglomerative" and threshold is None:
        cal = clustering_settings(embedder)
        if cal is not None:
            return (algorithm, float(cal["threshold"]),
                    float(cal["floor"] if floor is None else floor), "cluster.json")
        log.warning("%s has no cluster.json for agglomerative clustering — using chinese_whispers "
                    "at the model's threshold; calibrate with `python -m siamese.calibration %s "
                    "--clustering`", embedder.path, embedder.path)
        algorithm = "chinese_whispers"
    if threshold is None:
        return algorithm, float(embedder.threshold), floor, "model"
    return algorithm, float(threshold), floor, "given"


def cluster_from_config(cfg) -> dict:
    """`siamese cluster INPUT --out DIR`: builds the model and detector from `cfg`, then `cluster`."""
    from hydra.utils import instantiate

    from siamese.export import Embedder

    s = cluster(cfg.input, cfg.out, Embedder.load(cfg.model_path), instantiate(cfg.detector),
                algorithm=cfg.algorithm, threshold=cfg.threshold, floor=cfg.floor, k=cfg.k,
                eps=cfg.eps, min_samples=cfg.min_samples, every_s=cfg.every_s,
                keep_all_crops=cfg.keep_all_crops,
                labels=cfg.labels, overwrite=cfg.overwrite, min_sharpness=cfg.min_sharpness,
                crop_size=cfg.align.size,
                crop_padding=cfg.align.padding, seed=cfg.seed, progress=cfg.progress)
    if not s["faces"]:
        print(f"no faces found in {cfg.input} — wrote an empty {cfg.out}/manifest.csv")
    what = f"{s['tracks']} tracks in {s['frames']} frames" if s["kind"] == "video" else f"{s['frames']} photos"
    print(f"{s['faces']} faces ({what}) -> {s['people']} people {s['people_sizes']}, "
          f"{s['unassigned']} unassigned; {s['algorithm']} at threshold {s['threshold']:.3f}; "
          f"{s['errors']} skipped {s['errors_by_reason'] or ''} -> {cfg.out}/overview.jpg")
    if "metrics" in s:
        mt = s["metrics"]
        print(f"vs folder labels ({mt['scored_faces']} faces, {mt['people']} people): pairwise F1 "
              f"{mt['pairwise_f1']:.3f}, BCubed P/R/F1 {mt['bcubed_precision']:.3f}/"
              f"{mt['bcubed_recall']:.3f}/{mt['bcubed_f1']:.3f}, NMI {mt['nmi']:.3f}")
    return s
