"""Bandwidth extension: restore the band above the Nyquist frequency of a low-rate recording."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from diffmusic.dsp import MelConfig, log_mel, resample
from diffmusic.dsp.spectral import hz_to_mel, mel_to_hz
from diffmusic.names import SUPER_RESOLUTION_FACTORS
from diffmusic.operators.base import Baseline, Operator


class SuperResolution(Operator):
    """``A(x)`` = anti-aliased windowed-sinc resampling to ``sample_rate / factor``.

    Args:
        sample_rate: Rate of ``x`` in Hz.
        num_samples: Clip length in samples (a multiple of ``factor``).
        factor: Downsampling factor (2, 4 or 8).
        **kwargs: ``noise_snr`` and ``loss_domain`` of :class:`Operator`.
    """

    task: ClassVar[str] = "super_resolution"
    default_baseline: ClassVar[str] = "sinc"
    factors: ClassVar[tuple[int, ...]] = SUPER_RESOLUTION_FACTORS
    projection_passes: ClassVar[int] = 3

    def __init__(self, sample_rate: int, num_samples: int, factor: int = 2, **kwargs) -> None:
        super().__init__(sample_rate, num_samples, **kwargs)
        if factor not in self.factors:
            raise ValueError(f"super-resolution factor must be one of {self.factors}, got {factor}")
        if sample_rate % factor or num_samples % factor:
            raise ValueError(f"sample rate {sample_rate} and length {num_samples} must be "
                             f"multiples of the factor {factor}")
        self.factor = factor

    @property
    def measurement_rate(self) -> int:
        return self.sample_rate // self.factor

    @property
    def cutoff_hz(self) -> float:
        """Nyquist frequency of the measurement in Hz."""
        return self.measurement_rate / 2

    def forward(self, x: Tensor) -> Tensor:
        return resample(x, self.sample_rate, self.measurement_rate)

    def upsample(self, y: Tensor) -> Tensor:
        """Windowed-sinc interpolation of ``y`` back to :attr:`sample_rate`, shape ``(..., N)``."""
        return resample(y, self.measurement_rate, self.sample_rate)[..., : self.num_samples]

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Replace the low band of ``x_hat`` by the measured one (iterated back-projection).

        Each pass adds the sinc-interpolated residual ``y - A(x)``; the passes after the first
        sharpen the filter's transition band.
        """
        x = x_hat
        for _ in range(self.projection_passes):
            x = x + self.upsample(y - self(x))
        return x

    def mel_target(self, y: Tensor, mel: MelConfig) -> tuple[Tensor, Tensor]:
        edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(mel.fmin))),
                                         float(hz_to_mel(torch.tensor(mel.fmax))),
                                         mel.n_mels + 2))
        weight = (edges[2:] <= 0.95 * self.cutoff_hz).to(y.dtype)
        return log_mel(self.upsample(y), mel), weight

    def baselines(self) -> dict[str, Baseline]:
        return {"sinc": self.upsample}

    def _spec_args(self) -> dict:
        return {"factor": self.factor}
