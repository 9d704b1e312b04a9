"""The subcommands' argument parsers: built from names and defaults only, so that ``--help``,
``--version`` and usage errors answer before torch or any model code is imported. Each command's
``run`` is imported when the command runs."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from diffmusic.cli.options import (
    add_device_options,
    add_operator_options,
    add_run_options,
    add_sampler_options,
    positive_float,
    seed_type,
)
from diffmusic.names import (
    BITS,
    CHANNEL_MODES,
    CLIP_MODES,
    CLIP_SAMPLES,
    DEFAULT_PRIOR,
    LOWPASS_FILTERS,
    NOISE_COLOURS,
    SAMPLE_RATE,
    STEMS,
)

DEFAULT_STEPS = 50
"""Sampling steps of ``restore``."""
DEMO_STEPS = 25
"""Sampling steps of ``demo``: on the tiny prior the whole demo costs about 45 s of CPU (1.2 s
per step for its 7 latents plus 15 s fixed)."""


def add_command(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser,
                name: str, **texts: str) -> argparse.ArgumentParser:
    """Register the subcommand ``name`` (``texts``: its ``help`` and ``description``); its
    ``run`` is :mod:`diffmusic.cli.NAME`'s, imported on the first call."""
    module = f"diffmusic.cli.{name.replace('-', '_')}"
    parser = subparsers.add_parser(name, parents=[common], **texts)
    parser.set_defaults(run=lambda args: importlib.import_module(module).run(args))
    return parser


def names_list(text: str) -> list[str]:
    return [n.strip() for n in text.replace(",", " ").split() if n.strip()]


def seconds_list(text: str) -> list[float]:
    """Comma-separated positive numbers of seconds."""
    try:
        values = [float(v) for v in names_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds like 0.1,0.5,1, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"gap lengths must be positive, got {text!r}")
    return values


