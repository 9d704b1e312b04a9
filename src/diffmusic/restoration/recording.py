"""Restore measurements and recordings of any length, channel count and sample rate.

:func:`restore_windows` restores a measurement of any length: it cuts it into prior-sized windows
(:mod:`diffmusic.longform`), builds each window's operator with a callable, restores the windows
one at a time (window ``i`` with seed ``seed + i``) and blends them; for inpainting, windows sit
around the gaps and everything else is the measurement itself. :func:`restore_long` does the
same for a damaged recording at any rate: each channel (or mid and side) is resampled to the
measurement rate, restored, turned back into the input's channels and brought to the output
rate, keeping what the input already holds (every sample outside the gaps' crossfades for
inpainting, the band below the cutoff and above the prior's band for super-resolution).

Example::

    from functools import partial
    from diffmusic.operators import SuperResolution

    result = restore_long(prior, partial(SuperResolution, prior.sample_rate, factor=4),
                          wave, 44100, steps=50, seed=0)   # wave: (channels, samples)
    result.wave, result.sample_rate, result.record
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor

from diffmusic.dsp import resample
from diffmusic.longform import (
    LATENT_HOP,
    Span,
    Window,
    add_high_band,
    fill_gaps,
    fit_length,
    overlap_add,
    paste_gaps,
    plan_gap_windows,
    plan_windows,
    slice_measurement,
)
from diffmusic.names import CHANNEL_MODES
from diffmusic.operators import Inpainting, Operator, SuperResolution, from_spec
from diffmusic.priors.base import Prior
from diffmusic.restore import Restoration, restore
from diffmusic.samplers import Callback

Gap = tuple[float, float]
"""``(start, end)`` in seconds."""
OperatorFactory = Callable[..., Operator]
"""Builds the operator of one window at the prior's rate: called as ``make(num_samples)``, or
``make(num_samples, gaps=[(start, end), ...])`` (seconds from the window's start) for inpainting;
e.g. ``functools.partial(SuperResolution, 16000, factor=2)``, ``functools.partial(Inpainting,
16000)`` or :func:`operator_factory`."""
Progress = Callable[[str, int], AbstractContextManager[Callback | None]]
"""Makes the sampler callback of one window: called with a label (``"inpainting (diffmusic)
window 2/5"``) and the number of steps, entered around that window's sampling (a progress bar)."""


@dataclass
class LongRestoration:
    """Result of :func:`restore_long`.

    Attributes:
        wave: The restored recording in the input's channels, ``(C, N)`` (``(C, K, N)`` for
            separation) at ``sample_rate``, as long as the input.
        sample_rate: Rate of ``wave`` in Hz.
        record: JSON-ready record: that of :func:`restore_windows` plus ``sample_rate``,
            ``input_rate`` and ``channel_mode``.
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


def window_samples(prior: Prior, segment: float | None = None,
                   overlap: float = 0.5) -> tuple[int, int]:
    """Segment and overlap in samples at the prior's rate.

    Args:
        prior: The diffusion prior.
        segment: Window length in seconds, at most the prior's window (``None``: the prior's
            window); rounded down to whole latent frames.
        overlap: Overlap of neighbouring windows, and the known audio kept on each side of
            inpainting gaps, in seconds; at most half the segment.

    Raises:
        ValueError: Values out of range; the message starts with the parameter's name.
    """
    rate, window = prior.sample_rate, prior.window
    if segment is not None and not (math.isfinite(segment) and segment > 0):
        raise ValueError(f"segment must be a positive number of seconds, got {segment}")
    samples = window if segment is None else int(segment * rate)
    if samples > window:
        raise ValueError(f"segment {segment:g} s is longer than the {prior.name} prior's window "
                         f"of {window / rate:.2f} s")
    samples = samples // LATENT_HOP * LATENT_HOP
    if samples < LATENT_HOP:
        raise ValueError(f"segment must be at least {LATENT_HOP / rate:g} s")
    if not (math.isfinite(overlap) and overlap >= 0):
        raise ValueError(f"overlap must be a number of seconds >= 0, got {overlap}")
    overlap_samples = round(overlap * rate)
    if overlap_samples > samples // 2:
        raise ValueError(f"overlap {overlap:g} s must be at most half the segment "
                         f"({samples / rate / 2:g} s)")
    return samples, overlap_samples


def measurement_shape(operator: Operator) -> tuple[int, ...]:
    """Shape of one of ``operator``'s measurements without the batch axis, ``(..., M)``."""
    k, n = operator.num_sources, operator.num_samples
    with torch.no_grad():
        return tuple(operator(torch.zeros((1, n) if k == 1 else (1, k, n))).shape[1:])


def operator_factory(operator: Operator) -> OperatorFactory:
    """Operators of ``operator``'s task and settings for windows of any length (rebuilt from its
    spec; ``gaps`` replace an inpainting operator's gaps)."""
    spec = operator.spec()

    def make(num_samples: int, **overrides: object) -> Operator:
        return from_spec({**spec, "num_samples": num_samples, **overrides})

    return make


@dataclass
class _Plan:
    """Windows of one restoration and how their operators are built.

    Attributes:
        windows: The windows, in time order.
        spans: Inpainting gaps in samples at the prior's rate (empty for other tasks).
        segment: Window length in samples.
        overlap: Overlap (crossfade, context) in samples.
        build: The operator of a window (built once for every window of the same length,
            except for inpainting, whose windows hold different gaps).
        first: The first window's operator, on the CPU.
        shape: Its measurement shape without the batch axis.
    """

    windows: list[Window]
    spans: list[Span]
    segment: int
    overlap: int
    build: Callable[[Window], Operator]
    first: Operator
    shape: tuple[int, ...]


def _plan(prior: Prior, make_operator: OperatorFactory, length: int,
          gaps: Sequence[Gap] | None, segment: float | None, overlap: float) -> _Plan:
    """Plan the windows of ``length`` samples and build the first window's operator."""
    rate = prior.sample_rate
    if length <= 0:
        raise ValueError("the recording holds no samples")
    segment_samples, overlap_samples = window_samples(prior, segment, overlap)
    spans: list[Span] = []
    if gaps is None:
        windows = plan_windows(length, segment_samples, overlap_samples)
        shared = functools.lru_cache(maxsize=2)(make_operator)

        def build(window: Window) -> Operator:
            return shared(window.length)
    else:
        for a, b in gaps:
            lo = min(length, round(a * rate))
            hi = min(length, max(lo + 1, round(b * rate)))
            if lo < hi:
                spans.append((lo, hi))
        if not spans:
            raise ValueError("no gap lies inside the recording")
        windows = plan_gap_windows(length, segment_samples, spans, overlap_samples)

        def build(window: Window) -> Operator:
            return make_operator(window.length, gaps=window.relative_gaps(rate, spans))
    first = build(windows[0])
    if first.sample_rate != rate:
        raise ValueError(f"the operators are built at {first.sample_rate} Hz but the "
                         f"{prior.name} prior works at {rate} Hz")
    if gaps is not None and not isinstance(first, Inpainting):
        raise ValueError(f"gaps apply to inpainting, not to {first.task}")
    return _Plan(windows, spans, segment_samples, overlap_samples, build, first,
                 measurement_shape(first))


def _no_progress(label: str, steps: int) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def _run(prior: Prior, plan: _Plan, y: Tensor, length: int, gaps: Sequence[Gap] | None,
         progress: Progress | None, settings: dict) -> Restoration:
    """Restore the planned windows of ``y`` and blend them (see :func:`restore_windows`)."""
    first, shape = plan.first, plan.shape
    if y.shape[1:-1] != shape[:-1]:
        raise ValueError(f"a {first.task} measurement has shape {shape[:-1]} x length, got "
                         f"{tuple(y.shape[1:])}")
    # Measurement samples (or frames of a centred STFT: num_samples / hop + 1) per sample.
    frames = shape[-1] - (first.measurement_kind == "magnitude")
    units = frames / first.num_samples
    rate, count = prior.sample_rate, len(plan.windows)
    records: list[dict] = []

    def restore_window(window: Window) -> Tensor:
        operator = plan.build(window).to(prior.device)
        piece = slice_measurement(y, round(window.start * units), shape[-1])
        label = f"{operator.task} ({settings['sampler']})"
        if count > 1:
            label += f" window {len(records) + 1}/{count}"
        began = time.perf_counter()
        with (progress or _no_progress)(label, settings["steps"]) as callback:
            result = restore(prior, operator, piece.to(prior.device), callback=callback,
                             **{**settings, "seed": settings["seed"] + len(records)})
        records.append({**result.record, "start": window.start, "length": window.length,
                        "seconds_window": time.perf_counter() - began})
        return torch.stack([result.wave, result.raw])

    if plan.spans:
        margin = round(first.crossfade * rate) + 1 if settings["project"] else plan.segment
        wave, raw = fill_gaps(fit_length(y, length), plan.windows, restore_window,
                              [margin, plan.segment])
    else:
        wave, raw = overlap_add(plan.windows, restore_window, length, plan.overlap)
    return Restoration(wave, raw, window_record(records, list(gaps or []), plan.segment,
                                                plan.overlap))


def window_record(records: list[dict], gaps: list[Gap], segment: int, overlap: int) -> dict:
    """The record of a windowed restoration: the first window's settings, the mean losses and
    one entry per window (start, length, seed, operator, losses, seconds)."""
    keys = ("start", "length", "seed", "operator", "final_loss", "raw_loss", "seconds_window")
    mean = {name: torch.tensor([r[name] for r in records]).mean(0).tolist()
            for name in ("final_loss", "raw_loss")}
    return {**records[0], **mean, "segment": segment, "overlap": overlap, "gaps": gaps,
            "windows": [{k: r.get(k) for k in keys} for r in records]}


def restore_windows(prior: Prior, make_operator: OperatorFactory, y: Tensor, length: int, *,
                    gaps: Sequence[Gap] | None = None, segment: float | None = None,
                    overlap: float = 0.5, sampler: str = "diffmusic", steps: int = 50,
                    seed: int = 0, project: bool = True, progress: Progress | None = None,
                    **settings: object) -> Restoration:
    """Restore a measurement of any length window by window.

    Args:
        prior: The diffusion prior.
        make_operator: Builds each window's operator (see :data:`OperatorFactory`).
        y: The measurement of ``B`` signals restored together (channels), ``(B, M)`` audio at
            the operators' measurement rate or ``(B, F, T)`` STFT magnitudes.
        length: Samples at the prior's rate the restoration covers.
        gaps: Inpainting gaps in seconds; windows then sit around the gaps and the rest of the
            output is ``y`` itself (``None`` for other tasks).
        segment: Window length in seconds (``None``: the prior's window).
        overlap: Crossfade between windows, and the context kept around gaps, in seconds.
        sampler: One of :data:`diffmusic.samplers.SAMPLERS`.
        steps: Sampling steps per window.
        seed: Seed of the first window; window ``i`` uses ``seed + i``.
        project: Apply each operator's measurement-consistency projection.
        progress: Makes each window's sampler callback (see :data:`Progress`).
        **settings: Other keyword arguments of :func:`diffmusic.restore.restore` (``prompts``,
            ``guidance_scale``, ``gamma``...).

    Returns:
        The restoration at the prior's rate, ``wave`` and ``raw`` ``(B, length)`` or
        ``(B, K, length)``, and a record with the first window's settings, the mean losses,
        ``segment`` and ``overlap`` in samples, the gaps and one entry per window.

    Raises:
        ValueError: Bad window sizes, gaps or measurement shape.
    """
    plan = _plan(prior, make_operator, length, gaps, segment, overlap)
    return _run(prior, plan, y, length, gaps, progress,
                {"sampler": sampler, "steps": steps, "seed": seed, "project": project, **settings})


def restore_long(prior: Prior, make_operator: OperatorFactory, wave: Tensor, rate: int, *,
                 channels: str = "independent", out_rate: int | None = None,
                 gaps: Sequence[Gap] | None = None, segment: float | None = None,
                 overlap: float = 0.5, sampler: str = "diffmusic", steps: int = 50,
                 seed: int = 0, project: bool = True, progress: Progress | None = None,
                 **settings: object) -> LongRestoration:
    """Restore a damaged recording of any length, channel count and sample rate.

    Each channel (or the mid and side of a stereo recording) is resampled to the operators'
    measurement rate and restored by :func:`restore_windows`; the result goes back to the
    input's channels and to ``out_rate``. With projection on, what the input already holds is
    kept: for inpainting at the input's rate every sample outside the gaps and their crossfades
    is the input's, bit for bit; for super-resolution the band below the operator's cutoff and
    above the prior's Nyquist frequency is the input's (:func:`diffmusic.longform.add_high_band`),
    the band in between the restoration's.

    Args:
        prior: The diffusion prior.
        make_operator: Builds each window's operator at the prior's rate (see
            :data:`OperatorFactory`); its measurement must be audio.
        wave: The damaged recording, ``(C, N)`` at ``rate`` (the low-rate recording for
            super-resolution).
        rate: Its sample rate in Hz.
        channels: ``"independent"`` or ``"mid-side"`` (stereo only; other inputs are restored
            channel by channel).
        out_rate: Output rate in Hz (default: ``rate``; for super-resolution at least the
            prior's rate).
        gaps: Inpainting gaps in seconds from the start of the recording.
        segment: Window length in seconds (``None``: the prior's window).
        overlap: Crossfade between windows, and the context kept around gaps, in seconds.
        sampler: One of :data:`diffmusic.samplers.SAMPLERS`.
        steps: Sampling steps per window.
        seed: Seed of the first window; window ``i`` uses ``seed + i``.
        project: Apply the projections and keep the input's content as above (``False``: the
            sampler's raw output, resampled).
        progress: Makes each window's sampler callback (see :data:`Progress`).
        **settings: Other keyword arguments of :func:`diffmusic.restore.restore`.

    Raises:
        ValueError: Bad audio, channel mode, rates, window sizes or gaps.
    """
    if wave.ndim != 2 or wave.shape[-1] == 0:
        raise ValueError(f"expected audio of shape (channels, samples), got {tuple(wave.shape)}")
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {', '.join(CHANNEL_MODES)}, got {channels!r}")
    if rate <= 0 or (out_rate is not None and out_rate <= 0):
        raise ValueError(f"sample rates must be positive, got {rate} and {out_rate}")
    length = round(wave.shape[-1] * prior.sample_rate / rate)
    plan = _plan(prior, make_operator, length, gaps, segment, overlap)
    operator = plan.first
    if operator.measurement_kind != "audio":
        raise ValueError(f"{operator.task} measures {operator.measurement_kind}s, not audio; "
                         "restore them with restore_windows")
    mid_side = channels == "mid-side" and wave.shape[0] == 2
    y = resample(to_mid_side(wave) if mid_side else wave, rate, operator.measurement_rate)
    result = _run(prior, plan, y, length, gaps, progress,
                  {"sampler": sampler, "steps": steps, "seed": seed, "project": project,
                   **settings})
    restored = from_mid_side(result.wave) if mid_side else result.wave
    extends = isinstance(operator, SuperResolution)
    out_rate = out_rate or (max(rate, prior.sample_rate) if extends else rate)
    if project and isinstance(operator, Inpainting) and out_rate == rate:
        out = paste_gaps(wave, restored, rate, prior.sample_rate, gaps or [], operator.crossfade)
    elif project and extends:
        out = add_high_band(wave, restored, rate, prior.sample_rate, out_rate,
                            operator.cutoff_hz)
    else:
        out = fit_length(resample(restored, prior.sample_rate, out_rate),
                         round(wave.shape[-1] * out_rate / rate))
    record = {**result.record, "sample_rate": out_rate, "input_rate": rate,
              "channel_mode": "mid-side" if mid_side else "independent"}
    return LongRestoration(out, out_rate, record)
