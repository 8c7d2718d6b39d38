"""Command-line entry points: thin Hydra mains over plain functions the tests import.

`siamese COMMAND [ARGS] [key=value ...]` dispatches to one Hydra app per command; each app's
config is `conf/COMMAND.yaml` and any Hydra override can follow. Positional conveniences
(`siamese detect PHOTOS --out DIR`) are rewritten into the equivalent overrides.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from siamese.io.paths import CONF_DIR

log = logging.getLogger("siamese")

# Absolute: a relative config_path is looked up as a Python package, found only from the repo root.
CONF = str(CONF_DIR)


def _friendly(fn):
    """Turn the errors a user can fix (bad paths, bad files, bad settings) into one line.

    Set SIAMESE_DEBUG=1 to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(cfg):
        try:
            return fn(cfg)
        except (OSError, ValueError, RuntimeError, KeyError, ImportError) as err:  # ImportError: a missing extra
            if os.environ.get("SIAMESE_DEBUG"):
                raise
            log.error("%s", err)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def _app(config_name: str, target: str):
    """A thin Hydra entry point: conf/<config_name>.yaml -> `siamese.commands.<target>(cfg)`,
    imported only when the command runs; user errors as one line."""

    @hydra.main(version_base="1.3", config_path=CONF, config_name=config_name)
    def main(cfg: DictConfig) -> None:
        module, _, name = target.rpartition(".")
        _friendly(getattr(importlib.import_module(f"siamese.commands.{module}"), name))(cfg)

    return main


# name: (config, "module.function" in siamese.commands, help, positional keys, fixed overrides)
COMMANDS = {
    "prepare": ("prepare", "data.prepare", "detect + align all of LFW into the training cache (resumable)", [], []),
    "data": ("lfw", "data.data", "fetch | check: get LFW (link a copy or download, MD5-checked), or check one",
             ["action", "root"], []),
    "teach": ("teach", "data.teach", "the distillation teacher's embedding of every LFW image (resumable) + "
              "its model dir", [], []),
    "detect": ("detect", "faces.detect", "faces in a photo/folder/video -> aligned crops + manifest.csv",
               ["input"], []),
    "collect": ("collect", "faces.collect", "capture your own face from a webcam/video into data/faces/NAME",
                ["source"], []),
    "train": ("train", "training.train", "train the Siamese network (resumes the same run if interrupted)", [], []),
    "unrestricted": ("unrestricted", "training.unrestricted", "View 2 unrestricted: 10 trainings, one per fold "
                     "(long)", [], []),
    "export": ("export", "training.export", "a run -> .keras, SavedModel, ONNX, TFLite + threshold + model card",
               ["run_dir"], []),
    "ensemble": ("ensemble", "training.ensemble", "several trained models -> one model dir (own thresholds)",
                 ["out"], []),
    "refinish": ("refinish", "training.refinish", "redo the last step of runs trained elsewhere, on this cache",
                 [], []),
    "evaluate": ("evaluate", "evaluation.evaluate", "LFW View 1 + View 2 10-fold (and your folder): metrics, "
                 "report, plots", ["model_path"], []),
    "calibrate": ("calibrate", "evaluation.calibrate", "fit a model's verify.json and cluster.json on unseen "
                  "LFW people", ["model_path"], []),
    "openset": ("recognize", "evaluation.openset", "open-set identification on unseen LFW people: top-1/5, "
                "DIR@FAR", [], []),
    "bench": ("bench", "evaluation.bench", "detect|verify|embed|clips|cluster|cluster-scale|gallery|degraded:"
              " speed and quality tables", ["what"], []),
    "cluster": ("cluster", "people.cluster", "group the faces of photos / a video by person -> OUT/person_NNN/",
                ["input"], []),
    "gallery": ("gallery", "people.gallery", "known faces in SQLite: add|import|list|remove|reembed|calibrate",
                ["action", "path"], []),
    "enroll": ("gallery", "people.gallery", "enrol a person: camera/video/photos -> the gallery (= gallery add)",
               ["path"], ["action=add"]),
    "verify": ("verify", "people.verify", "live: is the enrolled person there? VERIFIED/UNVERIFIED per face",
               ["source"], []),
    "recognize": ("recognize", "people.recognize", "who is in these photos? a name or 'unknown' per face",
                  ["input"], []),
}


def _rewrite(args: list[str], positional: list[str]) -> list[str]:
    """`INPUT --out DIR k=v` -> `input=INPUT out=DIR k=v` (Hydra overrides pass through)."""
    out, pos = [], list(positional)
    it = iter(args)
    for a in it:
        if a.startswith("--") and "=" not in a and a not in ("--help", "--cfg", "--info",
                                                                "--multirun", "--resolve"):
            key = a[2:].replace("-", "_")
            out.append(f"{key}={_quote(next(it, ''))}")
        elif a.startswith("--") and "=" in a and not a.startswith("--config"):
            k, v = a[2:].split("=", 1)
            out.append(f"{k.replace('-', '_')}={_quote(v)}")
        elif "=" not in a and not a.startswith("-") and pos:
            out.append(f"{pos.pop(0)}={_quote(a)}")
        else:
            out.append(a)
    return out


def _quote(value: str) -> str:
    # Paths with spaces, commas or brackets would otherwise be parsed by Hydra's grammar.
    if any(c in value for c in " ,[]{}()='\"\\:$"):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return value


def main(argv: list[str] | None = None) -> None:
    """`siamese COMMAND ...` — see `siamese --help`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help", "help"):
            print(f"siamese: unknown command {argv[0]!r}\n", file=sys.stderr)
        print("usage: siamese COMMAND [ARGS] [key=value ...]   (Hydra overrides; add --cfg job "
              "to print the config)\n\ncommands:")
        for name, (_, _, help_, pos, _) in COMMANDS.items():
            print(f"  {name:<13} {' '.join(p.upper() for p in pos):<12} {help_}")
        sys.exit(0 if not argv or argv[0] in ("-h", "--help", "help") else 2)
    config, target, _, positional, fixed = COMMANDS[argv[0]]
    sys.argv = [f"siamese {argv[0]}", *fixed, *_rewrite(argv[1:], positional)]
    _app(config, target)()


if __name__ == "__main__":
    main()
