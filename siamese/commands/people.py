"""`siamese cluster`, `gallery`, `enroll` (= `gallery add`), `verify`, `recognize`: the
applications, all on the one gallery of known people."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from siamese.clustering.from_index import cluster_index
from siamese.clustering.group import cluster as cluster_faces
from siamese.commands import NothingUsable, detector, output_dir, plain
from siamese.faces.capture import SKIPS
from siamese.gallery.calibrate import refresh
from siamese.gallery.enrol import REASONS, enroll, import_folder, reembed
from siamese.gallery.from_index import import_index
from siamese.gallery.legacy import import_enrolled
from siamese.gallery.recognize import load_recognizer
from siamese.gallery.recognize import recognize as name_faces
from siamese.gallery.store import Gallery, GalleryError
from siamese.io.images import NothingRead
from siamese.library.table import index_folder
from siamese.model.embedder import Embedder
from siamese.verification.live import run as play
from siamese.verification.verifier import Verifier


def cluster(cfg: DictConfig) -> dict:
    """Group the faces of a photo folder, a video or a face index (`siamese index`) by person into
    `cfg.out/person_NNN/`."""
    if index_folder(cfg.input) is not None:  # its faces and embeddings as they are: nothing detected again
        s = cluster_index(cfg.input, cfg.out, Embedder.load(cfg.model_path), algorithm=cfg.algorithm,
                          threshold=cfg.threshold, floor=cfg.floor, k=cfg.k, eps=cfg.eps, min_samples=cfg.min_samples,
                          labels=cfg.labels, overwrite=cfg.overwrite, min_sharpness=cfg.min_sharpness,
                          crop_size=cfg.align.size, crop_padding=cfg.align.padding, seed=cfg.seed,
                          progress=cfg.progress)
    else:
        try:
            s = cluster_faces(cfg.input, cfg.out, Embedder.load(cfg.model_path), detector(cfg),
                              algorithm=cfg.algorithm, threshold=cfg.threshold, floor=cfg.floor, k=cfg.k,
                              eps=cfg.eps, min_samples=cfg.min_samples, every_s=cfg.every_s,
                              keep_all_crops=cfg.keep_all_crops, labels=cfg.labels, overwrite=cfg.overwrite,
                              min_sharpness=cfg.min_sharpness, crop_size=cfg.align.size,
                              crop_padding=cfg.align.padding, seed=cfg.seed, progress=cfg.progress)
        except NothingRead as err:
            raise NothingUsable(f"{err}; nothing was written", err.summary) from None
    if not s["faces"]:
        print(f"no faces found in {cfg.input} — wrote an empty {cfg.out}/manifest.csv")
    what = f"{s['tracks']} tracks in {s['frames']} frames" if s["kind"] == "video" else f"{s['frames']} photos"
    print(f"{s['faces']} faces ({what}) -> {s['people']} people {s['people_sizes']}, "
          f"{s['unassigned']} unassigned; {s['algorithm']}{' (locally centred)' if s.get('centred') else ''} at "
          f"{_settings_line(s)}; "
          f"{s['errors']} skipped" + "".join(f", {n} {k.replace('_', ' ')}" for k, n in s["errors_by_reason"].items())
          + f" -> {cfg.out}/overview.jpg")
    hint = few_photos_hint(s)
    if hint:
        print(hint)
    alike = s.get("alike", [])
    for p in alike[:3]:  # the first pairs are mostly right; further down mostly two people (docs/benchmarks.md)
        print(f"may be one person: {p['folders'][1]} and {p['folders'][0]} (mean cosine {p['likeness']:.2f}"
              f" of their faces) — check them with `siamese review {cfg.out}`")
    if len(alike) > 3:
        print(f"  ({len(alike) - 3} more such pairs in {cfg.out}/summary.json \"alike\")")
    if "metrics" in s:
        mt = s["metrics"]
        print(f"vs folder labels ({mt['scored_faces']} faces, {mt['people']} people): pairwise F1 "
              f"{mt['pairwise_f1']:.3f}, BCubed P/R/F1 {mt['bcubed_precision']:.3f}/"
              f"{mt['bcubed_recall']:.3f}/{mt['bcubed_f1']:.3f}, NMI {mt['nmi']:.3f}")
    return s


SMALL_GROUP = 10  # faces: the size that separates the two clustering benches (2-9 photos / 10+)


def few_photos_hint(s: dict) -> str | None:
    """A line suggesting `algorithm=average` when agglomerative's bar, which falls with group size,
    grouped a photo folder of many people (5+ folders) most of whose faces ended in groups of
    fewer than `SMALL_GROUP` faces or unassigned, in the plain embedding space; None otherwise. There,
    on held-out validation people, the falling bar groups people with 10+ photos better and one bar
    those with 2-9; in a locally centred space (`siamese.model.centre`) one bar's gain for
    people with few photos is within its noise (docs/benchmarks.md), so a centred run gets no hint."""
    if s["algorithm"] != "agglomerative" or s.get("centred") or s["kind"] == "video" or s["people"] < 5:
        return None
    sizes = s["people_faces"]
    small = sum(n for n in sizes if n < SMALL_GROUP) + s["unassigned"]
    if 2 * small <= sum(sizes) + s["unassigned"]:
        return None
    return (f"most faces here are in groups of fewer than {SMALL_GROUP} or alone: for many people with a few "
            "photos each, `algorithm=average` (one bar for every group size) usually groups better "
            "(docs/benchmarks.md)")


def _settings_line(s: dict) -> str:
    """The settings the algorithm used and where each came from: "threshold 0.425, floor 0.220 (cluster.json)"."""
    src = s["settings_from"]
    values = ", ".join(f"{n} {s[n]}" if n == "min_samples" else f"{n} {s[n]:.3f}" for n in src)
    where = set(src.values())
    return f"{values} ({where.pop() if len(where) == 1 else ', '.join(f'{n} {f}' for n, f in src.items())})"


def _print_adds(results: dict) -> None:
    for person, r in results.items():
        print(f"{person}: +{r['added']} faces" + "".join(
            f", {r[k]} {SKIPS.get(k, k.replace('_', ' '))}" for k in REASONS[1:] if r[k]))
    if results and not any(r["added"] or r["duplicates"] for r in results.values()):
        raise NothingUsable("nothing was added: every photo or frame was skipped for the reasons above",
                            {"people": results})


def _calibrate(g: Gallery, embedder, cfg: DictConfig, redraw: bool = False) -> dict | None:
    c = cfg.calibration
    cal = refresh(g, embedder, cfg.far_target, lfw_root=cfg.data.root, cache_dir=c.cache_dir,
                  people=c.people, seed=c.seed, redraw=redraw, degraded=c.degraded)
    if cal:
        for kind in ("nn", "centred", "asnorm"):
            if kind in cal:
                c = cal[kind]
                print(f"calibrated {g.path}: unknown threshold ({kind}) {c['threshold']:.4f} accepts "
                      f"{c['far_measured']:.1%} of {c['impostors']} LFW people never enrolled (target "
                      f"{cal['far_target']:.0%})")
    return cal


def gallery(cfg: DictConfig) -> dict:
    """`siamese gallery ACTION [PATH] [--person NAME]`: add, import, list, remove, reembed,
    calibrate. Writing actions store the calibration and the SVC `recognize` then reads."""
    action, db = cfg.action, Path(cfg.db)
    if action == "list":
        with Gallery(db, create=False) as g:
            return _list(g)
    if action == "remove":
        person = cfg.person or cfg.path
        with Gallery(db, create=False) as g:
            n = g.remove(person)
        print(f"removed {person} and {n} embeddings from {db}")
        return {"removed": person, "embeddings": n}
    if action not in ("add", "import", "reembed", "calibrate"):
        raise GalleryError(f"gallery action {action!r}: choose add, import, list, remove, reembed or calibrate")
    embedder = Embedder.load(cfg.model_path)
    if action == "add" and (not cfg.person or cfg.path is None):
        raise GalleryError("gallery add needs PATH (photos, folder, video or camera index) and --person NAME")
    new = not os.path.lexists(db)
    g = Gallery(db, None if action == "reembed" else embedder.identity(),  # reembed changes the model
                create=action not in ("reembed", "calibrate"))
    try:  # closed at the end: its -wal/-shm files go, and a copy of the .sqlite file is whole
        return _write_action(cfg, g, embedder, new)
    finally:
        g.close()


def _write_action(cfg: DictConfig, g: Gallery, embedder: Embedder, new: bool) -> dict:
    action = cfg.action
    if action == "reembed":
        r = reembed(g, embedder)
        print(f"re-embedded {r['reembedded']} faces with {embedder.path}; skipped {len(r['missing'])} "
              f"missing and {len(r['changed'])} changed sources, {r['no_source']} without one"
              + (f"; now without faces: {', '.join(r['empty_people'])}" if r["empty_people"] else ""))
    elif action == "calibrate":
        r = {}
    else:
        try:
            if action == "add":
                results = {cfg.person: enroll(g, embedder, detector(cfg), cfg.person, plain(cfg.path),
                                              video=plain(cfg.video))}
            elif index_folder(cfg.path) is not None:  # a `siamese index` of known/<person>/*.jpg: its embeddings
                results = import_index(g, embedder, cfg.path)
            else:
                results = import_folder(g, embedder, detector(cfg), cfg.path)
            _print_adds(results)
        except BaseException:
            if new and not g.people():  # a gallery this run made, and nobody in it: no file left behind
                g.discard()
            raise
        r = {"people": results}
    r["calibration"] = _calibrate(g, embedder, cfg, redraw=action == "calibrate")
    return r


def _list(g: Gallery) -> dict:
    people = g.people()
    for name, n in people:
        print(f"{name}, {n}")
    cal = g.get("calibration") or {}
    nn = cal.get("nn")
    stale = bool(cal) and cal.get("revision") != g.revision
    print(f"{len(people)} people, {sum(n for _, n in people)} embeddings in {g.path}; model "
          f"{(g.model or {}).get('fingerprint', '-')[:12]}; unknown threshold "
          + (f"{nn['threshold']:.4f} (FAR {cal['far_target']} on {nn['impostors']} LFW people)" if nn
             else "not calibrated") + (" — stale: run `siamese gallery calibrate`" if stale else ""))
    return {"people": dict(people)}


def _enrolled(cfg: DictConfig, embedder: Embedder):
    """The person's embeddings from the gallery; an old `data/enrolled/NAME/` enrolment is imported
    into it on first use (with a notice; the folder is left as it was)."""
    db, legacy = Path(cfg.db), Path(cfg.legacy_enrolled)
    if not os.path.lexists(db) and not (legacy / str(cfg.person) / "person.json").is_file():
        raise GalleryError(f"{db}: no gallery here, so nobody is enrolled — run `siamese enroll SOURCE "
                           f"--person {cfg.person}`")
    with Gallery(db, embedder.identity()) as g:
        try:
            return g.person(cfg.person)
        except GalleryError:
            n = import_enrolled(g, embedder, legacy, str(cfg.person))
            if not n:
                raise
        print(f"imported {n} faces of {cfg.person} from the old enrolment {legacy / str(cfg.person)} into {db} "
              "(the folder is left as it was)")
        return g.person(cfg.person)


def verify(cfg: DictConfig) -> dict:
    """Is the enrolled person in front of `cfg.source`? A window, or verify.mp4 + verify.jsonl."""
    embedder = Embedder.load(cfg.model_path, threads=cfg.threads)
    verifier = Verifier(embedder, _enrolled(cfg, embedder), detector(cfg), person=cfg.person,
                        match_threshold=cfg.match_threshold, rule=cfg.rule,
                        verification_threshold=cfg.verification_threshold,
                        detect_every=cfg.detect_every, detect_max_side=cfg.detect_max_side,
                        embed_every=cfg.embed_every, smooth=cfg.smooth, max_faces=cfg.max_faces)
    show = cfg.show if cfg.show in ("auto", True, False) else str(cfg.show).lower() == "true"
    r = play(verifier, cfg.source, output_dir(cfg), show=show, video=cfg.video, max_frames=cfg.max_frames,
             overwrite=cfg.overwrite)
    print(f"{cfg.person}: verified in {r['verified_frames']} of {r['frames_with_face']} frames with a face "
          f"({r['no_face_frames']} without), {r['frames']} frames at {r['fps']} FPS; verification: "
          f"{verifier.rule} rule at {verifier.verification_threshold:.3f} (match threshold "
          f"{verifier.match_threshold:.3f})" + "".join(f"\n{k}: {r[k]}" for k in ("jsonl", "video") if k in r))
    if r["failed_frames"]:
        print(f"{r['failed_frames']} frame(s) could not be decoded and were skipped")
    return {**r, "match_threshold": verifier.match_threshold, "rule": verifier.rule,
            "verification_threshold": verifier.verification_threshold}


def recognize(cfg: DictConfig) -> dict:
    """Name every face in `cfg.input` against the gallery, or "unknown"; one line per face.
    Reads the gallery only (its calibration and SVC come from the `siamese gallery` commands)."""
    embedder = Embedder.load(cfg.model_path)
    with Gallery(cfg.db, create=False) as gallery:  # read once, closed before the photos
        gallery.require(embedder.identity())
        rec = load_recognizer(gallery, embedder, cfg.method, cfg.far_target, cfg.shortlist)
    inputs = cfg.input if isinstance(cfg.input, str) else list(cfg.input)
    matches, summary = name_faces(inputs, rec, detector(cfg), annotate_dir=cfg.annotate_dir,
                                  overwrite=cfg.overwrite)
    thr = rec.threshold
    result = {"method": rec.method, "threshold": thr, "calibration": rec.calibration,
              "matches": [asdict(m) for m in matches], **summary}
    if matches:
        print("\n".join(m.line() for m in matches))
    print(f"{summary['faces']} faces in {summary['images']} photos: {summary['known']} known, "
          f"{summary['faces'] - summary['known']} unknown (method {rec.method}, threshold {thr:.4f})"
          + (f"; no face in {len(summary['without_face'])}" if summary["without_face"] else "")
          + (f"; {summary['unreadable']} unreadable" if summary["unreadable"] else ""), file=sys.stderr)
    if summary["images"] and summary["unreadable"] >= summary["images"]:
        raise NothingUsable(f"none of the {summary['images']} photo(s) could be read", result)
    return result