def add_degrade(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``degrade``."""
    window = CLIP_SAMPLES / SAMPLE_RATE
    parser = add_command(
        subparsers, common, "degrade", help="simulate a degraded recording",
        description="Degrade a clean clip with a task's operator and write MEAS_DIR: "
                    "measurement.json, measurement.wav (measurement.npy for phase_retrieval) and "
                    "the clean reference (clean.wav, or clean/NAME.wav for source_separation).")
    parser.add_argument("input", type=Path, metavar="INPUT",
                        help="clean audio file; for source_separation a folder of stems "
                             f"({', '.join(f'{s}.wav' for s in STEMS)}, at least two)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="MEAS_DIR",
                        help="measurement folder to write")
    add_operator_options(parser, task_required=True)
    parser.add_argument("--noise-snr", type=float, metavar="DB",
                        help="add white measurement noise at this SNR (default: none)")
    parser.add_argument("--input-sdr", type=positive_float, metavar="DB",
                        help="declipping: clip at the level that leaves this input SDR")
    parser.add_argument("--snr", type=float, metavar="DB",
                        help="denoising: add noise at this SNR (default 20)")
    parser.add_argument("--noise", choices=NOISE_COLOURS,
                        help="denoising: the noise's colour (default white)")
    parser.add_argument("--room", type=positive_float, metavar="SEC",
                        help="dereverberation: convolve with a shoebox room of this RT60 "
                             "simulated by pyroomacoustics (geometry drawn from --seed)")
    parser.add_argument("--filter", choices=LOWPASS_FILTERS,
                        help="super_resolution with --cutoff: the low-pass (default cheby1)")
    parser.add_argument("--order", type=int, choices=range(1, 33), metavar="N",
                        help="super_resolution with --cutoff: its order, 1-32 (default 8)")
    parser.add_argument("--seed", type=seed_type, default=0,
                        help="seed of the random mask, the synthetic room response and the "
                             "noise (default 0)")
    parser.add_argument("--duration", type=positive_float, metavar="SEC",
                        help=f"cut or zero-pad the input to this length (default: one prior "
                             f"window, {window:g} s; longer measurements are restored window "
                             "by window)")


def add_restore(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``restore``."""
    parser = add_command(
        subparsers, common, "restore", help="restore a measurement folder or a damaged file",
        description="Restore MEAS_DIR (written by 'diffmusic degrade') or a damaged recording "
                    "INPUT whose degradation --task and its options describe. Writes OUT (a wav; "
                    "for source_separation a folder with one wav per source) and its record "
                    "OUT.json (OUT/restore.json for a folder).")
    parser.add_argument("input", type=Path, nargs="+", metavar="MEAS_DIR|INPUT",
                        help="measurement folder, or audio files or folders of them (.npy "
                             "magnitudes for phase_retrieval) with --task")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                        help="restored .wav/.flac, a folder for source_separation, or the "
                             "folder that mirrors several inputs")
    add_operator_options(parser, task_required=False, sources=True)
    group = parser.add_argument_group("recording options (--segment and --overlap also apply to "
                                      "measurement folders)")
    group.add_argument("--mask", dest="mask_file", type=Path, metavar="FILE",
                       help="inpainting: gaps from a label file (start<TAB>end<TAB>label in "
                            "seconds, as Audacity exports; see diffmusic detect-gaps)")
    group.add_argument("--segment", type=positive_float, metavar="SEC",
                       help="window length in seconds (default: the prior's window)")
    group.add_argument("--overlap", type=float, default=0.5, metavar="SEC",
                       help="overlap of neighbouring windows, and the context kept around "
                            "inpainting gaps, in seconds (default 0.5)")
    group.add_argument("--channels", choices=CHANNEL_MODES, default="independent",
                       help="restore each channel, or mid and side of a stereo file "
                            "(default independent)")
    group.add_argument("--out-rate", type=int, metavar="HZ",
                       help="output sample rate (default: the input's; at least the prior's for "
                            "super_resolution, whose output keeps the input's band below the "
                            "cutoff; the prior's for phase_retrieval)")
    group.add_argument("--ray", metavar="ADDRESS",
                       help="restore the files as jobs on this Ray cluster ('local' starts one; "
                            "inputs and -o must be on storage every node sees)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace outputs that already exist (default: skip them)")
    group.add_argument("--clip-mode", choices=CLIP_MODES, default="rescale",
                       help="what to do when a restored sample would pass full scale: rescale "
                            "the whole output to a peak of -0.09 dBFS, clamp the samples, or "
                            "none (float wav keeps them; integer and lossy formats clamp); "
                            "default rescale, recorded in OUT.json")
    group.add_argument("--bits", type=int, choices=BITS,
                       help="integer PCM depth of wav/flac outputs (default: the input's; "
                            "32-bit float wav or 24-bit flac for float and lossy inputs)")
    add_sampler_options(parser, steps=DEFAULT_STEPS)


def add_detect_gaps(subparsers: argparse._SubParsersAction,
                    common: argparse.ArgumentParser) -> None:
    """Register ``detect-gaps``."""
    parser = add_command(
        subparsers, common, "detect-gaps", help="find dropouts (digital silence inside music)",
        description="Find dropouts in INPUT: stretches where every channel stays at or below "
                    "--threshold dBFS for at least --min-duration seconds, not counting silence "
                    "at the start and end. Prints start<TAB>end<TAB>label lines in seconds (an "
                    "Audacity label file, the format of restore --mask).")
    parser.add_argument("input", type=Path, metavar="INPUT", help="an audio file")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write the labels to FILE instead of stdout")
    parser.add_argument("--threshold", type=float, default=-60.0, metavar="DB",
                        help="peak level in dBFS counted as silence (default -60)")
    parser.add_argument("--min-duration", type=positive_float, default=0.02, metavar="SEC",
                        help="shortest dropout in seconds (default 0.02)")
    parser.add_argument("--edges", action="store_true",
                        help="also report silence at the start and the end")


