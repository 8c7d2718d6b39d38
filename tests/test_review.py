"""The review of a cluster result (`siamese review DIR`): every operation through the HTTP routes on a
small synthetic result made here (tiny JPEG crops + a manifest), so no model is needed."""

import csv
import re
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from siamese.cli import run
from siamese.clustering.output import MANIFEST_COLUMNS, write_table
from siamese.io.images import write_image
from siamese.service import review_store
from siamese.service.app import create_app
from siamese.service.http import Settings
from siamese.service.review_store import ReviewError, ReviewStore

LOCAL = {"base_url": "http://127.0.0.1:8000", "client": ("127.0.0.1", 50000)}


def _row(crop, cluster, frame, track, face=0, best=1, track_faces=1, source="clip.mp4"):
    values = {"crop": crop, "source": source, "frame": frame, "time_s": f"{frame / 30:.1f}", "face": face,
              "x": 1, "y": 1, "w": 10, "h": 10, "det_score": "0.9", "frontalness": "0.8", "sharpness": "50",
              "track": track, "track_faces": track_faces, "best": best, "cluster": cluster,
              "cosine_to_centre": "0.9", "score_to_centre": "0.9", "label": "", "note": ""}
    return [values[c] for c in MANIFEST_COLUMNS]


def make_result(root):
    """person_001: a, b (b's track has one more frame without a crop), person_002: c, d; unassigned: e."""
    rng = np.random.default_rng(0)
    faces = {"a": ("person_001", 0, 0), "b": ("person_001", 30, 1), "c": ("person_002", 60, 2),
             "d": ("person_002", 90, 3), "e": ("unassigned", 120, 4)}
    rows = []
    for name, (folder, frame, track) in faces.items():
        crop = f"{folder}/clip_f{frame:06d}_face0_{name}.jpg"
        write_image(root / crop, rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        rows.append(_row(crop, folder, frame, track, track_faces=2 if name == "b" else 1))
    rows.append(_row("", "person_001", 45, 1, best=0, track_faces=2))  # b's track, a frame without a crop
    write_table(root / "manifest.csv", rows)
    (root / "summary.json").write_text('{"task": "cluster", "kind": "video"}')
    return root


def face(name, frame):
    """A face's id in the review: its crop's file name."""
    return f"clip_f{frame:06d}_face0_{name}.jpg"


A, B, C, D, E = face("a", 0), face("b", 30), face("c", 60), face("d", 90), face("e", 120)


@pytest.fixture
def result(tmp_path):
    return make_result(tmp_path / "people")


class Review:
    """A TestClient on the review of `root`, with the page's token and the latest revision."""

    def __init__(self, root, **client):
        self.app = create_app(Settings(review_dir=str(root), db=str(root.parent / "g.sqlite")))
        self.http = TestClient(self.app, **{**LOCAL, **client})
        page = self.http.get("/review")
        assert page.status_code == 200, page.text
        self.token = re.search(r'name="review-token" content="([^"]+)"', page.text)[1]
        self.state = self.http.get("/review/api/state").json()

    def post(self, op, status=200, **body):
        r = self.http.post(f"/review/api/{op}", json={"revision": self.state["revision"], **body},
                           headers={"x-review-token": self.token})
        assert r.status_code == status, r.text
        if status == 200 and "folders" in r.json():
            self.state = r.json()
        return r.json()

    def folders(self):
        return {f["name"]: sorted(x["id"] for x in f["faces"]) for f in self.state["folders"]}


def manifest(root):
    with open(root / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def on_disk(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg")
                  if p.name not in ("contact_sheet.jpg", "overview.jpg") and ".review" not in p.parts)


def test_state_shows_every_folder_with_its_faces(result):
    rv = Review(result)
    assert rv.state["kind"] == "video" and not rv.state["can_undo"]
    assert rv.folders() == {"person_001": [A, B], "person_002": [C, D], "unassigned": [E], "not_a_face": []}
    assert [f["name"] for f in rv.state["folders"]][-2:] == ["unassigned", "not_a_face"]
    img = rv.http.get(f"/review/faces/{A}")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert rv.http.get("/review/static/review.js").status_code == 200
    assert 'loading: "lazy"' in rv.http.get("/review/static/review.js").text


def test_name_renames_the_folder_and_a_reload_shows_it(result):
    rv = Review(result)
    rv.post("name", folder="person_001", name="Zoë O'Brien")
    assert (result / "Zoë O'Brien" / A).is_file() and not (result / "person_001").exists()
    assert {r["cluster"] for r in manifest(result)} == {"Zoë O'Brien", "person_002", "unassigned"}
    again = Review(result)  # a reload (a new server, even) shows the saved state
    assert again.folders()["Zoë O'Brien"] == [A, B] and again.state["undo"] == "name person_001 Zoë O'Brien"
    assert [f for f in again.state["folders"] if f["name"] == "Zoë O'Brien"][0]["named"]


@pytest.mark.parametrize("name, status, says", [
    ("unassigned", 400, "keeps for its own"), ("person_7", 400, "keeps for its own"), ("a/../b", 400, "no '/'"),
    ("", 400, "missing the text field"), ("manifest.csv", 409, "not a person folder"), ("unknown", 400, "reserved")])
def test_names_that_would_break_the_folder_are_refused(result, name, status, says):
    rv = Review(result)
    assert says in rv.post("name", status, folder="person_001", name=name)["error"]
    assert (result / "person_001" / A).is_file()


def test_a_name_taken_by_another_folder_says_merge(result):
    rv = Review(result)
    rv.post("name", folder="person_002", name="Bo")
    assert "merge person_001 into it" in rv.post("name", 409, folder="person_001", name="bo")["error"]


def test_merge_moves_every_face_and_the_track_frames_without_crops(result):
    rv = Review(result)
    rv.post("merge", into="person_002", folders=["person_001"])
    assert rv.folders()["person_002"] == [A, B, C, D] and "person_001" not in rv.folders()
    assert {r["cluster"] for r in manifest(result)} == {"person_002", "unassigned"}  # the crop-less row too
    assert on_disk(result) == sorted([f"person_002/{x}" for x in (A, B, C, D)] + [f"unassigned/{E}"])
    assert not (result / "person_001").exists() and (result / "person_002" / "contact_sheet.jpg").is_file()


def test_move_to_unassigned_and_back(result):
    rv = Review(result)
    rv.post("move", faces=[B], to="unassigned")
    rows = {r["crop"] or f"track{r['track']}": r for r in manifest(result)}
    assert rows[f"unassigned/{B}"]["cluster"] == "unassigned" and rows["track1"]["cluster"] == "unassigned"
    assert rows[f"unassigned/{B}"]["score_to_centre"] == ""  # no longer a distance to this folder's centre
    rv.post("move", faces=[B, E], to="person_002")
    assert rv.folders()["person_002"] == sorted([B, C, D, E]) and rv.folders()["unassigned"] == []
    assert "no person folder" in rv.post("move", 404, faces=[A], to="nobody")["error"]


def test_split_makes_a_new_folder(result):
    rv = Review(result)
    rv.post("split", faces=[C])
    assert rv.folders()["person_003"] == [C] and (result / "person_003" / C).is_file()


def test_not_a_face_and_export_keep_only_named_people(result, tmp_path):
    rv = Review(result)
    rv.post("not-a-face", faces=[A])
    rv.post("name", folder="person_001", name="Ann")
    assert rv.folders()["not_a_face"] == [A] and (result / "not_a_face" / A).is_file()
    out = rv.post("export")
    labelled = tmp_path / "people_labelled"
    assert out == {"out": str(labelled), "people": {"Ann": 1}}
    assert sorted(str(p.relative_to(labelled)) for p in labelled.rglob("*")) == ["Ann", f"Ann/{B}"]
    assert (result / "Ann" / B).is_file()  # copied, not moved
    assert "not empty" in rv.post("export", 409)["error"]


def test_undo_walks_back_across_restarts(result):
    before = (result / "manifest.csv").read_bytes()
    rv = Review(result)
    rv.post("name", folder="person_001", name="Ann")
    rv.post("merge", into="Ann", folders=["person_002"])
    rv.post("not-a-face", faces=[E])
    for label in ["mark 1 face not a face", "merge person_002 into Ann", "name person_001 Ann"]:
        rv = Review(result)  # each undo from a fresh page and server
        assert rv.state["undo"] == label
        rv.post("undo")
    assert (result / "manifest.csv").read_bytes() == before
    assert on_disk(result) == sorted([f"person_001/{A}", f"person_001/{B}", f"person_002/{C}", f"person_002/{D}",
                                      f"unassigned/{E}"])
    assert not rv.state["can_undo"] and rv.post("undo", 409)["error"] == "nothing to undo"


def test_a_stale_revision_is_refused(result):
    one, two = Review(result), Review(result)  # two tabs
    one.post("name", folder="person_001", name="Ann")
    assert "changed since" in two.post("merge", 409, into="person_002", folders=["person_001"])["error"]
    assert Review(result).folders()["Ann"] == [A, B]


def test_paths_from_requests_never_leave_the_folder(result, tmp_path):
    rv = Review(result)
    for bad in ["..", "manifest.csv", "..%2fmanifest.csv", "%2e%2e%2fmanifest.csv", "....//etc", f"..%2f{A}"]:
        r = rv.http.get(f"/review/faces/{bad}")  # ("/faces/.." is the page: the client folds the dots)
        assert "crop,source" not in r.text and "image" not in r.headers["content-type"], bad
        assert r.status_code == 404 or r.url.path == "/review", bad
    assert "no face" in rv.post("move", 404, faces=["../manifest.csv"], to="unassigned")["error"]
    assert "no person folder" in rv.post("merge", 404, into="../x", folders=["person_001"])["error"]
    assert rv.http.get("/review/static/../manifest.csv").status_code == 404
    rows = manifest(result)
    for crop in ["../../etc/passwd", "/etc/passwd", "person_001/../../x.jpg", "person_002/a.jpg"]:
        rows[0]["crop"] = crop
        with open(result / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, MANIFEST_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        with pytest.raises(ReviewError, match="line 2: crop .* is not a file inside its folder"):
            ReviewStore(result)


def test_a_symlinked_crop_is_refused(result, tmp_path):
    outside = tmp_path / "secret.jpg"
    (result / "person_001" / A).rename(outside)
    (result / "person_001" / A).symlink_to(outside)
    with pytest.raises(ReviewError, match="a symlink"):
        ReviewStore(result)


def test_writes_need_the_token_and_this_machine(result):
    rv = Review(result)
    r = rv.http.post("/review/api/undo", json={"revision": rv.state["revision"]})
    assert r.status_code == 403 and "token" in r.json()["error"]
    far = TestClient(rv.app, base_url="http://127.0.0.1:8000", client=("192.168.1.5", 4000))
    assert far.get("/review").status_code == 403
    rebound = TestClient(rv.app, base_url="http://evil.example:8000", client=("127.0.0.1", 4000))
    assert rebound.get("/review/api/state").status_code == 403  # DNS rebinding: a foreign Host
    with pytest.raises(ValueError, match="this machine only"):
        create_app(Settings(host="0.0.0.0", api_key="k", review_dir=str(result)))


def test_not_a_cluster_result_is_one_line(tmp_path, capsys):
    with pytest.raises(ReviewError, match="not a `siamese cluster` result"):
        create_app(Settings(review_dir=str(tmp_path)))
    assert run("review", [str(tmp_path), "open_browser=false"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no manifest.csv" in err[0]


def test_a_malformed_manifest_row_is_named(result):
    with open(result / "manifest.csv", "a") as f:
        f.write("person_001/x.jpg,clip.mp4\n")
    with pytest.raises(ReviewError, match=r"manifest.csv line 8: 2 fields, expected 20"):
        ReviewStore(result)


def test_a_crash_between_moving_crops_and_the_manifest_is_repaired(result, monkeypatch):
    rv = Review(result)
    real = review_store.atomic_write_text

    def crash(path, text):
        if path.name == "manifest.csv":
            raise KeyboardInterrupt  # killed after the crops moved, before the new manifest
        return real(path, text)

    monkeypatch.setattr(review_store, "atomic_write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        rv.store = rv.app.state.review.merge(rv.state["revision"], "person_002", ["person_001"])
    monkeypatch.setattr(review_store, "atomic_write_text", real)
    assert (result / "person_002" / A).exists()
    again = Review(result)
    assert again.folders()["person_001"] == [A, B] and (result / "person_001" / A).is_file()
    assert not again.state["can_undo"]  # the change never landed: nothing to take back


def test_two_writers_at_once_lose_nothing(result):
    pages = [Review(result) for _ in range(2)]
    moves = [[(A, "unassigned"), (C, "unassigned"), (A, "person_002")], [(B, "person_002"), (E, "person_002")]]
    errors = []

    def work(rv, todo):
        for fid, to in todo:
            for _ in range(50):  # a stale revision: reload and try again, as the page does
                rv.state = rv.http.get("/review/api/state").json()
                r = rv.http.post("/review/api/move", json={"revision": rv.state["revision"], "faces": [fid], "to": to},
                                 headers={"x-review-token": rv.token})
                if r.status_code == 200:
                    break
                if r.status_code != 409:
                    errors.append(r.text)
                    return

    threads = [threading.Thread(target=work, args=(rv, todo)) for rv, todo in zip(pages, moves)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = Review(result)
    assert final.folders() == {"person_002": sorted([A, B, D, E]), "unassigned": [C], "not_a_face": []}
    assert on_disk(result) == sorted([f"person_002/{x}" for x in (A, B, D, E)] + [f"unassigned/{C}"])
    assert len(final.app.state.review._history(final.state["revision"])) == 5


class FakeEngine:
    """What the gallery route uses of `Engine`: faces, add_faces, run, db (and model, for errors)."""

    db = "fake.sqlite"
    model = type("Model", (), {"fingerprint": lambda self: "fake"})()

    def __init__(self):
        self.added = {}

    def faces(self, rgb):
        return [object()] if rgb.mean() > 0 else []

    def add_faces(self, name, uploads):
        self.added[name] = [u.name for u in uploads]
        return {"added": len(uploads), "duplicates": 0}

    async def run(self, fn, *args):
        return fn(*args)


def test_add_to_gallery_enrols_named_people_only(result):
    rv = Review(result)
    write_image(result / "person_001" / A, np.zeros((32, 32, 3), np.uint8))  # a crop with no face
    rv.app.state.engine = FakeEngine()
    assert "no named people" in rv.post("gallery", 400)["error"]
    rv.post("name", folder="person_001", name="Ann")
    assert rv.post("gallery") == {"gallery": "fake.sqlite",
                                  "people": {"Ann": {"added": 1, "duplicates": 0, "no_face": 1, "unreadable": 0}}}
    assert rv.app.state.engine.added == {"Ann": [f"Ann/{B}"]}
