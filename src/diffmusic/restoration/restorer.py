"""One object that holds a prior and its settings and restores windows, measurements of any
length and whole recordings (in the spirit of demucs's ``api.Separator``).

Example::

    from functools import partial
    from diffmusic.operators import Inpainting, SuperResolution
    from diffmusic.restoration import Restorer, Settings

    restorer = Restorer(prior, Settings(steps=50, seed=0))
    result = restorer.restore(operator, y)                         # one window, batch B
    long = restorer.restore_windows(operator, y)                   # a measurement of any length
    song = restorer.restore_recording(partial(Inpainting, gaps=[(62.5, 63.1)]), wave, 44100)
    song.wave, song.sample_rate, song.record
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor

from diffmusic.dsp import fit_length, resample
from diffmusic.names import CHANNEL_MODES
from diffmusic.operators import Operator
from diffmusic.operators.base import resampled_like
from diffmusic.priors.base import Prior
from diffmusic.restoration.settings import Settings
from diffmusic.restoration.single import Restoration, restore
from diffmusic.restoration.windows import (
    Window,
    crossfades,
    overlap_add,
    plan_gap_windows,
    plan_windows,
    region_weights,
    round_up,
)
from diffmusic.samplers import Callback

OperatorFactory = Callable[[int, int], Operator]
"""Builds the operator of a recording at the prior's rate: ``make(sample_rate, num_samples)``;
an operator class, or a ``functools.partial`` of one with its options (e.g.
``partial(Inpainting, gaps=[(2.0, 3.0)])``, or ``partial(Inpainting.from_options, ...)``)."""
Progress = Callable[[str, int], AbstractContextManager[Callback | None]]
"""Makes the sampler callback of one window: called with a label (``"inpainting (diffmusic)
window 2/5"``) and the number of steps, entered around that window's sampling (a progress bar)."""


@dataclass
class RecordingRestoration:
    """Result of :meth:`Restorer.restore_recording`.

    Attributes:
        wave: The restored recording in the input's channels, ``(C, N)`` (``(C, K, N)`` for
            separation) at ``sample_rate``, as long as the input.
        sample_rate: Rate of ``wave`` in Hz.
        record: JSON-ready record: that of :meth:`Restorer.restore_windows` plus
            ``sample_rate``, ``input_rate`` and ``channel_mode``.
    """

    wave: Tensor
    sample_rate: int
    record: dict


def to_mid_side(wave: Tensor) -> Tensor:
    """Left/right ``(2, ...)`` to mid/side ``(2, ...)``: ``((L + R) / 2, (L - R) / 2)``."""
    return torch.stack([(wave[0] + wave[1]) / 2, (wave[0] - wave[1]) / 2])


def from_mid_side(wave: Tensor) -> Tensor:
    """Mid/side ``(2, ...)`` back to left/right ``(2, ...)``."""
    return torch.stack([wave[0] + wave[1], wave[0] - wave[1]])


def joint_channels(wave: Tensor, channels: int) -> tuple[Tensor, Tensor]:
    """A recording's channels ``(C, ...)`` padded to a multiple of a prior's ``channels`` by
    repeating the last one (a mono recording: twice for a stereo prior), and which input channel
    each padded channel copies, ``(C',)``."""
    padded = -(-wave.shape[0] // channels) * channels
    source = torch.arange(padded).clamp_max(wave.shape[0] - 1)
    return wave[source], source


def merge_channels(restored: Tensor, source: Tensor, count: int) -> Tensor:
    """The inverse of :func:`joint_channels`: each of ``count`` input channels is the mean of
    the restored channels ``(C', ...)`` that copied it (a mono recording: the downmix)."""
    total = torch.zeros(count, *restored.shape[1:], dtype=restored.dtype, device=restored.device)
    total.index_add_(0, source.to(restored.device), restored)
    copies = torch.bincount(source, minlength=count).to(restored)
    return total / copies.view(-1, *[1] * (restored.dim() - 1))


def window_record(records: list[dict], segment: int, overlap: int, gaps: list) -> dict:
    """The record of a windowed restoration: the first window's settings, the mean losses and
    one entry per window (start, length, seed, operator, losses, seconds)."""
    keys = ("start", "length", "seed", "operator", "estimates", "final_loss", "raw_loss",
            "seconds_window")
    mean = {name: torch.tensor([r[name] for r in records]).mean(0).tolist()
            for name in ("final_loss", "raw_loss")}
    return {**records[0], **mean, "segment": segment, "overlap": overlap, "gaps": gaps,
            "windows": [{k: r.get(k) for k in keys} for r in records]}


def _no_progress(label: str, steps: int) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


class Restorer:
    """A prior, the settings of its restorations and how long measurements are windowed.

    Args:
        prior: The diffusion prior.
        settings: Sampler, steps, seed, guidance, level, projection (default: the defaults).
        segment: Window length in seconds, at most the prior's window (``None``: the prior's
            window); rounded down to whole latent frames.
        overlap: Crossfade between windows, and the known audio kept on each side of a region
            to restore (inpainting gaps), in seconds; at most half the segment.
        progress: Makes each window's sampler callback (see :data:`Progress`).

    Window sizes are checked when windows are used (:meth:`window_samples`).
    """

    def __init__(self, prior: Prior, settings: Settings | None = None,
                 segment: float | None = None, overlap: float = 0.5,
                 progress: Progress | None = None) -> None:
        self.prior = prior
        self.settings = settings or Settings()
        self.segment_seconds, self.overlap_seconds = segment, overlap
        self.progress = progress or _no_progress

    def window_samples(self) -> tuple[int, int]:
        """The segment and overlap in samples at the prior's rate.

        Raises:
            ValueError: Sizes the prior cannot use; the message starts with the parameter's
                name.
        """
        segment, overlap = self.segment_seconds, self.overlap_seconds
        prior, hop = self.prior, self.prior.latent_hop
        rate, window = prior.sample_rate, prior.window
        if segment is not None and not (math.isfinite(segment) and segment > 0):
            raise ValueError(f"segment must be a positive number of seconds, got {segment}")
        samples = window if segment is None else int(segment * rate)
        if samples > window:
            raise ValueError(f"segment {segment:g} s is longer than the {prior.name} prior's "
                             f"window of {window / rate:.2f} s")
        samples = samples // hop * hop
        if samples < hop:
            raise ValueError(f"segment must be at least {hop / rate:g} s")
        if not (math.isfinite(overlap) and overlap >= 0):
            raise ValueError(f"overlap must be a number of seconds >= 0, got {overlap}")
        overlap_samples = round(overlap * rate)
        if overlap_samples > samples // 2:
            raise ValueError(f"overlap {overlap:g} s must be at most half the segment "
                             f"({samples / rate / 2:g} s)")
        return samples, overlap_samples

    def restore(self, operator: Operator, y: Tensor, seed: int | None = None,
                callback: Callback | None = None) -> Restoration:
        """Restore one window: measurements ``y`` ``(B, ...)`` of ``operator``.

        Args:
            operator: The measurement operator at the prior's rate.
            y: The measurements.
            seed: The sampler's seed (default: the settings').
            callback: Progress callback of the sampler.
        """
        settings = self.settings if seed is None else self.settings.replace(seed=seed)
        return restore(self.prior, operator, y, settings, callback)

    def restore_windows(self, operator: Operator, y: Tensor,
                        length: int | None = None) -> Restoration:
        """Restore a measurement of any length window by window.

        With ``settings.similarity`` the operator first looks at the whole measurement
        (:meth:`~diffmusic.operators.Operator.with_similarity`). Window ``i`` is restored with
        seed ``seed + i`` by the operator's
        :meth:`~diffmusic.operators.Operator.for_window`; where the operator restores only
        some regions (inpainting gaps), windows sit around them and the rest of the output is
        ``y`` itself.

        Args:
            operator: The operator of the whole measurement, at the prior's rate.
            y: Its measurement of ``B`` signals restored together (channels), ``(B, M)``
                audio or ``(B, F, T)`` STFT magnitudes.
            length: Samples the restoration covers (default: what ``y`` covers).

        Returns:
            The restoration at the prior's rate, ``wave`` and ``raw`` ``(B, length)`` or
            ``(B, K, length)``, and a record with the first window's settings, the mean
            losses, ``segment`` and ``overlap`` in samples, the gaps, one entry per window and
            ``similarity``: the operator's matches (inpainting: the passage copied into each
            gap, its context score and gain) or ``None`` where nothing was searched.

        Raises:
            ValueError: An operator at another rate, a bad measurement shape, or regions that
                do not fit a window.
        """
        prior = self.prior
        if operator.sample_rate != prior.sample_rate:
            raise ValueError(f"the operator works at {operator.sample_rate} Hz but the "
                             f"{prior.name} prior at {prior.sample_rate} Hz")
        length = operator.covered_samples(y) if length is None else length
        if length <= 0:
            raise ValueError("the recording holds no samples")
        segment, overlap = self.window_samples()
        operator = operator.fitted(y)
        if self.settings.similarity:
            operator, y = operator.with_similarity(y)
        regions = operator.regions()
        if regions is None:
            windows = plan_windows(length, segment, overlap, prior.latent_hop)
            weights = crossfades(windows, overlap)
        else:
            spans = [(min(length, a), min(length, b)) for a, b in regions if a < length]
            if not spans:
                raise ValueError("no gap lies inside the recording")
            windows = plan_gap_windows(length, segment, spans, overlap, prior.latent_hop)
            margin = operator.region_margin() if self.settings.project else segment
            weights = region_weights([margin, segment])
        sampler = self.settings.resolve(prior.name, operator.task).sampler
        # windows of one length share an operator, except those around regions (their gaps)
        window_operator = functools.lru_cache(maxsize=1)(operator.for_window)

        def key(window: Window) -> tuple[int, int]:
            return (window.start if regions is not None else 0), window.length

        self._check_measurement(window_operator(*key(windows[0])), y)
        records: list[dict] = []

        def restore_window(window: Window) -> Tensor:
            piece = operator.slice_measurement(y, window.start, window.length)
            label = f"{operator.task} ({sampler})"
            if len(windows) > 1:
                label += f" window {len(records) + 1}/{len(windows)}"
            began = time.perf_counter()
            with self.progress(label, self.settings.steps) as callback:
                result = self.restore(window_operator(*key(window)).to(prior.device),
                                      piece.to(prior.device), self.settings.seed + len(records),
                                      callback)
            records.append({**result.record, "start": window.start, "length": window.length,
                            "seconds_window": time.perf_counter() - began})
            return torch.stack([result.wave, result.raw])

        base = None if regions is None else fit_length(y, length)
        wave, raw = overlap_add(windows, restore_window, length, weights, base)
        gaps = [] if regions is None else operator.spec()["gaps"]
        return Restoration(wave, raw, {**window_record(records, segment, overlap, gaps),
                                       "similarity": operator.spec().get("matches")})

    @staticmethod
    def _check_measurement(operator: Operator, y: Tensor) -> None:
        """Refuse a measurement ``y`` whose axes between batch and time are not the operator's."""
        shape = operator.measurement_shape()
        if y.shape[1:-1] != shape[:-1]:
            raise ValueError(f"a {operator.task} measurement has shape {shape[:-1]} x length, "
                             f"got {tuple(y.shape[1:])}")

    def restore_recording(self, make: OperatorFactory, wave: Tensor, rate: int,
                          channels: str = "independent",
                          out_rate: int | None = None) -> RecordingRestoration:
        """Restore a damaged recording of any length, channel count and sample rate.

        Each channel (or the mid and side of a stereo recording) is resampled to the
        operator's measurement rate and restored by :meth:`restore_windows`; the result goes
        back to the input's channels and to ``out_rate``. A prior of several channels (Stable
        Audio Open: stereo) restores the channels jointly (:func:`joint_channels`). With
        projection on, what the input already holds is kept
        (:meth:`~diffmusic.operators.Operator.keep_original`).

        Args:
            make: Builds the operator of the whole recording at the prior's rate (see
                :data:`OperatorFactory`); its measurement must be audio.
            wave: The damaged recording, ``(C, N)`` at ``rate`` (the low-rate recording for
                super-resolution).
            rate: Its sample rate in Hz.
            channels: ``"independent"`` or ``"mid-side"`` (stereo only; other inputs are
                restored channel by channel); for a prior of several channels, which restores
                them jointly, only ``"independent"``.
            out_rate: Output rate in Hz (default: the operator's
                :meth:`~diffmusic.operators.Operator.output_rate`).

        Raises:
            ValueError: Bad audio, channel mode, rates, window sizes or gaps.
        """
        if wave.ndim != 2 or wave.shape[-1] == 0:
            raise ValueError(f"expected audio of shape (channels, samples), got "
                             f"{tuple(wave.shape)}")
        if channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be one of {', '.join(CHANNEL_MODES)}, got "
                             f"{channels!r}")
        if rate <= 0 or (out_rate is not None and out_rate <= 0):
            raise ValueError(f"sample rates must be positive, got {rate} and {out_rate}")
        prior = self.prior
        length = round(wave.shape[-1] * prior.sample_rate / rate)
        operator = make(prior.sample_rate, round_up(length, prior.latent_hop))
        if operator.measurement_kind != "audio":
            raise ValueError(f"{operator.task} measures {operator.measurement_kind}s, not "
                             "audio; restore them with restore_windows")
        mid_side = channels == "mid-side" and wave.shape[0] == 2
        if prior.channels > 1 and channels != "independent":
            raise ValueError(f"the {prior.channels}-channel prior {prior.name} restores the "
                             f"channels jointly; channel mode {channels!r} does not apply")
        signals, source = (joint_channels(wave, prior.channels) if prior.channels > 1 else
                           (to_mid_side(wave) if mid_side else wave, None))
        # read at the recording's own rate (a resampled clipping plateau ripples)
        operator = operator.fitted(signals, rate)
        y = resample(signals, rate, operator.measurement_rate)
        if self.settings.similarity:  # here, so that keep_original sees the matches
            operator, y = operator.with_similarity(y)
        result = self.restore_windows(operator, y, length)
        restored = result.wave
        if source is not None:
            restored = merge_channels(restored, source, wave.shape[0])
        elif mid_side:
            restored = from_mid_side(restored)
        out_rate = out_rate or operator.output_rate(rate)
        out = (operator.keep_original(wave, restored, rate, prior.sample_rate, out_rate)
               if self.settings.project else
               resampled_like(wave, restored, rate, prior.sample_rate, out_rate))
        record = {**result.record, "sample_rate": out_rate, "input_rate": rate,
                  "channel_mode": ("joint" if source is not None else
                                   "mid-side" if mid_side else "independent")}
        return RecordingRestoration(out, out_rate, record)
