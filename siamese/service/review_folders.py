"""The files of a cluster result under review: crops moved between its folders (and only there),
put back where the manifest says after a crash, contact sheets redrawn, the labelled export, and
which folders and unassigned faces hold which crops (and were seen together) for "May be the same
person".

Every path here is the result folder joined with a manifest crop path that `review_store` checked
(FOLDER/NAME or FOLDER/all/NAME, no '..'); `inside` also refuses any symlink on the way, so no
request can reach a file outside the folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path, PurePosixPath

from siamese.clustering.output import SHEET_MAX
from siamese.clustering.sheets import contact_sheet, overview
from siamese.io.files import staged_dir
from siamese.io.images import ImageError, read_image, write_image

__all__ = ["ReviewError", "export", "inside", "move_crops", "alike_items", "redraw", "repair", "sheet_items",
           "valid_crop"]

log = logging.getLogger(__name__)


class ReviewError(ValueError):
    """A request the review cannot carry out: `status` (HTTP) and one line naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def valid_crop(crop: str, folder: str) -> bool:
    """A manifest crop path the review accepts: FOLDER/NAME or FOLDER/all/NAME, relative, no '..',
    no backslash, no hidden name."""
    p = PurePosixPath(crop)
    return ("\\" not in crop and not p.is_absolute() and len(p.parts) in (2, 3) and p.parts[0] == folder
            and (len(p.parts) == 2 or p.parts[1] == "all") and not p.name.startswith(".") and ".." not in p.parts)


