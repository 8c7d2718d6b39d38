"""Does the student's crop show what the teacher uses? The teacher's accuracy on the validation
people when its own 150 px chip is masked (grey) outside the region our aligned crop covers, and
when the chip has only as many pixels as the student's input gives the same region.

    python tools/teacher_framing.py [--cache data/cache/lfw_yunet_112_p0.0] [--paddings 0 0.1 0.25] [--sizes 64 112]

dlib aligns its chip from its own 5-point landmarks; the student sees the face cache's crop (the
ArcFace template, `align.padding`). For each validation image (the students' View 1 split, seed 42),
each chip pixel is mapped back to the photo and then into our crop at each padding (a chip of the
photo's pixel coordinates, made by the same `get_face_chip`, gives the first map); pixels outside the
crop are set to grey before the teacher describes the chip. If the masked chips verify as well as the
whole ones, the crop's framing is not what keeps the student from the teacher.

For each input size S of `--sizes`: the chip's width measured in the face cache's crop (its padding,
its size resized to S px), the chip shrunk to that many pixels (area average) and enlarged back to
150 px: the detail a student at S px can see of the teacher's region. If the teacher verifies as
well from it, the student's resolution is not what it lacks either.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from siamese.cli import compose_config, quote_value
from siamese.data.lfw import LFW, resolve_root
from siamese.eval.bench.table import table
from siamese.eval.metrics import best_threshold
from siamese.faces.align import similarity_transform, template
from siamese.io.images import read_image
from siamese.io.paths import lfw_cache
from siamese.model.dlib_resnet import DlibTeacher
from siamese.model.preprocess import normalise
from siamese.train.trainer import protocol_data

_worker: dict = {}


def _init(paddings: list[float], sizes: list[int], crop_padding: float) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    _worker.update(teacher=DlibTeacher(), paddings=paddings, sizes=sizes, crop_padding=crop_padding)


def _at_size(chip: np.ndarray, pixels: float) -> np.ndarray:
    """(150, 150, 3) uint8 chip -> the same chip with only `pixels` across (shrunk, enlarged back)."""
    n = max(2, int(round(pixels)))
    side = chip.shape[0]
    return cv2.resize(cv2.resize(chip, (n, n), interpolation=cv2.INTER_AREA), (side, side),
                      interpolation=cv2.INTER_LINEAR)


def _chips(item: tuple[str, np.ndarray, np.ndarray]) -> np.ndarray:
    """(1 + paddings + sizes, 128) descriptors of one photo's chip: whole, masked to each crop, at
    each student size."""
    path, box, landmarks = item
    teacher: DlibTeacher = _worker["teacher"]
    image = read_image(path)
    h, w = image.shape[:2]
    if max(h, w) > 256:
        raise ValueError(f"{path}: {w}x{h}; the map of pixel coordinates needs photos of at most 256 px (LFW's)")
    coords = np.zeros((h, w, 3), np.uint8)  # LFW photos are 250 px: coordinates fit a byte
    coords[..., 0], coords[..., 1] = np.minimum(np.arange(w), 255)[None], np.minimum(np.arange(h), 255)[:, None]
    chip, where = teacher.chip(image, box), teacher.chip(image, box, like=coords).astype(np.float32)
    photo = np.stack([where[..., 0], where[..., 1], np.ones(where.shape[:2], np.float32)], -1)
    chips = [chip]
    for p in _worker["paddings"]:
        q = photo @ similarity_transform(landmarks, template(112, p)).T  # chip pixel -> our crop (112 px)
        masked = chip.copy()
        masked[~((q[..., 0] >= 0) & (q[..., 0] < 112) & (q[..., 1] >= 0) & (q[..., 1] < 112))] = 128
        chips.append(masked)
    q = photo @ similarity_transform(landmarks, template(112, _worker["crop_padding"])).T
    width = float(np.linalg.norm(q[0, -1, :2] - q[0, 0, :2])) * chip.shape[1] / (chip.shape[1] - 1)
    for size in _worker["sizes"]:  # the chip's width in the student's pixels (the 112 px crop resized)
        chips.append(_at_size(chip, width * size / 112))
    return teacher.describe(chips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(lfw_cache("data/cache")), help="the aligned LFW face cache")
    ap.add_argument("--lfw", default=None, help="the LFW copy (default: LFW_ROOT, data/lfw, ../shared/datasets/lfw)")
    ap.add_argument("--paddings", type=float, nargs="+", default=[0.0, 0.1, 0.25])
    ap.add_argument("--sizes", type=int, nargs="*", default=[64, 112], help="student input sizes (px)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    root = resolve_root(args.lfw)
    cfg = compose_config("train", [f"data.root={quote_value(str(root))}", f"cache_dir={quote_value(args.cache)}",
                                   "model.input_size=112"])  # the runs' View 1 split: train's defaults, seed 42
    fc, _, _, _, val_faces, (_, idx, same) = protocol_data(cfg, np.random.default_rng(cfg.seed))
    lfw = LFW(root)
    items = [(str(lfw.path(fc.refs[r])), fc.meta["box"][r].copy(), fc.meta["landmarks"][r].copy())
             for r in val_faces.rows]
    crop_padding = float(json.loads((Path(args.cache) / "config.json").read_text()).get("padding", 0.0))
    with mp.get_context("spawn").Pool(args.workers, _init, (args.paddings, args.sizes, crop_padding)) as pool:
        desc = np.stack(pool.map(_chips, items, chunksize=8))  # (n, 1 + paddings, 128)
    center = desc[:, 0].mean(0)  # the validation images' own centre: the rows compare, the scale is shared
    rows = []
    names = ["whole chip", *(f"masked to our crop, padding {p}" for p in args.paddings),
             *(f"whole chip at a {n} px student's resolution" for n in args.sizes)]
    for k, name in enumerate(names):
        e = normalise(desc[:, k] - center)
        s = (e[idx[:, 0]] * e[idx[:, 1]]).sum(1)
        rows.append({"teacher sees": name, "val_accuracy": round(best_threshold(s, same)[1], 4),
                     "val_auc": round(float(roc_auc_score(same, s)), 4)})
    print(f"{len(items)} images of {len(val_faces.names)} validation people, {len(same)} pairs")
    print(table(rows))


if __name__ == "__main__":
    from siamese.cli import script

    script("teacher_framing", main)
