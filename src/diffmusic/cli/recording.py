"""``restore`` on a damaged recording of any length, channel count and sample rate.

The recording is read at its own rate, turned into the channels to restore (each channel, or mid
and side), resampled to the measurement rate, restored window by window
(:mod:`diffmusic.longform`), turned back into the input's channels and resampled to the output
rate. For inpainting at the input's rate, only the gaps and their crossfades change: every other
sample is copied bit for bit from the input.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from diffmusic.audio import load_audio
from diffmusic.cli.errors import CliError
from diffmusic.cli.measurement import (
    check_complete,
    load_magnitude,
    measurement_shape,
)
from diffmusic.cli.options import LATENT_HOP, STFT_HOP, OperatorOptions, build_operator
from diffmusic.cli.progress import step_progress
from diffmusic.dsp import resample
from diffmusic.gaps import Gap, check_gaps
from diffmusic.longform import (
    Window,
    fill_gaps,
    overlap_add,
    paste_gaps,
    plan_gap_windows,
    plan_windows,
    slice_measurement,
)
from diffmusic.operators import OPERATORS, Operator
from diffmusic.priors import Prior
from diffmusic.restore import restore

CROSSFADE = 0.005
"""Seconds of the crossfade on the known side of each gap edge (the operator's default)."""
CHANNEL_MODES = ("independent", "mid-side")


@dataclass
class Recording:
    """A damaged recording ready for windowed restoration.

    Attributes:
        y: Measurement of each channel to restore, ``(C, M)`` audio at the measurement rate or
            ``(1, F, T)`` magnitudes.
        length: Samples at the prior's rate the restoration covers.
        rate: Sample rate of the input file in Hz (the prior's for magnitudes).
        original: The input audio ``(C, N)`` at ``rate`` (``None`` for magnitudes).
        mid_side: ``y`` holds mid and side instead of left and right.
    """

    y: Tensor
    length: int
    rate: int
    original: Tensor | None
    mid_side: bool = False


def to_mid_side(wave: Tensor) -> Tensor:
    """Left/right ``(2, ...)`` to mid/side ``(2, ...)``: ``((L + R) / 2, (L - R) / 2)``."""
    return torch.stack([(wave[0] + wave[1]) / 2, (wave[0] - wave[1]) / 2])


def from_mid_side(wave: Tensor) -> Tensor:
    """Mid/side ``(2, ...)`` back to left/right ``(2, ...)``."""
    return torch.stack([wave[0] + wave[1], wave[0] - wave[1]])


def read_recording(path: Path, options: OperatorOptions, prior_rate: int,
                   channels: str = "independent") -> Recording:
    """Read a damaged recording (or a ``.npy`` magnitude for phase retrieval).

    Raises:
        CliError: Truncated or all-silent audio (``AudioError`` for other bad audio).
    """
    if OPERATORS[options.task].measurement_kind == "magnitude":
        magnitude = load_magnitude(path)
        return Recording(magnitude, (magnitude.shape[-1] - 1) * STFT_HOP, prior_rate, None)
    check_complete(path)
    wave, rate = load_audio(path)
    if not wave.abs().max() > 0:
        raise CliError(f"{path}: every sample is zero (the recording is silent); nothing to "
                       "restore")
    mid_side = channels == "mid-side" and wave.shape[0] == 2
    measurement_rate = options.measurement_rate(prior_rate)
    y = resample(to_mid_side(wave) if mid_side else wave, rate, measurement_rate)
    return Recording(y, y.shape[-1] * prior_rate // measurement_rate, rate, wave, mid_side)


def recording_gaps(options: OperatorOptions, recording: Recording) -> list[Gap]:
    """The inpainting gaps in seconds, checked against the recording's duration."""
    duration = recording.original.shape[-1] / recording.rate
    if options.mask_type in (None, "box"):
        flag = "--gap" if options.gaps else "the default --gap"
        try:
            return check_gaps(options.gaps or [(2.0, 3.0)], duration, flag)
        except ValueError as error:
            raise CliError(str(error)) from None
    return options.inpainting_gaps(duration)


@dataclass
class WindowSettings:
    """How a recording is cut: ``segment`` and ``overlap`` in seconds (``None``: defaults)."""

    segment: float | None = None
    overlap: float = 0.5

    def samples(self, prior: Prior) -> tuple[int, int]:
        """Segment and overlap in samples at the prior's rate (segment a multiple of the hop)."""
        rate, window = prior.sample_rate, prior.window
        segment = window if self.segment is None else int(self.segment * rate)
        if segment > window:
            raise CliError(f"--segment {self.segment:g} s is longer than the {prior.name} "
                           f"prior's window of {window / rate:.2f} s")
        segment = segment // LATENT_HOP * LATENT_HOP
        if segment < LATENT_HOP:
            raise CliError(f"--segment must be at least {LATENT_HOP / rate:g} s")
        if not (math.isfinite(self.overlap) and self.overlap >= 0):
            raise CliError(f"--overlap must be a number of seconds >= 0, got {self.overlap}")
        overlap = round(self.overlap * rate)
        if overlap > segment // 2:
            raise CliError(f"--overlap {self.overlap:g} s must be at most half the segment "
                           f"({segment / rate / 2:g} s)")
        return segment, overlap


def restore_recording(recording: Recording, options: OperatorOptions, prior: Prior,
                      settings: dict, windows: WindowSettings, gaps: list[Gap] | None = None,
                      quiet: bool = False) -> tuple[Tensor, dict]:
    """Restore a recording window by window.

    Args:
        recording: From :func:`read_recording`.
        options: The operator options (one operator is built per window).
        prior: The diffusion prior.
        settings: Keyword arguments of :func:`diffmusic.restore.restore`.
        windows: Segment and overlap.
        gaps: Inpainting gaps in seconds (from :func:`recording_gaps`).
        quiet: Hide progress bars.

    Returns:
        The restoration at the prior's rate, ``(C, N)`` or ``(C, K, N)`` in the channels of
        ``recording.y``, and the record (settings, seeds and losses of every window).
    """
    rate, length = prior.sample_rate, recording.length
    segment, overlap = windows.samples(prior)
    inpainting = options.task == "inpainting"
    gaps = list(gaps or [])
    spans = [(min(length, round(a * rate)), min(length, max(round(a * rate) + 1, round(b * rate))))
             for a, b in gaps]
    spans = [(a, b) for a, b in spans if a < b]  # gaps in samples at the prior's rate
    if inpainting:
        try:
            plan = plan_gap_windows(length, segment, spans, overlap)
        except ValueError as error:
            raise CliError(f"--gap: {error}") from None
    else:
        plan = plan_windows(length, segment, overlap)
    ratio = (1 / STFT_HOP if recording.original is None
             else options.measurement_rate(rate) / rate)  # measurement units per sample
    shared = functools.lru_cache(maxsize=2)(functools.partial(build_operator, options))
    records: list[dict] = []

    def restore_window(window: Window) -> Tensor:
        if inpainting:
            box = dataclasses.replace(options, gaps=window.relative_gaps(rate, spans),
                                      mask_type="box")
            operator: Operator = build_operator(box, window.length, rate)
        else:
            operator = shared(window.length, rate)
        operator = operator.to(prior.device)
        shape = measurement_shape(operator)
        if recording.y.shape[1:-1] != shape[:-1]:
            raise CliError(f"a {operator.task} measurement has shape {shape[:-1]} x length, "
                           f"got {tuple(recording.y.shape[1:])}")
        y = slice_measurement(recording.y, round(window.start * ratio), shape[-1])
        seed = settings["seed"] + len(records)
        label = (f"{operator.task} ({settings['sampler']}) window {len(records) + 1}/"
                 f"{len(plan)}")
        began = time.perf_counter()
        with step_progress(label, settings["steps"], quiet) as callback:
            result = restore(prior, operator, y.to(prior.device), callback=callback,
                             **{**settings, "seed": seed})
        records.append({**result.record, "start": window.start, "length": window.length,
                        "seconds_window": time.perf_counter() - began})
        return result.wave

    if inpainting:
        margin = (round(CROSSFADE * rate) + 1) if settings.get("project", True) else segment
        restored = fill_gaps(recording.y, plan, restore_window, margin)
    else:
        restored = overlap_add(plan, restore_window, length, overlap)
    return restored, window_record(records, gaps, segment, overlap)


def window_record(records: list[dict], gaps: list[Gap], segment: int, overlap: int) -> dict:
    """The record of a windowed restoration: the first window's settings, the mean losses and
    one entry per window (start, length, seed, operator, losses, seconds)."""
    if not records:
        return {"windows": [], "final_loss": [], "raw_loss": [], "gaps": gaps}
    keys = ("start", "length", "seed", "operator", "final_loss", "raw_loss", "seconds_window")
    mean = {name: torch.tensor([r[name] for r in records]).mean(0).tolist()
            for name in ("final_loss", "raw_loss")}
    return {**records[0], **mean, "segment": segment, "overlap": overlap, "gaps": gaps,
            "windows": [{k: r.get(k) for k in keys} for r in records]}


def finish(restored: Tensor, recording: Recording, prior_rate: int, out_rate: int,
           gaps: list[Gap] | None, project: bool) -> Tensor:
    """Back to the input's channels and to ``out_rate``; for inpainting at the input's rate,
    paste the restored gaps into the untouched original.

    Args:
        restored: ``(C, N)`` or ``(C, K, N)`` at ``prior_rate``.
        recording: What was restored.
        prior_rate: Rate of ``restored`` in Hz.
        out_rate: Output rate in Hz.
        gaps: Inpainting gaps in seconds (``None`` for other tasks).
        project: Whether measurement-consistency projection is on.

    Returns:
        ``(C, N')`` or ``(C, K, N')`` at ``out_rate``; ``N'`` matches the input's duration.
    """
    if recording.mid_side:
        restored = from_mid_side(restored)
    if gaps is not None and project and out_rate == recording.rate:
        return paste_gaps(recording.original, restored, out_rate, prior_rate, gaps, CROSSFADE)
    wave = resample(restored, prior_rate, out_rate)
    target = (round(recording.length * out_rate / prior_rate) if recording.original is None
              else round(recording.original.shape[-1] * out_rate / recording.rate))
    return torch.nn.functional.pad(wave, (0, target - wave.shape[-1]))
