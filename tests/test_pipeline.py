import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamese.faces.folder import detect_folder, read_manifest
from siamese.io.images import ImageError


def _digest(folder):
    return {p.relative_to(folder): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def messy_folder(tmp_path, samples, lfw_root):
    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    shutil.copy(samples / "photos" / "two_people.jpg", src / "two_people.jpg")
    shutil.copy(lfw_root / "lfw" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg", src / "trip" / "a.jpg")
    grey = cv2.imread(str(src / "trip" / "a.jpg"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(src / "trip" / "grey.png"), grey)
    data = (src / "two_people.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (src / "notes.jpg").write_bytes(b"this is not a picture")
    cv2.imwrite(str(src / "tiny.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(src / "wall.png"), np.full((300, 300, 3), 200, np.uint8))
    return src


def test_a_messy_folder_is_processed_and_counted(messy_folder, tmp_path, yunet):
    before = _digest(messy_folder)
    out = tmp_path / "faces"
    s = detect_folder(messy_folder, out, yunet, size=96, progress=False)
    assert s["sources"] == 7
    assert s["faces"] == 4  # two_people (2) + colour and grey Aaron
    assert s["errors"] == 3
    assert s["errors_by_reason"].get("truncated") == 1 and s["errors_by_reason"].get("too_small") == 1
    assert s["sources_without_face"] == 1 and s["sources_with_many_faces"] == 1
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == 4
    assert {r["source"] for r in rows} == {"two_people.jpg", "trip/a.jpg", "trip/grey.png"}
    for r in rows:
        crop = cv2.imread(str(out / r["crop"]))
        assert crop.shape == (96, 96, 3)
        assert float(r["score"]) >= 0.5 and float(r["w"]) > 20
    assert _digest(messy_folder) == before  # the user's photos are untouched
    assert not list(out.rglob("*.tmp*"))


def test_rerun_refuses_to_overwrite_unless_asked(messy_folder, tmp_path, yunet):
    out = tmp_path / "faces"
    detect_folder(messy_folder, out, yunet, progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        detect_folder(messy_folder, out, yunet, progress=False)
    assert detect_folder(messy_folder, out, yunet, progress=False, overwrite=True)["faces"] == 4


def test_video_frames_are_sampled_and_timed(samples, tmp_path, yunet):
    out = tmp_path / "clip"
    s = detect_folder(samples / "video" / "short_hamilton_clip.mp4", out, yunet, every_s=2.0,
                      progress=False)
    assert 4 <= s["frames"] <= 6  # 9.2 s clip, one frame every 2 s
    rows = read_manifest(out / "manifest.csv")
    assert s["faces"] == len(rows) >= 4
    times = sorted({float(r["time_s"]) for r in rows})
    assert times[0] < 2.1 and all(t <= 9.3 for t in times)


def test_empty_folder_gives_an_empty_valid_manifest(tmp_path, yunet):
    (tmp_path / "empty").mkdir()
    s = detect_folder(tmp_path / "empty", tmp_path / "out", yunet, progress=False)
    assert s["sources"] == 0 and read_manifest(tmp_path / "out" / "manifest.csv") == []


def test_collect_keeps_clear_frontal_faces_and_numbers_on(samples, tmp_path, yunet):
    from siamese.faces.capture import collect, read_face_folders

    clip = samples / "video" / "short_hamilton_clip.mp4"
    r = collect(str(clip), "lin", tmp_path, yunet, count=4, every_s=0.5, progress=False)
    assert r["kept"] == 4 and r["frames"] >= 4
    again = collect(str(clip), "lin", tmp_path, yunet, count=2, every_s=0.5, progress=False)
    names = sorted(p.name for p in (tmp_path / "lin").iterdir())
    assert again["kept"] == 2 and names == [f"lin_{i:04d}.jpg" for i in range(1, 7)]
    images, people = read_face_folders(tmp_path, 32)
    assert images.shape == (6, 32, 32, 3) and set(people) == {"lin"}


def test_collect_refuses_a_path_like_name(samples, tmp_path, yunet):
    from siamese.faces.capture import collect

    with pytest.raises(ValueError, match="person name"):
        collect(str(samples / "video" / "short_hamilton_clip.mp4"), "../x", tmp_path, yunet)


def test_dominant_face_needs_one_clear_face():
    from siamese.faces.capture import dominant_face
    from siamese.faces.detect import Face

    def face(w):
        return Face(np.array([0, 0, w, w], np.float32), np.zeros((5, 2), np.float32), 0.9)

    big, small, similar = face(100), face(40), face(90)
    assert dominant_face([small, big]) is big
    assert dominant_face([big, similar]) is None and dominant_face([]) is None


# --- odd input: videos by content, long names, colliding names, symlink loops ---------------------


def test_a_clip_named_ts_or_without_a_suffix_is_read_as_a_video(samples, tmp_path, yunet):
    clip = samples / "video" / "short_hamilton_clip.mp4"
    long_stem = name_of_bytes(250)  # and a name too long for any derived name to be built from as is
    for name in ("clip.ts", long_stem):
        shutil.copy(clip, tmp_path / name)
        out = tmp_path / f"out_{len(name)}"
        s = detect_folder(tmp_path / name, out, yunet, every_s=2.0, progress=False)
        assert s["sources"] == 1 and 4 <= s["frames"] <= 6 and s["errors"] == 0, s
        rows = read_manifest(out / "manifest.csv")
        assert rows and all(r["source"] == name and r["frame"].isdigit() for r in rows)
        assert all((out / r["crop"]).is_file() for r in rows)


def name_of_bytes(n: int, suffix: str = "", fill: str = "Zoë 名前-") -> str:
    """A file name of exactly `n` bytes of UTF-8 (with multi-byte characters), ending in `suffix`."""
    name = ""
    while len((name + fill[len(name) % len(fill)] + suffix).encode()) <= n:
        name += fill[len(name) % len(fill)]
    return name + "a" * (n - len((name + suffix).encode())) + suffix


@pytest.fixture
def face_photo(lfw_root):
    return lfw_root / "lfw" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"


def test_long_photo_names_get_short_distinct_crop_names(face_photo, tmp_path, yunet):
    src = tmp_path / "photos"
    src.mkdir()
    names = [name_of_bytes(250, ".jpg"), name_of_bytes(250, "1.jpg"), name_of_bytes(250, "2.jpg")]
    assert [len(n.encode()) for n in names] == [250, 250, 250] and len({n[:80] for n in names}) == 1
    for name in names:
        shutil.copy(face_photo, src / name)
    s = detect_folder(src, tmp_path / "out", yunet, progress=False)
    assert s["faces"] == 3 and s["errors"] == 0
    rows = read_manifest(tmp_path / "out" / "manifest.csv")
    assert sorted(r["source"] for r in rows) == sorted(names)  # the manifest keeps the full names
    crops = {r["crop"] for r in rows}
    assert len(crops) == 3 and all(len(Path(c).name.encode()) <= 255 for c in crops)
    assert all((tmp_path / "out" / c).is_file() for c in crops)


def test_colliding_names_get_their_own_crops(face_photo, tmp_path, yunet):
    """Once, these all had one crop name: photos overwrote each other's faces."""
    src = tmp_path / "photos"
    (src / "a").mkdir(parents=True)
    face = cv2.imread(str(face_photo))
    names = ["face.bmp", "face.tiff", "face.webp", "p.jpg", "p.png", "a/b.jpg", "a__b.jpg", "a_/b.jpg", "_a/b.jpg"]
    for name in names:
        (src / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(src / name), face)
    s = detect_folder(src, tmp_path / "out", yunet, progress=False)
    assert s["sources"] == len(names) and s["faces"] == len(names)
    rows = read_manifest(tmp_path / "out" / "manifest.csv")
    assert sorted(r["source"] for r in rows) == sorted(names)
    assert len({r["crop"] for r in rows}) == len(rows) == len(names)  # every row points at its own file
    assert len(list((tmp_path / "out" / "crops").rglob("*.jpg"))) == len(names)
    assert {r["crop"] for r in rows if r["source"] in ("p.jpg", "a/b.jpg")} == {
        "crops/p.jpg_face0.jpg", "crops/a__b.jpg_face0.jpg"}  # the common case stays readable


def test_symlink_loops_are_counted_and_a_loop_as_input_says_so(face_photo, tmp_path, yunet):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    shutil.copy(face_photo, src / "a.jpg")
    (src / "self.jpg").symlink_to("self.jpg")
    (src / "sub" / "up").symlink_to("..")
    s = detect_folder(src, tmp_path / "out", yunet, progress=False)
    assert s["faces"] == 1 and s["errors_by_reason"] == {"symlink_loop": 2}
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(ImageError, match="symlink loop") as info:
        detect_folder(tmp_path / "loop", tmp_path / "out2", yunet, progress=False)
    assert "not found" not in str(info.value) and not (tmp_path / "out2").exists()


# --- where detect writes: never over the user's files ---------------------------------------------


@pytest.fixture
def one_face(face_photo, tmp_path):
    src = tmp_path / "one"
    src.mkdir()
    shutil.copy(face_photo, src / "a.jpg")
    return src


def test_out_holding_the_users_files_is_refused(one_face, tmp_path, yunet):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (mine / "manifest.csv").write_text("my,own,table\n")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"mine is not empty .*notes\.txt.* choose a new or empty out"):
            detect_folder(one_face, mine, yunet, overwrite=overwrite, progress=False)
    assert sorted(p.name for p in mine.iterdir()) == ["manifest.csv", "notes.txt"]
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "manifest.csv").read_text() == "my,own,table\n"


def test_out_inside_the_input_or_equal_to_it_is_refused(one_face, tmp_path, yunet):
    before = _digest(one_face)
    for out in (one_face, one_face / "faces", one_face / "deeper" / "faces"):
        with pytest.raises(ValueError, match="inside the input folder .* choose an out outside it"):
            detect_folder(one_face, out, yunet, progress=False)
    assert _digest(one_face) == before and sorted(p.name for p in one_face.iterdir()) == ["a.jpg"]


def test_out_naming_a_file_is_refused(one_face, tmp_path, yunet):
    (tmp_path / "taken").write_text("a file of mine")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="taken exists and is not a folder"):
            detect_folder(one_face, tmp_path / "taken", yunet, overwrite=overwrite, progress=False)
    with pytest.raises(FileExistsError, match="is not a folder"):  # the photo itself, as out
        detect_folder(one_face / "a.jpg", one_face / "a.jpg", yunet, progress=False)
    assert (tmp_path / "taken").read_text() == "a file of mine" and _digest(one_face) == {
        Path("a.jpg"): hashlib.md5((one_face / "a.jpg").read_bytes()).hexdigest()}


def test_overwrite_replaces_only_an_earlier_detect_result(one_face, tmp_path, yunet, messy_folder):
    out = tmp_path / "faces"
    detect_folder(messy_folder, out, yunet, progress=False)
    assert json.loads((out / "summary.json").read_text())["task"] == "detect"
    s = detect_folder(one_face, out, yunet, overwrite=True, progress=False)
    assert s["faces"] == 1 and [p.name for p in (out / "crops").iterdir()] == ["a.jpg_face0.jpg"]  # none stale
    with pytest.raises(ValueError, match="holds the input"):  # replacing it would delete the input
        detect_folder(out / "crops", out, yunet, overwrite=True, progress=False)
    # A cluster result is not detect's to replace; a detect result from before the "task" marker is.
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "task": "cluster"}))
    with pytest.raises(FileExistsError, match="no result of detect"):
        detect_folder(one_face, out, yunet, overwrite=True, progress=False)
    del summary["task"]
    (out / "summary.json").write_text(json.dumps(summary))
    assert detect_folder(one_face, out, yunet, overwrite=True, progress=False)["faces"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_a_failed_run_leaves_no_folder_behind(one_face, tmp_path):
    class Broken:
        def detect(self, image):
            raise RuntimeError("detector fell over")

    with pytest.raises(RuntimeError, match="fell over"):
        detect_folder(one_face, tmp_path / "out", Broken(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one"]


def _cut_obama(samples, yunet, share):
    """knn_examples' obama.jpg with the frame's left edge `share` of the way into his face box."""
    from siamese.io.images import read_image

    image = read_image(samples / "knn_examples" / "train" / "obama" / "obama.jpg")
    x, _, w, _ = yunet.detect(image)[0].box
    return image, np.ascontiguousarray(image[:, int(x + share * w):])


def test_face_inside_measures_the_box_and_the_crop(samples, yunet):
    from siamese.faces.align import ARCFACE_TEMPLATE_112, face_inside
    from siamese.faces.detect import Face

    # A face placed exactly on the ArcFace template of a 112 px image: its crop is the image.
    face = Face(np.array([30, 40, 52, 60], np.float32), ARCFACE_TEMPLATE_112.copy(), 0.9)
    assert face_inside(face, (112, 112, 3)) == 1.0
    assert face_inside(face, (112, 56, 3)) == pytest.approx(0.5, abs=0.02)  # right half of the crop gone
    assert face_inside(face, (112, 112, 3), padding=0.25) < 1.0  # more context reaches past the image
    box_out = Face(np.array([-26, 40, 52, 60], np.float32), ARCFACE_TEMPLATE_112.copy(), 0.9)
    assert face_inside(box_out, (112, 112, 3)) == pytest.approx(0.5)  # half the box outside
    # YuNet clips its boxes to the frame: a face cut by the border still shows in its crop.
    whole, cut = _cut_obama(samples, yunet, 0.2)
    assert face_inside(yunet.detect(whole)[0], whole.shape) == 1.0
    f = yunet.detect(cut)[0]
    assert f.box[0] >= -1 and face_inside(f, cut.shape) < 0.8


def test_the_capture_loop_skips_a_face_cut_by_the_frame_border(samples, yunet, tmp_path, capsys):
    from collections import Counter

    from hydra import compose, initialize_config_dir

    from siamese.commands.faces import collect as collect_command
    from siamese.faces.capture import MIN_INSIDE, captures, clear_face
    from siamese.io.images import write_image
    from siamese.io.paths import CONF_DIR

    whole, cut = _cut_obama(samples, yunet, 0.2)
    assert clear_face(yunet.detect(cut), shape=cut.shape) == (None, "cut_by_border")
    assert clear_face(yunet.detect(cut))[1] == ""  # without the frame's shape nothing can be judged
    _, barely = _cut_obama(samples, yunet, -0.2)  # the edge a fifth of a box beside his face: 99.8 % inside
    assert clear_face(yunet.detect(barely), shape=barely.shape)[1] == "" and MIN_INSIDE < 1.0
    stats = Counter()
    kept = list(captures([("whole", None, None, whole), ("cut", None, None, cut)], yunet, stats=stats))
    assert [c.source for c in kept] == ["whole"] and (stats["seen"], stats["cut_by_border"]) == (2, 1)
    # `siamese collect` counts it and says so.
    photos = tmp_path / "photos"
    write_image(photos / "a.jpg", whole)
    write_image(photos / "b.jpg", cut)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("collect", overrides=[f"source={photos}", "person=obama", f"out_root={tmp_path / 'faces'}",
                                            "progress=false"])
    r = collect_command(cfg)
    assert (r["kept"], r["skipped_cut_by_border"]) == (1, 1)
    assert "1 cut by the frame border" in capsys.readouterr().out
