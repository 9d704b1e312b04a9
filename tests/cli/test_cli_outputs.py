"""What ``diffmusic restore`` writes: formats, bit depth, full scale, the overwrite rule, batch
summaries and exit codes, signals, DC offset and level, impulse-response records."""

from __future__ import annotations

import json
import os
import signal
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from signals import music_like

import diffmusic.samplers
from diffmusic.audio import load_audio, pcm_bits
from diffmusic.cli import main

FAST = ["--prior", "tiny", "--steps", "2", "--quiet"]
GAP = ["--task", "inpainting", "--gap", "0.4:0.6"]
pytestmark = pytest.mark.usefixtures("one_thread")


def song(path: Path, rate: int = 16000, seconds: float = 1.0, subtype: str = "FLOAT",
         offset: float = 0.0, channels: int = 1) -> Path:
    wave = torch.stack([music_like(c, round(seconds * rate), rate) for c in range(channels)])
    sf.write(path, (wave + offset).T.numpy(), rate, subtype=subtype)
    return path


def m4a(path: Path, rate: int = 44100, seconds: float = 1.0) -> tuple[Path, int]:
    n = round(seconds * rate) + 123
    data = torch.stack([music_like(3, n, rate), music_like(4, n, rate)]).numpy()
    with av.open(str(path), "w", format="mp4", options={"movie_timescale": str(rate)}) as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path, n


@pytest.mark.usefixtures("no_ffmpeg")
@pytest.mark.parametrize("suffix", [".flac", ".mp3"])
def test_m4a_in_flac_and_mp3_out_with_no_ffmpeg(suffix: str, tmp_path: Path) -> None:
    source, n = m4a(tmp_path / "song.m4a")
    out = tmp_path / f"fixed{suffix}"
    assert main(["restore", str(source), *GAP, "-o", str(out), *FAST]) == 0
    wave, rate = load_audio(out)
    assert rate == 44100 and wave.shape == (2, n)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["full_scale"]["mode"] == "rescale" and record["length"] == n


def test_integer_inputs_give_integer_outputs_unless_told(tmp_path: Path) -> None:
    source = song(tmp_path / "in.wav", subtype="PCM_16")
    assert main(["restore", str(source), *GAP, "-o", str(tmp_path / "a.wav"), *FAST]) == 0
    assert pcm_bits(tmp_path / "a.wav") == 16
    assert main(["restore", str(source), *GAP, "-o", str(tmp_path / "b.wav"), "--bits", "24",
                 *FAST]) == 0
    assert pcm_bits(tmp_path / "b.wav") == 24
    assert json.loads((tmp_path / "b.json").read_text())["bits"] == 24
    floats = song(tmp_path / "float.wav")
    assert main(["restore", str(floats), *GAP, "-o", str(tmp_path / "c.wav"), *FAST]) == 0
    assert sf.info(str(tmp_path / "c.wav")).subtype == "FLOAT"


def test_an_existing_output_is_skipped_unless_overwrite(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    source = song(tmp_path / "in.wav")
    out = tmp_path / "out.wav"
    out.write_bytes(b"the user's own file")
    assert main(["restore", str(source), *GAP, "-o", str(out), "--prior", "tiny", "--steps",
                 "2"]) == 0
    assert "exists, skipped" in capsys.readouterr().err
    assert out.read_bytes() == b"the user's own file"
    assert main(["restore", str(source), *GAP, "-o", str(out), "--overwrite", *FAST]) == 0
    assert sf.info(str(out)).frames == 16000


def test_a_batch_prints_a_summary_and_partial_failure_has_its_own_code(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "album"
    folder.mkdir()
    song(folder / "a.wav")
    (folder / "b.wav").write_bytes(b"not audio at all" * 10)
    out = tmp_path / "fixed"
    code = main(["restore", str(folder), *GAP, "-o", str(out), "--prior", "tiny", "--steps",
                 "2"])
    err = capsys.readouterr().err
    assert code == 3 and "1 done, 0 skipped, 1 failed" in err
    code = main(["restore", str(folder), *GAP, "-o", str(out), "--prior", "tiny", "--steps",
                 "2"])
    assert code == 3 and "0 done, 1 skipped, 1 failed" in capsys.readouterr().err
    assert main(["restore", str(folder / "a.wav"), *GAP, "-o", str(tmp_path / "x.wav"),
                 "--task", "bogus", *FAST]) == 2  # bad usage stays 2


@pytest.mark.parametrize("when", ["sampling", "writing", "between files"])
def test_sigterm_exits_143_and_leaves_nothing(when: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    source = song(tmp_path / "in.wav")
    out = tmp_path / "out" / "x.wav"

    def terminate() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    if when == "sampling":
        sample = diffmusic.samplers.SAMPLERS["diffmusic"]

        def sample_then_terminate(*args: object, **kwargs: object) -> object:
            terminate()
            return sample(*args, **kwargs)
        monkeypatch.setitem(diffmusic.samplers.SAMPLERS, "diffmusic", sample_then_terminate)
    elif when == "writing":
        write = sf.write

        def write_then_terminate(path: object, *args: object, **kwargs: object) -> None:
            write(path, *args, **kwargs)  # the temporary file is complete, not yet renamed
            terminate()
        monkeypatch.setattr(sf, "write", write_then_terminate)
    else:  # the audio is in place, its record not yet written
        monkeypatch.setattr("diffmusic.cli.restore.write_json",
                            lambda path, data: terminate())
    assert main(["restore", str(source), *GAP, "-o", str(out), *FAST]) == 143
    assert capsys.readouterr().err.strip() == "diffmusic: terminated"
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored on the way out


def test_a_gap_is_filled_at_the_recording_dc_offset_and_below_its_peak(tmp_path: Path) -> None:
    source = song(tmp_path / "dc.wav", offset=0.4)
    out = tmp_path / "dc_fixed.wav"
    assert main(["restore", str(source), *GAP, "-o", str(out), *FAST]) == 0
    wave, _ = sf.read(out, dtype="float32")
    inside = wave[round(0.42 * 16000): round(0.58 * 16000)]
    assert abs(inside.mean() - 0.4) < 0.1  # around the offset, not around 0
    clipped = tmp_path / "clipped.wav"
    sf.write(clipped, np.clip(3 * music_like(7, 16000).numpy(), -1, 1), 16000, subtype="FLOAT")
    assert main(["restore", str(clipped), *GAP, "-o", str(tmp_path / "c.wav"), "--clip-mode",
                 "none", *FAST]) == 0  # nothing rescales the output: the fill itself must fit
    wave, _ = sf.read(tmp_path / "c.wav", dtype="float32")
    assert np.abs(wave).max() <= 1.0
    assert json.loads((tmp_path / "c.json").read_text())["full_scale"]["peak"] <= 1.0


def test_records_name_an_impulse_response_file_not_its_samples(tmp_path: Path) -> None:
    source = song(tmp_path / "room.wav")
    rir = np.zeros(8000, np.float32)
    rir[0], rir[400] = 1.0, 0.5
    sf.write(tmp_path / "h.wav", rir, 16000, subtype="FLOAT")
    out = tmp_path / "dry.wav"
    assert main(["restore", str(source), "--task", "dereverberation", "--rir",
                 str(tmp_path / "h.wav"), "-o", str(out), *FAST]) == 0
    text = out.with_suffix(".json").read_text()
    record = json.loads(text)
    described = record["operator"]["rir"]
    assert described["file"] == str(tmp_path / "h.wav") and described["samples"] == 8000
    assert len(described["sha256"]) == 64 and len(text) < 20_000
