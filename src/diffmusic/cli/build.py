"""The operator that the command line's operator options describe (built by the operator's own
:meth:`~diffmusic.operators.Operator.from_options`)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from diffmusic.audio import AudioError, load_audio, require_signal
from diffmusic.cli.errors import CliError
from diffmusic.cli.options import TASK_OPTIONS
from diffmusic.names import DEFAULT_GAP, LATENT_HOP, SAMPLE_RATE
from diffmusic.operators import OPERATORS, Operator
from diffmusic.restoration import OperatorFactory
from diffmusic.restoration.windows import round_up


@dataclass
class OperatorOptions:
    """What the operator options say, independent of argparse.

    Attributes:
        task: One of :data:`diffmusic.operators.TASKS`.
        gaps: Inpainting gaps in seconds (``box`` masks; default ``[DEFAULT_GAP]``).
        mask_type: Inpainting mask type.
        factor: Super-resolution factor.
        rt60: RT60 in seconds of the synthetic room response, or ``"blind"``.
        rir: Room impulse response file.
        noise_snr: Measurement noise SNR in dB (``None``: noiseless).
        seed: Seed of the random mask, the synthetic response and the measurement noise.
        sources: Source names for separation.
        clip_level: Declipping: the clip level (``None``: read from the recording).
        input_sdr: Declipping (``degrade``): clip to this input SDR in dB.
        noise_sample: Denoising: a noise-only stretch in seconds.
        snr: Denoising (``degrade``): the SNR in dB of the added noise.
        noise: Denoising (``degrade``): its colour.
        cutoff: Super-resolution of a low-passed recording: the cutoff in Hz, or ``"auto"``.
        order: Super-resolution (``degrade --cutoff``): the low-pass's order.
        filter: Super-resolution (``degrade --cutoff``): ``cheby1`` or ``butter``.
        room: Dereverberation (``degrade``): RT60 in seconds of a simulated room.
    """

    task: str
    gaps: list[tuple[float, float]] | None = None
    mask_type: str | None = None
    factor: int | None = None
    rt60: float | str | None = None
    rir: Path | None = None
    noise_snr: float | None = None
    seed: int = 0
    sources: list[str] | None = None
    clip_level: float | None = None
    input_sdr: float | None = None
    noise_sample: tuple[float, float] | None = None
    snr: float | None = None
    noise: str | None = None
    cutoff: float | str | None = None
    order: int | None = None
    filter: str | None = None
    room: float | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: object) -> OperatorOptions:
        """Collect the operator options of ``args`` (``overrides`` win) and check them."""
        values = {f.name: getattr(args, f.name, None) for f in fields(cls)} | overrides
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

    def task_options(self, duration: float | None = None) -> dict:
        """The keywords of the operator's :meth:`~diffmusic.operators.Operator.from_options`
        that these options set (``duration``: the recording's, for inpainting masks)."""
        cls = OPERATORS[self.task]
        values = {attr: getattr(self, attr) for attr, (_, task) in TASK_OPTIONS.items()
                  if task == self.task}
        values.pop("rir", None)
        if self.task == "inpainting" and self.mask_type in (None, "box"):
            values["gaps"] = self.gaps or [DEFAULT_GAP]
        if "seed" in cls.options:
            values["seed"] = self.seed
        if "duration" in cls.options:
            values["duration"] = duration
        if "rir" in cls.options:
            values["rir"] = _load_rir(self.rir)
        return values

    def factory(self, duration: float | None = None) -> OperatorFactory:
        """Builds the operator at any rate and length (``make(sample_rate, num_samples)``),
        its errors as one line naming the task."""

        def make(sample_rate: int, num_samples: int) -> Operator:
            try:
                return OPERATORS[self.task].from_options(
                    sample_rate, num_samples, noise_snr=self.noise_snr,
                    **self.task_options(duration))
            except ValueError as error:  # named by the flag of the gaps or the mask, or the task
                text = str(error)
                if text.startswith("gap "):
                    text = ("--gap " if self.gaps else "the default --gap ") + text[4:]
                elif text.startswith("mask type "):
                    text = "--mask-type " + text[len("mask type "):]
                else:
                    text = f"--task {self.task}: {text}"
                raise CliError(text) from None

        return make


def build_operator(options: OperatorOptions, length: int) -> Operator:
    """The operator for a clip of ``length`` samples at the protocol's rate, built for the
    length padded to whole latent frames (inputs shorter than a window are zero-padded, outputs
    cropped).

    Raises:
        CliError: Options that do not fit the clip (gaps outside it, a bad RIR file...).
    """
    make = options.factory(length / SAMPLE_RATE)
    return make(SAMPLE_RATE, round_up(length, LATENT_HOP))


def _load_rir(path: Path | None) -> torch.Tensor | None:
    """A mono room impulse response at the protocol's rate, shape ``(L,)``."""
    if path is None:
        return None
    try:
        return require_signal(load_audio(path, SAMPLE_RATE, mono=True)[0], path)[0]
    except AudioError as error:
        raise CliError(f"--rir {error}") from None
