"""Live verification, stage by stage: FPS and ms per frame of each stage on the Hamilton clip
(`siamese bench verify`, `make bench-verify`). Prints a table; never a test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from siamese.eval.bench.table import machine, table
from siamese.faces.detect import YuNetDetector
from siamese.io.images import read_image
from siamese.io.paths import DEFAULT_MODEL, SAMPLES
from siamese.model.embedder import Embedder
from siamese.verification.live import run
from siamese.verification.verifier import Verifier

__all__ = ["verify_speed"]


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

    video = Path(video or SAMPLES / "video" / "short_hamilton_clip.mp4")
    model_path = model_path or DEFAULT_MODEL
    embedder = Embedder.load(model_path, threads=threads)
    detector = YuNetDetector(max_side=None)
    src = read_image(SAMPLES / "reference_faces" / "lin-manuel-miranda.png")
    enrolled = embedder.embed(embedder.crops(src, detector.detect(src)[:1]))
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
        v = Verifier(embedder, enrolled, detector, person="lin", rule="share", verification_threshold=0.5, **c)
        with tempfile.TemporaryDirectory() as tmp:
            r = run(v, video, tmp, show=False)
        ms = {k: round(v.timings[k] / r["frames"], 2) for k in
              ("decode", "detect", "track", "align", "embed", "compare", "annotate_write")}
        rows.append({"config": name, "fps": r["fps"], "ms_per_frame": round(1000 / r["fps"], 2),
                     **ms, "frames": r["frames"]})
    print(f"\nVerification of {video.name}, end to end (decode -> write video + jsonl), "
          f"{embedder.format}, {threads} embedder thread(s), OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}; {machine()}; ms per frame\n")
    print(table(rows))
    return rows
