"""LFW: find the copy, parse the protocol files, list images, and the protocols' splits.

Everything downstream (sampling, tf.data, evaluation) starts from `ImageRef` (one image),
`Pair` (two images, same person or not) and `Fold` (one View 2 fold). Stdlib only, so it
imports in milliseconds and the protocol checks run without TensorFlow.

The protocol: View 1 is for development (train on peopleDevTrain, test on pairsDevTest,
whose people are disjoint from them). View 2 gives the reported number: 10 folds with
disjoint people; fit the threshold on 9, score the 10th, report mean ± std.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from siamese.io.paths import REPO

__all__ = ["LFW", "DatasetError", "Fold", "ImageRef", "Pair", "assert_disjoint", "check_disjoint",
           "protocol_split", "resolve_root"]

PEOPLE_FILES = {"view1_train": "peopleDevTrain.txt", "view1_test": "peopleDevTest.txt"}
PAIRS_FILES = {"view1_train": "pairsDevTrain.txt", "view1_test": "pairsDevTest.txt"}
DEFAULT_ROOT = "data/lfw"
BESIDE_REPO = REPO.parent / "shared" / "datasets" / "lfw"  # where this project's own machines keep a copy
_GET_LFW = ("set data.root=... or the LFW_ROOT env var to an LFW copy, or run `siamese data fetch` "
            "(see README: Getting LFW)")
_CORRUPT = "restore the official file (see README: Getting LFW)"


class DatasetError(ValueError):
    """A missing or malformed LFW file. The message is one line: the file and the fix."""


@dataclass(frozen=True)
class ImageRef:
    """One LFW image, e.g. ImageRef("Aaron_Peirsol", 3) -> Aaron_Peirsol/Aaron_Peirsol_0003.jpg.

    Attributes:
        person: identity name as in the protocol files (underscores, no spaces).
        index: 1-based image number within that person.
    """

    person: str
    index: int

    @property
    def rel_path(self) -> str:
        """Path relative to the image dir, '/'-separated: `Person/Person_0003.jpg`."""
        return f"{self.person}/{self.person}_{self.index:04d}.jpg"


@dataclass(frozen=True)
class Pair:
    """Two images and the label: `same` is True when both show the same person."""

    a: ImageRef
    b: ImageRef
    same: bool


@dataclass(frozen=True)
class Fold:
    """One View 2 fold: `people` (name -> image count) and its `pairs` (300 matched, then 300 not)."""

    people: dict[str, int]
    pairs: list[Pair]


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """Where LFW lives, the one rule of every command: `root` if given (`data.root=`), else the
    `LFW_ROOT` environment variable, else `data/lfw` (from the current folder) when it holds LFW,
    else a copy beside the repository (`../shared/datasets/lfw`, `BESIDE_REPO`), else `data/lfw`.

    Args:
        root: the config value (`data.root`); None or "" means "not set".

    Returns:
        An absolute path. Existence is not checked (`LFW` does that, with a useful error).
    """
    for candidate in (root, os.environ.get("LFW_ROOT")):
        if candidate is not None and str(candidate).strip():
            return Path(candidate).expanduser().absolute()
    local = Path(DEFAULT_ROOT).absolute()
    if not (local / "pairs.txt").is_file() and (BESIDE_REPO / "pairs.txt").is_file():
        return BESIDE_REPO
    return local


def _read_lines(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank lines of a protocol file as (1-based line number, whitespace-split fields)."""
    if not path.is_file():
        raise DatasetError(f"{path} not found — {_GET_LFW}")
    text = path.read_text(encoding="utf-8")
    # Skipping blank lines tolerates copies that lost (or doubled) the final newline.
    return [(no, line.split()) for no, line in enumerate(text.splitlines(), 1) if line.strip()]


