"""The demo's test material: a short synthetic song made of three stems, made in code."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from diffmusic.audio import load_audio
from diffmusic.dsp import fit_length
from diffmusic.names import CLIP_SAMPLES, SAMPLE_RATE

MELODY = (69, 72, 74, 76, 79, 76, 74, 72)
"""MIDI notes of the melody (A minor pentatonic), one per 0.64 s."""
BASS = (45, 41, 43, 40)
"""MIDI notes of the bass line, one per 1.28 s."""
BEAT = 0.32
"""Seconds per beat (kick on 1 and 3, snare on 2 and 4, hi-hat on every eighth)."""


def notes(notes_midi: tuple[int, ...], note_seconds: float, num_samples: int, sample_rate: int,
          harmonics: int, decay: float, vibrato: float = 0.0) -> Tensor:
    """A line of harmonic tones with a 10 ms attack and exponential decay, shape ``(N,)``.

    Args:
        notes_midi: MIDI notes, played in a loop.
        note_seconds: Length of each note in seconds.
        num_samples: Output length ``N``.
        sample_rate: Sample rate in Hz.
        harmonics: Number of harmonics (amplitude ``1 / h``; those above Nyquist are dropped).
        decay: Amplitude decay rate in 1/s.
        vibrato: Relative depth of a 5 Hz vibrato.
    """
    out = torch.zeros(num_samples, dtype=torch.float64)
    step = round(note_seconds * sample_rate)
    t = torch.arange(step, dtype=torch.float64) / sample_rate
    envelope = torch.clamp(t / 0.01, max=1.0) * torch.exp(-decay * t)
    wobble = t - vibrato * torch.cos(2 * math.pi * 5 * t) / (2 * math.pi * 5)
    for i, start in enumerate(range(0, num_samples, step)):
        f0 = 440.0 * 2 ** ((notes_midi[i % len(notes_midi)] - 69) / 12)  # MIDI 69: A4, 440 Hz
        phase = 2 * math.pi * f0 * wobble
        tone = sum(torch.sin(h * phase) / h for h in range(1, harmonics + 1)
                   if h * f0 < sample_rate / 2)
        seg = (envelope * tone)[: num_samples - start]
        out[start: start + seg.numel()] += seg
    return out


def drums(num_samples: int, sample_rate: int, generator: torch.Generator) -> Tensor:
    """Kick (a 120 -> 50 Hz sweep), snare and hi-hat (noise bursts) on an eighth grid, ``(N,)``."""
    out = torch.zeros(num_samples, dtype=torch.float64)
    t = torch.arange(round(0.3 * sample_rate), dtype=torch.float64) / sample_rate
    kick = torch.sin(2 * math.pi * (50 * t + 70 * 0.04 * (1 - torch.exp(-t / 0.04))))
    kick = kick * torch.exp(-t / 0.12)
    for i, start in enumerate(range(0, num_samples, round(BEAT / 2 * sample_rate))):
        noise = torch.randn(t.numel(), generator=generator, dtype=torch.float64)
        if i % 4 == 0:
            hit = kick
        elif i % 4 == 2:
            hit = 0.5 * noise * torch.exp(-t / 0.06) + 0.3 * torch.sin(2 * math.pi * 190 * t) \
                * torch.exp(-t / 0.05)
        else:
            hit = 0.2 * torch.diff(noise, prepend=noise[:1]) * torch.exp(-t / 0.015)
        seg = hit[: num_samples - start]
        out[start: start + seg.numel()] += seg
    return out


def synth_stems(num_samples: int = CLIP_SAMPLES, sample_rate: int = SAMPLE_RATE,
                seed: int = 0) -> dict[str, Tensor]:
    """Three stems of a synthetic song (melody as ``vocals``, ``drums``, ``bass``).

    The stems are scaled together so that their sum peaks at 0.5.

    Returns:
        Stem name -> float32 waveform ``(N,)``.
    """
    generator = torch.Generator().manual_seed(seed)
    stems = {
        "vocals": notes(MELODY, 2 * BEAT, num_samples, sample_rate, 6, 2.5, vibrato=0.006),
        "drums": drums(num_samples, sample_rate, generator),
        "bass": 0.8 * notes(BASS, 4 * BEAT, num_samples, sample_rate, 3, 1.2),
    }
    scale = 0.5 / float(sum(stems.values()).abs().max())
    return {name: (wave * scale).float() for name, wave in stems.items()}


def demo_clip(num_samples: int = CLIP_SAMPLES,
              sample_rate: int = SAMPLE_RATE) -> tuple[Tensor, str]:
    """The demo's clip ``(1, N)`` and where it came from: ``diffmusic/assets/demo/clip.wav``
    when the package ships it, else the synthetic song."""
    path = Path(str(resources.files("diffmusic").joinpath("assets", "demo", "clip.wav")))
    if path.is_file():
        return fit_length(load_audio(path, sample_rate, mono=True)[0], num_samples), str(path)
    song = sum(synth_stems(num_samples, sample_rate).values())
    return song[None], "synthetic song (diffmusic.synth)"
