"""``diffmusic restore``: restore a measurement folder, or a damaged recording given its task."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from diffmusic.audio import save_audio
from diffmusic.cli.errors import CliError
from diffmusic.cli.measurement import (
    Measurement,
    load_measurement,
    pad_measurement,
    read_measurement,
)
from diffmusic.cli.options import (
    SAMPLE_RATE,
    TASK_OPTIONS,
    OperatorOptions,
    add_operator_options,
    add_sampler_options,
    build_operator,
    refuse_overwrite,
    restore_settings,
)
from diffmusic.cli.progress import step_progress
from diffmusic.operators import Operator
from diffmusic.priors import DEFAULT_PRIOR, Prior, load_prior
from diffmusic.report import write_json
from diffmusic.restore import Restoration, restore

DEFAULT_STEPS = 50
AUDIO_SUFFIXES = (".wav", ".flac")


def package_version() -> str:
    """The installed version of diffmusic (``"unknown"`` when not installed)."""
    try:
        return version("diffmusic")
    except PackageNotFoundError:
        return "unknown"


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``restore``."""
    parser = subparsers.add_parser(
        "restore", parents=[common], help="restore a measurement folder or a damaged file",
        description="Restore MEAS_DIR (written by 'diffmusic degrade') or a damaged recording "
                    "INPUT whose degradation --task and its options describe. Writes OUT (a wav; "
                    "for source_separation a folder with one wav per source) and its record "
                    "OUT.json (OUT/restore.json for a folder).")
    parser.add_argument("input", type=Path, metavar="MEAS_DIR|INPUT",
                        help="measurement folder, or an audio file (.npy magnitude for "
                             "phase_retrieval) with --task")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                        help="restored .wav/.flac, or a folder for source_separation")
    add_operator_options(parser, task_required=False, sources=True)
    add_sampler_options(parser, steps=DEFAULT_STEPS)
    parser.set_defaults(run=run)


def output_paths(operator: Operator, out: Path) -> tuple[list[Path], Path]:
    """The audio files and the JSON record a restoration writes for ``-o out``."""
    if operator.num_sources == 1:
        if out.suffix.lower() not in AUDIO_SUFFIXES or out.is_dir():
            raise CliError(f"-o {out}: give a .wav or .flac file name")
        return [out], out.with_suffix(".json")
    if out.suffix.lower() in AUDIO_SUFFIXES or out.is_file():
        raise CliError(f"-o {out}: source separation writes a folder with one wav per source; "
                       "give a folder name")
    return [out / f"{name}.wav" for name in operator.sources], out / "restore.json"


@functools.lru_cache(maxsize=2)
def cached_prior(name: str, device: str = "cpu") -> Prior:
    """Load a prior once per process (loading builds or reads the whole model)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: CUDA is not available on this machine")
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # diffusers warns about an empty list of fp32 modules
    try:
        return load_prior(name, device)
    finally:
        logging.disable(previous)


def check_prior(measurement: Measurement, prior: Prior) -> None:
    """Refuse measurements the prior cannot model (sample rate, more than one window)."""
    operator, rate = measurement.operator, prior.sample_rate
    if operator.sample_rate != rate:
        raise CliError(f"{measurement.origin}: the clip is at {operator.sample_rate} Hz but the "
                       f"{prior.name} prior works at {rate} Hz")
    if operator.num_samples > prior.window:
        raise CliError(f"{measurement.origin}: {measurement.length / rate:.2f} s is longer than "
                       f"the {prior.name} prior's window of {prior.window / rate:.2f} s; cut the "
                       "recording into clips (diffmusic degrade --duration)")


def restore_measurement(measurement: Measurement, prior: Prior, settings: dict, out: Path,
                        quiet: bool = False) -> tuple[Restoration, dict]:
    """Restore ``measurement`` and write the audio and the JSON record for ``-o out``.

    Args:
        measurement: What to restore.
        prior: The diffusion prior.
        settings: Keyword arguments of :func:`diffmusic.restore.restore`.
        out: ``-o`` path (see :func:`output_paths`).
        quiet: Hide the progress bar.

    Returns:
        The restoration (full padded length) and the record written next to the audio.
    """
    check_prior(measurement, prior)
    operator = measurement.operator.to(prior.device)
    audio_paths, json_path = output_paths(operator, out)
    start = time.perf_counter()
    label = f"{operator.task} ({settings['sampler']})"
    with step_progress(label, settings["steps"], quiet) as callback:
        result = restore(prior, operator, measurement.y.to(prior.device), callback=callback,
                         **settings)
    wave = result.wave[0, ..., : measurement.length].cpu()
    for k, path in enumerate(audio_paths):
        save_audio(path, wave if operator.num_sources == 1 else wave[k:k + 1],
                   operator.sample_rate)
    record = {**result.record, "diffmusic_version": package_version(),
              "measurement": str(measurement.origin), "output": [str(p) for p in audio_paths],
              "sample_rate": operator.sample_rate, "length": measurement.length,
              "padded_length": operator.num_samples,
              "seconds_total": time.perf_counter() - start}
    write_json(json_path, record)
    return result, record


def measurement_from_args(args: argparse.Namespace) -> Measurement:
    """The measurement ``restore`` was given: a folder, or a file plus operator options."""
    source: Path = args.input
    given = [flag for attr, (flag, _) in TASK_OPTIONS.items() if getattr(args, attr) is not None]
    if source.is_dir():
        if args.task or given:
            flag = "--task" if args.task else given[0]
            raise CliError(f"{flag}: {source} is a measurement folder; its operator comes from "
                           "its measurement.json")
        return read_measurement(source)
    if args.task is None:
        if not source.exists():
            raise CliError(f"{source}: no such file or folder")
        raise CliError(f"{source}: give --task to restore a file (or give a measurement folder "
                       "written by diffmusic degrade)")
    options = OperatorOptions.from_args(args)
    y, length = load_measurement(source, options.task, options.measurement_rate(SAMPLE_RATE),
                                 SAMPLE_RATE)
    operator = build_operator(options, length)
    inputs = [source] + ([options.rir] if options.rir else [])
    return Measurement(operator, pad_measurement(operator, y, source), length, source, inputs)


def run(args: argparse.Namespace) -> int:
    """Run ``diffmusic restore``."""
    measurement = measurement_from_args(args)
    audio_paths, json_path = output_paths(measurement.operator, args.output)
    refuse_overwrite([*audio_paths, json_path], measurement.inputs)
    settings = restore_settings(args)
    sources = measurement.operator.num_sources
    if isinstance(settings["prompts"], list) and len(settings["prompts"]) != sources:
        raise CliError(f"--prompt given {len(settings['prompts'])} times for {sources} "
                       "source(s); give it once, or once per source")
    prior = cached_prior(args.prior or DEFAULT_PRIOR, args.device)
    _, record = restore_measurement(measurement, prior, settings, args.output, args.quiet)
    if not args.quiet:
        print(f"diffmusic: wrote {args.output} (final loss {record['final_loss'][0]:.4g}, "
              f"{record['seconds_total']:.1f} s)", file=sys.stderr)
    return 0
