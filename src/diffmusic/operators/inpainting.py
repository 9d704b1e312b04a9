"""Inpainting: restore samples that were lost in one or more gaps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from diffmusic.dsp import MelConfig, log_mel
from diffmusic.operators.base import Baseline, Operator

MaskType = Literal["box", "random", "periodic"]
Gap = tuple[float, float]


def make_gaps(mask_type: MaskType, duration: float, gaps: Sequence[Gap] | None = None,
              hole: float = 0.1, fraction: float = 0.3, period: float = 1.0,
              generator: torch.Generator | None = None) -> list[Gap]:
    """Gaps in seconds for one of the paper's mask types.

    Args:
        mask_type: ``box`` (the given ``gaps``, default ``[(2.0, 3.0)]``), ``random``
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
        return [tuple(map(float, g)) for g in (gaps if gaps is not None else [(2.0, 3.0)])]
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
        **kwargs: ``noise_snr`` and ``loss_domain`` of :class:`Operator`.
    """

    task: ClassVar[str] = "inpainting"
    default_baseline: ClassVar[str] = "context_copy"

    def __init__(self, sample_rate: int, num_samples: int,
                 gaps: Sequence[Gap] = ((2.0, 3.0),), mask_type: MaskType = "box",
                 crossfade: float = 0.005, **kwargs) -> None:
        super().__init__(sample_rate, num_samples, **kwargs)
        duration = num_samples / sample_rate
        self.gaps = [(float(s), float(e)) for s, e in gaps]
        if not self.gaps:
            raise ValueError("inpainting needs at least one gap")
        for start, end in self.gaps:
            if not 0 <= start < end <= duration + 1e-9:
                raise ValueError(f"gap {start:g}:{end:g} s must satisfy 0 <= start < end <= "
                                 f"{duration:g} s (the clip length)")
        self.mask_type = mask_type
        self.crossfade = crossfade
        mask = torch.ones(num_samples)
        for start, end in self.gaps:
            mask[round(start * sample_rate): round(end * sample_rate)] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x.dtype)

    def measurement_weight(self) -> Tensor:
        return self.mask

    def known_frames(self, mel: MelConfig) -> Tensor:
        """1 for log-mel frames whose whole window lies outside every gap, shape ``(frames, 1)``."""
        pad = (mel.n_fft - mel.hop_length) // 2
        lost = F.pad(1 - self.mask[None, None], (pad, pad), value=0.0)
        any_lost = F.max_pool1d(lost, mel.n_fft, mel.hop_length)[0, 0]
        return (1 - any_lost)[: mel.frames(self.num_samples), None]

    def feature_weight(self, y: Tensor) -> Tensor:
        return self.known_frames(MelConfig(sample_rate=self.sample_rate,
                                           fmax=self.sample_rate / 2))

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

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """The known samples with the restoration in the gaps (raised-cosine crossfades), the
        fill scaled down where it would peak above the known samples' peak: the measurement
        shows the recording's level (a clipped recording's fill stays below its clip level)."""
        keep = self.crossfade_mask().to(x_hat.dtype)
        known_peak = (y * self.mask.to(y.dtype)).abs().amax(-1, keepdim=True)
        fill_peak = (x_hat * (keep < 1)).abs().amax(-1, keepdim=True).clamp_min(1e-12)
        # a convex mix of two signals within the known peak stays within it
        return keep * y + (1 - keep) * x_hat * (known_peak / fill_peak).clamp(max=1)

    def baselines(self) -> dict[str, Baseline]:
        return {"zero_fill": lambda y: y, "context_copy": self.context_copy}

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

    def _spec_args(self) -> dict:
        return {"gaps": [list(g) for g in self.gaps], "mask_type": self.mask_type,
                "crossfade": self.crossfade}

    @property
    def duration(self) -> float:
        """Clip length in seconds."""
        return self.num_samples / self.sample_rate

    def gap_seconds(self) -> float:
        """Total length of the gaps in seconds."""
        return math.fsum(e - s for s, e in self.gaps)
