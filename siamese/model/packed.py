"""Weight files stored compressed in the tree and unpacked, hash-checked, on first use.

The shipped network is 6.0 M float32 numbers (24 MB as ONNX). Such numbers barely compress as they
are (xz: -8 %), because each one's sign and exponent byte, which repeats a lot, sits between three
bytes of near-random mantissa. Stored as byte planes -- every file's byte 0, 4, 8, ... first, then
1, 5, 9, ..., then 2, ..., then 3, ... (the last len % 4 bytes as they are) -- the exponent bytes
line up and xz takes 16 % off. Nothing is lost: unpacking gives the original file, byte for byte,
and its SHA-256 is checked against the one model.json records before anything uses it.

    embedding.onnx  --pack()-->  embedding.onnx.planes.xz   (in the tree / the wheel)
    embedding.onnx.planes.xz  --weights_path()-->  <cache>/models/<sha256>/embedding.onnx (once)

The cache is `SIAMESE_CACHE`, else `$XDG_CACHE_HOME/siamese`, else `~/.cache/siamese`
(`siamese.io.paths.user_cache`). The packed file is plain xz: `xz -dc FILE` gives the planes.
To ship a new network: `python -m siamese.model.packed MODEL_DIR/embedding.onnx`.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
from pathlib import Path

import numpy as np

from siamese.io.files import atomic_write_bytes, file_digest
from siamese.io.paths import user_cache

__all__ = ["SUFFIX", "pack", "stored", "unpack_bytes", "weights_path"]

SUFFIX = ".planes.xz"
_STRIDE = 4  # float32: four byte planes
_CHECKED: dict[Path, tuple[int, int]] = {}  # unpacked copies hashed by this process: (mtime_ns, size)


def _planes(data: bytes) -> bytes:
    """File bytes -> byte planes (see the module docstring); the same length."""
    n = len(data) // _STRIDE * _STRIDE
    body = np.frombuffer(data, np.uint8, count=n).reshape(-1, _STRIDE).T
    return np.ascontiguousarray(body).tobytes() + data[n:]


def _unplanes(data: bytes) -> bytes:
    """Byte planes -> the file's bytes (the inverse of `_planes`)."""
    n = len(data) // _STRIDE * _STRIDE
    body = np.frombuffer(data, np.uint8, count=n).reshape(_STRIDE, -1).T
    return np.ascontiguousarray(body).tobytes() + data[n:]


def pack(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> Path:
    """Write `src` as byte planes, xz-compressed (preset 9, extreme), to `dst` (default: `src` +
    ".planes.xz"), atomically. Returns the packed file's path. 24 MB take ~10 s."""
    src = Path(src)
    dst = Path(dst) if dst is not None else src.with_name(src.name + SUFFIX)
    packed = lzma.compress(_planes(src.read_bytes()), preset=9 | lzma.PRESET_EXTREME)
    return atomic_write_bytes(dst, packed)


def unpack_bytes(packed: str | os.PathLike) -> bytes:
    """The original bytes of a packed file (~1 s for the shipped model).

    Raises:
        ValueError: the file is not xz (damaged or not a packed file), named in the message.
    """
    try:
        return _unplanes(lzma.decompress(Path(packed).read_bytes()))
    except lzma.LZMAError as e:
        raise ValueError(f"{packed}: not a packed weight file ({e}) — reinstall the model") from e


def stored(root: str | os.PathLike, name: str) -> Path | None:
    """The file in model dir `root` that holds weight file `name`: `root/name`, else
    `root/name.planes.xz`, else None. Reads nothing (see `weights_path` for a readable path)."""
    for p in (Path(root) / name, Path(root) / (name + SUFFIX)):
        if p.is_file():
            return p
    return None


def weights_path(root: str | os.PathLike, name: str) -> Path | None:
    """Where weight file `name` (e.g. "embedding.onnx") of model dir `root` can be read, or None.

    `root/name` itself when present; else, if `root/name.planes.xz` is there, its unpacked copy in
    the user cache, made on first use (atomically, so parallel first uses are safe) and named by
    the SHA-256 that `root/model.json` records for `name`.

    Raises:
        ValueError: a packed file whose model.json records no hash for it, or whose unpacked bytes
            do not have that hash (a damaged or swapped file: nothing is used).
        OSError: the cache cannot be written (set SIAMESE_CACHE to a writable folder).
    """
    packed = stored(root, name)
    if packed is None or packed.name == name:
        return packed  # not there, or there as it is
    meta = Path(root) / "model.json"
    want = json.loads(meta.read_text()).get("files", {}).get(name) if meta.is_file() else None
    if not want:
        raise ValueError(f"{packed}: {meta} records no SHA-256 for {name}, so it cannot be checked")
    cached = user_cache() / "models" / want / name
    if cached.is_file():
        st = cached.stat()
        if _CHECKED.get(cached) == (st.st_mtime_ns, st.st_size):
            return cached  # hashed once by this process and unchanged since: not 24 MB read again
        if file_digest(cached) == want:
            _CHECKED[cached] = (st.st_mtime_ns, st.st_size)
            return cached
    data = unpack_bytes(packed)
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ValueError(f"{packed}: unpacks to SHA-256 {got[:12]}…, model.json records {want[:12]}… — "
                         "the file is damaged or from another model; reinstall the model")
    try:
        atomic_write_bytes(cached, data)
    except OSError as e:
        raise OSError(f"{cached.parent}: cannot write the unpacked model there ({e.strerror or e}) — "
                      "set SIAMESE_CACHE to a writable folder") from e
    st = cached.stat()
    _CHECKED[cached] = (st.st_mtime_ns, st.st_size)
    return cached


if __name__ == "__main__":  # python -m siamese.model.packed FILE...: pack weight files to ship them
    import sys

    for arg in sys.argv[1:]:
        out = pack(arg)
        print(f"{arg} ({Path(arg).stat().st_size} B) -> {out} ({out.stat().st_size} B); "
              f"record its SHA-256 and {Path(arg).name}'s in model.json 'files', then remove {arg}")
