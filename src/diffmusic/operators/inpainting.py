"""Inpainting: restore samples that were lost in one or more gaps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar, Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from diffmusic.dsp import (
    MelConfig,
    fit_length,
    log_mel,
    magnitude_blend,
    nearest_fft_size,
    raised_cosine,
    resample_region,
)
from diffmusic.metrics import lsd_in
from diffmusic.names import CLIP_SAMPLES, DEFAULT_GAP, SAMPLE_RATE
from diffmusic.operators.base import Operator, Span, weighted_mean
from diffmusic.operators.similarity import Match, copy_passages, find_matches, passage_weights

MaskType = Literal["box", "random", "periodic"]
Gap = tuple[float, float]
EXCERPT_SECONDS = 3.0
"""Length of the excerpt around the gaps that :meth:`Inpainting.invented` returns (one musicnn
patch)."""
PAPER_SECONDS = CLIP_SAMPLES / SAMPLE_RATE
"""Length of the paper's clips (5.12 s), in which its gap is :data:`DEFAULT_GAP`."""
MIN_MATCH = 0.87
"""Least context similarity (:attr:`Match.score`) for which a gap keeps a copied passage."""
MIN_GUIDE = 0.6
"""Context similarity below which a passage does not guide the restoration at all."""
MATCH_WEIGHT = 0.5
"""Weight of a kept passage's log-mel frame in the loss (a measured frame weighs 1)."""
COPY_SHARE = 0.5
"""Weight of the copy's log-magnitude in a gap's fill, the rest being the restoration's
(:meth:`Inpainting.project`)."""
BLEND_SECONDS = 0.064
"""STFT window of that blend in seconds (1024 samples at 16 kHz; hop a quarter of it), or the
largest power of two that the clip holds."""
MIN_BLEND_SAMPLES = 16
"""Smallest STFT window of the blend; a shorter clip's fill is the restoration as it is."""


def guide_weight(score: float) -> float:
    """Loss weight of a passage's log-mel frames: :data:`MATCH_WEIGHT` from :data:`MIN_MATCH`
    up, falling linearly to 0 at :data:`MIN_GUIDE`."""
    return MATCH_WEIGHT * min(1.0, max(0.0, (score - MIN_GUIDE) / (MIN_MATCH - MIN_GUIDE)))


