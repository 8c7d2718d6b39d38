"""Enrolment, the two thresholds, tracking, the verification loop, its outputs and its errors.

Real data only: the shipped model (thresholds read from it, never written here), the sample
photos and the Hamilton clip. The clip's shots, from looking at its frames (cuts at 20, 82, 211):
0-19 wide stage shot (Lin-Manuel Miranda on the right, Alex Lacamoire small at the piano on the
left), 20-81 Alex in profile close-up with the audience, 82-210 Lin close-up, 211-274 audience.
"""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from siamese.calibration import calibrate
from siamese.enrolled import enroll, enroll_from_config, load_enrolled
from siamese.export import Embedder
from siamese.faces import YuNetDetector
from siamese.gallery import model_identity
from siamese.images import read_image
from siamese.faces import box_iou as iou
from siamese.tracking import FaceTracker
from siamese.verify import Verifier, judge, run, verify
from siamese.video import SourceError, iter_frames

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "siamese" / "assets" / "default_model"
LIN_SHOTS = [(0, 19), (82, 210)]


@pytest.fixture(scope="module")
def embedder():
    return Embedder.load(MODEL, threads=1)


@pytest.fixture(scope="module")
def detector():
    return YuNetDetector()


def _digest(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- thresholds -------------------------------------------------------------------------------

def test_detection_and_verification_thresholds_do_different_jobs():
    scores = np.array([[0.9, 0.8, 0.1, 0.2],    # 2 of 4 enrolled images match
                       [0.9, 0.9, 0.9, 0.1],    # 3 of 4
                       [0.4, 0.4, 0.4, 0.4]])   # none at 0.5, all at 0.3
    shares, ok = judge(scores, detection_threshold=0.5, verification_threshold=0.5)
    np.testing.assert_allclose(shares, [0.5, 0.75, 0.0])
    assert ok.tolist() == [True, True, False]
    # A stricter verification threshold needs more matching images...
    assert judge(scores, 0.5, 0.75)[1].tolist() == [False, True, False]
    # ...a laxer detection threshold makes more images match.
    shares, ok = judge(scores, 0.3, 0.75)
    np.testing.assert_allclose(shares, [0.5, 0.75, 1.0])
    assert ok.tolist() == [False, True, True]
    # The boundary counts: score == detection threshold matches, share == threshold verifies.
    assert judge([[0.5, 0.0]], 0.5, 0.5)[1].tolist() == [True]


def test_empty_gallery_verifies_nobody():
    shares, ok = judge(np.zeros((2, 0)), 0.5, 0.5)
    assert shares.tolist() == [0.0, 0.0] and ok.tolist() == [False, False]


# --- enrolment --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x y", "..", "é"])
def test_bad_person_names_are_refused(name, tmp_path, embedder, detector, samples):
    with pytest.raises(ValueError, match="person name"):
        enroll(samples / "knn_examples" / "train" / "obama", name, tmp_path, detector, embedder)
    with pytest.raises(ValueError, match="person name"):
        load_enrolled(tmp_path, name)
    assert not any(tmp_path.iterdir()) and not (tmp_path.parent / "x").exists()


def test_enrol_from_a_folder_adds_then_replaces(tmp_path, embedder, detector, samples):
    photos = tmp_path / "photos"
    shutil.copytree(samples / "knn_examples" / "train" / "obama", photos)
    shutil.copy(samples / "photos" / "two_people.jpg", photos / "two.jpg")  # two equal faces
    (photos / "notes.jpg").write_bytes(b"not a picture")
    cv2.imwrite(str(photos / "wall.png"), np.full((200, 200, 3), 128, np.uint8))
    before = _digest(photos)
    gallery = tmp_path / "gallery"

    r = enroll(photos, "obama", gallery, detector, embedder)
    assert (r["kept"], r["total"], r["seen"]) == (2, 2, 4)
    assert r["skipped"] == {"many_faces": 1, "no_face": 1, "unreadable": 1}
    folder = gallery / "obama"
    meta = json.loads((folder / "person.json").read_text())
    emb = np.load(folder / "embeddings.npy")
    assert emb.shape == (2, embedder.dim) and meta["count"] == 2
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert meta["model"] == model_identity(embedder)
    crops = sorted((folder / "crops").glob("*.jpg"))
    assert [c.name for c in crops] == ["obama_0001.jpg", "obama_0002.jpg"]
    assert read_image(crops[0]).shape == (112, 112, 3)
    assert _digest(photos) == before  # the user's photos are only read

    first = crops[0].read_bytes()
    r = enroll(photos / "obama.jpg", "obama", gallery, detector, embedder)  # adds, never overwrites
    assert (r["kept"], r["total"]) == (1, 3)
    assert (folder / "crops" / "obama_0001.jpg").read_bytes() == first
    assert load_enrolled(gallery, "obama", embedder).shape == (3, embedder.dim)

    r = enroll([photos / "obama2.jpg"], "obama", gallery, detector, embedder, replace=True)
    assert (r["kept"], r["total"]) == (1, 1)
    assert [c.name for c in (folder / "crops").glob("*.jpg")] == ["obama_0001.jpg"]
    assert load_enrolled(gallery, "obama", embedder).shape == (1, embedder.dim)
    assert not [p for p in gallery.iterdir() if p.name.startswith(".")]  # no temporary dirs left


def test_enrol_nothing_usable_writes_nothing(tmp_path, embedder, detector):
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((200, 200, 3), 90, np.uint8))
    r = enroll(tmp_path / "wall.png", "nobody", tmp_path / "g", detector, embedder)
    assert r["kept"] == 0 and r["skipped"] == {"no_face": 1}
    assert not (tmp_path / "g" / "nobody").exists()
    with pytest.raises(FileNotFoundError, match="nobody enrolled"):
        load_enrolled(tmp_path / "g", "nobody")
    with pytest.raises(FileNotFoundError, match="missing.jpg: not found"):
        enroll(tmp_path / "missing.jpg", "nobody", tmp_path / "g", detector, embedder)
    with pytest.raises(SourceError, match="missing.mp4: not found"):
        enroll(tmp_path / "missing.mp4", "nobody", tmp_path / "g", detector, embedder)
    with pytest.raises(SourceError, match="camera 99"):
        enroll(99, "nobody", tmp_path / "g", detector, embedder)
    assert not (tmp_path / "g").exists()


