"""Every application figure of one model, the commands docs/distill.md and docs/benchmarks.md quote,
run one after the other into one folder, so that a model that ships (or a candidate, after its rule
chose it) is measured again in one command:

    python tools/model_figures.py MODEL [--out DIR] [--steps evaluate,openset,...]

MODEL is what `model_path=` takes (a model dir, or a shipped model's name: default, int8, lfw_only,
distilled). Each step runs one `siamese` command with `out=DIR/STEP` and its output in `DIR/STEP.log`
(progress bars taken out); a step whose log is there is done and not run again, so a killed run goes
on where it stopped (a step's log is written under another name and renamed when the step ended
well). Then a digest: View 1 / View 2 from `metrics.json`, the open set's mean ± std over its seeds
from each `open_set.json`, and the result tables of the other steps as they printed them.

The speed steps (`embed`, `verify`) time the machine as it is: run them with nothing else busy (each
log records the load average). Test figures: run this only after a rule has chosen, never to choose.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SEEDS = (0, 1, 2, 3, 4)
SPEED = ("embed", "verify")


def steps(model: str, out: Path) -> dict[str, list[str]]:
    """Step name -> the `siamese` command line (argv after `siamese`), each writing under out/STEP."""
    m = f"model_path={model}"
    beside = "default" if model == "default" else f"default,{model}"
    cmds = {
        "evaluate": ["evaluate", model],
        "cluster47": ["bench", "what=cluster", m],
        "cluster449": ["bench", "what=cluster", m, "cluster.min_images=2", "cluster.max_images=9"],
        **{f"openset{s}": ["openset", f"open_set.seed={s}", m] for s in SEEDS},
        "degraded": ["bench", "degraded", m],
        "clips": ["bench", "clips", m],
        "embed": ["bench", "embed", f"embed.models=[{beside}]"],
        "verify": ["bench", "verify", m],
    }
    return {name: argv + [f"out={out / name}"] for name, argv in cmds.items()}


def clean(text: str) -> str:
    """A log without its progress bars: of each carriage-returned line only what it ended as, and
    no tqdm-only lines."""
    lines = []
    for line in text.splitlines():
        line = line.split("\r")[-1]
        if re.search(r"\d+%\|", line):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def run_step(name: str, argv: list[str], out: Path) -> bool:
    """Run one step unless its log exists; True when it is done (now or before)."""
    log = out / f"{name}.log"
    if log.exists():
        print(f"{name}: done before ({log})", flush=True)
        return True
    cmd = [str(Path(sys.executable).with_name("siamese")), *argv]
    t0 = time.time()
    print(f"{name}: {' '.join(argv)}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    load = os.getloadavg()[0]
    body = clean(proc.stdout + proc.stderr)
    head = (f"$ siamese {' '.join(argv)}\n"
            f"# {time.time() - t0:.0f} s, rc {proc.returncode}, load average {load:.2f} at the end\n")
    if proc.returncode != 0:
        failed = out / f"{name}.failed.log"
        failed.write_text(head + body)
        print(f"{name}: FAILED (rc {proc.returncode}), its output in {failed}", flush=True)
        return False
    part = out / f"{name}.log.part"
    part.write_text(head + body)
    part.replace(log)
    (out / f"{name}.failed.log").unlink(missing_ok=True)
    print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    return True


def openset_digest(out: Path) -> list[str]:
    """Mean ± std over the seeds' open_set.json files found under out."""
    runs = [json.loads(p.read_text()) for s in SEEDS if (p := out / f"openset{s}" / "open_set.json").exists()]
    if not runs:
        return []
    lines = [f"open set, {len(runs)} seeds ({', '.join(str(r['seed']) for r in runs)}), mean ± std (sample std):"]
    for method in runs[0]["methods"]:
        rows = [r["methods"][method] for r in runs]
        cells = []
        for key in ("top1", "top5", "dir_at_far_0.01", "unknown_accepted"):
            v = np.array([row[key] for row in rows], float)
            cells.append(f"{key} {v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}")
        lines.append(f"  {method}: " + ", ".join(cells))
    return lines


def evaluate_digest(out: Path) -> list[str]:
    path = out / "evaluate" / "metrics.json"
    if not path.exists():
        return []
    res = json.loads(path.read_text())["results"]
    lines = []
    if "lfw_view1" in res:
        v = res["lfw_view1"]
        lines.append(f"LFW View 1: accuracy {v['accuracy']:.3f} (AUC {v['auc']:.3f}, TAR@FAR 1e-3 "
                     f"{v['tar_at_far_1e-3']:.3f}) on {v['pairs']} pairs")
    if "lfw_view2" in res:
        v = res["lfw_view2"]
        lines.append(f"LFW View 2: accuracy {v['accuracy_mean']:.3f} ± {v['accuracy_std']:.3f} (10-fold) on "
                     f"{v['pairs']} pairs, {v.get('refused_pairs', 0)} refused (people the model learned from)")
    return lines


def tables(log: Path) -> list[str]:
    """The lines of a log that are result tables or their captions (not the run's chatter)."""
    keep = []
    for line in log.read_text().splitlines()[2:]:
        if line.startswith("|") or line.rstrip().endswith(":") or line.startswith("lfw_view"):
            keep.append(line)
    return keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a model dir or a shipped model's name (default, int8, lfw_only, distilled)")
    ap.add_argument("--out", default=None, help="where the steps write (default: data/figures/<model's name>)")
    ap.add_argument("--steps", default=None, help="comma-separated steps to run (default: all); names or 'openset'")
    args = ap.parse_args()
    out = Path(args.out or Path("data/figures") / Path(args.model).name)
    out.mkdir(parents=True, exist_ok=True)
    plan = steps(args.model, out)
    if args.steps:
        wanted = args.steps.split(",")
        unknown = [w for w in wanted if w not in plan and w != "openset"]
        if unknown:
            sys.exit(f"model_figures: unknown step(s) {', '.join(unknown)}; steps: {', '.join(plan)}, openset")
        plan = {k: v for k, v in plan.items() if k in wanted or ("openset" in wanted and k.startswith("openset"))}
    failed = [name for name, argv in plan.items() if not run_step(name, argv, out)]
    print(f"\n# figures of {args.model} ({out})")
    for line in evaluate_digest(out) + openset_digest(out):
        print(line)
    for name in plan:
        log = out / f"{name}.log"
        if log.exists() and name != "evaluate" and not name.startswith("openset"):
            print(f"\n## {name}" + (" (speed: the machine as it was; see the load average)" if name in SPEED else ""))
            print("\n".join(tables(log)))
    if failed:
        sys.exit(f"model_figures: {len(failed)} step(s) failed: {', '.join(failed)} "
                 "(their *.failed.log); run again to retry them")


if __name__ == "__main__":
    from siamese.cli import script

    script("model_figures", main)
