"""Bandwidth extension: restore the band above the Nyquist frequency of a low-rate recording."""

from __future__ import annotations

from typing import ClassVar

import julius
import torch
from torch import Tensor

from diffmusic.dsp import MelConfig, fit_length, istft, log_mel, resample, stft
from diffmusic.dsp.spectral import hz_to_mel, mel_to_hz
from diffmusic.metrics import lsd_hf
from diffmusic.names import SUPER_RESOLUTION_FACTORS
from diffmusic.operators.base import Operator

N_FFT = 1024
"""FFT size of the high-pass in :meth:`SuperResolution.invented`."""

CROSSOVER_ZEROS = 32
"""Zero crossings on each side of the crossover's windowed sinc (``julius`` ``zeros``): a
transition band about ``2 / 32`` of the cutoff frequency wide (250 Hz at 4 kHz)."""


class SuperResolution(Operator):
    """``A(x)`` = anti-aliased windowed-sinc resampling to ``sample_rate / factor``.

    Args:
        sample_rate: Rate of ``x`` in Hz.
        num_samples: Clip length in samples (a multiple of ``factor``).
        factor: Downsampling factor (2, 4 or 8).
        **kwargs: ``noise_snr`` and ``loss_domain`` of :class:`Operator`.
    """

    task: ClassVar[str] = "super_resolution"
    options: ClassVar[tuple[str, ...]] = ("factor",)
    baseline_names: ClassVar[tuple[str, ...]] = ("sinc",)
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

    def sinc(self, y: Tensor) -> Tensor:
        """Windowed-sinc upsampling (:meth:`upsample`)."""
        return self.upsample(y)

    def _spec_args(self) -> dict:
        return {"factor": self.factor}

    def output_rate(self, rate: int) -> int:
        """A recording is extended to at least the clip's rate."""
        return max(rate, self.sample_rate)

    def keep_original(self, original: Tensor, restored: Tensor, rate: int, restored_rate: int,
                      out_rate: int) -> Tensor:
        """The original's spectrum everywhere but between the cutoff and the restoration's
        Nyquist frequency (:func:`add_high_band`)."""
        return add_high_band(original, restored, rate, restored_rate, out_rate, self.cutoff_hz)

    def invented(self, wave: Tensor) -> Tensor:
        """The band of ``wave`` above :attr:`cutoff_hz` (STFT bins below it zeroed)."""
        spec = stft(wave, N_FFT, N_FFT // 4)
        spec[..., : int(self.cutoff_hz * N_FFT / self.sample_rate) + 1, :] = 0
        return istft(spec, wave.shape[-1], N_FFT, N_FFT // 4)

    def score(self, est: Tensor, ref: Tensor, y: Tensor) -> dict:
        """LSD and SI-SDR, and LSD-HF over the bins above the measurement's Nyquist frequency."""
        return {**super().score(est, ref, y),
                "lsd_hf": float(lsd_hf(est, ref, self.cutoff_hz, self.sample_rate))}


def add_high_band(original: Tensor, restored: Tensor, rate: int, restored_rate: int,
                  out_rate: int, cutoff: float) -> Tensor:
    """Bandwidth extension that keeps the original: its spectrum everywhere except between
    ``cutoff`` and the restoration's Nyquist frequency, where the restoration's is used.

    ``out = R(original) + R(highpass(restored - original at restored_rate))``, ``R`` resampling
    to ``out_rate`` and the high-pass a windowed sinc at ``cutoff`` (a complementary crossover):
    below ``cutoff`` the output is the original up to the crossover's transition band (and to
    how far ``restored`` departs from it there); above ``restored_rate / 2``, where the
    restoration holds nothing, it is the original's own content, untouched.

    Args:
        original: ``(C, N)`` at ``rate``.
        restored: ``(C, M)`` at ``restored_rate``, ``M ~ N * restored_rate / rate``.
        rate: Rate of ``original`` in Hz.
        restored_rate: Rate of ``restored`` in Hz.
        out_rate: Output rate in Hz.
        cutoff: Crossover frequency in Hz, below ``restored_rate / 2``.

    Returns:
        ``(C, round(N * out_rate / rate))`` at ``out_rate``.
    """
    length = round(original.shape[-1] * out_rate / rate)
    low = resample(original, rate, restored_rate)
    added = julius.highpass_filter(fit_length(restored, low.shape[-1]) - low,
                                   cutoff / restored_rate, zeros=CROSSOVER_ZEROS)
    return (fit_length(resample(original, rate, out_rate), length)
            + fit_length(resample(added, restored_rate, out_rate), length))
