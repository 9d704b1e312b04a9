"""``diffmusic restore --prior FOLDER`` on a tiny Stable Audio Open checkpoint: a 44.1 kHz stereo
song comes back at 44.1 kHz stereo, as long as it went in, the kept samples or band unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from hf_components import save_stable_audio

from diffmusic.cli import main
from diffmusic.dsp import resample
from diffmusic.synth import synth_stems

RATE, SECONDS = 44100, 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_stable_audio(tmp_path_factory.mktemp("sa") / "tiny")


def write_song(path: Path, low_passed: bool = False) -> Path:
    """A stereo synthetic song at 44.1 kHz (``low_passed``: through 22.05 kHz, so nothing above
    11 kHz), peak 0.5, as float wav."""
    mix = sum(synth_stems(RATE * SECONDS, RATE).values())
    stereo = torch.stack([mix, 0.8 * torch.roll(mix, 441)])
    if low_passed:
        stereo = resample(resample(stereo, RATE, RATE // 2), RATE // 2, RATE)
    sf.write(path, (0.5 * stereo / stereo.abs().max()).T.numpy(), RATE, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_song(tmp_path_factory.mktemp("song") / "song44k.wav")


def restore(song: Path, checkpoint: Path, out: Path, *task: str) -> tuple[torch.Tensor, dict]:
    """Run ``diffmusic restore`` in-process; the output undone of its full-scale gain, and
    the record."""
    code = main(["restore", str(song), *task, "--prior", str(checkpoint), "--steps", "3",
                 "-o", str(out), "--bits", "24"])
    assert code == 0
    wave, rate = sf.read(out, dtype="float32", always_2d=True)
    record = json.loads(out.with_suffix(".json").read_text())
    assert rate == RATE and record["channel_mode"] == "joint"
    gain = 10 ** (record["full_scale"]["gain_db"] / 20)
    return torch.from_numpy(wave.T) / gain, record


def band_energy(wave: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Energy per channel of ``wave`` ``(C, N)`` between ``low`` and ``high`` Hz."""
    spectrum = torch.fft.rfft(wave.double())
    freqs = torch.fft.rfftfreq(wave.shape[-1], 1 / RATE)
    return spectrum[:, (freqs >= low) & (freqs < high)].abs().pow(2).sum(-1)


def test_inpainting_keeps_stereo_outside_the_gap(song, checkpoint, tmp_path):
    original = torch.from_numpy(sf.read(song, dtype="float32", always_2d=True)[0].T)
    restored, record = restore(song, checkpoint, tmp_path / "fixed.wav", "--task",
                               "inpainting", "--gap", "2:2.5")
    assert restored.shape == original.shape == (2, RATE * SECONDS)
    margin = 4096  # beyond the projection's crossfades
    for kept in (slice(0, 2 * RATE - margin), slice(int(2.5 * RATE) + margin, None)):
        torch.testing.assert_close(restored[:, kept], original[:, kept], atol=1e-4, rtol=0)
    gap = restored[:, 2 * RATE + 100: int(2.5 * RATE) - 100]
    assert (gap.pow(2).mean(-1) > 1e-8).all()  # both channels filled
    assert (gap[0] - gap[1]).abs().max() > 1e-3  # and not with one copy
    assert record["prior"]["channels"] == 2


def test_super_resolution_adds_content_above_the_measured_band(checkpoint, tmp_path):
    song = write_song(tmp_path / "song11k.wav", low_passed=True)
    original = torch.from_numpy(sf.read(song, dtype="float32", always_2d=True)[0].T)
    restored, record = restore(song, checkpoint, tmp_path / "wide.wav", "--task",
                               "super_resolution", "--factor", "2")
    assert restored.shape == original.shape and record["sample_rate"] == RATE
    measured = record["operator"]
    assert measured["factor"] == 2 and measured["sample_rate"] == RATE
    low = band_energy(original, 20, 9000)
    change = band_energy(restored - original, 20, 9000)
    assert (change < 1e-3 * low).all()  # the measured band is kept
    invented = band_energy(restored, 12000, 20000)
    assert (invented > 1e-3 * low).all()  # new content up to 20 kHz...
    assert (invented > 100 * band_energy(original, 12000, 20000)).all()  # ...not in the input
