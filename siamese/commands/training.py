"""`siamese train`, `unrestricted`, `export`, `ensemble`, `quantize`, `refinish`: making models."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from siamese.model.export import export as export_model
from siamese.model.export import run_card
from siamese.model.modeldir import find_model_dir
from siamese.train import refinish as refinishing
from siamese.train import trainer
from siamese.train import unrestricted as protocol
from siamese.train.ensemble import build
from siamese.train.int8 import quantize_model


def train(cfg: DictConfig) -> dict:
    """Train (or resume) the Siamese network in `cfg.run_dir`; returns the test metrics."""
    metrics = trainer.train(cfg, cfg.run_dir)
    if "test" not in metrics:  # a multi-host run's process > 0: process 0 saves and scores the model
        print(f"process {metrics['process_index']}: trained to epoch {metrics['epochs_run']}; process 0 "
              f"writes {cfg.run_dir}")
        return metrics
    t = metrics["test"]
    tested = (f"test accuracy {t['accuracy']:.4f} (AUC {t['auc']:.4f}, threshold {t['threshold']:.3f} from "
              "validation)" if t else "no test pairs (every LFW person was trained on)")
    print(f"{cfg.run_dir}: {cfg.protocol} {tested}, best epoch {metrics['best_epoch']} (validation accuracy "
          f"{metrics['best_val_acc']:.4f}), {metrics['train_minutes']} min, peak {metrics['peak_memory_mb']} MB"
          + _spread(metrics.get("distribution")))
    return metrics


def _spread(dist: dict | None) -> str:
    if not dist or dist["kind"] == "none":
        return ""
    hosts = f" on {dist['processes']} hosts" if dist["processes"] > 1 else ""
    return f", {dist['kind']} over {dist['devices']} devices{hosts}"


def unrestricted(cfg: DictConfig) -> dict:
    """Train one model per View 2 fold (without that fold's people) and report mean +- std."""
    result = protocol.unrestricted(cfg)
    for f in result["folds"]:
        print(f"fold {f['fold']}: accuracy {f['accuracy']:.4f} (AUC {f['auc']})")
    missing = f" (not run yet: folds {result['folds_missing']})" if result["folds_missing"] else ""
    print(f"View 2 unrestricted over {len(result['folds'])} folds: accuracy {result['accuracy_mean']:.4f} "
          f"± {result['accuracy_std']:.4f}{missing} -> {cfg.run_dir}/unrestricted.json")
    return result


def export(cfg: DictConfig) -> dict:
    """Export a trained run to .keras, SavedModel, ONNX and TFLite with its model card; out null
    means `<run dir>/export`."""
    src = find_model_dir(cfg.run_dir, exported=False)
    run = src.parent if src.name == "model" else src
    out = Path(cfg.out) if cfg.get("out") else run / "export"
    paths = export_model(src, out, formats=tuple(cfg.formats), card=run_card(run), overwrite=cfg.overwrite)
    for fmt, path in paths.items():
        print(f"{fmt:<11} {path}")
    return paths


def ensemble(cfg: DictConfig) -> dict:
    """Combine trained models into one ensemble dir with its own thresholds."""

    ens = build(cfg.out, list(cfg.models), cfg.data.root, cache_dir=cfg.cache_dir, overwrite=cfg.overwrite,
                copy_members=cfg.copy_members, precision=cfg.precision)
    print(f"{cfg.out}: {len(ens.members)} {cfg.precision} members, {ens.dim}-d, pair threshold "
          f"{ens.threshold:.3f}; cluster.json written")
    return {"out": str(cfg.out), "members": len(ens.members), "threshold": ens.threshold}


def quantize(cfg: DictConfig) -> list[dict]:
    """Fit a model's int8 network (each member's, for an ensemble) on faces of its training people."""
    rows = quantize_model(cfg.model_path, cfg.data.root, cache_dir=cfg.cache_dir, faces=cfg.faces,
                          seed=cfg.seed, overwrite=cfg.overwrite)
    for r in rows:
        c = r["closeness"]
        tail = (f"; on {c['faces']} validation faces int8 vs float32 cosine mean {c['cosine_mean']:.4f} "
                f"(min {c['cosine_min']:.4f}), {100 * c['decisions_changed']:.2f} % of {c['pairs']} pair "
                "decisions changed") if c else ""
        print(f"{r['model']}/quantization.json: ranges from {r['faces']} faces of {r['people']} training "
              f"people{tail}")
    return rows


def refinish(cfg: DictConfig) -> dict:
    """Redo the last step of runs trained on another machine (threshold, cluster.json, test numbers)."""

    out = {}
    for r in cfg.runs:
        m = refinishing.refinish(r, cfg.cache_dir, cfg.data.root)
        t = m["test"]
        print(f"{r}: {m['protocol']} test accuracy {t['accuracy']:.4f} (AUC {t['auc']:.4f}, threshold "
              f"{t['threshold']:.3f} from validation), best epoch {m['best_epoch']}")
        out[str(r)] = m
    return out
