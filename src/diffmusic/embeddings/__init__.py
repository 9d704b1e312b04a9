"""Audio embeddings for the Fréchet Audio Distance (:mod:`diffmusic.fad`).

Each embedding maps ``(N,)`` mono 16 kHz audio to frame embeddings ``(frames, dim)``:

- ``vggish``: the paper's VGGish, only when torchvggish and its weights are already in the torch
  hub cache (nothing is downloaded);
- ``musicnn``: MTT_musicnn's penultimate layer, weights from the ``musicnn`` wheel
  (:mod:`diffmusic.embeddings.musicnn`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffmusic.names import SAMPLE_RATE

Embedding = Callable[[Tensor], np.ndarray]
VGGISH_REPO = "harritaylor_torchvggish_master"
"""Folder of the torchvggish hub repository inside the torch hub cache."""


def _vggish_dir() -> Path | None:
    repo = Path(torch.hub.get_dir()) / VGGISH_REPO
    weights = list(Path(torch.hub.get_dir(), "checkpoints").glob("vggish-*.pth"))
    return repo if repo.is_dir() and weights else None


def available_embeddings() -> list[str]:
    """Embeddings usable offline here, the paper's first."""
    from diffmusic.embeddings.musicnn import checkpoint_prefix

    found = ["vggish"] if _vggish_dir() is not None else []
    try:
        checkpoint_prefix()
    except FileNotFoundError:
        return found
    return [*found, "musicnn"]


class VggishEmbedding:
    """VGGish 128-d embeddings per 0.96 s frame from the cached torchvggish hub repository."""

    name = "vggish"

    def __init__(self) -> None:
        repo = _vggish_dir()
        if repo is None:
            raise FileNotFoundError("VGGish is not in the torch hub cache")
        self.model = torch.hub.load(str(repo), "vggish", source="local", postprocess=False)
        self.model.eval()

    def __call__(self, wave: Tensor) -> np.ndarray:
        """``(N,)`` 16 kHz audio -> ``(frames, 128)``."""
        with torch.no_grad():
            out = self.model(wave.detach().cpu().double().numpy(), SAMPLE_RATE)
        return out.reshape(-1, 128).float().numpy()


def load_embedding(name: str) -> Embedding:
    """The embedding ``name`` (``vggish`` or ``musicnn``).

    Raises:
        FileNotFoundError: Its weights are not available offline.
        ValueError: Unknown name.
    """
    if name == "vggish":
        return VggishEmbedding()
    if name == "musicnn":
        from diffmusic.embeddings.musicnn import MusicnnEmbedding

        return MusicnnEmbedding()
    raise ValueError(f"unknown embedding {name!r}; choose from vggish, musicnn")


__all__ = ["Embedding", "available_embeddings", "load_embedding"]
