"""``restore`` on a damaged recording of any length, channel count and sample rate.

A thin shell over :mod:`diffmusic.recording`: read the file, check the gaps and the window sizes
against the command-line flags, build each window's operator from the operator options, show a
progress bar per window, and turn the library's ``ValueError`` into a one-line :class:`CliError`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from diffmusic.audio import load_audio, require_signal
from diffmusic.cli.build import OperatorOptions, build_operator
from diffmusic.cli.errors import CliError
from diffmusic.cli.measurement import load_magnitude
from diffmusic.cli.options import STFT_HOP
from diffmusic.cli.progress import step_progress
from diffmusic.dsp import resample
from diffmusic.gaps import Gap, check_gaps
from diffmusic.operators import OPERATORS, Operator
from diffmusic.priors import Prior
from diffmusic.recording import (
    LongRestoration,
    OperatorFactory,
    Progress,
    restore_long,
    restore_windows,
    window_samples,
)


@dataclasses.dataclass
class RecordingOptions:
    """How ``restore`` cuts and rebuilds a recording (``--segment``, ``--overlap``,
    ``--channels``, ``--out-rate``; seconds and Hz, ``None``: defaults)."""

    segment: float | None = None
    overlap: float = 0.5
    channels: str = "independent"
    out_rate: int | None = None

    def check(self, prior: Prior) -> None:
        """Refuse window sizes the prior cannot use, naming the flag."""
        try:
            window_samples(prior, self.segment, self.overlap)
        except ValueError as error:
            raise CliError(f"--{error}") from None


def operator_builder(options: OperatorOptions, sample_rate: int) -> OperatorFactory:
    """The library's per-window operator factory from the command-line operator options."""

    def make(num_samples: int, gaps: list[Gap] | None = None) -> Operator:
        box = options if gaps is None else dataclasses.replace(options, gaps=gaps,
                                                               mask_type="box")
        return build_operator(box, num_samples, sample_rate)

    return make


def recording_gaps(options: OperatorOptions, duration: float) -> list[Gap]:
    """The inpainting gaps in seconds, checked against the recording's ``duration``."""
    if options.mask_type in (None, "box"):
        flag = "--gap" if options.gaps else "the default --gap"
        try:
            return check_gaps(options.gaps or [(2.0, 3.0)], duration, flag)
        except ValueError as error:
            raise CliError(str(error)) from None
    return options.inpainting_gaps(duration)


def restore_recording(path: Path, options: OperatorOptions, prior: Prior, settings: dict,
                      recording: RecordingOptions, quiet: bool = False) -> LongRestoration:
    """Restore a damaged recording (or a ``.npy`` magnitude for phase retrieval).

    Args:
        path: The file.
        options: The operator options (one operator is built per window).
        prior: The diffusion prior.
        settings: Keyword arguments of :func:`diffmusic.restore.restore`.
        recording: Segment, overlap, channel mode and output rate.
        quiet: Hide progress bars.

    Returns:
        The restoration in the input's channels at the output rate, and its record.

    Raises:
        CliError: Truncated or silent audio, bad gaps, anything the library refuses
            (``AudioError`` for unreadable audio).
    """
    make = operator_builder(options, prior.sample_rate)
    progress: Progress = functools.partial(step_progress, quiet=quiet)
    windows = {"segment": recording.segment, "overlap": recording.overlap, "progress": progress}
    if OPERATORS[options.task].measurement_kind == "magnitude":
        magnitude = require_signal(load_magnitude(path), path)
        try:
            result = restore_windows(prior, make, magnitude, (magnitude.shape[-1] - 1) * STFT_HOP,
                                     **windows, **settings)
        except ValueError as error:
            raise CliError(f"{path}: {error}") from None
        out_rate = recording.out_rate or prior.sample_rate
        record = {**result.record, "sample_rate": out_rate, "input_rate": prior.sample_rate,
                  "channel_mode": "independent"}
        return LongRestoration(resample(result.wave, prior.sample_rate, out_rate), out_rate,
                               record)
    wave, rate = load_audio(path)
    require_signal(wave, path)
    gaps = (recording_gaps(options, wave.shape[-1] / rate) if options.task == "inpainting"
            else None)
    try:
        return restore_long(prior, make, wave, rate, channels=recording.channels,
                            out_rate=recording.out_rate, gaps=gaps, **windows, **settings)
    except ValueError as error:
        raise CliError(f"{path}: {error}") from None
