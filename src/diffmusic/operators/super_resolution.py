"""Bandwidth extension: restore the band above the Nyquist frequency of a low-rate recording."""

from __future__ import annotations

import math
from typing import ClassVar

import julius
import numpy as np
import torch
from scipy import signal
from torch import Tensor
from torch.nn import functional as F

from diffmusic.dsp import (
    MelConfig,
    add_noise,
    fit_length,
    istft,
    log_mel,
    nearest_fft_size,
    resample,
    stft,
)
from diffmusic.dsp.spectral import hz_to_mel, mel_to_hz
from diffmusic.metrics import lsd_hf
from diffmusic.names import AUTO_CUTOFF, LOWPASS_FILTERS, SUPER_RESOLUTION_FACTORS
from diffmusic.operators.base import Operator

N_FFT = 1024
"""FFT size of the high-pass in :meth:`SuperResolution.invented`."""

DEFAULT_ORDER = 8
"""Order of :meth:`SuperResolution.degrade`'s low-pass, and the model's steepness until it is
read from a recording."""
CHEBYSHEV_RIPPLE_DB = 1.0
"""Pass-band ripple of the Chebyshev (type I) low-pass of :meth:`SuperResolution.degrade`."""
SPECTRUM_SECONDS = 0.064
"""STFT window of the long-term spectrum :func:`estimate_lowpass` reads."""
MIN_DROP_DB = 20.0
"""Least fall in dB of the spectrum, from the half-octave below a frequency to everything
:data:`TRANSITION` above it, that marks the edge of a band-limited recording."""
TRANSITION = 0.1
"""Share of the cutoff frequency that a low-pass's transition band may take."""
EDGE_DB, STOP_DB = 6.0, 30.0
"""Levels below the pass band's trend (dB) whose frequencies give the cutoff and steepness."""
MAX_ORDER = 64.0
"""Steepest model the estimate returns."""

CROSSOVER_ZEROS = 32
"""Zero crossings on each side of the crossover's windowed sinc (``julius`` ``zeros``): a
transition band about ``2 / 32`` of the cutoff frequency wide (250 Hz at 4 kHz)."""


def lowpass_response(freqs: Tensor, cutoff: float, order: float) -> Tensor:
    """Magnitude of the model low-pass, ``1 / sqrt(1 + (f / cutoff) ** (2 order))`` (-3 dB at
    ``cutoff``), at ``freqs`` in Hz."""
    return (1 + (freqs / cutoff) ** (2 * order)).rsqrt()


