"""`siamese serve`: the HTTP API with FastAPI's TestClient on the sample photos, the shipped model
and a gallery in tmp_path; one test starts the real server (`siamese serve`) and talks HTTP to it."""

import asyncio
import base64
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

import siamese
from siamese import api
from siamese.gallery.store import Gallery
from siamese.service.app import create_app
from siamese.service.engine import Busy, Engine
from siamese.service.http import Settings

REPO = Path(__file__).resolve().parents[1]
KEY = {"x-api-key": "test-key"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    eng = Engine(None, tmp_path_factory.mktemp("serve") / "gallery.sqlite")
    yield eng
    eng.close()


@pytest.fixture
def client(engine, tmp_path):
    engine.db = tmp_path / "gallery.sqlite"  # a fresh gallery per test, the model loaded once
    with TestClient(create_app(Settings(db=str(engine.db), api_key="test-key"), engine)) as c:
        yield c


def _file(path: Path):
    return (path.name, path.read_bytes())


def _jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def _one_line_error(r, status: int) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err and "\n" not in err and "Traceback" not in err
    return err


def test_detect_and_embed_match_the_python_api(client, samples):
    two = samples / "photos" / "two_people.jpg"
    r = client.post("/v1/detect", files={"image": _file(two)})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == api._model().fingerprint()
    assert len(body["faces"]) == 2 and body["faces"][0]["box"][0] < body["faces"][1]["box"][0]  # left to right
    assert all(len(f["landmarks"]) == 5 and 0 < f["det_score"] <= 1 for f in body["faces"])

    emb = client.post("/v1/embed", files={"image": _file(two)}).json()
    got = np.array([f["embedding"] for f in emb["faces"]], np.float32)
    faces = sorted(siamese.detect(two), key=lambda f: float(f.box[0]))
    want = siamese.embed(two, faces)
    assert emb["dim"] == 256 and np.allclose(got, want, atol=1e-5)  # the shipped ensemble


def test_base64_json_gives_the_same_answer_as_multipart(client, samples):
    path = samples / "photos" / "two_people.jpg"
    multipart = client.post("/v1/detect", files={"image": _file(path)}).json()
    b64 = base64.b64encode(path.read_bytes()).decode()
    assert client.post("/v1/detect", json={"image": b64}).json() == multipart
    data_url = client.post("/v1/detect", json={"image": "data:image/jpeg;base64," + b64}).json()
    assert data_url == multipart


def test_verify_a_pair_uses_the_models_threshold(client, samples):
    train = samples / "knn_examples" / "train"
    same = client.post("/v1/verify", files={"image_a": _file(train / "obama" / "obama.jpg"),
                                            "image_b": _file(train / "obama" / "obama2.jpg")}).json()
    other = client.post("/v1/verify", files={"image_a": _file(train / "obama" / "obama.jpg"),
                                             "image_b": _file(train / "biden" / "biden.jpg")}).json()
    want = siamese.verify(train / "obama" / "obama.jpg", train / "obama" / "obama2.jpg")
    assert same["same"] and not other["same"] and same["score"] > other["score"]
    assert same["score"] == pytest.approx(want.score, abs=1e-4)
    assert same["threshold"] == pytest.approx(want.threshold, abs=1e-4)


def test_subjects_enrol_identify_verify_and_delete(client, samples):
    train = samples / "knn_examples" / "train"
    photo = _file(train / "obama" / "obama.jpg")
    assert _one_line_error(client.post("/v1/subjects", data={"name": "obama"}, files={"image": photo}), 401)
    assert client.post("/v1/subjects", data={"name": "obama"}, files={"image": photo},
                       headers={"x-api-key": "wrong"}).status_code == 401
    r = client.post("/v1/subjects", data={"name": "obama"}, files={"image": photo}, headers=KEY)
    assert r.status_code == 201 and r.json()["new_subject"] and r.json()["added"] == 1
    r = client.post("/v1/subjects/biden/faces", files=[("image", _file(train / "biden" / "biden.jpg")),
                                                       ("image", _file(train / "biden" / "biden2.jpg"))], headers=KEY)
    assert r.status_code == 201 and r.json()["added"] == 2 and len(r.json()["face_ids"]) == 2
    again = client.post("/v1/subjects/biden/faces", files={"image": _file(train / "biden" / "biden.jpg")}, headers=KEY)
    assert again.json()["added"] == 0 and again.json()["duplicates"] == 1  # the same file: stored once
    listed = client.get("/v1/subjects").json()["subjects"]
    assert listed == [{"name": "biden", "faces": 2}, {"name": "obama", "faces": 1}]
    err = _one_line_error(client.post("/v1/subjects/obama/faces", files={"image": _file(train / "biden" / "biden.jpg")},
                                      headers=KEY), 409)
    assert "already enrolled as 'biden'" in err

    ident = client.post("/v1/identify", files={"image": _file(samples / "photos" / "two_people.jpg")}).json()
    assert [f["name"] for f in ident["faces"]] == ["obama", "biden"]  # left to right
    assert ident["threshold"] > 0
    health = client.get("/v1/health").json()
    assert health["gallery"]["subjects"] == 2 and health["thresholds"]["unknown"]["value"] == ident["threshold"]
    assert "stranger bank" in health["thresholds"]["unknown"]["from"]
    # The CLI reads the same file: a subject added over HTTP is a person of the gallery.
    with Gallery(client.app.state.engine.db, create=False) as g:
        assert dict(g.people()) == {"biden": 2, "obama": 1}

    v = client.post("/v1/verify", data={"subject": "biden"}, files={"image": _file(train / "biden" / "biden2.jpg")})
    assert v.status_code == 200 and v.json()["same"] and v.json()["enrolled_faces"] == 2
    v = client.post("/v1/verify", data={"subject": "biden"}, files={"image": _file(train / "obama" / "obama2.jpg")})
    assert not v.json()["same"]

    faces = client.get("/v1/subjects/biden/faces").json()["faces"]
    assert len(faces) == 2 and faces[0]["source"] == "upload:biden.jpg"
    assert client.delete(f"/v1/subjects/biden/faces/{faces[0]['id']}").status_code == 401
    gone = client.delete(f"/v1/subjects/biden/faces/{faces[0]['id']}", headers=KEY).json()
    assert gone["removed_face"] == faces[0]["id"]
    _one_line_error(client.delete(f"/v1/subjects/biden/faces/{faces[0]['id']}", headers=KEY), 404)
    assert client.delete("/v1/subjects/biden", headers=KEY).json()["removed_faces"] == 1
    _one_line_error(client.delete("/v1/subjects/biden", headers=KEY), 404)
    _one_line_error(client.post("/v1/verify", data={"subject": "biden"}, files={"image": photo}), 404)


def test_bad_requests_are_one_line_4xx(client, samples, tmp_path):
    good = samples / "photos" / "two_people.jpg"
    assert "not an image" in _one_line_error(client.post("/v1/detect", files={"image": ("x.jpg", b"hello")}), 422)
    assert "empty" in _one_line_error(client.post("/v1/detect", files={"image": ("e.jpg", b"")}), 422)
    cut = good.read_bytes()[:5000]
    assert "truncated" in _one_line_error(client.post("/v1/detect", files={"image": ("cut.jpg", cut)}), 422)
    blank = _jpeg(np.full((200, 200, 3), 90, np.uint8))
    assert "blank.jpg: no face found" in _one_line_error(
        client.post("/v1/verify", files={"image_a": ("blank.jpg", blank), "image_b": _file(good)}), 422)
    assert _one_line_error(client.post("/v1/detect", json={"image": "not base64!"}), 400)
    assert _one_line_error(client.post("/v1/detect", content=b"{", headers={"content-type": "application/json"}), 400)
    assert _one_line_error(client.post("/v1/detect", json={}), 400)
    assert _one_line_error(client.post("/v1/detect", content=b"raw", headers={"content-type": "image/jpeg"}), 400)
    assert _one_line_error(client.post("/v1/verify", files={"image_a": _file(good)}), 400)
    assert _one_line_error(client.post("/v1/subjects", data={"name": "../etc"}, files={"image": _file(good)},
                                       headers=KEY), 400)
    assert _one_line_error(client.post("/v1/subjects", data={"name": "unknown"}, files={"image": _file(good)},
                                       headers=KEY), 400)
    assert _one_line_error(client.get("/v1/nothing-here"), 404)
    assert _one_line_error(client.get("/v1/detect"), 405)
    assert not Path(client.app.state.engine.db).exists()  # nothing bad was written


def test_upload_limit(engine, samples, tmp_path):
    engine.db = tmp_path / "g.sqlite"
    with TestClient(create_app(Settings(db=str(engine.db), api_key="k", max_upload_mb=0.05), engine)) as c:
        big = samples / "photos" / "obama_and_biden.jpg"
        assert big.stat().st_size > 50_000
        assert "upload limit" in _one_line_error(c.post("/v1/detect", files={"image": _file(big)}), 413)
        huge = b"\xff\xd8" + bytes(400_000)
        assert "upload limit" in _one_line_error(c.post("/v1/detect", files={"image": ("h.jpg", huge)}), 413)

        def chunks():  # no content-length: counted as it arrives
            for _ in range(100):
                yield bytes(10_000)
        r = c.post("/v1/detect", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
        assert "upload limit" in _one_line_error(r, 413)
        small = _jpeg(cv2.resize(cv2.imread(str(big))[:, :, ::-1], (200, 150)))
        assert len(small) < 50_000 and c.post("/v1/detect", files={"image": ("s.jpg", small)}).status_code == 200


def test_off_loopback_needs_a_key_for_everything(engine, tmp_path):
    with pytest.raises(ValueError, match="api_key"):
        create_app(Settings(db=str(tmp_path / "g.sqlite"), host="0.0.0.0"), engine)
    engine.db = tmp_path / "g.sqlite"
    with TestClient(create_app(Settings(db=str(engine.db), host="0.0.0.0", api_key="k"), engine)) as c:
        assert c.get("/v1/subjects").status_code == 401
        assert c.get("/v1/subjects", headers={"x-api-key": "k"}).json()["subjects"] == []


def test_a_generated_key_guards_writes_when_none_is_set():
    a, b = Settings(), Settings()
    assert a.generated_key and a.api_key and a.api_key != b.api_key


def test_parallel_subject_writes_lose_nothing(client, samples, tmp_path):
    train = samples / "knn_examples" / "train"
    photos = sorted(p for p in train.rglob("*") if p.is_file())
    errors = []

    def add(i, p):
        r = client.post(f"/v1/subjects/person{i}/faces", files={"image": _file(p)}, headers=KEY)
        if r.status_code != 201:
            errors.append(r.text)

    def cli_side():  # another process's writer on the same file (as `siamese gallery add` would be)
        with Gallery(client.app.state.engine.db, api._model().identity()) as g:
            for k in range(5):
                v = np.random.default_rng(k).normal(size=(1, api._model().dim)).astype(np.float32)
                g.add(f"cli{k}", v / np.linalg.norm(v), [{"source": f"cli{k}", "sha256": f"cli{k}"}])

    threads = [threading.Thread(target=add, args=(i, p)) for i, p in enumerate(photos)]
    threads.append(threading.Thread(target=cli_side))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = {s["name"]: s["faces"] for s in client.get("/v1/subjects").json()["subjects"]}
    assert names == {**{f"person{i}": 1 for i in range(len(photos))}, **{f"cli{k}": 1 for k in range(5)}}


def test_a_full_queue_answers_busy(tmp_path):
    eng = Engine(None, tmp_path / "g.sqlite", workers=1, queue=0)
    gate = threading.Event()

    async def main():
        first = asyncio.ensure_future(eng.run(gate.wait, 10))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await eng.run(time.sleep, 0)
        gate.set()
        assert await first

    asyncio.run(main())
    eng.close()


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/detect", "/v1/embed", "/v1/verify", "/v1/identify", "/v1/subjects", "/v1/subjects/{name}",
            "/v1/subjects/{name}/faces", "/v1/subjects/{name}/faces/{face_id}", "/v1/health"} <= set(spec["paths"])
    body = spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert client.get("/docs").status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_real_server_over_http(samples, tmp_path):
    port = _free_port()
    env = {**os.environ, "SIAMESE_API_KEY": "real-key"}
    proc = subprocess.Popen([sys.executable, "-m", "siamese.cli", "serve", "--port", str(port),
                             "--db", str(tmp_path / "g.sqlite")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                health = httpx.get(f"{url}/v1/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["gallery"]["subjects"] == 0
        photo = samples / "knn_examples" / "train" / "obama" / "obama.jpg"
        r = httpx.post(f"{url}/v1/subjects", data={"name": "obama"}, files={"image": _file(photo)},
                       headers={"x-api-key": "real-key"}, timeout=60)
        assert r.status_code == 201, r.text
        probe = samples / "knn_examples" / "test" / "obama1.jpg"
        ident = httpx.post(f"{url}/v1/identify", files={"image": _file(probe)}, timeout=60).json()
        assert [f["name"] for f in ident["faces"]] == ["obama"]
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"serving {url}" in out and "Traceback" not in out
    assert "writes need the header" not in out  # the key came from SIAMESE_API_KEY: none was made up


def test_the_command_refuses_an_open_address_without_a_key_and_a_taken_port(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SIAMESE_API_KEY"}
    r = subprocess.run([sys.executable, "-m", "siamese.cli", "serve", "host=0.0.0.0", "--db", str(tmp_path / "g")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "set api_key=" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "siamese.cli", "serve", "--port", str(port), "--db",
                            str(tmp_path / "g")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "choose another --port" in r.stderr and "serving" not in r.stdout
    assert not (tmp_path / "g").exists()  # nothing written
