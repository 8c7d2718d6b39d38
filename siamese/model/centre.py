"""Local centring, and AS-norm: what a model's cohort of training faces is used for.

Local centring: the space the cosine-linkage clusterings (agglomerative, average), "may be one
person" and 1:N's `centred` acceptance compare faces in, for models whose cluster.json asks for it
(fitted by `siamese calibrate MODEL fit=[cluster]`). NumPy only.

A distilled embedding has hubs: a few faces close to many faces of other people, which link their
groups (docs/distill.md, "Why the student clusters worse"). Each face's embedding minus `gamma`
times the mean of its `k` most similar faces in a fixed cohort (faces of people the model trained
on, shipped beside it as `cluster_cohort.npy`), made unit length again, takes from a hub the
direction it shares with crowds of strangers and leaves a face in a sparse region almost as it
was (localized centring, Hara et al., AAAI 2015). One face at a time: it depends on the cohort,
never on the other faces being clustered, so a folder's result does not change with what else is
in it. Cost: one (n, cohort) product; 2.45 s per 100,000 faces against a 1,000-face cohort on
2 cores (docs/scale.md).

AS-norm (adaptive symmetric score normalisation, `AsNorm`): 1:N's method `asnorm` scores a face q
against an enrolled face g by their plain cosine s made comparable across faces,
0.5 * ((s - mu_q) / sd_q + (s - mu_g) / sd_g), mu and sd the mean and spread of each face's K highest
cosines with the same cohort: a face near many strangers (or an enrolled hub) needs a higher cosine to
score as high (docs/distill.md, "Adaptive score normalisation for 1:N").
"""

from __future__ import annotations

import numpy as np

__all__ = ["ASNORM_K", "AsNorm", "Centring", "centring", "local_centre", "score_norm"]

ASNORM_K = 100  # cohort cosines per face that AS-norm takes mean and spread from (docs/distill.md)


def local_centre(emb: np.ndarray, cohort: np.ndarray, k: int = 20, gamma: float = 0.5,
                 chunk: int = 8192) -> np.ndarray:
    """(n, D) float32 unit vectors: each row of `emb` minus `gamma` times the mean of its `k` most
    cosine-similar `cohort` rows, normalised.

    Args:
        emb: (n, D) unit embeddings (any n, 0 included).
        cohort: (m, D) unit embeddings of people the faces are not of (m >= k).
        k: cohort neighbours per face; gamma: how much of their mean is taken away (0: none).
        chunk: rows per (chunk, m) similarity block.
    """
    emb = np.asarray(emb, np.float32)
    cohort = np.asarray(cohort, np.float32)
    if emb.ndim != 2 or cohort.ndim != 2 or emb.shape[1] != cohort.shape[1]:
        raise ValueError(f"embeddings {emb.shape} and cohort {cohort.shape} must be (n, D) and (m, D)")
    if not 0 < k <= len(cohort):
        raise ValueError(f"k = {k} cohort neighbours, but the cohort has {len(cohort)} faces")
    out = np.empty_like(emb)
    for i in range(0, len(emb), chunk):
        x = emb[i:i + chunk]
        top = np.argpartition(-(x @ cohort.T), k - 1, axis=1)[:, :k]
        y = x - gamma * cohort[top].mean(1)
        out[i:i + chunk] = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return out


class _CohortSpace:
    """What a calibration made with a cohort-based score records (`identity`) and checks (`matches`)."""

    identity: dict

    def matches(self, stored: dict) -> bool:
        """Whether `stored` (a calibration's record, `identity`) was made in this very space."""
        return all(stored.get(key) == value for key, value in self.identity.items())


