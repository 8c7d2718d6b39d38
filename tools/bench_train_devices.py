#!/usr/bin/env python3
"""Training images/s on 1 device against all devices of this machine (docs/scale.md).

    KERAS_BACKEND=jax python tools/bench_train_devices.py [--steps 20] [--warmup 3] [train overrides...]

e.g. on a GPU machine `... +experiment=wide112 mixed_precision=mixed_bfloat16 train.workers=6`; on a CPU
`XLA_FLAGS=--xla_force_host_platform_device_count=2` gives JAX two virtual devices (the same cores:
a check that it runs, not a speed-up). TensorFlow: KERAS_BACKEND=tensorflow, over the host's GPUs.
Prints a Markdown table (`siamese.eval.bench.table`) and writes nothing.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="timed training steps per row")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (the first compiles)")
    p.add_argument("overrides", nargs="*", help="train config overrides, as for `siamese train`")
    args = p.parse_args()

    from siamese.cli import compose_config
    from siamese.eval.bench.table import machine, table
    from siamese.train.bench_devices import compare
    from siamese.train.trainer import _mixed_precision

    cfg = compose_config("train", args.overrides)
    policy = _mixed_precision(cfg.mixed_precision)
    rows = compare(cfg, steps=args.steps, warmup=args.warmup)
    print(f"model {cfg.model.backbone} {cfg.model.input_size} px widths {list(cfg.model.widths)}, "
          f"augment {'on' if cfg.augment else 'off'}, {policy}; {machine()}")
    print(table(rows))


if __name__ == "__main__":
    from siamese.cli import script

    script("bench_train_devices", main)
