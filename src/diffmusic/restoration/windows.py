"""Recordings of any length: prior-sized windows, restored one by one and overlap-added.

In the style of demucs's ``apply_model``: the signal (at the prior's rate) is cut into windows of
``segment`` samples that overlap by ``overlap`` samples; each window gets its own operator (built
by a callable) and its own restoration, and the windows are blended with raised-cosine crossfades.
For inpainting, windows are instead placed around the gaps (:func:`plan_gap_windows`): a gap is
never cut in two and audio far from every gap is never touched. Only one window is restored at a
time, so memory grows with the audio itself, not with the number of windows. The last helpers put
a restoration back into the original recording at its own rate (:func:`paste_gaps`,
:func:`add_high_band`). :mod:`diffmusic.recording` drives all of this with a prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import julius
import torch
from torch import Tensor

from diffmusic.dsp import resample

Span = tuple[int, int]
"""``(start, end)`` in samples, end exclusive."""
LATENT_HOP = 640
"""Samples per latent frame of the AudioLDM family (mel hop 160 x latent downsampling 4): window
starts and lengths are multiples of it."""
CROSSOVER_ZEROS = 32
"""Zero crossings on each side of the crossover's windowed sinc (``julius`` ``zeros``): a
transition band about ``2 / 32`` of the cutoff frequency wide (250 Hz at 4 kHz)."""


@dataclass(frozen=True)
class Window:
    """One window of a long recording, in samples at the prior's rate.

    Attributes:
        start: First sample of the window in the recording.
        length: Samples the operator is built for (a multiple of the latent hop); may run past
            the end of the recording, which is then zero-padded.
        gaps: For inpainting, the gaps this window restores, absolute ``(start, end)`` samples.
    """

    start: int
    length: int
    gaps: tuple[Span, ...] = field(default=())

    @property
    def end(self) -> int:
        """One past the last sample of the window."""
        return self.start + self.length

    def relative_gaps(self, sample_rate: int,
                      all_gaps: Sequence[Span] | None = None) -> list[tuple[float, float]]:
        """Gaps in seconds from the window's start: its own, or every one of ``all_gaps``
        (absolute samples) that reaches into the window, clipped to it (a window's operator
        must mask the missing samples of neighbouring gaps too)."""
        spans = [(max(a, self.start), min(b, self.end)) for a, b in (all_gaps or self.gaps)]
        return [((a - self.start) / sample_rate, (b - self.start) / sample_rate)
                for a, b in spans if a < b]


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a positive multiple of ``multiple``."""
    return max(1, math.ceil(n / multiple)) * multiple


def plan_windows(length: int, segment: int, overlap: int,
                 hop: int = LATENT_HOP) -> list[Window]:
    """Windows covering ``length`` samples, ``segment`` long, overlapping by ``overlap`` or more.

    Window starts are multiples of ``hop`` so that measurements at a lower rate (1/2, 1/4, 1/8)
    or in STFT frames slice at whole samples or frames.

    Args:
        length: Samples of the recording.
        segment: Window length in samples (a multiple of ``hop``).
        overlap: Minimum overlap of neighbouring windows in samples, ``0 <= overlap < segment``.
        hop: Alignment of window starts and lengths in samples.

    Raises:
        ValueError: Bad sizes.
    """
    _check_sizes(segment, overlap, hop)
    if length <= segment:
        return [Window(0, round_up(length, hop))]
    stride = max(hop, (segment - overlap) // hop * hop)
    last = math.ceil((length - segment) / hop) * hop
    starts = list(range(0, last, stride)) + [last]
    return [Window(s, segment) for s in starts]


def plan_gap_windows(length: int, segment: int, gaps: Sequence[Span], context: int,
                     hop: int = LATENT_HOP) -> list[Window]:
    """Windows placed around inpainting gaps: whole gaps, at least ``context`` samples of audio
    on each side where the recording allows, no window without a gap.

    Gaps are grouped greedily (in time order) while a group plus its context fits one window;
    each window is centred on its group and shifted to stay inside the recording.

    Args:
        length: Samples of the recording.
        segment: Window length in samples (a multiple of ``hop``).
        gaps: ``(start, end)`` samples, ``0 <= start < end <= length``.
        context: Samples of known audio wanted on each side of a group.
        hop: Alignment of window lengths in samples.

    Raises:
        ValueError: A gap that does not fit one window with its context, or outside the audio.
    """
    _check_sizes(segment, 0, hop)
    merged: list[list[int]] = []
    for a, b in sorted(gaps):
        if not 0 <= a < b <= length:
            raise ValueError(f"gap {a}:{b} (samples) must satisfy 0 <= start < end <= {length}")
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    room = segment - 2 * context
    groups: list[list[Span]] = []
    for a, b in merged:
        if b - a > room:
            raise ValueError(f"a gap of {b - a} samples is longer than one window can restore "
                             f"({segment} samples less {context} of context on each side); "
                             "use a larger segment or a smaller overlap")
        if groups and b - groups[-1][0][0] <= room:
            groups[-1].append((a, b))
        else:
            groups.append([(a, b)])
    if length <= segment:
        return [Window(0, round_up(length, hop), tuple(g for group in groups for g in group))]
    windows = []
    for group in groups:
        centre = (group[0][0] + group[-1][1]) // 2
        start = min(max(0, centre - segment // 2), length - segment)
        windows.append(Window(start, segment, tuple(group)))
    return windows


def _check_sizes(segment: int, overlap: int, hop: int) -> None:
    if segment < hop or segment % hop:
        raise ValueError(f"the segment must be a positive multiple of {hop} samples, got "
                         f"{segment}")
    if not 0 <= overlap <= segment // 2:
        raise ValueError(f"the overlap must be between 0 and half the segment ({segment // 2} "
                         f"samples), got {overlap}")


def fade_weights(n: int, fade_in: int, fade_out: int) -> Tensor:
    """Overlap-add weights of a window: raised-cosine ramps, strictly positive, shape ``(n,)``.

    Args:
        n: Window length in samples.
        fade_in: Ramp length at the start (0: none).
        fade_out: Ramp length at the end (0: none).
    """
    weights = torch.ones(n)
    for length, flip in ((min(fade_in, n), False), (min(fade_out, n), True)):
        if length:
            ramp = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(length) + 0.5) / length)
            if flip:
                weights[n - length:] *= ramp.flip(0)
            else:
                weights[:length] *= ramp
    return weights


def fit_length(x: Tensor, length: int) -> Tensor:
    """Crop or zero-pad the last axis of ``x`` to ``length`` samples."""
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]))


