"""siamese: train, evaluate and use your own Siamese face-verification network.

The package is layered, each subpackage importing only the ones before it (docs/architecture.md):
`io` (files, images, videos) <- `faces` (detect, align, track, capture) <- `data` (LFW, the face
cache, sampling) <- `model` (networks, the `Embedder`) <- `gallery` <- `verification`, `clustering`
<- `eval` <- `train` <- `commands` (Hydra glue) <- `cli`. Importing the package itself loads
nothing heavy.

For Python users, a handful of verbs (`siamese.api`): `siamese.detect(image)`,
`siamese.embed(image)`, `siamese.verify(a, b)`, `siamese.identify(image)`,
`siamese.cluster(folder, out)`.
"""



def _paths():
    from siamese.io import paths  # imported when first needed: `import siamese` stays light

    return paths


def _lfw_cache(root, detector="yunet", size=112, padding=0.0) -> str:
    return str(_paths().lfw_cache(root, detector, size, padding))


_VERBS = ("Match", "cluster", "detect", "embed", "identify", "verify")  # siamese.api


def __getattr__(name: str):
    if name in ("DEFAULT_MODEL", "PACKAGE_DIR"):
        return getattr(_paths(), name)
    if name in _VERBS:  # the verbs load the model stack on first use, not at `import siamese`
        from siamese import api

        return getattr(api, name)
    raise AttributeError(f"module 'siamese' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_VERBS, "DEFAULT_MODEL", "PACKAGE_DIR"])


def _register_resolvers() -> None:
    # `${siamese:default_model}` in conf/ names the shipped model wherever the command runs from;
    # `${siamese_cache:ROOT,DETECTOR,SIZE,PADDING}` is an LFW face cache's folder (one definition:
    # siamese.io.paths.lfw_cache).
    try:
        from omegaconf import OmegaConf
    except ImportError:  # config-free use of the package
        return
    if not OmegaConf.has_resolver("siamese"):
        OmegaConf.register_new_resolver("siamese", lambda key: str(
            {"default_model": _paths().DEFAULT_MODEL, "package_dir": _paths().PACKAGE_DIR}[key]))
    if not OmegaConf.has_resolver("siamese_cache"):
        OmegaConf.register_new_resolver("siamese_cache", _lfw_cache)


_register_resolvers()
