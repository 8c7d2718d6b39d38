"""The SQLite gallery: enrolment outcomes, model identity, concurrency, remove, re-embed."""

import multiprocessing as mp
import shutil
import sqlite3
import threading
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from siamese.gallery.enrol import add_images, add_video, import_folder, reembed
from siamese.gallery.store import Gallery, GalleryError, ModelMismatch
from siamese.io.names import BadName, check_name

REPO = Path(__file__).resolve().parents[1]
FAKE = {"fingerprint": "f" * 64, "dim": 8, "path": "fake"}


@pytest.fixture(scope="module")
def embedder():
    from siamese.model.embedder import Embedder

    return Embedder.load(REPO / "siamese" / "assets" / "default_model")


@pytest.fixture(scope="module")
def imported(tmp_path_factory, samples, yunet, embedder):
    """A gallery db of the five knn_examples/train people (copy it before changing it)."""
    db = tmp_path_factory.mktemp("gallery") / "known.sqlite"
    with Gallery(db, embedder.identity()) as g:
        result = import_folder(g, embedder, yunet, samples / "knn_examples" / "train")
    return db, result


@pytest.fixture
def gallery(imported, tmp_path, embedder):
    shutil.copy(imported[0], tmp_path / "g.sqlite")
    with Gallery(tmp_path / "g.sqlite", embedder.identity()) as g:
        yield g


def _unit(n, d=8, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_import_folder_per_person_and_reimport_is_a_no_op(imported, gallery, samples, yunet, embedder):
    db, result = imported
    assert {p: r["added"] for p, r in result.items()} == {
        "alex_lacamoire": 1, "biden": 2, "kit_harington": 2, "obama": 2, "rose_leslie": 2}
    assert dict(gallery.people()) == {p: r["added"] for p, r in result.items()}
    v, labels, names, _ = gallery.embeddings()
    assert v.shape == (9, embedder.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert [names[i] for i in labels].count("obama") == 2
    again = import_folder(gallery, embedder, yunet, samples / "knn_examples" / "train")
    assert sum(r["added"] for r in again.values()) == 0
    assert sum(r["duplicates"] for r in again.values()) == 9  # same files: deduplicated by SHA-256
    assert gallery.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_import_one_image_per_person_layout(tmp_path, samples, yunet, embedder):
    known = tmp_path / "known"
    known.mkdir()
    shutil.copy(samples / "reference_faces" / "mirziyoyev.jpg", known / "Shavkat Mirziyoyev.jpg")
    shutil.copy(samples / "reference_faces" / "obama_small.jpg", known / "obama.jpg")
    (known / "rose_leslie").mkdir()
    shutil.copy(samples / "knn_examples" / "train" / "rose_leslie" / "img1.jpg", known / "rose_leslie")
    with Gallery(tmp_path / "g.sqlite", embedder.identity()) as g:
        r = import_folder(g, embedder, yunet, known)
        assert dict(g.people()) == {"Shavkat Mirziyoyev": 1, "obama": 1, "rose_leslie": 1}
    assert r["obama"]["new_person"]


def test_same_person_twice_merges_and_other_persons_file_is_refused(gallery, samples, yunet, embedder):
    r = add_images(gallery, embedder, yunet, "obama", [samples / "reference_faces" / "obama_small.jpg"])
    assert r["added"] == 1 and not r["new_person"]
    assert dict(gallery.people())["obama"] == 3
    r = add_images(gallery, embedder, yunet, "not obama",
                   [samples / "knn_examples" / "train" / "obama" / "obama.jpg"])
    assert r["added"] == 0 and r["enrolled_as_other"] == 1


def test_no_face_many_faces_and_unreadable_are_skipped_and_counted(gallery, samples, yunet,
                                                                     embedder, tmp_path):
    import cv2

    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.full((300, 300, 3), 200, np.uint8))
    (tmp_path / "notes.jpg").write_text("not a picture")
    before = gallery.people()
    r = add_images(gallery, embedder, yunet, "someone",
                   [wall, samples / "photos" / "two_people.jpg", tmp_path / "notes.jpg",
                    tmp_path / "missing.jpg"])
    assert (r["added"], r["no_face"], r["many_faces"], r["unreadable"]) == (0, 1, 1, 2)
    assert gallery.people() == before  # nobody is created without a face


def test_a_face_cut_by_the_frame_border_is_skipped_counted_and_printed(gallery, samples, yunet, embedder,
                                                                        tmp_path, capsys):
    from siamese.commands.people import _print_adds
    from siamese.io.images import read_image, write_image

    photo = samples / "knn_examples" / "train" / "obama" / "obama.jpg"
    image = read_image(photo)
    x, _, w, _ = yunet.detect(image)[0].box
    cut = write_image(tmp_path / "cut.jpg", image[:, int(x + 0.2 * w):])  # the frame's edge through his face
    r = add_images(gallery, embedder, yunet, "obama", [cut, samples / "reference_faces" / "obama_small.jpg"])
    assert (r["added"], r["cut_by_border"]) == (1, 1)
    _print_adds({"obama": r})
    assert capsys.readouterr().out.strip() == "obama: +1 faces, 1 cut by the frame border"


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "", "  ", "unknown", "Unknown", ".hidden",
                                 "x" * 101, "tab\tname"])