def add_demo(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``demo``."""
    parser = add_command(
        subparsers, common, "demo", help="run all five tasks on a test clip and write a web page",
        description="Degrade a test clip with all five tasks, restore each with DiffMusic and "
                    "write DIR/TASK/ (audio, spectrograms) and DIR/index.html with metrics.")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="output folder")
    add_run_options(parser, DEMO_STEPS, f"diffusion prior (default {DEFAULT_PRIOR})")


def add_bench(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``bench``."""
    p = add_command(
        subparsers, common, "bench", help="benchmark every task and method on a folder of clips",
        description="Degrade one 5.12 s clip per file of DATA with every task, restore it with "
                    "every method, score it and store one row per (clip, task, method, seed) in "
                    "RESULTS/results.sqlite; a killed run resumes where it stopped. Writes "
                    "RESULTS/table.md, table.csv and spectrogram grids.")
    p.add_argument("data", type=Path, metavar="DATA",
                   help="folder of audio files, or of song folders SONG/{mixture,vocals,...}.wav")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="RESULTS")
    p.add_argument("--stems", type=Path, metavar="DIR",
                   help="song folders for source_separation (default: DATA)")
    p.add_argument("--tasks", type=names_list, help="comma-separated tasks (default: all)")
    p.add_argument("--methods", type=names_list, help="comma-separated methods (default: all)")
    p.add_argument("--sources", type=names_list, default=None,
                   help="stems to separate (default: vocals,drums,bass,other)")
    p.add_argument("--prior", default=DEFAULT_PRIOR,
                   help=f"prior name or folder (default: {DEFAULT_PRIOR})")
    p.add_argument("--steps", type=int, default=50, help="sampling steps (default: 50)")
    add_device_options(p)
    p.add_argument("--seeds", type=int, default=1, help="seeds per diffusion method (default: 1)")
    p.add_argument("--limit", type=int, help="at most this many clips per dataset")
    p.add_argument("--clip-seconds", type=float, default=5.12, help="clip length (default 5.12)")
    p.add_argument("--offset", type=float, default=30.0,
                   help="clip start in s; centred when a track is shorter (default 30)")
    p.add_argument("--gap-lengths", type=seconds_list, metavar="S,S,...",
                   help="inpainting: one task variant per gap length in seconds, each gap "
                        "centred where the paper's is (e.g. 0.1,0.25,0.5,1,2; default: the "
                        "paper's gap)")
    p.add_argument("--noise-snr", type=float, help="measurement noise SNR in dB (default: none)")
    p.add_argument("--embedding", default="auto",
                   help="FAD embedding: auto (vggish if its weights are cached, else musicnn), "
                        "vggish, musicnn or none")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the jobs on this Ray cluster "
                                                    "('local' starts one)")
    p.add_argument("--tune", action="store_true",
                   help="first tune each guided sampler's step size on --tune-data")
    p.add_argument("--tune-data", type=Path, metavar="DIR",
                   help="validation clips for --tune (never the benchmark's DATA)")
    p.add_argument("--tune-stems", type=Path, metavar="DIR",
                   help="validation song folders with stems for tuning source separation "
                        "(never the benchmark's --stems)")
    p.add_argument("--tune-limit", type=int, metavar="N",
                   help="at most this many tuning clips per task (default: --limit)")
    p.add_argument("--defaults", type=Path, metavar="JSON",
                   help="tuned sampler defaults (default: RESULTS/tuned.json when present, "
                        "else $DIFFMUSIC_TUNED or the prior's shipped defaults)")


def add_studio(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``studio``."""
    parser = add_command(
        subparsers, common, "studio", help="restore in the browser: see, mark, run, compare",
        description="Start the studio, a local web app over the restorer: upload a recording, "
                    "see its waveform and spectrogram, mark the damage, restore it and compare "
                    "before and after. Results are kept in STORE across restarts.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; any other needs --token)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    parser.add_argument("--token", help="secret every request must carry (the printed address "
                                        "holds it)")
    parser.add_argument("--store", type=Path, metavar="DIR",
                        help="where uploads, results and their database live (default "
                             "$XDG_DATA_HOME/diffmusic/studio)")
    parser.add_argument("--max-upload-mb", type=positive_float, default=200.0, metavar="MB",
                        help="largest upload in MiB (default 200)")
    parser.add_argument("--max-minutes", type=positive_float, default=30.0, metavar="MIN",
                        help="longest recording accepted, read from its header (default 30)")
    parser.add_argument("--prior-folder", type=Path, action="append", metavar="DIR",
                        help="a prior folder the form offers besides the named priors "
                             "(repeatable)")


COMMANDS = (add_degrade, add_restore, add_detect_gaps, add_demo, add_bench, add_studio)
"""The subcommands, in the order ``--help`` lists them."""