class Centring(_CohortSpace):
    """A model's local centring (`local_centre` with its cohort, k and gamma), for items that each
    stand for one or more faces.

    Args:
        cohort: (m, D) unit embeddings; k, gamma: as `local_centre`.
        digest: the cohort file's SHA-256 when it came from one (what a calibration in this space records).
    """

    def __init__(self, cohort: np.ndarray, k: int, gamma: float, digest: str | None = None):
        self.cohort, self.k, self.gamma = np.asarray(cohort, np.float32), int(k), float(gamma)
        self.digest = digest

    @property
    def identity(self) -> dict:
        """{"cohort": SHA-256, "k", "gamma"}: what a threshold calibrated in this space is stored with."""
        return {"cohort": self.digest, "k": self.k, "gamma": self.gamma}

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        """(n, D) unit vectors in the centred space of (n, D) unit embeddings."""
        return local_centre(emb, self.cohort, self.k, self.gamma)

    def sums(self, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Items that stand for several near-identical faces (a video track, a crop kept for many):
        ((n, D) float32 centred unit vectors, (n, D) float64 centred sums) of (n, D) sums of unit face
        embeddings. Each item is centred by its mean direction and keeps its sum's length, so a mean
        over faces (sum . sum / counts) stays on the scale it had."""
        sums = np.asarray(sums, np.float64)
        norm = np.linalg.norm(sums, axis=1, keepdims=True)
        unit = self((sums / np.maximum(norm, 1e-12)).astype(np.float32))
        return unit, unit.astype(np.float64) * norm


def centring(embedder, cal: dict | None = None, purpose: str = "cluster") -> Centring | None:
    """The model's local centring, when its cluster.json asks for one ("centre": {"k", "gamma",
    "cohort": {"sha256", ...}}), else None.

    Args:
        embedder: a `siamese.model.Embedder` (its cluster.json and cluster_cohort.npy).
        cal: its cluster.json when already read (`siamese.clustering.settings.clustering_settings`).
        purpose: "cluster" (clustering, "may be one person": the space cluster.json was fitted in) or
            "recognize" (method centred's acceptance in 1:N: "centre"."recognize"'s k and gamma when
            `siamese calibrate` fitted them, else the clustering's; the same cohort).

    Raises:
        ValueError: cluster.json names a cohort file that is missing or another one.
    """
    spec = _centre_spec(embedder, cal)
    if not spec:
        return None
    digest = spec["cohort"]["sha256"]
    k, gamma = spec["k"], spec["gamma"]
    if purpose == "recognize" and spec.get("recognize"):  # 1:N acceptance's own k and gamma, when fitted
        k, gamma = spec["recognize"]["k"], spec["recognize"]["gamma"]
    return Centring(embedder.cluster_cohort(digest), k, gamma, digest)


class AsNorm(_CohortSpace):
    """AS-norm against a model's cohort: `stats` of faces, then `score` of face pairs.

    Args:
        cohort: (m, D) unit embeddings of people the faces are not of; k: the top cohort cosines per
            face (k <= m). digest: the cohort file's SHA-256 (what a calibration with it records).
    """

    def __init__(self, cohort: np.ndarray, k: int = ASNORM_K, digest: str | None = None):
        self.cohort, self.k, self.digest = np.asarray(cohort, np.float32), int(k), digest
        if not 0 < self.k <= len(self.cohort):
            raise ValueError(f"AS-norm with k = {k} cohort cosines, but the cohort has {len(self.cohort)} faces")

    @property
    def identity(self) -> dict:
        """{"cohort": SHA-256, "asnorm_k"}: what a threshold calibrated with this normalisation is stored with."""
        return {"cohort": self.digest, "asnorm_k": self.k}

    def stats(self, emb: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """(n, 2) float32 [mean, spread] of each of (n, D) unit embeddings' k highest cohort cosines
        (the spread floored at 1e-6)."""
        emb = np.asarray(emb, np.float32).reshape(-1, self.cohort.shape[1])
        out = np.empty((len(emb), 2), np.float32)
        for i in range(0, len(emb), chunk):
            s = emb[i:i + chunk] @ self.cohort.T
            top = np.partition(s, s.shape[1] - self.k, axis=1)[:, s.shape[1] - self.k:]
            out[i:i + chunk, 0], out[i:i + chunk, 1] = top.mean(1), np.maximum(top.std(1), 1e-6)
        return out

    @staticmethod
    def score(cos: np.ndarray, q_stats: np.ndarray, g_stats: np.ndarray) -> np.ndarray:
        """AS-norm scores of cosines `cos` (any shape) between faces with `stats` q_stats and g_stats
        (each broadcastable to cos's shape, plus a last axis of 2): unitless, 0 where both faces'
        cohorts sit on average."""
        return 0.5 * ((cos - q_stats[..., 0]) / q_stats[..., 1] + (cos - g_stats[..., 0]) / g_stats[..., 1])


def score_norm(embedder, cal: dict | None = None, k: int = ASNORM_K) -> AsNorm | None:
    """The model's AS-norm (against its clustering cohort, `k` top cosines), when its cluster.json has a
    cohort (a locally centred model: "centre"."cohort"), else None.

    Raises:
        ValueError: cluster.json names a cohort file that is missing or another one.
    """
    spec = _centre_spec(embedder, cal)
    if not spec:
        return None
    digest = spec["cohort"]["sha256"]
    return AsNorm(embedder.cluster_cohort(digest), k, digest)


def _centre_spec(embedder, cal: dict | None) -> dict | None:
    """cluster.json's "centre" (its cohort, k, gamma, 1:N's own), or None: a model without a cohort."""
    if cal is None:  # an embedder without calibrations (a test's stand-in) has none
        read = getattr(embedder, "calibration", None)
        cal = read("cluster.json") if read else None
    return (cal or {}).get("centre") or None
