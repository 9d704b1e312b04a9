"""Fast Griffin-Lim phase reconstruction (Perraudin, Balazs & Søndergaard, WASPAA 2013)."""

from __future__ import annotations

import torch
from torch import Tensor

from diffmusic.dsp.spectral import istft, stft


def unit_phase(spec: Tensor) -> Tensor:
    """``exp(i angle(spec))`` without the complex exponential: ``spec / |spec|`` (1 where 0)."""
    magnitude = spec.abs()
    return torch.where(magnitude > 0, spec / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny),
                       torch.ones_like(spec))


def fast_griffin_lim(magnitude: Tensor, length: int, n_fft: int = 1024, hop_length: int = 160,
                     iterations: int = 100, momentum: float = 0.99,
                     init: Tensor | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """Waveform whose centred STFT magnitude approximates ``magnitude`` (FGLA, Algorithm 2).

    Args:
        magnitude: Target |STFT|, shape ``(..., n_fft // 2 + 1, frames)``.
        length: Output length in samples.
        n_fft: FFT size (Hann window of the same length).
        hop_length: Hop in samples.
        iterations: Number of projection iterations.
        momentum: FGLA's acceleration parameter alpha (0 gives classic Griffin-Lim).
        init: Waveform whose phase starts the iteration, shape ``(..., length)``; random phase
            drawn from ``generator`` when omitted.
        generator: Random source for the initial phase.

    Returns:
        Waveform, shape ``(..., length)``.
    """
    if init is not None:
        phase = unit_phase(stft(init, n_fft, hop_length))
    else:
        angles = torch.rand(magnitude.shape, generator=generator, dtype=magnitude.dtype,
                            device=magnitude.device)
        phase = torch.exp(2j * torch.pi * angles)
    spec = magnitude * phase
    previous = spec
    for _ in range(iterations):
        rebuilt = stft(istft(spec, length, n_fft, hop_length), n_fft, hop_length)
        accelerated = rebuilt + momentum * (rebuilt - previous)
        previous = rebuilt
        spec = magnitude * unit_phase(accelerated)
    return istft(spec, length, n_fft, hop_length)