def test_enrol_from_a_video_keeps_frontal_single_faces(tmp_path, embedder, detector, samples):
    # Frames 2 s apart over the clip: the Lin close-ups qualify; crowds and profiles do not.
    r = enroll(samples / "video" / "short_hamilton_clip.mp4", "lin", tmp_path, detector, embedder,
               count=3, every_s=2.0)
    assert r["kept"] >= 1 and r["kept"] + sum(r["skipped"].values()) == r["seen"]
    meta = json.loads((tmp_path / "lin" / "person.json").read_text())
    assert all(i["frame"] is not None and i["frontalness"] >= 0.5 for i in meta["images"])


def test_another_model_is_refused_with_a_re_enrol_message(tmp_path, embedder, detector, samples):
    ref = samples / "reference_faces" / "obama_small.jpg"
    enroll(ref, "obama", tmp_path, detector, embedder)
    meta_path = tmp_path / "obama" / "person.json"
    meta = json.loads(meta_path.read_text())
    meta["model"]["fingerprint"] = "0" * 64  # as if enrolled with another network
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="re-enroll"):
        load_enrolled(tmp_path, "obama", embedder)
    with pytest.raises(ValueError, match="re-enroll"):
        enroll(ref, "obama", tmp_path, detector, embedder)  # adding to it is refused too
    assert enroll(ref, "obama", tmp_path, detector, embedder, replace=True)["total"] == 1
    assert load_enrolled(tmp_path, "obama", embedder).shape == (1, embedder.dim)


# --- tracking ---------------------------------------------------------------------------------

def test_iou():
    a = np.array([[0, 0, 10, 10]])
    np.testing.assert_allclose(iou(a, [[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]]),
                               [[1.0, 50 / 150, 0.0]], atol=1e-6)


