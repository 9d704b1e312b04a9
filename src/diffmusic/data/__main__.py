"""Command line: ``python -m diffmusic.data --out data [--parts music stems]``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

PARTS = ("music", "stems")


def prepare(
    data_dir: str | Path,
    parts: Iterable[str] = PARTS,
    workers: int = 2,
    stem_works: int | None = None,
    exclude: Sequence[str] = (),
) -> None:
    """Prepare the offline data parts into ``data_dir``; resumable and idempotent.

    Each finished part is marked by a ``READY`` file in its folder
    (``data_dir/music/READY``, ``data_dir/stems/READY``).

    Args:
        data_dir: Output root.
        parts: Which parts to build, in order: ``"music"`` and/or ``"stems"``.
        workers: Parallel processes for conversion and rendering.
        stem_works: Number of music21 corpus works to render (default: the module's).
        exclude: Stem collections to leave out (e.g. ``"palestrina"``, whose encodings reserve
            rights to derivative electronic formats; see the data card).
    """
    data_dir = Path(data_dir)
    for part in parts:
        if part == "music":
            from diffmusic.data.music import prepare_music

            prepare_music(data_dir, workers=workers)
        elif part == "stems":
            from diffmusic.data.stems import prepare_stems

            kwargs = {} if stem_works is None else {"corpus_works": stem_works}
            prepare_stems(data_dir, workers=workers, exclude=exclude, **kwargs)
        else:
            raise ValueError(f"unknown part {part!r}; choose from {PARTS}")
        (data_dir / part / "READY").touch()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and run :func:`prepare`."""
    parser = argparse.ArgumentParser(prog="python -m diffmusic.data", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data"), help="output folder")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")
    parser.add_argument(
        "--stem-works", type=int, default=None, help="music21 corpus works to render as stems"
    )
    parser.add_argument("--exclude", nargs="+", default=[], metavar="COLLECTION",
                        help="stem collections to leave out (bach, palestrina, trecento, "
                             "beethoven, haydn, mozart, blupi)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    prepare(args.out, args.parts, workers=args.workers, stem_works=args.stem_works,
            exclude=args.exclude)


if __name__ == "__main__":
    main()
