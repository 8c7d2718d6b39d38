"""Detection speed per image and the LFW cache build (`siamese bench detect`, `make bench`).

Speed is measured here, never asserted in tests. Numbers depend on the machine; the README
and docs/benchmarks.md record what this printed on the project's reference machine.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import cv2
import numpy as np

from siamese.data.lfw import LFW
from siamese.eval.bench.table import machine, table
from siamese.faces.detect import central_face
from siamese.io.images import list_images, read_image
from siamese.io.paths import SAMPLES, lfw_cache


def time_detector(detector, images: list[np.ndarray], central: bool = True) -> dict:
    """Median / p90 wall and CPU ms per image, and how often the central face was found.

    Args:
        detector: a `siamese.faces.Detector`.
        images: RGB uint8 images, already decoded (decode time is not detection time).
        central: also count images whose central face was found (LFW-style photos).
    """
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


def run(lfw_root, detectors: dict, images: int = 300, seed: int = 0,
        cache_dir: str | os.PathLike = lfw_cache()) -> list[dict]:
    """Time each detector ({name: `siamese.faces.Detector`}) on `images` random LFW photos and on
    the sample photos, one thread; print the table and the LFW cache's recorded build time."""
    # One core, like each worker of `make prepare` (OpenMP reads this when yuface loads).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cv2.setNumThreads(1)
    lfw = LFW(lfw_root)
    refs = lfw.images()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(refs), size=min(images, len(refs)), replace=False)
    lfw_images = [read_image(lfw.path(refs[i])) for i in pick]
    photos = [read_image(p) for p in list_images(SAMPLES / "photos")] if SAMPLES.exists() else []

    rows = []
    for name, detector in detectors.items():
        r = time_detector(detector, lfw_images)
        rows.append({"detector": name, "input": "LFW 250x250", **r})
        if photos:
            r = time_detector(detector, photos, central=False)
            rows.append({"detector": name, "input": f"{len(photos)} sample photos", **r})
    print(f"\nDetection, one thread (wall ms per image, decode excluded); {machine()}\n")
    print(table(rows))

    build = Path(cache_dir) / "build.json"
    if build.exists():
        stats = json.loads(build.read_text())
        print(f"\nLFW cache build ({cache_dir}): {stats['images']} images in "
              f"{stats['seconds']} s = {stats['images_per_s']} images/s with "
              f"{stats.get('workers', '?')} workers; central face detected in "
              f"{100 * stats['detection_rate']:.2f} %, {stats['fallback']} fallback, "
              f"{stats['errors']} errors")
    else:
        print(f"\nLFW cache build: no {build} yet — run `make prepare` and it records its time")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this benchmark: {peak:.0f} MB; cpu count {os.cpu_count()}")
    return rows
