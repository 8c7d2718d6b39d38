"""`pip install .` without the repository: the wheel carries the shipped model and the configs,
and its `siamese` command and verbs work from any directory."""

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_works_without_the_repository(tmp_path, samples):
    wheels = tmp_path / "wheels"
    # setuptools reuses the git-ignored build/ folder, where files since removed from the tree
    # (the unpacked embedding.onnx) would ride along: build from a clean one.
    shutil.rmtree(REPO / "build", ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(wheels)],
                   check=True, timeout=600)
    wheel = glob.glob(str(wheels / "siamese-*.whl"))[0]
    names = zipfile.ZipFile(wheel).namelist()
    for member in ("1-lfw_only", "2-distilled"):  # the shipped ensemble's networks, inside it
        assert f"siamese/assets/default_model/members/{member}/embedding.onnx.planes.xz" in names
        assert f"siamese/assets/default_model/members/{member}/embedding.onnx" not in names  # stored once, packed
    assert "siamese/assets/default_model/impostors.npy" in names and "siamese/conf/detect.yaml" in names
    for f in ("members/1-lfw_only/quantization.json", "members/2-distilled/quantization.json", "int8/model.json",
              "int8/cluster.json", "int8/impostors.npy"):  # the int8 form: derived on first use, not stored
        assert f"siamese/assets/default_model/{f}" in names, f
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "data/", "checkpoints/"))]

    # A new environment: the wheel installed without dependencies, which come from this one's
    # site-packages as a plain path (so this checkout's editable install is not seen).
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], check=True, timeout=300)
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SIAMESE_MODEL")}
    env["SIAMESE_CACHE"] = str(tmp_path / "cache")  # a new user: the model is unpacked on first use
    photo = samples / "photos" / "two_people.jpg"
    code = ("import siamese, sys; assert 'site-packages' in siamese.__file__, siamese.__file__; "
            f"print(len(siamese.detect({str(photo)!r})), siamese.verify({str(photo)!r}, {str(photo)!r}).same)")
    r = subprocess.run([py, "-c", code], cwd=away, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["2", "True"], r.stderr[-2000:]
    assert len(list((tmp_path / "cache" / "models").glob("*/embedding.onnx"))) == 2  # the ensemble's two
    # The int8 form by name: its networks derived from the installed float32 ones, into the user cache.
    code = ("from siamese.model import Embedder; m = Embedder.load('int8'); "
            "print(m.precision, *(x.precision for x in m.members), m.calibration('cluster.json') is not None)")
    r = subprocess.run([py, "-c", code], cwd=away, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["int8", "int8", "int8", "True"], r.stderr[-2000:]
    assert len(list((tmp_path / "cache" / "models").glob("int8-*/embedding.onnx"))) == 2
    r = subprocess.run([env_dir / "bin" / "siamese", "detect", str(photo), "--out", "faces"], cwd=away, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((away / "faces" / "crops").glob("*.jpg"))) == 2 and (away / "faces" / "manifest.csv").exists()
