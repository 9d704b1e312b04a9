"""Random crops of 16 kHz mono wav files: plain music folders and MUSDB-style stem folders.

Crops are read from disk on demand (``soundfile`` seeks), so memory does not grow with the data
and files that appear while training runs are picked up by :meth:`CropSampler.refresh`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import torch
from torch import Tensor, nn

from diffmusic.dsp import rms_db
from diffmusic.names import CLIP_SAMPLES, SAMPLE_RATE
from diffmusic.train.loop import LoopConfig, StepFn, train_loop

CLASSES = ("mix", "vocals", "drums", "bass", "other")
"""Condition classes of the noise predictor; class ``k`` has embedding index ``k + 1``."""

UNCONDITIONAL = 0
"""Embedding index of the unconditional (classifier-free) class."""

VALID_CLIPS = 8
"""Fixed validation clips a stage's ``valid.csv`` is measured on."""


@dataclass(frozen=True)
class Source:
    """One wav file a crop can come from.

    Attributes:
        path: The wav file (16 kHz mono).
        frames: Its length in samples.
        label: Index into :data:`CLASSES`.
    """

    path: Path
    frames: int
    label: int


def scan_sources(data: Path, split: str, min_frames: int) -> list[Source]:
    """All usable files of a split: ``data/music/SPLIT/**/*.wav`` as ``mix`` and the stems.

    Args:
        data: The data root (holding ``music/`` and/or ``stems/``).
        split: ``"train"`` or ``"valid"``.
        min_frames: Files shorter than this many samples are skipped.

    Returns:
        Sources sorted by path (deterministic order).
    """
    found: list[tuple[Path, int]] = [(p, 0) for p in (data / "music" / split).rglob("*.wav")]
    for song in sorted((data / "stems" / split).glob("*")):
        if not (song / "mixture.wav").exists():
            continue
        for label, name in enumerate(CLASSES):
            path = song / ("mixture.wav" if name == "mix" else f"{name}.wav")
            if path.exists():
                found.append((path, label))
    sources = []
    for path, label in sorted(found):
        try:
            if time.time() - path.stat().st_mtime <= 20.0:  # may be being written right now
                continue
            info = sf.info(str(path))
        except (OSError, RuntimeError):
            continue
        if info.samplerate == SAMPLE_RATE and info.frames >= min_frames:
            sources.append(Source(path, info.frames, label))
    return sources


def read_crop(source: Source, start: int, length: int) -> Tensor:
    """Samples ``[start, start + length)`` of a source as float32 mono, shape ``(length,)``."""
    data, _ = sf.read(str(source.path), start=start, frames=length, dtype="float32",
                      always_2d=True)
    wave = torch.from_numpy(data.mean(1))
    if wave.numel() < length:
        wave = torch.nn.functional.pad(wave, (0, length - wave.numel()))
    return wave


class CropSampler:
    """Draws batches of random crops, optionally balanced over condition classes.

    Args:
        data: Data root.
        split: ``"train"`` or ``"valid"``.
        length: Crop length in samples.
        labels: Classes to draw from (indices into :data:`CLASSES`); ``None``: every file,
            weighted by duration, regardless of class.
        min_rms_db: Crops quieter than this (dBFS) are redrawn (silent stems, fades).
        gain_db: Random attenuation range in dB, applied per crop (level augmentation).
    """

    def __init__(self, data: Path, split: str, length: int, labels: tuple[int, ...] | None = None,
                 min_rms_db: float = -45.0, gain_db: tuple[float, float] = (-10.0, 0.0)):
        self.data, self.split, self.length = Path(data), split, length
        self.labels, self.min_rms_db, self.gain_db = labels, min_rms_db, gain_db
        self.sources: list[Source] = []
        self.refresh()

    def refresh(self) -> int:
        """Re-scan the folders (new files written since the start); returns the file count."""
        sources = scan_sources(self.data, self.split, self.length)
        if self.labels is not None:
            sources = [s for s in sources if s.label in self.labels]
        self.sources = sources
        self.by_label: dict[int, list[Source]] = {}
        for s in sources:
            self.by_label.setdefault(s.label, []).append(s)
        return len(sources)

    def hours(self) -> float:
        """Total duration of the usable files in hours."""
        return sum(s.frames for s in self.sources) / SAMPLE_RATE / 3600

    def crop(self, generator: torch.Generator, label: int | None = None,
             tries: int = 8) -> tuple[Tensor, int]:
        """One crop and its class, shape ``(length,)``; loud enough when possible."""
        if not self.sources:
            raise FileNotFoundError(f"no 16 kHz wav files under {self.data} ({self.split})")
        pool = self.by_label.get(label, self.sources) if label is not None else self.sources
        weights = torch.tensor([float(s.frames) for s in pool], dtype=torch.float64)
        wave, source = None, None
        for _ in range(tries):
            source = pool[int(torch.multinomial(weights, 1, generator=generator))]
            start = int(torch.randint(0, source.frames - self.length + 1, (1,),
                                      generator=generator))
            wave = read_crop(source, start, self.length)
            if rms_db(wave) > self.min_rms_db:
                break
        low, high = self.gain_db
        gain_db = low + (high - low) * float(torch.rand((), generator=generator))
        return wave * 10 ** (gain_db / 20), source.label

    def batch(self, size: int, generator: torch.Generator,
              class_weights: dict[int, float] | None = None) -> tuple[Tensor, Tensor]:
        """A batch of crops ``(size, length)`` and their labels ``(size,)`` (CLASSES indices).

        Args:
            size: Batch size.
            generator: Random source.
            class_weights: Draw the class first with these weights (classes without files are
                left out), then a file of that class; ``None``: any file, by duration.
        """
        weights = {k: w for k, w in (class_weights or {}).items() if k in self.by_label}
        classes = sorted(weights)
        probs = torch.tensor([weights[k] for k in classes], dtype=torch.float64)
        waves, labels = [], []
        for _ in range(size):
            label = None
            if classes:
                label = classes[int(torch.multinomial(probs, 1, generator=generator))]
            wave, got = self.crop(generator, label)
            waves.append(wave)
            labels.append(got)
        return torch.stack(waves), torch.tensor(labels, dtype=torch.long)


