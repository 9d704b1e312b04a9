"""The operator that the command line's operator options describe."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from diffmusic.audio import AudioError, load_audio, require_signal
from diffmusic.cli.errors import CliError
from diffmusic.cli.options import DEFAULT_FACTOR, SAMPLE_RATE, TASK_OPTIONS
from diffmusic.longform import LATENT_HOP, round_up
from diffmusic.operators import OPERATORS, STEMS, TASKS, Operator, make_gaps


def padded_length(num_samples: int, multiple: int = LATENT_HOP) -> int:
    """``num_samples`` rounded up to a whole number of latent frames."""
    return round_up(num_samples, multiple)


@dataclass
class OperatorOptions:
    """What the operator options say, independent of argparse.

    Attributes:
        task: One of :data:`diffmusic.operators.TASKS`.
        gaps: Inpainting gaps in seconds (``box`` masks; default ``[(2, 3)]``).
        mask_type: Inpainting mask type.
        factor: Super-resolution factor.
        rt60: RT60 in seconds of the synthetic room response.
        rir: Room impulse response file.
        noise_snr: Measurement noise SNR in dB (``None``: noiseless).
        seed: Seed of the random mask, the synthetic response and the measurement noise.
        sources: Source names for separation.
    """

    task: str
    gaps: list[tuple[float, float]] | None = None
    mask_type: str | None = None
    factor: int | None = None
    rt60: float | None = None
    rir: Path | None = None
    noise_snr: float | None = None
    seed: int = 0
    sources: list[str] | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: object) -> OperatorOptions:
        """Collect the operator options of ``args`` (``overrides`` win) and check them."""
        names = ("task", "gaps", "mask_type", "factor", "rt60", "rir", "noise_snr", "seed",
                 "sources")
        values = {name: getattr(args, name, None) for name in names} | overrides
        values["seed"] = values["seed"] or 0
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        """Refuse options that do not apply to :attr:`task`."""
        for attr, (flag, task) in TASK_OPTIONS.items():
            if getattr(self, attr) is not None and self.task != task:
                raise CliError(f"{flag} applies only to --task {task}, not {self.task}")
        if self.gaps and self.mask_type not in (None, "box"):
            raise CliError(f"--gap applies to --mask-type box, not {self.mask_type}")
        if self.noise_snr is not None and not math.isfinite(self.noise_snr):
            raise CliError(f"--noise-snr must be a finite number of dB, got {self.noise_snr}")

    def inpainting_gaps(self, seconds: float) -> list[tuple[float, float]]:
        """The gaps of a clip of ``seconds``; each must lie inside it."""
        generator = torch.Generator().manual_seed(self.seed)
        gaps = make_gaps(self.mask_type or "box", seconds, self.gaps, generator=generator)
        for start, end in gaps:
            if end > seconds + 1e-9:
                which = "--gap" if self.gaps else "the default --gap"
                raise CliError(f"{which} {start:g}:{end:g} lies outside the {seconds:.2f} s clip")
        if not gaps:
            raise CliError(f"--mask-type {self.mask_type}: no gap fits the {seconds:.2f} s clip")
        return gaps


def build_operator(options: OperatorOptions, length: int,
                   sample_rate: int = SAMPLE_RATE) -> Operator:
    """The operator for a clip of ``length`` samples, built for the length padded to
    :data:`LATENT_HOP` (inputs shorter than a prior window are zero-padded, outputs cropped).

    Args:
        options: The operator options.
        length: Clip length in samples at ``sample_rate``.
        sample_rate: Sample rate in Hz.

    Raises:
        CliError: Options that do not fit the clip (gaps outside it, a bad RIR file...).
    """
    task = options.task
    if task not in OPERATORS:
        raise CliError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    extra: dict = {}
    if task == "inpainting":
        extra = {"gaps": options.inpainting_gaps(length / sample_rate),
                 "mask_type": options.mask_type or "box"}
    elif task == "super_resolution":
        extra = {"factor": options.factor or DEFAULT_FACTOR}
    elif task == "source_separation":
        extra = {"sources": options.sources or list(STEMS)}
    elif task == "dereverberation":
        extra = {"rir": _load_rir(options.rir, sample_rate), "rt60": options.rt60,
                 "seed": options.seed}
    try:
        return OPERATORS[task](sample_rate=sample_rate, num_samples=padded_length(length),
                               noise_snr=options.noise_snr,
                               **{k: v for k, v in extra.items() if v is not None})
    except ValueError as error:
        raise CliError(f"--task {task}: {error}") from None


def _load_rir(path: Path | None, sample_rate: int) -> torch.Tensor | None:
    """A mono room impulse response at ``sample_rate``, shape ``(L,)``."""
    if path is None:
        return None
    try:
        return require_signal(load_audio(path, sample_rate, mono=True)[0], path)[0]
    except AudioError as error:
        raise CliError(f"--rir {error}") from None
