"""Long recordings: window plans, overlap-add, gap windows, and the CLI on long stereo files at
44.1 kHz (tiny prior, 2 steps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from signals import music_like

from diffmusic.cli import main
from diffmusic.dsp import resample
from diffmusic.longform import (
    Window,
    fade_weights,
    fill_gaps,
    gap_keep_mask,
    overlap_add,
    plan_gap_windows,
    plan_windows,
    resample_region,
)
from diffmusic.operators import PhaseRetrieval

FAST = ["--prior", "tiny", "--steps", "2", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("length", [1, 640, 81920, 81921, 200_000, 1_000_003])
def test_plan_windows_cover_with_overlap(length: int) -> None:
    windows = plan_windows(length, 81920, 8000)
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
    windows = plan_gap_windows(length, segment, gaps, context)
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
        plan_gap_windows(length, segment, [(0, segment)], context)
    with pytest.raises(ValueError, match="0 <= start < end"):
        plan_gap_windows(length, segment, [(length, length + 10)], context)


def test_crossfades_sum_to_one_and_overlap_add_is_exact_for_identity() -> None:
    fade_out, fade_in = fade_weights(100, 0, 30)[-30:], fade_weights(100, 30, 0)[:30]
    torch.testing.assert_close(fade_out + fade_in, torch.ones(30))
    assert (fade_weights(50, 20, 20) > 0).all()
    signal = torch.randn(2, 100_000)
    windows = plan_windows(100_000, 20480, 3000)

    def identity(window: Window) -> torch.Tensor:
        piece = signal[..., window.start: window.end]
        return torch.nn.functional.pad(piece, (0, window.length - piece.shape[-1]))

    torch.testing.assert_close(overlap_add(windows, identity, 100_000, 3000), signal)


def test_fill_gaps_touches_only_the_gaps() -> None:
    y = torch.randn(1, 50_000)
    windows = plan_gap_windows(50_000, 20480, [(10_000, 11_000), (40_000, 40_100)], 2000)
    out = fill_gaps(y, windows, lambda w: torch.full((1, w.length), 7.0), margin=10)
    changed = (out != y)[0].nonzero()[:, 0]
    assert set(changed.tolist()) == set(range(9990, 11010)) | set(range(39990, 40110))
    keep = gap_keep_mask(1000, 1000, [(0.1, 0.2)], 0.01)
    assert (keep[100:200] == 0).all() and (keep[:90] == 1).all() and (keep[210:] == 1).all()
    assert (keep[90:100] > 0).all() and (keep[90:100] < 1).all()


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
    inside = ~outside
    assert np.isfinite(restored).all() and np.abs(restored[inside]).max() > 0
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
