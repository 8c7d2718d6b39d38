"""The gallery's SVC (the FaceNet seed: 1:N methods "svc" and "combined"): a linear SVC as plain
arrays, stored in the gallery db (no pickle). scikit-learn only to fit it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Svc"]


@dataclass
class Svc:
    """A linear SVC as plain arrays (stored in the gallery db; no pickle): decision = x @ coef.T +
    intercept, one row per class (label index)."""

    coef: np.ndarray       # (C, D) float32
    intercept: np.ndarray  # (C,) float32

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: np.ndarray, C: float = 1.0) -> "Svc":
        """One-vs-rest LinearSVC on (N, D) embeddings with labels 0..C-1 (C >= 2)."""
        import warnings

        from sklearn.svm import LinearSVC

        with warnings.catch_warnings():  # one face per person is "many classes": expected here
            warnings.simplefilter("ignore", UserWarning)
            # Seeded: liblinear shuffles its coordinates, so the same gallery gives the same SVC.
            m = LinearSVC(C=C, random_state=0, max_iter=5000).fit(vectors, labels)
        w, b = m.coef_.astype(np.float32), m.intercept_.astype(np.float32)
        if len(m.classes_) == 2:  # sklearn keeps one row for two classes: make it one per class
            w, b = np.concatenate([-w, w]), np.concatenate([-b, b])
        return cls(w, b)

    def decision(self, queries: np.ndarray) -> np.ndarray:
        """(n, C) float32 margins."""
        return np.atleast_2d(queries).astype(np.float32) @ self.coef.T + self.intercept
