"""What ``diffmusic bench`` was asked, and the clips it names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from diffmusic.bench.datasets import AUDIO_SUFFIXES, Clip, audio_clips, stem_clips
from diffmusic.names import CLIP_SAMPLES, DEFAULT_PRIOR, SAMPLE_RATE, STEMS


@dataclass
class BenchOptions:
    """Everything ``diffmusic bench`` was asked (see :mod:`diffmusic.cli.bench`)."""

    data: Path
    out: Path
    stems: Path | None = None
    tasks: list[str] | None = None
    methods: list[str] | None = None
    sources: list[str] | None = None
    prior: str = DEFAULT_PRIOR
    steps: int = 50
    device: str = "cpu"
    dtype: str = "float32"
    seeds: int = 1
    limit: int | None = None
    clip_seconds: float = CLIP_SAMPLES / SAMPLE_RATE
    offset: float = 30.0
    gap_lengths: list[float] | None = None
    noise_snr: float | None = None
    embedding: str = "auto"
    workers: int = 1
    ray: str | None = None
    tune_data: Path | None = None
    tune_stems: Path | None = None
    tune_limit: int | None = None
    defaults: Path | None = None
    quiet: bool = False
    command: str = ""


def has_audio(folder: Path) -> bool:
    """Whether ``folder`` holds audio files itself (not only song folders)."""
    return any(p.suffix.lower() in AUDIO_SUFFIXES for p in folder.iterdir())


def load_clips(opts: BenchOptions, task_names: list[str]) -> dict[str, list[Clip]]:
    """Clips per task: DATA's files (or song mixtures) and the song folders' stems.

    Raises:
        AudioError: A requested task has no clips.
    """
    if not opts.data.is_dir():
        raise NotADirectoryError(f"{opts.data}: not a folder")
    window = {"seconds": opts.clip_seconds, "offset": opts.offset, "limit": opts.limit}
    out: dict[str, list[Clip]] = {}
    single = [t for t in task_names if t != "source_separation"]
    if single:
        clips = audio_clips(opts.data, **window) if has_audio(opts.data) \
            else stem_clips(opts.data, ("mixture",), **window)
        for clip in clips:
            clip.wave, clip.sources = clip.wave.reshape(-1), ()
        out.update({t: clips for t in single})
    if "source_separation" in task_names:
        out["source_separation"] = stem_clips(opts.stems or opts.data,
                                              opts.sources or STEMS, **window)
    return out
