"""The benchmark: clip rule, jobs, the resumable store, scoring, tables and a killed run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from diffmusic.bench.datasets import audio_clips, stem_clips, window_start
from diffmusic.bench.jobs import group, plan, split_task, task_methods, variant
from diffmusic.bench.run import make_operator
from diffmusic.bench.store import Store
from diffmusic.bench.tables import paired_differences, summarise, write_tables

RATE = 16000
CLIP = 1.28
N = 20480


def _write(path: Path, wave: torch.Tensor, rate: int = RATE, subtype: str = "PCM_16") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.numpy(), rate, subtype=subtype)


def _noise(seed: int, shape: int | tuple[int, ...]) -> torch.Tensor:
    return 0.1 * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_window_starts_at_the_offset_or_centres_a_short_track() -> None:
    assert window_start(200.0, 5.12) == 30.0
    assert window_start(10.0, 5.12) == pytest.approx(2.44)
    assert window_start(3.0, 5.12) == 0.0


def test_audio_clips_resample_downmix_and_cut_the_window(tmp_path: Path) -> None:
    _write(tmp_path / "b.wav", _noise(0, (44100 * 3, 2)), 44100)
    _write(tmp_path / "a.wav", _noise(1, RATE * 32), subtype="FLOAT")
    clips = audio_clips(tmp_path, seconds=CLIP)
    assert [c.name for c in clips] == ["a", "b"]
    assert all(c.wave.shape == (N,) for c in clips)
    assert clips[0].start == 30.0 and clips[1].start == pytest.approx((3 - CLIP) / 2)
    expected = _noise(1, RATE * 32)[30 * RATE: 30 * RATE + N]
    assert torch.allclose(clips[0].wave, expected, atol=1e-6)
    assert len(audio_clips(tmp_path, seconds=CLIP, limit=1)) == 1


def test_stem_clips_skip_songs_missing_a_stem(tmp_path: Path) -> None:
    for song, stems in (("s1", ("vocals", "drums", "bass", "other")), ("s2", ("vocals",))):
        for k, stem in enumerate(stems):
            _write(tmp_path / song / f"{stem}.wav", _noise(k, RATE * 2))
    clips = stem_clips(tmp_path, seconds=CLIP)
    assert [c.name for c in clips] == ["s1"]
    assert clips[0].wave.shape == (4, N)
    assert clips[0].sources == ("vocals", "drums", "bass", "other")


def test_plan_runs_baselines_once_and_pairs_the_raw_diffmusic_run() -> None:
    jobs = plan({"inpainting": ["c"]}, ["zero_fill", "diffmusic", "diffmusic_raw", "dps"], 2)
    assert sum(j.method == "zero_fill" for j in jobs) == 1
    assert len(jobs) == 1 + 3 * 2
    groups = group(jobs)
    pairs = [sorted(j.method for j in g) for g in groups if len(g) == 2]
    assert pairs == [["diffmusic", "diffmusic_raw"]] * 2
    assert len(groups) == 1 + 2 * 2


def test_store_keeps_one_row_per_job(tmp_path: Path) -> None:
    row = {"clip": "c", "task": "inpainting", "method": "zero_fill", "seed": 0, "lsd": 1.0,
           "settings": {"x": 1}}
    with Store(tmp_path / "r.sqlite") as store:
        assert store.add(row)
        assert not store.add({**row, "lsd": 2.0})
        assert store.done() == {("c", "inpainting", "zero_fill", 0)}
        store.add_embedding(("c", "inpainting", "zero_fill", 0), "e", np.ones((3, 4)))
        assert store.embeddings("e", "inpainting", "zero_fill")[("c", 0)].shape == (3, 4)
        store.set_metric("inpainting", "zero_fill", "FAD-e", 0.5, 2, {})
        lines = write_tables(store, tmp_path)
    assert lines[0]["lsd"] == 1.0 and lines[0]["FAD-e"] == 0.5
    assert "| inpainting | zero_fill | 1 | 1.000 |" in (tmp_path / "table.md").read_text()


def test_separation_scores_leave_silent_stems_out() -> None:
    ref = torch.stack([_noise(0, N), _noise(1, N), torch.zeros(N)])
    clip = type("C", (), {"wave": ref, "sources": ("a", "b", "c")})()
    op = make_operator("source_separation", clip)
    y = op(ref[None])[0]
    row = op.score(ref + 1e-3 * torch.randn(3, N), ref, y)
    assert row["si_sdr"] > 30 and row["si_sdri"] > 30
    assert not row["stems"]["c"]["active"] and row["stems"]["a"]["active"]


def test_super_resolution_scores_lsd_above_the_low_rate_nyquist() -> None:
    ref = _noise(3, N)
    clip = type("C", (), {"wave": ref, "sources": ()})()
    op = make_operator("super_resolution", clip)
    row = op.score(op.baseline(op(ref[None]))[0], ref, op(ref[None])[0])
    assert row["lsd_hf"] > row["lsd"] > 0


def test_task_variants_name_their_options_and_build_their_operators() -> None:
    name = variant("inpainting", gap_length=0.25)
    assert name == "inpainting[gap_length=0.25]"
    assert split_task(name) == ("inpainting", {"gap_length": 0.25})
    assert split_task("inpainting") == ("inpainting", {})
    assert task_methods(name) == task_methods("inpainting")
    clip = type("C", (), {"wave": _noise(1, N), "sources": ()})()
    (gap,) = make_operator(name, clip).gaps
    assert gap[1] - gap[0] == pytest.approx(0.25)
    assert sum(gap) / 2 == pytest.approx(sum(make_operator("inpainting", clip).gaps[0]) / 2)
    coloured = variant("denoising", snr=10, noise="pink")
    assert coloured == "denoising[snr=10;noise=pink]"
    assert split_task(coloured) == ("denoising", {"snr": 10, "noise": "pink"})
    assert make_operator(coloured, clip).noise == "pink"
    for bad in ("painting", "inpainting[factor=2]", "inpainting[gap_length=0.5",
                "denoising[noise=pink noise]"):
        with pytest.raises(ValueError):
            split_task(bad)


def test_paired_differences_against_the_best_other_method(tmp_path: Path) -> None:
    with Store(tmp_path / "r.sqlite") as store:
        for i, (ctx, dm) in enumerate([(0.5, 0.4), (0.6, 0.4), (0.7, 0.7)]):
            for method, value in (("context_copy", ctx), ("zero_fill", 2.0), ("diffmusic", dm)):
                store.add({"clip": f"c{i}", "task": "inpainting", "method": method, "seed": 0,
                           "lsd": value, "settings": {}})
        (pair,) = paired_differences(store, summarise(store), ["lsd"])
    assert pair["rival"] == "context_copy" and pair["clips"] == 3 and pair["better"]
    assert pair["difference"] == pytest.approx(-0.1)
    assert pair["se"] == pytest.approx(float(np.std([-0.1, -0.2, 0.0], ddof=1) / np.sqrt(3)))


def _bench(data: Path, out: Path, *options: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "diffmusic.cli", "bench", str(data), "-o", str(out), "-q",
           "--clip-seconds", str(CLIP), "--steps", "2", "--tasks", "inpainting",
           "--embedding", "none", "--methods", "zero_fill,context_copy,diffmusic,diffmusic_raw",
           *options]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})


def _rows(out: Path) -> list[tuple]:
    path = out / "results.sqlite"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT clip, task, method, seed FROM results").fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return []


@pytest.mark.slow
def test_a_killed_run_resumes_in_two_workers_with_exactly_one_row_per_job(tmp_path: Path) -> None:
    for i in range(2):
        _write(tmp_path / "data" / f"clip{i}.wav", _noise(i, RATE * 2))
    out = tmp_path / "out"
    proc = _bench(tmp_path / "data", out)
    deadline = time.monotonic() + 120
    while not _rows(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    landed = _rows(out)
    assert 0 < len(landed) < 8, "the kill should land between the first row and the last"
    proc = _bench(tmp_path / "data", out, "--workers", "2")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    rows = _rows(out)
    assert len(rows) == len(set(rows)) == 8  # 2 clips x (2 baselines + diffmusic + raw)
    assert set(landed) <= set(rows)
    table = (out / "table.md").read_text()
    assert "diffmusic_raw" in table and (out / "spectrograms_inpainting.png").is_file()


def _songs(folder: Path, seed: int, count: int = 1) -> Path:
    for song in range(count):
        for k, stem in enumerate(("vocals", "drums", "bass", "other")):
            _write(folder / f"song{song}" / f"{stem}.wav", _noise(seed + 10 * song + k, N // 2))
    return folder


@pytest.mark.slow
def test_tune_picks_a_step_size_on_the_validation_split_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffmusic.bench import tune
    from diffmusic.bench.main import bench
    from diffmusic.bench.options import BenchOptions
    from diffmusic.restoration.tuned import load_tuned

    monkeypatch.setattr(tune, "GRID", {"mpgd": (0.5, 2.0), "dps": (1.0,)})
    monkeypatch.setattr(tune, "GUIDANCE", {"source_separation": (3.0,)})
    monkeypatch.setattr(tune, "WARM_START", (0.5,))
    monkeypatch.setattr(tune, "ETA", (0.0, 1.0))
    _write(tmp_path / "valid" / "v.wav", _noise(5, N // 2))
    _write(tmp_path / "test" / "t.wav", _noise(6, N // 2))
    out = tmp_path / "out"
    bench(BenchOptions(data=tmp_path / "test", out=out, tune_data=tmp_path / "valid",
                       stems=_songs(tmp_path / "test_songs", 7),
                       tune_stems=_songs(tmp_path / "valid_songs", 8),
                       tasks=["inpainting", "source_separation"],
                       methods=["zero_fill", "mpgd", "dps"],
                       steps=2, clip_seconds=CLIP / 2, embedding="none", quiet=True))
    tuned = json.loads((out / "tuned.json").read_text())
    assert tuned["prior"] == "embedded"
    assert tuned["metric"] == {"inpainting": "lsd", "source_separation": "si_sdr"}
    for task, pick in (("inpainting", min), ("source_separation", max)):
        scores = tuned["scores"][task]["mpgd"]
        assert set(scores) == {"0.5", "2.0"}
        assert tuned["per_task"][task]["mpgd"]["gamma"] == float(pick(scores, key=scores.get))
    # separation then tries guidance scales at its chosen step size
    sep = tuned["per_task"]["source_separation"]["mpgd"]
    by_scale = tuned["scores"]["source_separation"][f"mpgd guidance_scale at gamma={sep['gamma']}"]
    assert by_scale["1.0"] == tuned["scores"]["source_separation"]["mpgd"][str(sep["gamma"])]
    assert set(by_scale) == {"1.0", "3.0"}
    assert sep.get("guidance_scale", 1.0) == float(max(by_scale, key=by_scale.get))
    assert "guidance_scale" not in tuned["per_task"]["inpainting"]["mpgd"]
    # every task then tries a warm start at the choices made so far
    inpainting = tuned["per_task"]["inpainting"]["mpgd"]
    gamma = inpainting["gamma"]
    by_start = tuned["scores"]["inpainting"][f"mpgd warm_start at gamma={gamma}"]
    assert by_start["1.0"] == tuned["scores"]["inpainting"]["mpgd"][str(gamma)]
    assert set(by_start) == {"1.0", "0.5"}
    assert inpainting.get("warm_start", 1.0) == float(min(by_start, key=by_start.get))
    # the default sampler of each task is the one whose choices scored best
    for task, pick in (("inpainting", min), ("source_separation", max)):
        by_sampler = tuned["scores"][task]["default sampler"]
        assert set(by_sampler) == {"mpgd", "dps"}
        assert tuned["default_sampler"][task] == pick(by_sampler, key=by_sampler.get)
    sep_at = ", ".join(f"{k}={v}" for k, v in sep.items() if k not in ("warm_start", "eta"))
    assert set(tuned["scores"]["source_separation"][f"mpgd warm_start at {sep_at}"]) == {
        "1.0", "0.5"}
    # and last the DDIM noise, from the sampler's own default (MPGD: 0)
    before_eta = {k: v for k, v in inpainting.items() if k != "eta"}
    by_eta = tuned["scores"]["inpainting"][
        "mpgd eta at " + ", ".join(f"{k}={v}" for k, v in before_eta.items())]
    assert set(by_eta) == {"0.0", "1.0"}
    assert by_eta["0.0"] == by_start[str(inpainting.get("warm_start", 1.0))]
    assert inpainting.get("eta", 0.0) == float(min(by_eta, key=by_eta.get))
    with Store(out / "results.sqlite") as store:
        rows = [r for r in store.rows() if r["method"] == "mpgd"]
    row = next(r for r in rows if r["task"] == "inpainting")
    assert next(r for r in rows if r["task"] == "source_separation")["settings"][
        "guidance_scale"] == sep.get("guidance_scale", 1.0)
    split = f"{tmp_path / 'valid'}, {tmp_path / 'valid_songs'}"
    assert row["clip"] == "t" and row["settings"]["sampler_settings"]["gamma"] == gamma
    assert row["settings"]["tuned_on"] == split
    assert split in (out / "table.md").read_text()
    assert load_tuned("embedded", out / "tuned.json").kwargs("inpainting", "mpgd") == inpainting


@pytest.mark.slow
def test_a_killed_or_widened_tuning_run_scores_only_what_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffmusic.bench import tune
    from diffmusic.bench.options import BenchOptions
    from diffmusic.bench.run import RunConfig, Runner

    monkeypatch.setattr(tune, "GRID", {"mpgd": (0.5, 2.0), "diffmusic": (1.0, 3.0)})
    monkeypatch.setattr(tune, "WARM_START", ())  # step sizes only: the calls are counted
    monkeypatch.setattr(tune, "ETA", ())
    _write(tmp_path / "valid" / "v.wav", _noise(5, N // 2))
    opts = BenchOptions(data=tmp_path / "test", out=tmp_path / "out", tune_data=tmp_path / "valid",
                        tasks=["inpainting"], methods=["mpgd", "diffmusic"], steps=2,
                        clip_seconds=CLIP / 2, embedding="none", quiet=True)
    opts.out.mkdir()
    calls: list[str] = []
    run = Runner.run

    def counted(self, jobs, clip, reference=False, keywords=None):
        calls.append(jobs[0].method)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during the second sampler
        return run(self, jobs, clip, reference, keywords)

    monkeypatch.setattr(Runner, "run", counted)
    with pytest.raises(KeyboardInterrupt):
        tune.tune(opts, RunConfig(steps=2))
    partial = json.loads((opts.out / "tuned.partial.json").read_text())
    assert list(partial["per_task"]["inpainting"]) == ["mpgd"]
    calls.clear()
    tune.tune(opts, RunConfig(steps=2))
    assert calls == ["diffmusic", "diffmusic"]  # only the unfinished sampler, once per value
    tuned = json.loads((opts.out / "tuned.json").read_text())
    assert set(tuned["per_task"]["inpainting"]) == {"diffmusic", "mpgd"}
    assert tuned["scores"]["inpainting"]["mpgd"] == partial["scores"]["inpainting"]["mpgd"]
    assert not (opts.out / "tuned.partial.json").exists()
    # a wider grid scores only its new values and may pick one of them
    monkeypatch.setattr(tune, "GRID", {"mpgd": (0.5, 2.0, 8.0), "diffmusic": (1.0, 3.0)})
    calls.clear()
    tune.tune(opts, RunConfig(steps=2))
    assert calls == ["mpgd"]
    wider = json.loads((opts.out / "tuned.json").read_text())["scores"]["inpainting"]
    assert set(wider["mpgd"]) == {"0.5", "2.0", "8.0"}
    assert wider["diffmusic"] == tuned["scores"]["inpainting"]["diffmusic"]


@pytest.mark.parametrize("flags", [["--tune-data", "{data}"], ["--tune-data", "{valid}",
                                                                 "--tune-stems", "{data}"]])
def test_tuning_on_the_benchmark_clips_is_refused(tmp_path: Path, flags: list[str]) -> None:
    _write(tmp_path / "data" / "a.wav", _noise(0, N))
    paths = {"data": tmp_path / "data", "valid": tmp_path / "valid"}
    cmd = [sys.executable, "-m", "diffmusic.cli", "bench", str(tmp_path / "data"), "-o",
           str(tmp_path / "out"), "--tune", *[f.format(**paths) for f in flags]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no peeking" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ray_fans_out_the_same_jobs_into_the_same_store(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is part of the test extra")
    _write(tmp_path / "data" / "clip.wav", _noise(0, N))
    cmd = [sys.executable, "-m", "diffmusic.cli", "bench", str(tmp_path / "data"), "-o",
           str(tmp_path / "out"), "-q", "--clip-seconds", str(CLIP), "--embedding", "none",
           "--tasks", "inpainting", "--methods", "zero_fill,context_copy", "--ray", "local"]
    subprocess.run(cmd, check=True, timeout=600)
    assert sorted(r[2] for r in _rows(tmp_path / "out")) == ["context_copy", "zero_fill"]
