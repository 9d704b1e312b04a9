"""The prior interface every sampler sees: a noise predictor, a decoder, a vocoder, a schedule."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from diffmusic.dsp import MelConfig

Condition = Any
"""Opaque, prior-specific conditioning computed once per restoration by :meth:`Prior.condition`."""


class Prior(ABC):
    """A latent audio diffusion model seen as ``eps``, ``decode``, ``vocode`` and ``encode``.

    Attributes:
        name: Short name written into outputs (e.g. ``"tiny"``, ``"audioldm2-music"``).
        mel: The log-mel front end the decoder produces and the vocoder consumes.
        alphas_cumprod: Training schedule ``alpha_bar_t``, shape ``(num_train_timesteps,)``,
            float64 on the CPU.
        device: Where the networks live.
        dtype: Parameter dtype of the networks (guidance math stays in float32).
        window: Native number of samples one latent covers, from the prior's own figures
            (81,920 = 5.12 s for the AudioLDM family and the embedded prior).
        latent_hop: Samples per latent frame (mel hop x the VAE's time downsampling: 640 for
            the AudioLDM family and the embedded prior); window starts and lengths of long
            recordings are multiples of it.
    """

    name: str
    mel: MelConfig
    alphas_cumprod: Tensor
    device: torch.device
    dtype: torch.dtype = torch.float32
    window: int
    latent_hop: int

    @property
    def sample_rate(self) -> int:
        """Audio sample rate in Hz."""
        return self.mel.sample_rate

    @property
    def num_train_timesteps(self) -> int:
        """Length of the training schedule."""
        return self.alphas_cumprod.numel()

    @abstractmethod
    def latent_shape(self, num_samples: int) -> tuple[int, ...]:
        """Shape of one latent (no batch axis) that decodes to ``num_samples`` samples."""

    @abstractmethod
    def eps(self, z_t: Tensor, t: int, cond: Condition | None = None) -> Tensor:
        """Predicted noise for latents ``z_t`` (B, *latent) at training timestep ``t``."""

    @abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, *latent) -> log-mel (B, frames, n_mels) in the :attr:`mel` front end."""

    @abstractmethod
    def vocode(self, mel: Tensor) -> Tensor:
        """Log-mel (B, frames, n_mels) -> waveform (B, frames * hop) in [-1, 1]."""

    @abstractmethod
    def encode(self, wave: Tensor) -> Tensor:
        """Waveform (B, N) -> latents (B, *latent) (posterior mean of the VAE)."""

    def condition(self, prompts: Sequence[str | None], guidance_scale: float = 1.0,
                  negative_prompt: str | None = None) -> Condition | None:
        """Encode one prompt (or stem label) per batch item; ``None`` for unconditional priors."""
        return None

    def describe(self) -> dict:
        """JSON-ready description written into restoration records."""
        return {"name": self.name, "sample_rate": self.sample_rate, "mel": self.mel.to_dict(),
                "num_train_timesteps": self.num_train_timesteps, "dtype": str(self.dtype)}
