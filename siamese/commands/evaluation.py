"""`siamese evaluate`, `calibrate`, `openset`, `bench`: measuring models and the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from siamese.commands import detector, output_dir, plain
from siamese.data import cache
from siamese.data.lfw import LFW
from siamese.eval import degraded
from siamese.eval.bench import clips
from siamese.eval.bench.clustering import compare_algorithms, scale
from siamese.eval.bench.detect import run as bench_detection
from siamese.eval.bench.embed_speed import embed_speed
from siamese.eval.bench.gallery import bench_gallery
from siamese.eval.bench.index import bench_cluster_parquet, bench_index
from siamese.eval.bench.table import table
from siamese.eval.bench.verify_speed import verify_speed
from siamese.eval.calibration import (
    calibrate_clustering,
    calibrate_impostors,
    calibrate_recognize,
    validation_embeddings,
)
from siamese.eval.evaluate import evaluate as run_evaluation
from siamese.eval.openset import open_set_folder, open_set_lfw
from siamese.eval.plots import training_curves
from siamese.eval.verify_calibration import calibrate as fit_verification
from siamese.io.files import atomic_write_text
from siamese.io.paths import CONF_DIR
from siamese.model.embedder import Embedder


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate `cfg.model_path` on the chosen LFW protocols and/or a folder; returns metrics."""
    out_dir = output_dir(cfg)
    embedder = Embedder.load(cfg.model_path)
    print(f"evaluating {embedder.path} ({embedder.format}) -> writing to {out_dir}", flush=True)
    lfw, fc = (LFW(cfg.data.root), cache.load(cfg.cache_dir)) if cfg.protocols else (None, None)
    metrics = run_evaluation(embedder, out_dir, lfw=lfw, fc=fc, protocols=list(cfg.protocols),
                             folder_root=cfg.folder, detector=detector(cfg) if cfg.folder else None,
                             n_pairs=cfg.n_pairs, seed=cfg.seed, seen=embedder.seen_people(),
                             model_name=str(cfg.model_path))
    model_path = Path(cfg.model_path)
    run_dir = model_path.parent if model_path.name == "model" else model_path
    if training_curves(run_dir / "log.csv", out_dir / "curves.png"):  # a training run's
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