_CLIP_CACHE: dict[tuple, Tensor] = {}


class Refreshing(Protocol):
    """A training-data source that can re-scan its files (:class:`CropSampler`, a latent pack)."""

    def refresh(self) -> int:
        """Re-scan; returns the number of files or items."""


def validation_clips(data: Path, length: int, count: int = 16, label: int = 0,
                     min_rms_db: float = -35.0, root: str | None = None) -> Tensor | None:
    """Deterministic validation clips: per file, the loudest of a few evenly spaced windows.

    Args:
        data: Data root.
        length: Clip length in samples.
        count: At most this many clips (files in sorted order, one clip each, spread evenly).
        label: Class of the files to use (default ``mix``: real music and mixtures).
        min_rms_db: Windows quieter than this are not used.
        root: Only files under ``data/ROOT`` (``"music"`` or ``"stems"``); ``None``: both.

    Returns:
        Clips, shape ``(n, length)`` with ``n <= count``; ``None`` while the validation folder
        has no usable file yet (the result is cached once clips exist).
    """
    key = (str(data), length, count, label, min_rms_db, root)
    if key in _CLIP_CACHE:
        return _CLIP_CACHE[key]
    sources = [s for s in scan_sources(Path(data), "valid", length) if s.label == label
               and (root is None or s.path.is_relative_to(Path(data) / root))]
    if len(sources) > count:
        picks = np.linspace(0, len(sources) - 1, count).round().astype(int)
        sources = [sources[i] for i in picks]
    clips = []
    for source in sources:
        starts = np.linspace(0, source.frames - length, 5).astype(int)[1:-1]
        windows = [read_crop(source, int(s), length) for s in starts]
        best = max(windows, key=lambda w: float(w.square().mean()))
        if rms_db(best) > min_rms_db:
            clips.append(best)
    if not clips:
        return None
    _CLIP_CACHE[key] = torch.stack(clips)
    return _CLIP_CACHE[key]


def train_stage(stage: str, data: Path, runs: Path, sampler: Refreshing,
                modules: dict[str, nn.Module], step: StepFn,
                losses: Callable[[dict, Tensor], dict[str, Tensor]], minutes: float, lr: float,
                seed: int, valid_inputs: Callable[[], Tensor | None] | None = None,
                save_every_s: float = LoopConfig.save_every_s, max_steps: int | None = None,
                **extra_state) -> dict:
    """:func:`train_loop` of ``modules`` in ``runs/STAGE`` with ``extra_state`` in its state.

    At every checkpoint the stage re-scans the data (``sampler.refresh()``), then writes
    ``losses(emas, inputs)`` on fixed validation inputs (nothing while there are none), rounded,
    to ``valid.csv``.

    Args:
        valid_inputs: Returns the validation inputs; default: 8 fixed 5.12 s clips of
            ``data`` (:func:`validation_clips`), shape ``(VALID_CLIPS, CLIP_SAMPLES)``.
        save_every_s: Seconds between checkpoints.
        max_steps: Stop at this step in total (``None``: only the time budget).
    """

    def default_inputs() -> Tensor | None:
        return validation_clips(data, CLIP_SAMPLES, count=VALID_CLIPS)

    inputs = valid_inputs or default_inputs

    @torch.no_grad()
    def validate(emas: dict) -> dict[str, float]:
        sampler.refresh()
        batch = inputs()
        if batch is None:
            return {}
        return {k: round(float(v), 5) for k, v in losses(emas, batch).items()}

    cfg = LoopConfig(run_dir=Path(runs) / stage, minutes=minutes, lr=lr, seed=seed,
                     save_every_s=save_every_s, max_steps=max_steps, extra_state=extra_state)
    return train_loop(cfg, modules, step, validate)
