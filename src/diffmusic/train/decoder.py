"""Decoder stage: a :class:`~diffmusic.priors.mel_decoder.SubPixelMelDecoder` for the frozen VAE.

The guided samplers decode and backpropagate through the VAE decoder at every step; this stage
trains the cheaper sub-pixel decoder on the latents of the frozen VAE (``runs/unet``), so the
encoder, the latent space and the noise predictor stay as they are. It starts from the VAE
decoder's coarse levels. Loss per crop: L1 to the log-mel plus L1 to the full decoder's output
(``teacher_weight``), both on posterior samples, which keeps the two decoders close also where
the log-mel alone would not pin the new one down.

Unguided samples and the denoised estimates a guided sampler decodes at every step lie off the
posterior's latents, and a decoder fitted there alone decodes them worse than the VAE's own
(FD-musicnn of samples 47 against 40). So each batch also holds crops of a bank of such latents:
the ``z_0`` estimates along unguided DDIM runs of the trained noise predictor, with the full
decoder's output as the only target (``sampled_batch``, ``sampled_weight``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from diffmusic.dsp import MelConfig, log_mel
from diffmusic.priors.mel_decoder import MelDecoderConfig, SubPixelMelDecoder
from diffmusic.train.datasets import CLASSES, CropSampler, train_stage
from diffmusic.train.diffusion import alphas_cumprod, ddim_estimates, frozen_vae, trained_unet
from diffmusic.train.loop import Checkpoint
from diffmusic.train.vae import mel_to_image, vae_digest

DECODER_CONFIG = MelDecoderConfig()
"""Architecture of the shipped decoder."""

OPTION_HELP = {"sampled_batch": {
    "help": "crops of latents sampled by the noise predictor per step"}}
"""Help of the stage's command-line options (``--sampled-batch``)."""


def teacher_l1(decoder: SubPixelMelDecoder, vae: AutoencoderKL, z: Tensor) -> Tensor:
    """Mean ``|vae.decode(z) - decoder(z)|`` for unscaled latents ``z`` ``(B, 8, F, 16)``."""
    with torch.no_grad():
        target = vae.decode(z).sample
    return (decoder(z) - target).abs().mean()


def sampled_latent_bank(runs: Path, trajectories: int = 96, steps: int = 25, keep: int = 5,
                        seed: int = 0, batch: int = 8) -> dict[str, Tensor]:
    """Denoised estimates along unguided DDIM runs of the noise predictor in ``runs/unet``.

    The runs start from seeded noise, labels cycling through unconditional and the classes;
    ``keep`` evenly spaced estimates of each run are kept, the final sample among them. Cached in
    ``runs/decoder/sampled_latents.safetensors`` for the noise predictor's current step and these
    arguments.

    Args:
        runs: Runs root with the noise predictor's checkpoint in ``runs/unet``.
        trajectories: Training runs, a multiple of ``batch``.
        steps: DDIM steps per run.
        keep: Estimates kept per training run.
        seed: Seed of the initial noise.
        batch: Runs sampled together; also the number of validation runs.

    Returns:
        ``{"train": (trajectories * keep, 8, 128, 16), "valid": (batch, 8, 128, 16)}``,
        unscaled latents; ``valid`` holds the final samples of ``batch`` further runs.
    """
    if trajectories % batch:
        raise ValueError(f"trajectories ({trajectories}) must be a multiple of batch ({batch})")
    path = Path(runs) / "decoder" / "sampled_latents.safetensors"
    key = {"unet_step": str(Checkpoint(Path(runs) / "unet").state()["step"]),
           "trajectories": str(trajectories), "steps": str(steps), "keep": str(keep),
           "seed": str(seed), "batch": str(batch)}
    if path.exists():
        with safe_open(str(path), "pt") as f:
            if f.metadata() == key:
                return load_file(str(path))
    unet, scale = trained_unet(runs)
    abar = alphas_cumprod()
    generator = torch.Generator().manual_seed(seed)
    picks = torch.linspace(0, steps - 1, keep).round().long()
    train, valid = [], []
    for start in range(0, trajectories + batch, batch):
        labels = torch.arange(start, start + batch) % (len(CLASSES) + 1)
        noise = torch.randn(batch, 8, 128, 16, generator=generator)
        estimates = ddim_estimates(unet, abar, noise, labels, steps) / scale
        if start < trajectories:
            train.append(estimates[picks].flatten(0, 1))
        else:
            valid.append(estimates[-1])
        print(f"sampled latents: {start + batch} of {trajectories + batch} runs", flush=True)
    bank = {"train": torch.cat(train).contiguous(), "valid": torch.cat(valid).contiguous()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(bank, str(path), metadata=key)
    return bank


def bank_crops(bank: Tensor, count: int, frames: int, generator: torch.Generator) -> Tensor:
    """``count`` random crops of ``frames`` latent frames from ``bank`` ``(K, 8, F, 16)``."""
    index = torch.randint(len(bank), (count,), generator=generator).tolist()
    starts = torch.randint(bank.shape[2] - frames + 1, (count,), generator=generator).tolist()
    return torch.stack([bank[i, :, s:s + frames] for i, s in zip(index, starts, strict=True)])


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
        seconds: float = 1.28, lr: float = 3e-4, teacher_weight: float = 1.0,
        sampled_batch: int = 4, sampled_weight: float = 1.0) -> dict:
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
        sampled_batch: Crops of sampled latents per step (0: none, and no noise predictor is
            needed).
        sampled_weight: Weight of their L1 term to the full decoder's output.
    """
    mel_cfg = MelConfig()
    unit = 4 * mel_cfg.hop_length
    length = int(seconds * mel_cfg.sample_rate) // unit * unit
    sampler = CropSampler(data, "train", length)
    print(f"decoder: {len(sampler.sources)} files, {sampler.hours():.2f} h", flush=True)
    vae = frozen_vae(runs)
    decoder = SubPixelMelDecoder.from_vae(vae, DECODER_CONFIG)
    bank = sampled_latent_bank(runs) if sampled_batch else None
    frames = length // unit

    def step(generator: torch.Generator) -> dict[str, Tensor]:
        wave, _ = sampler.batch(batch, generator)
        losses = decoder_losses(decoder, vae, wave, mel_cfg, teacher_weight, generator)
        if bank is not None:
            z = bank_crops(bank["train"], sampled_batch, frames, generator)
            losses["sampled"] = teacher_l1(decoder, vae, z)
            losses["loss"] = losses["loss"] + sampled_weight * losses["sampled"]
        return losses

    def losses(emas: dict, clips: Tensor) -> dict[str, Tensor]:
        result = decoder_losses(emas["decoder"], vae, clips, mel_cfg, teacher_weight)
        if bank is not None:
            result["sampled"] = teacher_l1(emas["decoder"], vae, bank["valid"])
        return result

    return train_stage("decoder", data, runs, sampler, {"decoder": decoder}, step, losses,
                       minutes, lr, seed, config=DECODER_CONFIG.to_dict(), batch=batch,
                       crop_samples=length, teacher_weight=teacher_weight,
                       sampled_batch=sampled_batch, sampled_weight=sampled_weight,
                       vae_sha256=vae_digest(vae.state_dict()))