def test_names_with_path_characters_are_rejected(bad):
    with pytest.raises(BadName, match="rename it"):
        check_name(bad)


def test_good_names_are_kept():
    assert check_name(" Zoë O'Brien-Smith ") == "Zoë O'Brien-Smith"
    assert check_name("alex_lacamoire") == "alex_lacamoire"


def test_a_decomposed_name_is_the_same_person():
    nfd = unicodedata.normalize("NFD", "José")  # how a macOS folder name arrives
    assert nfd != "José" and check_name(nfd) == "José"


def test_import_with_a_bad_person_name_writes_nothing(tmp_path, samples, yunet, embedder):
    known = tmp_path / "known"
    (known / "a..b").mkdir(parents=True)
    shutil.copy(samples / "reference_faces" / "obama_small.jpg", known / "a..b" / "x.jpg")
    shutil.copy(samples / "reference_faces" / "mirziyoyev.jpg", known / "fine.jpg")
    with Gallery(tmp_path / "g.sqlite", embedder.identity()) as g:
        with pytest.raises(BadName, match="a..b"):
            import_folder(g, embedder, yunet, known)
        assert g.people() == []


def test_embeddings_of_another_model_are_refused_with_the_reembed_command(gallery, embedder):
    path = gallery.path
    gallery.close()
    with pytest.raises(ModelMismatch, match="siamese gallery reembed"):
        Gallery(path, {**embedder.identity(), "fingerprint": "0" * 64})
    with pytest.raises(GalleryError, match="needs|open the gallery with a model"):
        Gallery(path).add("x", _unit(1, embedder.dim))  # no model given: read-only use


def test_an_empty_gallery_adopts_a_new_model(tmp_path):
    Gallery(tmp_path / "g.sqlite", FAKE).close()
    other = {**FAKE, "fingerprint": "0" * 64}
    with Gallery(tmp_path / "g.sqlite", other) as g:
        assert g.model == other


def test_missing_gallery_is_one_clear_error(tmp_path):
    with pytest.raises(GalleryError, match="no gallery here"):
        Gallery(tmp_path / "nope.sqlite", create=False)
    assert not (tmp_path / "nope.sqlite").exists()


def _adder(db: str, who: str, n: int, seed: int) -> None:
    with Gallery(db, FAKE, timeout=60) as g:
        for i in range(n):  # many small transactions, interleaving with the other process
            g.add(f"{who} {i}", _unit(2, seed=seed + i),
                  [{"sha256": f"{who}{i}a"}, {"sha256": f"{who}{i}b"}])
            g.add("shared", _unit(1, seed=seed + 1000 + i), [{"sha256": f"{who}-shared-{i}"}])


def test_two_processes_and_two_threads_adding_at_once_all_land(tmp_path):
    db = str(tmp_path / "g.sqlite")
    Gallery(db, FAKE).close()
    ctx = mp.get_context("spawn")  # a fresh interpreter each: no connection shared across fork
    procs = [ctx.Process(target=_adder, args=(db, f"p{k}", 25, 100 * k)) for k in range(2)]
    threads = [threading.Thread(target=_adder, args=(db, f"t{k}", 25, 10_000 + 100 * k))
               for k in range(2)]
    for w in procs + threads:
        w.start()
    for w in procs + threads:
        w.join(120)
    assert all(p.exitcode == 0 for p in procs)
    with Gallery(db) as g:
        people = dict(g.people())
        assert len(people) == 4 * 25 + 1
        assert people["shared"] == 4 * 25 and people["p1 24"] == 2
        assert g.revision == 2 * 4 * 25  # every add was one transaction
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_remove_deletes_the_person_and_all_their_data(gallery):
    n_before = len(gallery.embeddings()[0])
    assert gallery.remove("biden") == 2
    assert "biden" not in dict(gallery.people())
    assert len(gallery.embeddings()[0]) == n_before - 2
    assert gallery.db.execute("SELECT COUNT(*) FROM embeddings e LEFT JOIN people p ON "
                              "p.id = e.person_id WHERE p.id IS NULL").fetchone()[0] == 0
    with pytest.raises(GalleryError, match="no person 'biden'"):
        gallery.remove("biden")


