"""Train the Siamese network: `make train` / `siamese train`.

    LFW cache (aligned crops) -> training people of the protocol -> hold out some people for
    validation -> pairs (anchor/positive, anchor/negative; hard negatives later) -> augment ->
    embedding + head -> fit -> best model by validation accuracy -> View 1 / fold test

Objective: each image's embedding is trained as a classifier over the training identities with
a cosine margin (CosFace), which gives an embedding that separates people never seen; the L1
head learns P(same) from the pairs with binary cross-entropy. Both losses reach the embedding.

Resuming: the run dir is named by the config (not the time), every epoch saves the whole
training state (`last.keras`, optimizer included, and `state.json`), and each batch is drawn
from a generator seeded by (seed, epoch, batch), so running the same command after a kill
continues exactly where the last finished epoch left off.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from siamese.data import cache
from siamese.data.lfw import LFW, protocol_split
from siamese.data.sampling import FaceSet, add_people, fixed_pairs, split_people
from siamese.eval.calibration import calibrate_clustering
from siamese.eval.metrics import best_threshold, summary
from siamese.eval.plots import training_curves
from siamese.faces.align import resize_faces
from siamese.faces.capture import read_face_folders
from siamese.io.files import atomic_write_text
from siamese.io.names import BadSetting
from siamese.model.dlib_resnet import LICENCE, identity
from siamese.model.embedder import Embedder
from siamese.train.distribution import setup
from siamese.train.teacher_data import with_teacher

log = logging.getLogger(__name__)


def load_faces(cfg: DictConfig, fc: cache.FaceCache, people: list[str]) -> FaceSet:
    """The cached faces of `people` at the model's input size, labelled by person."""
    wanted = set(people)
    rows = [i for i, r in enumerate(fc.refs) if r.person in wanted]
    names = sorted({fc.refs[i].person for i in rows})
    index = {n: k for k, n in enumerate(names)}
    labels = np.array([index[fc.refs[i].person] for i in rows], np.int64)
    return FaceSet(resize_faces(fc.images[rows], cfg.model.input_size), labels, names,
                   rows=np.array(rows, np.int64))


def protocol_data(cfg: DictConfig, rng: np.random.Generator):
    """The faces of a run: (cache, training people, test pairs, training FaceSet, validation
    FaceSet, validation pairs (images, (n, 2) rows, (n,) same)). The validation people are drawn
    with `rng` (seeded by cfg.seed), so a run and its re-finishing hold out the same people."""
    lfw = LFW(cfg.data.root)
    fc = cache.load(cfg.cache_dir)
    people, test_pairs = protocol_split(lfw, cfg.protocol, cfg.fold)
    everyone = load_faces(cfg, fc, people)
    train_people, val_people = split_people(everyone.names, everyone.counts, cfg.val_fraction, rng)
    faces, val_faces = everyone.subset(train_people), everyone.subset(val_people)
    val_idx = fixed_pairs(val_faces, cfg.val_pairs, cfg.seed)
    val = (val_faces.images, val_idx[:, :2], val_idx[:, 2].astype(bool))
    return fc, people, test_pairs, faces, val_faces, val


def _mixed_precision(setting: str) -> str:
    import keras

    if setting == "auto":
        setting = "mixed_float16" if _has_gpu() else "float32"
    keras.mixed_precision.set_global_policy(setting)
    return setting


def _has_gpu() -> bool:
    import keras

    backend = keras.config.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return jax.devices()[0].platform == "gpu"
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # a backend that cannot even list devices has no usable GPU
        return False
    return False


# --- the job ------------------------------------------------------------------------------
def _training_faces(cfg: DictConfig, faces: FaceSet) -> FaceSet:
    """The protocol's training faces, cut to `limit_people` (smoke runs) and with the user's own
    captured people (`own_faces`, from `siamese collect`) added."""
    if cfg.limit_people:
        faces = faces.subset(faces.names[: cfg.limit_people])
    if cfg.own_faces:
        own, own_names = read_face_folders(cfg.own_faces, cfg.model.input_size)
        faces = add_people(faces, own, own_names, prefix="own:")
        log.info("mixed in %d own faces of %d people from %s", len(own), len(set(own_names)), cfg.own_faces)
    return faces


