"""siamese: train, evaluate and use your own Siamese face-verification network.

Modules are named after what they hold (see README, "Layout"); import from them directly, e.g.
`from siamese.faces import YuNetDetector`. Importing the package itself loads nothing heavy.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = PACKAGE_DIR / "assets" / "default_model"


def _register_resolvers() -> None:
    # `${siamese:default_model}` in conf/ names the shipped model wherever the command runs from.
    try:
        from omegaconf import OmegaConf
    except ImportError:  # config-free use of the package
        return
    if not OmegaConf.has_resolver("siamese"):
        OmegaConf.register_new_resolver("siamese", lambda key: str(
            {"default_model": DEFAULT_MODEL, "package_dir": PACKAGE_DIR}[key]))


_register_resolvers()
