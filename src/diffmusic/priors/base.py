"""The prior interface every sampler sees: a network, a decoder, a vocoder, a schedule."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from diffmusic.dsp import MelConfig
from diffmusic.priors.schedule import DiscreteSchedule, Schedule

Condition = Any
"""Opaque, prior-specific conditioning computed once per restoration by :meth:`Prior.condition`."""


class Prior(ABC):
    """A latent audio diffusion model seen as ``predict``, ``decode``, ``vocode`` and ``encode``.

    Mel priors (the AudioLDM family, the embedded prior) decode latents to a log-mel that a
    vocoder turns into mono audio ``(B, N)``. Waveform priors (Stable Audio Open) decode straight
    to audio of :attr:`channels` channels ``(B, C, N)``; their :meth:`vocode` is the identity and
    the samplers' loss sees the decoder's output itself (the decoder constraint).

    Attributes:
        name: Short name written into outputs (e.g. ``"tiny"``, ``"audioldm2-music"``).
        mel: The log-mel front end the decoder produces and the vocoder consumes (waveform
            priors: the one the ``vmc=False`` ablation compares in).
        alphas_cumprod: Training schedule ``alpha_bar_t``, shape ``(num_train_timesteps,)``,
            float64 on the CPU (discrete-time priors; see :attr:`schedule`).
        prediction_type: What :meth:`predict` returns, ``"epsilon"`` or ``"v_prediction"``
            (:data:`diffmusic.priors.schedule.PREDICTION_TYPES`).
        channels: Audio channels one latent holds (1: mono).
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
    prediction_type: str = "epsilon"
    channels: int = 1
    decodes_waveform: bool = False
    """True for priors whose :meth:`decode` returns audio (no vocoder)."""

    @property
    def sample_rate(self) -> int:
        """Audio sample rate in Hz."""
        return self.mel.sample_rate

    @property
    def schedule(self) -> Schedule:
        """The noise levels the samplers walk (here: :attr:`alphas_cumprod`'s timesteps)."""
        return DiscreteSchedule(self.alphas_cumprod)

    @abstractmethod
    def latent_shape(self, num_samples: int) -> tuple[int, ...]:
        """Shape of one latent (no batch axis) that decodes to ``num_samples`` samples."""

    @abstractmethod
    def predict(self, z_t: Tensor, t: float, cond: Condition | None = None) -> Tensor:
        """The network's output (:attr:`prediction_type`) for variance-preserving latents
        ``z_t`` (B, *latent) at its time ``t`` (a :class:`~diffmusic.priors.schedule.Level`'s)."""

    @abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, *latent) -> log-mel (B, frames, n_mels) in the :attr:`mel` front end
        (waveform priors: audio (B, C, N))."""

    @abstractmethod
    def vocode(self, mel: Tensor) -> Tensor:
        """Log-mel (B, frames, n_mels) -> waveform (B, frames * hop) in [-1, 1] (waveform
        priors: the identity)."""

    @abstractmethod
    def encode(self, wave: Tensor) -> Tensor:
        """Waveform (B, N), or (B, C, N) for several channels -> latents (B, *latent)
        (posterior mean of the VAE)."""

    def decoded_mel(self, decoded: Tensor) -> Tensor:
        """The log-mel of a :meth:`decode` output, for the ``vmc=False`` ablation: itself for
        mel priors, (B, C, frames, n_mels) for waveform priors."""
        return decoded

    def condition(self, prompts: Sequence[str | None], guidance_scale: float = 1.0,
                  negative_prompt: str | None = None) -> Condition | None:
        """Encode one prompt (or stem label) per batch item; ``None`` for unconditional priors."""
        return None

    def describe(self) -> dict:
        """JSON-ready description written into restoration records."""
        return {"name": self.name, "sample_rate": self.sample_rate, "channels": self.channels,
                "mel": self.mel.to_dict(), "schedule": self.schedule.describe(),
                "prediction_type": self.prediction_type, "dtype": str(self.dtype)}
