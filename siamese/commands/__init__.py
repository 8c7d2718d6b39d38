"""Hydra-aware glue: one function per `siamese <command>`, each `cfg -> plain library call -> a few
printed lines -> the result`. Nothing below this package knows about Hydra or the command line;
`siamese.cli` dispatches to these functions, one `conf/<name>.yaml` each."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

__all__ = ["NothingUsable", "detector", "output_dir", "plain"]


class NothingUsable(Exception):
    """The command ran but found nothing it could use (every input unreadable, no face kept):
    its summary is printed, the message says what to try, and the exit code is 1.

    Attributes:
        result: what the command would have returned (printed by `--json`).
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


def detector(cfg: DictConfig):
    """The detector a command's `detector` config group names (`conf/detector/*.yaml`)."""
    from hydra.utils import instantiate

    return instantiate(cfg.detector)


def output_dir(cfg: DictConfig) -> Path:
    """The command's own output folder (`cfg.out`), created; its log (siamese.log) goes there too."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def plain(node):
    """A config node as plain Python (lists, dicts, scalars), for library calls."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
