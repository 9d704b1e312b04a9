"""``diffmusic restore`` on long stereo files at 44.1 kHz, folders, and measurement folders longer
than the prior's window (tiny prior, 2 steps)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import julius
import numpy as np
import pytest
import soundfile as sf
import torch
from signals import band_levels, music_like

from diffmusic.cli import main
from diffmusic.cli.build import OperatorOptions, build_operator
from diffmusic.measurement import write_measurement
from diffmusic.operators import (
    TASKS,
    Dereverberation,
    Operator,
    PhaseRetrieval,
    SuperResolution,
)

FAST = ["--prior", "tiny", "--steps", "2", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


def stereo_song(path: Path, seconds: float, rate: int,
                gaps: list[tuple[float, float]]) -> np.ndarray:
    """A music-like stereo file with zeroed gaps; returns what was written, ``(N, 2)``."""
    n = round(seconds * rate)
    wave = torch.stack([music_like(1, n, rate), 0.8 * music_like(2, n, rate)]).T.numpy()
    for start, end in gaps:
        wave[round(start * rate): round(end * rate)] = 0
    sf.write(path, wave, rate, subtype="FLOAT")
    return wave


def test_stereo_44k_inpainting_keeps_everything_outside_the_gaps(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rate, gaps = 44100, [(2.0, 2.25), (5.0, 5.3)]  # the second one straddles 5.12 s
    original = stereo_song(tmp_path / "song.wav", 12.0, rate, gaps)
    out = tmp_path / "fixed.wav"
    code = main(["restore", str(tmp_path / "song.wav"), "--task", "inpainting", "--gap",
                 "0:02-0:02.25,5-5.3", "--segment", "2.56", "-o", str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    restored, out_rate = sf.read(out, dtype="float32")
    assert out_rate == rate and restored.shape == original.shape
    outside = np.ones(len(original), bool)
    fade = round(0.005 * rate)
    for start, end in gaps:
        outside[round(start * rate) - fade: round(end * rate) + fade] = False
    assert np.array_equal(restored[outside], original[outside])  # bit for bit
    assert np.isfinite(restored).all()
    # each gap is filled at the level of the music in the 0.25 s before it (measured: 0.5 to 3.1
    # dB off; an unfilled gap would be silent)
    for start, end in gaps:
        first, last = round(start * rate), round(end * rate)
        filled = 10 * np.log10(np.mean(restored[first:last] ** 2, axis=0))
        context = 10 * np.log10(np.mean(original[first - rate // 4:first] ** 2, axis=0))
        assert (np.abs(filled - context) < 6).all(), (filled, context)
    record = json.loads(out.with_suffix(".json").read_text())
    assert len(record["windows"]) == 2 and record["channels"] == 2
    assert record["sample_rate"] == rate and record["seed"] == 0
    assert [w["seed"] for w in record["windows"]] == [0, 1]


def test_long_dereverberation_mid_side_and_out_rate(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    stereo_song(tmp_path / "room.wav", 6.0, 22050, [])
    out = tmp_path / "dry.flac"
    code = main(["restore", str(tmp_path / "room.wav"), "--task", "dereverberation", "--rt60",
                 "0.3", "--segment", "2.56", "--overlap", "0.25", "--channels", "mid-side",
                 "--out-rate", "16000", "-o", str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    info = sf.info(out)
    assert info.samplerate == 16000 and info.channels == 2 and info.frames == 96000
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["channel_mode"] == "mid-side" and len(record["windows"]) == 3


def test_folder_is_mirrored_and_done_files_are_skipped(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    songs = tmp_path / "songs"
    (songs / "album").mkdir(parents=True)
    for name in ("a.wav", "album/b.flac"):
        sf.write(songs / name, music_like(3, 8000).numpy(), 16000)
    out = tmp_path / "out"
    args = ["restore", str(songs), "--task", "inpainting", "--gap", "0.1:0.2", "-o", str(out),
            *FAST]
    assert main(args) == 0, capsys.readouterr().err
    assert (out / "a.wav").is_file() and (out / "album" / "b.flac").is_file()
    assert sf.info(out / "album" / "b.flac").frames == 8000
    stamp = (out / "a.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "a.json").stat().st_mtime_ns == stamp  # skipped: already done
    assert main([*args, "--overwrite"]) == 0
    assert (out / "a.json").stat().st_mtime_ns != stamp


@pytest.mark.parametrize("task", ["super_resolution", "phase_retrieval", "source_separation"])
def test_long_measurements_of_other_tasks(task: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    clean = music_like(4, 6 * 16000)
    if task == "super_resolution":
        source = tmp_path / "low.wav"
        sf.write(source, music_like(4, 6 * 4000, rate=4000).numpy(), 4000, subtype="FLOAT")
        extra = ["--factor", "4"]
    elif task == "phase_retrieval":
        source = tmp_path / "magnitude.npy"
        np.save(source, PhaseRetrieval(16000, len(clean))(clean[None])[0].numpy())
        extra = []
    else:
        source = tmp_path / "mix.wav"
        sf.write(source, clean.numpy(), 16000, subtype="FLOAT")
        extra = ["--sources", "a,b"]
    out = tmp_path / ("stems" if task == "source_separation" else "out.wav")
    code = main(["restore", str(source), "--task", task, *extra, "--segment", "2.56", "-o",
                 str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    files = [out / "a.wav", out / "b.wav"] if task == "source_separation" else [out]
    for path in files:
        info = sf.info(path)
        assert info.samplerate == 16000 and info.frames == len(clean)
    record = json.loads((out / "restore.json" if task == "source_separation"
                         else out.with_suffix(".json")).read_text())
    assert len(record["windows"]) == 3


def test_cli_super_resolution_keeps_the_input_rate(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    rate = 44100
    stereo_song(tmp_path / "song.wav", 2.0, rate, [])
    wave, _ = sf.read(tmp_path / "song.wav", dtype="float32")
    low = julius.lowpass_filter(torch.from_numpy(wave.T.copy()), 1800 / rate, zeros=64)
    sf.write(tmp_path / "dull.wav", low.T.numpy(), rate, subtype="FLOAT")
    for extra, out_rate in [([], rate), (["--out-rate", "48000"], 48000)]:
        out = tmp_path / f"bright_{out_rate}.wav"
        code = main(["restore", str(tmp_path / "dull.wav"), "--task", "super_resolution",
                     "--factor", "4", "--segment", "1.28", "-o", str(out), *extra, *FAST])
        assert code == 0, capsys.readouterr().err
        restored, got_rate = sf.read(out, dtype="float32")
        assert got_rate == out_rate and restored.shape == (round(2.0 * out_rate), 2)
        record = json.loads(out.with_suffix(".json").read_text())
        assert record["sample_rate"] == out_rate and record["input_rate"] == rate
    restored = torch.from_numpy(sf.read(tmp_path / f"bright_{rate}.wav", dtype="float32")[0].T)
    error, level = (band_levels(x, rate, [(0, 1700)])[0] for x in (restored - low, low))
    assert error < 1e-4 * level


def restored_song(tmp_path: Path, capsys: pytest.CaptureFixture, task: str,
                  damage: Callable[[int, int], Operator]) -> tuple[np.ndarray, torch.Tensor,
                                                                  np.ndarray, dict]:
    """A 3 s stereo 44.1 kHz song damaged by ``damage(rate, length)``'s operator and restored
    by the CLI with its defaults: the song ``(N, 2)``, the damaged ``(2, N)``, the restoration
    ``(N, 2)`` and its record."""
    rate = 44100
    stereo_song(tmp_path / "song.wav", 3.0, rate, [])
    wave, _ = sf.read(tmp_path / "song.wav", dtype="float32")
    damaged = damage(rate, len(wave)).degrade(torch.from_numpy(wave.T.copy()))
    sf.write(tmp_path / "damaged.wav", damaged.T.numpy(), rate, subtype="FLOAT")
    out = tmp_path / "restored.wav"
    code = main(["restore", str(tmp_path / "damaged.wav"), "--task", task, "-o", str(out),
                 "--segment", "2.56", *FAST])
    assert code == 0, capsys.readouterr().err
    restored, got_rate = sf.read(out, dtype="float32")
    assert got_rate == rate and restored.shape == wave.shape
    return wave, damaged, restored, json.loads(out.with_suffix(".json").read_text())


def test_cli_reads_an_unknown_cutoff_and_keeps_the_band_below_it(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, dull, restored, record = restored_song(  # no --factor: --cutoff auto
        tmp_path, capsys, "super_resolution", lambda r, n: SuperResolution(r, n, cutoff=4000.0))
    assert abs(record["operator"]["cutoff"] - 4000) <= 200
    restored = torch.from_numpy(restored.T.copy())
    error, level = (band_levels(x, 44100, [(0, 3000)])[0] for x in (restored - dull, dull))
    new, old = (band_levels(x, 44100, [(5000, 7500)])[0] for x in (restored, dull))
    assert error < 1e-3 * level and new > 10 * old


def test_cli_restores_an_unknown_room_and_records_its_rt60_per_band(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, wet, restored, record = restored_song(  # no --rt60, no --rir: blind
        tmp_path, capsys, "dereverberation", lambda r, n: Dereverberation(r, n, room=0.8))
    assert record["operator"]["rt60"] == "blind"
    rt60 = record["estimates"]["rt60_s"]
    assert list(rt60)[:3] == ["125", "250", "500"]
    assert all(len(values) == 2 for values in rt60.values())
    middle = torch.tensor([rt60[band] for band in ("500", "1000", "2000")])
    assert 0.4 < float(middle.median()) < 1.6  # the room's RT60 is 0.8 s
    assert all(window["estimates"]["rt60_s"] for window in record["windows"])
    tail = slice(round(0.5 * 44100), None)
    assert float(np.mean(restored[tail] ** 2)) < 0.8 * float(np.mean(wet.T.numpy()[tail] ** 2))


LONG = 88_000


FOLDER_OPTIONS = {"inpainting": {"gaps": [(1.0, 1.2), (4.0, 4.3)]},
                  "super_resolution": {"factor": 4}, "phase_retrieval": {},
                  "source_separation": {"sources": ["a", "b"]},
                  "dereverberation": {"rt60": 0.3}, "declipping": {"input_sdr": 3.0},
                  "denoising": {"snr": 10.0}}


@pytest.mark.parametrize("task", TASKS)
def test_long_measurement_folders_are_restored_window_by_window(
        task: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    separation = task == "source_separation"
    clean = (torch.stack([music_like(5, LONG), music_like(6, LONG)])[None] if separation
             else music_like(5, LONG)[None])
    operator = build_operator(OperatorOptions(task, **FOLDER_OPTIONS[task]), LONG)
    y = write_measurement(tmp_path / "meas", operator, clean, 0, "test")
    out = tmp_path / ("stems" if separation else "out.wav")
    code = main(["restore", str(tmp_path / "meas"), "-o", str(out), "--segment", "2.56",
                 "--overlap", "0.25", *FAST])
    assert code == 0, capsys.readouterr().err
    files = [out / "a.wav", out / "b.wav"] if separation else [out]
    for path in files:
        wave, rate = sf.read(path, dtype="float32")
        assert rate == 16000 and wave.shape == (LONG,) and np.isfinite(wave).all()
    record = json.loads((out / "restore.json" if separation else out.with_suffix(".json"))
                        .read_text())
    assert record["length"] == LONG and record["segment"] == 40960
    assert [w["seed"] for w in record["windows"]] == list(range(len(record["windows"])))
    if task == "inpainting":  # one window per gap; the rest is the measurement, bit for bit
        assert len(record["windows"]) == 2
        outside = np.ones(LONG, bool)
        for start, end in FOLDER_OPTIONS[task]["gaps"]:
            outside[round(start * 16000) - 81: round(end * 16000) + 81] = False
        assert np.array_equal(wave[outside], y[0, :LONG].numpy()[outside])
    else:
        assert len(record["windows"]) == 3
