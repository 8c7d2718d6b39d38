"""tools/model_figures.py: every application figure of a model in one resumable command. The
`siamese` commands themselves are faked here (each is tested where it lives); what is tested is the
tool's own part: which commands, resume after a failure or a kill, logs without progress bars, the
open set's mean over seeds."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "model_figures.py"
spec = importlib.util.spec_from_file_location("model_figures", TOOL)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


class FakeSiamese:
    """Stands in for subprocess.run: records each command, writes an open set's JSON where one is
    asked for, and fails the steps named in `fail`."""

    def __init__(self, fail=()):
        self.calls, self.fail = [], set(fail)

    def __call__(self, cmd, capture_output, text):
        argv = cmd[1:]
        self.calls.append(argv)
        out = Path(next(a for a in argv if a.startswith("out="))[4:])
        if out.name in self.fail:
            return subprocess.CompletedProcess(cmd, 1, "", "boom\n")
        if argv[0] == "openset":
            seed = int(next(a for a in argv if a.startswith("open_set.seed="))[14:])
            out.mkdir(parents=True)
            method = {"top1": 0.6 + seed / 100, "top5": 0.8, "dir_at_far_0.01": 0.3, "unknown_accepted": 0.01}
            (out / "open_set.json").write_text(json.dumps({"seed": seed, "methods": {"nn": method}}))
        progress = "embedding 10 faces:   0%|     | 0/10\rembedding 10 faces: 100%|#####| 10/10\n"
        return subprocess.CompletedProcess(cmd, 0, f"{progress}| a | b |\n|---|---|\n| 1 | 2 |\n", "")


def _run(monkeypatch, tmp_path, fake, *extra):
    monkeypatch.setattr(tool.subprocess, "run", fake)
    monkeypatch.setattr(sys, "argv", ["model_figures.py", "some/model", "--out", str(tmp_path), *extra])
    tool.main()


def test_every_step_names_the_model_and_its_own_out_dir(tmp_path):
    plan = tool.steps("some/model", tmp_path)
    assert {"evaluate", "cluster47", "cluster449", "degraded", "clips", "embed", "verify"} <= set(plan)
    assert [k for k in plan if k.startswith("openset")] == [f"openset{s}" for s in tool.SEEDS]
    for name, argv in plan.items():
        assert argv[-1] == f"out={tmp_path / name}"
        assert any("some/model" in a for a in argv), name
    assert "embed.models=[default,some/model]" in plan["embed"]  # beside the shipped model, same run


def test_a_failed_step_is_retried_and_a_done_one_is_not(monkeypatch, tmp_path, capsys):
    first = FakeSiamese(fail={"clips"})
    with pytest.raises(SystemExit, match="1 step\\(s\\) failed: clips"):
        _run(monkeypatch, tmp_path, first, "--steps", "evaluate,clips,openset")
    assert not (tmp_path / "clips.log").exists() and "boom" in (tmp_path / "clips.failed.log").read_text()
    log = (tmp_path / "evaluate.log").read_text()
    assert "%|" not in log and "| 1 | 2 |" in log and log.startswith("$ siamese evaluate some/model")

    again = FakeSiamese()
    _run(monkeypatch, tmp_path, again, "--steps", "evaluate,clips,openset")
    assert [argv[0:2] for argv in again.calls] == [["bench", "clips"]]  # only the one that failed
    out = capsys.readouterr().out
    assert "open set, 5 seeds (0, 1, 2, 3, 4), mean ± std (sample std):" in out
    assert "nn: top1 0.620 ± 0.016" in out  # 0.60..0.64
    assert "## clips" in out and "| 1 | 2 |" in out


def test_an_unknown_step_is_one_line(monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match="unknown step\\(s\\) evalute"):
        _run(monkeypatch, tmp_path, FakeSiamese(), "--steps", "evalute")
