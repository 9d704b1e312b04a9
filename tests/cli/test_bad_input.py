"""Bad input to ``diffmusic restore``: one line on stderr, exit status 2, no output written.

Also a property test: random option combinations and random bytes never end in a traceback or a
partial output.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signals import music_like

from diffmusic.cli import main

RATE = 16000
FAST = ["--prior", "tiny", "--steps", "2", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


def good(path: Path, seconds: float = 1.0, channels: int = 1) -> Path:
    wave = torch.stack([music_like(c, round(seconds * RATE)) for c in range(channels)])
    sf.write(path, wave.T.numpy(), RATE, subtype="FLOAT")
    return path


def truncated(path: Path) -> Path:
    data = good(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def header_only(path: Path) -> Path:
    path.write_bytes(good(path).read_bytes()[:30])
    return path


def write_samples(values: np.ndarray) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        sf.write(path, values, RATE, subtype="FLOAT")
        return path
    return write


def with_value(value: float) -> np.ndarray:
    samples = music_like(0, RATE).numpy()
    samples[100] = value
    return samples


INPUTS: dict[str, tuple[Callable[[Path], Path], list[str], str]] = {
    "truncated wav": (truncated, [], "truncated"),
    "cut header": (header_only, [], "cannot decode"),
    "random bytes": (lambda p: (p.write_bytes(bytes(range(256)) * 9), p)[1], [], "in.wav"),
    "zero length": (write_samples(np.zeros((0, 1), np.float32)), [], "no samples"),
    "all silent": (write_samples(np.zeros(RATE, np.float32)), [], "silent"),
    "NaN sample": (write_samples(with_value(math.nan)), [], "NaN"),
    "Inf sample": (write_samples(with_value(math.inf)), [], "NaN or infinite"),
    "9 channels": (lambda p: good(p, 0.5, 9), [], "9 channels"),
    "gap outside": (good, ["--gap", "0.5-1:00"], "outside the 1.00 s recording"),
    "gap zero length": (good, ["--gap", "0.5-0.5"], "zero-length"),
    "mask label outside": (good, ["--mask", "{dir}/labels.txt"], "outside"),
    "mask zero-length label": (good, ["--mask", "{dir}/points.txt"], "zero-length"),
    "unknown task": (good, ["--task", "denoising"], "--task"),
    "unknown prior": (good, ["--prior", "no-such-prior"], "no-such-prior"),
    "segment too long": (good, ["--segment", "60"], "--segment"),
    "overlap too long": (good, ["--overlap", "4"], "--overlap"),
    "bad out rate": (good, ["--out-rate", "5"], "--out-rate"),
}


@pytest.mark.parametrize("case", list(INPUTS))
def test_bad_input_is_one_line_exit_2_no_output(case: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    make, extra, named = INPUTS[case]
    (tmp_path / "labels.txt").write_text("0.2\t0.3\tok\n0.9\t1.5\tpast the end\n")
    (tmp_path / "points.txt").write_text("0.2\t0.2\tpoint label\n")
    source = make(tmp_path / "in.wav")
    out = tmp_path / "out"
    args = ["restore", str(source), "--task", "inpainting", "--gap", "0.2:0.3", "-o",
            str(out / "x.wav"), *FAST]
    code = main(args + [a.format(dir=tmp_path) for a in extra])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("diffmusic: error: ") and named in lines[0]
    assert not out.exists()


def test_output_equal_to_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    song = good(tmp_path / "song.wav")
    before = song.read_bytes()
    assert main(["restore", str(song), "--task", "inpainting", "--gap", "0.2:0.3", "-o",
                 str(tmp_path / "." / "song.wav"), *FAST]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    # a folder restored into itself
    assert main(["restore", str(tmp_path), "--task", "inpainting", "--gap", "0.2:0.3", "-o",
                 str(tmp_path), *FAST]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert song.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "song.wav"]


@pytest.mark.parametrize("fail_on", ["audio", "json"])
def test_full_disk_leaves_no_partial_output(fail_on: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    song = good(tmp_path / "song.wav")
    if fail_on == "audio":
        def full(*args: object, **kwargs: object) -> None:
            Path(args[0]).write_bytes(b"half a file")  # the writer got part of the way
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(sf, "write", full)
    else:
        def full_json(path: object, data: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr("diffmusic.cli.restore.write_json", full_json)
    out = tmp_path / "out"
    code = main(["restore", str(song), "--task", "inpainting", "--gap", "0.2:0.3", "-o",
                 str(out / "fixed.wav"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert not out.exists()  # neither the audio, nor the record, a temp file or the folder


OPTIONS = st.lists(st.sampled_from([
    ["--task", "inpainting"], ["--task", "super_resolution"], ["--task", "dereverberation"],
    ["--task", "bogus"], ["--gap", "0.1:0.2"], ["--gap", "0:01-0:02"], ["--gap", "9:10"],
    ["--gap", "x"], ["--factor", "4"], ["--rt60", "0.3"], ["--rt60", "-1"], ["--segment", "1"],
    ["--segment", "0"], ["--overlap", "0.25"], ["--overlap", "nan"], ["--channels", "mid-side"],
    ["--out-rate", "8000"], ["--out-rate", "0"], ["--mask-type", "periodic"], ["--steps", "1"],
    ["--sampler", "ddim"], ["--gamma", "0.5"], ["--step", "0.1"], ["--eta", "2"],
    ["--no-projection"], ["--cfg", "-1"], ["--overwrite"], ["--sources", "a,b"],
    ["--seed", "3"]]), max_size=5)


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(options=OPTIONS, content=st.one_of(st.binary(max_size=600), st.just(b"good")),
       channels=st.integers(1, 3))
def test_random_options_and_bytes_never_crash_or_leave_partial_files(
        options: list[list[str]], content: bytes, channels: int,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    source = folder / "in.wav"
    if content == b"good":
        good(source, 0.3, channels)
    else:
        source.write_bytes(content)
    out = folder / "out" / "x.wav"
    # 2 steps unless the drawn options say otherwise ("--steps 1" comes after, and wins)
    code = main(["restore", str(source), "-o", str(out), "--prior", "tiny", "--steps", "2",
                 "--quiet", *[a for option in options for a in option]])
    assert code in (0, 2)
    written = sorted(p.name for p in (folder / "out").rglob("*")) if out.parent.exists() else []
    if code == 0:
        assert written == ["x.json", "x.wav"]
        assert np.isfinite(sf.read(out)[0]).all()
    else:
        assert written == []


def _silent(path: Path) -> Path:
    return write_samples(np.zeros(RATE, np.float32))(path)


def _truncated_measurement(folder: Path) -> Path:
    main(["degrade", str(good(folder / "clean_in.wav")), "--task", "inpainting", "--gap",
          "0.2:0.3", "--duration", "1", "-o", str(folder / "meas"), "--quiet"])
    truncated_copy = (folder / "meas" / "measurement.wav").read_bytes()
    (folder / "meas" / "measurement.wav").write_bytes(truncated_copy[: len(truncated_copy) // 2])
    return folder / "meas"


FAULTS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "seed beyond 64 bits": (lambda d: ["restore", str(good(d / "in.wav")), "--task",
                                       "inpainting", "--gap", "0.2:0.3", "--seed", str(2**70)],
                            "--seed"),
    "more steps than the schedule": (lambda d: ["restore", str(good(d / "in.wav")), "--task",
                                                "inpainting", "--gap", "0.2:0.3", "--steps",
                                                "100000"], "--steps 100000"),
    "guidance scale below 1": (lambda d: ["restore", str(good(d / "in.wav")), "--task",
                                          "inpainting", "--gap", "0.2:0.3", "--cfg", "0.5"],
                               "--cfg must be 1"),
    "silent impulse response": (lambda d: ["restore", str(good(d / "in.wav")), "--task",
                                           "dereverberation", "--rir", str(_silent(d / "h.wav"))],
                                "silent"),
    "rt60 of 1000 s": (lambda d: ["restore", str(good(d / "in.wav")), "--task",
                                  "dereverberation", "--rt60", "1000"], "rt60 must be between"),
    "phase retrieval of a wav": (lambda d: ["restore", str(good(d / "in.wav")), "--task",
                                            "phase_retrieval"], "not a .npy array"),
    "truncated measurement.wav": (lambda d: ["restore", str(_truncated_measurement(d))],
                                  "truncated WAV"),
    "degrade a silent file": (lambda d: ["degrade", str(_silent(d / "in.wav")), "--task",
                                         "inpainting"], "silent"),
    "degrade for 1e9 s": (lambda d: ["degrade", str(good(d / "in.wav")), "--task",
                                     "inpainting", "--duration", "1e9"], "memory"),
    "degrade with a huge seed": (lambda d: ["degrade", str(good(d / "in.wav")), "--task",
                                            "inpainting", "--seed", str(2**70)], "--seed"),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_faults_are_one_line_exit_2_no_output(case: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    make, named = FAULTS[case]
    args = make(tmp_path)
    capsys.readouterr()
    out = tmp_path / "out"
    target = out / ("m" if args[0] == "degrade" else "x.wav")
    code = main([*args, "-o", str(target), *(FAST[:2] if args[0] == "restore" else []),
                 "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("diffmusic: error: ") and named in lines[0]
    assert "pickle" not in lines[0]
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   sf.LibsndfileError(2, "Error writing: ")])
def test_degrade_onto_a_full_disk_is_one_line_and_leaves_nothing(
        error: Exception, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    song = good(tmp_path / "song.wav")

    def full(path: object, *args: object, **kwargs: object) -> None:
        Path(str(path)).write_bytes(b"part of a measurement")
        raise error
    monkeypatch.setattr(sf, "write", full)
    code = main(["degrade", str(song), "--task", "inpainting", "--gap", "0.2:0.3", "-o",
                 str(tmp_path / "meas"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot write" in err, err
    assert not (tmp_path / "meas").exists()
