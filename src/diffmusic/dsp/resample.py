"""Differentiable anti-aliased windowed-sinc resampling (via ``julius``)."""

from __future__ import annotations

import math

import julius
import torch
from torch import Tensor


def resample(x: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """Resample along the last axis with a windowed-sinc low-pass filter.

    Args:
        x: Waveform, shape ``(..., N)``.
        orig_rate: Input sample rate in Hz.
        new_rate: Output sample rate in Hz.

    Returns:
        Waveform, shape ``(..., round(N * new_rate / orig_rate))``.
    """
    if orig_rate == new_rate:
        return x
    g = math.gcd(orig_rate, new_rate)
    return julius.resample_frac(x, orig_rate // g, new_rate // g)


def fit_length(x: Tensor, length: int) -> Tensor:
    """Crop or zero-pad the last axis of ``x`` to ``length`` samples."""
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]))


def resample_region(wave: Tensor, rate: int, new_rate: int, lo: int, hi: int) -> Tensor:
    """``resample(wave, rate, new_rate)[..., lo:hi]`` computed from a short piece of ``wave``.

    The piece starts on a sample that falls exactly on a ``new_rate`` sample and has a margin
    for the interpolation filter, so the region matches resampling the whole signal.

    Args:
        wave: ``(..., N)`` at ``rate``.
        rate: Rate of ``wave`` in Hz.
        new_rate: Output rate in Hz.
        lo: First output sample (at ``new_rate``).
        hi: One past the last output sample.
    """
    g = math.gcd(rate, new_rate)
    down, up = rate // g, new_rate // g
    margin = max(2, math.ceil(256 / down))  # blocks of ``down`` input samples
    first = max(0, lo // up - margin)
    last = min(math.ceil(wave.shape[-1] / down), hi // up + 1 + margin)
    piece = resample(wave[..., first * down: last * down], rate, new_rate)
    return fit_length(piece[..., lo - first * up: hi - first * up], hi - lo)
