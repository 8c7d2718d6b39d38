"""Carry the aligned-face cache to a machine where `make prepare` cannot run (a GPU box without
the LFW photos or the detector): pack the rows a protocol needs as WebP, unpack them there into
an ordinary cache dir that `siamese train cache_dir=...` reads.

    python tools/cache_pack.py pack data/cache/lfw_yunet_112_p0.0 .gpu/view1.npz --lfw LFW_ROOT
    python tools/cache_pack.py unpack .gpu/view1.npz /tmp/cache      # on the other machine

The pack holds the training people and the test-pair images of `--protocol` (View 1: 9,525 +
1,549 faces, 27.5 MiB at WebP quality 80, mean error 2.7 grey levels; the raw cache is 478 MB).
WebP is lossy: a model trained on unpacked faces is scored again on the real cache
(`tools/refinish.py`) before its numbers are reported.

`--teacher` also carries the distillation teacher's descriptors of those rows (the face cache's
`teacher_dlib/`, made by `siamese teach`; float16, ~5.6 MiB for View 1), unpacked beside the faces
so that `siamese train +experiment=distill` runs there without dlib (`distill.check_files=false`).
`--morphs` also carries the split's morphs (`siamese teach morphs=2`: which two faces, their
weights and mirroring, and the teacher's descriptor of each; float16, 4.7 MiB for two per View 1
training image), for `distill.morphs_p` there: the student's blends are made from the packed faces.
No pickle: plain arrays only.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np

from siamese.data import cache
from siamese.data.lfw import LFW, protocol_split
from siamese.io.files import atomic_write_bytes, staged_dir


def pack(cache_dir: str, out: str, lfw_root: str | None, protocol: str, fold: int,
         quality: int, teacher: bool = False, morphs: bool = False, seed: int = 42,
         val_fraction: float = 0.1) -> None:
    fc = cache.load(cache_dir)
    people, pairs = protocol_split(LFW(lfw_root), protocol, fold)
    wanted = set(people)
    refs = {p.a for p in pairs} | {p.b for p in pairs}
    rows = np.array([i for i, r in enumerate(fc.refs) if r.person in wanted or r in refs])  # ascending
    blobs = []
    for i in rows:  # RGB in the cache; OpenCV encodes BGR
        ok, buf = cv2.imencode(".webp", np.ascontiguousarray(fc.images[i][..., ::-1]),
                               [cv2.IMWRITE_WEBP_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"{cache_dir}: row {i} could not be encoded")
        blobs.append(buf.ravel())
    with open(Path(cache_dir) / "index.csv", newline="") as f:
        lines = f.read().splitlines()
    header, body = lines[0], lines[1:]
    extra = {}
    if teacher:
        from siamese.model.teacher_cache import load as load_teacher

        emb, status, tcfg = load_teacher(cache_dir)
        extra = {"teacher_embeddings": np.asarray(emb[rows], np.float16), "teacher_status": status[rows],
                 "teacher_config": np.array(json.dumps(tcfg))}
    if morphs:
        extra.update(_pack_morphs(cache_dir, rows, {"protocol": protocol, "fold": fold, "seed": seed,
                                                    "val_fraction": val_fraction}))
    buf = io.BytesIO()
    np.savez(buf, rows=rows, offsets=np.cumsum([0] + [len(b) for b in blobs]),
             data=np.concatenate(blobs), meta=fc.meta[rows],
             index=np.array([header] + [body[i] for i in rows]),
             config=np.array(json.dumps(fc.config)), **extra)
    out = out if str(out).endswith(".npz") else f"{out}.npz"  # as np.savez names a path
    atomic_write_bytes(out, buf.getvalue())  # a killed pack leaves no half-written file
    print(f"{out}: {len(rows)} faces, {Path(out).stat().st_size / 2**20:.1f} MiB")


def _pack_morphs(cache_dir: str, rows: np.ndarray, split: dict) -> dict:
    """The split's finished morphs as arrays, their face-cache rows renumbered to the pack's order."""
    from siamese.model.teacher_cache import finished
    from siamese.model.teacher_morphs import build_command, morphs_dir

    mdir = morphs_dir(cache_dir, split)
    status, config = finished(mdir, cache_dir, "cache of morphs", build_command(split), check_files=True)
    made, partners = np.load(mdir / "rows.npy"), np.load(mdir / "partners.npy")
    if not (np.isin(made, rows).all() and np.isin(partners, rows).all()):
        raise ValueError(f"{mdir}: some morphs show faces outside the pack's rows")
    return {"morph_rows": np.searchsorted(rows, made), "morph_partners": np.searchsorted(rows, partners),
            "morph_alphas": np.load(mdir / "alphas.npy"),
            "morph_mirrored": np.load(mdir / "mirrored.npy"), "morph_status": status,
            "morph_embeddings": np.asarray(np.load(mdir / "embeddings.npy"), np.float16),
            "morph_config": np.array(json.dumps(config))}


def unpack(pack_path: str, cache_dir: str) -> None:
    """Unpack into `cache_dir`, a new or empty folder (nothing already there is overwritten); the
    folder appears only when everything is written (a killed unpack leaves nothing half-made)."""
    final = Path(cache_dir)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise ValueError(f"{final}: already exists and is not an empty folder — unpack into a new one")
    z = np.load(pack_path, allow_pickle=False)
    offsets, data = z["offsets"], z["data"]
    faces = np.stack([cv2.imdecode(data[offsets[k]:offsets[k + 1]], cv2.IMREAD_COLOR)[..., ::-1]
                      for k in range(len(offsets) - 1)])
    with staged_dir(final) as out:
        np.save(out / "faces.npy", faces)
        np.save(out / "meta.npy", z["meta"])
        index = [str(x) for x in z["index"]]
        reader = csv.reader(io.StringIO("\n".join(index[1:])))
        with open(out / "index.csv", "w", newline="") as f:  # rows renumbered 0..n-1
            w = csv.writer(f)
            w.writerow(index[0].split(","))
            for k, row in enumerate(reader):
                w.writerow([k] + row[1:])
        (out / "config.json").write_text(str(z["config"]))
        (out / "build.json").write_text(json.dumps({"images": len(faces), "unpacked_from": pack_path}))
        said = [f"{final}: {len(faces)} faces"]
        if "teacher_embeddings" in z:  # the same rows, renumbered like the faces: the unpacked cache's own
            said.append(_unpack_teacher(z, out, final, pack_path, len(faces)))
        if "morph_rows" in z:
            said.append(_unpack_morphs(z, out, final, pack_path))
    print("\n".join(said))


def _unpack_teacher(z, out: Path, final: Path, pack_path: str, n: int) -> str:
    """The packed teacher descriptors as the cache's own teacher cache (`out` is the staging folder
    that becomes `final`). Returns what it unpacked, in words."""
    from siamese.io.files import file_digest
    from siamese.model.teacher_cache import teacher_dir

    tdir = teacher_dir(out)
    tdir.mkdir(exist_ok=True)
    np.save(tdir / "embeddings.npy", z["teacher_embeddings"].astype(np.float32))
    np.save(tdir / "status.npy", z["teacher_status"])
    tcfg = {**json.loads(str(z["teacher_config"])), "face_cache": str(final), "images": n,
            "index_sha256": file_digest(out / "index.csv"), "unpacked_from": pack_path}
    (tdir / "config.json").write_text(json.dumps(tcfg, indent=2))
    (tdir / "build.json").write_text(json.dumps({"images": n, "unpacked_from": pack_path}))
    return f"{teacher_dir(final)}: teacher descriptors of {n} faces"


def _unpack_morphs(z, out: Path, final: Path, pack_path: str) -> str:
    """The packed morphs beside the unpacked cache (its rows, renumbered at packing; `out` is the
    staging folder that becomes `final`). Returns what it unpacked, in words."""
    from siamese.model.teacher_cache import cache_identity
    from siamese.model.teacher_morphs import morphs_dir, rows_digest

    config = json.loads(str(z["morph_config"]))
    rows = z["morph_rows"]
    mdir = morphs_dir(out, config["split"])
    mdir.mkdir(parents=True, exist_ok=True)
    for name in ("partners", "alphas", "mirrored", "status"):
        np.save(mdir / f"{name}.npy", z[f"morph_{name}"])
    np.save(mdir / "rows.npy", rows)
    np.save(mdir / "embeddings.npy", z["morph_embeddings"].astype(np.float32))
    config.update(cache_identity(out), face_cache=str(final), unpacked_from=pack_path,
                  rows_sha256=rows_digest(rows))
    (mdir / "config.json").write_text(json.dumps(config, indent=2))
    (mdir / "build.json").write_text(json.dumps({"images": len(rows), "unpacked_from": pack_path}))
    return f"{morphs_dir(final, config['split'])}: {z['morph_partners'].size} morphs of {len(rows)} training images"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("cache_dir"), p.add_argument("out")
    p.add_argument("--lfw", default=None), p.add_argument("--protocol", default="view1")
    p.add_argument("--fold", type=int, default=0), p.add_argument("--quality", type=int, default=80)
    p.add_argument("--teacher", action="store_true", help="also the teacher's descriptors (siamese teach)")
    p.add_argument("--morphs", action="store_true", help="also the split's morphs (siamese teach morphs=2)")
    p.add_argument("--seed", type=int, default=42, help="the split's seed (the morphs' split)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="the split's validation share")
    u = sub.add_parser("unpack")
    u.add_argument("pack"), u.add_argument("cache_dir")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.cache_dir, a.out, a.lfw, a.protocol, a.fold, a.quality, a.teacher, a.morphs, a.seed, a.val_fraction)
    else:
        unpack(a.pack, a.cache_dir)


if __name__ == "__main__":
    from siamese.cli import script

    script("cache_pack", main)
