"""``diffmusic detect-gaps``: print the dropouts of a recording as label lines (``--mask``)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from diffmusic.audio import load_audio, require_signal
from diffmusic.cli.errors import CliError
from diffmusic.cli.options import positive_float
from diffmusic.gaps import detect_gaps, format_labels
from diffmusic.report import atomic_output


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``detect-gaps``."""
    parser = subparsers.add_parser(
        "detect-gaps", parents=[common], help="find dropouts (digital silence inside music)",
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``diffmusic detect-gaps``."""
    if not (math.isfinite(args.threshold) and args.threshold <= 0):
        raise CliError(f"--threshold must be a level in dBFS <= 0, got {args.threshold}")
    if args.output is not None and args.output.resolve() == args.input.resolve():
        raise CliError(f"-o {args.output}: would overwrite the input {args.input}")
    wave, rate = load_audio(args.input)
    require_signal(wave, args.input)
    text = format_labels(detect_gaps(wave, rate, args.threshold, args.min_duration, args.edges))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with atomic_output(args.output) as file:
            file.write(text)
    except OSError as error:
        raise CliError(f"cannot write {args.output}: {error.strerror or error}") from None
    if not args.quiet:
        print(f"diffmusic: wrote {args.output} ({text.count(chr(10))} gap(s))", file=sys.stderr)
    return 0
