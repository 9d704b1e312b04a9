"""``restore`` on a damaged recording of any length, channel count and sample rate.

A thin shell over :class:`diffmusic.restoration.Restorer`: read the file, check the gaps against
the command-line flags, build the recording's operator from the operator options, show progress
bars, and turn the library's ``ValueError`` into a one-line :class:`CliError` naming the file.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from diffmusic.audio import load_audio, require_signal
from diffmusic.cli.build import OperatorOptions
from diffmusic.cli.errors import CliError
from diffmusic.dsp import resample
from diffmusic.gaps import check_gaps
from diffmusic.measurement import load_magnitude
from diffmusic.names import DEFAULT_GAP
from diffmusic.operators import OPERATORS
from diffmusic.priors import Prior
from diffmusic.restoration import RecordingRestoration, Restorer, Settings
from diffmusic.restoration.restorer import Progress
from diffmusic.restoration.windows import round_up
from diffmusic.samplers import Callback


@contextmanager
def step_progress(description: str, steps: int, quiet: bool = False) -> Iterator[Callback]:
    """A sampler callback that advances a tqdm bar and shows the measurement loss.

    The bar writes to stderr and is hidden with ``quiet`` or when stderr is not a terminal.

    Args:
        description: Label in front of the bar.
        steps: Number of sampling steps.
        quiet: Never show the bar.
    """
    bar = tqdm(total=steps, desc=description, unit="step", file=sys.stderr, leave=False,
               disable=True if quiet else None)

    def callback(info: dict) -> None:
        if info.get("loss") is not None:
            bar.set_postfix(loss=f"{info['loss']:.4g}", refresh=False)
        bar.update(1)

    try:
        yield callback
    finally:
        bar.close()


@dataclasses.dataclass
class RecordingOptions:
    """How ``restore`` cuts and rebuilds a recording (``--segment``, ``--overlap``,
    ``--channels``, ``--out-rate``; seconds and Hz, ``None``: defaults)."""

    segment: float | None = None
    overlap: float = 0.5
    channels: str = "independent"
    out_rate: int | None = None

    def restorer(self, prior: Prior, settings: Settings, quiet: bool = False,
                 progress: Progress | None = None) -> Restorer:
        """A restorer with these window sizes and a progress bar per window (unless ``quiet``;
        ``progress`` replaces the bars, e.g. the studio's per-window progress).

        Raises:
            CliError: Window sizes the prior cannot use, naming the flag.
        """
        restorer = Restorer(prior, settings, self.segment, self.overlap,
                            progress or functools.partial(step_progress, quiet=quiet))
        try:
            restorer.window_samples()
        except ValueError as error:
            raise CliError(f"--{error}") from None
        return restorer


def restore_recording(path: Path, options: OperatorOptions, restorer: Restorer,
                      recording: RecordingOptions) -> RecordingRestoration:
    """Restore a damaged recording (or a ``.npy`` magnitude for phase retrieval).

    Args:
        path: The file.
        options: The operator options.
        restorer: The prior, its settings and the window sizes.
        recording: Channel mode and output rate.

    Returns:
        The restoration in the input's channels at the output rate, and its record.

    Raises:
        CliError: Anything the library refuses, naming the file (``ValueError`` for gaps
            outside the recording, ``AudioError`` for unreadable, truncated or silent audio).
    """
    prior = restorer.prior
    if OPERATORS[options.task].measurement_kind == "magnitude":
        magnitude = require_signal(load_magnitude(path), path)
        make = options.factory()
        length = make(prior.sample_rate, prior.latent_hop).covered_samples(magnitude)
        operator = make(prior.sample_rate, round_up(length, prior.latent_hop))
        try:
            result = restorer.restore_windows(operator, magnitude, length)
        except ValueError as error:
            raise CliError(f"{path}: {error}") from None
        out_rate = recording.out_rate or prior.sample_rate
        record = {**result.record, "sample_rate": out_rate, "input_rate": prior.sample_rate,
                  "channel_mode": "independent"}
        return RecordingRestoration(resample(result.wave, prior.sample_rate, out_rate),
                                    out_rate, record)
    wave, rate = load_audio(path)
    require_signal(wave, path)
    duration = wave.shape[-1] / rate
    if options.task == "inpainting" and options.mask_type in (None, "box"):  # gaps inside it
        options = dataclasses.replace(options, gaps=check_gaps(
            options.gaps or [DEFAULT_GAP], duration, "--gap" if options.gaps else
            "the default --gap"))
    make = options.factory(duration)
    try:
        return restorer.restore_recording(make, wave, rate, recording.channels,
                                          recording.out_rate)
    except ValueError as error:
        raise CliError(f"{path}: {error}") from None