def slice_measurement(y: Tensor, start: int, size: int) -> Tensor:
    """``y[..., start:start + size]``, zero-padded at the end to ``size``."""
    return fit_length(y[..., start:start + size], size)


RestoreWindow = Callable[[Window], Tensor]
"""Restores one window: returns the restored audio ``(..., N)``, ``N = window.length``, at the
prior's rate (e.g. ``(B, N)``, ``(B, K, N)``, or several versions stacked in front)."""


def overlap_add(windows: Sequence[Window], restore_window: RestoreWindow, length: int,
                overlap: int) -> Tensor:
    """Restore the windows one at a time and blend them with raised-cosine crossfades.

    Args:
        windows: From :func:`plan_windows`; together they cover ``[0, length)``.
        restore_window: Restores one window.
        length: Samples of the recording.
        overlap: Crossfade length in samples between neighbouring windows.

    Returns:
        The restoration, ``(..., N)`` with ``N = length``.
    """
    out: Tensor | None = None
    total = torch.zeros(length)
    for i, window in enumerate(windows):
        chunk = restore_window(window)
        end = min(window.end, length)
        chunk = chunk[..., : end - window.start].float().cpu()
        fade_in = overlap if i > 0 else 0
        fade_out = overlap if i < len(windows) - 1 else 0
        weights = fade_weights(end - window.start, fade_in, fade_out)
        if out is None:
            out = chunk.new_zeros((*chunk.shape[:-1], length))
        out[..., window.start:end] += chunk * weights
        total[window.start:end] += weights
    if out is None:
        raise ValueError("no windows to restore")
    return out / total


def fill_gaps(y: Tensor, windows: Sequence[Window], restore_window: RestoreWindow,
              margins: Sequence[int]) -> Tensor:
    """Inpainting: restore each gap window and paste it over its gaps (plus a margin on each
    side, e.g. the projection's crossfade); everything else stays ``y``.

    ``restore_window`` returns ``L = len(margins)`` versions of a window stacked on the first
    axis (say the projected and the raw restoration); version ``l`` is pasted with
    ``margins[l]`` samples beyond each gap edge.

    Args:
        y: The damaged recording at the prior's rate, ``(B, N)``.
        windows: From :func:`plan_gap_windows`.
        restore_window: Restores one window, ``(L, B, window.length)``.
        margins: Samples pasted beyond each gap edge, one per version.

    Returns:
        Copies of ``y`` with the gaps filled, ``(L, B, N)``.
    """
    out = y.expand(len(margins), *y.shape).clone()
    length = y.shape[-1]
    for window in windows:
        chunk = restore_window(window).float().cpu()
        for version, margin in enumerate(margins):
            for a, b in window.gaps:
                lo, hi = max(window.start, a - margin, 0), min(window.end, b + margin, length)
                out[version, ..., lo:hi] = chunk[version, ..., lo - window.start: hi - window.start]
    return out