def inside(root: Path, path: Path) -> bool:
    """`path` lies under `root` (resolved) with no '..' and no symlink on the way."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return False
    if not rel.parts or ".." in rel.parts:
        return False
    p = root
    for part in rel.parts:
        p = p / part
        if p.is_symlink():
            return False
    return True


def repair(root: Path, crops: list[str]) -> list[str]:
    """Put each crop where the manifest says, if a crash left it in another folder of the result
    (crop file names are unique in a result). Returns the crops that are nowhere (logged)."""
    for crop in crops:
        if crop and not inside(root, root / crop):
            raise ReviewError(422, f"{root / crop}: a symlink — the review moves only plain files inside {root}")
    wanted = {PurePosixPath(c).name: c for c in crops if c and not (root / c).exists()}
    if not wanted:
        return []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name[0] != "."):
        for sub in (folder, folder / "all"):
            for f in sub.iterdir() if sub.is_dir() and not sub.is_symlink() else []:
                if f.name in wanted and f.is_file() and not f.is_symlink():
                    dst = root / wanted.pop(f.name)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(f, dst)
                    log.info("put %s back where the manifest says (%s)", f.name, dst.parent.name)
    for crop in wanted.values():
        log.warning("%s: the crop is missing (the page shows a gap)", root / crop)
    return list(wanted.values())


def move_crops(root: Path, moves: list[tuple[str, str]]) -> None:
    """Rename crops inside `root` ([(from, to)] relative paths); all or none (a failure moves back)."""
    for a, b in moves:
        src, dst = root / a, root / b
        if not (inside(root, src) and inside(root, dst)):
            raise ReviewError(400, f"{a} -> {b}: not inside {root}")
        if os.path.lexists(dst):
            raise ReviewError(409, f"{dst} exists — move it out of the result folder, then try again")
    done = []
    try:
        for a, b in moves:
            src, dst = root / a, root / b
            if not src.exists():
                log.warning("%s: missing, not moved", src)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, dst)
            done.append((src, dst))
    except OSError:
        for src, dst in reversed(done):
            with contextlib.suppress(OSError):
                os.rename(dst, src)
        raise


def alike_items(root: Path, rows: list[list[str]], col: dict[str, int], unassigned: str, skip: tuple[str, ...]
                ) -> tuple[dict[str, list[Path]], set[frozenset[str]]]:
    """What "May be the same person" compares: {item: [crop files]} of each folder but `skip` (not a
    face) and `unassigned`, and of each unassigned face on its own (item "unassigned/CROP", its
    track's other frames with it); and the pairs of items seen together in one photo or video frame
    (the `source` and `frame` of any row, with or without a crop): two people. A change made after
    this may move a crop before it is read."""
    track_item = {(r[col["source"]], r[col["track"]]): f"{unassigned}/{PurePosixPath(r[col['crop']]).name}"
                  for r in rows if r[col["cluster"]] == unassigned and r[col["crop"]]}
    crops: dict[str, list[Path]] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        folder, crop = r[col["cluster"]], r[col["crop"]]
        item = track_item.get((r[col["source"]], r[col["track"]])) if folder == unassigned else folder
        if folder in skip or item is None:
            continue
        seen.setdefault((r[col["source"]], r[col["frame"]]), set()).add(item)
        if crop and inside(root, root / crop):
            crops.setdefault(item, []).append(root / crop)
    apart = {frozenset((a, b)) for together in seen.values() for a in together for b in together if a < b}
    return crops, apart


def sheet_items(rows: list[list[str]], col: dict[str, int]) -> dict[str, list[tuple[str, str, float]]]:
    """{folder: [(crop, caption, score to its centre)]} of manifest rows, for the contact sheets."""
    out = {}
    for r in rows:
        if crop := r[col["crop"]]:
            t = r[col["time_s"]]
            caption = f"{float(t):.1f}s" if t else PurePosixPath(r[col["source"]]).stem[:14]
            try:
                score = float(r[col["score_to_centre"]])
            except ValueError:
                score = 0.0
            out.setdefault(r[col["cluster"]], []).append((crop, caption, score))
    return out


def redraw(root: Path, groups: dict[str, list[tuple[str, str, float]]], touched: set[str]) -> None:
    """Redraw the contact sheets of the `touched` folders and overview.jpg; a folder left without
    crops loses its sheet (and the folder itself, when nothing else is in it). Best effort: a crop
    that cannot be read is left off the sheet, never failing the change already written.

    Args:
        groups: {folder: [(crop path, caption, score to its centre)]} in the page's folder order.
    """
    try:
        for folder in touched:
            d = root / folder
            if not inside(root, d):
                continue
            if not groups.get(folder):
                with contextlib.suppress(OSError):
                    (d / "contact_sheet.jpg").unlink(missing_ok=True)
                    for empty in (d / "all", d):
                        if empty.is_dir() and not any(empty.iterdir()):
                            empty.rmdir()
                continue
            tiles = _tiles(root, groups[folder], SHEET_MAX)
            write_image(d / "contact_sheet.jpg", contact_sheet(tiles, f"{folder}: {len(groups[folder])} faces",
                                                               max_tiles=SHEET_MAX, total=len(groups[folder])))
        write_image(root / "overview.jpg", overview({f: (f"{len(g)} faces", _tiles(root, g, 8))
                                                     for f, g in groups.items()}))
    except (OSError, ValueError) as err:
        log.warning("%s: the contact sheets were not redrawn (%s)", root, err)


def _tiles(root: Path, items, limit: int) -> list:
    """The crops of a folder as sheet tiles: a track's best crops first, most typical first."""
    ordered = sorted(items, key=lambda it: (len(PurePosixPath(it[0]).parts) > 2, -it[2], it[0]))
    tiles = []
    for crop, caption, _ in ordered:
        if len(tiles) == limit:
            break
        with contextlib.suppress(ImageError, OSError):
            tiles.append((read_image(root / crop), caption))
    return tiles


def export(out: Path, people: dict[str, list[Path]]) -> Path:
    """`out/NAME/<crop>.jpg` for each named person (copies; the result folder is left as it is).
    The folder appears complete or not at all (`staged_dir`); a non-empty `out` is refused."""
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise ReviewError(409, f"{out} exists and is not empty — move it away (or delete it), then export again")
    with staged_dir(out) as tmp:
        for name, files in people.items():
            (tmp / name).mkdir()
            for f in files:
                shutil.copy2(f, tmp / name / f.name)
    return out