def make_gaps(mask_type: MaskType, duration: float, gaps: Sequence[Gap] | None = None,
              hole: float = 0.1, fraction: float = 0.3, period: float = 1.0,
              generator: torch.Generator | None = None) -> list[Gap]:
    """Gaps in seconds for one of the paper's mask types.

    Args:
        mask_type: ``box`` (the given ``gaps``, default the paper's), ``random``
            (``fraction`` of the clip in ``hole``-second holes on a ``hole`` grid) or ``periodic``
            (a ``hole``-second gap in the middle of every ``period`` seconds).
        duration: Clip length in seconds.
        gaps: Gaps for ``box``.
        hole: Hole length in seconds for ``random`` and ``periodic``.
        fraction: Share of the clip the ``random`` mask removes.
        period: Spacing of ``periodic`` gaps in seconds.
        generator: Random source for ``random``.
    """
    if mask_type == "box":
        return [tuple(map(float, g)) for g in (gaps if gaps is not None else [DEFAULT_GAP])]
    if mask_type == "periodic":
        starts = torch.arange(0.5 * (period - hole), duration - hole + 1e-9, period)
        return [(round(s, 6), round(s + hole, 6)) for s in starts.tolist()]
    if mask_type == "random":
        slots = int(duration // hole)
        chosen = torch.randperm(slots, generator=generator)[: round(fraction * slots)]
        return [(round(i * hole, 6), round((i + 1) * hole, 6)) for i in sorted(chosen.tolist())]
    raise ValueError(f"unknown mask type {mask_type!r}; choose box, random or periodic")


class Inpainting(Operator):
    """``A(x) = m * x`` with ``m`` zero inside the gaps (DESIGN.md section 3).

    Args:
        sample_rate: Sample rate in Hz.
        num_samples: Clip length in samples.
        gaps: ``(start, end)`` pairs in seconds, ``start < end``, inside the clip.
        mask_type: How the gaps were made (recorded in the spec).
        crossfade: Length in seconds of the raised-cosine crossfade :meth:`project` uses on the
            known side of each gap edge.
        matches: The best passages for each gap (:meth:`with_similarity`), as :class:`Match`
            or its dict (``None``: not searched yet). Those that are corroborated and score
            above :data:`MIN_GUIDE` are :attr:`guides`: the measurement holds them in their gaps
            and the ``logmel`` loss compares the restoration's frames there, weighted by
            :func:`guide_weight`. Those that score at least :data:`MIN_MATCH` are also
            :attr:`used`: :meth:`project` keeps them but for the seams at the gap's edges
            (:func:`~diffmusic.operators.similarity.passage_weights`).
        copy_share: Weight of the copy's log-magnitude in what :meth:`project` puts in the
            gaps (:meth:`textured`); ``None``: the restoration as it is.
        **kwargs: ``noise_snr`` and ``loss_domain`` of :class:`Operator`.
    """

    task: ClassVar[str] = "inpainting"
    options: ClassVar[tuple[str, ...]] = ("gaps", "gap_length", "mask_type", "seed", "duration")
    baseline_names: ClassVar[tuple[str, ...]] = ("zero_fill", "context_copy", "similarity_copy")
    default_baseline: ClassVar[str] = "similarity_copy"

    def __init__(self, sample_rate: int, num_samples: int,
                 gaps: Sequence[Gap] = (DEFAULT_GAP,), mask_type: MaskType = "box",
                 crossfade: float = 0.005, matches: Sequence[Match | dict] | None = None,
                 copy_share: float | None = COPY_SHARE, **kwargs) -> None:
        super().__init__(sample_rate, num_samples, **kwargs)
        duration = num_samples / sample_rate
        self.gaps = [(float(s), float(e)) for s, e in gaps]
        if not self.gaps:
            raise ValueError("inpainting needs at least one gap")
        for start, end in self.gaps:
            if not 0 <= start < end <= duration + 1e-9:
                raise ValueError(f"gap {start:g}:{end:g} s must satisfy 0 <= start < end <= "
                                 f"{duration:g} s (the clip length)")
        if copy_share is not None and not 0 <= copy_share <= 1:
            raise ValueError(f"copy_share {copy_share} must lie in [0, 1]")
        self.mask_type = mask_type
        self.crossfade = crossfade
        self.copy_share = copy_share
        mask = torch.ones(num_samples)
        for start, end in self.gaps:
            mask[round(start * sample_rate): round(end * sample_rate)] = 0
        self.register_buffer("mask", mask, persistent=False)
        self.matches = None if matches is None else [
            m if isinstance(m, Match) else Match(**m) for m in matches]
        self.guides = [m for m in self.matches or ()
                       if m.corroborated and guide_weight(m.score) > 0]
        self.used = [m for m in self.guides if m.score >= MIN_MATCH]
        # the kept passages' share of each sample: above 0 exactly in the gaps that keep one
        self.register_buffer("passage", passage_weights(self.used, sample_rate, num_samples)
                             * (1 - mask), persistent=False)
        guide = torch.zeros(num_samples)
        for m in self.guides:
            guide[round(m.start * sample_rate): round(m.end * sample_rate)] = guide_weight(m.score)
        self.register_buffer("guide", guide * (1 - mask), persistent=False)

    @classmethod
    def from_options(cls, sample_rate: int, num_samples: int, *,
                     noise_snr: float | None = None, gaps: Sequence[Gap] | None = None,
                     gap_length: float | None = None, mask_type: MaskType | None = None,
                     seed: int = 0, duration: float | None = None) -> Inpainting:
        """The gaps of :func:`make_gaps` (``seed`` draws a ``random`` mask) in a clip of
        ``num_samples``, or in its first ``duration`` seconds when the clip is a zero-padded
        recording. Without ``gaps`` a box mask is the paper's gap, ``[2, 3)`` s of its 5.12 s
        clip, scaled to the clip's length (the benchmark protocol for clips of any length), or
        a gap of ``gap_length`` seconds centred where that gap is centred.

        Raises:
            ValueError: A gap outside the clip, or a mask with no gap in it.
        """
        seconds = num_samples / sample_rate if duration is None else duration
        generator = torch.Generator().manual_seed(seed)
        mask_type = mask_type or "box"
        if gaps is None and mask_type == "box":
            gaps = [tuple(round(edge / PAPER_SECONDS * seconds, 4) for edge in DEFAULT_GAP)]
            if gap_length is not None:
                centre = sum(gaps[0]) / 2
                gaps = [(round(centre - gap_length / 2, 4), round(centre + gap_length / 2, 4))]
        chosen = make_gaps(mask_type, seconds, gaps, generator=generator)
        for start, end in chosen:
            if end > seconds + 1e-9:
                raise ValueError(f"gap {start:g}:{end:g} lies outside the {seconds:.2f} s clip")
        if not chosen:
            raise ValueError(f"mask type {mask_type}: no gap fits the {seconds:.2f} s clip")
        return cls(sample_rate, num_samples, chosen, mask_type, noise_snr=noise_snr)

    def regions(self) -> list[Span]:
        """The gaps in samples (at least one sample each)."""
        spans = [(round(a * self.sample_rate), round(b * self.sample_rate)) for a, b in self.gaps]
        return [(a, max(a + 1, b)) for a, b in spans]

    def region_margin(self) -> int:
        """The projection's crossfade, plus one sample."""
        return round(self.crossfade * self.sample_rate) + 1

    def _window_args(self, start: int, length: int) -> dict:
        """The gaps that reach into the window, clipped to it, in seconds from its start (a
        window's operator must mask the missing samples of neighbouring gaps too)."""
        rate, end = self.sample_rate, start + length
        spans = [(max(a, start), min(b, end)) for a, b in self.regions()]
        gaps = [((a - start) / rate, (b - start) / rate) for a, b in spans if a < b]
        offset, stop = start / rate, end / rate
        matches = None if self.matches is None else [
            replace(m, start=max(m.start, offset) - offset, end=min(m.end, stop) - offset,
                    source=m.source - offset)
            for m in self.matches if m.start < stop and m.end > offset]
        return {**super()._window_args(start, length), "gaps": gaps, "matches": matches}

    def with_similarity(self, y: Tensor) -> tuple[Inpainting, Tensor]:
        """Each gap given the passage of ``y`` ``(B, N)`` whose context matches its own best
        (:func:`~diffmusic.operators.similarity.find_matches`, all channels compared).

        Returns:
            This operator with those :attr:`matches`, and ``y`` (cut or zero-padded to the
            operator's length) with the :attr:`guides`, level-matched, in their gaps and
            zeros in the other gaps. An operator that was searched already returns itself and
            ``y``.
        """
        if self.matches is not None:
            return self, y
        y = fit_length(y, self.num_samples)
        operator = self._with(matches=find_matches(y, self.sample_rate, self.regions()))
        return operator, copy_passages(y * self.mask.to(y.dtype), self.sample_rate,
                                       operator.guides)

    def without_similarity(self) -> Inpainting:
        """This operator with no passage, if it was not searched (:meth:`similarity_copy` is
        then the :meth:`context_copy`)."""
        return self if self.matches is not None else self._with(matches=[])

    def keep_original(self, original: Tensor, restored: Tensor, rate: int, restored_rate: int,
                      out_rate: int) -> Tensor:
        """At the original's own rate, every sample outside the gaps and their crossfades is
        the original's, bit for bit (:func:`paste_gaps`), and copied passages are taken from
        the original itself (its full band), but for their seams."""
        if out_rate != rate:
            return super().keep_original(original, restored, rate, restored_rate, out_rate)
        out = paste_gaps(original, restored, rate, restored_rate, self.gaps, self.crossfade)
        if not self.used:
            return out
        # the copied passages at the original's own rate and bandwidth
        weights = passage_weights(self.used, rate, original.shape[-1])
        return out + weights * (copy_passages(original, rate, self.used) - out)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x.dtype)

    def measurement_weight(self) -> Tensor:
        return self.mask

    def known_frames(self, mel: MelConfig) -> Tensor:
        """Weights of log-mel frames, shape ``(frames, 1)``: 1 where the frame's whole window
        lies outside every gap, the passage's :func:`guide_weight` where its centre lies in a
        gap that holds one, else 0."""
        pad = (mel.n_fft - mel.hop_length) // 2
        lost = F.pad(1 - self.mask[None, None], (pad, pad), value=0.0)
        any_lost = F.max_pool1d(lost, mel.n_fft, mel.hop_length)[0, 0]
        frames = mel.frames(self.num_samples)
        centres = torch.arange(frames) * mel.hop_length + mel.hop_length // 2
        copied = self.guide[centres.clamp(max=self.num_samples - 1)]
        return ((1 - any_lost)[:frames] + copied)[:, None]

    def feature_weight(self, y: Tensor) -> Tensor:
        return self.known_frames(MelConfig(sample_rate=self.sample_rate,
                                           fmax=self.sample_rate / 2))

    def loss(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """The operator's loss; with copied passages, the ``logmel`` loss compares the
        restoration's own frames (known frames are the same as the masked restoration's) with
        the measurement's, the passages included."""
        if not self.guides or self.loss_domain != "logmel":
            return super().loss(x_hat, y)
        diff = self.features(x_hat) - self.features(y)
        return weighted_mean(diff.pow(2), self.feature_weight(y))

    def mel_target(self, y: Tensor, mel: MelConfig) -> tuple[Tensor, Tensor]:
        return log_mel(y, mel), self.known_frames(mel)

    def crossfade_mask(self) -> Tensor:
        """The mask with raised-cosine ramps on the known side of each gap edge, shape ``(N,)``."""
        ramp_len = max(1, round(self.crossfade * self.sample_rate))
        lost = (1 - self.mask)[None, None]
        kernel = torch.hann_window(2 * ramp_len + 1, periodic=False)[None, None]
        spread = F.conv1d(lost, kernel / kernel.max(), padding=ramp_len)[0, 0].clamp(0, 1)
        return (1 - spread) * self.mask

    def dc_offset(self, y: Tensor) -> Tensor:
        mask = self.mask.to(y.dtype)
        return (y * mask).sum(-1, keepdim=True) / mask.sum().clamp_min(1)

    def textured(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """The copy (:meth:`similarity_copy` of the passages this operator holds, the
        :meth:`context_copy` elsewhere; it never searches) with the restoration's STFT
        magnitudes blended into its own (:func:`~diffmusic.dsp.magnitude_blend`,
        :attr:`copy_share`): the restoration's spectrum, the copy's fine structure and
        transients. ``x_hat`` itself when :attr:`copy_share` is ``None`` (or the clip is shorter
        than :data:`MIN_BLEND_SAMPLES`).

        Args:
            x_hat: Restoration, ``(..., N)``.
            y: Measurement, ``(..., N)``, holding the passages in their gaps as
                :meth:`with_similarity` returns it.
        """
        # the window fits the clip (a clip shorter than the smallest window stays as restored)
        n_fft = min(nearest_fft_size(BLEND_SECONDS * self.sample_rate),
                    2 ** math.floor(math.log2(self.num_samples)))
        if self.copy_share is None or n_fft < MIN_BLEND_SAMPLES:
            return x_hat
        copy = self.without_similarity().similarity_copy(y).to(x_hat.dtype)
        return magnitude_blend(copy, x_hat, self.copy_share, n_fft, n_fft // 4)

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """The known samples with the :meth:`textured` restoration in the gaps (raised-cosine
        crossfades), the fill scaled down where it would peak above the known samples' peak:
        the measurement shows the recording's level (a clipped recording's fill stays below
        its clip level). Gaps that hold a copied passage keep it but for the seams at their
        edges."""
        keep = (self.crossfade_mask() + self.passage).to(x_hat.dtype)
        fill = self.textured(x_hat, y)
        known_peak = (y * self.mask.to(y.dtype)).abs().amax(-1, keepdim=True)
        fill_peak = (fill * (keep < 1)).abs().amax(-1, keepdim=True).clamp_min(1e-12)
        # a convex mix of two signals within the known peak stays within it
        return keep * y + (1 - keep) * fill * (known_peak / fill_peak).clamp(max=1)

    def zero_fill(self, y: Tensor) -> Tensor:
        """Zeros in the gaps."""
        return y * self.mask.to(y.dtype)

    def context_copy(self, y: Tensor) -> Tensor:
        """Fill each gap with the audio just before it (after it when the gap starts the clip)."""
        x = y.clone()
        for start, end in self.gaps:
            a, b = round(start * self.sample_rate), round(end * self.sample_rate)
            n = b - a
            src = a - n if a - n >= 0 else min(b, self.num_samples - n)
            src = max(src, 0)
            length = min(n, self.num_samples - src)
            x[..., a: a + length] = y[..., src: src + length]
        return x

    def invented(self, wave: Tensor) -> Tensor:
        """The :data:`EXCERPT_SECONDS` of ``wave`` centred on the middle of the gaps."""
        regions = self.regions()
        length = min(wave.shape[-1], round(EXCERPT_SECONDS * self.sample_rate))
        centre = (regions[0][0] + regions[-1][1]) // 2
        start = min(max(0, centre - length // 2), wave.shape[-1] - length)
        return wave[..., start: start + length]

    def score(self, est: Tensor, ref: Tensor, y: Tensor) -> dict:
        """LSD and SI-SDR of the clip, and ``lsd_gap``: LSD over the frames centred in gaps."""
        return {**super().score(est, ref, y), "lsd_gap": float(lsd_in(est, ref, self.regions()))}

    def similarity_copy(self, y: Tensor) -> Tensor:
        """Each gap filled with the passage whose context matches best (:meth:`with_similarity`,
        searched in ``y`` unless this operator holds its matches; its :attr:`guides`),
        :meth:`context_copy` where no passage matches."""
        operator, y = self.with_similarity(y)
        return torch.where(operator.guide > 0, y, self.context_copy(y * self.mask.to(y.dtype)))

    def _spec_args(self) -> dict:
        return {"gaps": [list(g) for g in self.gaps], "mask_type": self.mask_type,
                "crossfade": self.crossfade, "copy_share": self.copy_share,
                "matches": None if self.matches is None else [m.to_dict() for m in self.matches]}


def _keep_weights(length: int, spans: Sequence[Span], ramp_len: int) -> Tensor:
    """0 inside ``spans``, raised-cosine ramps of ``ramp_len`` samples outside each edge, exactly
    1 elsewhere, shape ``(length,)``."""
    keep = torch.ones(length)
    ramp = raised_cosine(torch.arange(1, ramp_len + 1) / (ramp_len + 1))
    for a, b in spans:
        a, b = min(length, max(0, a)), min(length, max(0, b))
        left = max(0, a - ramp_len)
        keep[left:a] = torch.minimum(keep[left:a], ramp.flip(0)[ramp_len - (a - left):])
        right = min(length, b + ramp_len)
        keep[b:right] = torch.minimum(keep[b:right], ramp[: right - b])
        keep[a:b] = 0
    return keep


def paste_gaps(original: Tensor, restored: Tensor, rate: int, restored_rate: int,
               gaps: Sequence[Gap], crossfade: float) -> Tensor:
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
    spans = sorted((round(a * rate), max(round(a * rate), round(b * rate))) for a, b in gaps)
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
