"""Open-set evaluation and the gallery benchmark: how recognition fares when some faces belong to
nobody in the gallery, and how the gallery scales.

`evaluate_open_set` splits any labelled faces into enrolled people, their other faces (known
probes) and people kept out (unknowns: half set the threshold, half measure it); `open_set_lfw`
and `open_set_folder` feed it LFW people the model never saw or a folder of people, and
`open_set_command` runs it from recognize.yaml's `open_set` block. `bench_gallery` times adding,
loading and searching up to a million embeddings. Built on `siamese.recognize`; no TensorFlow.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from siamese import DEFAULT_MODEL
from siamese.index import Index
from siamese.recognize import METHODS, Recognizer, Svc, lfw_faces, threshold_at_far

log = logging.getLogger(__name__)


def evaluate_open_set(embedder, embeddings: np.ndarray, names, *, seed: int = 0,
                      gallery_per_person: int = 1, unknown_share: float = 0.5,
                      far_target: float = 0.01, methods=METHODS, shortlist: int = 32) -> dict:
    """Identification with people who are not in the gallery, on any labelled faces.

    Split (seeded): `(1 - unknown_share)` of the people, among those with more than
    `gallery_per_person` faces, are enrolled with `gallery_per_person` random faces; their other
    faces are the known probes. Everyone else is unknown, one random face each, halved into
    calibration people (they set the default threshold, as LFW impostors do for a real gallery)
    and test people (they measure it).

    Returns:
        Sizes of each set and per method: top1, top5 (closed set, known probes), dir_at_far_0.01 /
        _0.1 (detection-and-identification rate: right name and accepted, threshold where that
        share of test unknowns is accepted), and at the default operating point (threshold
        calibrated to `far_target` on the calibration unknowns) threshold, unknown_accepted and
        dir; for head scores also the same two at the model's verification threshold.
    """
    names = np.asarray(names)
    rng = np.random.default_rng(seed)
    people = [str(p) for p in rng.permutation(sorted(set(names.tolist())))]
    by = {p: np.flatnonzero(names == p) for p in people}
    eligible = [p for p in people if len(by[p]) > gallery_per_person]
    known = eligible[:min(len(eligible), round((1 - unknown_share) * len(people)))]
    unknown = [p for p in people if p not in set(known)]
    if len(known) < 2 or len(unknown) < 2:
        raise ValueError(f"open-set evaluation needs 2+ people with more than {gallery_per_person} "
                         f"faces and 2+ others; got {len(known)} and {len(unknown)}")
    gallery, probes, truth = [], [], []
    for j, p in enumerate(known):
        idx = rng.permutation(by[p])
        gallery += [(i, j) for i in idx[:gallery_per_person]]
        probes += idx[gallery_per_person:].tolist()
        truth += [j] * (len(idx) - gallery_per_person)
    unk = np.array([rng.choice(by[p]) for p in unknown])
    cal_u, test_u = unk[:len(unk) // 2], unk[len(unk) // 2:]
    gi, gl = np.array([i for i, _ in gallery]), np.array([j for _, j in gallery])
    svc = Svc.fit(embeddings[gi], gl) if set(methods) - {"nn"} else None
    rec = Recognizer(embedder, embeddings[gi], gl, known, svc=svc, shortlist=shortlist)
    truth, r4 = np.array(truth), lambda x: round(float(x), 4)
    results = {}
    for m in methods:
        lab, s = rec.evidence(embeddings[probes], m)
        su, sc = rec.evidence(embeddings[test_u], m)[1], rec.evidence(embeddings[cal_u], m)[1]
        hit = lab[:, 0] == truth
        r = {"top1": r4(hit.mean()), "top5": r4((lab == truth[:, None]).any(1).mean())}
        for f in (0.01, 0.1):
            r[f"dir_at_far_{f:g}"] = r4((hit & (s >= threshold_at_far(su, f))).mean())
        thr = threshold_at_far(sc, far_target)
        r.update(threshold=r4(thr), unknown_accepted=r4((su >= thr).mean()),
                 dir=r4((hit & (s >= thr)).mean()))
        if m != "svc":
            t = embedder.threshold
            r.update(model_threshold_unknown_accepted=r4((su >= t).mean()),
                     model_threshold_dir=r4((hit & (s >= t)).mean()))
        results[m] = r
    return {"people": len(people), "gallery_people": len(known), "gallery_faces": len(gi),
            "known_probes": len(probes), "unknown_calibration": len(cal_u),
            "unknown_test": len(test_u), "seed": seed, "far_target": far_target, "methods": results}


def open_set_lfw(embedder, lfw_root=None, cache_dir=None, detector=None, **kw) -> dict:
    """`evaluate_open_set` on every face of the LFW people the model never saw (see `lfw_faces`)."""
    crops, names, source = lfw_faces(embedder, lfw_root, cache_dir=cache_dir, detector=detector,
                                     per_person=None)
    return {"data": source, **evaluate_open_set(embedder, embedder.embed(crops), names, **kw)}


def open_set_folder(embedder, detector, root, **kw) -> dict:
    """`evaluate_open_set` on `root/<person>/*.jpg`, the largest face of each photo."""
    from siamese.images import ImageError, list_images, read_image
    from siamese.pipeline import model_crops

    root, crops, names = Path(root), [], []
    for path in list_images(root):
        if len(path.relative_to(root).parts) < 2:
            continue
        try:
            image = read_image(path)
        except ImageError as err:
            log.warning("skipped %s", err)
            continue
        faces = detector.detect(image)
        if faces:
            largest = max(faces, key=lambda f: float(f.box[2] * f.box[3]))
            crops.append(model_crops(embedder, image, [largest])[0])
            names.append(path.relative_to(root).parts[0])
    if not crops:
        raise ValueError(f"{root}: no faces in any <person>/<image> file")
    return {"data": str(root), **evaluate_open_set(embedder, embedder.embed(np.stack(crops)), names, **kw)}


# --- benchmark ---------------------------------------------------------------------------------
def bench_gallery(n: int = 1_000_000, per_person: int = 10, add_people: int = 10_000,
                  queries: int = 100, model_path=None, seed: int = 0) -> list[dict]:
    """Time the gallery at scale; prints a table and returns its rows.

    Synthetic faces like real ones: `n / per_person` random unit "people", each stored
    `per_person` times with noise, and queries that are fresh noisy copies (cosine ~0.6 to their
    person's rows, as genuine pairs score). Adds `add_people` people in one transaction; inserts
    the `n` embeddings (100,000 per transaction); loads them into one matrix; times single
    queries, exact float32 and the int8 scan (with its agreement with exact search), and full
    nn identifications (shortlist + head) with the default index.
    """
    import shutil
    import tempfile

    from siamese.bench import _table
    from siamese.export import Embedder
    from siamese.gallery import Gallery, model_identity

    embedder = Embedder.load(model_path or DEFAULT_MODEL)
    rng, d, rows = np.random.default_rng(seed), embedder.dim, []
    unit = lambda m: (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)
    sigma = np.sqrt((1 / 0.6 - 1) / d)  # two noisy copies of a person: cosine ~0.6
    centres = unit(rng.standard_normal((max(1, n // per_person), d), np.float32))
    noisy = lambda c: unit(c + sigma * rng.standard_normal(c.shape, np.float32))

    def timed(fn, label):  # wall ms (what a user waits) and process CPU ms (less load-bound)
        ms, cpu, out = [], [], []
        for i in range(queries):
            t, c = time.perf_counter(), time.process_time()
            out.append(fn(i))
            ms.append(1000 * (time.perf_counter() - t))
            cpu.append(1000 * (time.process_time() - c))
        rows.append({"step": label, "value": f"median {np.median(ms):.1f} ms (p90 "
                     f"{np.percentile(ms, 90):.1f}, best {min(ms):.1f}); CPU {np.median(cpu):.1f} ms"})
        return np.array(out)

    def step(label, t0, extra=""):
        rows.append({"step": label, "value": f"{time.perf_counter() - t0:.2f} s{extra}"})

    tmp = Path(tempfile.mkdtemp(prefix="bench_gallery_"))
    try:
        with Gallery(tmp / "add.sqlite", model_identity(embedder)) as g:
            v = unit(rng.standard_normal((add_people, d), np.float32))
            t = time.perf_counter()
            g.add_many({f"person {i:07d}": (v[i:i + 1], None) for i in range(add_people)})
            step(f"add {add_people:,} people (1 face each), one transaction", t)
        with Gallery(tmp / "big.sqlite", model_identity(embedder)) as g:
            t = time.perf_counter()
            for start in range(0, len(centres), 10_000):  # 100,000 rows per transaction
                m = noisy(np.repeat(centres[start:start + 10_000], per_person, axis=0))
                g.add_many({f"person {start + i // per_person:07d}": (m[i:i + per_person], None)
                            for i in range(0, len(m), per_person)})
            step(f"insert {len(centres) * per_person:,} embeddings ({len(centres):,} people)", t)
            t = time.perf_counter()
            vectors, labels, names, _ = g.embeddings()
            step(f"load {len(vectors):,} x {d} float32 from SQLite into one matrix", t,
                 f", {vectors.nbytes / 2**20:.0f} MiB")
        q = noisy(centres[rng.choice(len(centres), queries)])
        exact = Index(vectors, int8=False)
        truth = timed(lambda i: exact.search(q[i], 1)[0][0, 0], "top-1 query, exact float32")
        t = time.perf_counter()
        fast = Index(vectors, int8=True)
        step("build the int8 copy", t)
        got = timed(lambda i: fast.search(q[i], 1)[0][0, 0], "top-1 query, int8 scan + float32 re-score")
        rows.append({"step": "int8: same top-1 row as exact", "value": f"{np.mean(got == truth):.3f}"})
        rec = Recognizer(embedder, vectors, labels, names)
        timed(lambda i: rec.identify(q[i]), "identify, nn (shortlist 32 + head), default index")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(_table(rows))
    return rows


# --- command-line entry point (a thin Hydra main in siamese.cli calls it) ------------------
def open_set_command(cfg, out_dir=None) -> dict:
    """Open-set evaluation (recognize.yaml's `open_set` block): LFW or a folder; writes open_set.json."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from siamese.bench import _table
    from siamese.export import Embedder
    from siamese.images import atomic_write_text

    o, embedder = cfg.open_set, Embedder.load(cfg.model_path)
    kw = dict(seed=o.seed, gallery_per_person=o.gallery_per_person, unknown_share=o.unknown_share,
              far_target=cfg.far_target, shortlist=cfg.shortlist)
    if o.dataset == "lfw":
        r = open_set_lfw(embedder, cfg.data.root, cfg.calibration.cache_dir, instantiate(cfg.detector), **kw)
    else:
        r = open_set_folder(embedder, instantiate(cfg.detector), o.dataset, **kw)
    print(f"{r['data']}: {r['gallery_people']} people enrolled ({r['gallery_faces']} faces), "
          f"{r['known_probes']} known probes, {r['unknown_test']} unknown people tested "
          f"(+{r['unknown_calibration']} calibrating), seed {r['seed']}")
    cols = max(r["methods"].values(), key=len)  # svc has no model-threshold columns
    print(_table([{"method": m, **{k: v.get(k, "-") for k in cols}} for m, v in r["methods"].items()]))
    out = Path(out_dir or HydraConfig.get().runtime.output_dir) / "open_set.json"
    atomic_write_text(out, json.dumps(r, indent=2))
    print(f"-> {out}")
    return r
