"""The embedded prior's benchmark table on the validation data, tuned without peeking.

The validation tracks (``DATA/music/valid``) and stem songs (``DATA/stems/valid``, from
``make data``) are split by piece into two disjoint halves, as folders of symbolic links under
``OUT/splits``: ``tune`` (the guided samplers' step sizes are chosen there) and ``test`` (the
table). Then::

    diffmusic bench OUT/splits/test/music --stems OUT/splits/test/stems -o OUT \\
        --tune --tune-data OUT/splits/tune/music --tune-stems OUT/splits/tune/stems ...

runs (resumably) and ``OUT/table.md`` is printed. With ``--ship``, ``OUT/tuned.json`` becomes the
embedded prior's shipped defaults (``src/diffmusic/assets/tuned/embedded.json``).

Usage::

    python benchmarks/embedded_table.py --data data --out runs/bench_embedded \\
        --limit 8 --tune-limit 3 --steps 25 [--ship]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

VARIANT = re.compile(r"(_fast|_f|_enhanced)$", re.IGNORECASE)
"""Alternative renditions of a track share its piece (as in the data build's split)."""
WINDOW = re.compile(r"_w\d+$")
"""Windows of one MIDI file share its piece."""
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "diffmusic" / "assets" / "tuned"


def split_by_piece(items: list[Path], piece: Callable[[str], str]) -> dict[str, list[Path]]:
    """Pieces in sorted order alternate between ``test`` (first) and ``tune``."""
    pieces = sorted({piece(p.stem if p.is_file() else p.name) for p in items})
    half = {name: ("test", "tune")[k % 2] for k, name in enumerate(pieces)}
    out: dict[str, list[Path]] = {"test": [], "tune": []}
    for p in sorted(items):
        out[half[piece(p.stem if p.is_file() else p.name)]].append(p)
    return out


def link_splits(data: Path, splits: Path) -> None:
    """``splits/{test,tune}/{music,stems}`` as symbolic links into ``data``'s validation split."""
    kinds = {"music": (sorted((data / "music" / "valid").glob("*.wav")),
                       lambda s: VARIANT.sub("", s)),
             "stems": (sorted(p for p in (data / "stems" / "valid").iterdir() if p.is_dir()),
                       lambda s: WINDOW.sub("", s))}
    for kind, (items, piece) in kinds.items():
        if not items:
            raise SystemExit(f"{data}/{kind}/valid is empty: run `make data` first")
        for half, members in split_by_piece(items, piece).items():
            folder = splits / half / kind
            folder.mkdir(parents=True, exist_ok=True)
            for p in members:
                link = folder / p.name
                if not link.exists():
                    link.symlink_to(p.resolve(), target_is_directory=p.is_dir())


def main() -> None:
    """Split, tune, benchmark, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench_embedded"))
    parser.add_argument("--limit", type=int, default=8, help="test clips per task")
    parser.add_argument("--tune-limit", type=int, default=3, help="tuning clips per task")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ship", action="store_true",
                        help="copy OUT/tuned.json to the package's tuned defaults")
    args = parser.parse_args()
    splits = args.out / "splits"
    link_splits(args.data, splits)
    cmd = [sys.executable, "-m", "diffmusic.cli", "bench", str(splits / "test" / "music"),
           "--stems", str(splits / "test" / "stems"), "-o", str(args.out),
           "--limit", str(args.limit), "--steps", str(args.steps),
           "--workers", str(args.workers), "--embedding", "musicnn", "--quiet"]
    if not (args.out / "tuned.json").exists():
        cmd += ["--tune", "--tune-data", str(splits / "tune" / "music"),
                "--tune-stems", str(splits / "tune" / "stems"),
                "--tune-limit", str(args.tune_limit)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    if args.ship:
        SHIPPED.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.out / "tuned.json", SHIPPED / "embedded.json")
    print((args.out / "table.md").read_text())


if __name__ == "__main__":
    main()