def calibrate(cfg: DictConfig) -> dict:
    """Fit a model's verification threshold (verify.json) and clustering settings (cluster.json)."""
    embedder = Embedder.load(cfg.model_path)
    out = {}
    if "verify" in cfg.fit:
        v = cfg.verification
        r = fit_verification(embedder, cfg.data.root, cache_dir=cfg.cache_dir, n_enroll=v.n_enroll,
                             far=v.far, repeats=v.repeats, seed=cfg.seed, rule=v.rule, overwrite=cfg.overwrite)
        print(f"{embedder.path}/verify.json: {r['rule']} rule, verification threshold "
              f"{r['verification_threshold']:.3f} ({r['criterion']}): accuracy {r['accuracy']:.4f}, TAR "
              f"{r['tar']:.4f}, FAR {r['far']:.4f} on {r['people']} unseen people")
        if "by_enrolled" in r:  # the template rule's cut for fewer enrolled images (same probes)
            print("  cut by enrolled images: " + ", ".join(f"{n}: {f['threshold']:.2f} (TAR {f['tar']:.3f}, FAR "
                                                           f"{f['far']:.4f})" for n, f in r["by_enrolled"].items()))
        for name, row in r["rules"].items():  # both rules on the same probes
            at = row["at_tar_0.97"]
            print(f"  {name:8s} chosen {row['chosen']['threshold']:.3f}: TAR {row['chosen']['tar']:.4f} FAR "
                  f"{row['chosen']['far']:.4f}; lowest FAR with TAR >= 0.97: "
                  + (f"{at['far']:.4f} (TAR {at['tar']:.4f} at {at['threshold']:.3f})" if at else "none"))
            for what, h in row["held_out"].items():  # each cut fitted on half the people, scored on the rest
                if h:
                    print(f"    held out ({what}, {h['splits']} halves): TAR {h['tar']['mean']:.4f} ± "
                          f"{h['tar']['std']:.4f}, FAR {h['far']['mean']:.4f} ± {h['far']['std']:.4f}")
        out["verify"] = r
    # The validation people, embedded once for clustering and 1:N alike (a degraded clustering fit embeds
    # its own: it keeps only the photos it could make harder).
    val, described = {}, {}
    if {"cluster", "recognize"} <= set(cfg.fit) and not cfg.cluster.degraded:
        emb, names, _ = validation_embeddings(embedder, embedder.validation_people(), cfg.data.root,
                                              cache_dir=cfg.cache_dir)
        val = {"embeddings": emb, "labels": names}
        described = {**val, "data": "LFW validation people (held out of training)"}
    if "cluster" in cfg.fit:
        r = calibrate_clustering(embedder, cfg.data.root, cache_dir=cfg.cache_dir, overwrite=cfg.overwrite,
                                 degraded=cfg.cluster.degraded, seed=cfg.seed, halvings=cfg.cluster.halvings,
                                 centre=OmegaConf.to_container(cfg.cluster.centre) if cfg.cluster.centre else None,
                                 refits_recognize="recognize" in cfg.fit, **described)
        print(f"{embedder.path}/cluster.json: threshold {r['threshold']:.3f}, floor {r['floor']:.3f} -> "
              f"BCubed F1 {r['bcubed_f1']:.4f} on {r['people']} validation people ({r['faces']} faces)")
        if "held_out" in r:
            h = r["held_out"]
            print(f"  held out ({h['space']}: fitted on half the people, scored on the rest, {h['halvings']} "
                  f"halvings both ways): BCubed F1 {h['bcubed_f1']:.4f} ± {h['std']:.4f}")
        if "centring" in r:
            c = r["centring"]
            tried = (" held out: " + ", ".join(f"{key} {v:.4f}" for key, v in c["held_out"].items()) + ";"
                     if "held_out" in c else "")
            print(f"  local centring (k {c['k']}, gamma {c['gamma']}):{tried} BCubed F1 {c['centred']:.4f} centred "
                  f"vs {c['plain']:.4f} plain in-sample -> {'centred' if c['chosen'] else 'plain'} "
                  "(agglomerative, average)")
        if "degraded" in r:
            d = r["degraded"]
            print(f"  fitted for degraded copies too: BCubed F1 {d['bcubed_f1_clean']:.4f} clean / "
                  f"{d['bcubed_f1_degraded']:.4f} degraded, false merges {d['false_merge_clean']:.4f} / "
                  f"{d['false_merge_degraded']:.4f}")
        for name, a in r["algorithms"].items():
            fitted = ", ".join(f"{k} {v}" for k, v in a.items() if k not in ("bcubed_f1", "grid"))
            print(f"  {name}: {fitted} -> BCubed F1 {a['bcubed_f1']:.4f}")
        out["cluster"] = r
    if "recognize" in cfg.fit:
        rc = calibrate_recognize(embedder, cfg.data.root, cache_dir=cfg.cache_dir, overwrite=cfg.overwrite,
                                 seed=cfg.seed, gammas=list(cfg.recognize.gammas), margin=cfg.recognize.margin,
                                 halvings=cfg.recognize.halvings, **val)
        if rc is None:
            print(f"{embedder.path}/cluster.json: not locally centred — no 1:N gamma to fit (method centred uses nn)")
        else:
            tried = ", ".join(f"gamma {g} {v:.3f}" for g, v in rc["dir_at_far_1pct"].items())
            print(f"{embedder.path}/cluster.json: 1:N method centred, DIR at FAR 1 % on {rc['halvings']} halvings of "
                  f"{rc['people']} validation people: {tried} -> gamma {rc['gamma']}")
        out["recognize"] = rc
    if "impostors" in cfg.fit:
        b = cfg.impostors
        r = calibrate_impostors(embedder, cfg.data.root, cache_dir=cfg.cache_dir, people=b.people,
                                degraded=b.degraded, seed=cfg.seed, overwrite=cfg.overwrite)
        print(f"{embedder.path}/impostors.npy: {r['impostors']} stranger faces of {r['people']} unseen LFW people "
              "(galleries calibrate on them when no LFW copy is at hand)")
        out["impostors"] = r
    return out


