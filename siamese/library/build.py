"""`build_index`: a photo/video library -> `NAME.parquet/` (see `siamese.library.table`), with Ray
or in this process, resumable.

    list files -> shards (siamese.library.plan) -> skip the shards already written
      -> [Ray Data] read, decode, detect, align (CPU workers, one shard per call)
      -> embed (an ONNX Runtime actor pool, the model loaded once per actor)
      -> this process writes each shard atomically as soon as all its rows are in

A kill at any point leaves only whole shards; the next run with the same settings writes the rest
and removes shards of files that changed or went away. Settings that change every row (another
model, detector, sampling or crop) are refused unless overwrite=true, which starts again.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from siamese.data.cache import make
from siamese.io.files import atomic_write_text
from siamese.library import table
from siamese.library.plan import Shard, plan_shards
from siamese.library.work import detect_shard, embed_crops, quiet_threads
from siamese.model.embedder import Embedder

__all__ = ["BACKENDS", "build_index"]

log = logging.getLogger(__name__)

BACKENDS = ("ray", "local")
_SAME = ("model", "detector", "every_s", "crop_size", "crop_padding", "root")  # what every row depends on
_COUNTS = ("sources", "frames", "faces", "without_face", "many_faces")


def build_index(input: str | os.PathLike, out: str | os.PathLike, *, detector: dict, model_path=None,
                backend: str = "ray", address: str | None = None, num_cpus: int | None = None,
                detect_workers: int | None = None, embed_actors: int | None = None, shard_size: int = 256,
                every_s: float = 1.0, videos: bool = True, crop_size: int = 112, crop_padding: float = 0.0,
                overwrite: bool = False, progress: bool = True) -> dict:
    """Index every face under `input` into the Parquet folder `out`.

    Args:
        input: a folder of photos and videos (recursive), one photo or one video.
        out: the index folder (`NAME.parquet/`): new, empty, or an index of the same input built with
            the same settings (then only missing shards are done).
        detector: a conf/detector entry ({"_target_": ..., **kwargs}); every worker builds its own.
        model_path: the embedder (`siamese.model.Embedder.load`); None: the shipped model.
        backend: "ray" (a Ray Data pipeline) or "local" (this process; the same rows).
        address: an existing Ray cluster ("auto", "ray://host:10001"); None starts a local one with
            `num_cpus` CPUs (None: all). A Ray already started in this process is used as it is.
        detect_workers: Ray workers reading and detecting; embed_actors: ONNX Runtime actors (one
            model each). Each is one thread and takes half a CPU; None: as many as the cluster's CPUs.
        shard_size: photos per shard (the unit of resuming); each video is one shard.
        every_s: videos: one frame per this many seconds. videos: index a folder's videos too.
        crop_size, crop_padding: the crop whose sharpness is recorded (the cluster manifest's).
        overwrite: replace an index built with other settings.
        progress: a progress bar of files done.

    Returns:
        The summary (also `_summary.json`): shards (total, written now, resumed), sources, frames,
        faces, sources_without_face, sources_with_many_faces, errors, errors_by_reason, seconds,
        files_per_s.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    table.require_extra("siamese index", ("pyarrow", "ray") if backend == "ray" else ("pyarrow",))
    t0 = time.perf_counter()
    input, out = Path(input), Path(out)
    if not os.path.lexists(input):
        raise FileNotFoundError(f"{input}: not found — give a folder of photos and videos, a photo or a video")
    embedder = Embedder.load(model_path)
    shown_root = str(input if input.is_dir() else input.parent)
    settings = {"model": embedder.fingerprint(), "model_path": str(embedder.path), "dim": embedder.dim,
                "detector": dict(detector), "every_s": float(every_s), "crop_size": int(crop_size),
                "crop_padding": float(crop_padding), "root": os.path.realpath(shown_root), "shard_size": shard_size}
    _prepare_out(out, settings, overwrite)
    listing: Counter = Counter()
    shards = plan_shards(os.path.realpath(input), listing, shard_size, videos, settings=f"every_s={every_s}")
    done = {s.name for s in shards if table.shard_meta(out / s.file_name) is not None}
    todo = [s for s in shards if s.name not in done]
    log.info("%s: %d files in %d shards, %d already indexed -> %s", input, sum(len(s.files) for s in shards),
             len(shards), len(done), out)
    from tqdm import tqdm

    bar = tqdm(total=sum(len(s.files) for s in todo), desc="index", unit="file", disable=not progress)

    def finished(shard: Shard, rows: dict, stats: dict) -> None:
        meta = {"shard": shard.name, "kind": shard.kind, "files": shard.files, "dim": embedder.dim,
                "model": settings["model"], **stats}
        rows["model"] = [settings["model"]] * len(rows["source"])
        table.write_shard(out / shard.file_name, rows, meta)
        for _reason, line, level in stats["errors"]:
            (log.error if level == "error" else log.warning)("%s", line)
        bar.update(len(shard.files))

    run = _run_ray if backend == "ray" else _run_local
    t1 = time.perf_counter()
    try:
        run(todo, shown_root, settings, finished, address=address, num_cpus=num_cpus,
            detect_workers=detect_workers, embed_actors=embed_actors)
    finally:
        bar.close()
    seconds = time.perf_counter() - t1
    planned = {s.file_name for s in shards}
    for stale in out.glob("part-*.parquet"):  # files that changed or went away since an earlier run
        if stale.name not in planned:
            stale.unlink()
    summary = _summary(out, shards, listing, input, backend, len(todo), seconds, time.perf_counter() - t0)
    atomic_write_text(out / table.SUMMARY, json.dumps(summary, indent=2))
    return summary


def _prepare_out(out: Path, settings: dict, overwrite: bool) -> None:
    """Refuse an `out` that holds anything but an index of these settings; write `_index.json`."""
    if os.path.lexists(out) and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder — give out the name of a new folder")
    meta = out / table.META
    if out.is_dir() and any(out.iterdir()):
        if not meta.is_file():
            strangers = sorted(p.name for p in out.iterdir() if p.name != "siamese.log")
            if strangers:
                raise FileExistsError(f"{out} is not empty and is no face index ({strangers[0]}, ...) — choose a "
                                      "new or empty out (nothing there was touched)")
        else:
            old = json.loads(meta.read_text())
            changed = [k for k in _SAME if old.get(k) != settings[k]]
            if changed and not overwrite:
                raise FileExistsError(f"{out} is an index built with another {', '.join(changed)} — choose another "
                                      "out or pass overwrite=true to rebuild it")
            if changed:
                for p in out.glob("part-*.parquet"):
                    p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(meta, json.dumps(settings, indent=2))


def _summary(out: Path, shards: list[Shard], listing: Counter, input: Path, backend: str, written: int,
             seconds: float, total: float) -> dict:
    counts, errors = Counter(), Counter(listing)
    for s in shards:
        m = table.shard_meta(out / s.file_name) or {}
        counts.update({k: m.get(k, 0) for k in (*_COUNTS, "files")})
        errors.update(reason for reason, _, _ in m.get("errors", []))
        if m.get("undecodable_frame"):
            errors["undecodable_frame"] += m["undecodable_frame"]
    files = sum(len(s.files) for s in shards)
    return {"task": "index", "input": str(input), "backend": backend, "shards": len(shards),
            "shards_written": written, "shards_resumed": len(shards) - written, "files": files,
            "sources": counts["sources"], "frames": counts["frames"], "faces": counts["faces"],
            "sources_without_face": counts["without_face"], "sources_with_many_faces": counts["many_faces"],
            "errors": sum(errors.values()), "errors_by_reason": dict(errors),
            "seconds": round(total, 2), "pipeline_seconds": round(seconds, 2),
            "files_per_s": round(sum(len(s.files) for s in shards if s) / seconds, 1)
            if written == len(shards) and seconds > 0 else None}


# --- the local backend: this process, shard after shard --------------------------------------
def _run_local(todo, shown_root, settings, finished, **_):
    detector = make(settings["detector"])
    embedder = Embedder.load(settings["model_path"])
    for shard in todo:
        rows, crops, stats = _detect(shard, detector, embedder, settings, shown_root)
        rows["embedding"] = embed_crops(embedder, crops)
        finished(shard, rows, stats)


def _detect(shard, detector, embedder, settings, shown_root):
    return detect_shard(shard, detector, embedder, every_s=settings["every_s"], crop_size=settings["crop_size"],
                        crop_padding=settings["crop_padding"], shown_root=shown_root)


# --- the Ray backend ---------------------------------------------------------------------------
class _DetectStage:
    """Ray Data stage 1: a shard's files -> one row per face with its model crop, `STEP` files at a time
    (so the embedding actors start on a shard before its last file is read), and after its last
    face one row (seq -1) carrying the shard's counts and skipped files."""

    settings: dict = {}  # set on a subclass per run (`_bound`), so nothing goes through the object store
    shown_root = ""
    STEP = 16

    def __init__(self):
        quiet_threads()
        self.detector = make(self.settings["detector"])
        self.embedder = Embedder.load(self.settings["model_path"], threads=1)  # its preprocessing only

    def __call__(self, batch: dict):
        shard = Shard(**json.loads(str(batch["shard"][0])))
        total, errors, seq = Counter(), [], 0
        for lo in range(0, len(shard.files), self.STEP):
            part = Shard(shard.name, shard.kind, shard.root, shard.files[lo:lo + self.STEP])
            rows, crops, stats = _detect(part, self.detector, self.embedder, self.settings, self.shown_root)
            errors += stats.pop("errors")
            total.update(stats)
            last = lo + self.STEP >= len(shard.files)
            if len(crops) or last:
                yield self._columns(shard.name, rows, crops, seq, dict(total, errors=errors) if last else None)
            seq += len(crops)

    def _columns(self, name: str, rows: dict, crops: np.ndarray, seq: int, stats: dict | None) -> dict:
        n, s, head = len(rows["source"]), self.embedder.input_size, int(stats is not None)
        cols = {"shard": np.array([name] * (n + head)),
                "seq": np.concatenate([[-1] * head, np.arange(seq, seq + n)]).astype(np.int64),
                "stats": np.array([json.dumps(stats)] * head + [""] * n),
                "crop": np.concatenate([np.zeros((head, s, s, 3), np.uint8), crops])}
        blank = {"source": "", "sha256": "", "label": "", "box": np.zeros(4, np.float32),
                 "landmarks": np.zeros(10, np.float32)}
        for key, values in rows.items():
            first = [blank.get(key, -1)] * head
            cols[key] = np.array([*first, *values]) if key not in ("box", "landmarks") \
                else np.stack([*first, *values] or [blank[key]])[:n + head].astype(np.float32)
        return cols


class _EmbedStage:
    """Ray Data stage 2 (the actor pool): crops -> embeddings, the model loaded once per actor."""

    model_path = ""

    def __init__(self):
        self.embedder = Embedder.load(self.model_path, threads=1)

    def __call__(self, batch: dict) -> dict:
        crops = batch.pop("crop")
        faces = np.asarray(batch["seq"]) >= 0
        emb = np.zeros((len(crops), self.embedder.dim), np.float32)
        if faces.any():
            emb[faces] = embed_crops(self.embedder, np.ascontiguousarray(crops[faces]))
        batch["embedding"] = emb
        return batch


def _bound(stage: type, **attrs) -> type:
    """`stage` with this run's settings as class attributes. Ray ships a class made here by value;
    constructor arguments would go through the object store, which Ray warns about on every run."""
    return type(stage.__name__.lstrip("_"), (stage,), attrs)


def _run_ray(todo, shown_root, settings, finished, *, address, num_cpus, detect_workers, embed_actors):
    import ray

    if not todo:
        return
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else (num_cpus or os.cpu_count()),
                 include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its execution notes: our bar says how far it is
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        # Each worker and actor is one thread and asks for half a CPU, so there are two processes per
        # core: whichever stage is slower for this library (small photos: embedding; big ones:
        # detection), no core waits for the other stage.
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers, actors = detect_workers or cpus, embed_actors or cpus
        with warnings.catch_warnings():  # max_restarts: not yet a named parameter of map_batches
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ray.data.from_items([{"shard": json.dumps(asdict(s))} for s in todo], override_num_blocks=len(todo))
            ds = ds.map_batches(_bound(_DetectStage, settings=settings, shown_root=shown_root), batch_size=1,
                                batch_format="numpy", num_cpus=0.5, max_restarts=0,
                                compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo))))
            ds = ds.map_batches(_bound(_EmbedStage, model_path=settings["model_path"]), batch_size=None,
                                batch_format="numpy", num_cpus=0.5, max_restarts=0,
                                compute=ray.data.ActorPoolStrategy(size=actors))
        by_name = {s.name: s for s in todo}
        pending: dict[str, dict] = {}
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for name in np.unique(batch["shard"]):
                part = {k: v[batch["shard"] == name] for k, v in batch.items()}
                p = pending.setdefault(str(name), {"parts": [], "faces": 0, "stats": None})
                p["parts"].append(part)
                head = part["seq"] < 0
                p["faces"] += int((~head).sum())
                if head.any():
                    p["stats"] = json.loads(str(part["stats"][head][0]))
                if p["stats"] is not None and p["faces"] == p["stats"]["faces"]:
                    finished(by_name[str(name)], _assemble(pending.pop(str(name))["parts"]), p["stats"])
    finally:
        if started:
            ray.shutdown()


def _assemble(parts: list[dict]) -> dict:
    """A shard's rows from the pieces Ray delivered, in the order its files were read."""
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cols["seq"], kind="stable")
    keep = order[cols["seq"][order] >= 0]
    return {k: (cols[k][keep].tolist() if cols[k].dtype.kind in "USO" else cols[k][keep])
            for k in (*table.COLUMNS[:-1],)}

