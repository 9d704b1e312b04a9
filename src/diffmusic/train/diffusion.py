"""Noise-predictor stage: a class-conditional diffusers ``UNet2DModel`` on VAE latents.

The latents of 5.12 s crops (``8 x 128 x 16``) are drawn from the frozen VAE's posterior and
multiplied by ``scaling_factor`` = 1 / (their standard deviation on training data), as in Stable
Diffusion and AudioLDM. Epsilon prediction with the AudioLDM schedule (1000 steps, scaled-linear
betas 0.0015 -> 0.0195). Classes: embedding index 0 is unconditional, ``k + 1`` is
``CLASSES[k]``; labels are dropped to 0 with probability ``p_uncond`` (classifier-free guidance).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DModel
from safetensors.torch import load_file, save_file
from torch import Tensor

from diffmusic.dsp import MelConfig, log_mel
from diffmusic.names import CLIP_SAMPLES
from diffmusic.priors.schedule import alphas_cumprod_from_config
from diffmusic.samplers import ddim_update, predict_z0, timesteps
from diffmusic.train.datasets import CLASSES, UNCONDITIONAL, CropSampler, train_stage
from diffmusic.train.loop import Checkpoint
from diffmusic.train.vae import VAE_CONFIG, build_vae, mel_to_image

SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.0015, "beta_end": 0.0195,
            "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}
"""The AudioLDM / AudioLDM2 training schedule (diffusers ``DDPMScheduler`` keywords)."""

UNET_CONFIG = {
    "sample_size": [128, 16],
    "in_channels": 8,
    "out_channels": 8,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "block_out_channels": [64, 128, 192],
    "layers_per_block": 1,
    "attention_head_dim": 32,
    "norm_num_groups": 16,
    "num_class_embeds": len(CLASSES) + 1,
}
"""Keyword arguments of ``diffusers.UNet2DModel`` (JSON-ready)."""

MIX_SHARE = 0.5
"""Share of ``mix`` crops per batch when stems exist; the four stems share the rest."""

OPTION_HELP = {"init": {"metavar": "DIR", "help": "continue from an exported model (e.g. the "
                        "shipped src/diffmusic/assets/embedded) when RUNS/unet is empty"}}
"""Help of the stage's command-line options (``--init``)."""


def alphas_cumprod(schedule: dict | None = None) -> Tensor:
    """``alpha_bar_t`` of :data:`SCHEDULE` (or ``schedule``), shape ``(num_train_timesteps,)``,
    float64 (as the embedded prior reads it from ``config.json``)."""
    return alphas_cumprod_from_config(schedule or SCHEDULE)


def build_unet(config: dict | None = None) -> UNet2DModel:
    """A fresh ``UNet2DModel`` with :data:`UNET_CONFIG` (or ``config``)."""
    cfg = dict(config or UNET_CONFIG)
    cfg["sample_size"] = tuple(cfg["sample_size"])
    return UNet2DModel(**cfg)


@torch.no_grad()
def encode(vae: AutoencoderKL, wave: Tensor, mel_cfg: MelConfig,
           generator: torch.Generator | None = None) -> Tensor:
    """Unscaled latents of crops ``(B, N)`` -> ``(B, 8, N // hop // 4, 16)`` (sample or mean)."""
    posterior = vae.encode(mel_to_image(log_mel(wave, mel_cfg))).latent_dist
    return posterior.sample(generator) if generator is not None else posterior.mean


def frozen_vae(runs: Path) -> AutoencoderKL:
    """The VAE the noise predictor is trained against, frozen into ``runs/unet/vae.safetensors``.

    On the first call the VAE stage's current EMA weights are copied there, so later VAE training
    cannot silently change the latent space under a trained noise predictor.
    """
    path = Path(runs) / "unet" / "vae.safetensors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(Checkpoint(Path(runs) / "vae").weights("vae", ema=True), str(path))
    vae = build_vae(VAE_CONFIG)
    vae.load_state_dict(load_file(str(path)))
    return vae.eval().requires_grad_(False)


