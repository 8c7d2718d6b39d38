"""The index on disk: a folder `NAME.parquet/` of Parquet shards, one row per face, and the reader
that streams it by row groups.

    NAME.parquet/_index.json          the settings it was built with (model fingerprint, detector, ...)
    NAME.parquet/_summary.json        the last complete run's counts (sources, faces, errors by reason)
    NAME.parquet/part-<hash>.parquet  one shard per slice of input files (see `siamese.library.plan`)

Columns (`COLUMNS`): source (path relative to the input folder, posix; a video's too), frame and
time_s (-1 for photos), face (rank among its image's detections, 0 = best score), score (detector,
0..1), box (x, y, w, h) and landmarks (5 x (x, y)) in source pixels, image_w and image_h, frontalness
(`siamese.faces.frontalness`) and sharpness (`siamese.faces.align.sharpness` of the crop at the
index's align size, as the cluster manifest reports it), embedding (D float32, unit length), sha256
of the source file, label (the first folder of `source` when it is in one: `<person>/<photo>`, else
""), model (the embedder's fingerprint). Names beginning "_" are skipped by pyarrow and pandas, so
`pandas.read_parquet(sorted(glob("NAME.parquet/part-*.parquet")))` reads it too.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from siamese.io.files import atomic_write_bytes

__all__ = ["COLUMNS", "INSTALL", "META", "SUMMARY", "IndexRows", "index_folder", "open_index", "require_extra",
           "shard_bytes", "shard_meta", "write_shard"]

INSTALL = "pip install 'siamese[scale]'"
COLUMNS = ["source", "frame", "time_s", "face", "score", "box", "landmarks", "image_w", "image_h",
           "frontalness", "sharpness", "embedding", "sha256", "label", "model"]
_VECTORS = {"box": 4, "landmarks": 10}  # fixed-size list columns (embedding: D, from the data)
META, SUMMARY = "_index.json", "_summary.json"


def require_extra(what: str, modules: tuple[str, ...] = ("pyarrow",)) -> None:
    """Raise a one-line ImportError saying how to install the `scale` extra if a module is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{what} needs {' and '.join(missing)} (the scale extra): {INSTALL}")


def _pa():
    require_extra("reading or writing a face index")
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


def shard_bytes(rows: dict, meta: dict) -> bytes:
    """One shard as Parquet bytes: `rows` maps each of `COLUMNS` to a column ((n,) arrays, lists of
    str, (n, 4) / (n, 10) / (n, D) float32 arrays); `meta` (JSON-able, with "dim" = D) goes into the
    file's key-value metadata as "siamese" (the shard's files, counts and skipped files)."""
    pa, pq = _pa()
    n = len(rows["source"])
    cols = {}
    for name in COLUMNS:
        v = rows[name]
        if name in _VECTORS or name == "embedding":
            width = _VECTORS.get(name) or int(meta["dim"])
            a = np.ascontiguousarray(np.asarray(v, np.float32).reshape(n, width))
            cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(a.ravel(), pa.float32()), width)
        elif name in ("source", "sha256", "label", "model"):
            cols[name] = pa.array([str(s) for s in v], pa.string())
        else:
            dtype = {"frame": pa.int32(), "face": pa.int16(), "image_w": pa.int32(), "image_h": pa.int32()}.get(
                name, pa.float32())
            cols[name] = pa.array(np.asarray(v), dtype)
    table = pa.table(cols).replace_schema_metadata({"siamese": json.dumps(meta)})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=8192, compression="zstd")
    return buf.getvalue()


def write_shard(path: str | os.PathLike, rows: dict, meta: dict) -> Path:
    """`shard_bytes` written atomically: a killed run leaves the shard whole or absent."""
    return atomic_write_bytes(path, shard_bytes(rows, meta))


def shard_meta(path: str | os.PathLike) -> dict | None:
    """A complete shard's metadata (`shard_bytes`' meta), or None if it is missing or unreadable."""
    _, pq = _pa()
    try:
        kv = pq.read_metadata(path).metadata or {}
        return json.loads(kv[b"siamese"])
    except (OSError, ValueError, KeyError):
        return None


def index_folder(path: str | os.PathLike) -> Path | None:
    """`path` if it is an index folder (has `_index.json`), else None."""
    p = Path(path)
    return p if (p / META).is_file() else None


class IndexRows:
    """A built index, read lazily: its settings, shards and rows in row-group batches.

    Attributes:
        path: the folder; meta: `_index.json`; summary: `_summary.json` (or {}); shards: the
        part files, sorted; num_rows: faces in all shards; dim: the embedding's D.
    """

    def __init__(self, path: str | os.PathLike):
        _, pq = _pa()
        self.path = Path(path)
        if index_folder(self.path) is None:
            raise FileNotFoundError(f"{self.path}: not a face index (no {META}) — build one with "
                                    f"`siamese index PHOTOS --out {self.path}`")
        self.meta = json.loads((self.path / META).read_text())
        s = self.path / SUMMARY
        self.summary = json.loads(s.read_text()) if s.is_file() else {}
        self.shards = sorted(self.path.glob("part-*.parquet"))
        self.num_rows = sum(pq.read_metadata(p).num_rows for p in self.shards)
        self.dim = int(self.meta.get("dim", 0))

    def batches(self, columns: list[str] | None = None) -> Iterator[dict]:
        """Rows as {column: numpy array or list of str}, one Parquet row group at a time (at most
        8,192 faces): memory stays at one batch whatever the index's size."""
        _, pq = _pa()
        columns = columns or COLUMNS
        for path in self.shards:
            f = pq.ParquetFile(path)
            for g in range(f.num_row_groups):
                yield _numpy(f.read_row_group(g, columns=columns))

    def embeddings(self) -> np.ndarray:
        """(num_rows, D) float32, filled row group by row group into one preallocated array (peak:
        the array plus one row group)."""
        out = np.empty((self.num_rows, self.dim), np.float32)
        i = 0
        for b in self.batches(["embedding"]):
            out[i:i + len(b["embedding"])] = b["embedding"]
            i += len(b["embedding"])
        return out


def _numpy(table) -> dict:
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if hasattr(col.type, "list_size"):
            out[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
        elif col.type == "string" or str(col.type) == "string":
            out[name] = col.to_pylist()
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


def open_index(path: str | os.PathLike) -> IndexRows:
    """The index at `path` (a folder written by `siamese index`)."""
    return IndexRows(path)
