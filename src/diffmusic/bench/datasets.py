"""Benchmark clips: a folder of audio files or a MUSDB18-style folder of song folders.

The paper's clip rule: one window of 5.12 s (81,920 samples at 16 kHz) per track, starting at a
fixed offset (30 s), or centred when the track is shorter than offset + window; resampled to
16 kHz mono.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from diffmusic.audio import AudioError, load_audio
from diffmusic.dsp.resample import resample
from diffmusic.names import CLIP_SAMPLES, SAMPLE_RATE, STEMS

CLIP_SECONDS = CLIP_SAMPLES / SAMPLE_RATE
OFFSET_SECONDS = 30.0
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class Clip:
    """One benchmark clip.

    Attributes:
        name: Unique name (file stem or song folder name).
        wave: Mono reference ``(N,)``, or the stems ``(K, N)`` for separation clips.
        sources: Stem names of the rows of ``wave`` (empty for a single source).
        start: Offset of the window in the original track, in seconds.
        meta: Where the clip came from (``path``).
    """

    name: str
    wave: Tensor
    sources: tuple[str, ...] = ()
    start: float = 0.0
    meta: dict = field(default_factory=dict)


def window_start(duration: float, length: float, offset: float = OFFSET_SECONDS) -> float:
    """Start of the clip window: ``offset``, or centred when the track is too short for it."""
    if duration >= offset + length:
        return offset
    return max(0.0, (duration - length) / 2)


def read_window(path: Path, start: float, num_samples: int,
                sample_rate: int = SAMPLE_RATE) -> Tensor:
    """``num_samples`` mono samples at ``sample_rate`` from ``start`` seconds (zero-padded)."""
    try:
        info = sf.info(path)
        rate = info.samplerate
        first = int(round(start * rate))
        frames = int(np.ceil(num_samples * rate / sample_rate)) + 64
        data, _ = sf.read(path, start=first, frames=frames, dtype="float32", always_2d=True)
        wave = torch.from_numpy(np.ascontiguousarray(data.T)).mean(0)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        full, rate = load_audio(path, mono=True)
        wave = full[0, int(round(start * rate)):]
    if rate != sample_rate:
        wave = resample(wave, rate, sample_rate)
    wave = wave[:num_samples]
    return torch.nn.functional.pad(wave, (0, num_samples - wave.shape[-1]))


def duration(path: Path) -> float:
    """Duration of an audio file in seconds."""
    try:
        info = sf.info(path)
        return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError):
        wave, rate = load_audio(path, mono=True)
        return wave.shape[-1] / rate


def clip_samples(seconds: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Samples of a clip of ``seconds``, a whole number of latent frames (640 samples)."""
    return max(1, round(seconds * sample_rate / 640)) * 640


def _file_clips(items: list[tuple[str, list[Path], Path]], sources: Sequence[str],
                seconds: float, offset: float, limit: int | None) -> list[Clip]:
    """One clip per ``(name, files, origin)``: the window follows the first file's length; the
    files' windows are stacked ``(K, N)`` when ``sources`` name them, else the one is ``(N,)``."""
    n = clip_samples(seconds)
    clips = []
    for name, files, origin in items[:limit]:
        start = window_start(duration(files[0]), n / SAMPLE_RATE, offset)
        wave = torch.stack([read_window(f, start, n) for f in files])
        clips.append(Clip(name, wave if sources else wave[0], tuple(sources), start,
                          {"path": str(origin)}))
    return clips


def audio_clips(folder: str | Path, seconds: float = CLIP_SECONDS,
                offset: float = OFFSET_SECONDS, limit: int | None = None) -> list[Clip]:
    """One clip per audio file of ``folder`` (sorted by name), at most ``limit``.

    Raises:
        AudioError: No audio files in ``folder``.
    """
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise AudioError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return _file_clips([(p.stem, [p], p) for p in files], (), seconds, offset, limit)


def _stem_file(song: Path, stem: str) -> Path | None:
    return next((song / f"{stem}{s}" for s in AUDIO_SUFFIXES if (song / f"{stem}{s}").is_file()),
                None)


def stem_clips(folder: str | Path, sources: Sequence[str] = STEMS,
               seconds: float = CLIP_SECONDS, offset: float = OFFSET_SECONDS,
               limit: int | None = None) -> list[Clip]:
    """One separation clip per song folder ``SONG/{stem}.wav`` (or ``musdb`` ``.stem.mp4``).

    Songs missing one of ``sources`` are skipped; the window follows the first stem's length.

    Raises:
        AudioError: No song folder holds all the stems.
    """
    songs = [(p.name, [_stem_file(p, s) for s in sources], p)
             for p in sorted(Path(folder).iterdir()) if p.is_dir()]
    songs = [song for song in songs if None not in song[1]]
    if not songs:
        return _musdb_clips(folder, sources, seconds, offset, limit)
    return _file_clips(songs, sources, seconds, offset, limit)


def _musdb_clips(folder: str | Path, sources: Sequence[str], seconds: float, offset: float,
                 limit: int | None) -> list[Clip]:
    """Clips from the ``musdb`` package's ``.stem.mp4`` layout (when it is installed)."""
    try:
        import musdb
    except ImportError:
        raise AudioError(f"{folder}: no song folders with stems {', '.join(sources)} "
                         "(and the musdb package is not installed)") from None
    db = musdb.DB(root=str(folder))
    if not db.tracks:
        raise AudioError(f"{folder}: no MUSDB18 tracks")
    n = clip_samples(seconds)
    clips = []
    for track in db.tracks[:limit]:
        start = window_start(track.duration, n / SAMPLE_RATE, offset)
        track.chunk_start, track.chunk_duration = start, n / SAMPLE_RATE + 0.1
        stems = [resample(torch.from_numpy(track.targets[s].audio.T.copy()).float().mean(0),
                          track.rate, SAMPLE_RATE)[:n] for s in sources]
        wave = torch.stack([torch.nn.functional.pad(w, (0, n - w.shape[-1])) for w in stems])
        clips.append(Clip(track.name, wave, tuple(sources), start))
    return clips
