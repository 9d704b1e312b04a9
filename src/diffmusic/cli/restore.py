"""``diffmusic restore``: restore a measurement folder, or a damaged recording given its task."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from diffmusic import package_version, priors
from diffmusic.audio import fit_full_scale, pcm_bits, save_audio
from diffmusic.cli.batch import FileJob, audio_outputs, plan_jobs
from diffmusic.cli.build import OperatorOptions
from diffmusic.cli.errors import CliError
from diffmusic.cli.options import (
    TASK_OPTIONS,
    refuse_overwrite,
    restore_settings,
)
from diffmusic.cli.recording import RecordingOptions, restore_recording
from diffmusic.cluster import ray_imap
from diffmusic.files import OutputError, write_together
from diffmusic.gaps import read_labels
from diffmusic.measurement import MEASUREMENT_JSON, Measurement, read_measurement
from diffmusic.names import AUTO_CUTOFF, BLIND_ROOM
from diffmusic.operators import STEMS
from diffmusic.priors import DEFAULT_PRIOR, Prior
from diffmusic.priors.prompts import parse_prompts
from diffmusic.report import write_json
from diffmusic.restoration import Restoration, Settings
from diffmusic.restoration.restorer import Progress

RESTORE_ERRORS = (CliError, ValueError, OutputError)
"""Failures of one file of a batch: reported, counted, and the batch goes on."""
MIN_RATE, MAX_RATE = 1000, 384000
"""The output rates ``--out-rate`` accepts, in Hz."""
PARTIAL_FAILURE = 3
"""Exit status of a batch in which some files failed (the others were written)."""


def output_record(record: dict, started: float, rir_file: Path | None = None,
                  **fields: object) -> dict:
    """A restoration's record as ``restore`` writes it: impulse responses named, not listed
    (:func:`compact_rir`), the version, what the command adds (``fields``: its input, lengths),
    the padded length and the seconds since ``started`` (``time.perf_counter()``)."""
    return {**compact_rir(record, rir_file), "diffmusic_version": package_version(), **fields,
            "padded_length": record["windows"][0]["length"],
            "seconds_total": time.perf_counter() - started}


def write_outputs(audio_paths: list[Path], json_path: Path, wave: torch.Tensor,
                  rate: int, record: dict, clip_mode: str, bits: int | None = None) -> dict:
    """Bring the audio inside full scale (``clip_mode``, recorded), then write the audio files
    (``wave`` ``(channels, samples)``, or ``(channels, sources, samples)``: one file per source;
    at ``rate``; ``bits``: integer PCM depth, ``None``: float wav, 24-bit flac) and the record,
    each atomically; on failure (a full disk...) remove what this call wrote, so that no partial
    restoration is left behind.

    Returns:
        The record written.

    Raises:
        OutputError: A file could not be written.
    """
    waves, full_scale = fit_full_scale([wave] if wave.ndim == 2 else list(wave.unbind(1)),
                                       clip_mode)
    record = {**record, "output": [str(p) for p in audio_paths],
              "full_scale": dataclasses.asdict(full_scale), "bits": bits}
    write_together([*((path, functools.partial(save_audio, wave=wave, sample_rate=rate,
                                               bits=bits))
                      for path, wave in zip(audio_paths, waves, strict=True)),
                    (json_path, functools.partial(write_json, data=record))])
    return record


def compact_rir(record: object, rir_file: Path | None) -> object:
    """``record`` with every impulse response's samples (an operator spec's ``rir`` list)
    replaced by what names it: the file, its number of samples and their SHA-256."""
    if isinstance(record, list):
        return [compact_rir(item, rir_file) for item in record]
    if not isinstance(record, dict):
        return record
    out = {key: compact_rir(value, rir_file) for key, value in record.items()}
    if isinstance(record.get("rir"), list):
        samples = np.asarray(record["rir"], dtype=np.float32)
        out["rir"] = {"file": None if rir_file is None else str(rir_file),
                      "samples": samples.size,
                      "sha256": hashlib.sha256(samples.tobytes()).hexdigest()}
    return out


def restore_measurement(measurement: Measurement, prior: Prior, settings: Settings, out: Path,
                        quiet: bool = False, recording: RecordingOptions | None = None,
                        bits: int | None = None) -> tuple[Restoration, dict]:
    """Restore ``measurement`` window by window and write the audio and the JSON record for
    ``-o out``; a measurement longer than the prior's window is cut into windows.

    Args:
        measurement: What to restore.
        prior: The diffusion prior.
        settings: How to restore (its ``clip_mode`` applies to the written audio).
        out: ``-o`` path (see :func:`~diffmusic.cli.batch.audio_outputs`).
        quiet: Hide the progress bars.
        recording: Segment and overlap of the windows (default: the prior's window, 0.5 s).
        bits: Integer PCM depth of the audio (``None``: float wav, 24-bit flac).

    Returns:
        The restoration ``(1, L)`` or ``(1, K, L)`` (``L = measurement.length``) and the record
        written next to the audio.
    """
    operator = measurement.operator
    if operator.sample_rate != prior.sample_rate:
        raise CliError(f"{measurement.origin}: the clip is at {operator.sample_rate} Hz but the "
                       f"{prior.name} prior works at {prior.sample_rate} Hz")
    restorer = (recording or RecordingOptions()).restorer(prior, settings, quiet)
    audio_paths, json_path = audio_outputs(operator.sources, out)
    start = time.perf_counter()
    try:
        result = restorer.restore_windows(operator, measurement.y, measurement.length)
    except ValueError as error:
        raise CliError(f"{measurement.origin}: {error}") from None
    record = output_record(result.record, start, measurement=str(measurement.origin),
                           sample_rate=operator.sample_rate, length=measurement.length)
    record = write_outputs(audio_paths, json_path, result.wave, operator.sample_rate, record,
                           settings.clip_mode, bits)
    return result, record


def resolve_prompts(settings: Settings, sources: list[str] | None) -> Settings:
    """``settings`` with the raw ``--prompt`` values turned into ``restore``'s ``prompts``."""
    try:
        return settings.replace(prompts=parse_prompts(settings.prompts, sources))
    except ValueError as error:
        raise CliError(f"--prompt: {error}") from None


def prior_from_args(args: argparse.Namespace) -> Prior:
    """The prior the sampling options name, loaded once per process.

    Raises:
        CliError: ``--device cuda`` without CUDA, ``--steps`` beyond the prior's training
            timesteps, or recording options the prior cannot run.
    """
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: CUDA is not available on this machine")
    prior = priors.cached_prior(args.prior or DEFAULT_PRIOR, args.device, args.dtype,
                                args.compile, args.checkpointing, args.offload)
    if prior.schedule.max_steps is not None and args.steps > prior.schedule.max_steps:
        raise CliError(f"--steps {args.steps}: the {prior.name} prior has "
                       f"{prior.schedule.max_steps} training timesteps; use at most that many")
    recording_options(args).restorer(prior, restore_settings(args), quiet=True)
    return prior


def operator_options(args: argparse.Namespace) -> OperatorOptions:
    """The operator options of ``restore --task``, with the gaps of ``--mask FILE`` added."""
    if args.mask_file is not None:
        if args.task != "inpainting":
            raise CliError(f"--mask applies only to --task inpainting, not {args.task}")
        if args.mask_type not in (None, "box"):
            raise CliError(f"--mask applies to --mask-type box, not {args.mask_type}")
        args.gaps = [*(args.gaps or []), *read_labels(args.mask_file)]
    if args.task == "super_resolution" and args.factor is None and args.cutoff is None:
        args.cutoff = AUTO_CUTOFF  # a recording's band edge is read from it
    if args.task == "dereverberation" and args.rt60 is None and args.rir is None:
        args.rt60 = BLIND_ROOM  # a recording's room is estimated with the signal
    return OperatorOptions.from_args(args)


def recording_options(args: argparse.Namespace) -> RecordingOptions:
    """The ``--segment``, ``--overlap``, ``--channels`` and ``--out-rate`` of ``args``.

    Raises:
        CliError: An output rate out of range.
    """
    if args.out_rate is not None and not MIN_RATE <= args.out_rate <= MAX_RATE:
        raise CliError(f"--out-rate must be between {MIN_RATE} and {MAX_RATE} Hz, got "
                       f"{args.out_rate}")
    return RecordingOptions(args.segment, args.overlap, args.channels, args.out_rate)


def job_outputs(options: OperatorOptions, out: Path) -> tuple[list[Path], Path]:
    """The files a job of ``options`` writes for ``-o out``."""
    separation = options.task == "source_separation"
    return audio_outputs((options.sources or list(STEMS)) if separation else None, out)


def restore_job(job: FileJob, options: OperatorOptions, args: argparse.Namespace,
                settings: Settings, progress: Progress | None = None) -> dict | Exception:
    """Restore one damaged recording of any length and write its audio and record
    (``progress``: each window's progress, instead of the bars).

    Returns:
        The record written next to the audio, or the file's own failure (returned, not raised).
    """
    try:
        audio_paths, json_path = job_outputs(options, job.out)
        start = time.perf_counter()
        recording = recording_options(args)
        result = restore_recording(job.source, options, recording.restorer(
            prior_from_args(args), settings, args.quiet, progress), recording)
        bits = args.bits if args.bits is not None else pcm_bits(job.source)
        record = output_record(result.record, start, options.rir, input=str(job.source),
                               channels=result.wave.shape[0], length=result.wave.shape[-1])
        return write_outputs(audio_paths, json_path, result.wave, result.sample_rate, record,
                             settings.clip_mode, bits)
    except RESTORE_ERRORS as error:
        return error


def file_settings(args: argparse.Namespace, options: OperatorOptions) -> Settings:
    """The settings of ``restore INPUT --task TASK``, prompts resolved per source."""
    separation = options.task == "source_separation"
    return resolve_prompts(restore_settings(args),
                           list(options.sources or STEMS) if separation else None)


def run_files(args: argparse.Namespace) -> int:
    """``restore INPUT... --task TASK``: files of any length, or folders mirrored under ``-o``."""
    options = operator_options(args)
    jobs, batch = plan_jobs(args.input, args.output, options.task == "source_separation")
    for job in jobs:
        audio_paths, json_path = job_outputs(options, job.out)
        refuse_overwrite([*audio_paths, json_path],
                         [job.source, *(p for p in (options.rir, args.mask_file) if p)])
    settings = file_settings(args, options)
    recording_options(args)
    pending = [job for job in jobs if not skip_existing(job_outputs(options, job.out)[0], args)]
    counts = {"done": 0, "skipped": len(jobs) - len(pending), "failed": 0}
    restore = functools.partial(restore_job, options=options, args=args, settings=settings)
    if args.ray:
        results = ray_restore(restore, pending, args.ray)
    else:
        if pending:  # the prior loads only when something is left to restore
            prior_from_args(args)
        results = ((job, restore(job)) for job in pending)
    for job, result in results:
        if isinstance(result, BaseException):
            if not batch or not isinstance(result, RESTORE_ERRORS):
                raise result
            counts["failed"] += 1
            print(f"diffmusic: error: {' '.join(str(result).split())}", file=sys.stderr)
            continue
        counts["done"] += 1
        if not args.quiet:
            print(f"diffmusic: wrote {job.out} ({len(result['windows'])} window(s), "
                  f"{result['seconds_total']:.1f} s)", file=sys.stderr)
    if batch and not args.quiet:
        print("diffmusic: " + ", ".join(f"{n} {what}" for what, n in counts.items()),
              file=sys.stderr)
    return PARTIAL_FAILURE if counts["failed"] else 0


def ray_restore(restore: functools.partial, jobs: list[FileJob],
                address: str) -> Iterator[tuple[FileJob, dict | BaseException]]:
    """The jobs restored as Ray tasks (without progress bars), each writing its own outputs
    (atomically, as here)."""
    options, args = restore.keywords["options"], restore.keywords["args"]
    if options.rir is not None:  # a worker's folder is not ours: every path absolute
        options = dataclasses.replace(options, rir=options.rir.resolve())
    on_worker = functools.partial(restore, options=options,
                                  args=argparse.Namespace(**{**vars(args), "quiet": True}))
    absolute = [FileJob(job.source.resolve(), job.out.resolve()) for job in jobs]
    try:
        for i, result in ray_imap(on_worker, absolute, address):
            yield jobs[i], result
    except RuntimeError as error:
        raise CliError(str(error)) from None


def skip_existing(audio_paths: list[Path], args: argparse.Namespace) -> bool:
    """Whether to skip a restoration because its output exists (one rule for single files,
    batches and measurement folders: an existing output is replaced only with --overwrite)."""
    existing = [path for path in audio_paths if path.exists()]
    if not existing or args.overwrite:
        return False
    if not args.quiet:
        print(f"diffmusic: {existing[0]} exists, skipped (--overwrite to replace it)",
              file=sys.stderr)
    return True


def run(args: argparse.Namespace) -> int:
    """Run ``diffmusic restore``."""
    folder = args.input[0]
    if args.task is not None and not (folder.is_dir() and (folder / MEASUREMENT_JSON).exists()):
        return run_files(args)
    if args.ray:
        raise CliError("--ray restores files given --task; a measurement folder is one job")
    if len(args.input) > 1:
        raise CliError("several inputs need --task (measurement folders are restored one at a "
                       "time)")
    measurement = measurement_from_args(args)
    audio_paths, json_path = audio_outputs(measurement.operator.sources, args.output)
    refuse_overwrite([*audio_paths, json_path], measurement.inputs)
    operator = measurement.operator
    settings = resolve_prompts(restore_settings(args),
                               operator.sources if operator.num_sources > 1 else None)
    if skip_existing(audio_paths, args):
        return 0
    _, record = restore_measurement(measurement, prior_from_args(args), settings, args.output,
                                    args.quiet, recording_options(args), args.bits)
    if not args.quiet:
        print(f"diffmusic: wrote {args.output} (final loss {record['final_loss'][0]:.4g}, "
              f"{record['seconds_total']:.1f} s)", file=sys.stderr)
    return 0


def measurement_from_args(args: argparse.Namespace) -> Measurement:
    """The measurement folder ``restore`` was given (without --task)."""
    source: Path = args.input[0]
    given = [flag for attr, (flag, _) in TASK_OPTIONS.items()
             if getattr(args, attr, None) is not None]  # degrade's own (--input-sdr) are absent
    given += ["--mask"] if args.mask_file is not None else []
    if source.is_dir():
        if args.task or given:
            flag = "--task" if args.task else given[0]
            raise CliError(f"{flag}: {source} is a measurement folder; its operator comes from "
                           "its measurement.json")
        return read_measurement(source)
    if not source.exists():
        raise CliError(f"{source}: no such file or folder")
    raise CliError(f"{source}: give --task to restore a file (or give a measurement folder "
                   "written by diffmusic degrade)")
