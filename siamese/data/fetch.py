"""Getting LFW: download the official files with their checksums, or link an existing copy, and
check a copy. Stdlib only (urllib is imported only when downloading).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from siamese.data.lfw import _GET_LFW, BESIDE_REPO, DEFAULT_ROOT, LFW, PEOPLE_FILES, DatasetError, resolve_root
from siamese.io.files import file_digest

__all__ = ["CHECKSUMS", "check", "fetch", "link_existing", "verify_checksums"]

BASE_URL = "http://vis-www.cs.umass.edu/lfw/"  # module constant so tests can point it elsewhere


ARCHIVE_MD5 = ("lfw.tgz", "a17d05bd522c52d84eca14327a23d494")


# Official MD5s of the protocol files (the same values torchvision's LFW loader checks).
CHECKSUMS = {
    "pairs.txt": "9f1ba174e4e1c508ff7cdf10ac338a7d",
    "pairsDevTrain.txt": "4f27cbf15b2da4a85c1907eb4181ad21",
    "pairsDevTest.txt": "5132f7440eb68cf58910c8a45a2ac10b",
    "people.txt": "450f0863dd89e85e73936a6d71a3474b",
    "peopleDevTrain.txt": "54eaac34beb6d042ed3a7d883e247a21",
    "peopleDevTest.txt": "e4bf5be0a43b5dcd9dc5ccfcb8fb19c5",
    "lfw-names.txt": "a6d0a479bd074669f656265a6e693f6d",
}


def _md5(path: Path) -> str:
    return file_digest(path, "md5")  # a checksum, not security (usedforsecurity=False: FIPS builds allow it)


def verify_checksums(root: str | os.PathLike | None = None) -> dict[str, bool]:
    """Compare the 7 protocol text files with the official MD5s; a missing file is False."""
    root = resolve_root(root)
    return {name: (root / name).is_file() and _md5(root / name) == md5 for name, md5 in CHECKSUMS.items()}


def _download(name: str, md5: str, dest: Path) -> Path:
    """Download BASE_URL/name to dest/name unless already there with the right MD5."""
    import urllib.error  # imported here: urllib pulls in ssl/email (~15 ms) that only fetch needs
    import urllib.request
    from http.client import HTTPException

    target = dest / name
    if target.is_file() and _md5(target) == md5:
        return target  # resumable: a finished file is never fetched twice
    url = BASE_URL + name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
    try:
        h = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
                h.update(chunk)
        if h.hexdigest() != md5:
            raise DatasetError(f"{url} downloaded with MD5 {h.hexdigest()}, expected {md5} — retry, or {_GET_LFW}")
        os.replace(tmp, target)  # atomic: target is either absent or complete
    except (urllib.error.URLError, ConnectionError, TimeoutError, HTTPException) as e:
        raise DatasetError(f"cannot download {url} ({getattr(e, 'reason', e)}) — no network? "
                           f"Point LFW_ROOT or data.root at an existing LFW copy instead") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def fetch(dest: str | os.PathLike) -> Path:
    """Download and verify official LFW into `dest` (dest/lfw/<Person>/..., dest/pairs.txt, ...).

    Resumable per file: files already present with the right MD5 are kept; the images are
    extracted next to dest/lfw and renamed into place, so an existing dest/lfw is complete.

    Returns:
        `dest` as an absolute path, ready for `LFW(dest)`.

    Raises:
        DatasetError: no network, or a download with the wrong MD5.
    """
    dest = Path(dest).expanduser().absolute()
    dest.mkdir(parents=True, exist_ok=True)
    for name, md5 in CHECKSUMS.items():
        _download(name, md5, dest)
    if not (dest / "lfw").is_dir():
        import tarfile

        archive = _download(*ARCHIVE_MD5, dest)
        with tempfile.TemporaryDirectory(dir=dest, prefix=".lfw-extract.") as tmp:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")  # "data" refuses absolute paths and ../ tricks
            os.replace(Path(tmp) / "lfw", dest / "lfw")
        archive.unlink()  # 173 MB we no longer need; dest/lfw now marks the images as done
    return dest


def _existing_copy() -> Path | None:
    """An LFW copy other than data/lfw, by `resolve_root`'s rule: LFW_ROOT, else the one beside the repo."""
    found = [Path(c) for c in (os.environ.get("LFW_ROOT"), BESIDE_REPO) if c and (Path(c) / "pairs.txt").is_file()]
    return found[0].absolute() if found else None


def link_existing(dest: str | os.PathLike = DEFAULT_ROOT, link: bool = True) -> tuple[str, Path]:
    """Make LFW available at `dest`: link an existing copy (`$LFW_ROOT`, or `../shared/datasets/lfw`
    beside the repo) when there is one, else download it (`fetch`).

    Returns:
        (what happened, path): "downloaded" (dest), "linked" (dest), "exists" (dest was already
        there; left alone) or "elsewhere" (the copy's path, when `link` is False).
    """
    dest = Path(dest)
    copy = _existing_copy()
    if copy is None:
        return "downloaded", fetch(dest)
    if not link:
        return "elsewhere", copy
    if dest.exists() or dest.is_symlink():
        return "exists", dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(copy, target_is_directory=True)
    return "linked", dest


def check(root: str | os.PathLike | None = None) -> dict:
    """Counts of an LFW copy and its checksums: {"root", "images", "people", splits: {name:
    {"people", "images", "pairs", "same"}}, "view2": {"folds", "pairs"}, "md5": {file: ok}}.

    Raises:
        DatasetError: a missing or malformed file (one line: the file and the fix).
    """
    lfw = LFW(root)
    images = lfw.images()
    splits = {}
    for split in PEOPLE_FILES:
        people, pairs = lfw.people(split), lfw.pairs(split)
        splits[split] = {"people": len(people), "images": sum(people.values()), "pairs": len(pairs),
                         "same": sum(p.same for p in pairs)}
    view2 = lfw.view2()
    return {"root": str(lfw.root), "images": len(images), "people": len({r.person for r in images}),
            "splits": splits, "view2": {"folds": len(view2), "pairs": sum(len(f.pairs) for f in view2)},
            "md5": verify_checksums(lfw.root)}
