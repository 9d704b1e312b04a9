"""Gap syntax, Audacity label files, dropout detection and ``diffmusic detect-gaps``."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch
from signals import music_like

from diffmusic.cli import main
from diffmusic.gaps import (
    check_gaps,
    detect_gaps,
    format_labels,
    format_time,
    parse_gap,
    parse_gap_list,
    parse_time,
    read_labels,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("2", 2.0), ("2.5", 2.5), (".5", 0.5), ("1:05.2", 65.2), ("01:05", 65.0),
    ("1:02:03.5", 3723.5)])
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-1", "1:60", "1:75:00", "abc", "nan", "inf", "1e3"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_gap_formats() -> None:
    assert parse_gap("2:3") == (2.0, 3.0)
    assert parse_gap("1:05.2-1:06") == pytest.approx((65.2, 66.0))
    assert parse_gap(" 10-10.5 ") == (10.0, 10.5)
    assert parse_gap_list("2:3,1:05-1:06") == [(2.0, 3.0), (65.0, 66.0)]
    for bad in ("3:2", "2:2", "1:00-1:00", "2", "1:2:3", "2-", ","):
        with pytest.raises(ValueError):
            parse_gap_list(bad)


def test_check_gaps_sorts_and_refuses_gaps_past_the_end() -> None:
    assert check_gaps([(5, 6), (1, 2)], 10) == [(1, 2), (5, 6)]
    with pytest.raises(ValueError, match="outside the 10.00 s recording"):
        check_gaps([(9, 11)], 10)


def test_labels_round_trip_and_audacity_format(tmp_path: Path) -> None:
    gaps = [(1.5, 1.75), (62.0, 62.125)]
    text = format_labels(gaps)
    assert text.splitlines()[0] == "1.500000\t1.750000\tdropout"
    path = tmp_path / "labels.txt"
    path.write_text(text + "\\\t100.0\t2000.0\n\n3\t4\tsecond label with spaces\n")
    assert read_labels(path) == [*gaps, (3.0, 4.0)]
    assert format_time(62.125) == "1:02.125" and format_time(3723.5) == "1:02:03.500"


@pytest.mark.parametrize(("content", "match"), [
    ("", "no labels"), ("1\tx\tlabel\n", ":1: expected"), ("2\t2\tpoint\n", "zero-length"),
    ("3\t1\tback\n", "0 <= start < end"), ("nan\t1\tx\n", "0 <= start < end")])
def test_bad_label_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "labels.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        read_labels(path)
    with pytest.raises(ValueError, match="no such file"):
        read_labels(tmp_path / "missing.txt")


def damaged(rate: int = 16000) -> torch.Tensor:
    """3 s of stereo music with 0.2 s leading silence, two dropouts and a near-silent one."""
    wave = torch.stack([music_like(5, 3 * rate), music_like(6, 3 * rate)])
    wave[:, : round(0.2 * rate)] = 0
    wave[:, rate: rate + 800] = 0  # 50 ms digital silence
    wave[:, 2 * rate: 2 * rate + 1600] *= 1e-5  # 100 ms at about -100 dBFS
    wave[0, round(2.5 * rate): round(2.5 * rate) + 100] = 0  # one channel only: not a dropout
    return wave


def test_detect_gaps_finds_dropouts_inside_music() -> None:
    gaps = detect_gaps(damaged(), 16000)
    assert len(gaps) == 2
    assert gaps[0] == pytest.approx((1.0, 1.05), abs=2e-3)
    assert gaps[1] == pytest.approx((2.0, 2.1), abs=2e-3)
    assert detect_gaps(damaged(), 16000, edges=True)[0] == pytest.approx((0.0, 0.2), abs=2e-3)
    assert detect_gaps(damaged(), 16000, min_duration=0.08) == gaps[1:]


@pytest.mark.slow
def test_detect_gaps_command_writes_a_mask_restore_reads(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    song = tmp_path / "song.wav"
    sf.write(song, damaged().T.numpy(), 16000, subtype="FLOAT")
    assert main(["detect-gaps", str(song)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 2 and printed.startswith("1.000000\t1.050000\tdropout")
    labels = tmp_path / "labels.txt"
    assert main(["detect-gaps", str(song), "-o", str(labels), "--quiet"]) == 0
    assert labels.read_text() == printed
    out = tmp_path / "fixed.wav"
    code = main(["restore", str(song), "--task", "inpainting", "--mask", str(labels), "-o",
                 str(out), "--prior", "tiny", "--steps", "2", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert sf.info(out).frames == 48000 and sf.info(out).channels == 2