def test_flow_follows_a_face_between_detections_and_a_cut_starts_a_new_track(samples, detector):
    frames = {f.index: f.image for f in iter_frames(samples / "video" / "short_hamilton_clip.mp4",
                                                    max_frames=125) if f.index >= 75}
    tracker = FaceTracker()
    tracker.update(frames[100], detector.detect(frames[100]), 100)
    assert len(tracker.tracks) == 1
    track = tracker.tracks[0]
    for i in range(101, 111):  # ten frames on flow alone
        tracker.update(frames[i], None, i)
    assert tracker.tracks == [track]
    truth = detector.detect(frames[110])[0].box
    assert iou(track.face.box, truth)[0, 0] > 0.6  # still on the face, which moved meanwhile
    tracker.update(frames[111], detector.detect(frames[111]), 111)
    assert [t.id for t in tracker.tracks] == [track.id] and track.detected_at == 111
    tracker.update(frames[78], detector.detect(frames[78]), 112)  # a cut to the Alex/audience shot
    assert tracker.lost == 1  # the flow noticed: the caller re-detects at once
    assert track not in tracker.tracks or track.detected_at == 111
    assert all(t.id != track.id for t in tracker.tracks if t.detected_at == 112)


# --- the verifier -----------------------------------------------------------------------------

def test_no_face_and_several_faces(tmp_path, embedder, detector, samples):
    enroll(samples / "knn_examples" / "train" / "obama", "obama", tmp_path, detector, embedder)
    v = Verifier(embedder, load_enrolled(tmp_path, "obama", embedder), detector,
                 verification_threshold=0.5)
    blank = v.process(np.full((360, 640, 3), 40, np.uint8))
    assert blank["state"] == "no_face" and blank["faces"] == []

    v = Verifier(embedder, load_enrolled(tmp_path, "obama", embedder), detector,
                 verification_threshold=0.5)
    r = v.process(read_image(samples / "photos" / "two_people.jpg"))  # Obama left, Biden right
    left, right = sorted(r["faces"], key=lambda f: f["box"][0])
    assert left["decision"] == "verified" and right["decision"] == "unverified"
    assert left["score"] > right["score"] and left["track"] != right["track"]
    assert r["state"] == "verified"
    assert v.detection_threshold == embedder.threshold  # the model's own, by default


def test_camera_or_file_that_cannot_be_opened_is_one_clear_error(tmp_path, embedder, detector):
    v = Verifier(embedder, np.zeros((0, embedder.dim), np.float32), detector,
                 verification_threshold=0.5)
    with pytest.raises(SourceError, match="camera 99 could not be opened"):
        run(v, 99, tmp_path / "out", show=False)
    with pytest.raises(SourceError, match="missing.mp4: not found"):
        run(v, tmp_path / "missing.mp4", tmp_path / "out", show=False)
    assert not (tmp_path / "out").exists()


