"""Tests for siamese.data on the real LFW copy (fast: parsing and one directory walk)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from siamese.data import fetch as data
from siamese.data.lfw import LFW, DatasetError, ImageRef, Pair, assert_disjoint, check_disjoint, resolve_root

PROTOCOL_FILES = list(data.CHECKSUMS)


@pytest.fixture(scope="module")
def lfw(lfw_root) -> LFW:
    return LFW(lfw_root)  # conftest: the shared copy or $LFW_ROOT; missing fails in CI


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A minimal well-formed LFW tree: 4 people, View 1 files and a 2-fold View 2."""
    for person, n in {"Ann_A": 2, "Bob_B": 1, "Cy_C": 2, "Dee_D": 1}.items():
        (tmp_path / "lfw" / person).mkdir(parents=True)
        for i in range(1, n + 1):
            (tmp_path / "lfw" / person / f"{person}_{i:04d}.jpg").write_bytes(b"")
    (tmp_path / "peopleDevTrain.txt").write_text("1\nAnn_A\t2\n")
    (tmp_path / "peopleDevTest.txt").write_text("2\nBob_B\t1\nCy_C\t2\n")
    (tmp_path / "pairsDevTrain.txt").write_text("1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\n")
    (tmp_path / "pairsDevTest.txt").write_text("1\nCy_C\t1\t2\nCy_C\t2\tBob_B\t1\n")
    (tmp_path / "people.txt").write_text("2\n2\nAnn_A\t2\nBob_B\t1\n2\nCy_C\t2\nDee_D\t1\n")
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn_A\t1\t2\nAnn_A\t2\tBob_B\t1\nCy_C\t1\t2\nCy_C\t1\tDee_D\t1\n")
    return tmp_path


# --- facts about the real copy ---------------------------------------------------------

def test_view1_pairs(lfw: LFW) -> None:
    train, test = lfw.pairs("view1_train"), lfw.pairs("view1_test")
    assert (len(train), sum(p.same for p in train)) == (2200, 1100)
    assert (len(test), sum(p.same for p in test)) == (1000, 500)
    assert all(p.same for p in train[:1100]) and not any(p.same for p in train[1100:])
    assert train[0] == Pair(ImageRef("Aaron_Peirsol", 1), ImageRef("Aaron_Peirsol", 2), True)
    assert all((p.a.person == p.b.person) == p.same for p in train + test)


def test_view1_people(lfw: LFW) -> None:
    train, test = lfw.people("view1_train"), lfw.people("view1_test")
    assert (len(train), sum(train.values())) == (4038, 9525)
    assert (len(test), sum(test.values())) == (1711, 3708)
    assert not set(train) & set(test)
    assert len(lfw.identities(train)) == 9525
    assert lfw.missing(lfw.identities(test)) == []


def test_view1_train_people_disjoint_from_test_pairs(lfw: LFW) -> None:
    assert check_disjoint(lfw.people("view1_train"), lfw.pairs("view1_test")) == set()
    assert_disjoint(lfw.people("view1_train"), lfw.pairs("view1_test"))


def test_overlap_is_detected(lfw: LFW) -> None:
    # Training on the test people is exactly the leak the check exists for.
    leaked = check_disjoint(lfw.people("view1_test"), lfw.pairs("view1_test"))
    assert len(leaked) > 100 and "Abdullah_Gul" in leaked
    with pytest.raises(DatasetError, match=rf"^{len(leaked)} people appear in both .*Abdullah_Gul"):
        assert_disjoint(lfw.people("view1_test"), lfw.pairs("view1_test"))


def test_view2_folds(lfw: LFW) -> None:
    folds = lfw.view2()
    assert len(folds) == 10
    assert [len(f.pairs) for f in folds] == [600] * 10
    assert [sum(p.same for p in f.pairs) for f in folds] == [300] * 10
    assert sum(len(f.people) for f in folds) == 5749
    assert sum(sum(f.people.values()) for f in folds) == 13233
    for f, g in itertools.combinations(folds, 2):
        assert not set(f.people) & set(g.people)
    for f in folds:
        used = {r.person for p in f.pairs for r in (p.a, p.b)}
        assert used <= set(f.people)
        # A pair's index can never exceed that person's image count in the fold.
        assert all(r.index <= f.people[r.person] for p in f.pairs for r in (p.a, p.b))