def estimate_lowpass(y: Tensor, rate: int) -> tuple[float, float] | None:
    """The cutoff (Hz, the model's -3 dB point) and order of the low-pass that band-limited the
    recording ``y`` ``(C, N)`` at ``rate``, from its long-term spectrum (all channels), or
    ``None`` where the spectrum shows no such edge.

    The edge is the lowest frequency ``f`` from which everything above ``(1 + TRANSITION) f``
    lies :data:`MIN_DROP_DB` below the median of the half-octave under ``f``. A line fitted
    (dB against Hz) to the spectrum between 60 % and 90 % of ``f`` is the pass band's trend;
    where the spectrum falls :data:`EDGE_DB` and :data:`STOP_DB` below it give the order of
    the model and then its cutoff.
    """
    n_fft = nearest_fft_size(SPECTRUM_SECONDS * rate)
    power = stft(y.reshape(-1, y.shape[-1]), n_fft, n_fft // 4).abs().pow(2).mean((0, -1))
    level = 10 * torch.log10(power.double() + 1e-20)
    level = F.avg_pool1d(level[None, None], 9, 1, 4, count_include_pad=False)[0, 0]
    bins = level.shape[0]
    freqs = torch.arange(bins, dtype=torch.float64) * rate / n_fft
    # the loudest level at or above each bin
    ceiling = level.flip(0).cummax(0).values.flip(0)
    top = None
    for k in range(max(8, round(200 * n_fft / rate)), bins):
        above = math.ceil(k * (1 + TRANSITION))
        if above >= bins:
            break
        if level[round(k / 2 ** 0.5): k + 1].median() - ceiling[above] >= MIN_DROP_DB:
            top = k
            break
    if top is None:
        return None
    band = slice(round(0.6 * top), max(round(0.9 * top), round(0.6 * top) + 2))
    slope, offset = np.polyfit(freqs[band].numpy(), level[band].numpy(), 1)
    below = level - (slope * freqs + offset)
    above = torch.arange(level.shape[0]) > band.stop

    def first_fall(db: float) -> float:
        index = torch.nonzero(above & (below <= -db)).flatten()
        return float(freqs[index[0]]) if index.numel() else float(freqs[top])

    edge, stop = first_fall(EDGE_DB), first_fall(STOP_DB)
    ratio = (10 ** (STOP_DB / 10) - 1) / (10 ** (EDGE_DB / 10) - 1)
    order = (min(MAX_ORDER, math.log(ratio) / (2 * math.log(stop / edge))) if stop > edge
             else MAX_ORDER)
    return edge / (10 ** (EDGE_DB / 10) - 1) ** (1 / (2 * order)), order


class SuperResolution(Operator):
    """Bandwidth extension of a recording that lost its upper band.

    ``A(x)`` = anti-aliased windowed-sinc resampling to ``sample_rate / factor``; or, with a
    ``cutoff``, the low-pass :func:`lowpass_response` at the full rate (a recording band-limited
    by a filter nobody wrote down: ``cutoff="auto"`` reads the cutoff and steepness from the
    recording, :meth:`fitted`).

    Args:
        sample_rate: Rate of ``x`` in Hz.
        num_samples: Clip length in samples (a multiple of ``factor``).
        factor: Downsampling factor (2, 4 or 8), without ``cutoff``.
        cutoff: The low-pass's cutoff in Hz, or ``"auto"``.
        order: Its order (the model's steepness; :meth:`degrade`'s filter order).
        filter: The filter :meth:`degrade` band-limits with: ``cheby1`` (1 dB ripple, the
            pass band's edge at ``cutoff``) or ``butter`` (-3 dB at ``cutoff``).
        **kwargs: ``noise_snr`` and ``loss_domain`` of :class:`Operator`.

    Raises:
        ValueError: A bad factor, a cutoff at or above the Nyquist frequency, a bad filter.
    """

    task: ClassVar[str] = "super_resolution"
    options: ClassVar[tuple[str, ...]] = ("factor", "cutoff", "order", "filter")
    baseline_names: ClassVar[tuple[str, ...]] = ("sinc",)
    default_baseline: ClassVar[str] = "sinc"
    factors: ClassVar[tuple[int, ...]] = SUPER_RESOLUTION_FACTORS
    projection_passes: ClassVar[int] = 3

    def __init__(self, sample_rate: int, num_samples: int, factor: int = 2,
                 cutoff: float | str | None = None, order: float = DEFAULT_ORDER,
                 filter: str = "cheby1", **kwargs) -> None:
        super().__init__(sample_rate, num_samples, **kwargs)
        if cutoff is None and factor not in self.factors:
            raise ValueError(f"super-resolution factor must be one of {self.factors}, got {factor}")
        if cutoff is None and (sample_rate % factor or num_samples % factor):
            raise ValueError(f"sample rate {sample_rate} and length {num_samples} must be "
                             f"multiples of the factor {factor}")
        if cutoff is not None and cutoff != AUTO_CUTOFF and not 0 < float(cutoff) < sample_rate / 2:
            raise ValueError(f"cutoff {cutoff} Hz must lie between 0 and the Nyquist frequency "
                             f"{sample_rate / 2:g} Hz")
        if filter not in LOWPASS_FILTERS:
            raise ValueError(f"unknown filter {filter!r}; choose {', '.join(LOWPASS_FILTERS)}")
        if not order > 0:
            raise ValueError(f"filter order must be positive, got {order}")
        self.factor = 1 if cutoff is not None else factor
        self.cutoff = cutoff if cutoff in (None, AUTO_CUTOFF) else float(cutoff)
        self.order = float(order)
        self.filter = filter

    @property
    def band_limited(self) -> bool:
        """Whether the measurement is a low-passed recording at the full rate (``cutoff``)."""
        return self.cutoff is not None

    @property
    def measurement_rate(self) -> int:
        return self.sample_rate // self.factor

    @property
    def cutoff_hz(self) -> float:
        """The measurement's upper band edge in Hz: its Nyquist frequency, or the cutoff.

        Raises:
            ValueError: ``cutoff="auto"`` before :meth:`fitted`.
        """
        if self.cutoff == AUTO_CUTOFF:
            raise ValueError("the cutoff is not known yet: give cutoff or call fitted(y)")
        return self.measurement_rate / 2 if self.cutoff is None else self.cutoff

    def fitted(self, y: Tensor, rate: int | None = None) -> SuperResolution:
        """With ``cutoff="auto"``: this operator with the cutoff and order read from ``y``
        ``(B, N)`` at ``rate`` (:func:`estimate_lowpass`); else itself.

        Raises:
            ValueError: The spectrum shows no cutoff, or one too high for this rate.
        """
        if self.cutoff != AUTO_CUTOFF:
            return self
        found = estimate_lowpass(y, rate or self.sample_rate)
        if found is None:
            raise ValueError(f"no cutoff found: the spectrum does not fall {MIN_DROP_DB:g} dB "
                             "below its content (give --cutoff HZ or --factor)")
        cutoff, order = found
        if cutoff >= 0.95 * self.sample_rate / 2:
            raise ValueError(f"the content reaches {cutoff:.0f} Hz: nothing below "
                             f"{0.95 * self.sample_rate / 2:.0f} Hz for a "
                             f"{self.sample_rate} Hz prior to extend")
        return self._with(cutoff=round(cutoff, 1), order=round(order, 2))

    def response(self, n_fft: int, like: Tensor) -> Tensor:
        """The model low-pass at the bins of an ``n_fft`` STFT, ``(n_fft // 2 + 1, 1)``."""
        freqs = torch.arange(n_fft // 2 + 1, dtype=like.dtype, device=like.device)
        return lowpass_response(freqs * self.sample_rate / n_fft, self.cutoff_hz,
                                self.order)[:, None]

    def forward(self, x: Tensor) -> Tensor:
        if not self.band_limited:
            return resample(x, self.sample_rate, self.measurement_rate)
        spec = stft(x, N_FFT, N_FFT // 4)
        return istft(spec * self.response(N_FFT, x), x.shape[-1], N_FFT, N_FFT // 4)

    def degrade(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """With a cutoff, a real IIR low-pass (:attr:`filter`, :attr:`order`, forwards and
        backwards) rather than the model: the restoration does not know it."""
        if not self.band_limited:
            return super().degrade(x, generator)
        design = signal.cheby1 if self.filter == "cheby1" else signal.butter
        args = (CHEBYSHEV_RIPPLE_DB,) if self.filter == "cheby1" else ()
        sos = design(round(self.order), *args, self.cutoff_hz, fs=self.sample_rate,
                     output="sos")
        y = torch.from_numpy(signal.sosfiltfilt(sos, x.double().numpy(), axis=-1).copy())
        y = y.to(x.dtype)
        return y if self.noise_snr is None else add_noise(y, self.noise_snr, generator)

    def upsample(self, y: Tensor) -> Tensor:
        """Windowed-sinc interpolation of ``y`` back to :attr:`sample_rate` (a band-limited
        measurement is at that rate already), shape ``(..., N)``."""
        if self.band_limited:
            return y[..., : self.num_samples]
        return resample(y, self.measurement_rate, self.sample_rate)[..., : self.num_samples]

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Replace the low band of ``x_hat`` by the measured one.

        Resampled measurements: iterated back-projection, each pass adding the sinc-interpolated
        residual ``y - A(x)``; the passes after the first sharpen the filter's transition band.
        Band-limited ones: ``y + (1 - H) x_hat`` per STFT bin, ``H`` the model low-pass.
        """
        if self.band_limited:
            keep = 1 - self.response(N_FFT, y)
            mixed = stft(y, N_FFT, N_FFT // 4) + keep * stft(x_hat.to(y.dtype), N_FFT,
                                                             N_FFT // 4)
            return istft(mixed, y.shape[-1], N_FFT, N_FFT // 4)
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
        if not self.band_limited:
            return {"factor": self.factor}
        return {"cutoff": self.cutoff, "order": self.order, "filter": self.filter}

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
