"""Measurements of any length: prior-sized windows, restored one by one and overlap-added.

In the style of demucs's ``apply_model``: the signal (at the prior's rate) is cut into windows of
``segment`` samples that overlap by ``overlap`` samples, each window is restored on its own, and
the windows are blended by one weighted overlap-add (raised-cosine crossfades). Where an operator
restores only some regions (inpainting gaps), windows are placed around them
(:func:`plan_gap_windows`): a gap is never cut in two and audio far from every gap is never
touched. Only one window is restored at a time, so memory grows with the audio itself, not with
the number of windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from diffmusic.dsp import raised_cosine
from diffmusic.operators.base import Span


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


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a positive multiple of ``multiple``."""
    return max(1, math.ceil(n / multiple)) * multiple


def plan_windows(length: int, segment: int, overlap: int, hop: int) -> list[Window]:
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
                     hop: int) -> list[Window]:
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
            ramp = raised_cosine((torch.arange(length) + 0.5) / length)
            if flip:
                weights[n - length:] *= ramp.flip(0)
            else:
                weights[:length] *= ramp
    return weights


RestoreWindow = Callable[[Window], Tensor]
"""Restores one window: returns the restored audio ``(..., N)``, ``N = window.length``, at the
prior's rate (e.g. ``(B, N)``, ``(B, K, N)``, or several versions stacked in front)."""
WindowWeights = Callable[[int, Window], Tensor]
"""The overlap-add weights of window ``i``: ``(..., window.length)``, broadcastable to what
:data:`RestoreWindow` returns (e.g. one profile per version)."""


def crossfades(windows: Sequence[Window], overlap: int) -> WindowWeights:
    """Raised-cosine crossfades of ``overlap`` samples between neighbouring windows."""

    def weights(i: int, window: Window) -> Tensor:
        fade_in = overlap if i > 0 else 0
        fade_out = overlap if i < len(windows) - 1 else 0
        return fade_weights(window.length, fade_in, fade_out)

    return weights


def region_weights(margins: Sequence[int]) -> WindowWeights:
    """1 over each of a window's own regions (gaps) widened by ``margins[l]`` samples on each
    side, 0 elsewhere; one profile per version ``l``, shape ``(L, 1, window.length)``."""

    def weights(i: int, window: Window) -> Tensor:
        out = torch.zeros(len(margins), 1, window.length)
        for version, margin in enumerate(margins):
            for a, b in window.gaps:
                lo = max(a - margin - window.start, 0)
                out[version, :, lo: max(lo, b + margin - window.start)] = 1
        return out

    return weights


def overlap_add(windows: Sequence[Window], restore_window: RestoreWindow, length: int,
                weights: WindowWeights, base: Tensor | None = None) -> Tensor:
    """Restore the windows one at a time and blend them by their weights.

    Without ``base`` the output is the weighted mean of the windows (crossfades). With it, the
    output is ``base`` where no window has weight, and each window's restoration where its
    weight is positive (a later window over an earlier one): regions pasted into a recording.

    Args:
        windows: Windows over ``[0, length)`` (those of :func:`plan_windows` cover it all).
        restore_window: Restores one window.
        length: Samples of the recording.
        weights: The weights of each window (:func:`crossfades`, :func:`region_weights`).
        base: What the output is outside the windows' regions, ``(..., length)``.

    Returns:
        The restoration, ``(..., length)``.

    Raises:
        ValueError: No windows.
    """
    if not windows:
        raise ValueError("no windows to restore")
    out = total = torch.zeros(0)
    for i, window in enumerate(windows):
        end = min(window.end, length)
        chunk = restore_window(window)[..., : end - window.start].float().cpu()
        weight = weights(i, window)[..., : end - window.start]
        if i == 0:
            out = (chunk.new_zeros((*chunk.shape[:-1], length)) if base is None
                   else base.float().cpu().expand(*chunk.shape[:-1], length).clone())
            total = weight.new_zeros((*weight.shape[:-1], length))
        if base is None:
            out[..., window.start:end] += chunk * weight
            total[..., window.start:end] += weight
        else:
            out[..., window.start:end] = torch.where(weight > 0, chunk,
                                                     out[..., window.start:end])
    return out / total if base is None else out