def openset(cfg: DictConfig) -> dict:
    """Open-set identification on unseen LFW people (or a folder); writes open_set.json."""
    o, embedder = cfg.open_set, Embedder.load(cfg.model_path)
    print(f"open set with {embedder.path} -> writing to {output_dir(cfg)}", flush=True)
    kw = dict(seed=o.seed, gallery_per_person=o.gallery_per_person, unknown_share=o.unknown_share,
              far_target=cfg.far_target, shortlist=cfg.shortlist)
    if o.dataset == "lfw":
        r = open_set_lfw(embedder, cfg.data.root, cfg.calibration.cache_dir, detector(cfg), **kw)
    else:
        r = open_set_folder(embedder, detector(cfg), o.dataset, **kw)
    print(f"{r['data']}: {r['gallery_people']} people enrolled ({r['gallery_faces']} faces), "
          f"{r['known_probes']} known probes, {r['unknown_test']} unknown people tested "
          f"(+{r['unknown_calibration']} calibrating), seed {r['seed']}")
    cols = list(max(r["methods"].values(), key=len))  # svc has no model-threshold columns
    print(table([{"method": f"{m} *" if m == cfg.method else m, **v} for m, v in r["methods"].items()],
                ["method", *cols]))
    print(f"* the method `siamese recognize` uses (method={cfg.method})")
    out = output_dir(cfg) / "open_set.json"
    atomic_write_text(out, json.dumps(r, indent=2))
    print(f"-> {out}")
    return r


def bench(cfg: DictConfig):
    """`siamese bench detect|verify|embed|clips|cluster|cluster-scale|gallery|degraded|serve|index|cluster-parquet`:
    a benchmark table."""
    what = cfg.what
    if what == "detect":
        from hydra.utils import instantiate

        detectors = {n: instantiate(OmegaConf.load(CONF_DIR / "detector" / f"{n}.yaml")) for n in cfg.detectors}
        return bench_detection(cfg.data.root, detectors, cfg.images, cfg.seed, cfg.cache_dir)
    if what == "verify":
        return verify_speed(model_path=cfg.model_path)
    if what == "cluster":
        c = cfg.cluster
        return compare_algorithms(cfg.model_path, cfg.cache_dir, cfg.data.root, c.min_images, c.max_images)
    if what == "cluster-scale":
        c = cfg.cluster
        scorers = ("cosine",) if c.algorithm == "agglomerative" else ("cosine", "head")
        return scale(tuple(plain(c.sizes)), c.algorithm, scorers, cfg.model_path)
    if what == "gallery":
        g = cfg.gallery
        return bench_gallery(g.n, g.per_person, g.add_people, g.queries, cfg.model_path)
    if what == "index":
        i = cfg.index
        return bench_index(i.images, i.num_cpus, i.shard_size, cfg.data.root, cfg.seed, cfg.model_path,
                           tuple(plain(i.modes)))
    if what == "cluster-parquet":
        return bench_cluster_parquet(tuple(plain(cfg.index.faces)), seed=cfg.seed)
    if what == "serve":
        from siamese.service.bench import bench_serve  # httpx: the serve extra

        s = cfg.serve
        return bench_serve(s.requests, s.concurrency, s.workers, cfg.model_path)
    if what == "clips":
        return clips.report(cfg.model_path)
    if what == "embed":
        return embed_speed([str(m) for m in cfg.embed.models] or [str(cfg.model_path)], cfg.data.root,
                           cache.load(cfg.cache_dir), cfg.embed.faces)
    if what == "degraded":
        d = cfg.degraded
        r = degraded.report(Embedder.load(cfg.model_path), LFW(cfg.data.root), cache.load(cfg.cache_dir),
                            d.people, d.per_person, d.far_target, cfg.seed)
        print(f"{r['model']}: {r['faces']} faces of {r['people']} unseen LFW people, each also degraded "
              "(small, jpeg 30, blur, grey, light in turn); false accepts of each calibrated threshold:")
        print(table(degraded.rows(r)))
        v = r["verification"]
        print(f"verification ({v['same_pairs']} same-person, {v['different_pairs']} different-person pairs):")
        print(table([{"pairs": k.replace("_", " "), **v[k]} for k in ("clean", "clean_vs_degraded", "degraded")]))
        out = output_dir(cfg) / "degraded.json"
        atomic_write_text(out, json.dumps(r, indent=2))
        print(f"-> {out}")
        return r
    raise ValueError(f"bench {what!r}: choose detect, verify, embed, clips, cluster, cluster-scale, gallery, "
                     "degraded, serve, index or cluster-parquet")