def test_images_on_disk(lfw: LFW) -> None:
    images = lfw.images()
    assert len(images) == 13233
    assert len({r.person for r in images}) == 5749
    assert images == sorted(images, key=lambda r: (r.person, r.index))
    ref = ImageRef("Aaron_Peirsol", 3)
    assert ref.rel_path == "Aaron_Peirsol/Aaron_Peirsol_0003.jpg"
    assert lfw.path(ref) == lfw.images_dir / "Aaron_Peirsol" / "Aaron_Peirsol_0003.jpg"
    assert lfw.path(ref).is_file()
    assert lfw.missing([ref, ImageRef("Aaron_Peirsol", 99)]) == [ImageRef("Aaron_Peirsol", 99)]


def test_checksums_on_shared_copy(lfw: LFW) -> None:
    assert data.verify_checksums(lfw.root) == {name: True for name in PROTOCOL_FILES}


def test_check_counts_the_shared_copy(lfw: LFW) -> None:
    r = data.check(lfw.root)
    assert (r["images"], r["people"]) == (13233, 5749)
    assert r["splits"]["view1_train"]["pairs"] == 2200 and r["splits"]["view1_train"]["same"] == 1100
    assert r["view2"] == {"folds": 10, "pairs": 6000} and all(r["md5"].values())


def test_unknown_split(lfw: LFW) -> None:
    with pytest.raises(ValueError, match="view1_train, view1_test"):
        lfw.pairs("view2")
    with pytest.raises(ValueError, match="view1_train, view1_test"):
        lfw.people("train")


# --- malformed inputs -----------------------------------------------------------------

def test_tiny_tree_parses(tiny: Path) -> None:
    lfw = LFW(tiny)
    assert lfw.people("view1_test") == {"Bob_B": 1, "Cy_C": 2}
    folds = lfw.view2()
    assert [len(f.pairs) for f in folds] == [2, 2] and folds[1].people == {"Cy_C": 2, "Dee_D": 1}
    assert len(lfw.images()) == 6 and lfw.missing(lfw.identities(lfw.people("view1_test"))) == []


def test_person_folders_directly_in_root(tiny: Path) -> None:
    (tiny / "lfw").rename(tiny / "moved")
    lfw = LFW(tiny / "moved")
    assert lfw.images_dir == tiny / "moved" and len(lfw.images()) == 6


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere not found — set data.root=.*LFW_ROOT"):
        LFW(tmp_path / "nowhere")


def test_missing_image_dir(tmp_path: Path) -> None:
    (tmp_path / "pairs.txt").write_text("1\n")
    with pytest.raises(DatasetError, match=r"lfw not found"):
        LFW(tmp_path)


def test_missing_pairs_file(tiny: Path) -> None:
    (tiny / "pairs.txt").unlink()
    lfw = LFW(tiny)  # protocol files are lazy: construction still works
    with pytest.raises(DatasetError, match=r"pairs\.txt not found — set data\.root=.*LFW_ROOT"):
        lfw.view2()


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("pairsDevTrain.txt", "1\nAnn_A\t1\t2\nAnn_A 1 Bob_B 1 extra\n",
         r"pairsDevTrain\.txt line 3: expected 'Name i j' or"),
        ("pairsDevTrain.txt", "1\nAnn_A\t0\t2\nAnn_A\t1\tBob_B\t1\n",
         r"pairsDevTrain\.txt line 2: an image index must be .*'0'"),
        ("pairsDevTrain.txt", "1\nAnn_A\t1\tBob_B\t1\nAnn_A\t1\t2\n",
         r"pairsDevTrain\.txt line 2: expected 'Name i j' \(matched\)"),
        ("pairsDevTrain.txt", "1\n\nAnn_A\t1\t2\nAnn_A\tx\tBob_B\t1\n", r"pairsDevTrain\.txt line 4: an image index"),
        ("pairsDevTrain.txt", "1\nAnn_A\t1\t2\nAnn_A\t1\tAnn_A\t2\n",
         r"pairsDevTrain\.txt line 3: a mismatched pair names one"),
        ("peopleDevTrain.txt", "1\nAnn_A\t-2\n", r"peopleDevTrain\.txt line 2: the image count must be .*'-2'"),
        ("peopleDevTrain.txt", "1\nAnn_A\n", r"peopleDevTrain\.txt line 2: expected 'Name count'"),
    ],
)
def test_bad_line_names_file_and_line(tiny: Path, name: str, text: str, pattern: str) -> None:
    (tiny / name).write_text(text)
    split = "view1_train"
    with pytest.raises(DatasetError, match=pattern) as err:
        LFW(tiny).pairs(split) if name.startswith("pairs") else LFW(tiny).people(split)
    assert "\n" not in str(err.value)


