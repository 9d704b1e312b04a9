"""Decoder stage: a :class:`~diffmusic.priors.mel_decoder.SubPixelMelDecoder` for the frozen VAE.

The guided samplers decode and backpropagate through the VAE decoder at every step; this stage
trains the cheaper sub-pixel decoder on the latents of the frozen VAE (``runs/unet``), so the
encoder, the latent space and the noise predictor stay as they are. It starts from the VAE
decoder's coarse levels. Loss per crop: L1 to the log-mel plus L1 to the full decoder's output
(``teacher_weight``), both on posterior samples, which keeps the two decoders close also where
the log-mel alone would not pin the new one down.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import Tensor

from diffmusic.dsp import MelConfig, log_mel
from diffmusic.priors.mel_decoder import MelDecoderConfig, SubPixelMelDecoder
from diffmusic.train.datasets import CropSampler, validation_losses
from diffmusic.train.diffusion import frozen_vae
from diffmusic.train.loop import LoopConfig, train_loop
from diffmusic.train.vae import mel_to_image

DECODER_CONFIG = MelDecoderConfig()
"""Architecture of the shipped decoder."""


def vae_digest(state: dict[str, Tensor]) -> str:
    """SHA-256 of a VAE state dict's float32 values in key order: which VAE a decoder is for."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def decoder_losses(decoder: SubPixelMelDecoder, vae: AutoencoderKL, wave: Tensor,
                   mel_cfg: MelConfig, teacher_weight: float,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Losses of a batch of crops ``(B, N)``, ``N // hop`` divisible by 4.

    Returns:
        ``{"l1": mean |mel - dec(z)|, "teacher": mean |vae.decode(z) - dec(z)|,
        "loss": l1 + teacher_weight * teacher}``; ``z`` is a posterior sample (the mean
        without ``generator``).
    """
    x = mel_to_image(log_mel(wave, mel_cfg))
    with torch.no_grad():
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator) if generator is not None else posterior.mean
        target = vae.decode(z).sample
    rec = decoder(z)
    l1 = (rec - x).abs().mean()
    teacher = (rec - target).abs().mean()
    return {"l1": l1, "teacher": teacher, "loss": l1 + teacher_weight * teacher}


def run(data: Path, runs: Path, minutes: float, seed: int = 0, batch: int = 8,
        seconds: float = 1.28, lr: float = 3e-4, teacher_weight: float = 1.0) -> dict:
    """Train (or resume training) the sub-pixel decoder of the frozen VAE.

    Args:
        data: Data root (music and stems, as for the VAE).
        runs: Runs root; needs the frozen VAE of ``runs/unet``, writes ``runs/decoder``.
        minutes: Time budget of this invocation.
        seed: Data seed (first run only).
        batch: Crops per step.
        seconds: Crop length (rounded to a multiple of 4 mel frames).
        lr: Learning rate.
        teacher_weight: Weight of the L1 term to the full decoder's output.
    """
    mel_cfg = MelConfig()
    unit = 4 * mel_cfg.hop_length
    length = int(seconds * mel_cfg.sample_rate) // unit * unit
    sampler = CropSampler(data, "train", length)
    print(f"decoder: {len(sampler.sources)} files, {sampler.hours():.2f} h", flush=True)
    vae = frozen_vae(runs)
    decoder = SubPixelMelDecoder.from_vae(vae, DECODER_CONFIG)

    def step(generator: torch.Generator) -> dict[str, Tensor]:
        wave, _ = sampler.batch(batch, generator)
        return decoder_losses(decoder, vae, wave, mel_cfg, teacher_weight, generator)

    def losses(emas: dict, clips: Tensor) -> dict[str, Tensor]:
        return decoder_losses(emas["decoder"], vae, clips, mel_cfg, teacher_weight)

    validate = validation_losses(data, sampler, losses)

    cfg = LoopConfig(run_dir=Path(runs) / "decoder", minutes=minutes, lr=lr, seed=seed,
                     extra_state={"config": DECODER_CONFIG.to_dict(), "batch": batch,
                                  "crop_samples": length, "teacher_weight": teacher_weight,
                                  "vae_sha256": vae_digest(vae.state_dict())})
    return train_loop(cfg, {"decoder": decoder}, step, validate)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage-specific command-line options."""
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.28)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--teacher-weight", type=float, default=1.0)
