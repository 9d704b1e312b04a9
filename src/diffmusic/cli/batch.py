"""Which files ``restore`` reads and writes: one file, several files, or a folder mirrored under
``-o``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from diffmusic.audio import WRITE_SUFFIXES
from diffmusic.cli.errors import CliError

READ_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".m4a", ".aac",
                 ".opus", ".webm", ".wma", ".mp4", ".mkv", ".mka", ".mov", ".npy")
"""Suffixes of the files a folder restore picks up."""


@dataclass(frozen=True)
class FileJob:
    """One restoration: ``source`` to ``out`` (a .wav/.flac file, or a folder of stems)."""

    source: Path
    out: Path


def audio_outputs(sources: list[str] | None, out: Path) -> tuple[list[Path], Path]:
    """The audio files and the JSON record a restoration writes for ``-o out``.

    Args:
        sources: Source names of a separation, ``None`` for one output.
        out: The ``-o`` path (an audio file, or a folder for separation).
    """
    if sources is None:
        if out.suffix.lower() not in WRITE_SUFFIXES or out.is_dir():
            raise CliError(f"-o {out}: give a file name ending in {', '.join(WRITE_SUFFIXES)}")
        return [out], out.with_suffix(".json")
    if out.suffix.lower() in WRITE_SUFFIXES or out.is_file():
        raise CliError(f"-o {out}: source separation writes a folder with one wav per source; "
                       "give a folder name")
    return [out / f"{name}.wav" for name in sources], out / "restore.json"


def mirrored(relative: Path, root: Path, separation: bool) -> Path:
    """Where the restoration of ``relative`` goes under ``root`` (flac stays flac)."""
    if separation:
        return root / relative.with_suffix("")
    suffix = ".flac" if relative.suffix.lower() == ".flac" else ".wav"
    return root / relative.with_suffix(suffix)


def plan_jobs(inputs: list[Path], out: Path, separation: bool) -> tuple[list[FileJob], bool]:
    """The jobs of ``restore INPUT... -o OUT`` and whether it is a batch.

    One file: ``OUT`` is the output. Several files or a folder: ``OUT`` is a folder; files keep
    their names (a folder's files keep their path below it).

    Raises:
        CliError: Missing inputs, an empty folder, two inputs with the same output, or a file
            given as the output folder.
    """
    if len(inputs) == 1 and not inputs[0].is_dir():
        return [FileJob(inputs[0], out)], False
    if out.suffix.lower() in WRITE_SUFFIXES or out.is_file():
        raise CliError(f"-o {out}: several inputs or a folder need an output folder")
    jobs: list[FileJob] = []
    for source in inputs:
        if source.is_dir():
            files = sorted(p for p in source.rglob("*")
                           if p.is_file() and p.suffix.lower() in READ_SUFFIXES
                           and not p.name.startswith("."))
            if not files:
                raise CliError(f"{source}: no audio files in the folder")
            jobs += [FileJob(p, mirrored(p.relative_to(source), out, separation)) for p in files]
        elif source.is_file():
            jobs.append(FileJob(source, mirrored(Path(source.name), out, separation)))
        else:
            raise CliError(f"{source}: no such file or folder")
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.out in seen:
            raise CliError(f"{seen[job.out]} and {job.source} would both be restored to "
                           f"{job.out}")
        seen[job.out] = job.source
    return jobs, True
