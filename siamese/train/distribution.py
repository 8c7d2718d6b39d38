"""Training on several devices: `train.distribution=data_parallel` (docs/scale.md).

Data parallel: every device holds a full copy of the weights and takes an equal share of each
batch of `train.batch_size` pairs; the gradients are averaged across devices, so one step on N
devices is one step of the same global batch on one device.

    JAX         keras.distribution.DataParallel over every device the process sees (GPUs, TPUs, or
                the CPU's virtual devices of XLA_FLAGS=--xla_force_host_platform_device_count=N),
                set before the model is built. Several hosts: `keras.distribution.initialize()`
                from the KERAS_DISTRIBUTION_* environment variables (below), then each process
                feeds its own 1/P of every batch (`Distributed.part`).
    TensorFlow  tf.distribute.MirroredStrategy over this host's GPUs (or its logical CPUs when it has
                none); the model is built, compiled and reloaded inside `strategy.scope()`. One host.
    torch       not supported: one line saying so.

Multi-host (JAX only), the variables `keras.distribution.initialize()` reads, on every host:
    KERAS_DISTRIBUTION_JOB_ADDRESSES  "host0:port" (the coordinator; a comma list of all hosts also works)
    KERAS_DISTRIBUTION_NUM_PROCESSES  the number of processes (one per host)
    KERAS_DISTRIBUTION_PROCESS_ID     this process, 0 .. P-1 (0 writes the run dir)
None of them is needed on one host.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field

from siamese.io.names import BadSetting

__all__ = ["KINDS", "Distributed", "check_batch", "device_count", "setup"]

log = logging.getLogger(__name__)

KINDS = ("none", "data_parallel")
MULTI_HOST_VARS = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                   "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclass
class Distributed:
    """How a run is spread: `kind`, the devices that each hold a copy of the weights, the processes
    (hosts) feeding them, and on TensorFlow the strategy whose scope builds the model."""

    kind: str = "none"
    devices: int = 1
    processes: int = 1
    process_index: int = 0
    strategy: object | None = field(default=None, repr=False)

    def scope(self):
        """Where the model is built, compiled and reloaded: the strategy's scope on TensorFlow
        (JAX needs none: the distribution was set globally before anything was built)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    @property
    def part(self) -> tuple[int, int]:
        """(this process, processes): each process draws its own 1/P of every batch."""
        return self.process_index, self.processes

    @property
    def writes(self) -> bool:
        """Only process 0 writes the run dir (one shared folder; the others would race it)."""
        return self.process_index == 0

    def info(self) -> dict:
        """What metrics.json records."""
        return {"kind": self.kind, "devices": self.devices, "processes": self.processes}


def check_batch(batch_size: int, devices: int) -> None:
    """BadSetting unless `batch_size` pairs split evenly over `devices` (data parallel gives each
    device the same share of every batch)."""
    if batch_size % devices:
        fit = max(devices, batch_size // devices * devices)
        raise BadSetting(f"train.batch_size={batch_size} does not split over {devices} devices: "
                         f"use a multiple of {devices} (e.g. train.batch_size={fit})")


def setup(kind: str, batch_size: int, limit: int | None = None) -> Distributed:
    """Spread training as `kind` says ("none" or "data_parallel"), before any model is built.

    Args:
        kind: `train.distribution`.
        batch_size: `train.batch_size`, pairs per step over all devices and processes.
        limit: use only the first `limit` devices (benchmarks: 1 device against all); None: all.

    Returns:
        The `Distributed` the trainer builds the model in (`scope()`), feeds (`part`) and records.

    Raises:
        BadSetting: an unknown kind, a backend that cannot, or a batch that does not split evenly.
    """
    import keras

    if kind not in KINDS:
        raise BadSetting(f"train.distribution={kind!r}: use one of {', '.join(KINDS)}")
    backend = keras.config.backend()
    if kind == "none":
        return Distributed()
    if backend == "jax":
        return _jax(batch_size, limit)
    if backend == "tensorflow":
        return _tensorflow(batch_size, limit)
    raise BadSetting(f"train.distribution=data_parallel is not supported on the {backend} backend — "
                     "use KERAS_BACKEND=jax (several GPUs or hosts) or tensorflow (one host)")


def device_count() -> int:
    """The devices `setup("data_parallel", ...)` spreads over on this backend (this host's alone
    before a multi-host start): GPUs (or TPUs), else the CPU's (virtual or logical) devices."""
    import keras

    if keras.config.backend() == "tensorflow":
        return len(_tf_devices())
    return len(keras.distribution.list_devices())


def _tf_devices() -> list[str]:
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")]


def _jax(batch_size: int, limit: int | None) -> Distributed:
    import jax
    import keras

    started = getattr(jax.distributed, "is_initialized", lambda: False)()  # once per process
    if any(os.environ.get(v) for v in MULTI_HOST_VARS) and not started:
        keras.distribution.initialize()  # reads the KERAS_DISTRIBUTION_* variables (module docstring)
    devices = keras.distribution.list_devices()[:limit]
    check_batch(batch_size, len(devices))
    processes = jax.process_count()
    # auto_shard_dataset=False: Keras can shard only a tf.data.Dataset over processes; our batches
    # (a PyDataset) are shared out by `PairBatches(part=...)` instead (without this, multi-host stops).
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    if len(devices) == 1:
        log.warning("train.distribution=data_parallel on one device: nothing to spread")
    log.info("data parallel (JAX): %d devices (%s), %d process(es), %d pairs per device per step", len(devices),
             jax.devices()[0].platform, processes, batch_size // len(devices))
    return Distributed("data_parallel", len(devices), processes, jax.process_index())


def _tensorflow(batch_size: int, limit: int | None) -> Distributed:
    import tensorflow as tf

    if any(os.environ.get(v) for v in MULTI_HOST_VARS[1:]) or os.environ.get("TF_CONFIG"):
        raise BadSetting("train.distribution=data_parallel over several hosts is not supported on the "
                         "tensorflow backend — use KERAS_BACKEND=jax")
    devices = _tf_devices()[:limit]
    check_batch(batch_size, len(devices))
    strategy = tf.distribute.MirroredStrategy(devices)
    if len(devices) == 1:
        log.warning("train.distribution=data_parallel on one device: nothing to spread")
    log.info("data parallel (TensorFlow MirroredStrategy): %d devices, %d pairs per device per step",
             strategy.num_replicas_in_sync, batch_size // len(devices))
    return Distributed("data_parallel", strategy.num_replicas_in_sync, 1, 0, strategy)
