"""The review page's "May be the same person" list (`siamese.service.review_likeness`,
GET /review/api/alike): average linkage between person folders, on a fake engine (exact numbers)
and through the HTTP route on the sample photos with the shipped model."""

import csv
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from siamese.clustering.output import MANIFEST_COLUMNS, write_table
from siamese.faces.align import align
from siamese.io.images import read_image, write_image
from siamese.model.centre import centring
from siamese.model.embedder import Embedder
from siamese.service.app import create_app
from siamese.service.engine import NoFace
from siamese.service.http import Settings
from siamese.service.review_likeness import Likeness
from siamese.service.review_store import ReviewStore

LOCAL = {"base_url": "http://127.0.0.1:8000", "client": ("127.0.0.1", 50000)}


class FakeEngine:
    """What `Likeness` uses of `Engine`: crops are small PNGs whose red value picks a unit vector;
    a black crop has no face."""

    def __init__(self, vectors: dict[int, np.ndarray], floor: float | None = 0.2):
        cal = None if floor is None else {"threshold": 0.5, "floor": floor, "k": 10}
        self.model = SimpleNamespace(calibration=lambda name: cal if name == "cluster.json" else None)
        self.vectors, self.detections = vectors, 0

    def largest(self, up):
        self.detections += 1
        if not up.rgb.any():
            raise NoFace(f"{up.name}: no face found")
        return SimpleNamespace(box=np.array([0, 0, 4, 4])), self.vectors[int(up.rgb[0, 0, 0])]


