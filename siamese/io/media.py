"""The photos and videos under a path: what every pass over a user's media reads (`siamese index`,
`siamese teach extra=DIR`)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from siamese.io.images import list_images
from siamese.io.video import VIDEO_SUFFIXES, is_video

__all__ = ["list_sources", "walk_videos"]


def walk_videos(root: Path) -> list[Path]:
    """Files under `root` with a video suffix (hidden files and folders skipped), sorted."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder) / f for f in files
                  if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return sorted(found, key=str)


def list_sources(input: str | os.PathLike, errors: Counter, videos: bool = True) -> tuple[Path, list[Path], list[Path]]:
    """(root, photos, videos) under `input`: a folder (photos as `siamese.io.images.list_images`
    finds them, its bad entries logged and counted into `errors`; and video files by suffix), one
    photo, or one video (known by its content, as `siamese detect` knows it)."""
    input = Path(input)
    if is_video(input):
        return input.parent, [], [input]
    photos = list_images(input, errors)  # a missing input raises here, naming it
    if not input.is_dir():
        return input.parent, photos, []
    return input, photos, walk_videos(input) if videos else []
