"""``diffmusic degrade``: simulate a degraded recording and write a measurement folder."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch import Tensor

from diffmusic.audio import load_audio, require_signal
from diffmusic.cli.build import OperatorOptions, build_operator
from diffmusic.cli.errors import CliError
from diffmusic.cli.options import refuse_overwrite
from diffmusic.dsp import fit_length
from diffmusic.measurement import folder_outputs, write_measurement
from diffmusic.names import CLIP_SAMPLES, SAMPLE_RATE, STEMS

STEM_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
WORKING_BYTES_PER_SAMPLE = 64
"""Memory a clip needs per sample while it is degraded and written (the clean float32 clip,
its measurement, an STFT magnitude of 513 bins per 160 samples and the temporaries), with
room to spare."""


def clip_length(duration: float | None) -> int:
    """Samples of a clip of ``duration`` seconds (default: one prior window)."""
    if duration is None:
        return CLIP_SAMPLES
    length = round(duration * SAMPLE_RATE)
    if length < 1:
        raise CliError(f"--duration {duration:g}: shorter than one sample")
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # the system does not say
        return length
    needed = length * WORKING_BYTES_PER_SAMPLE
    if needed > available:
        raise CliError(f"--duration {duration:g}: a clip that long needs about "
                       f"{needed / 2**30:.1f} GiB of memory, {available / 2**30:.1f} GiB are "
                       "available")
    return length


def find_stems(folder: Path) -> dict[str, Path]:
    """The MUSDB18 stem files present in ``folder``, in :data:`STEMS` order (at least two)."""
    if not folder.is_dir():
        raise CliError(f"{folder}: source_separation needs a folder of stem files "
                       f"({', '.join(f'{s}.wav' for s in STEMS)})")
    found = {}
    for name in STEMS:
        present = [p for p in (folder / f"{name}{s}" for s in STEM_SUFFIXES) if p.is_file()]
        if present:
            found[name] = present[0]
    if len(found) < 2:
        raise CliError(f"{folder}: found {len(found)} stem file(s); source_separation needs at "
                       f"least two of {', '.join(f'{s}.wav' for s in STEMS)}")
    return found


def load_clean(source: Path, task: str, length: int) -> tuple[Tensor, list[Path], list[str]]:
    """The clean clip ``(1, L)`` (or stems ``(1, K, L)``), the files read and the stem names."""
    if task == "source_separation":
        stems = find_stems(source)
        waves = [fit_length(load_audio(path, SAMPLE_RATE, mono=True)[0], length)
                 for path in stems.values()]
        require_signal(torch.stack(waves).sum(0), source)
        return torch.stack(waves, 1), list(stems.values()), list(stems)
    if source.is_dir():
        raise CliError(f"{source}: is a folder; --task {task} needs an audio file")
    wave, _ = load_audio(source, SAMPLE_RATE, mono=True)
    return fit_length(require_signal(wave, source), length), [source], []


def run(args: argparse.Namespace) -> int:
    """Run ``diffmusic degrade``."""
    if args.output.exists() and not args.output.is_dir():
        raise CliError(f"-o {args.output}: exists and is not a folder")
    options = OperatorOptions.from_args(args)
    length = clip_length(args.duration)
    clean, inputs, stems = load_clean(args.input, options.task, length)
    options.sources = stems or None
    operator = build_operator(options, length)
    refuse_overwrite(folder_outputs(args.output, operator).values(),
                     inputs + ([options.rir] if options.rir else []))
    write_measurement(args.output, operator, clean, options.seed, str(args.input.resolve()))
    if not args.quiet:
        print(f"diffmusic: wrote {args.output} ({operator.task}, {length / SAMPLE_RATE:g} s)",
              file=sys.stderr)
    return 0