def _positive_int(path: Path, no: int, value: str, what: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise DatasetError(f"{path} line {no}: {what} must be an integer >= 1, got {value!r} — {_CORRUPT}")
    return int(value)


def _count_line(path: Path, lines: list[tuple[int, list[str]]], pos: int, what: str) -> int:
    """The single positive count expected at lines[pos] (a header or a fold's people count)."""
    if pos >= len(lines):
        raise DatasetError(f"{path}: the file ends where {what} should be — it is truncated; {_CORRUPT}")
    no, fields = lines[pos]
    if len(fields) != 1:
        raise DatasetError(f"{path} line {no}: expected {what}, got {' '.join(fields)!r} — {_CORRUPT}")
    return _positive_int(path, no, fields[0], what)


def _parse_people(path: Path, folded: bool) -> list[dict[str, int]]:
    """peopleDev*.txt: a count N, then N `Name count` lines. people.txt: a fold count, then
    per fold the same as a peopleDev file. Returns one {name: image count} per fold."""
    lines = _read_lines(path)
    n_folds, pos = (_count_line(path, lines, 0, "the fold count"), 1) if folded else (1, 0)
    folds = []
    for fold in range(n_folds):
        n = _count_line(path, lines, pos, f"the people count of fold {fold + 1}")
        block, pos = lines[pos + 1:pos + 1 + n], pos + 1 + n
        if len(block) < n:
            raise DatasetError(f"{path}: expected {n} people lines in fold {fold + 1} but only {len(block)} follow "
                               f"— the file is truncated; {_CORRUPT}")
        people: dict[str, int] = {}
        for no, fields in block:
            if len(fields) != 2:
                raise DatasetError(f"{path} line {no}: expected 'Name count', got {' '.join(fields)!r} — {_CORRUPT}")
            if fields[0] in people:
                raise DatasetError(f"{path} line {no}: {fields[0]} is listed twice in one fold — {_CORRUPT}")
            people[fields[0]] = _positive_int(path, no, fields[1], "the image count")
        folds.append(people)
    if pos != len(lines):
        raise DatasetError(f"{path} line {lines[pos][0]}: {len(lines) - pos} lines more than the counts promise "
                           f"— {_CORRUPT}")
    return folds


def _parse_pairs(path: Path) -> list[list[Pair]]:
    """pairs*.txt: header `N` (one set) or `FOLDS N`; then per fold N matched lines
    `Name i j` followed by N mismatched lines `NameA i NameB j`. One list per fold."""
    lines = _read_lines(path)
    no, head = lines[0] if lines else (1, [])
    if len(head) not in (1, 2):
        raise DatasetError(f"{path} line {no}: expected a header 'N' or 'FOLDS N', got {' '.join(head)!r} "
                           f"— {_CORRUPT}")
    n_folds = _positive_int(path, no, head[0], "the fold count") if len(head) == 2 else 1
    n = _positive_int(path, no, head[-1], "the pairs-per-half count")
    body = lines[1:]
    # Check the size first: a truncated file would otherwise surface as a confusing
    # "expected a mismatched pair" error somewhere in the middle.
    if len(body) != n_folds * 2 * n:
        raise DatasetError(f"{path}: header {' '.join(head)!r} promises {n_folds * 2 * n} pair lines ({n_folds} "
                           f"fold(s) x ({n} matched + {n} mismatched)) but the file has {len(body)} — {_CORRUPT}")
    folds: list[list[Pair]] = [[] for _ in range(n_folds)]
    for k, (no, f) in enumerate(body):
        same = k % (2 * n) < n  # each fold: n matched lines, then n mismatched lines
        got = f"got {' '.join(f)!r} — {_CORRUPT}"
        if len(f) not in (3, 4):
            raise DatasetError(f"{path} line {no}: expected 'Name i j' or 'NameA i NameB j', {got}")
        if (len(f) == 3) != same:
            want = "'Name i j' (matched)" if same else "'NameA i NameB j' (mismatched)"
            raise DatasetError(f"{path} line {no}: expected {want}: each fold holds {n} matched, then {n} "
                               f"mismatched lines; {got}")
        name_b, j = (f[0], f[2]) if same else (f[2], f[3])
        if not same and f[0] == name_b:
            raise DatasetError(f"{path} line {no}: a mismatched pair names one person twice; {got}")
        a = ImageRef(f[0], _positive_int(path, no, f[1], "an image index"))
        b = ImageRef(name_b, _positive_int(path, no, j, "an image index"))
        folds[k // (2 * n)].append(Pair(a, b, same))
    return folds


def _find_images_dir(root: Path) -> Path | None:
    if (root / "lfw").is_dir():
        return root / "lfw"
    # Some copies put person folders straight into root; every LFW person has a _0001.
    people = (e for e in os.scandir(root) if e.is_dir())
    return root if any(os.path.isfile(os.path.join(e.path, f"{e.name}_0001.jpg")) for e in people) else None


def _check_split(split: str, files: dict[str, str]) -> str:
    if split not in files:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(files)} (View 2 folds: LFW.view2())")
    return files[split]


class LFW:
    """An LFW copy on disk. Protocol files are parsed on first use and cached.

    Args:
        root: directory holding pairs.txt, people.txt, ... and the image dir `lfw/`
            (or the person folders directly). None: see `resolve_root`.

    Raises:
        DatasetError: the root or its image dir does not exist.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_root(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root} not found — {_GET_LFW}")
        images_dir = _find_images_dir(self.root)
        if images_dir is None:
            raise DatasetError(f"{self.root / 'lfw'} not found (expected lfw/<Person>/<Person>_0001.jpg under "
                               f"{self.root}) — extract lfw.tgz there or {_GET_LFW}")
        self.images_dir: Path = images_dir
        self._parsed: dict[str, list] = {}  # file name -> its folds, filled on first use

    def __repr__(self) -> str:
        return f"LFW(root={str(self.root)!r})"

    def _folds(self, name: str) -> list:
        if name not in self._parsed:
            path = self.root / name
            folds = _parse_pairs(path) if name.startswith("pairs") else _parse_people(path, name == "people.txt")
            self._parsed[name] = folds
        return self._parsed[name]

    def path(self, ref: ImageRef) -> Path:
        """Absolute path of one image (not checked; see `missing`)."""
        return self.images_dir / ref.rel_path

    def images(self) -> list[ImageRef]:
        """Every `<Person>/<Person>_NNNN.jpg` on disk, sorted by (person, index). Walks the dir."""
        refs = []
        for person_dir in (d for d in os.scandir(self.images_dir) if d.is_dir()):
            pattern = re.compile(re.escape(person_dir.name) + r"_(\d{4})\.jpg")
            matches = (pattern.fullmatch(f.name) for f in os.scandir(person_dir.path))
            refs.extend(ImageRef(person_dir.name, int(m.group(1))) for m in matches if m)
        return sorted(refs, key=lambda r: (r.person, r.index))

    def people(self, split: str) -> dict[str, int]:
        """View 1 people, name -> image count. `split`: "view1_train" or "view1_test"."""
        return dict(self._folds(_check_split(split, PEOPLE_FILES))[0])

    def pairs(self, split: str) -> list[Pair]:
        """View 1 pairs, matched first. `split`: "view1_train" (2,200) or "view1_test" (1,000)."""
        return list(self._folds(_check_split(split, PAIRS_FILES))[0])

    def view2(self) -> list[Fold]:
        """The View 2 folds: people from people.txt zipped with pairs from pairs.txt."""
        people, pairs = self._folds("people.txt"), self._folds("pairs.txt")
        if len(people) != len(pairs):
            raise DatasetError(f"{self.root / 'people.txt'} has {len(people)} folds but pairs.txt has "
                               f"{len(pairs)} — the two files are from different releases; {_CORRUPT}")
        return [Fold(dict(pe), list(pa)) for pe, pa in zip(people, pairs)]

    def identities(self, people: dict[str, int]) -> list[ImageRef]:
        """All image refs of `people` (name -> count), from the counts, sorted by (person, index)."""
        return [ImageRef(name, i) for name in sorted(people) for i in range(1, people[name] + 1)]

    def missing(self, refs: Iterable[ImageRef]) -> list[ImageRef]:
        """The refs whose file is not on disk (one stat each; ~10 ms per 5,000 refs)."""
        return [r for r in refs if not self.path(r).is_file()]


def check_disjoint(train_people: Iterable[str], pairs: Iterable[Pair]) -> set[str]:
    """People who are both trained on and appear in evaluation pairs (empty when honest)."""
    train = set(train_people)
    return {p.person for pair in pairs for p in (pair.a, pair.b) if p.person in train}


def assert_disjoint(train_people: Iterable[str], pairs: Iterable[Pair]) -> None:
    """Raise DatasetError if any training person appears in `pairs` (identity leakage)."""
    leaked = sorted(check_disjoint(train_people, pairs))
    if leaked:
        shown = ", ".join(leaked[:5]) + (", ..." if len(leaked) > 5 else "")
        raise DatasetError(f"{len(leaked)} people appear in both training and the evaluation pairs ({shown}) — "
                           "train on peopleDevTrain for View 1, or on the other 9 folds' people for View 2")





def protocol_split(lfw: LFW, protocol: str, fold: int = 0) -> tuple[list[str], list[Pair]]:
    """Training people and test pairs of an LFW protocol.

    "view1": DevTrain people, DevTest pairs. "view2": the people of the nine folds other than
    `fold`, and that fold's pairs (the unrestricted protocol, run once per fold). "all": every
    LFW person and no test pairs (a model to ship; its LFW numbers are then not test numbers).
    """
    if protocol == "all":
        return sorted({r.person for r in lfw.images()}), []
    if protocol == "view1":
        people, pairs = list(lfw.people("view1_train")), lfw.pairs("view1_test")
    elif protocol == "view2":
        folds = lfw.view2()
        people = [p for k, f in enumerate(folds) if k != fold for p in f.people]
        pairs = folds[fold].pairs
    else:
        raise ValueError(f"unknown protocol {protocol!r}; choose 'view1', 'view2' or 'all'")
    assert_disjoint(people, pairs)  # training people never appear in the test pairs
    return people, pairs
