"""Level helpers: RMS, peak normalisation and noise at a given SNR."""

from __future__ import annotations

import torch
from torch import Tensor


def rms_db(x: Tensor, eps: float = 1e-12) -> Tensor:
    """RMS level in dBFS over the last axis, shape ``(...)``."""
    return 10 * torch.log10(x.pow(2).mean(-1) + eps)


def peak_normalize(x: Tensor, peak_db: float = -1.0, eps: float = 1e-9) -> Tensor:
    """Scale each signal in ``(..., N)`` so its absolute peak sits at ``peak_db`` dBFS."""
    peak = x.abs().amax(-1, keepdim=True).clamp_min(eps)
    return x * (10 ** (peak_db / 20) / peak)


def add_noise(y: Tensor, snr_db: float, generator: torch.Generator | None = None) -> Tensor:
    """``y`` plus white Gaussian noise at ``snr_db`` relative to the power of each item.

    Args:
        y: Measurement, shape ``(B, ...)``; the SNR is set per batch item.
        snr_db: Signal-to-noise ratio in dB.
        generator: Random source of the noise.
    """
    power = y.pow(2).flatten(1).mean(1).view(-1, *([1] * (y.dim() - 1)))
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y + noise * torch.sqrt(power / 10 ** (snr_db / 10))


def raised_cosine(x: Tensor) -> Tensor:
    """The rising half of a raised cosine, ``0.5 - 0.5 cos(pi x)``: 0 at ``x = 0``, 1 at ``x = 1``
    (fades and crossfades sample it inside ``(0, 1)``)."""
    return 0.5 - 0.5 * torch.cos(torch.pi * x)