def test_add_from_a_video_keeps_frames_and_remove_deletes_them(tmp_path, samples, yunet, embedder):
    with Gallery(tmp_path / "g.sqlite", embedder.identity()) as g:
        r = add_video(g, embedder, yunet, "lin", samples / "video" / "short_hamilton_clip.mp4",
                      count=2, every_s=1.0, min_size=40)
        assert r["added"] == 2 and r["frames"] >= 2
        frames = list(g.frames_dir.rglob("*.jpg"))
        assert len(frames) == 2 and all(s["source"] in map(str, frames) for s in g.sources())
        g.remove("lin")
        assert not list(g.frames_dir.rglob("*.jpg"))


def test_reembed_recomputes_from_sources_and_names_the_missing_one(tmp_path, samples, yunet, embedder,
                                                                 caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in (samples / "knn_examples" / "train" / "biden").iterdir():
        shutil.copy(p, photos / p.name)
    db = tmp_path / "g.sqlite"
    with Gallery(db, {**embedder.identity(), "fingerprint": "0" * 64}) as g:  # "old model"
        add_images(g, embedder, yunet, "biden", sorted(photos.iterdir()))
        old, _, _, _ = g.embeddings()
    (photos / "biden2.jpg").unlink()
    with pytest.raises(ModelMismatch):
        Gallery(db, embedder.identity())
    with Gallery(db) as g:
        r = reembed(g, embedder)
    assert r["reembedded"] == 1 and r["missing"] == [str((photos / "biden2.jpg").resolve())]
    assert "biden2.jpg" in caplog.text
    with Gallery(db, embedder.identity()) as g:  # now accepted
        new, _, _, _ = g.embeddings()
        assert dict(g.people()) == {"biden": 1}
    assert np.allclose(new[0], old[0], atol=1e-5)  # same weights, same crop: the same vector


def test_a_source_that_cannot_open_adds_no_one(tmp_path, yunet, embedder):
    from siamese.io.video import SourceError

    with Gallery(tmp_path / "g.sqlite", embedder.identity()) as g:
        with pytest.raises(SourceError, match="missing.mp4"):
            add_video(g, embedder, yunet, "ghost", tmp_path / "missing.mp4")
        assert g.people() == []


def test_gallery_command_lists_and_removes(gallery, capsys):
    from hydra import compose, initialize_config_dir

    from siamese.commands.people import gallery as gallery_command

    path = gallery.path
    gallery.close()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("gallery", overrides=[f"db={path}"])
    assert gallery_command(cfg)["people"]["biden"] == 2
    out = capsys.readouterr().out.splitlines()
    assert "biden, 2" in out and out[-1].startswith("5 people, 9 embeddings")
    cfg.action, cfg.path = "remove", "biden"  # `siamese gallery remove biden`
    assert gallery_command(cfg) == {"removed": "biden", "embeddings": 2}
    cfg.action = "list"
    assert "biden" not in gallery_command(cfg)["people"]


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_bytes(b""), "0 bytes"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x07" * 200), "not a readable gallery"),
    (lambda p: p.write_bytes(b"not a database at all" * 50), "not a readable gallery"),
    (lambda p: p.mkdir(), "is a folder"),
])
def test_a_broken_gallery_file_is_one_clear_error_and_left_alone(make, says, tmp_path, embedder):
    path = tmp_path / "g.sqlite"
    make(path)
    before = path.read_bytes() if path.is_file() else None
    for kw in ({"create": False}, {}):
        with pytest.raises(GalleryError, match=says):
            Gallery(path, embedder.identity(), **kw)
    assert (path.read_bytes() if path.is_file() else None) == before  # never rewritten