def test_headless_outputs_exist_parse_and_are_not_overwritten(tmp_path, embedder, detector,
                                                               samples):
    clip = samples / "video" / "short_hamilton_clip.mp4"
    lin = samples / "reference_faces" / "lin-manuel-miranda.png"
    enroll(lin, "lin", tmp_path, detector, embedder)
    v = Verifier(embedder, load_enrolled(tmp_path, "lin", embedder), detector, person="lin",
                 verification_threshold=0.5)
    out = tmp_path / "run"
    r = run(v, clip, out, show=False, max_frames=30)
    assert r["frames"] == 30 and not r["shown"]
    lines = [json.loads(s) for s in (out / "verify.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(30))
    for x in lines:
        assert set(x) == {"time_s", "frame", "faces", "state", "fps"}
        assert x["state"] in ("verified", "unverified", "no_face")
        for f in x["faces"]:
            assert set(f) == {"box", "score", "share", "decision", "track"} and len(f["box"]) == 4
    assert sum(x["state"] != "no_face" for x in lines) == r["frames_with_face"] > 0
    video = list(iter_frames(out / "verify.mp4"))
    assert len(video) == 30 and video[0].image.shape == (360, 640, 3)
    assert sorted(p.name for p in out.iterdir()) == ["verify.jsonl", "verify.mp4"]  # no partials
    with pytest.raises(FileExistsError, match="overwrite"):
        run(v, clip, out, show=False, max_frames=5)
    assert len((out / "verify.jsonl").read_text().splitlines()) == 30


def test_a_source_that_breaks_off_ends_cleanly_and_keeps_its_outputs(tmp_path, embedder,
                                                                      detector, samples, caplog):
    cut = tmp_path / "cut.mp4"  # the news clip cut at 8 % of its bytes: ~27 frames, then garbage
    data = (samples / "video" / "oval_office_news_clip.mp4").read_bytes()
    cut.write_bytes(data[:int(0.08 * len(data))])
    v = Verifier(embedder, np.zeros((0, embedder.dim), np.float32), detector,
                 verification_threshold=0.5)
    r = run(v, cut, tmp_path / "out", show=True)  # no display here: a warning, then headless
    assert 10 < r["frames"] < 510 and r["failed_frames"] >= 1 and not r["shown"]
    assert "truncated" in caplog.text and "no window" in caplog.text
    lines = (tmp_path / "out" / "verify.jsonl").read_text().splitlines()
    assert len(lines) == r["frames"] and (tmp_path / "out" / "verify.mp4").stat().st_size > 0
    assert all(json.loads(x)["state"] == "unverified" for x in lines if "faces\": [{" in x)


def _lin_faces(rows):
    """Lin's face in each frame of his shots: the largest face of the close-up; in the wide shot
    the one on stage, right of centre (Alex sits at the piano on the left)."""
    faces = {}
    for r in rows:
        if any(a <= r["frame"] <= b for a, b in LIN_SHOTS):
            wide = r["frame"] <= LIN_SHOTS[0][1]
            his = [f for f in r["faces"] if not wide or f["box"][0] + f["box"][2] / 2 > 320]
            if his:
                faces[r["frame"]] = max(his, key=lambda f: f["box"][2])
    return faces


@pytest.fixture(scope="module")
def hamilton_runs(tmp_path_factory, embedder, detector, samples):
    """The clip verified against Lin, then against Alex; each enrolled from its reference photo."""
    tmp = tmp_path_factory.mktemp("hamilton")
    rows = {}
    for person, ref in (("lin", "lin-manuel-miranda.png"), ("alex", "alex-lacamoire.png")):
        enroll(samples / "reference_faces" / ref, person, tmp / "gallery", detector, embedder)
        v = Verifier(embedder, load_enrolled(tmp / "gallery", person, embedder), detector,
                     person=person, verification_threshold=0.5)
        run(v, samples / "video" / "short_hamilton_clip.mp4", tmp / person, show=False)
        lines = (tmp / person / "verify.jsonl").read_text().splitlines()
        rows[person] = [json.loads(s) for s in lines]
    return rows


def test_acceptance_lin_is_verified_where_his_face_is_visible(hamilton_runs):
    lin = _lin_faces(hamilton_runs["lin"])
    assert len(lin) >= 0.9 * sum(b - a + 1 for a, b in LIN_SHOTS)  # found and judged nearly always
    share = np.mean([f["decision"] == "verified" for f in lin.values()])
    assert share >= 0.7, share  # measured 1.0 (the 112 px model of 2026-11-23, View 1 0.909)
    # ...and rarely where he is not: Alex in profile, the audience (the Obamas among them).
    elsewhere = [r for r in hamilton_runs["lin"]
                 if not any(a <= r["frame"] <= b for a, b in LIN_SHOTS)]
    assert np.mean([r["state"] == "verified" for r in elsewhere]) <= 0.15  # measured 0.056


def test_acceptance_alex_is_not_verified_where_lin_is(hamilton_runs):
    """The same faces (same frames and tracks), judged against Alex instead of Lin."""
    lin = {k: f for k, f in _lin_faces(hamilton_runs["lin"]).items() if f["decision"] == "verified"}
    alex = _lin_faces(hamilton_runs["alex"])
    assert set(lin) <= set(alex) and all(alex[k]["track"] == lin[k]["track"] for k in lin)
    wrong = {k for k in lin if alex[k]["decision"] == "verified"}
    assert len(wrong) <= 0.25 * len(lin), len(wrong) / len(lin)  # measured 0.081, all in the wide
    close_up = [k for k in lin if k >= LIN_SHOTS[1][0]]  # shot where his face is 36-42 px tall
    assert len(wrong & set(close_up)) <= 0.1 * len(close_up)  # measured 0.0 in the close-up
    lin_scores = np.array([lin[k]["score"] for k in lin])
    alex_scores = np.array([alex[k]["score"] for k in lin])
    assert alex_scores.mean() < lin_scores.mean() - 0.1  # measured 0.07 against 0.27


# --- calibration and its use ------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_copy(tmp_path_factory):
    """The shipped model in a temp dir (links), so tests can put a verify.json beside it."""
    d = tmp_path_factory.mktemp("model")
    for p in MODEL.iterdir():
        if p.name != "verify.json":
            (d / p.name).symlink_to(p)
    return d


def test_calibrate_writes_verify_json_that_the_verifier_reads(model_copy, lfw_root, detector,
                                                              caplog):
    emb = Embedder.load(model_copy, threads=1)
    v = Verifier(emb, np.zeros((0, emb.dim), np.float32), detector)
    assert v.verification_threshold == 0.5 and "no verify.json" in caplog.text  # the fallback

    r = calibrate(emb, lfw_root, detector=detector, n_enroll=2, max_probes=2, limit_people=8)
    saved = json.loads((model_copy / "verify.json").read_text())
    assert saved["verification_threshold"] == r["verification_threshold"] in (0.25, 0.75)
    assert r["people"] == 8 and r["genuine_probes"] == r["impostor_probes"] > 0
    assert r["detection_threshold"] == pytest.approx(emb.threshold)
    best = max(lv["accuracy"] for lv in r["levels"])
    assert r["accuracy"] == best and 0 <= r["far"] <= 1 and 0 <= r["tar"] <= 1
    v = Verifier(emb, np.zeros((0, emb.dim), np.float32), detector)
    assert v.verification_threshold == r["verification_threshold"]
    with pytest.raises(FileExistsError, match="overwrite"):
        calibrate(emb, lfw_root, detector=detector, n_enroll=2, max_probes=2, limit_people=8)

    saved["model"]["fingerprint"] = "0" * 64  # a stale file from an earlier model
    (model_copy / "verify.json").write_text(json.dumps(saved))
    caplog.clear()
    assert Verifier(emb, np.zeros((0, emb.dim)), detector).verification_threshold == 0.5
    assert "another model" in caplog.text
    (model_copy / "verify.json").unlink()


# --- configs and entry points -----------------------------------------------------------------

def _cfg(name, overrides):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose(name, overrides=overrides)


def test_enroll_and_verify_entry_points(tmp_path, samples, capsys):
    gallery = str(tmp_path / "gallery")
    cfg = _cfg("enroll", [f"source={samples / 'knn_examples' / 'train' / 'obama'}",
                          "person=obama", f"gallery={gallery}"])
    assert enroll_from_config(cfg)["kept"] == 2
    assert "enrolled 2 new image(s) of obama" in capsys.readouterr().out
    cfg = _cfg("verify", [f"source={samples / 'video' / 'short_hamilton_clip.mp4'}",
                          "person=obama", f"gallery={gallery}", f"out={tmp_path / 'run'}",
                          "max_frames=10", "show=false", "verification_threshold=0.5"])
    r = verify(cfg)
    assert r["frames"] == 10 and (tmp_path / "run" / "verify.jsonl").exists()
    assert r["detection_threshold"] == pytest.approx(Embedder.load(MODEL).threshold)
    cfg = _cfg("verify", ["source=99", "person=obama", f"gallery={gallery}",
                          f"out={tmp_path / 'run2'}", "show=false"])
    with pytest.raises(SourceError, match="camera 99"):
        verify(cfg)
    cfg = _cfg("verify", ["person=nobody", f"gallery={gallery}", f"out={tmp_path / 'run3'}"])
    with pytest.raises(FileNotFoundError, match="siamese enroll"):
        verify(cfg)
