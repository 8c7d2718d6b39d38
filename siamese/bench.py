"""Benchmarks that print a table: detection speed per image, the LFW cache build (`make bench`)
and live verification, stage by stage (`verify_speed`, `make bench-verify`).

Speed is measured here, never asserted in tests. Numbers depend on the machine; the README
and docs/benchmarks.md record what this printed on the project's reference machine.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
SAMPLES = Path(os.environ.get("SIAMESE_SAMPLES", REPO.parent / "shared" / "datasets" / "samples"))


def _table(rows: list[dict]) -> str:
    cols = list(rows[0])
    widths = [max(len(str(c)), *(len(str(r[c])) for r in rows)) for c in cols]
    line = lambda vals: "| " + " | ".join(str(v).ljust(w) for v, w in zip(vals, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cols), sep, *(line([r[c] for c in cols]) for r in rows)])


def time_detector(detector, images: list[np.ndarray], central: bool = True) -> dict:
    """Median / p90 wall and CPU ms per image, and how often the central face was found.

    Args:
        detector: a `siamese.faces.Detector`.
        images: RGB uint8 images, already decoded (decode time is not detection time).
        central: also count images whose central face was found (LFW-style photos).
    """
    from siamese.faces import central_face

    detector.detect(images[0])  # warm-up: first call allocates
    wall, cpu, found = [], [], 0
    for im in images:
        t0, c0 = time.perf_counter(), time.process_time()
        faces = detector.detect(im)
        wall.append(1000 * (time.perf_counter() - t0))
        cpu.append(1000 * (time.process_time() - c0))
        found += central and central_face(faces, im.shape) is not None
    return {"images": len(images), "median_ms": round(float(np.median(wall)), 2),
            "p90_ms": round(float(np.percentile(wall, 90)), 2),
            "median_cpu_ms": round(float(np.median(cpu)), 2),
            "central_found_%": round(100 * found / len(images), 2) if central else "-"}


def run(cfg: DictConfig) -> list[dict]:
    """Time every detector in `cfg.detectors` on LFW and sample photos; print the tables."""
    import cv2
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from siamese.data import LFW
    from siamese.images import list_images, read_image

    # One core, like each worker of `make prepare` (OpenMP reads this when yuface loads).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cv2.setNumThreads(1)
    lfw = LFW(cfg.data.root)
    refs = lfw.images()
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(refs), size=min(cfg.images, len(refs)), replace=False)
    lfw_images = [read_image(lfw.path(refs[i])) for i in pick]
    photos = [read_image(p) for p in list_images(SAMPLES / "photos")] if SAMPLES.exists() else []

    rows = []
    for name in cfg.detectors:
        detector = instantiate(OmegaConf.load(CONF_DIR / "detector" / f"{name}.yaml"))
        r = time_detector(detector, lfw_images)
        rows.append({"detector": name, "input": "LFW 250x250", **r})
        if photos:
            r = time_detector(detector, photos, central=False)
            rows.append({"detector": name, "input": f"{len(photos)} sample photos", **r})
    print("\nDetection, one thread (wall ms per image, decode excluded)\n")
    print(_table(rows))

    build = Path(cfg.cache_dir) / "build.json"
    if build.exists():
        stats = json.loads(build.read_text())
        print(f"\nLFW cache build ({cfg.cache_dir}): {stats['images']} images in "
              f"{stats['seconds']} s = {stats['images_per_s']} images/s with "
              f"{stats.get('workers', '?')} workers; central face detected in "
              f"{100 * stats['detection_rate']:.2f} %, {stats['fallback']} fallback, "
              f"{stats['errors']} errors")
    else:
        print(f"\nLFW cache build: no {build} yet — run `make prepare` and it records its time")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this benchmark: {peak:.0f} MB; cpu count {os.cpu_count()}")
    return rows


def verify_speed(video: str | os.PathLike | None = None,
                 model_path: str | os.PathLike | None = None,
                 configs: list[dict] | None = None, threads: int = 1) -> list[dict]:
    """End-to-end FPS and per-stage ms per frame of `run` (headless, writing video and log).

    Args:
        video: default the samples' short_hamilton_clip.mp4 (640x360, 275 frames).
        model_path: default the shipped model.
        configs: `Verifier` settings to compare, each a dict with a "name"; default: a
            face_recognition-like baseline (full-size detection and an embedding every frame),
            the defaults (detection on a <= 640 px copy every 3 frames, flow between, re-embed
            every 10), detection at 320 px, and the defaults judging every face, not one.
        threads: ONNX Runtime threads for the embedder.

    Returns:
        One row per config: fps, ms per frame, and ms per frame of each stage (decode, detect,
        track, align (landmark refinement + warp), embed, compare, annotate_write); also
        printed as a table.
    """
    from siamese.calibration import DEFAULT_MODEL
    from siamese.export import Embedder
    from siamese.faces import YuNetDetector
    from siamese.images import read_image
    from siamese.pipeline import model_crops
    from siamese.verify import Verifier, run

    video = Path(video or SAMPLES / "video" / "short_hamilton_clip.mp4")
    model_path = model_path or DEFAULT_MODEL
    embedder = Embedder.load(model_path, threads=threads)
    detector = YuNetDetector(max_side=None)
    src = read_image(SAMPLES / "reference_faces" / "lin-manuel-miranda.png")
    enrolled = embedder.embed(model_crops(embedder, src, detector.detect(src)[:1]))
    configs = configs or [
        {"name": "baseline: detect + embed every frame", "detect_every": 1,
         "detect_max_side": None, "embed_every": 1, "max_faces": 1},
        {"name": "defaults: detect 640 px / 3 frames, embed / 10", "max_faces": 1},
        {"name": "detect 320 px / 3 frames (+ refine), embed / 10", "detect_max_side": 320,
         "max_faces": 1},
        {"name": "defaults, every face judged", "max_faces": None},
    ]
    rows = []
    for c in configs:
        c = dict(c)
        name = c.pop("name")
        v = Verifier(embedder, enrolled, detector, person="lin", verification_threshold=0.5, **c)
        with tempfile.TemporaryDirectory() as tmp:
            r = run(v, video, tmp, show=False)
        ms = {k: round(v.timings[k] / r["frames"], 2) for k in
              ("decode", "detect", "track", "align", "embed", "compare", "annotate_write")}
        rows.append({"config": name, "fps": r["fps"], "ms_per_frame": round(1000 / r["fps"], 2),
                     **ms, "frames": r["frames"]})
    print(f"\nVerification of {video.name}, end to end (decode -> write video + jsonl), "
          f"{embedder.format}, {threads} embedder thread(s), OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}; ms per frame\n")
    print(_table(rows))
    return rows


if __name__ == "__main__":  # `make bench-verify`; detection and the cache: `make bench`
    if sys.argv[1:] != ["verify"]:
        sys.exit("usage: python -m siamese.bench verify  (live verification: FPS and ms per stage "
                 "on the Hamilton clip)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    verify_speed()
