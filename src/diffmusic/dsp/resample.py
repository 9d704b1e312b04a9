"""Differentiable anti-aliased windowed-sinc resampling (via ``julius``)."""

from __future__ import annotations

import math

import julius
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
