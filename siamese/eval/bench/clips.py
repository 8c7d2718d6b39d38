"""The applications on the two sample clips, as numbers (`siamese bench clips`, `make bench-clips`).

Hamilton (`short_hamilton_clip.mp4`, 275 frames; shots from looking at its frames: 0-19 wide
stage shot with Lin-Manuel Miranda on the right and Alex Lacamoire small at the piano on the left,
20-81 Alex in profile with the audience, 82-210 Lin close-up, 211-274 audience): each man is
enrolled from his reference photo alone and `siamese verify`'s loop runs over the clip, twice: at
the share rule's 0.5 (the acceptance test's) and at the model's own rule and threshold (verify.json,
what `siamese verify` uses by default; fitted with 10 enrolled images, here there is one).
Reported: the share of Lin's judged faces verified as Lin; the share of frames without Lin verified
anyway; the share of Lin's verified faces that Alex's enrolment also verifies (look-alike false
accepts), overall and in the close-up.

News (`oval_office_news_clip.mp4`: four men, Mirziyoyev, Trump and two aides): `siamese cluster`
at one frame per 0.5, 1, 2 and 3 s; people found, unassigned tracks, and folders holding two faces
of one frame (two people in one folder, which is never right).
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from siamese.clustering.group import cluster
from siamese.eval.bench.table import table
from siamese.faces.detect import YuNetDetector
from siamese.faces.folder import read_manifest
from siamese.io.images import read_image
from siamese.io.paths import SAMPLES
from siamese.model.embedder import Embedder
from siamese.verification.live import run
from siamese.verification.verifier import Verifier

__all__ = ["LIN_SHOTS", "hamilton", "lin_faces", "news"]

LIN_SHOTS = [(0, 19), (82, 210)]  # frames where Lin-Manuel Miranda is on screen


def lin_faces(rows: list[dict]) -> dict[int, dict]:
    """Lin's face in each frame of his shots: the largest face of the close-up; in the wide shot
    the one on stage, right of centre (Alex sits at the piano on the left)."""
    faces = {}
    for r in rows:
        if any(a <= r["frame"] <= b for a, b in LIN_SHOTS):
            wide = r["frame"] <= LIN_SHOTS[0][1]
            his = [f for f in r["faces"] if not wide or f["box"][0] + f["box"][2] / 2 > 320]
            if his:
                faces[r["frame"]] = max(his, key=lambda f: f["box"][2])
    return faces


def hamilton(model_path=None, samples: Path = SAMPLES, rule: str | None = "share",
             threshold: float | None = 0.5) -> dict:
    """The Hamilton clip verified against Lin, then against Alex (see the module docstring), by
    `rule` at `threshold` (None, None: the model's verify.json, as `siamese verify`)."""
    model, detector = Embedder.load(model_path, threads=1), YuNetDetector()
    rows = {}
    for person, ref in (("lin", "lin-manuel-miranda.png"), ("alex", "alex-lacamoire.png")):
        photo = read_image(samples / "reference_faces" / ref)
        face = max(detector.detect(photo), key=lambda f: float(f.box[2] * f.box[3]))
        v = Verifier(model, model.embed_faces(photo, [face]), detector, person=person, rule=rule,
                     verification_threshold=threshold)
        with tempfile.TemporaryDirectory() as tmp:
            run(v, samples / "video" / "short_hamilton_clip.mp4", tmp, show=False, video=False)
            rows[person] = [json.loads(s) for s in (Path(tmp) / "verify.jsonl").read_text().splitlines()]
    lin, alex = lin_faces(rows["lin"]), lin_faces(rows["alex"])
    verified = {k for k, f in lin.items() if f["decision"] == "verified"}
    elsewhere = [r for r in rows["lin"] if not any(a <= r["frame"] <= b for a, b in LIN_SHOTS)]
    wrong = {k for k in verified if k in alex and alex[k]["decision"] == "verified"}
    close = {k for k in verified if k >= LIN_SHOTS[1][0]}
    return {"model": str(model.path), "rule": f"{v.rule} {v.verification_threshold:g}", "lin_faces": len(lin),
            "lin_verified": round(len(verified) / max(len(lin), 1), 4),
            "frames_without_lin": len(elsewhere),
            "verified_without_lin": round(float(np.mean([r["state"] == "verified" for r in elsewhere])), 4),
            "alex_as_lin": round(len(wrong) / max(len(verified), 1), 4),
            "alex_as_lin_close_up": round(len(wrong & close) / max(len(close), 1), 4)}


def news(model_path=None, samples: Path = SAMPLES, every=(0.5, 1.0, 2.0, 3.0)) -> list[dict]:
    """The news clip clustered at each sampling rate (see the module docstring)."""
    model, detector = Embedder.load(model_path), YuNetDetector()
    out = []
    for every_s in every:
        with tempfile.TemporaryDirectory() as tmp:
            s = cluster(samples / "video" / "oval_office_news_clip.mp4", Path(tmp) / "people", model, detector,
                        every_s=every_s, progress=False)
            per_frame = defaultdict(int)
            for r in read_manifest(Path(tmp) / "people" / "manifest.csv"):
                if r["cluster"] != "unassigned":
                    per_frame[r["cluster"], r["frame"]] += 1
        out.append({"every_s": every_s, "faces": s["faces"], "tracks": s["tracks"], "people": s["people"],
                    "unassigned": s["unassigned"],
                    "folders_with_two_faces_of_one_frame": len({c for (c, _), n in per_frame.items() if n > 1})})
    return out


def report(model_path=None, samples: Path = SAMPLES) -> dict:
    """Both clips; prints the two tables."""
    h, own, n = hamilton(model_path, samples), hamilton(model_path, samples, None, None), news(model_path, samples)
    print(f"\nHamilton clip, {h['model']} (enrolled from one reference photo each; the share rule at 0.5, "
          "then the model's own rule):\n")
    print(table([{k: v for k, v in r.items() if k != "model"} for r in (h, own)]))
    print("\nNews clip (four men), siamese cluster at each sampling rate:\n")
    print(table(n))
    return {"hamilton": h, "hamilton_own_rule": own, "news": n}
