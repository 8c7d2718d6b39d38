"""Which settings each clustering algorithm uses, and where their defaults come from.

Every algorithm's defaults are the model's: `cluster.json` beside it, fitted on its validation
people by `siamese calibrate MODEL fit=[cluster]` (training writes it too). Its top level holds the
agglomerative threshold and floor; "algorithms" holds the others' (fitted the same way, on the same
people). A setting given by the caller wins over the file; a setting the chosen algorithm does not
use is refused, so that no summary names a number that played no part.

Without a fitted value: agglomerative falls back to chinese_whispers (with a warning), whose
threshold falls back to the model's pair threshold (model.json); average, components and dbscan
have no safe default (one wrong edge chains two people; a cosine radius means nothing to the
model), so they ask for their parameter in one line.
"""

from __future__ import annotations

import logging

from siamese.io.names import BadSetting
from siamese.model.centre import centring

__all__ = ["CENTRED", "USES", "clustering_settings", "resolve"]

log = logging.getLogger(__name__)

# The algorithms that compare faces by cosine, in the model's locally centred space when its cluster.json
# was fitted there (`siamese.model.centre`); the graph algorithms compare head scores, never centred.
CENTRED = ("agglomerative", "average")

# The settings each algorithm reads (besides k, the cosine shortlist all of them use).
USES = {"agglomerative": ("threshold", "floor"), "average": ("threshold",), "chinese_whispers": ("threshold",),
        "components": ("threshold",), "dbscan": ("eps", "min_samples")}

_MEANING = {"threshold": "for agglomerative the mean cosine two single faces need, for average the mean "
                         "cosine any two groups need, for the graph algorithms the head score an edge needs",
            "floor": "agglomerative's bar for big groups",
            "eps": "dbscan's cosine-distance radius", "min_samples": "dbscan's faces per core point"}


def clustering_settings(embedder) -> dict | None:
    """{"threshold", "floor", "k", ...} from `cluster.json` beside the model, or None when
    there is none for this model."""
    cal = embedder.calibration("cluster.json")
    if cal is not None and not {"threshold", "floor", "k"} <= set(cal):
        raise ValueError(f"{embedder.path / 'cluster.json'}: missing threshold/floor/k — refit it: "
                         f"`siamese calibrate {embedder.path} overwrite=true`")
    return cal


def resolve(embedder, algorithm: str, **given) -> tuple[str, dict, dict]:
    """The settings `algorithm` will run with, each from the caller or the model.

    Args:
        embedder: a `siamese.model.Embedder` (its cluster.json and pair threshold).
        algorithm: one of `USES`.
        given: threshold, floor, eps, min_samples as the caller gave them (None = not given).

    Returns:
        (algorithm actually run, {setting: value} of exactly the settings it uses,
        {setting: "given" | "cluster.json" | "model.json" | "= threshold"}).

    Raises:
        ValueError: a setting the algorithm does not use was given, or one it needs has no default.
    """
    given = {k: v for k, v in given.items() if v is not None}
    unused = sorted(set(given) - set(USES[algorithm]))
    if unused:
        raise BadSetting(f"{algorithm} does not use {', '.join(unused)} — it reads only "
                         f"{', '.join(USES[algorithm])} ({'; '.join(_MEANING[u] for u in USES[algorithm])})")
    cal = clustering_settings(embedder)
    if cal and cal.get("centre"):
        centring(embedder, cal)  # a missing or changed cohort fails here, before any face is read
    if algorithm == "agglomerative" and cal is None and not given:
        log.warning("%s has no cluster.json for agglomerative clustering — using chinese_whispers "
                    "at the model's threshold; calibrate with `siamese calibrate %s "
                    "fit=[cluster]`", embedder.path, embedder.path)
        algorithm = "chinese_whispers"
    fitted = _fitted(cal, algorithm)
    values, sources = {}, {}
    for name in USES[algorithm]:
        if name in given:
            values[name], sources[name] = given[name], "given"
        elif name in fitted:
            values[name], sources[name] = fitted[name], "cluster.json"
        else:
            values[name], sources[name] = _fallback(embedder, algorithm, name, values, cal)
    values = {k: int(v) if k == "min_samples" else float(v) for k, v in values.items()}
    return algorithm, values, sources


def _fitted(cal: dict | None, algorithm: str) -> dict:
    """The settings cluster.json holds for `algorithm` ({} when none)."""
    if cal is None:
        return {}
    if algorithm == "agglomerative":
        return {"threshold": cal["threshold"], "floor": cal["floor"]}
    return dict((cal.get("algorithms") or {}).get(algorithm) or {})


def _fallback(embedder, algorithm: str, name: str, values: dict, cal: dict | None) -> tuple[float, str]:
    """A setting neither given nor fitted: the model's own where one is safe, else a one-line error."""
    if name == "floor":  # a given threshold without a fitted floor: one bar for all group sizes
        return values["threshold"], "= threshold"
    if algorithm == "chinese_whispers":
        return embedder.threshold, "model.json"
    refit = f"or fit cluster.json: `siamese calibrate {embedder.path} fit=[cluster] overwrite=true`"
    if algorithm == "agglomerative":  # a floor given, no cluster.json
        raise BadSetting(f"agglomerative needs threshold=... (the mean cosine two single faces need) {refit}")
    if algorithm == "average":  # a cluster.json from before average was fitted, or none
        hint = (f"; fitted, it fell between agglomerative's floor and threshold, here {cal['floor']:.3f} "
                f"and {cal['threshold']:.3f}" if cal else "")
        raise BadSetting(f"average needs threshold=... (the mean cosine any two groups need{hint}) {refit}")
    if name == "min_samples":
        return 2, "default"
    if algorithm == "components":
        raise BadSetting(f"components needs threshold=... (the head score an edge needs; one wrong edge "
                         f"merges two people, so set it well above the model's pair threshold "
                         f"{embedder.threshold:.3f}) {refit}")
    hint = f"; 1 - cluster.json's threshold is {1 - cal['threshold']:.3f}" if cal else ""
    raise BadSetting(f"dbscan needs eps=... (a cosine-distance radius{hint}) {refit}")
