"""Similarity search for inpainting: the passage elsewhere in a recording whose surroundings
best match a gap's surroundings (in the spirit of Perraudin et al. 2018, "Inpainting of long
audio segments with similarity graphs").

A gap's context (``CONTEXT_SECONDS`` before and after it) is compared with every other place
of the recording by cosine similarity of level-normalised log-mel frames; the best place is
aligned to the sample by waveform correlation of the contexts and level-matched by their RMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from diffmusic.dsp import MelConfig, log_mel, raised_cosine

Span = tuple[int, int]

CONTEXT_SECONDS = 1.0
"""Context compared on each side of a gap, in seconds."""
FEATURE_HOP_SECONDS = 0.016
"""Hop of the log-mel frames the search compares, in seconds."""
ALIGN_SECONDS = 0.25
"""Context next to each gap edge that the sample alignment correlates, in seconds."""
MAX_GAIN = 4.0
"""Largest level correction of a copied passage (and its inverse the smallest)."""
SEAM_SECONDS = 0.1
"""Length of the raised-cosine seams at a filled gap's edges, where a restoration takes over
from the copied passage."""


@dataclass(frozen=True)
class Match:
    """The passage copied into one gap (times in seconds from the recording's start).

    Attributes:
        start: Gap start.
        end: Gap end.
        source: Start of the copied passage (as long as the gap).
        score: Cosine similarity of the log-mel contexts, in ``[-1, 1]``.
        gain: Level correction applied to the passage.
    """

    start: float
    end: float
    source: float
    score: float
    gain: float

    def to_dict(self) -> dict:
        """JSON-ready, rounded to 0.1 ms and 4 digits."""
        return {key: round(value, 4) for key, value in asdict(self).items()}


def context_features(wave: Tensor, rate: int) -> tuple[Tensor, int]:
    """Log-mel frames of each channel of ``wave`` ``(C, N)`` with each frame's mean removed
    (level-blind), side by side: ``(frames, C * 64)``; and the hop in samples."""
    hop = max(1, round(FEATURE_HOP_SECONDS * rate))
    config = MelConfig(sample_rate=rate, n_fft=4 * hop, win_length=4 * hop, hop_length=hop,
                       fmax=rate / 2)
    mel = log_mel(wave.float(), config)
    mel = mel - mel.mean(-1, keepdim=True)
    return mel.transpose(0, 1).reshape(mel.shape[1], -1), hop


def lost_frames(spans: Sequence[Span], frames: int, hop: int) -> Tensor:
    """True for frames that overlap a span (their 4-hop window touches lost samples)."""
    lost = torch.zeros(frames, dtype=torch.bool)
    for a, b in spans:
        lost[max(0, a // hop - 2): min(frames, -(-b // hop) + 2)] = True
    return lost


def best_offset(usable: Tensor, energy: Tensor, lost: Tensor, gap: Span,
                context: int) -> tuple[int, float]:
    """The frame shift of the passage whose context best matches the gap's, and its score.

    Args:
        usable: ``(T, D)`` frames of :func:`context_features`, zero where ``lost``.
        energy: ``(T,)`` squared norm of each frame of ``usable``.
        lost: ``(T,)`` frames that hold no usable audio (in or next to any gap).
        gap: The gap in frames ``[a, b)``.
        context: Context frames on each side.

    Returns:
        ``(shift, score)``: the passage starts ``shift`` frames from the gap (``0`` and
        ``-inf`` when no place qualifies).
    """
    (a, b), total = gap, usable.shape[0]
    kernel = torch.zeros(context + (b - a) + context, usable.shape[1])
    support = torch.zeros(kernel.shape[0])
    for i in [*range(context), *range(context + b - a, kernel.shape[0])]:
        t = a - context + i
        if 0 <= t < total and not lost[t]:
            kernel[i], support[i] = usable[t], 1.0
    if kernel.shape[0] > total or support.sum() == 0:
        return 0, float("-inf")
    num = F.conv1d(usable.T[None], kernel.T[None])[0, 0]
    around = F.conv1d(energy[None, None], support[None, None])[0, 0]
    score = num / (kernel.norm() * around.sqrt()).clamp_min(1e-8)
    # the passage itself must be whole: no lost frame among its own
    blocked = F.conv1d(lost.float()[None, None], torch.ones(1, 1, b - a))[0, 0]
    score[blocked[context: context + score.shape[0]] > 0] = float("-inf")
    best = int(score.argmax())
    return best + context - a, float(score[best])


def surroundings(wave: Tensor, gap: Span, start: int, edge: int) -> Tensor:
    """The ``edge`` samples (fewer at the ends) before and after the gap's place, taken around
    a passage starting at ``start``: ``(C, <= 2 edge)``."""
    a, b = gap
    before, after = min(edge, a), min(edge, wave.shape[-1] - b)
    return torch.cat([wave[:, start - before: start],
                      wave[:, start + b - a: start + b - a + after]], dim=-1)


def align(wave: Tensor, gap: Span, source: int, reach: int, edge: int) -> int:
    """``source`` moved by at most ``reach`` samples to where the ``edge`` samples before and
    after the gap correlate best with those around the passage (all channels of ``(C, N)``)."""
    a, b = gap
    target = surroundings(wave, gap, a, edge).flatten()
    best, best_score = source, float("-inf")
    for start in range(source - reach, source + reach + 1):
        if start - min(edge, a) < 0 or start + b - a + min(edge, wave.shape[-1] - b) > \
                wave.shape[-1]:
            continue
        cand = surroundings(wave, gap, start, edge).flatten()
        score = float(target @ cand) / max(float(cand.norm() * target.norm()), 1e-12)
        if score > best_score:
            best, best_score = start, score
    return best


def find_matches(wave: Tensor, rate: int, gaps: Sequence[Span]) -> list[Match | None]:
    """For each gap of ``wave``, the passage elsewhere in it whose context matches best.

    Args:
        wave: The damaged recording ``(N,)`` or ``(C, N)`` (all channels are compared).
        rate: Its sample rate in Hz.
        gaps: Lost spans in samples, end exclusive.

    Returns:
        One :class:`Match` per gap, ``None`` where no passage of the gap's length lies
        outside every gap.
    """
    wave = wave.reshape(-1, wave.shape[-1]).float()
    features, hop = context_features(wave, rate)
    lost = lost_frames(gaps, features.shape[0], hop)
    usable = features * (~lost)[:, None]
    energy = usable.pow(2).sum(-1)
    context = max(1, round(CONTEXT_SECONDS * rate / hop))
    edge = round(ALIGN_SECONDS * rate)
    matches: list[Match | None] = []
    for a, b in gaps:
        shift, score = best_offset(usable, energy, lost, (a // hop, -(-b // hop)), context)
        if score == float("-inf"):
            matches.append(None)
            continue
        source = align(wave, (a, b), a + shift * hop, hop, edge)
        own = surroundings(wave, (a, b), a, edge)
        gain = float(own.norm() / surroundings(wave, (a, b), source, edge).norm().clamp_min(1e-12))
        matches.append(Match(a / rate, b / rate, source / rate, score,
                             min(MAX_GAIN, max(1 / MAX_GAIN, gain))))
    return matches


def passage_weights(matches: Sequence[Match], rate: int, length: int) -> Tensor:
    """Share of the copied passage in a filled recording, shape ``(length,)``: 1 inside each
    match's gap, raised-cosine seams of :data:`SEAM_SECONDS` (at most a quarter of the gap) up
    from 0 at its edges, 0 elsewhere."""
    weights = torch.zeros(length)
    for m in matches:
        a, b = round(m.start * rate), min(length, round(m.end * rate))
        seam = max(1, min(round(SEAM_SECONDS * rate), (b - a) // 4))
        ramp = raised_cosine(torch.arange(1, seam + 1) / (seam + 1))
        weights[a:b] = 1
        weights[a: a + seam] = ramp[: max(0, min(seam, b - a))]
        weights[max(a, b - seam): b] = ramp.flip(0)[seam - (b - max(a, b - seam)):]
    return weights


def copy_passages(wave: Tensor, rate: int, matches: Sequence[Match]) -> Tensor:
    """``wave`` ``(..., N)`` with each match's passage, times its gain, pasted into its gap."""
    out = wave.clone()
    for m in matches:
        a, b, s = round(m.start * rate), round(m.end * rate), round(m.source * rate)
        out[..., a:b] = m.gain * wave[..., s: s + b - a]
    return out
