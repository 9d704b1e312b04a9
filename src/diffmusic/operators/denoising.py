"""Denoising: remove additive broadband noise (hiss) whose spectrum is read from the recording."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import julius
import torch
from torch import Tensor
from torch.nn import functional as F

from diffmusic.dsp import MelConfig, istft, mel_filterbank, nearest_fft_size, resample, stft
from diffmusic.dsp.spectral import LOG_FLOOR
from diffmusic.names import NOISE_COLOURS
from diffmusic.operators.base import Operator, resampled_like, weighted_mean

NoiseColour = Literal["white", "pink", "brown"]
DEFAULT_SNR = 20.0
"""SNR in dB that :meth:`Denoising.degrade` adds noise at when none is given."""
N_FFT = 1024
"""STFT size (Hann, hop a quarter) of the noise estimate and the Wiener gains at 16 kHz; scaled
with the rate."""
SMOOTH_FRAMES = 4
"""Frames on each side over which the periodogram is averaged before its minimum is taken."""
MIN_QUANTILE = 0.01
"""Quantile over time of the smoothed periodogram that minimum statistics read per bin."""
MEDIAN_BINS = 16
"""Bins on each side of the running median over frequency that smooths the estimate: hiss is
broadband, so a narrow peak in it is a sustained tone of the music (a drone), not noise."""
MIN_SECONDS = 0.5
"""Least audio (or noise sample) in seconds from which the noise spectrum is estimated."""
SUBTRACTION_SHARE = 0.65
"""Weight of the spectral subtraction's log-power in the clean power of the projection's Wiener
gains (the rest is the restoration's; benchmarks/RESULTS.md)."""
GAIN_FLOOR = 0.1
"""Least Wiener gain (-20 dB): a floor against the warbling of gains that hit zero."""


def noise_power(y: Tensor, n_fft: int, quantile: float = MIN_QUANTILE) -> Tensor:
    """The noise's mean power per STFT bin of each signal of ``y`` ``(B, N)`` by minimum
    statistics (Martin 2001, simplified for stationary broadband noise): the periodogram
    averaged over ``2 * SMOOTH_FRAMES + 1`` frames, its ``quantile`` over time, a running median
    over ``2 * MEDIAN_BINS + 1`` bins, times the ratio of the mean to all that for noise alone
    (calibrated on white noise of the same length).

    Returns:
        ``(B, n_fft // 2 + 1)``.
    """
    def low_quantile(x: Tensor) -> Tensor:
        power = stft(x, n_fft, n_fft // 4).abs().pow(2)
        smooth = F.avg_pool1d(power.flatten(0, 1)[:, None], 2 * SMOOTH_FRAMES + 1, 1,
                              SMOOTH_FRAMES, count_include_pad=False)[:, 0]
        low = smooth.reshape(power.shape).quantile(quantile, dim=-1)
        padded = F.pad(low[:, None], (MEDIAN_BINS, MEDIAN_BINS), mode="replicate")[:, 0]
        return padded.unfold(-1, 2 * MEDIAN_BINS + 1, 1).median(-1).values

    reference = torch.randn(1, y.shape[-1], generator=torch.Generator().manual_seed(0),
                            dtype=y.dtype)
    expected = stft(reference, n_fft, n_fft // 4).abs().pow(2).mean()
    bias = expected / low_quantile(reference)[0, 1:-1].mean()
    return low_quantile(y) * bias


def coloured_noise(shape: tuple[int, ...], colour: str, generator: torch.Generator | None,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """Gaussian noise of unit variance with a flat (white), 1/f (pink) or 1/f^2 (brown) power
    spectrum, ``shape`` ``(..., N)``.

    Raises:
        ValueError: An unknown colour.
    """
    if colour not in NOISE_COLOURS:
        raise ValueError(f"unknown noise {colour!r}; choose {', '.join(NOISE_COLOURS)}")
    white = torch.randn(shape, generator=generator, dtype=dtype)
    slope = NOISE_COLOURS.index(colour)  # power falls as f ** -slope
    spectrum = torch.fft.rfft(white)
    f = torch.arange(spectrum.shape[-1], dtype=dtype).clamp_min(1)
    noise = torch.fft.irfft(spectrum * f ** (-slope / 2), shape[-1])
    return noise / noise.pow(2).mean(-1, keepdim=True).sqrt()


def _smooth(power: Tensor) -> Tensor:
    """A power spectrogram ``(B, F, T)`` averaged over three frames."""
    flat = F.avg_pool1d(power.flatten(0, 1)[:, None], 3, 1, 1, count_include_pad=False)
    return flat.reshape(power.shape)


class Denoising(Operator):
    """``y = x + n``: the recording with additive stationary noise of a known (estimated) mean
    power per STFT bin.

    Args:
        sample_rate: Sample rate in Hz.
        num_samples: Clip length in samples.
        noise_power: The noise's mean power per STFT bin (:data:`N_FFT` at 16 kHz), one list for
            every signal or one per signal; ``None``: estimated from the measurement
            (:meth:`fitted`).
        noise_sample: ``(start, end)`` in seconds of a noise-only stretch to estimate it from
            (its mean periodogram) instead of minimum statistics over the whole measurement.
        snr: SNR in dB of the noise :meth:`degrade` adds.
        noise: Its colour: white, pink or brown.
        **kwargs: ``noise_snr`` and ``loss_domain`` of :class:`Operator`.
    """

    task: ClassVar[str] = "denoising"
    options: ClassVar[tuple[str, ...]] = ("noise_sample", "snr", "noise")
    baseline_names: ClassVar[tuple[str, ...]] = ("noisy", "wiener")
    default_baseline: ClassVar[str] = "wiener"

    def __init__(self, sample_rate: int, num_samples: int,
                 noise_power: Sequence[float] | Sequence[Sequence[float]] | None = None,
                 noise_sample: Sequence[float] | None = None, snr: float = DEFAULT_SNR,
                 noise: NoiseColour = "white", **kwargs) -> None:
        super().__init__(sample_rate, num_samples, **kwargs)
        if noise not in NOISE_COLOURS:
            raise ValueError(f"unknown noise {noise!r}; choose {', '.join(NOISE_COLOURS)}")
        if not math.isfinite(snr):
            raise ValueError(f"SNR must be a finite number of dB, got {snr}")
        if noise_sample is not None:
            start, end = (float(v) for v in noise_sample)
            if not 0 <= start < end <= num_samples / sample_rate + 1e-9:
                raise ValueError(f"noise sample {start:g}:{end:g} s must lie inside the "
                                 f"{num_samples / sample_rate:.2f} s recording")
            if end - start < MIN_SECONDS:
                raise ValueError(f"noise sample {start:g}:{end:g} s is shorter than "
                                 f"{MIN_SECONDS:g} s")
            noise_sample = [start, end]
        self.n_fft = nearest_fft_size(N_FFT * sample_rate / 16000)
        self.noise_power = None if noise_power is None else (
            torch.as_tensor(noise_power, dtype=torch.float32).reshape(
                -1, self.n_fft // 2 + 1).tolist())
        self.noise_sample = noise_sample
        self.snr = float(snr)
        self.noise = noise

    def powers(self, like: Tensor) -> Tensor:
        """The noise power per bin as ``(B, F, 1)`` (one spectrum broadcast to every signal).

        Raises:
            ValueError: No noise spectrum yet (see :meth:`fitted`), or one per signal for
                another number of signals.
        """
        if self.noise_power is None:
            raise ValueError("the noise spectrum is not known: give noise_power or call "
                             "fitted(y)")
        power = torch.tensor(self.noise_power, dtype=like.dtype, device=like.device)
        if power.shape[0] not in (1, like.shape[0]):
            raise ValueError(f"{power.shape[0]} noise spectra for {like.shape[0]} signals")
        return power.expand(like.shape[0], -1)[..., None]

    def fitted(self, y: Tensor, rate: int | None = None) -> Denoising:
        """This operator with the noise spectrum of each signal of ``y`` ``(B, N)`` (at ``rate``,
        default :attr:`sample_rate`): the mean periodogram of :attr:`noise_sample`, else minimum
        statistics (:func:`noise_power`), at this operator's rate.

        Raises:
            ValueError: Too little audio to estimate it from.
        """
        if self.noise_power is not None:
            return self
        if rate is not None and rate != self.sample_rate:
            y = resample(y, rate, self.sample_rate)
        if self.noise_sample is not None:
            a, b = (round(t * self.sample_rate) for t in self.noise_sample)
            part = y[..., a:b]
            if part.shape[-1] < MIN_SECONDS * self.sample_rate:
                raise ValueError(f"the noise sample holds {part.shape[-1] / self.sample_rate:.2f}"
                                 f" s of audio, less than {MIN_SECONDS:g} s")
            power = self.spectrum(part).abs().pow(2).mean(-1)
        else:
            seconds = y.shape[-1] / self.sample_rate
            if seconds < MIN_SECONDS:
                raise ValueError(f"{seconds:.2f} s is too short to estimate the noise "
                                 f"(needs {MIN_SECONDS:g} s; give --noise-sample)")
            power = noise_power(y, self.n_fft)
        return self._with(noise_power=power.clamp_min(LOG_FLOOR ** 2).tolist())

    def rescaled(self, gain: Tensor) -> Denoising:
        """The noise power scaled with the measurement, per signal."""
        power = self.powers(gain[:, None])[..., 0] * gain[:, None] ** 2
        return self._with(noise_power=power.tolist())

    def forward(self, x: Tensor) -> Tensor:
        """The noiseless part of the measurement: ``x`` itself (the noise is random)."""
        return x

    def degrade(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` plus :attr:`noise` at :attr:`snr` dB (relative to each signal's power)."""
        power = x.pow(2).mean(-1, keepdim=True)
        noise = coloured_noise(tuple(x.shape), self.noise, generator, x.dtype)
        return super().degrade(x, generator) + noise * (power / 10 ** (self.snr / 10)).sqrt()

    def loss(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """The noise-aware log-mel loss: the mel power of ``x_hat`` plus the noise's against
        the measurement's (``E|Y|^2 = |X|^2 + N`` per bin), so that the restoration is not
        pulled towards the noise floor."""
        mel = MelConfig(sample_rate=self.sample_rate, fmax=self.sample_rate / 2)
        bank = mel_filterbank(mel, y.dtype, y.device)
        noise = bank @ self._resampled_powers(mel.n_fft, y)

        def mel_power(x: Tensor) -> Tensor:
            return bank @ stft(x, mel.n_fft, mel.hop_length).abs().pow(2)

        floor = LOG_FLOOR ** 2
        diff = (torch.log(mel_power(x_hat) + noise + floor)
                - torch.log(mel_power(y) + floor))
        return weighted_mean(diff.pow(2), 1.0)

    def _resampled_powers(self, n_fft: int, like: Tensor) -> Tensor:
        """The noise power per bin of an ``n_fft`` STFT, ``(B, n_fft // 2 + 1, 1)`` (linear
        interpolation over frequency, scaled with the window's energy)."""
        power = self.powers(like)
        if n_fft == self.n_fft:
            return power
        bins = F.interpolate(power.transpose(1, 2), n_fft // 2 + 1, mode="linear",
                             align_corners=True).transpose(1, 2)
        return bins * n_fft / self.n_fft

    def level(self, y: Tensor) -> Tensor:
        """RMS of the measurement less the noise's (Hann window energy ``3 n_fft / 8``)."""
        noise = self.powers(y)[:, 1:-1, 0].mean(-1) / (3 * self.n_fft / 8)
        return (y.pow(2).mean(-1) - noise).clamp_min(1e-4 * y.pow(2).mean(-1)).sqrt()

    def wiener_filter(self, y: Tensor, spec: Tensor, clean_power: Tensor) -> Tensor:
        """``y`` (``(B, N)``, its STFT ``spec``) through the Wiener gains ``S / (S + N)`` (at
        least :data:`GAIN_FLOOR`) of a clean power ``S`` per STFT bin, ``(B, F, T)``, in ``y``'s
        phase."""
        gain = clean_power / (clean_power + self.powers(y))
        return istft(spec * gain.clamp(GAIN_FLOOR, 1), y.shape[-1], self.n_fft, self.n_fft // 4)

    def spectrum(self, x: Tensor) -> Tensor:
        """The STFT the noise power, the gains and the projection use, ``(B, F, T)``."""
        return stft(x, self.n_fft, self.n_fft // 4)

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """A Wiener combination of the measurement and the restoration: ``y`` through the gains
        whose clean power is, per bin, the weighted geometric mean of the restoration's power
        and the spectral subtraction's (:meth:`subtracted_power`, weight
        :data:`SUBTRACTION_SHARE`), each smoothed over three frames: the restoration shapes the
        gains, the measurement keeps them from following a restoration that strays."""
        spec = self.spectrum(y)
        restored = _smooth(self.spectrum(x_hat.to(y.dtype)).abs().pow(2))
        floor = LOG_FLOOR ** 2
        clean = ((restored + floor) ** (1 - SUBTRACTION_SHARE)
                 * (self.subtracted_power(y, spec) + floor) ** SUBTRACTION_SHARE)
        return self.wiener_filter(y, spec, clean)

    def subtracted_power(self, y: Tensor, spec: Tensor) -> Tensor:
        """Power spectral subtraction ``max(|Y|^2 - N, 0)`` of ``y`` (its STFT ``spec``),
        smoothed over three frames, ``(B, F, T)``."""
        return _smooth((spec.abs().pow(2) - self.powers(y)).clamp_min(0))

    def noisy(self, y: Tensor) -> Tensor:
        """The noisy recording itself."""
        return y

    def wiener(self, y: Tensor) -> Tensor:
        """The classical denoiser with the same noise estimate: Wiener gains whose clean power
        is the spectral subtraction (:meth:`subtracted_power`)."""
        spec = self.spectrum(y)
        return self.wiener_filter(y, spec, self.subtracted_power(y, spec))

    def keep_original(self, original: Tensor, restored: Tensor, rate: int, restored_rate: int,
                      out_rate: int) -> Tensor:
        """Below 90 % of the restoration's Nyquist frequency the restoration; above it (a
        44.1 kHz recording's upper band) the classical Wiener denoiser run on the original at
        its own rate, with its own noise estimate."""
        out = resampled_like(original, restored, rate, restored_rate, out_rate)
        if rate <= restored_rate:
            return out
        at_rate = type(self)(rate, original.shape[-1], noise_sample=self.noise_sample)
        upper = at_rate.fitted(original).wiener(original)
        cutoff = 0.45 * restored_rate / rate
        high = resampled_like(original, julius.highpass_filter(upper, cutoff), rate, rate,
                              out_rate)
        return julius.lowpass_filter(out, 0.45 * restored_rate / out_rate) + high

    def _spec_args(self) -> dict:
        return {"noise_power": self.noise_power, "noise_sample": self.noise_sample,
                "snr": self.snr, "noise": self.noise}
