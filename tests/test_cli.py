import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from siamese.cli import _rewrite

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
REQUIRED = {"detect": ["input=x", "out=y"], "collect": ["person=me"], "export": ["run_dir=x"],
            "cluster": ["input=x", "out=y"], "recognize": ["input=x"], "verify": ["person=me"],
            "ensemble": ["out=x", "models=[a,b]"], "refinish": ["runs=[x]"],
            "index": ["input=x", "out=y"], "quantize": ["model_path=x"]}  # values marked ??? in the config
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
PRIMARY = sorted(p.stem for p in CONF.glob("*.yaml"))


@pytest.mark.parametrize("name", PRIMARY)
@pytest.mark.parametrize("detector", ["yunet", "haar"])
def test_every_config_composes_and_resolves(name, detector):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        overrides = REQUIRED.get(name, [])
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
        if "detector" in cfg:
            cfg = compose(name, overrides=[*overrides, f"detector={detector}"],
                          return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        for key in cfg:  # every interpolation of ours resolves (hydra's own are set at run time)
            if key != "hydra":
                value = cfg[key]  # a scalar resolves on access
                if OmegaConf.is_config(value):
                    OmegaConf.to_container(value, resolve=True, throw_on_missing=True)
        if "detector" in cfg:
            from hydra.utils import instantiate

            assert hasattr(instantiate(cfg.detector), "detect")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("name", ["train", "unrestricted"])
def test_every_experiment_composes_and_resolves(name, experiment):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=[f"+experiment={experiment}"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        plain = OmegaConf.to_container(cfg, resolve=False)
        for key in plain:
            if key != "hydra" and OmegaConf.is_config(cfg[key]):
                OmegaConf.to_container(cfg[key], resolve=True, throw_on_missing=True)
        assert cfg.run_dir and cfg.model.input_size > 0 and cfg.train.epochs > 0


def test_one_cache_path_everywhere():
    """Every config that reads the LFW face cache names the one `prepare` builds by default."""
    from siamese.io.paths import lfw_cache

    with initialize_config_dir(str(CONF), version_base="1.3"):
        prepare = compose("prepare", return_hydra_config=True)
        HydraConfig.instance().set_config(prepare)
        built = prepare.cache_dir
        readers = {"train": compose("train").cache_dir, "evaluate": compose("evaluate").cache_dir,
                   "calibrate": compose("calibrate").cache_dir, "bench": compose("bench").cache_dir,
                   "gallery": compose("gallery").calibration.cache_dir,
                   "recognize": compose("recognize", overrides=["input=x"]).calibration.cache_dir}
    assert set(readers.values()) == {built} == {str(lfw_cache("data/cache"))}, readers


def test_prepare_cache_dir_names_detector_and_size():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("prepare", overrides=["detector=haar", "align.size=64"],
                      return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        assert cfg.cache_dir.endswith("lfw_haar_64_p0.0")


def test_positional_arguments_become_overrides():
    assert _rewrite(["my photos", "--out", "faces", "align.size=96"], ["input"]) == [
        "input='my photos'", "out=faces", "align.size=96"]
    assert _rewrite(["--every-s=2"], []) == ["every_s=2"]


def _run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "siamese.cli", *args], capture_output=True,
                          text=True, cwd=kw.get("cwd", REPO), timeout=120)


def test_help_lists_commands():
    r = _run("--help")
    assert r.returncode == 0 and "detect" in r.stdout and "prepare" in r.stdout
    assert _run("nonsense").returncode == 2


def test_bad_input_is_one_clear_line(tmp_path):
    r = _run("detect", str(tmp_path / "missing_folder"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1  # the input could not be used
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "missing_folder" in err[0] and "Traceback" not in r.stderr


def test_detect_command_end_to_end(tmp_path, samples):
    out = tmp_path / "faces"
    r = _run("detect", str(samples / "photos" / "two_people.jpg"), "--out", str(out),
             "progress=false")
    assert r.returncode == 0, r.stderr
    assert "2 faces" in r.stdout
    assert len(list((out / "crops").glob("*.jpg"))) == 2
    log = (out / "siamese.log").read_text()  # the output folder keeps the run's log, config first
    assert "siamese detect" in log and "save_crops: true" in log and "2 faces in 1 of 1 photos" in log


def test_make_help_lists_every_target():
    r = subprocess.run(["make", "-s", "help"], capture_output=True, text=True, cwd=REPO)
    targets = {line.split()[1] for line in r.stdout.splitlines() if line.strip()}
    in_makefile = set(re.findall(r"^([a-z][a-z-]*):(?!=)", (REPO / "Makefile").read_text(), re.M))
    assert {"test", "prepare", "detect", "bench", "data", "train"} <= targets
    assert in_makefile == targets


def test_commands_work_from_any_directory(tmp_path, samples):
    # The configs and the shipped model are found from the package, not the working directory.
    photo = samples / "photos" / "two_people.jpg"
    r = _run("detect", str(photo), "--out", "faces", "progress=false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "faces" / "manifest.csv").exists()
    r = _run("gallery", "import", str(samples / "knn_examples" / "train"), "db=g.sqlite",
             "calibration.people=20", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    obama = samples / "knn_examples" / "test" / "obama1.jpg"
    r = _run("recognize", str(obama), "db=g.sqlite", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{obama}, obama," in r.stdout


@pytest.mark.parametrize("args, says", [
    (["cluster"], "missing input, out"),                          # required arguments
    (["detect", "photos"], "missing out"),
    (["cluster", "x", "--out", "y", "nonsense_key=1"], "unknown key 'nonsense_key'"),  # an unknown key
    (["cluster", "x", "--out", "y", "algoritm=dbscan"], "did you mean algorithm?"),  # a typo: the close key
    (["detect", "x", "--out"], "--out needs a value"),
])
def test_usage_errors_are_one_line_and_exit_2(args, says, tmp_path):
    r = _run(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0] and "--help" in lines[0] and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


@pytest.mark.parametrize("name", ["ünïcødé_名前", "a#b;c&d!e~f", "quote's \\ back", "with\nnewline", "${x}y",
                                  "[brackets],commas", "-dash", "null"])
def test_any_string_the_shell_passes_reaches_the_command(name, tmp_path, samples):
    import shutil

    photo = tmp_path / f"{name}.jpg"
    shutil.copy(samples / "photos" / "two_people.jpg", photo)
    out = tmp_path / f"out {name}"
    r = _run("detect", str(photo), "--out", str(out), "progress=false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-1500:]
    assert (out / "manifest.csv").exists() and photo.name in (out / "manifest.csv").read_text()


def test_help_explains_the_command_and_its_keys():
    r = _run("cluster", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: siamese cluster INPUT")
    assert "every_s" in r.stdout and "videos: one frame per this many seconds" in r.stdout
    assert "input" in r.stdout and "(required)" in r.stdout and "exit codes" in r.stdout
    assert "augment" not in r.stdout  # only this command's own groups
    r = _run("gallery", "--help")  # its examples keep a line each
    assert "\n`siamese gallery list`" in r.stdout and "\n`siamese gallery import known/`" in r.stdout
    r = _run("train", "--help")
    assert "LFW_ROOT" in r.stdout and "distill" in r.stdout and "augment=light" in r.stdout


def test_nothing_usable_exits_1_and_every_command_speaks_json(tmp_path, samples):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a photo")
    r = _run("detect", str(tmp_path / "broken.jpg"), "--out", str(tmp_path / "o"), "--json", cwd=tmp_path)
    assert r.returncode == 1 and "could be read" in r.stderr
    assert json.loads(r.stdout)["errors"] == 1  # the summary, as JSON, even so
    r = _run("gallery", "list", f"db={tmp_path / 'none.sqlite'}", cwd=tmp_path)
    assert r.returncode == 1 and "no gallery here" in r.stderr
    r = _run("detect", str(samples / "photos" / "two_people.jpg"), "--out", str(tmp_path / "ok"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["faces"] == 2


def test_a_folder_the_command_refused_gets_no_log_file(tmp_path, samples):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = _run("detect", str(samples / "photos"), "--out", str(out), "progress=false")
    assert r.returncode == 1 and "notes.txt" in r.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # as the user left it
