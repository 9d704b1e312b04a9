"""Inpainting gaps: parse them (``--gap``: ``START-END`` in seconds like ``65.2`` or
``[hh:]mm:ss.s`` like ``1:05.2``, or ``S:E`` in seconds like ``2:3``, comma-separated; Audacity
label files), find dropouts in a recording, and write them as label lines."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

Gap = tuple[float, float]
"""``(start, end)`` in seconds."""

_TIME = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?|\.\d+)$")


def parse_time(text: str) -> float:
    """Seconds from ``ss.s``, ``mm:ss.s`` or ``hh:mm:ss.s``.

    Raises:
        ValueError: Anything else (negative, non-finite, minutes or seconds of 60 or more).
    """
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"expected seconds or mm:ss.s, got {text!r}")
    first, second, seconds = match.groups()
    hours, minutes = (first, second) if second is not None else (None, first)
    value = float(seconds)
    if minutes is not None:
        if value >= 60 or (hours is not None and int(minutes) >= 60):
            raise ValueError(f"{text!r}: minutes and seconds must be below 60")
        value += 60 * int(minutes) + 3600 * int(hours or 0)
    return value


def parse_gap(text: str) -> Gap:
    """One gap: ``START-END`` (seconds or ``mm:ss.s``) or ``S:E`` (seconds).

    Raises:
        ValueError: Unparseable, or not ``0 <= START < END`` (zero-length gaps included).
    """
    text = text.strip()
    if "-" in text:
        start_text, _, end_text = text.partition("-")
    elif text.count(":") == 1:
        start_text, _, end_text = text.partition(":")
    else:
        raise ValueError(f"expected START-END (seconds or mm:ss.s) or S:E, got {text!r}")
    start, end = parse_time(start_text), parse_time(end_text)
    if not start < end:
        raise ValueError(f"gap {text!r} must end after it starts (zero-length gaps hold nothing "
                         "to restore)")
    return start, end


def parse_gap_list(text: str) -> list[Gap]:
    """Comma-separated gaps (see :func:`parse_gap`)."""
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"no gap in {text!r}")
    return [parse_gap(item) for item in items]


def read_labels(path: str | Path) -> list[Gap]:
    """Gaps from an Audacity label file (``start<TAB>end<TAB>label`` in seconds per line;
    spectral-selection lines, starting with ``\\``, and ``#`` comments are skipped).

    Raises:
        ValueError: Missing or unreadable file, malformed lines, zero-length or reversed labels,
            or no label at all; the message names the file and line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"--mask {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--mask {path}: cannot read it as text ({error})") from None
    gaps = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith(("\\", "#")):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        try:
            start, end = float(fields[0]), float(fields[1])
        except (ValueError, IndexError):
            raise ValueError(f"--mask {path}:{number}: expected start<TAB>end<TAB>label in "
                             f"seconds, got {line.strip()!r}") from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise ValueError(f"--mask {path}:{number}: the label {start:g}-{end:g} s must satisfy "
                             "0 <= start < end (zero-length labels mark no gap)")
        gaps.append((start, end))
    if not gaps:
        raise ValueError(f"--mask {path}: no labels in the file")
    return gaps


def check_gaps(gaps: Sequence[Gap], duration: float, flag: str = "--gap") -> list[Gap]:
    """Sorted gaps, each inside a recording of ``duration`` seconds.

    Raises:
        ValueError: A gap that ends after the recording.
    """
    for start, end in gaps:
        if end > duration + 1e-9:
            raise ValueError(f"{flag} {format_time(start)}-{format_time(end)} lies outside the "
                             f"{duration:.2f} s recording")
    return sorted(gaps)


def format_time(seconds: float) -> str:
    """``mm:ss.sss`` (``hh:mm:ss.sss`` from an hour on)."""
    minutes, rest = divmod(round(seconds * 1000) / 1000, 60)
    hours, minutes = divmod(int(minutes), 60)
    return (f"{hours}:{minutes:02d}:{rest:06.3f}" if hours else f"{minutes}:{rest:06.3f}")


def format_labels(gaps: Sequence[Gap], label: str = "dropout") -> str:
    """Gaps as Audacity label lines (``start<TAB>end<TAB>label``, seconds with 6 decimals)."""
    return "".join(f"{start:.6f}\t{end:.6f}\t{label}\n" for start, end in gaps)


def detect_gaps(wave: Tensor, sample_rate: int, threshold_db: float = -60.0,
                min_duration: float = 0.02, edges: bool = False) -> list[Gap]:
    """Find dropouts: runs where every channel stays at or below ``threshold_db`` dBFS (digital
    silence or near-silence) for at least ``min_duration`` seconds.

    Leading and trailing silence is not a dropout unless ``edges`` is set.

    Args:
        wave: Audio ``(C, N)`` or ``(N,)`` in [-1, 1].
        sample_rate: Sample rate in Hz.
        threshold_db: Peak level in dBFS at or below which a sample counts as silent.
        min_duration: Shortest dropout in seconds.
        edges: Also report silence touching the start or the end.

    Returns:
        Gaps in seconds, in time order.
    """
    peak = np.abs(wave.detach().cpu().reshape(-1, wave.shape[-1]).numpy()).max(axis=0)
    quiet = peak <= 10 ** (threshold_db / 20)
    change = np.diff(np.concatenate(([0], quiet.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
    shortest = max(1, round(min_duration * sample_rate))
    n = quiet.shape[0]
    return [(int(a) / sample_rate, int(b) / sample_rate) for a, b in zip(starts, ends, strict=True)
            if b - a >= shortest and (edges or (a > 0 and b < n))]
