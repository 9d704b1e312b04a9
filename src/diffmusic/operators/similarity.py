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
AGREE_SECONDS = 0.05
"""Largest distance between the passage both sides of a gap's context choose and the one a
single side chooses for the passage to count as corroborated."""
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
        corroborated: Whether the context before the gap alone, or the context after it
            alone, would choose this passage too (within :data:`AGREE_SECONDS`); a passage
            that neither side picks on its own is a compromise between two places, the mark
            of a gap in music that is not repeated.
    """

    start: float
    end: float
    source: float
    score: float
    gain: float
    corroborated: bool = True

    def to_dict(self) -> dict:
        """JSON-ready, times rounded to 0.1 ms and numbers to 4 digits."""
        return {key: value if isinstance(value, bool) else round(value, 4)
                for key, value in asdict(self).items()}


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
                context: int, sides: tuple[bool, bool] = (True, True)) -> tuple[int, float]:
    """The frame shift of the passage whose context best matches the gap's, and its score.

    The score is the cosine similarity over the context frames that both places hold (a frame
    lost on either side counts on neither), so a passage next to the gap, or near the
    recording's ends, is compared on the context it has; at least half of one side's context
    must be compared.

    Args:
        usable: ``(T + 2 context, D)`` frames of :func:`context_features`, zero where ``lost``.
        energy: ``(T + 2 context,)`` squared norm of each frame of ``usable``.
        lost: ``(T + 2 context,)`` frames that hold no usable audio (in or next to any gap).
            All three are padded with ``context`` lost frames at each end, so that places
            near the ends are compared on what they hold.
        gap: The gap in frames ``[a, b)`` of the recording (unpadded).
        context: Context frames on each side.
        sides: Whether the context before and the context after the gap are compared.

    Returns:
        ``(shift, score)``: the passage starts ``shift`` frames from the gap (``0`` and
        ``-inf`` when no place qualifies).
    """
    (a, b), total = gap, usable.shape[0] - 2 * context
    kernel = torch.zeros(context + (b - a) + context, usable.shape[1])
    support = torch.zeros(kernel.shape[0])
    compared = [*(range(context) if sides[0] else ()),
                *(range(context + b - a, kernel.shape[0]) if sides[1] else ())]
    for i in compared:  # padded frame a + i is the recording's frame a - context + i
        if a + i < lost.shape[0] and not lost[a + i]:
            kernel[i], support[i] = usable[a + i], 1.0
    if b - a > total or support.sum() < context / 2:
        return 0, float("-inf")
    held = (~lost).float()

    def slide(signal: Tensor, weights: Tensor) -> Tensor:
        return F.conv1d(signal[None, None], weights[None, None])[0, 0]

    num = F.conv1d(usable.T[None], kernel.T[None])[0, 0]
    norms = slide(energy, support) * slide(held, kernel.pow(2).sum(-1))
    score = num / norms.sqrt().clamp_min(1e-8)
    # the passage itself must be whole, and enough context must be compared
    blocked = slide(lost.float(), torch.ones(b - a))[context: context + score.shape[0]]
    score[(blocked > 0) | (slide(held, support) < context / 2)] = float("-inf")
    best = int(score.argmax())
    return best - a, float(score[best])


def align(wave: Tensor, known: Tensor, gap: Span, source: int, reach: int,
          edge: int) -> tuple[int, float]:
    """``source`` moved by at most ``reach`` samples to where the ``edge`` samples before and
    after the gap correlate best with those around the passage, and the passage's level
    correction there (all channels of ``(C, N)``; only samples that ``known`` ``(N,)`` marks
    around the gap count).

    Returns:
        ``(start, gain)``: the passage's first sample and the ratio of the RMS around the gap
        to that around the passage, within ``[1 / MAX_GAIN, MAX_GAIN]``.
    """
    (a, b), total = gap, wave.shape[-1]
    before, after = min(edge, a), min(edge, total - b)
    lo = max(source - reach, before)
    hi = min(source + reach, total - (b - a) - after)
    if lo > hi:
        return source, 1.0
    sides = [(-before, known[a - before: a]), (b - a, known[b: b + after])]
    num = torch.zeros(hi - lo + 1)
    power = torch.zeros(hi - lo + 1)
    level = 0.0
    for offset, weight in sides:  # correlation and power of each side at every start
        if weight.numel() == 0:
            continue
        target = wave[:, a + offset: a + offset + weight.numel()] * weight
        span = wave[:, lo + offset: hi + offset + weight.numel()]
        num += F.conv1d(span[None], target[None])[0, 0]
        power += F.conv1d(span.pow(2).sum(0)[None, None], weight[None, None])[0, 0]
        level += float(target.pow(2).sum())
    score = num / (power * level).sqrt().clamp_min(1e-12)
    best = int(score.argmax())
    gain = (level / max(float(power[best]), 1e-24)) ** 0.5
    return lo + best, min(MAX_GAIN, max(1 / MAX_GAIN, gain))


def find_matches(wave: Tensor, rate: int, gaps: Sequence[Span]) -> list[Match]:
    """The passages elsewhere in ``wave`` whose context matches each gap's best.

    A gap gets the passage of its own length whose context before and after matches best. A
    gap with no such passage outside every gap (a long gap in a short recording) is filled
    from both sides: its first half by the passage that best continues the context before
    it, its second half by the one that best leads into the context after it.

    Args:
        wave: The damaged recording ``(N,)`` or ``(C, N)`` (all channels are compared).
        rate: Its sample rate in Hz.
        gaps: Lost spans in samples, end exclusive.

    Returns:
        The matches in the order of the gaps, one or two per gap, none for a gap where not
        even a half fits.
    """
    wave = wave.reshape(-1, wave.shape[-1]).float()
    features, hop = context_features(wave, rate)
    context = max(1, round(CONTEXT_SECONDS * rate / hop))
    # padded once for every search (see best_offset)
    lost = F.pad(lost_frames(gaps, features.shape[0], hop), (context, context), value=True)
    usable = F.pad(features, (0, 0, context, context)) * (~lost)[:, None]
    energy = usable.pow(2).sum(-1)
    known = torch.ones(wave.shape[-1])
    for a, b in gaps:
        known[a:b] = 0

    def search(a: int, b: int) -> Match | None:
        frames = (a // hop, -(-b // hop))
        shift, score = best_offset(usable, energy, lost, frames, context)
        if score == float("-inf"):
            return None
        alone = [best_offset(usable, energy, lost, frames, context, sides)
                 for sides in ((True, False), (False, True))]
        corroborated = any(abs(own - shift) * hop <= AGREE_SECONDS * rate
                           for own, own_score in alone if own_score > float("-inf"))
        source, gain = align(wave, known, (a, b), a + shift * hop, hop,
                             round(ALIGN_SECONDS * rate))
        return Match(a / rate, b / rate, source / rate, score, gain, corroborated)

    matches: list[Match] = []
    for a, b in gaps:
        whole = search(a, b)
        middle = (a + b) // 2
        parts = [whole] if whole is not None or b - a < 2 * hop else [search(a, middle),
                                                                          search(middle, b)]
        matches.extend(m for m in parts if m is not None)
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
