"""The boundary with the file system: images and videos in (RGB uint8), files and folders out
(atomically), person names checked, and where the package keeps things. Nothing here knows
about faces or models."""

from siamese.io.files import (
                              atomic_save_npy,
                              atomic_write_bytes,
                              atomic_write_text,
                              safe_name,
                              staged_dir,
                              swap_dir,
                              sweep_stale,
)
from siamese.io.images import IMAGE_SUFFIXES, ImageError, NothingRead, iter_images, list_images, read_image, write_image
from siamese.io.names import UNKNOWN, BadName, check_name
from siamese.io.paths import DEFAULT_MODEL, PACKAGE_DIR, lfw_cache
from siamese.io.video import VIDEO_SUFFIXES, Frame, FrameSource, SourceError, is_video, iter_frames, parse_source

__all__ = ["DEFAULT_MODEL", "IMAGE_SUFFIXES", "PACKAGE_DIR", "UNKNOWN", "VIDEO_SUFFIXES", "BadName", "Frame",
           "FrameSource", "ImageError", "NothingRead", "SourceError", "atomic_save_npy", "atomic_write_bytes",
           "atomic_write_text",
           "check_name", "is_video", "iter_frames", "iter_images", "lfw_cache", "list_images", "parse_source",
           "read_image", "safe_name", "staged_dir", "swap_dir", "sweep_stale", "write_image"]
