"""The ``diffmusic`` command line: degrade/restore round trips, direct restore, errors, demo.

Everything runs on the random-weight ``tiny`` prior with 2 steps and short clips; the prior is
loaded once per process (``cached_prior``), so in-process calls stay fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from signals import music_like

from diffmusic.cli import demo, main
from diffmusic.operators import PhaseRetrieval
from diffmusic.samplers import RHO

RATE = 16000
DURATION = 1.3
"""Seconds of the test clips: 20,800 samples, not a whole number of latent frames (640)."""
LENGTH = round(DURATION * RATE)
FAST = ["--prior", "tiny", "--steps", "2", "--quiet"]
TASK_ARGS = {"inpainting": ["--gap", "0.5:0.75"], "super_resolution": ["--factor", "4"],
             "phase_retrieval": [], "source_separation": [], "dereverberation": ["--rt60", "0.3"],
             "declipping": ["--input-sdr", "3"], "denoising": ["--snr", "10", "--noise", "pink"]}


def write_wav(path: Path, wave: torch.Tensor) -> Path:
    sf.write(path, wave.numpy(), RATE, subtype="FLOAT")
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A song (1.5 s, cut by ``--duration``), stem folders, damaged recordings, garbage."""
    root = tmp_path_factory.mktemp("inputs")
    write_wav(root / "song.wav", music_like(0, n=24000))
    (root / "stems").mkdir()
    write_wav(root / "stems" / "vocals.wav", music_like(1, n=LENGTH))
    write_wav(root / "stems" / "bass.wav", music_like(2, n=LENGTH // 2))
    (root / "one_stem").mkdir()
    write_wav(root / "one_stem" / "drums.wav", music_like(4, n=LENGTH))
    damaged = music_like(3, n=17600)
    damaged[8000:11200] = 0
    write_wav(root / "damaged.wav", damaged)
    (root / "garbage.wav").write_bytes(b"RIFF\x00\x01garbage, not audio" * 40)
    np.save(root / "magnitude.npy", PhaseRetrieval(RATE, 17600)(damaged[None])[0].numpy())
    sf.write(root / "low.wav", music_like(5, n=4400, rate=4000).numpy(), 4000, subtype="FLOAT")
    sf.write(root / "short.wav", music_like(6, n=RATE // 10).numpy(), RATE, subtype="FLOAT")
    return root


def run(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    """Run ``diffmusic ARGS`` in-process; return the exit status and stderr."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("task", list(TASK_ARGS))
def test_degrade_restore_round_trip(task: str, inputs: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    separation = task == "source_separation"
    source = inputs / ("stems" if separation else "song.wav")
    meas = tmp_path / "meas"
    code, err = run(capsys, "degrade", source, "--task", task, "-o", meas,
                    "--duration", DURATION, "--seed", 3, *TASK_ARGS[task])
    assert code == 0, err
    info = json.loads((meas / "measurement.json").read_text())
    assert info["task"] == task and info["operator"]["task"] == task
    assert info["sample_rate"] == RATE and info["length"] == LENGTH and info["seed"] == 3
    assert info["input"] == str(source.resolve())
    assert info["operator"]["num_samples"] % 640 == 0
    assert (meas / info["measurement"]).is_file()
    if separation:
        assert info["operator"]["sources"] == ["vocals", "bass"]
        assert sorted(info["clean"]) == ["bass", "vocals"]
    else:
        assert sf.info(meas / "clean.wav").frames == LENGTH
    if task == "phase_retrieval":
        assert np.load(meas / "measurement.npy").shape[0] == 513
    elif task == "super_resolution":
        assert sf.info(meas / "measurement.wav").samplerate == RATE // 4

    out = tmp_path / ("restored" if separation else "restored.wav")
    began = time.perf_counter()
    code, err = run(capsys, "restore", meas, "-o", out, *FAST, "--seed", 7)
    wall = time.perf_counter() - began
    assert code == 0, err
    files = [out / "vocals.wav", out / "bass.wav"] if separation else [out]
    for path in files:
        wave, rate = sf.read(path)
        assert rate == RATE and wave.shape == (LENGTH,) and np.isfinite(wave).all()
    record = json.loads((out / "restore.json" if separation else out.with_suffix(".json"))
                        .read_text())
    assert record["seed"] == 7 and record["steps"] == 2 and record["sampler"] == "diffmusic"
    assert record["length"] == LENGTH and record["padded_length"] % 640 == 0
    # the sampler's own wall-clock time: a part of the whole call's
    assert isinstance(record["seconds"], float) and 0 < record["seconds"] < wall
    assert len(record["final_loss"]) == 1
    assert record["operator"]["task"] == task and record["projection"] is True


def test_restore_damaged_file_directly(inputs: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fixed.wav"
    code, err = run(capsys, "restore", inputs / "damaged.wav", "--task", "inpainting",
                    "--gap", "0.5:0.7", "-o", out, *FAST)
    assert code == 0, err
    fixed, rate = sf.read(out, dtype="float32")
    damaged, _ = sf.read(inputs / "damaged.wav", dtype="float32")
    assert rate == RATE and fixed.shape == damaged.shape == (17600,)
    # The projection keeps the known samples away from the 5 ms crossfades at the gap edges.
    np.testing.assert_allclose(fixed[:7800], damaged[:7800], atol=1e-6)
    np.testing.assert_allclose(fixed[11400:], damaged[11400:], atol=1e-6)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["padded_length"] == 17920 and record["operator"]["gaps"] == [[0.5, 0.7]]


def inpainting_record(capsys: pytest.CaptureFixture, inputs: Path, tmp_path: Path,
                      args: list[str]) -> dict:
    """The JSON record of restoring the damaged file's gap with extra CLI ``args``."""
    out = tmp_path / "fixed.wav"
    code, err = run(capsys, "restore", inputs / "damaged.wav", "--task", "inpainting",
                    "--gap", "0.5:0.7", "-o", out, *args, *FAST)
    assert code == 0, err
    return json.loads(out.with_suffix(".json").read_text())


@pytest.mark.parametrize(("args", "settings"), [
    (["--step", "0.2"], {"rho": 0.2, "gamma": None, "eta": 1.0}),
    (["--gamma", "3000", "--eta", "0"], {"gamma": 3000.0, "eta": 0.0, "rho": None}),
    (["--sampler", "dsg", "--step", "0.3"], {"guidance_rate": 0.3}),
    (["--warm-start", "0.5"], {"warm_start": 0.5}),
])
def test_step_options_reach_the_sampler(args: list[str], settings: dict, inputs: Path,
                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recorded = inpainting_record(capsys, inputs, tmp_path, args)["settings"]
    assert {k: recorded.get(k) for k in settings} == settings


@pytest.mark.parametrize(("flag", "target"), [([], -20.0), (["--level", "-30"], -30.0),
                                             (["--level", "off"], None)])
def test_level_option_is_recorded(flag: list[str], target: float | None, inputs: Path,
                                  tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    level = inpainting_record(capsys, inputs, tmp_path, flag)["level"]
    assert level["target_dbfs"] == target and (target is not None or level["gain_db"] == [0.0])


@pytest.mark.parametrize(("task", "name", "args"), [
    ("phase_retrieval", "magnitude.npy", []),
    ("super_resolution", "low.wav", ["--factor", "4"]),
])
def test_restore_other_measurement_files_directly(task: str, name: str, args: list[str],
                                                  inputs: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fixed.wav"
    code, err = run(capsys, "restore", inputs / name, "--task", task, *args, "-o", out, *FAST)
    assert code == 0, err
    info = sf.info(out)
    assert info.samplerate == RATE and info.frames == 17600  # 1.1 s, padded to 17,920 inside
    assert json.loads(out.with_suffix(".json").read_text())["padded_length"] == 17920


def test_measurement_folder_takes_segment_and_overlap(inputs: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    meas = tmp_path / "meas"
    code, err = run(capsys, "degrade", inputs / "song.wav", "--task", "dereverberation", "-o",
                    meas, "--duration", DURATION)
    assert code == 0, err
    out = tmp_path / "dry.wav"
    code, err = run(capsys, "restore", meas, "-o", out, "--segment", 0.64, "--overlap", 0.1,
                    *FAST)
    assert code == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert [w["start"] for w in record["windows"]] == [0, 8320, 10880]
    assert sf.info(out).frames == LENGTH
    for flag, value in [("--segment", 60), ("--overlap", 3)]:
        code, err = run(capsys, "restore", meas, "-o", tmp_path / "bad.wav", flag, value, *FAST)
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"diffmusic: error: {flag}")
    assert not (tmp_path / "bad.wav").exists()


ERRORS = {
    "missing file": (["restore", "{in}/missing.wav", "--task", "inpainting"], "missing.wav"),
    "gap outside": (["restore", "{in}/damaged.wav", "--task", "inpainting", "--gap", "0.5:9"],
                    "--gap"),
    "reversed gap": (["restore", "{in}/damaged.wav", "--task", "inpainting", "--gap", "3:2"],
                     "--gap"),
    "unknown task": (["degrade", "{in}/song.wav", "--task", "upmixing"], "--task"),
    "one step": (["restore", "{in}/damaged.wav", "--task", "inpainting", "--steps", "1"],
                 "--steps"),
    "garbage wav": (["restore", "{in}/garbage.wav", "--task", "inpainting"], "garbage.wav"),
    "option of another task": (["degrade", "{in}/song.wav", "--task", "inpainting",
                                "--factor", "4"], "--factor"),
    "unknown prior": (["restore", "{in}/damaged.wav", "--task", "inpainting", "--gap", "0.1:0.2",
                       "--prior", "no-such-prior"], "no-such-prior"),
    "one stem": (["degrade", "{in}/one_stem", "--task", "source_separation"], "at least two"),
    "gamma of another sampler": (["restore", "{in}/damaged.wav", "--task", "inpainting",
                                  "--sampler", "dps", "--gamma", "2"], "--gamma"),
    "eta out of range": (["restore", "{in}/damaged.wav", "--task", "inpainting", "--eta", "1.5"],
                         "--eta"),
    "warm start out of range": (["restore", "{in}/damaged.wav", "--task", "inpainting",
                                 "--warm-start", "0"], "--warm-start"),
    "positive level": (["restore", "{in}/damaged.wav", "--task", "inpainting", "--level", "3"],
                       "--level"),
    "nothing to declip": (["restore", "{in}/song.wav", "--task", "declipping"], "no clipping"),
    "noise of a 0.1 s file": (["restore", "{in}/short.wav", "--task", "denoising"],
                              "too short to estimate the noise"),
    "noise sample outside": (["restore", "{in}/song.wav", "--task", "denoising",
                              "--noise-sample", "0.2:9"], "noise sample"),
    "noise sample of another task": (["restore", "{in}/song.wav", "--task", "inpainting",
                                      "--noise-sample", "0:0.5"], "--noise-sample"),
    "no cutoff in a full-band file": (["restore", "{in}/song.wav", "--task", "super_resolution"],
                                      "no cutoff found"),
    "cutoff above Nyquist": (["restore", "{in}/song.wav", "--task", "super_resolution",
                              "--cutoff", "9000"], "Nyquist"),
    "factor and cutoff": (["restore", "{in}/song.wav", "--task", "super_resolution",
                           "--factor", "2", "--cutoff", "3000"], "--cutoff"),
    "room of a 0.1 s file": (["restore", "{in}/short.wav", "--task", "dereverberation"],
                             "less than 1 s"),
    "room of another task": (["degrade", "{in}/song.wav", "--task", "inpainting", "--room",
                              "0.5"], "--room"),
    "clip level of another task": (["restore", "{in}/damaged.wav", "--task", "inpainting",
                                    "--clip-level", "0.5"], "--clip-level"),
    "negative input SDR": (["degrade", "{in}/song.wav", "--task", "declipping", "--input-sdr",
                            "-3"], "--input-sdr"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_errors_exit_2_with_one_line(case: str, inputs: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    args, named = ERRORS[case]
    out = tmp_path / "out"
    code, err = run(capsys, *[a.format(**{"in": inputs}) for a in args], "-o", out / "x.wav")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffmusic: error: ") and named in lines[0]
    assert not out.exists()


def test_refuses_to_overwrite_the_input(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    damaged = inputs / "damaged.wav"
    before = damaged.read_bytes()
    code, err = run(capsys, "restore", damaged, "--task", "inpainting", "--gap", "0.5:0.7",
                    "-o", damaged, *FAST)
    assert code == 2 and err.count("\n") == 1 and "would overwrite the input" in err
    assert damaged.read_bytes() == before
    assert not damaged.with_suffix(".json").exists()


def test_malformed_measurement_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "measurement.json").write_text("{not json")
    code, err = run(capsys, "restore", tmp_path, "-o", tmp_path / "out.wav", *FAST)
    assert code == 2 and err.startswith("diffmusic: error: ") and "measurement.json" in err
    assert not (tmp_path / "out.wav").exists()


def test_console_script(inputs: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("diffmusic")
    ok = subprocess.run([script, "degrade", inputs / "song.wav", "--task", "super_resolution",
                         "-o", tmp_path / "meas", "--duration", "1"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "meas" / "measurement.wav").is_file()
    bad = subprocess.run([script, "restore", tmp_path / "nothing", "-o", tmp_path / "x.wav"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("diffmusic: error: ") and bad.stderr.count("\n") == 1


def test_version(capsys: pytest.CaptureFixture) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("diffmusic ")


def test_demo_writes_page_and_spectrograms(tmp_path: Path, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "CLIP_SAMPLES", 48000)  # 3 s (the gap is 2-3 s) to save time
    code, err = run(capsys, "demo", "-o", tmp_path, "--prior", "tiny", "--steps", 2, "--quiet")
    assert code == 0, err
    page = (tmp_path / "index.html").read_text()
    pngs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    sections = [*TASK_ARGS, "super_resolution_cutoff"]
    assert len(pngs) == len(sections) - 1 + 3  # one per single-source section, one per stem
    for png in pngs:
        assert png in page and (tmp_path / png).stat().st_size > 1000
    for name in sections:
        assert (tmp_path / name / "measurement.json").is_file()
    summary = json.loads((tmp_path / "metrics.json").read_text())
    metrics = summary["metrics"]
    assert set(metrics) == set(sections)
    cutoff = json.loads((tmp_path / "super_resolution_cutoff" / "measurement.json").read_text())
    assert cutoff["operator"]["cutoff"] == 3000
    room = json.loads((tmp_path / "dereverberation" / "measurement.json").read_text())
    assert room["operator"]["rt60"] == "blind" and room["operator"]["room"] == 0.5
    assert all(np.isfinite(v) for task in metrics.values() for row in task.values()
               for v in row.values())
    # the settings each task actually ran with (tuned step size, guidance scale): the tiny prior
    # ships no tuned file, so the sampler's own defaults
    assert set(summary["sampler_settings"]) == set(sections)
    assert all(used["guidance_scale"] == 1.0 and used["rho"] == RHO
               for used in summary["sampler_settings"].values())


def test_degrade_writes_measurements_longer_than_a_window_and_restore_takes_them(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_wav(tmp_path / "long.wav", music_like(7, n=100_000))  # 6.25 s
    code, err = run(capsys, "degrade", tmp_path / "long.wav", "--task", "super_resolution",
                    "-o", tmp_path / "meas", "--duration", "6")
    assert code == 0, err
    assert json.loads((tmp_path / "meas" / "measurement.json").read_text())["length"] == 96_000
    code, err = run(capsys, "restore", tmp_path / "meas", "-o", tmp_path / "out.wav",
                    "--segment", "2.56", *FAST)
    assert code == 0, err
    wave, rate = sf.read(tmp_path / "out.wav")
    assert rate == RATE and wave.shape == (96_000,)
    code, err = run(capsys, "degrade", tmp_path / "long.wav", "--task", "inpainting",
                    "-o", tmp_path / "none", "--duration", "0.00001")
    assert code == 2 and "shorter than one sample" in err
