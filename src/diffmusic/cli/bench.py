"""``diffmusic bench``: the paper's table (tasks x methods x metrics) on a folder of clips."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields

from diffmusic.cli.errors import CliError


def run(args: argparse.Namespace) -> int:
    """Run the benchmark."""
    import torch

    from diffmusic.bench.main import bench
    from diffmusic.bench.options import BenchOptions
    from diffmusic.restoration.tuned import read_tuned

    if args.device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: CUDA is not available on this machine")
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
    given = {f.name: getattr(args, f.name) for f in fields(BenchOptions) if hasattr(args, f.name)}
    summary = bench(BenchOptions(**given | {
        "out": args.output, "tune_data": args.tune_data if args.tune else None,
        "command": " ".join(shlex.quote(a) for a in ["diffmusic", *sys.argv[1:]])}))
    if not args.quiet:
        print(json.dumps(summary, indent=1), file=sys.stderr)
    return 0
