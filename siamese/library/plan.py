"""What to index, in shards: the input's photos in slices of `shard_size` files and each video on
its own, every shard named by a hash of its files (relative path, size, modification time).

The name is what makes a run resumable: a re-run plans the same shards, finds the ones already
written (whole, since each is written atomically) and does only the rest; a photo that changed or
was added changes its slice's name, so that slice alone is redone (and the stale shard removed).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from siamese.io.media import list_sources

__all__ = ["Shard", "plan_shards"]


@dataclass
class Shard:
    """One unit of work and one Parquet file.

    Attributes:
        name: "part-<16 hex>", the file's stem; kind: "photos" or "video".
        root: the input folder every file is relative to; files: their relative posix paths.
    """

    name: str
    kind: str
    root: str
    files: list[str] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return f"{self.name}.parquet"


def _key(root: Path, rel: str) -> list:
    try:
        st = os.stat(root / rel)
        return [rel, st.st_size, st.st_mtime_ns]
    except OSError:  # gone or unreadable: the reader will say so; the name still has to be stable
        return [rel, -1, -1]


def _name(kind: str, root: Path, files: list[str], settings: str) -> str:
    blob = json.dumps([kind, settings, [_key(root, f) for f in files]]).encode()
    return "part-" + hashlib.sha256(blob).hexdigest()[:16]


def plan_shards(input: str | os.PathLike, errors: Counter, shard_size: int = 256, videos: bool = True,
                settings: str = "") -> list[Shard]:
    """The shards of `input`, in a stable order (photos first, then videos).

    Args:
        input: a folder, a photo or a video (see `list_sources`).
        errors: receives the listing's problems by reason (unreadable_folder, symlink_loop, ...).
        shard_size: photos per shard; each video is a shard of its own.
        videos: also index the video files of a folder.
        settings: what else decides a shard's rows (sampling rate of videos): part of the name.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    root, photos, vids = list_sources(input, errors, videos)
    rel = [p.relative_to(root).as_posix() for p in photos]
    shards = []
    for i in range(0, len(rel), shard_size):
        files = rel[i:i + shard_size]
        shards.append(Shard(_name("photos", root, files, settings), "photos", str(root), files))
    for v in vids:
        files = [v.relative_to(root).as_posix()]
        shards.append(Shard(_name("video", root, files, settings), "video", str(root), files))
    return shards