def unit(*v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def crop(path, red):
    write_image(path, np.full((24, 24, 3), [red, 0, 0], np.uint8))
    return path


def test_likeness_is_average_linkage_between_folders(tmp_path):
    vec = {10: unit(1, 0, 0), 20: unit(1, 1, 0), 30: unit(0, 1, 0), 40: unit(0, 0, 1), 50: unit(1, 0.1, 0)}
    engine = FakeEngine(vec)
    like = Likeness(engine)
    a = [crop(tmp_path / "a1.png", 10), crop(tmp_path / "a2.png", 20)]
    b = [crop(tmp_path / "b1.png", 50)]
    c = [crop(tmp_path / "c1.png", 30), crop(tmp_path / "c2.png", 0)]  # c2: no face
    d = [crop(tmp_path / "d1.png", 40), tmp_path / "gone.png"]       # gone: unreadable
    found = like.pairs({"person_001": (False, a), "person_002": (False, b), "Cy": (True, c), "Di": (True, d)})
    cos = lambda x, y: float(vec[x] @ vec[y])  # noqa: E731
    # mean cosine over the cross pairs of faces; c2 has no face, so Cy is c1 alone
    ab = (cos(10, 50) + cos(20, 50)) / 2
    ac = (cos(10, 30) + cos(20, 30)) / 2
    bc = cos(50, 30)
    want = sorted([(ab, ["person_001", "person_002"]), (ac, ["Cy", "person_001"]), (bc, ["Cy", "person_002"])],
                  key=lambda t: -t[0])
    want = [w for w in want if w[0] >= 0.2]  # the floor; Cy-Di are both named, every pair with Di is 0
    assert [p["folders"] for p in found["pairs"]] == [w[1] for w in want]
    assert [p["likeness"] for p in found["pairs"]] == pytest.approx([w[0] for w in want], abs=1e-4)
    assert found["pairs"][0]["faces"] == [2, 1]  # the folder with more faces first: the one a merge keeps
    assert (found["bar"], found["faces"], found["no_face"], found["unreadable"]) == (0.2, 5, 1, 1)
    assert like.progress() == {"done": 7, "total": 7}  # every crop looked at, the unreadable one too
    # merged, a folder's likeness to a third is the faces-weighted mean of its parts' (average linkage)
    merged = like.pairs({"person_001": (False, a + b), "Cy": (True, c)})
    assert merged["pairs"][0]["likeness"] == pytest.approx((2 * ac + bc) / 3, abs=1e-4)
    # each crop was embedded once: moved crops keep their name, size and time
    assert engine.detections == 6
    # crops whose embedding `siamese cluster` saved are not embedded again
    saved = FakeEngine(vec)
    stored = Likeness(saved, stored={"a1.png": (vec[10], 1), "a2.png": (vec[20], 1), "b1.png": (vec[50], 1)})
    assert stored.pairs({"person_001": (False, a), "person_002": (False, b)})["pairs"][0]["likeness"] == \
        pytest.approx(ab, abs=1e-4)
    assert saved.detections == 0
    # a crop that stands for a track (a video's best crop) brings every face of it, weighted by their number:
    # b1 for 3 faces, their mean (vec[50] + 2 * vec[30]) / 3, against a1 and a2, is the mean over the 6 pairs
    track = Likeness(saved, stored={"a1.png": (vec[10], 1), "a2.png": (vec[20], 1),
                                    "b1.png": ((vec[50] + 2 * vec[30]) / 3, 3)})
    found = track.pairs({"person_001": (False, a), "person_002": (False, b)})
    six = [cos(x, y) for x in (10, 20) for y in (50, 30, 30)]
    assert found["pairs"][0]["likeness"] == pytest.approx(np.mean(six), abs=1e-4)
    assert found["pairs"][0]["faces"] == [3, 2] and found["faces"] == 5
    # folders seen together in one photo or frame are different people: never listed
    apart = like.pairs({"person_001": (False, a), "person_002": (False, b), "Cy": (True, c)},
                       apart={frozenset(("person_002", "person_001"))})
    assert [p["folders"] for p in apart["pairs"]] == [w[1] for w in want if w[1] != ["person_001", "person_002"]]


def test_without_cluster_json_the_most_alike_pairs_whatever_their_likeness(tmp_path):
    vec = {10: unit(1, 0), 20: unit(0, 1), 30: unit(-1, 0.1)}
    like = Likeness(FakeEngine(vec, floor=None), top=2)
    found = like.pairs({f"person_00{r // 10}": (False, [crop(tmp_path / f"{r}.png", r)]) for r in vec})
    assert found["bar"] is None
    # 2-3: 0.0995, 1-2: 0.0, 1-3: -0.995 (left out: top=2)
    assert [p["folders"] for p in found["pairs"]] == [["person_002", "person_003"], ["person_001", "person_002"]]
    assert [p["likeness"] for p in found["pairs"]] == pytest.approx([float(vec[20] @ vec[30]), 0.0], abs=1e-4)
    assert like.pairs({"person_001": (False, [tmp_path / "10.png"])})["pairs"] == []


PEOPLE = {"biden": ["biden.jpg", "biden2.jpg"], "kit_harington": ["john1.jpeg", "john2.jpeg"],
          "obama": ["obama.jpg", "obama2.jpg"], "rose_leslie": ["img1.jpg", "img2.jpg"],
          "alex_lacamoire": ["img1.jpg"]}


@pytest.fixture(scope="module")
def split_result(samples, tmp_path_factory):
    """A photo result with each of the 9 enrolment photos of samples/knn_examples/train in its own
    folder: four people split in two, one alone. Returns (root, {folder: person})."""
    root = tmp_path_factory.mktemp("alike") / "people"
    rows, person_of = [], {}
    n = 0
    for person, files in PEOPLE.items():
        for name in files:
            n += 1
            folder = f"person_{n:03d}"
            (root / folder).mkdir(parents=True)
            shutil.copy(samples / "knn_examples" / "train" / person / name, root / folder / f"{person}_{name}")
            values = {c: "" for c in MANIFEST_COLUMNS}
            values.update(crop=f"{folder}/{person}_{name}", source=f"{person}/{name}", face=0, track=n,
                          cluster=folder, cosine_to_centre="1", score_to_centre="1")
            rows.append([values[c] for c in MANIFEST_COLUMNS])
            person_of[folder] = person
    write_table(root / "manifest.csv", rows)
    (root / "summary.json").write_text('{"task": "cluster", "kind": "photos"}')
    return root, person_of


def test_alike_route_lists_the_split_people_first(split_result, yunet, tmp_path):
    root, person_of = tmp_path / "people", split_result[1]
    shutil.copytree(split_result[0], root)  # the test merges folders: a copy of its own
    app = create_app(Settings(review_dir=str(root), db=str(tmp_path / "g.sqlite")))
    with TestClient(app, **LOCAL) as http:  # the lifespan loads the shipped model
        found = http.get("/review/api/alike")
        assert found.status_code == 200, found.text
        found = found.json()
        assert found["revision"] == http.get("/review/api/state").json()["revision"]
        pairs = found["pairs"]
        # the four people split in two are the four most alike pairs; every pair listed reaches the bar
        assert [person_of[p["folders"][0]] == person_of[p["folders"][1]] for p in pairs[:4]] == [True] * 4
        assert {person_of[p["folders"][0]] for p in pairs[:4]} == {"biden", "kit_harington", "obama", "rose_leslie"}
        assert all(person_of[p["folders"][0]] != person_of[p["folders"][1]] for p in pairs[4:])
        scores = [p["likeness"] for p in pairs]
        assert scores == sorted(scores, reverse=True) and min(scores) >= found["bar"]
        assert (found["faces"], found["no_face"], found["unreadable"]) == (9, 0, 0)
        assert http.get("/review/api/alike/progress").json() == {"done": 9, "total": 9}
        # the likeness is the model's cosine of the two photos' largest faces, in the locally centred
        # space its cluster.json was fitted in (siamese.model.centre)
        model = Embedder.load(None)
        emb = {}
        for folder in pairs[0]["folders"]:
            image = read_image(next((root / folder).iterdir()))
            face = max(yunet.detect(image), key=lambda f: float(f.box[2] * f.box[3]))
            emb[folder] = centring(model)(model.embed(align(image, face.landmarks, 112)[None]))[0]
        assert pairs[0]["likeness"] == pytest.approx(float(np.dot(*emb.values())), abs=2e-3)
        # merged through the page's route, that pair is gone and the rest stays
        token = re.search(r'name="review-token" content="([^"]+)"', http.get("/review").text)[1]
        keep, other = pairs[0]["folders"]
        r = http.post("/review/api/merge", json={"revision": found["revision"], "into": keep, "folders": [other]},
                      headers={"x-review-token": token})
        assert r.status_code == 200, r.text
        again = http.get("/review/api/alike").json()
        assert again["revision"] == r.json()["revision"] != found["revision"]
        assert [p["folders"] for p in again["pairs"][:3]] == [p["folders"] for p in pairs[1:4]]
        # "Not the same": the next pair is kept apart, also once one of its folders is renamed, until forgotten
        def post(op, **body):
            return http.post(f"/review/api/{op}", json=body, headers={"x-review-token": token})

        a, b = again["pairs"][0]["folders"]
        marked = post("not-same", folders=[a, b]).json()
        assert marked["not_same"] == 1 and len(marked["faces"]) == 2  # one face of each, what Undo sends back
        assert (root / ".review" / "not_same.json").is_file()
        hidden = http.get("/review/api/alike").json()
        assert [p["folders"] for p in hidden["pairs"]] == [p["folders"] for p in again["pairs"][1:]]
        assert hidden["not_same"] == 1
        r = post("name", revision=hidden["revision"], folder=b, name="Bea")
        assert r.status_code == 200, r.text
        assert all(set(p["folders"]) != {a, "Bea"} for p in http.get("/review/api/alike").json()["pairs"])
        assert post("forget-not-same").json() == {"not_same": 0}
        assert {a, "Bea"} in [set(p["folders"]) for p in http.get("/review/api/alike").json()["pairs"]]
        # Undo of one mark takes back that pair only (the faces not-same answered, either order)
        c, d = hidden["pairs"][0]["folders"]
        first = post("not-same", folders=[a, "Bea"]).json()["faces"]
        assert post("not-same", folders=[c, d]).json()["not_same"] == 2
        assert post("forget-not-same", faces=first[::-1]).json() == {"not_same": 1}
        listed = [set(p["folders"]) for p in http.get("/review/api/alike").json()["pairs"]]
        assert {a, "Bea"} in listed and {c, d} not in listed
        assert post("forget-not-same", faces=[first[0]]).status_code == 400
        assert post("forget-not-same").json() == {"not_same": 0}
        # one line for what cannot be recorded; writes need the page's token
        assert post("not-same", folders=[a, a]).status_code == 400
        assert "no person folder 'nobody'" in post("not-same", folders=[a, "nobody"]).json()["error"]
        assert http.post("/review/api/not-same", json={"folders": [a, "Bea"]}).status_code == 403


def _copy(split_result, tmp_path):
    """A copy of the split result to edit: (root, {folder: person}, manifest rows, {column: index})."""
    src, person_of = split_result
    root = tmp_path / "people"
    shutil.copytree(src, root)
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.reader(f))
    return root, person_of, rows[1:], {c: i for i, c in enumerate(rows[0])}