def _new_trainer(cfg: DictConfig, classes: int, steps: int):
    """The training graph (`siamese.model.networks.build_trainer`), compiled: AdamW with a warm-up
    then cosine decay, CosFace on each image and BCE on the head's pair score, and when
    distilling the teacher terms (`siamese.model.losses`), each with its weight from the config."""
    import keras

    from siamese.model.losses import TeacherCosine, TeacherNeighbours, TeacherRelations  # Keras
    from siamese.model.networks import build_embedding, build_head, build_trainer  # Keras

    m, tc, dc = cfg.model, cfg.train, cfg.get("distill")
    neighbours = bool(dc) and dc.get("nbr_weight", 0.0) > 0
    embedding = build_embedding(m.input_size, m.dim, m.backbone, m.widths, m.blocks, m.dropout)
    trainer = build_trainer(embedding, build_head(m.dim), classes, tc.cosface_scale, tc.cosface_margin,
                            distill=bool(dc), head_trains_embedding=tc.get("head_trains_embedding", True),
                            neighbours=neighbours)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, steps * (tc.epochs - tc.warmup_epochs)), alpha=0.01,
        warmup_target=tc.lr, warmup_steps=steps * tc.warmup_epochs)
    loss = {"id_a": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "id_b": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "same": keras.losses.BinaryCrossentropy()}
    weights = {"id_a": tc.id_weight, "id_b": tc.id_weight, "same": tc.pair_weight}
    if dc:
        loss.update(emb_a=TeacherCosine(), emb_b=TeacherCosine(), embs=TeacherRelations(dc.get("over_weight", 0.0)))
        weights.update(emb_a=dc.cos_weight / 2, emb_b=dc.cos_weight / 2, embs=dc.rel_weight)
        if neighbours:
            loss["nbrs"], weights["nbrs"] = TeacherNeighbours(dc.get("nbr_tau", 0.1)), dc.nbr_weight
    trainer.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=tc.weight_decay),
                    loss=loss, loss_weights=weights)
    return trainer


