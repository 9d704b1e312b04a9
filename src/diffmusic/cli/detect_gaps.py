"""``diffmusic detect-gaps``: print the dropouts of a recording as label lines (``--mask``)."""

from __future__ import annotations

import argparse
import math
import sys

from diffmusic.audio import load_audio, require_signal
from diffmusic.cli.errors import CliError
from diffmusic.cli.options import refuse_overwrite
from diffmusic.gaps import detect_gaps, format_labels
from diffmusic.report import atomic_output


def run(args: argparse.Namespace) -> int:
    """Run ``diffmusic detect-gaps``."""
    if not (math.isfinite(args.threshold) and args.threshold <= 0):
        raise CliError(f"--threshold must be a level in dBFS <= 0, got {args.threshold}")
    refuse_overwrite([args.output] if args.output else [], [args.input])
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
