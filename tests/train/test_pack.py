"""Latent packs: a pack round-trips, and the noise predictor trains from it, resumes from its
checkpoint, and continues from audio crops on the same checkpoint."""

import json
import os
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
from signals import music_like

from diffmusic.names import SAMPLE_RATE
from diffmusic.train import diffusion
from diffmusic.train.export import EMBEDDED
from diffmusic.train.loop import Checkpoint
from diffmusic.train.pack import HEADER_BYTES, LatentPack, crops_that_fit, save_pack

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(root: Path) -> Path:
    """Two training files and one validation file of music-like audio (6 s), dated in the past
    (the crop sampler skips files written in the last 20 s)."""
    for split, seeds in (("train", (0, 1)), ("valid", (2,))):
        folder = root / "music" / split
        folder.mkdir(parents=True)
        for seed in seeds:
            path = folder / f"pkg__t{seed}.wav"
            sf.write(path, music_like(seed, n=6 * SAMPLE_RATE).numpy(), SAMPLE_RATE)
            os.utime(path, (time.time() - 60, time.time() - 60))
    return root


def test_a_pack_round_trips(tmp_path):
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(5, 8, 4, 16, generator=generator)
    labels = torch.tensor([0, 0, 2, 0, 2])
    path = tmp_path / "p.safetensors"
    size = save_pack(path, latents, labels, latents[:2], {"crop_samples": 640})
    pack = LatentPack(path)
    assert torch.equal(pack.latents, latents.half()) and torch.equal(pack.labels, labels)
    assert torch.equal(pack.validation(), latents[:2].half().float())
    assert pack.info["crop_samples"] == 640 and pack.refresh() == 5
    assert size <= HEADER_BYTES + 7 * (2 * 8 * 4 * 16 + 8)
    z, y = pack.batch(64, generator, {0: 0.5, 2: 0.5, 3: 1.0})  # class 3: none in the pack
    assert z.dtype == torch.float32 and z.shape == (64, 8, 4, 16)
    assert set(y.tolist()) == {0, 2}
    for zi, yi in zip(z, y, strict=True):  # every latent is one of its class
        assert any(torch.equal(zi, latents[k].half().float()) for k in range(5) if labels[k] == yi)
    assert crops_that_fit(1.0, (8, 128, 16), 8) == (1_000_000 - HEADER_BYTES - 8 * 32768) // 32776


def test_a_run_from_a_pack_resumes_and_continues_from_audio(tmp_path):
    data, runs = _data(tmp_path / "data"), tmp_path / "runs"
    info = diffusion.write_pack(data, runs, runs / "pack.safetensors", megabytes=0.2,
                                init=EMBEDDED, batch=2)
    pack = LatentPack(runs / "pack.safetensors")
    assert info["crops"] == len(pack.latents) == crops_that_fit(0.2, (8, 128, 16), 1) > 0
    assert (runs / "pack.safetensors").stat().st_size <= 0.2e6
    assert set(pack.labels.tolist()) == {0} and pack.valid.shape == (1, 8, 128, 16)
    shipped = json.loads((EMBEDDED / "config.json").read_text())
    assert pack.info["latent_stats"] == shipped["unet"]["latent_stats"]

    options = {"minutes": 10, "batch": 2, "init": EMBEDDED}
    diffusion.run(data, runs, pack=runs / "pack.safetensors", max_steps=2, **options)
    first = Checkpoint(runs / "unet").state()
    assert first["step"] == 2 and first["init"]["steps"] == shipped["unet"]["steps"]
    diffusion.run(data, runs, pack=runs / "pack.safetensors", max_steps=3, **options)
    assert Checkpoint(runs / "unet").state()["step"] == 3
    (runs / "unet" / "checkpoint" / "optimizer.pt").unlink()  # as a GPU run's comes back
    diffusion.run(data, runs, max_steps=4, **options)  # from audio crops, the same checkpoint
    state = Checkpoint(runs / "unet").state()
    assert state["step"] == 4 and state["warmup_from"] == 3
    valid = (runs / "unet" / "valid.csv").read_text().splitlines()
    assert valid[0] == "step,mse" and [r.split(",")[0] for r in valid[1:]] == ["2", "3", "4"]
    mse = [float(r.split(",")[1]) for r in valid[1:]]
    assert mse[2] == pytest.approx(mse[1], rel=0.05)  # the same clip, packed or encoded