def latent_scaling(runs: Path, vae: AutoencoderKL, sampler: CropSampler, mel_cfg: MelConfig,
                   crops: int = 96, seed: int = 1234) -> float:
    """``1 / std`` of training latents, measured once and stored in ``runs/unet/latent.json``."""
    path = Path(runs) / "unet" / "latent.json"
    if path.exists():
        return json.loads(path.read_text())["scaling_factor"]
    generator = torch.Generator().manual_seed(seed)
    latents = [encode(vae, sampler.batch(8, generator)[0], mel_cfg, generator)
               for _ in range(crops // 8)]
    z = torch.cat(latents)
    stats = {"scaling_factor": float(1.0 / z.std()), "latent_mean": float(z.mean()),
             "latent_std": float(z.std()), "crops": len(z), "seed": seed}
    path.write_text(json.dumps(stats, indent=1))
    return stats["scaling_factor"]


def trained_unet(runs: Path) -> tuple[UNet2DModel, float]:
    """The noise predictor's EMA weights in ``runs/unet`` (eval, frozen) and its scaling factor."""
    ckpt = Checkpoint(Path(runs) / "unet")
    unet = build_unet(ckpt.state().get("config"))
    unet.load_state_dict(ckpt.weights("unet"))
    scale = json.loads((Path(runs) / "unet" / "latent.json").read_text())["scaling_factor"]
    return unet.eval().requires_grad_(False), scale


@torch.no_grad()
def ddim_estimates(unet: UNet2DModel, abar: Tensor, noise: Tensor, labels: Tensor,
                   steps: int = 50) -> Tensor:
    """Denoised estimates of an unguided DDIM (eta 0) run from ``noise`` (Song et al., 2021),
    on the samplers' timestep grid and update.

    Args:
        unet: Noise predictor.
        abar: ``alpha_bar_t``, shape ``(num_train_timesteps,)``.
        noise: Initial scaled latents ``(B, 8, F, 16)``.
        labels: Embedding indices ``(B,)`` (0 unconditional, ``k + 1`` class ``k``).
        steps: DDIM steps.

    Returns:
        The estimate of ``z_0`` after each step, ``(steps, B, 8, F, 16)``, scaled; the last one
        is the sample.
    """
    z, estimates = noise, []
    times = timesteps(abar.numel(), steps)
    for t, t_prev in zip(times, [*times[1:], None], strict=True):
        a_prev = float(abar[t_prev]) if t_prev is not None else 1.0
        eps = unet(z, t, class_labels=labels).sample
        z0 = predict_z0(z, eps, float(abar[t]))
        z = ddim_update(z0, eps, a_prev)
        estimates.append(z0)
    return torch.stack(estimates)


def diffusion_losses(unet: UNet2DModel, z0: Tensor, labels: Tensor, abar: Tensor,
                     generator: torch.Generator | None, p_uncond: float) -> dict[str, Tensor]:
    """Epsilon-prediction MSE for scaled latents ``z0`` (B, 8, F, 16) and labels ``(B,)``.

    Args:
        unet: Noise predictor.
        z0: Scaled clean latents.
        labels: Embedding indices (0 = unconditional, ``k + 1`` = ``CLASSES[k]``).
        abar: ``alpha_bar_t``, shape ``(num_train_timesteps,)``.
        generator: Random source of timesteps, noise and label dropout.
        p_uncond: Probability of replacing a label with the unconditional index.
    """
    b = z0.shape[0]
    t = torch.randint(0, abar.numel(), (b,), generator=generator)
    noise = torch.randn(z0.shape, generator=generator)
    a = abar[t].float().view(b, 1, 1, 1)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
    drop = torch.rand(b, generator=generator) < p_uncond
    labels = torch.where(drop, torch.full_like(labels, UNCONDITIONAL), labels)
    pred = unet(z_t, t, class_labels=labels).sample
    mse = (pred - noise).square().mean()
    return {"mse": mse, "loss": mse}


def warm_start(runs: Path, folder: Path) -> tuple[dict[str, Tensor], dict]:
    """Seed a new ``runs/unet`` from an exported model (e.g. the shipped one).

    Writes its VAE as the frozen VAE and its latent statistics as ``latent.json``, so training
    continues in the exported latent space.

    Returns:
        The exported UNet's weights (float32) and ``{"from", "steps", "train_seconds"}``.

    Raises:
        FileNotFoundError: ``folder`` holds no exported UNet.
    """
    config = json.loads((Path(folder) / "config.json").read_text())
    if "unet" not in config:
        raise FileNotFoundError(f"{folder}: no exported noise predictor to start from")
    run_dir = Path(runs) / "unet"
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(folder) / config["vae"]["file"], run_dir / "vae.safetensors")
    (run_dir / "latent.json").write_text(json.dumps(config["unet"]["latent_stats"], indent=1))
    exported = load_file(str(Path(folder) / config["unet"]["file"]))
    weights = {k: v.float() for k, v in exported.items()}
    info = {"from": str(folder), "steps": config["unet"]["steps"],
            "train_seconds": config["unet"]["train_seconds"]}
    return weights, info


def run(data: Path, runs: Path, minutes: float, seed: int = 0, batch: int = 8,
        lr: float = 1e-3, p_uncond: float = 0.1, init: Path | None = None) -> dict:
    """Train (or resume training) the noise predictor.

    Args:
        data: Data root with ``music/`` and, when present, ``stems/``.
        runs: Runs root; needs ``runs/vae`` (or an already frozen ``runs/unet/vae.safetensors``).
        minutes: Time budget of this invocation.
        seed: Data seed (first run only).
        batch: Latents per step.
        lr: Learning rate.
        p_uncond: Classifier-free label dropout.
        init: An exported model folder to continue from when ``runs/unet`` has no checkpoint
            yet (see :func:`warm_start`).
    """
    mel_cfg = MelConfig()
    extra: dict = {}
    if init is not None and not Checkpoint(Path(runs) / "unet").exists():
        weights, extra["init"] = warm_start(runs, init)
    sampler = CropSampler(data, "train", CLIP_SAMPLES)
    print(f"unet: {len(sampler.sources)} files, {sampler.hours():.2f} h, "
          f"classes {sorted(sampler.by_label)}", flush=True)
    vae = frozen_vae(runs)
    scale = latent_scaling(runs, vae, sampler, mel_cfg)
    abar = alphas_cumprod()
    torch.manual_seed(seed)
    unet = build_unet()
    if extra:
        unet.load_state_dict(weights)
    shares = {0: MIX_SHARE, **{k: (1 - MIX_SHARE) / 4 for k in range(1, len(CLASSES))}}

    def step(generator: torch.Generator) -> dict[str, Tensor]:
        wave, labels = sampler.batch(batch, generator, shares)
        z0 = encode(vae, wave, mel_cfg, generator) * scale
        return diffusion_losses(unet, z0, labels + 1, abar, generator, p_uncond)

    def losses(emas: dict, clips: Tensor) -> dict[str, float]:
        z0 = encode(vae, clips, mel_cfg) * scale
        generator = torch.Generator().manual_seed(0)
        labels = torch.ones(len(z0), dtype=torch.long)
        mse = [float(diffusion_losses(emas["unet"], z0, labels, abar, generator, 0.0)["mse"])
               for _ in range(4)]
        return {"mse": sum(mse) / len(mse)}

    return train_stage("unet", data, runs, sampler, {"unet": unet}, step, losses, minutes, lr,
                       seed, config=UNET_CONFIG, batch=batch, p_uncond=p_uncond,
                       scaling_factor=scale, schedule=SCHEDULE, **extra)
