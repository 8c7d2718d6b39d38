"""Hydra-aware glue: one function per `siamese <command>`, each `cfg -> plain library call -> a few
printed lines -> the result`. Nothing below this package knows about Hydra or the command line;
`siamese.cli` dispatches to these functions, one `conf/<name>.yaml` each."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

__all__ = ["detector", "output_dir", "plain"]


def detector(cfg: DictConfig):
    """The detector a command's `detector` config group names (`conf/detector/*.yaml`)."""
    from hydra.utils import instantiate

    return instantiate(cfg.detector)


def output_dir(cfg: DictConfig) -> Path:
    """The command's own run dir (where Hydra writes its logs): `cfg.out` when set, else Hydra's."""
    from hydra.core.hydra_config import HydraConfig

    out = cfg.get("out")
    return Path(out) if out else Path(HydraConfig.get().runtime.output_dir)


def plain(node):
    """A config node as plain Python (lists, dicts, scalars), for library calls."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
