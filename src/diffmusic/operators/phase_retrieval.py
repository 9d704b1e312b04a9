"""Phase retrieval: a waveform from its STFT magnitude alone."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from diffmusic.dsp import MelConfig, fast_griffin_lim, log_compress, mel_filterbank, stft
from diffmusic.operators.base import Operator


class PhaseRetrieval(Operator):
    """``A(x) = |STFT(x)|`` (Hann ``n_fft``, hop, centred); the measurement is a magnitude.

    Args:
        sample_rate: Sample rate in Hz.
        num_samples: Clip length in samples.
        n_fft: FFT and window size in samples.
        hop_length: Hop in samples.
        iterations: Fast Griffin-Lim iterations of the projection and the baseline.
        seed: Seed of the baseline's random initial phase.
        **kwargs: ``noise_snr`` and ``loss_domain`` of :class:`Operator`.
    """

    task: ClassVar[str] = "phase_retrieval"
    measurement_kind = "magnitude"
    baseline_names: ClassVar[tuple[str, ...]] = ("griffin_lim",)
    default_baseline: ClassVar[str] = "griffin_lim"

    def __init__(self, sample_rate: int, num_samples: int, n_fft: int = 1024,
                 hop_length: int = 160, iterations: int = 100, seed: int = 0, **kwargs) -> None:
        super().__init__(sample_rate, num_samples, **kwargs)
        self.n_fft, self.hop_length = n_fft, hop_length
        self.iterations, self.seed = iterations, seed

    def forward(self, x: Tensor) -> Tensor:
        return stft(x, self.n_fft, self.hop_length).abs()

    def degrade(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return super().degrade(x, generator).abs()

    def features(self, y: Tensor) -> Tensor:
        return log_compress(y)

    def level(self, y: Tensor) -> Tensor:
        """RMS from the magnitudes by Parseval: ``sum |X|^2 ~ (n_fft sum w^2 / 2 hop) sum x^2``.

        ``y`` holds the one-sided spectrum, hence the factor 2 (exact up to the DC and Nyquist
        bins and the reflect-padded edges).
        """
        window_energy = torch.hann_window(self.n_fft, dtype=y.dtype, device=y.device).pow(2).sum()
        energy = 2 * y.pow(2).flatten(1).sum(1) * self.hop_length / (self.n_fft * window_energy)
        return (energy / self.num_samples).sqrt()

    def mel_target(self, y: Tensor, mel: MelConfig) -> tuple[Tensor, float]:
        fb = mel_filterbank(mel, y.dtype, y.device)
        mel_mag = (fb @ y).transpose(-1, -2)[..., : mel.frames(self.num_samples), :]
        return log_compress(mel_mag), 1.0

    def _griffin_lim(self, y: Tensor, init: Tensor | None) -> Tensor:
        generator = torch.Generator(device=y.device).manual_seed(self.seed)
        return fast_griffin_lim(y, self.num_samples, self.n_fft, self.hop_length,
                                self.iterations, init=init, generator=generator)

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        return self._griffin_lim(y, init=x_hat)

    def griffin_lim(self, y: Tensor) -> Tensor:
        """Fast Griffin-Lim from a random phase (:attr:`seed`)."""
        return self._griffin_lim(y, init=None)

    def measurement_units(self) -> float:
        return 1 / self.hop_length

    def measurement_size(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1

    def covered_samples(self, y: Tensor) -> int:
        return (y.shape[-1] - 1) * self.hop_length

    def _spec_args(self) -> dict:
        return {"n_fft": self.n_fft, "hop_length": self.hop_length,
                "iterations": self.iterations, "seed": self.seed}