def _resume(cfg: DictConfig, run_dir: Path) -> tuple[object | None, dict]:
    """(the saved trainer, its state) when `run_dir` holds an unfinished or finished run of this
    config, else (None, {}). A run dir holding other model settings is refused."""
    import keras

    import siamese.model.losses  # noqa: F401  (Keras: registers the losses and layers a saved trainer names)

    state_path, last = run_dir / "state.json", run_dir / "last.keras"
    if not (state_path.exists() and last.exists()):
        return None, {}
    saved = OmegaConf.load(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else None
    if saved is not None and OmegaConf.to_container(saved.model) != OmegaConf.to_container(cfg.model):
        raise BadSetting(f"{run_dir} holds a run with other model settings ({saved.model}) — "
                         "choose another run_name=... (or delete that run dir)")
    state = json.loads(state_path.read_text())
    log.info("resuming %s after epoch %d", run_dir, state["epoch"])
    return keras.saving.load_model(last), state


def _keep_freed_memory() -> None:
    """Let glibc keep and reuse the memory TensorFlow frees every step instead of handing it back.

    Each step allocates activation buffers of 100+ MB; by default glibc serves those with mmap and
    returns them with munmap, so every step zero-fills fresh pages: measured on 2 cores, half the
    CPU time went to the kernel (page faults) and an epoch of `+experiment=distill` took ~160 s;
    with mmap off and no trimming, 0 % kernel time and ~67 s. Linux/glibc only; elsewhere a no-op.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: never mmap; big blocks come from the heap and are reused
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: keep freed memory for the next step
    except (OSError, AttributeError):
        pass


def train(cfg: DictConfig, run_dir: str | os.PathLike) -> dict:
    """Train (or resume) into `run_dir`; returns the final metrics (also in metrics.json)."""
    import keras
    from hydra.utils import instantiate

    # Keras (and with it TensorFlow) only once training starts: the package imports without it.
    from siamese.train.batches import PairBatches
    from siamese.train.loop import Loop, should_stop, trim_log

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _keep_freed_memory()
    tc = cfg.train
    # Before anything is built: JAX's multi-host start must come first, and a distribution (JAX)
    # or strategy scope (TensorFlow) decides where each variable lives when it is created.
    dist = setup(tc.get("distribution", "none"), tc.batch_size)
    keras.utils.set_random_seed(cfg.seed)
    policy = _mixed_precision(cfg.mixed_precision)
    fc, people, test_pairs, faces, val_faces, val = protocol_data(cfg, np.random.default_rng(cfg.seed))
    split_rows, views_p, extra = faces.rows, 0.0, None
    faces = _training_faces(cfg, faces)
    if cfg.get("distill"):
        faces, views_p, extra = with_teacher(cfg, fc, faces, split_rows)
        if any("HorizontalFlip" in str(t.get("_target_", "")) for t in (cfg.augment or {}).get("transforms", [])):
            raise ValueError("distillation mirrors images itself (each view has its own teacher target): "
                             "use an augmentation without HorizontalFlip, e.g. augment=distill")
    log.info("protocol %s: %d training people (%d images), %d validation people, %d val pairs",
             cfg.protocol, len(faces.names), len(faces), len(val_faces.names), len(val[1]))
    steps = max(1, tc.pairs_per_epoch // tc.batch_size)
    with dist.scope():
        trainer, state = _resume(cfg, run_dir)
        if trainer is None:
            trainer, state = _new_trainer(cfg, len(faces.names), steps), {"epoch": 0}
            if dist.writes:
                atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    augment = instantiate(cfg.augment, _convert_="all") if cfg.augment else None
    outputs = tuple(trainer.output_names) if hasattr(trainer, "output_names") else ("id_a", "id_b", "same")
    data = PairBatches(faces, tc.batch_size, steps, cfg.seed, augment, tc.hard_share,
                       workers=tc.get("workers", 1), outputs=outputs, part=dist.part, views_p=views_p,
                       extra_p=cfg.distill.get("extra_p", 0.0) if cfg.get("distill") else 0.0)
    if dist.writes:  # what the model learned from, for its card (`finish`); none left from another config
        if extra:
            atomic_write_text(run_dir / "extra_faces.json", json.dumps(extra, indent=2))
        else:
            (run_dir / "extra_faces.json").unlink(missing_ok=True)
    callbacks = [Loop(run_dir, data, val, state, cfg, writes=dist.writes)]  # it writes log.csv too
    if dist.writes:
        trim_log(run_dir / "log.csv", state["epoch"])
    if dist.writes and keras.config.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
    if not (state.get("finished") or state["epoch"] >= tc.epochs or should_stop(state, tc)):
        trainer.fit(data, epochs=tc.epochs, initial_epoch=state["epoch"], callbacks=callbacks,
                    verbose=1 if sys.stdout.isatty() else 2)
    if not dist.writes:  # process 0 saved the checkpoints and finishes the run alone
        return {"process_index": dist.process_index, "epochs_run": state["epoch"], "distribution": dist.info()}
    if dist.kind != "none" and keras.config.backend() == "jax":
        keras.distribution.set_distribution(None)  # the model's parts are scored on one device
    state["finished"] = True
    atomic_write_text(run_dir / "state.json", json.dumps(state, indent=2))
    save_parts(run_dir)
    return finish(cfg, run_dir, fc, val, test_pairs, state, policy, seen=people, validation=val_faces,
                  distribution=dist.info())


def save_parts(run_dir: Path) -> None:
    """best.keras (the whole trainer) -> run_dir/model/{embedding,head}.keras in float32.

    Float32 whatever the training policy: thresholds and test numbers then come from the model
    users load (a mixed-precision run's float16/bfloat16 scores would give a slightly different,
    quantised threshold), CPUs run it fastest, and export expects it."""
    import keras

    from siamese.model.networks import float32_clone  # Keras; registers the custom layers
    from siamese.train.loop import save

    best = keras.saving.load_model(run_dir / "best.keras", compile=False)  # no optimizer needed
    model_dir = run_dir / "model"
    model_dir.mkdir(exist_ok=True)
    for part in ("embedding", "head"):
        save(float32_clone(best.get_layer(part)), model_dir / f"{part}.keras")


def _provenance(cfg, extra: dict | None = None) -> dict:
    """What a model learned from, in LFW's result categories: identity labels of LFW people only
    ("unrestricted, no outside data"), or also a teacher trained on other labelled faces, and with
    `extra` (the run's extra_faces.json) unlabelled faces from photos outside LFW."""
    if not cfg.get("distill"):
        return {"lfw_category": "unrestricted, no outside data",
                "training_data": f"LFW {cfg.protocol} training people (identity labels)"}

    teacher = {"name": "dlib_resnet_v1", "licence": LICENCE}
    try:
        teacher.update(identity())
    except ImportError:  # a GPU box training from cached targets without the teacher installed
        pass
    more = ""
    if extra:
        checked = (f"{extra['dropped']} more dropped as the teacher took them for a validation or test person, "
                   f"a guard catching {extra['guard']:.0%} of their photos" if extra["guard"] else
                   "not checked for LFW's validation and test people: its LFW figures are not test numbers")
        more = (f", and the teacher's embeddings of {extra['kept']} unlabelled faces from photos outside LFW "
                f"({extra['photos']}; {checked})")
    return {"lfw_category": "unrestricted, labeled outside data",
            "training_data": f"LFW {cfg.protocol} training people (identity labels) and a teacher's "
                             f"embeddings of their images (the teacher learned from ~3 M faces outside LFW){more}",
            **({"extra_faces": extra} if extra else {}),
            "distillation": {"teacher": teacher, "cos_weight": cfg.distill.cos_weight,
                             "rel_weight": cfg.distill.rel_weight,
                             "over_weight": cfg.distill.get("over_weight", 0.0),
                             "nbr_weight": cfg.distill.get("nbr_weight", 0.0),
                             "nbr_tau": cfg.distill.get("nbr_tau", 0.1),
                             "views_p": cfg.distill.get("views_p", 0.0),
                             "morphs_p": cfg.distill.get("morphs_p", 0.0)}}


def finish(cfg, run_dir: Path, fc, val, test_pairs, state: dict, policy: str,
           seen: list[str], validation: FaceSet, distribution: dict | None = None) -> dict:
    """The parts in run_dir/model (`save_parts`) -> threshold from validation, clustering
    settings from the validation people (cluster.json), test metrics, curves."""
    import keras

    from siamese.model.networks import embed, load_float32, pair_scores

    model_dir = run_dir / "model"
    embedding, head = (load_float32(model_dir / f) for f in ("embedding.keras", "head.keras"))

    images, idx, same = val
    emb = embed(embedding, images)
    thr, _ = best_threshold(pair_scores(head, emb[idx[:, 0]], emb[idx[:, 1]]), same)
    cached = set(fc.refs)
    usable = [p for p in test_pairs if p.a in cached and p.b in cached]
    if len(usable) < len(test_pairs):  # only a partial (smoke-test) cache lacks faces
        log.warning("%d of %d test pairs have faces missing from %s; scoring the rest",
                    len(test_pairs) - len(usable), len(test_pairs), cfg.cache_dir)
    test = cos = None  # protocol "all": every LFW person trained on, no pair left to test
    if usable:
        images, idx, same = fc.pair_faces(usable)
        emb = embed(embedding, resize_faces(images, cfg.model.input_size))
        test = summary(pair_scores(head, emb[idx[:, 0]], emb[idx[:, 1]]), same, threshold=thr)
        cos = summary((emb[idx[:, 0]] * emb[idx[:, 1]]).sum(1), same)  # for reference only
    card = {"input_size": cfg.model.input_size, "colour": "RGB", "range": "[0, 1] float32",
            "alignment": {"template": "arcface-5pt", "cache_size": fc.config["size"],
                          "padding": fc.config["padding"]},
            "threshold": thr, "threshold_from": "validation people held out of training",
            "flip_tta": True, **_provenance(cfg, json.loads((run_dir / "extra_faces.json").read_text())
                                            if (run_dir / "extra_faces.json").exists() else None)}
    atomic_write_text(model_dir / "model.json", json.dumps(card, indent=2))
    # Everyone the model saw (training + validation people): evaluation refuses test pairs of
    # these people, so a number can never come from faces the model was fitted on.
    atomic_write_text(model_dir / "people.json", json.dumps(
        {"protocol": cfg.protocol, "fold": cfg.fold, "dataset": "lfw", "seen": sorted(seen),
         "validation": list(validation.names)}))
    if len(validation.names) >= 2:

        try:
            calibrate_clustering(Embedder.load(model_dir, prefer=("keras",)),
                                 faces=validation.images, labels=validation.labels, overwrite=True)
        except ValueError as err:  # e.g. a smoke run's validation people, all single photos
            log.warning("no cluster.json: %s", err)
    metrics = {"protocol": cfg.protocol, "fold": cfg.fold if cfg.protocol == "view2" else None,
               "test": test, "test_cosine_best_threshold": cos,
               "best_epoch": state.get("best_epoch"), "epochs_run": state["epoch"],
               "best_val_acc": state.get("best_val_acc"),
               "train_minutes": round(state.get("train_seconds", 0) / 60, 1),
               "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               "backend": keras.config.backend(), "precision": policy,
               "distribution": distribution or {"kind": "none", "devices": 1, "processes": 1}}
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    training_curves(run_dir / "log.csv", run_dir / "curves.png")
    log.info("test: %s", test)
    return metrics