def _keep_weights(length: int, spans: Sequence[Span], ramp_len: int) -> Tensor:
    """0 inside ``spans``, raised-cosine ramps of ``ramp_len`` samples outside each edge, exactly
    1 elsewhere, shape ``(length,)``."""
    keep = torch.ones(length)
    ramp = 0.5 - 0.5 * torch.cos(torch.pi * torch.arange(1, ramp_len + 1) / (ramp_len + 1))
    for a, b in spans:
        a, b = min(length, max(0, a)), min(length, max(0, b))
        left = max(0, a - ramp_len)
        keep[left:a] = torch.minimum(keep[left:a], ramp.flip(0)[ramp_len - (a - left):])
        right = min(length, b + ramp_len)
        keep[b:right] = torch.minimum(keep[b:right], ramp[: right - b])
        keep[a:b] = 0
    return keep


def _sample_spans(gaps: Sequence[tuple[float, float]], sample_rate: int) -> list[Span]:
    return [(round(a * sample_rate), max(round(a * sample_rate), round(b * sample_rate)))
            for a, b in gaps]


def gap_keep_mask(length: int, sample_rate: int, gaps: Sequence[tuple[float, float]],
                  crossfade: float) -> Tensor:
    """Weight of the original samples when pasting restored gaps at ``sample_rate``: 0 inside
    each gap, a raised-cosine ramp over ``crossfade`` seconds on the known side of each edge, and
    exactly 1 elsewhere, shape ``(length,)``.
    """
    ramp_len = max(1, round(crossfade * sample_rate))
    return _keep_weights(length, _sample_spans(gaps, sample_rate), ramp_len)


def resample_region(wave: Tensor, rate: int, new_rate: int, lo: int, hi: int) -> Tensor:
    """``resample(wave, rate, new_rate)[..., lo:hi]`` computed from a short piece of ``wave``.

    The piece starts on a sample that falls exactly on a ``new_rate`` sample and has a margin
    for the interpolation filter, so the region matches resampling the whole signal.

    Args:
        wave: ``(..., N)`` at ``rate``.
        rate: Rate of ``wave`` in Hz.
        new_rate: Output rate in Hz.
        lo: First output sample (at ``new_rate``).
        hi: One past the last output sample.
    """
    g = math.gcd(rate, new_rate)
    down, up = rate // g, new_rate // g
    margin = max(2, math.ceil(256 / down))  # blocks of ``down`` input samples
    first = max(0, lo // up - margin)
    last = min(math.ceil(wave.shape[-1] / down), hi // up + 1 + margin)
    piece = resample(wave[..., first * down: last * down], rate, new_rate)
    return fit_length(piece[..., lo - first * up: hi - first * up], hi - lo)


def paste_gaps(original: Tensor, restored: Tensor, rate: int, restored_rate: int,
               gaps: Sequence[tuple[float, float]], crossfade: float) -> Tensor:
    """Put restored gaps into the original: bit for bit ``original`` except inside each gap and
    a raised-cosine crossfade of ``crossfade`` seconds on its known sides.

    Only the regions around the gaps are resampled and blended, so memory stays at one copy of
    the original.

    Args:
        original: ``(C, N)`` audio at ``rate``.
        restored: ``(C, M)`` restoration at ``restored_rate``.
        rate: Rate of ``original`` (and of the output) in Hz.
        restored_rate: Rate of ``restored`` in Hz.
        gaps: Gaps in seconds.
        crossfade: Crossfade length in seconds.

    Returns:
        ``(C, N)`` at ``rate``.
    """
    out = original.clone()
    length = original.shape[-1]
    ramp_len = max(1, round(crossfade * rate))
    spans = sorted(_sample_spans(gaps, rate))
    regions: list[list[int]] = []
    for a, b in spans:
        lo, hi = max(0, a - ramp_len), min(length, b + ramp_len)
        if regions and lo <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], hi)
        elif lo < hi:
            regions.append([lo, hi])
    for lo, hi in regions:
        keep = _keep_weights(hi - lo, [(a - lo, b - lo) for a, b in spans], ramp_len)
        fill = resample_region(restored, restored_rate, rate, lo, hi)
        part = original[..., lo:hi]
        out[..., lo:hi] = torch.where(keep == 1, part, keep * part + (1 - keep) * fill)
    return out


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
