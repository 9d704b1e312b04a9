"""Long recordings: window plans, overlap-add, gap windows, the library's windowed restoration
(:class:`diffmusic.restoration.Restorer`), and the CLI on long stereo files at 44.1 kHz and on
measurement folders longer than the prior's window (tiny prior, 2 steps)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import julius
import numpy as np
import pytest
import soundfile as sf
import torch
from signals import music_like

from diffmusic.cli import main
from diffmusic.cli.build import OperatorOptions, build_operator
from diffmusic.dsp import resample, resample_region
from diffmusic.measurement import write_measurement
from diffmusic.operators import (
    TASKS,
    Dereverberation,
    Inpainting,
    PhaseRetrieval,
    SuperResolution,
)
from diffmusic.priors import Prior, load_prior
from diffmusic.restoration import Restorer, Settings, restore
from diffmusic.restoration.windows import (
    Window,
    crossfades,
    fade_weights,
    overlap_add,
    plan_gap_windows,
    plan_windows,
    region_weights,
)

FAST = ["--prior", "tiny", "--steps", "2", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("length", [1, 640, 81920, 81921, 200_000, 1_000_003])
def test_plan_windows_cover_with_overlap(length: int) -> None:
    windows = plan_windows(length, 81920, 8000, 640)
    assert windows[0].start == 0 and windows[-1].end >= length
    assert all(w.start % 640 == 0 and w.length % 640 == 0 for w in windows)
    for left, right in zip(windows, windows[1:], strict=False):
        assert left.end - right.start >= 8000 and right.start > left.start
    if length > 81920:
        assert all(w.length == 81920 for w in windows) and windows[-1].end - length < 640


def test_gap_windows_hold_whole_gaps_and_skip_clean_audio() -> None:
    length, segment, context = 16000 * 60, 40960, 8000
    gaps = [(16000 * 2, 16000 * 2 + 3000), (40000, 41000), (16000 * 30 - 500, 16000 * 30 + 500),
            (length - 100, length)]
    windows = plan_gap_windows(length, segment, gaps, context, 640)
    assert len(windows) == 3  # the first two gaps share a window; nothing between the gaps
    held = [g for w in windows for g in w.gaps]
    assert sorted(held) == sorted(gaps)
    for window in windows:
        assert window.start >= 0 and window.end <= length and window.length == segment
        for a, b in window.gaps:
            assert window.start <= a and b <= window.end
            assert a - window.start >= min(context, a) and window.end - b >= min(context,
                                                                                  length - b)
    with pytest.raises(ValueError, match="longer than one window"):
        plan_gap_windows(length, segment, [(0, segment)], context, 640)
    with pytest.raises(ValueError, match="0 <= start < end"):
        plan_gap_windows(length, segment, [(length, length + 10)], context, 640)


def test_crossfades_sum_to_one_and_overlap_add_is_exact_for_identity() -> None:
    fade_out, fade_in = fade_weights(100, 0, 30)[-30:], fade_weights(100, 30, 0)[:30]
    torch.testing.assert_close(fade_out + fade_in, torch.ones(30))
    assert (fade_weights(50, 20, 20) > 0).all()
    signal = torch.randn(2, 100_000)
    windows = plan_windows(100_000, 20480, 3000, 640)

    def identity(window: Window) -> torch.Tensor:
        piece = signal[..., window.start: window.end]
        return torch.nn.functional.pad(piece, (0, window.length - piece.shape[-1]))

    torch.testing.assert_close(
        overlap_add(windows, identity, 100_000, crossfades(windows, 3000)), signal)


def test_region_weights_paste_only_the_gaps_and_their_margins() -> None:
    y = torch.randn(1, 50_000)
    windows = plan_gap_windows(50_000, 20480, [(10_000, 11_000), (40_000, 40_100)], 2000, 640)
    out = overlap_add(windows, lambda w: torch.full((2, 1, w.length), 7.0), 50_000,
                      region_weights([10, 0]), base=y)
    assert out.shape == (2, 1, 50_000)
    changed = (out[0] != y)[0].nonzero()[:, 0]
    assert set(changed.tolist()) == set(range(9990, 11010)) | set(range(39990, 40110))
    assert (out[0, 0, 9990:11010] == 7).all()
    changed = (out[1] != y)[0].nonzero()[:, 0]
    assert set(changed.tolist()) == set(range(10_000, 11_000)) | set(range(40_000, 40_100))


@pytest.mark.parametrize(("rate", "new_rate"), [(16000, 44100), (16000, 48000), (16000, 22050)])
def test_resample_region_matches_resampling_everything(rate: int, new_rate: int) -> None:
    wave = torch.randn(2, 3 * rate)
    full = resample(wave, rate, new_rate)
    for lo, hi in [(0, 500), (12345, 20000), (full.shape[-1] - 700, full.shape[-1])]:
        torch.testing.assert_close(resample_region(wave, rate, new_rate, lo, hi),
                                   full[..., lo:hi], atol=1e-5, rtol=0)


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


@pytest.fixture(scope="module")
def tiny() -> Prior:
    """The random-weight tiny prior."""
    return load_prior("tiny")


@pytest.mark.parametrize("task", ["inpainting", "dereverberation"])
def test_one_window_is_exactly_restore(task: str, tiny: Prior, clips: torch.Tensor) -> None:
    n = 20480
    operator = (Inpainting(16000, n, gaps=[(0.5, 0.6)]) if task == "inpainting"
                else Dereverberation(16000, n, rt60=0.3))
    y = operator(clips[:, :n])
    settings = Settings(steps=2, seed=5)
    direct = restore(tiny, operator, y, settings)
    windowed = Restorer(tiny, settings).restore_windows(operator, y, n)
    torch.testing.assert_close(windowed.wave, direct.wave)
    torch.testing.assert_close(windowed.raw, direct.raw)
    assert windowed.record["seed"] == 5 and len(windowed.record["windows"]) == 1


def test_a_gap_far_from_the_start_gets_the_only_window(tiny: Prior) -> None:
    rate, n = 16000, 16000 * 12
    wave = torch.stack([music_like(3, n), music_like(4, n)])
    restorer = Restorer(tiny, Settings(steps=2), segment=1.28, overlap=0.25)
    result = restorer.restore_recording(functools.partial(Inpainting, gaps=[(10.0, 10.2)]),
                                        wave, rate)
    windows = result.record["windows"]
    assert len(windows) == 1 and windows[0]["start"] <= 10 * rate < windows[0]["start"] + 20480
    assert windows[0]["operator"]["gaps"] == [[(10 * rate - windows[0]["start"]) / rate,
                                               (10.2 * rate - windows[0]["start"]) / rate]]
    outside = torch.ones(n, dtype=torch.bool)
    outside[10 * rate - 80: round(10.2 * rate) + 80] = False
    assert torch.equal(result.wave[:, outside], wave[:, outside])


def test_library_refuses_bad_settings_with_value_errors(tiny: Prior) -> None:
    wave = music_like(0, 16000)[None]
    with pytest.raises(ValueError, match="^segment 60 s is longer"):
        Restorer(tiny, segment=60)
    with pytest.raises(ValueError, match="^overlap 0.6 s must be at most half"):
        Restorer(tiny, segment=1.0, overlap=0.6)
    restorer = Restorer(tiny, Settings(steps=2))
    with pytest.raises(ValueError, match="restore them with restore_windows"):
        restorer.restore_recording(PhaseRetrieval, wave, 16000)
    with pytest.raises(ValueError, match="channels must be one of"):
        restorer.restore_recording(functools.partial(Inpainting, gaps=[(0.1, 0.2)]), wave,
                                   16000, channels="surround")
    with pytest.raises(ValueError, match="longer than one window can restore"):
        Restorer(tiny, Settings(steps=2), segment=0.64, overlap=0.1).restore_recording(
            functools.partial(Inpainting, gaps=[(0.1, 0.9)]), wave, 16000)
    imports = subprocess.run(
        [sys.executable, "-c", "import sys, diffmusic.restoration; "
         "print(any(m.startswith('diffmusic.cli') for m in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert imports.stdout.strip() == "False"  # the library never needs the CLI


def band_levels(x: torch.Tensor, rate: int, bands: list[tuple[float, float]]) -> list[float]:
    """Root-sum-square magnitude of the Hann-windowed spectrum of ``x`` in each band (Hz)."""
    spectrum = torch.fft.rfft(x * torch.hann_window(x.shape[-1]), dim=-1).abs()
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / rate)
    return [float(spectrum[..., (freqs >= lo) & (freqs < hi)].pow(2).sum().sqrt())
            for lo, hi in bands]


def test_super_resolution_at_44k_keeps_the_input_and_adds_the_missing_band(tiny: Prior) -> None:
    rate, n = 44100, round(2.5 * 44100)
    music = torch.stack([music_like(1, n, rate), music_like(2, n, rate)])
    tone = 0.05 * torch.sin(2 * torch.pi * 12000 * torch.arange(n) / rate)  # above the prior
    damaged = julius.lowpass_filter(music, 3600 / rate, zeros=64) + tone
    restorer = Restorer(tiny, Settings(steps=2), segment=1.28, overlap=0.25)
    result = restorer.restore_recording(functools.partial(SuperResolution, factor=2), damaged,
                                        rate)
    assert result.sample_rate == rate and result.wave.shape == damaged.shape
    assert result.record["sample_rate"] == rate and len(result.record["windows"]) == 3
    # below the 4 kHz cutoff and above the prior's 8 kHz: the input, up to the crossover
    # (differences 100 dB below the input's level, which is mostly the 0-3.5 kHz band)
    level = band_levels(damaged, rate, [(0, 22_050)])[0]
    errors = band_levels(result.wave - damaged, rate, [(0, 3500), (11_000, 13_000),
                                                       (13_000, 22_050)])
    assert max(errors) < 1e-5 * level
    # between the cutoff and 8 kHz, where the input is empty, the restoration
    added, before = band_levels(result.wave, rate, [(4500, 7000)])[0], band_levels(
        damaged, rate, [(4500, 7000)])[0]
    assert added > 100 * before


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


LONG = 88_000
"""5.5 s at 16 kHz: longer than one prior window (5.12 s)."""
FOLDER_OPTIONS = {"inpainting": {"gaps": [(1.0, 1.2), (4.0, 4.3)]},
                  "super_resolution": {"factor": 4}, "phase_retrieval": {},
                  "source_separation": {"sources": ["a", "b"]},
                  "dereverberation": {"rt60": 0.3}}


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
