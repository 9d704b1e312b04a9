"""VAE stage: a small diffusers ``AutoencoderKL``, log-mel ``(B, 1, T, 64)`` -> ``(B, 8, T/4, 16)``.

Same latent geometry as AudioLDM2 (three blocks, two down-samplings, eight latent channels), at a
fraction of the width so that decoding and backpropagating through the decoder inside the guided
sampler stays cheap. Loss: L1 on the log-mel plus a small KL term.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import Tensor

from diffmusic.dsp import MelConfig, log_mel
from diffmusic.train.datasets import CropSampler, train_stage

VAE_CONFIG = {
    "in_channels": 1,
    "out_channels": 1,
    "latent_channels": 8,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [16, 32, 64],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "mid_block_add_attention": False,
    "sample_size": 512,
}
"""Keyword arguments of ``diffusers.AutoencoderKL`` (JSON-ready)."""


def build_vae(config: dict | None = None) -> AutoencoderKL:
    """A fresh ``AutoencoderKL`` with :data:`VAE_CONFIG` (or ``config``)."""
    return AutoencoderKL(**(config or VAE_CONFIG))


def vae_digest(state: dict[str, Tensor]) -> str:
    """SHA-256 of a VAE state dict's float32 values in key order: which VAE a decoder or a latent
    pack is for."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def mel_to_image(mel: Tensor) -> Tensor:
    """Log-mel ``(B, T, n_mels)`` -> VAE input ``(B, 1, T, n_mels)``."""
    return mel[:, None]


def image_to_mel(image: Tensor) -> Tensor:
    """VAE output ``(B, 1, T, n_mels)`` -> log-mel ``(B, T, n_mels)``."""
    return image[:, 0]


def vae_losses(vae: AutoencoderKL, wave: Tensor, mel_cfg: MelConfig, kl_weight: float,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Reconstruction and KL losses of a batch of crops ``(B, N)``, ``N // hop`` divisible by 4.

    Returns:
        ``{"l1": mean |mel - mel_hat|, "kl": KL per latent element, "loss": l1 + w * kl}``.
    """
    x = mel_to_image(log_mel(wave, mel_cfg))
    posterior = vae.encode(x).latent_dist
    z = posterior.sample(generator) if generator is not None else posterior.mean
    rec = vae.decode(z).sample
    l1 = (rec - x).abs().mean()
    kl = 0.5 * (posterior.mean.square() + posterior.var - 1.0 - posterior.logvar).mean()
    return {"l1": l1, "kl": kl, "loss": l1 + kl_weight * kl}


def run(data: Path, runs: Path, minutes: float, seed: int = 0, batch: int = 8,
        seconds: float = 1.28, lr: float = 5e-4, kl_weight: float = 1e-4) -> dict:
    """Train (or resume training) the VAE on log-mels of random crops.

    Args:
        data: Data root (music, and stems when present: the VAE must cover every class).
        runs: Runs root; this stage writes ``runs/vae``.
        minutes: Time budget of this invocation.
        seed: Data seed (first run only).
        batch: Crops per step.
        seconds: Crop length (rounded to a multiple of 4 mel frames).
        lr: Learning rate.
        kl_weight: Weight of the per-element KL term.
    """
    mel_cfg = MelConfig()
    unit = 4 * mel_cfg.hop_length
    length = int(seconds * mel_cfg.sample_rate) // unit * unit
    sampler = CropSampler(data, "train", length)
    print(f"vae: {len(sampler.sources)} files, {sampler.hours():.2f} h", flush=True)
    torch.manual_seed(seed)
    vae = build_vae()

    def step(generator: torch.Generator) -> dict[str, Tensor]:
        wave, _ = sampler.batch(batch, generator)
        return vae_losses(vae, wave, mel_cfg, kl_weight, generator)

    def losses(emas: dict, clips: Tensor) -> dict[str, Tensor]:
        return vae_losses(emas["vae"], clips, mel_cfg, kl_weight)

    return train_stage("vae", data, runs, sampler, {"vae": vae}, step, losses, minutes, lr, seed,
                       config=VAE_CONFIG, batch=batch, crop_samples=length, kl_weight=kl_weight)