def test_another_programs_database_is_not_taken_over(tmp_path, embedder):
    import sqlite3

    path = tmp_path / "photos.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE albums (id INTEGER PRIMARY KEY, title TEXT)")
    con.commit()
    con.close()
    with pytest.raises(GalleryError, match="not a siamese gallery .*albums"):
        Gallery(path, embedder.identity())
    con = sqlite3.connect(path)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["albums"]


def test_a_failed_commit_names_its_cause_and_changes_nothing(tmp_path, embedder, monkeypatch):
    with Gallery(tmp_path / "g.sqlite", embedder.identity()) as g:
        v = np.eye(embedder.dim, dtype=np.float32)[:1]
        g.add("ana", v)
        with pytest.raises(GalleryError, match="could not write .*disk is full.*nothing was changed"):
            with g.transaction():
                g.db.execute("INSERT INTO people(name, created) VALUES('bo', 'now')")
                raise sqlite3_full()
        assert [n for n, _ in g.people()] == ["ana"]


def sqlite3_full():
    import sqlite3

    return sqlite3.OperationalError("database or disk is full")


def test_the_same_face_under_another_name_is_warned_about(tmp_path, samples, yunet, embedder, lfw_root, caplog):
    import shutil

    from siamese.gallery.calibrate import refresh

    with Gallery(tmp_path / "g.sqlite", embedder.identity()) as g:
        import_folder(g, embedder, yunet, samples / "knn_examples" / "train")
        refresh(g, embedder, lfw_root=lfw_root, detector=yunet, people=40)
        again = tmp_path / "again.png"  # Obama's photo, re-encoded: a new file, the same face
        from siamese.io.images import read_image, write_image

        write_image(again, read_image(samples / "knn_examples" / "train" / "obama" / "obama.jpg"))
        caplog.clear()
        add_images(g, embedder, yunet, "barack", [again])
        assert "matches obama" in caplog.text and "two names" in caplog.text
        shutil.copy(samples / "reference_faces" / "mirziyoyev.jpg", tmp_path / "m.jpg")
        caplog.clear()
        add_images(g, embedder, yunet, "shavkat", [tmp_path / "m.jpg"])  # nobody like him here
        assert "two names" not in caplog.text


def test_without_lfw_a_gallery_calibrates_on_the_models_stranger_bank(tmp_path, samples, yunet, lfw_root,
                                                                      monkeypatch):
    from siamese.eval.calibration import calibrate_impostors
    from siamese.gallery.calibrate import refresh
    from siamese.model import Embedder

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for f in (REPO / "siamese" / "assets" / "default_model").iterdir():
        if not f.name.startswith("impostors"):
            (model_dir / f.name).symlink_to(f)
    model = Embedder.load(model_dir)
    r = calibrate_impostors(model, lfw_root, detector=yunet, people=30)
    assert r["impostors"] == 30 and (model_dir / "impostors.npy").stat().st_size < 30 * model.dim * 2 + 200
    monkeypatch.setenv("LFW_ROOT", str(tmp_path / "no_lfw_here"))
    with Gallery(tmp_path / "g.sqlite", model.identity()) as g:
        import_folder(g, model, yunet, samples / "knn_examples" / "train")
        cal = refresh(g, model, 0.05)  # no LFW anywhere: the bank beside the model
    assert cal is not None and cal["nn"]["impostors"] == 30 and "stranger bank" in cal["source"]


def test_writers_creating_one_gallery_at_once_all_open_it(tmp_path):
    # SQLite leaves a new file empty until its first commit; a second writer opening it then used to
    # take it for a file cut short ("0 bytes, not a gallery"). A new gallery is made whole, then linked in.
    import threading

    model = {"fingerprint": "f" * 64, "dim": 4, "path": "m"}
    for round_ in range(5):
        path, errors, start = tmp_path / f"g{round_}.sqlite", [], threading.Barrier(6)

        def open_it():
            start.wait()
            try:
                with Gallery(path, model) as g:
                    g.add(f"p{threading.get_ident()}", np.eye(4, dtype=np.float32)[:1], [{"source": "s"}])
            except Exception as err:  # noqa: BLE001 - collected, asserted below
                errors.append(repr(err))

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        with Gallery(path, create=False) as g:
            assert len(g.people()) == 6
    assert not list(tmp_path.glob(".*tmp*"))  # no half-made file left behind