def test_wrong_header_count(tiny: Path) -> None:
    (tiny / "pairs.txt").write_text("3\t1\nAnn_A\t1\t2\nAnn_A\t2\tBob_B\t1\n")
    with pytest.raises(DatasetError, match=r"pairs\.txt: header '3 1' promises 6 pair lines .* has 2"):
        LFW(tiny).view2()
    (tiny / "peopleDevTest.txt").write_text("3\nBob_B\t1\nCy_C\t2\n")
    with pytest.raises(DatasetError, match=r"peopleDevTest\.txt: expected 3 people lines .* only 2"):
        LFW(tiny).people("view1_test")
    (tiny / "peopleDevTest.txt").write_text("1\nBob_B\t1\nCy_C\t2\n")
    with pytest.raises(DatasetError, match=r"peopleDevTest\.txt line 3: 1 lines more than"):
        LFW(tiny).people("view1_test")


def test_fold_count_mismatch_between_files(tiny: Path) -> None:
    (tiny / "people.txt").write_text("1\n4\nAnn_A\t2\nBob_B\t1\nCy_C\t2\nDee_D\t1\n")
    with pytest.raises(DatasetError, match=r"people\.txt has 1 folds but pairs\.txt has 2"):
        LFW(tiny).view2()


def test_checksums_flag_changes(tiny: Path) -> None:
    sums = data.verify_checksums(tiny)
    assert set(sums) == set(PROTOCOL_FILES) and not any(sums.values())


# --- root resolution and fetch --------------------------------------------------------

def test_resolve_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from siamese.data import lfw as lfw_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LFW_ROOT", raising=False)
    beside = tmp_path / "shared" / "lfw"
    monkeypatch.setattr(lfw_module, "BESIDE_REPO", beside)
    assert resolve_root() == tmp_path / "data" / "lfw"  # nothing anywhere: where `data fetch` puts it
    beside.mkdir(parents=True)
    (beside / "pairs.txt").write_text("1\n")
    assert resolve_root() == beside  # a copy beside the repository
    (tmp_path / "data" / "lfw").mkdir(parents=True)
    (tmp_path / "data" / "lfw" / "pairs.txt").write_text("1\n")
    assert resolve_root() == tmp_path / "data" / "lfw"  # data/lfw first
    monkeypatch.setenv("LFW_ROOT", "/env/lfw")
    assert resolve_root(None) == Path("/env/lfw")
    assert resolve_root("") == Path("/env/lfw")
    assert resolve_root("/explicit") == Path("/explicit")
    assert resolve_root("rel") == tmp_path / "rel"  # absolute, from cwd


def test_fetch_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "BASE_URL", "http://127.0.0.1:9/")
    start = time.monotonic()
    with pytest.raises(DatasetError, match=r"cannot download http://127\.0\.0\.1:9/.*LFW_ROOT") as err:
        data.fetch(tmp_path / "lfw")
    assert time.monotonic() - start < 10
    assert "\n" not in str(err.value)
    assert [p.name for p in (tmp_path / "lfw").iterdir()] == []  # no half-written temp files left


def test_fetch_skips_verified_files(lfw: LFW, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Resumable: with the 7 text files and the image dir already in place nothing is downloaded.
    monkeypatch.setattr(data, "BASE_URL", "http://127.0.0.1:9/")
    for name in PROTOCOL_FILES:
        (tmp_path / name).write_bytes((lfw.root / name).read_bytes())
    (tmp_path / "lfw").mkdir()
    assert data.fetch(tmp_path) == tmp_path


def test_fetch_links_an_existing_copy(lfw: LFW, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LFW_ROOT", str(lfw.root))
    assert data.link_existing("data/lfw", link=False) == ("elsewhere", lfw.root.absolute())
    assert not (tmp_path / "data" / "lfw").exists()  # without link it only says where the copy is
    assert data.link_existing("data/lfw")[0] == "linked"
    assert (tmp_path / "data" / "lfw").resolve() == lfw.root.resolve()
    assert data.link_existing("data/lfw")[0] == "exists"  # never replaced
