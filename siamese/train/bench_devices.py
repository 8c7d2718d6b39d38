"""Training speed on 1 device against all of a machine's (`tools/bench_train_devices.py`).

The real training graph of a train config (`trainer._new_trainer`) and its batches
(`PairBatches`, with the config's augmentation), on random faces: the speed does not depend on
whose faces they are, so no face cache is needed. Each row builds a fresh model under
`train.distribution=data_parallel` over its devices, runs `warmup` steps (compiling), then
times `steps` more. Rows: 1 device at the config's batch; all devices at the same global batch
(strong scaling: the same training, faster?) and at the same batch per device (weak scaling: N
times the batch in one step, the usual way to use N GPUs).
"""

from __future__ import annotations

import time

import numpy as np
from omegaconf import DictConfig

from siamese.data.sampling import FaceSet
from siamese.train.batches import PairBatches
from siamese.train.distribution import device_count, setup
from siamese.train.trainer import _new_trainer

__all__ = ["compare", "images_per_second"]


def images_per_second(cfg: DictConfig, devices: int | None, batch_size: int, steps: int = 20,
                      warmup: int = 3, people: int = 500) -> dict:
    """One row: training images per second on the first `devices` devices (None: all).

    Args:
        cfg: a composed train config (model, train, augment).
        devices: how many devices to spread over; None: every device there is.
        batch_size: pairs per step over all devices (2 images each).
        steps: timed steps, after `warmup` untimed ones (the first compiles).
        people: identities of the random faces (the CosFace layer's width), 4 faces each.
    """
    import keras
    from hydra.utils import instantiate

    dist = setup("data_parallel", batch_size, limit=devices)
    with dist.scope():
        model = _new_trainer(cfg, people, steps)
    size, rng = cfg.model.input_size, np.random.default_rng(cfg.seed)
    faces = FaceSet(rng.integers(0, 256, (4 * people, size, size, 3), np.uint8), np.repeat(np.arange(people), 4),
                    [str(i) for i in range(people)])
    augment = instantiate(cfg.augment, _convert_="all") if cfg.augment else None
    data = PairBatches(faces, batch_size, warmup, cfg.seed, augment, 0.0, workers=cfg.train.get("workers", 1),
                       outputs=tuple(model.output_names), part=dist.part)
    t0 = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    compile_s = time.perf_counter() - t0
    data.steps = steps
    t0 = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    seconds = time.perf_counter() - t0
    return {"backend": keras.config.backend(), "devices": dist.devices, "pairs/step": batch_size,
            "pairs/device": batch_size // dist.devices, "steps": steps, "s/step": round(seconds / steps, 4),
            "images/s": round(2 * batch_size * steps / seconds, 1), "warm-up s": round(compile_s, 1)}


def compare(cfg: DictConfig, steps: int = 20, warmup: int = 3) -> list[dict]:
    """1 device at `cfg.train.batch_size`, then all devices at that global batch and at that batch
    per device; each row says its speed-up over the first."""
    b = cfg.train.batch_size
    rows = [images_per_second(cfg, 1, b, steps, warmup)]
    everything = device_count()
    if everything > 1:
        rows += [images_per_second(cfg, None, b, steps, warmup),
                 images_per_second(cfg, None, b * everything, steps, warmup)]
    for r in rows:
        r["speed-up"] = f"{r['images/s'] / rows[0]['images/s']:.2f}x"
    return rows
