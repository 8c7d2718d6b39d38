"""Command-line entry points: thin Hydra mains over plain functions the tests import.

`siamese COMMAND [ARGS] [key=value ...]` dispatches to one Hydra app per command; each app's
config is `conf/COMMAND.yaml` and any Hydra override can follow. Positional conveniences
(`siamese detect PHOTOS --out DIR`) are rewritten into the equivalent overrides.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("siamese")

# Absolute: a relative config_path is looked up as a Python package, found only from the repo root.
CONF = str(Path(__file__).resolve().parents[1] / "conf")


def prepare(cfg: DictConfig) -> dict:
    """Build (or resume) the aligned LFW face cache; returns its stats."""
    from siamese import cache
    from siamese.data import LFW

    stats = cache.build(LFW(cfg.data.root), cfg.cache_dir,
                        OmegaConf.to_container(cfg.detector, resolve=True),
                        size=cfg.align.size, padding=cfg.align.padding, workers=cfg.workers,
                        limit=cfg.limit, progress=cfg.progress)
    print(f"LFW cache {cfg.cache_dir}: {stats['detected']}/{stats['images']} central faces "
          f"detected ({100 * stats['detection_rate']:.2f} %), {stats['fallback']} fallback, "
          f"{stats['errors']} errors, {stats['seconds']} s")
    return stats


def detect(cfg: DictConfig) -> dict:
    """Detect and align every face in `cfg.input` into `cfg.out`; returns the summary."""
    from hydra.utils import instantiate

    from siamese.pipeline import detect_folder

    summary = detect_folder(cfg.input, cfg.out, instantiate(cfg.detector), size=cfg.align.size,
                            padding=cfg.align.padding, save_crops=cfg.save_crops,
                            every_s=cfg.every_s, overwrite=cfg.overwrite, progress=cfg.progress)
    print(f"{summary['faces']} faces from {summary['sources']} source(s) -> {cfg.out}/manifest.csv "
          f"({summary['sources_without_face']} without a face, {summary['errors']} skipped "
          f"{summary['errors_by_reason'] or ''})")
    return summary


def collect(cfg: DictConfig) -> dict:
    """Capture aligned crops of `cfg.person` from `cfg.source` into `cfg.out_root/<person>/`."""
    from hydra.utils import instantiate

    from siamese.pipeline import collect as run

    r = run(cfg.source, cfg.person, cfg.out_root, instantiate(cfg.detector), count=cfg.count,
            every_s=cfg.every_s, size=cfg.align.size, padding=cfg.align.padding,
            min_size=cfg.min_size, min_frontal=cfg.min_frontal, progress=cfg.progress)
    print(f"kept {r['kept']} faces of {cfg.person} in {r['dir']} from {r['frames']} frames "
          f"({r['skipped_no_face']} without a face, {r['skipped_many_faces']} with no single clear "
          f"face, {r['skipped_small']} too small, {r['skipped_profile']} in profile)")
    return r


def train(cfg: DictConfig) -> dict:
    """Train (or resume) the Siamese network in `cfg.run_dir`; returns the test metrics."""
    from siamese.train import train as run

    metrics = run(cfg, cfg.run_dir)
    t = metrics["test"]
    print(f"{cfg.run_dir}: {cfg.protocol} test accuracy {t['accuracy']:.4f} (AUC {t['auc']:.4f}, "
          f"threshold {t['threshold']:.3f} from validation), best epoch {metrics['best_epoch']}, "
          f"{metrics['train_minutes']} min, peak {metrics['peak_memory_mb']} MB")
    return metrics


def unrestricted(cfg: DictConfig) -> dict:
    """Train one model per View 2 fold (without that fold's people) and report mean +- std."""
    import json

    import numpy as np

    from siamese.images import atomic_write_text
    from siamese.train import train as run

    folds = []
    for k in cfg.folds:
        fold_cfg = cfg.copy()
        fold_cfg.fold, fold_cfg.protocol = int(k), "view2"
        m = run(fold_cfg, Path(cfg.run_dir) / f"fold{k}")
        folds.append({"fold": int(k), **m["test"]})
        print(f"fold {k}: accuracy {m['test']['accuracy']:.4f} (AUC {m['test']['auc']})")
    acc = np.array([f["accuracy"] for f in folds])
    result = {"protocol": "view2 unrestricted", "accuracy_mean": round(float(acc.mean()), 4),
              "accuracy_std": round(float(acc.std()), 4), "folds": folds}
    atomic_write_text(Path(cfg.run_dir) / "unrestricted.json", json.dumps(result, indent=2))
    print(f"View 2 unrestricted over {len(folds)} folds: accuracy {result['accuracy_mean']:.4f} "
          f"± {result['accuracy_std']:.4f} -> {cfg.run_dir}/unrestricted.json")
    return result


def evaluate(cfg: DictConfig, out_dir: str | None = None) -> dict:
    """Evaluate `cfg.model` on the chosen LFW protocols and/or a folder; returns metrics."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from siamese import cache
    from siamese.data import LFW
    from siamese.evaluate import evaluate as run
    from siamese.evaluate import seen_people
    from siamese.export import Embedder

    out_dir = out_dir or HydraConfig.get().runtime.output_dir
    embedder = Embedder.load(cfg.model_path)
    lfw = fc = None
    if cfg.protocols:
        lfw, fc = LFW(cfg.data.root), cache.load(cfg.cache_dir)
        want = embedder.meta.get("alignment", {}).get("padding", 0.0)
        if fc.config["padding"] != want:
            raise ValueError(f"{cfg.cache_dir}: faces aligned with padding {fc.config['padding']}, "
                             f"the model expects {want} — build a matching cache (align.padding={want})")
    metrics = run(embedder, out_dir, lfw=lfw, fc=fc, protocols=list(cfg.protocols),
                  folder_root=cfg.folder, detector=instantiate(cfg.detector) if cfg.folder else None,
                  n_pairs=cfg.n_pairs, seed=cfg.seed, seen=seen_people(Path(cfg.model_path)),
                  model_name=str(cfg.model_path))
    from siamese.plots import training_curves

    model_path = Path(cfg.model_path)
    run_dir = model_path.parent if model_path.name == "model" else model_path
    if training_curves(run_dir / "log.csv", Path(out_dir) / "curves.png"):  # a training run's
        print(f"training curves: {out_dir}/curves.png")
    for name, r in metrics["results"].items():
        if "accuracy_mean" in r:
            print(f"{name}: accuracy {r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f} (10-fold) on "
                  f"{r['pairs']} pairs, {r['refused_pairs']} refused (people seen in training)")
        else:
            print(f"{name}: accuracy {r['accuracy']:.4f} at threshold {r['threshold']:.3f}, AUC {r['auc']}, "
                  f"EER {r['eer']}, TAR@FAR1e-3 {r['tar_at_far_1e-3']}, on {r['pairs']} pairs"
                  + (f", {r['refused_pairs']} refused" if r.get("refused_pairs") else ""))
    print(f"report: {out_dir}/report.md")
    return metrics


def export(cfg: DictConfig) -> dict:
    """Export a trained run to .keras, SavedModel, ONNX and TFLite with its model card."""
    from siamese.export import export_from_config

    paths = export_from_config(cfg)
    for fmt, path in paths.items():
        print(f"{fmt:<11} {path}")
    return paths


def cluster(cfg: DictConfig) -> dict:
    """Group the faces of a photo folder or a video by person into `cfg.out/person_NNN/`."""
    from siamese.cluster import cluster_from_config

    return cluster_from_config(cfg)


def enroll(cfg: DictConfig) -> dict:
    """Enrol `cfg.person` for verification from a camera, video, photo or folder."""
    from siamese.enrolled import enroll_from_config

    return enroll_from_config(cfg)


def verify(cfg: DictConfig) -> dict:
    """Is the enrolled person in front of `cfg.source`? A window, or verify.mp4 + verify.jsonl."""
    from siamese.verify import verify as run

    return run(cfg)


def gallery(cfg: DictConfig) -> dict:
    """Add, import, list, remove, re-embed or calibrate the SQLite gallery of known faces."""
    from siamese.enrol import gallery_command

    return gallery_command(cfg)


def recognize(cfg: DictConfig) -> dict:
    """Name every face in `cfg.input` against the gallery, or "unknown"; one line per face."""
    from siamese.recognize import recognize_command

    return recognize_command(cfg)


def openset(cfg: DictConfig) -> dict:
    """Open-set identification on unseen LFW people (or a folder); writes open_set.json."""
    from siamese.openset import open_set_command

    return open_set_command(cfg)


def bench(cfg: DictConfig) -> list[dict]:
    """Time detection per image and report the LFW cache build; prints a table."""
    from siamese.bench import run

    return run(cfg)


def _friendly(fn):
    """Turn the errors a user can fix (bad paths, bad files, bad settings) into one line.

    Set SIAMESE_DEBUG=1 to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(cfg):
        try:
            return fn(cfg)
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            if os.environ.get("SIAMESE_DEBUG"):
                raise
            log.error("%s", err)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def _app(config_name: str, fn):
    """A thin Hydra entry point: conf/<config_name>.yaml -> `fn(cfg)`, user errors as one line."""

    @hydra.main(version_base="1.3", config_path=CONF, config_name=config_name)
    def main(cfg: DictConfig) -> None:
        _friendly(fn)(cfg)

    main.__name__ = f"{fn.__name__}_main"
    return main


COMMANDS = {
    "prepare": (_app("prepare", prepare), "detect + align all of LFW into the training cache (resumable)", []),
    "detect": (_app("detect", detect), "faces in a photo/folder/video -> aligned crops + manifest.csv",
               ["input"]),
    "collect": (_app("collect", collect), "capture your own face from a webcam/video into data/faces/NAME",
                ["source"]),
    "train": (_app("train", train), "train the Siamese network (resumes the same run if interrupted)", []),
    "evaluate": (_app("evaluate", evaluate), "LFW View 1 + View 2 10-fold (and your folder): metrics, report, plots",
                 ["model_path"]),
    "unrestricted": (_app("unrestricted", unrestricted), "View 2 unrestricted: 10 trainings, one per fold (long)", []),
    "export": (_app("export", export), "a run -> .keras, SavedModel, ONNX, TFLite + threshold + model card",
               ["run_dir"]),
    "cluster": (_app("cluster", cluster), "group the faces of photos / a video by person -> OUT/person_NNN/",
                ["input"]),
    "enroll": (_app("enroll", enroll), "enrol a person: camera/video/photos -> data/enrolled/NAME", ["source"]),
    "verify": (_app("verify", verify), "live: is the enrolled person there? VERIFIED/UNVERIFIED per face",
               ["source"]),
    "gallery": (_app("gallery", gallery), "known faces in SQLite: add|import|list|remove|reembed|calibrate",
                ["action", "path"]),
    "recognize": (_app("recognize", recognize), "who is in these photos? a name or 'unknown' per face", ["input"]),
    "openset": (_app("recognize", openset), "open-set identification on unseen LFW people: top-1/5, DIR@FAR", []),
    "bench": (_app("bench", bench), "detection ms per image and LFW cache build time", []),
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
        for name, (_, help_, pos) in COMMANDS.items():
            print(f"  {name:<13} {' '.join(p.upper() for p in pos):<12} {help_}")
        sys.exit(0 if not argv or argv[0] in ("-h", "--help", "help") else 2)
    fn, _, positional = COMMANDS[argv[0]]
    sys.argv = [f"siamese {argv[0]}", *_rewrite(argv[1:], positional)]
    fn()


if __name__ == "__main__":
    main()
