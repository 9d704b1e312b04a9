"""Fréchet Audio Distance (Kilgour et al., 2019) with a pluggable embedding.

``FAD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` between the Gaussians fitted to the
frame embeddings of two sets of audio. The metric's name carries the embedding: ``FAD-vggish``
(the paper's) or ``FAD-musicnn``; never call a number FAD-VGGish unless VGGish made it.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from torch import Tensor

from diffmusic.embeddings import Embedding, available_embeddings, load_embedding


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b``.

    Args:
        a: Embeddings ``(n_a, dim)`` (at least two rows).
        b: Embeddings ``(n_b, dim)`` (at least two rows).
        eps: Added to the diagonals when the product of covariances is singular.

    Returns:
        The distance (>= 0 up to rounding; 0 for identical sets).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (n >= 2, dim) arrays, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # few frames: singular covariances are expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():
            offset = np.eye(len(cov_a)) * eps
            root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = root.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * np.trace(root))


def fad(estimates: list[Tensor], references: list[Tensor], embedding: Embedding) -> float:
    """FAD between two lists of ``(N,)`` 16 kHz clips under ``embedding``."""
    a = np.concatenate([embedding(x) for x in estimates])
    b = np.concatenate([embedding(x) for x in references])
    return frechet_distance(a, b)


__all__ = ["available_embeddings", "fad", "frechet_distance", "load_embedding"]