def test_folders_seen_together_are_apart(split_result, tmp_path):
    """Two faces of one photo (or one video frame) in two folders: those folders are different people."""
    root, person_of, rows, col = _copy(split_result, tmp_path)
    by_folder = {r[col["cluster"]]: r for r in rows}
    # person_001's photo also shows the man of person_003 (a second face, in a frame with no crop of its own)
    extra = list(by_folder["person_003"])
    extra[col["crop"]], extra[col["source"]], extra[col["face"]] = "", by_folder["person_001"][col["source"]], "1"
    write_table(root / "manifest.csv", rows + [extra])
    rev, people, apart = ReviewStore(root).people()
    assert apart == {frozenset(("person_001", "person_003"))}
    assert sorted(people) == sorted(person_of) and all(len(crops) == 1 for _, crops in people.values())
    assert not any(named for named, _ in people.values())


def test_unassigned_faces_are_compared_each_on_its_own(split_result, tmp_path):
    """Biden's two photos in unassigned: they pair with each other as two items, as a split folder does."""
    root, person_of, rows, col = _copy(split_result, tmp_path)
    (root / "unassigned").mkdir()
    for r in rows:
        if person_of[r[col["cluster"]]] == "biden":
            name = Path(r[col["crop"]]).name
            (root / r[col["crop"]]).rename(root / "unassigned" / name)
            (root / r[col["cluster"]]).rmdir()
            r[col["crop"]], r[col["cluster"]] = f"unassigned/{name}", "unassigned"
    write_table(root / "manifest.csv", rows)
    _, people, apart = ReviewStore(root).people()
    loose = sorted(p for p in people if p.startswith("unassigned/"))
    assert len(loose) == 2 and not any(named for named, _ in people.values()) and not apart
    app = create_app(Settings(review_dir=str(root), db=str(tmp_path / "g.sqlite")))
    with TestClient(app, **LOCAL) as http:
        pairs = http.get("/review/api/alike").json()["pairs"]
    # the four people split in two are still the four most alike pairs, Biden's as his two faces
    who = {**person_of, **{f: "biden" for f in loose}}
    assert [who[p["folders"][0]] == who[p["folders"][1]] for p in pairs[:4]] == [True] * 4
    assert loose in [sorted(p["folders"]) for p in pairs[:4]]
    assert pairs[3]["likeness"] > max(p["likeness"] for p in pairs[4:])


def test_alike_route_before_the_model_is_loaded(split_result):
    root, _ = split_result
    app = create_app(Settings(review_dir=str(root), db=str(root.parent / "g.sqlite")))
    http = TestClient(app, **LOCAL)  # no lifespan: no engine yet
    assert http.get("/review/api/alike/progress").json() == {"done": 0, "total": 0}  # nothing under way
    r = http.get("/review/api/alike")
    assert r.status_code == 503 and "not loaded yet" in r.json()["error"]


def test_a_malformed_cluster_json_is_one_line(split_result, tmp_path):
    """The model's cluster.json lacks its floor: the route says which file and what to do, not a bare 500."""
    model = tmp_path / "model"
    shutil.copytree(Embedder.load(None).path, model, ignore=shutil.ignore_patterns("int8"))
    cal = json.loads((model / "cluster.json").read_text())
    del cal["floor"]
    (model / "cluster.json").write_text(json.dumps(cal))
    app = create_app(Settings(review_dir=str(split_result[0]), db=str(tmp_path / "g.sqlite"), model_path=str(model)))
    with TestClient(app, **LOCAL) as http:
        r = http.get("/review/api/alike")
    assert r.status_code == 500 and "cluster.json: missing threshold/floor/k" in r.json()["error"]
