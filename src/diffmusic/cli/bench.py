"""``diffmusic bench``: the paper's table (tasks x methods x metrics) on a folder of clips."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from diffmusic.cli.errors import CliError
from diffmusic.priors import DEFAULT_PRIOR


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.replace(",", " ").split() if n.strip()]


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``bench``."""
    p = subparsers.add_parser(
        "bench", parents=[common], help="benchmark every task and method on a folder of clips",
        description="Degrade one 5.12 s clip per file of DATA with every task, restore it with "
                    "every method, score it and store one row per (clip, task, method, seed) in "
                    "RESULTS/results.sqlite; a killed run resumes where it stopped. Writes "
                    "RESULTS/table.md, table.csv and spectrogram grids.")
    p.add_argument("data", type=Path, metavar="DATA",
                   help="folder of audio files, or of song folders SONG/{mixture,vocals,...}.wav")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="RESULTS")
    p.add_argument("--stems", type=Path, metavar="DIR",
                   help="song folders for source_separation (default: DATA)")
    p.add_argument("--tasks", type=_names, help="comma-separated tasks (default: all)")
    p.add_argument("--methods", type=_names, help="comma-separated methods (default: all)")
    p.add_argument("--sources", type=_names, default=None,
                   help="stems to separate (default: vocals,drums,bass,other)")
    p.add_argument("--prior", default=DEFAULT_PRIOR,
                   help=f"prior name or folder (default: {DEFAULT_PRIOR})")
    p.add_argument("--steps", type=int, default=50, help="sampling steps (default: 50)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per diffusion method (default: 1)")
    p.add_argument("--limit", type=int, help="at most this many clips per dataset")
    p.add_argument("--clip-seconds", type=float, default=5.12, help="clip length (default 5.12)")
    p.add_argument("--offset", type=float, default=30.0,
                   help="clip start in s; centred when a track is shorter (default 30)")
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
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark."""
    from diffmusic.bench.main import BenchOptions, bench
    from diffmusic.tuning import read_tuned

    if args.steps < 2 or args.seeds < 1 or args.workers < 1:
        raise CliError("--steps must be >= 2, --seeds and --workers >= 1")
    tested = {args.data.resolve(), (args.stems or args.data).resolve()}
    for tuning, flag in ((args.tune_data, "--tune-data"), (args.tune_stems, "--tune-stems")):
        if tuning is not None and tuning.resolve() in tested:
            raise CliError(f"{flag} must not be the benchmark's DATA or --stems (no peeking)")
    if args.tune and args.tune_data is None:
        raise CliError("--tune needs --tune-data DIR (a validation split)")
    if args.defaults is not None:
        try:
            read_tuned(str(args.defaults))
        except (OSError, ValueError) as error:
            raise CliError(f"--defaults: {error}") from None
    options = BenchOptions(
        data=args.data, out=args.output, stems=args.stems, tasks=args.tasks,
        methods=args.methods, sources=args.sources, prior=args.prior, steps=args.steps,
        seeds=args.seeds, limit=args.limit, clip_seconds=args.clip_seconds, offset=args.offset,
        noise_snr=args.noise_snr, embedding=args.embedding, workers=args.workers,
        ray=args.ray, tune_data=args.tune_data if args.tune else None,
        tune_stems=args.tune_stems, tune_limit=args.tune_limit, defaults=args.defaults,
        quiet=args.quiet, command=" ".join(shlex.quote(a) for a in ["diffmusic", *sys.argv[1:]]))
    summary = bench(options)
    if not args.quiet:
        print(json.dumps(summary, indent=1), file=sys.stderr)
    return 0
