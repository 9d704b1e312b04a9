"""Declipping: restore the peaks of a recording that was clipped at a level."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from diffmusic.dsp import istft, nearest_fft_size, stft
from diffmusic.operators.base import Operator, resampled_like

DEFAULT_INPUT_SDR = 7.0
"""Input SDR in dB that :meth:`Declipping.degrade` clips to when no level is given (the milder of
the benchmark's two severities, 3 and 7 dB)."""
PILE_UP_WIDTH = 0.01
"""Width of the top bin of the sample histogram, as a fraction of the peak: clipped samples sit
in it."""
MIN_CLIPPED_SHARE = 2e-4
"""Least share of a channel's samples in that top bin for it to count as clipped."""
MIN_PILE_UP = 3.0
"""Least ratio of the top bin's count to the next bin's: a clipped channel piles up at its level,
an unclipped one thins out towards its peak."""
CLIPPED_TOLERANCE = 0.995
"""A sample at or above this fraction of the level counts as clipped (a resampled recording's
plateaus ripple)."""
IHT_N_FFT = 1024
"""STFT size (Hann, hop a quarter) of the sparsity baseline and of the projection's blend at
16 kHz; scaled with the rate."""
IHT_ITERATIONS = 60
"""Iterations of :meth:`Declipping.consistent_iht`."""
IHT_KEEP = (0.01, 0.25)
"""Share of STFT coefficients :meth:`Declipping.consistent_iht` keeps at its first and last
iteration (growing linearly)."""


def clip_levels(y: Tensor) -> list[float | None]:
    """The level at which each channel of ``y`` ``(B, N)`` was clipped, from the pile-up of its
    sample histogram at the peak (``None`` for a channel that shows no clipping).

    The level is the median magnitude of the samples within :data:`PILE_UP_WIDTH` of the peak,
    when they are at least :data:`MIN_CLIPPED_SHARE` of the channel and :data:`MIN_PILE_UP`
    times as many as those in the bin below.
    """
    levels: list[float | None] = []
    for channel in y.abs().reshape(-1, y.shape[-1]):
        peak = float(channel.max())
        if peak <= 0:
            levels.append(None)
            continue
        top = channel >= peak * (1 - PILE_UP_WIDTH)
        below = (channel >= peak * (1 - 2 * PILE_UP_WIDTH)) & ~top
        count = int(top.sum())
        clipped = (count >= MIN_CLIPPED_SHARE * channel.numel()
                   and count >= MIN_PILE_UP * max(1, int(below.sum())))
        levels.append(float(channel[top].median()) if clipped else None)
    return levels


def level_for_sdr(x: Tensor, sdr_db: float, iterations: int = 40) -> Tensor:
    """Per signal of ``x`` ``(B, N)``, the clip level whose clipping has input SDR ``sdr_db``
    (bisection: the SDR grows with the level), shape ``(B, 1)``.

    Raises:
        ValueError: ``sdr_db`` not a positive number of dB.
    """
    if not (math.isfinite(sdr_db) and sdr_db > 0):
        raise ValueError(f"input SDR must be a positive number of dB, got {sdr_db}")
    low = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
    high = x.abs().amax(-1, keepdim=True)
    energy = x.pow(2).sum(-1, keepdim=True).clamp_min(1e-20)
    for _ in range(iterations):
        mid = (low + high) / 2
        error = (x - x.clamp(-mid, mid)).pow(2).sum(-1, keepdim=True).clamp_min(1e-20)
        too_low = 10 * torch.log10(energy / error) < sdr_db
        low, high = torch.where(too_low, mid, low), torch.where(too_low, high, mid)
    return (low + high) / 2


class Declipping(Operator):
    """``A(x) = clamp(x, -L, L)``: a recording clipped at level ``L`` (one per signal).

    The reliable samples (below the level) are the measurement; every clipped sample constrains
    the signal to lie at or beyond the level, with the clipped sample's sign.

    Args:
        sample_rate: Sample rate in Hz.
        num_samples: Clip length in samples.
        clip_level: The level (full scale 1), one for all signals or one per signal; ``None``:
            read from the measurement (:meth:`fitted`, :func:`clip_levels`).
        input_sdr: Input SDR in dB that :meth:`degrade` clips a clean signal to when
            ``clip_level`` is ``None`` (the benchmark's severities; a restoration reads the
            level from the measurement instead).
        **kwargs: ``noise_snr`` and ``loss_domain`` of :class:`Operator`.
    """

    task: ClassVar[str] = "declipping"
    options: ClassVar[tuple[str, ...]] = ("clip_level", "input_sdr")
    baseline_names: ClassVar[tuple[str, ...]] = ("clipped", "consistent_iht")
    default_baseline: ClassVar[str] = "consistent_iht"

    def __init__(self, sample_rate: int, num_samples: int,
                 clip_level: float | Sequence[float] | None = None,
                 input_sdr: float | None = DEFAULT_INPUT_SDR, **kwargs) -> None:
        super().__init__(sample_rate, num_samples, **kwargs)
        levels = None if clip_level is None else (
            [float(clip_level)] if isinstance(clip_level, (int, float)) else
            [float(v) for v in clip_level])
        if levels is not None and not all(v > 0 for v in levels):
            raise ValueError(f"clip level must be positive, got {clip_level}")
        if input_sdr is not None and not (math.isfinite(input_sdr) and input_sdr > 0):
            raise ValueError(f"input SDR must be a positive number of dB, got {input_sdr}")
        self.clip_level = levels
        self.input_sdr = input_sdr
        self.n_fft = nearest_fft_size(IHT_N_FFT * sample_rate / 16000)

    def levels(self, like: Tensor) -> Tensor:
        """The clip levels as ``(B, 1)`` (one level broadcast to every signal).

        Raises:
            ValueError: The operator has no level yet (see :meth:`fitted`), or one per signal
                for another number of signals.
        """
        if self.clip_level is None:
            raise ValueError("the clip level is not known: give clip_level or call fitted(y)")
        levels = torch.tensor(self.clip_level, dtype=like.dtype, device=like.device)
        if levels.numel() not in (1, like.shape[0]):
            raise ValueError(f"{levels.numel()} clip levels for {like.shape[0]} signals")
        return levels.expand(like.shape[0])[:, None]

    def fitted(self, y: Tensor, rate: int | None = None) -> Declipping:
        """This operator with the clip level of each signal of ``y`` ``(B, N)`` read from its
        histogram (:func:`clip_levels`), unless it was given; best at the recording's own
        ``rate`` (a resampled plateau ripples), which the level does not depend on.

        Raises:
            ValueError: A signal shows no clipping (nothing to declip).
        """
        if self.clip_level is not None:
            return self
        levels = clip_levels(y)
        if None in levels:
            raise ValueError("no clipping found: the samples do not pile up at a level "
                             "(give --clip-level to declip anyway)")
        return self._with(clip_level=levels)

    def rescaled(self, gain: Tensor) -> Declipping:
        """The level scaled with the measurement, per signal."""
        return self._with(clip_level=(self.levels(gain[:, None]) * gain[:, None])[:, 0].tolist())

    def measurement_shape(self) -> tuple[int, ...]:
        """The clipped audio: one signal's samples (known before the level is)."""
        return (self.num_samples,)

    def forward(self, x: Tensor) -> Tensor:
        level = self.levels(x)
        return torch.minimum(torch.maximum(x, -level), level)

    def degrade(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Clipping at the level, or at the level of :attr:`input_sdr` when none is given."""
        if self.clip_level is not None or self.input_sdr is None:
            return super().degrade(x, generator)
        level = level_for_sdr(x.reshape(-1, x.shape[-1]), self.input_sdr)
        return self._with(clip_level=level[:, 0].tolist()).degrade(x, generator)

    def clipped_mask(self, y: Tensor) -> Tensor:
        """1 where ``y`` ``(B, N)`` sits at the level (the sample was clipped), else 0."""
        return (y.abs() >= CLIPPED_TOLERANCE * self.levels(y)).to(y.dtype)

    def consistent(self, x: Tensor, y: Tensor) -> Tensor:
        """The signal closest to ``x`` that clips to ``y``: the reliable samples of ``y``, and
        on clipped samples ``x`` where it lies beyond ``y`` with ``y``'s sign, else ``y``
        (within :data:`CLIPPED_TOLERANCE` of the level a sample may be either, and the truth
        is in the set either way)."""
        clipped = self.clipped_mask(y)
        beyond = torch.maximum(x * torch.sign(y), y.abs()) * torch.sign(y)
        return clipped * beyond + (1 - clipped) * y

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Consistent iterative hard thresholding started from the restoration made consistent
        with ``y`` (:meth:`consistent_iht`): the sparsity prior has the last word, the
        restoration gives it its start. (Blending the restoration's magnitudes into the
        sparsity estimate lost to it: the embedded prior's decoder and vocoder lose more than
        clipping at these levels; benchmarks/RESULTS.md.)"""
        return self.consistent_iht(y, start=x_hat.to(y.dtype))

    def level(self, y: Tensor) -> Tensor:
        """RMS of the reliable samples (the clipped peaks would read low)."""
        reliable = 1 - self.clipped_mask(y)
        return ((y.pow(2) * reliable).sum(-1) / reliable.sum(-1).clamp_min(1)).sqrt()

    def clipped(self, y: Tensor) -> Tensor:
        """The clipped recording itself."""
        return y

    def consistent_iht(self, y: Tensor, start: Tensor | None = None) -> Tensor:
        """Consistent iterative hard thresholding (Kitić, Jacques, Madhu, Hopwood, Spriet and De
        Vleeschouwer 2013): keep the largest STFT coefficients of the estimate, a growing share
        (:data:`IHT_KEEP`), and return to the consistent set, :data:`IHT_ITERATIONS` times,
        from ``y`` or from ``start`` ``(B, N)`` made consistent."""
        x = y if start is None else self.consistent(start, y)
        hop = self.n_fft // 4
        for share in torch.linspace(*IHT_KEEP, IHT_ITERATIONS).tolist():
            spec = stft(x, self.n_fft, hop)
            flat = spec.abs().flatten(1)
            keep = max(1, round(share * flat.shape[1]))
            threshold = flat.kthvalue(flat.shape[1] - keep + 1, dim=1).values
            spec = spec * (spec.abs() >= threshold.view(-1, *[1] * (spec.dim() - 1)))
            x = self.consistent(istft(spec, y.shape[-1], self.n_fft, hop), y)
        return x

    def keep_original(self, original: Tensor, restored: Tensor, rate: int, restored_rate: int,
                      out_rate: int) -> Tensor:
        """At the original's own rate every reliable sample is the original's, bit for bit, and
        the clipped ones are the restoration's, held at or beyond the original's
        (:meth:`consistent`; the levels were read from the original itself, :meth:`fitted`)."""
        out = resampled_like(original, restored, rate, restored_rate, out_rate)
        return self.consistent(out, original) if out_rate == rate else out

    def _spec_args(self) -> dict:
        return {"clip_level": self.clip_level, "input_sdr": self.input_sdr}
