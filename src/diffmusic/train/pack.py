"""Latent packs: the noise predictor's training crops, encoded once, in one safetensors file.

A pack carries the noise predictor's training data to a machine that has no audio data (a GPU
lent for minutes): ``python -m diffmusic.train pack`` draws 5.12 s training crops exactly as
the CPU stage draws them (class shares, quiet crops redrawn, random attenuation), encodes each
with the frozen VAE of ``RUNS/unet`` and keeps one posterior sample per crop;
``python -m diffmusic.train unet --pack FILE`` trains from it. Tensors, unscaled latents:

    latents        (N, 8, 128, 16)  float16, a posterior sample of each training crop
    labels         (N,)             int64, its class (index into ``CLASSES``)
    valid_latents  (V, 8, 128, 16)  float16, posterior means of the stage's fixed validation
                                    clips (the ones ``valid.csv`` is measured on)

The header's metadata entry ``pack`` (JSON) holds the format, the digest of the VAE
(``vae_sha256``), the latent statistics of ``RUNS/unet/latent.json`` (``latent_stats``), the
crop length, the seed and the data it was drawn from.

One posterior sample per crop, not mean and standard deviation: the shipped VAE's posterior
standard deviation (about 0.03 on the demo clip) is some 1.5 % of the latents' spread (2.24), so
fresh posterior draws would change the training latents little, and the same bytes hold twice
the crops.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from diffmusic.names import SAMPLE_RATE
from diffmusic.train.loop import atomic_write

PACK_FORMAT = "diffmusic-latent-pack"
"""The ``format`` of a pack's metadata."""

HEADER_BYTES = 64 * 1024
"""Bytes set aside for the safetensors header and the metadata when sizing a pack."""


def crops_that_fit(megabytes: float, latent_shape: tuple[int, ...], valid: int) -> int:
    """How many crops (a float16 latent and an int64 label each) fit in ``megabytes`` (10^6 B)
    next to ``valid`` float16 validation latents and :data:`HEADER_BYTES`."""
    latent_bytes = 2 * math.prod(latent_shape)
    budget = megabytes * 1e6 - HEADER_BYTES - valid * latent_bytes
    return max(0, int(budget // (latent_bytes + 8)))


def save_pack(path: Path, latents: Tensor, labels: Tensor, valid: Tensor, info: dict) -> int:
    """Write a pack atomically.

    Args:
        path: Output ``.safetensors`` file.
        latents: Unscaled training latents ``(N, 8, F, 16)`` (stored as float16).
        labels: Their classes ``(N,)``.
        valid: Unscaled validation latents ``(V, 8, F, 16)`` (float16).
        info: Metadata; ``format`` is added.

    Returns:
        The file size in bytes.
    """
    tensors = {"latents": latents.half().contiguous(), "labels": labels.long().contiguous(),
               "valid_latents": valid.half().contiguous()}
    metadata = {"pack": json.dumps({"format": PACK_FORMAT, **info})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path.stat().st_size


class LatentPack:
    """Batches from a pack, drawn the way :meth:`CropSampler.batch` draws crops.

    Args:
        path: A file written by :func:`save_pack`.

    Attributes:
        info: The pack's metadata.
        latents: Training latents ``(N, 8, F, 16)``, float16, unscaled.
        labels: Their classes ``(N,)``.
        by_label: Class -> indices of its latents.
    """

    def __init__(self, path: Path):
        with safe_open(str(path), "pt") as f:
            self.info = json.loads((f.metadata() or {}).get("pack", "{}"))
        if self.info.get("format") != PACK_FORMAT:
            raise ValueError(f"{path} is not a latent pack (format {self.info.get('format')!r})")
        tensors = load_file(str(path))
        self.latents, self.labels = tensors["latents"], tensors["labels"]
        self.valid = tensors["valid_latents"]
        self.by_label = {int(k): torch.nonzero(self.labels == k).flatten()
                         for k in self.labels.unique()}

    def refresh(self) -> int:
        """The number of training latents (a pack does not change)."""
        return len(self.latents)

    def hours(self) -> float:
        """Audio duration of the training crops in hours."""
        return len(self.latents) * self.info["crop_samples"] / SAMPLE_RATE / 3600

    def batch(self, size: int, generator: torch.Generator,
              class_weights: dict[int, float] | None = None) -> tuple[Tensor, Tensor]:
        """Random training latents, float32 ``(size, 8, F, 16)``, and their classes ``(size,)``.

        Args:
            size: Batch size.
            generator: Random source (CPU).
            class_weights: Draw the class first with these weights (classes absent from the pack
                are left out), then a latent of that class; ``None``: any latent, uniformly.
        """
        weights = {k: w for k, w in (class_weights or {}).items() if k in self.by_label}
        if weights:
            classes = sorted(weights)
            probs = torch.tensor([weights[k] for k in classes], dtype=torch.float64)
            drawn = torch.multinomial(probs, size, replacement=True, generator=generator)
            index = torch.stack([self._pick(self.by_label[classes[int(c)]], generator)
                                 for c in drawn])
        else:
            index = torch.randint(len(self.latents), (size,), generator=generator)
        return self.latents[index].float(), self.labels[index]

    @staticmethod
    def _pick(pool: Tensor, generator: torch.Generator) -> Tensor:
        """One element of ``pool``, uniformly."""
        return pool[torch.randint(len(pool), (), generator=generator)]

    def validation(self) -> Tensor | None:
        """The validation latents as float32 ``(V, 8, F, 16)``; ``None`` when there are none."""
        return self.valid.float() if len(self.valid) else None
