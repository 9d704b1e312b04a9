"""Vocoder stage: :class:`~diffmusic.priors.vocos.VocosVocoder` on random 1 s music crops.

Losses (no adversary): multi-resolution STFT losses, each the sum of spectral convergence (loud
bins), an L1 distance of log-magnitudes floored at 1e-5 (quiet bins, which the protocol LSD
weighs as much as loud ones), plus an L1 distance of the AudioLDM log-mels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from diffmusic.dsp import MelConfig, log_mel, stft
from diffmusic.priors.vocos import VocosConfig, VocosVocoder
from diffmusic.train.datasets import CropSampler, train_stage

VOCODER_CONFIG = VocosConfig(width=192, intermediate=384, num_blocks=6, n_fft=640)
RESOLUTIONS = ((256, 64), (512, 128), (1024, 160), (2048, 512))
"""(n_fft, hop) pairs of the multi-resolution STFT loss."""


def stft_losses(wave: Tensor, target: Tensor,
                resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS) -> dict[str, Tensor]:
    """Spectral convergence and log-magnitude L1, averaged over resolutions.

    Args:
        wave: Predicted waveform, shape ``(B, N)``.
        target: Reference waveform, shape ``(B, N)``.
        resolutions: ``(n_fft, hop)`` pairs.

    Returns:
        ``{"sc": ..., "logmag": ...}`` scalars.
    """
    sc, logmag = wave.new_zeros(()), wave.new_zeros(())
    for n_fft, hop in resolutions:
        pred = stft(wave, n_fft, hop).abs()
        ref = stft(target, n_fft, hop).abs()
        sc = sc + torch.linalg.norm(ref - pred) / torch.linalg.norm(ref).clamp_min(1e-5)
        logmag = logmag + (torch.log(pred.clamp_min(1e-5)) - torch.log(ref.clamp_min(1e-5))
                           ).abs().mean()
    return {"sc": sc / len(resolutions), "logmag": logmag / len(resolutions)}


def vocoder_losses(model: VocosVocoder, wave: Tensor, mel_cfg: MelConfig) -> dict[str, Tensor]:
    """All vocoder losses for a batch of clean crops ``(B, N)``, ``N`` a multiple of the hop."""
    mel = log_mel(wave, mel_cfg)
    pred = model(mel)
    losses = stft_losses(pred, wave)
    losses["mel"] = (log_mel(pred, mel_cfg) - mel).abs().mean()
    losses["loss"] = losses["sc"] + losses["logmag"] + losses["mel"]
    return losses


def run(data: Path, runs: Path, minutes: float, seed: int = 0, batch: int = 16,
        seconds: float = 1.0, lr: float = 5e-4) -> dict:
    """Train (or resume training) the vocoder.

    Args:
        data: Data root with ``music/{train,valid}``.
        runs: Runs root; this stage writes ``runs/vocoder``.
        minutes: Time budget of this invocation.
        seed: Data seed (first run only).
        batch: Crops per step.
        seconds: Crop length in seconds.
        lr: Learning rate.
    """
    mel_cfg = MelConfig()
    length = int(seconds * mel_cfg.sample_rate) // mel_cfg.hop_length * mel_cfg.hop_length
    sampler = CropSampler(data, "train", length)
    print(f"vocoder: {len(sampler.sources)} files, {sampler.hours():.2f} h", flush=True)
    torch.manual_seed(seed)
    model = VocosVocoder(VOCODER_CONFIG)

    def step(generator: torch.Generator) -> dict[str, Tensor]:
        wave, _ = sampler.batch(batch, generator)
        return vocoder_losses(model, wave, mel_cfg)

    def losses(emas: dict, clips: Tensor) -> dict[str, Tensor]:
        return vocoder_losses(emas["vocoder"], clips, mel_cfg)

    return train_stage("vocoder", data, runs, sampler, {"vocoder": model}, step, losses, minutes,
                       lr, seed, config=VOCODER_CONFIG.to_dict(), batch=batch,
                       crop_samples=length)
