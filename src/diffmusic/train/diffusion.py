"""Noise-predictor stage: a class-conditional diffusers ``UNet2DModel`` on VAE latents.

The latents of 5.12 s crops (``8 x 128 x 16``) are drawn from the frozen VAE's posterior and
multiplied by ``scaling_factor`` = 1 / (their standard deviation on training data), as in Stable
Diffusion and AudioLDM. Epsilon prediction with the AudioLDM schedule (1000 steps, scaled-linear
betas 0.0015 -> 0.0195). Classes: embedding index 0 is unconditional, ``k + 1`` is
``CLASSES[k]``; labels are dropped to 0 with probability ``p_uncond`` (classifier-free guidance).

The crops are read from ``--data`` and encoded at every step (:class:`EncodedCrops`), or come
encoded from a latent pack (``--pack``, :mod:`diffmusic.train.pack`, written by
:func:`write_pack`) on a machine without the audio; both write the same checkpoints, so a run
moves between the two, and between devices, by resuming.
"""

from __future__ import annotations

import contextlib
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
from diffmusic.train.datasets import (
    CLASSES,
    UNCONDITIONAL,
    VALID_CLIPS,
    CropSampler,
    train_stage,
    validation_clips,
)
from diffmusic.train.loop import Checkpoint
from diffmusic.train.pack import LatentPack, crops_that_fit, save_pack
from diffmusic.train.vae import VAE_CONFIG, build_vae, mel_to_image, vae_digest

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

LATENT_SHAPE = (UNET_CONFIG["in_channels"], *UNET_CONFIG["sample_size"])
"""Latent of one 5.12 s crop: ``(8, 128, 16)``."""

MIX_SHARE = 0.5
"""Share of ``mix`` crops per batch when stems exist; the four stems share the rest."""

CLASS_SHARES = {0: MIX_SHARE, **{k: (1 - MIX_SHARE) / 4 for k in range(1, len(CLASSES))}}
"""Class (index into ``CLASSES``) -> share of the training batches."""

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}
"""``--precision`` -> autocast dtype of the noise predictor's forward pass (None: off)."""

OPTION_HELP = {
    "init": {"metavar": "DIR", "help": "continue from an exported model (e.g. the shipped "
             "src/diffmusic/assets/embedded) when RUNS/unet is empty"},
    "pack": {"metavar": "FILE", "help": "train from a latent pack (python -m diffmusic.train "
             "pack) instead of encoding crops of --data"},
    "device": {"help": "torch device: cpu, cuda, cuda:1, ..."},
    "precision": {"choices": sorted(PRECISIONS), "help": "autocast of the UNet's forward pass"},
    "save_minutes": {"help": "minutes between checkpoints"},
    "max_steps": {"help": "stop at this step in total (0: only --minutes)"},
}
"""Help of the stage's command-line options."""


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
                     generator: torch.Generator | None, p_uncond: float,
                     autocast: torch.dtype | None = None) -> dict[str, Tensor]:
    """Epsilon-prediction MSE for scaled latents ``z0`` (B, 8, F, 16) and labels ``(B,)``.

    The random draws are made on the CPU and moved to ``z0``'s device, so a run draws the same
    timesteps, noise and label dropout on any device.

    Args:
        unet: Noise predictor (on ``z0``'s device).
        z0: Scaled clean latents.
        labels: Embedding indices (0 = unconditional, ``k + 1`` = ``CLASSES[k]``).
        abar: ``alpha_bar_t``, shape ``(num_train_timesteps,)``, on the CPU.
        generator: Random source (CPU) of timesteps, noise and label dropout.
        p_uncond: Probability of replacing a label with the unconditional index.
        autocast: dtype of the UNet's forward pass under ``torch.autocast`` (None: off).
    """
    b, device = z0.shape[0], z0.device
    t = torch.randint(0, abar.numel(), (b,), generator=generator)
    noise = torch.randn(z0.shape, generator=generator).to(device)
    a = abar[t].float().view(b, 1, 1, 1).to(device)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
    drop = (torch.rand(b, generator=generator) < p_uncond).to(device)
    labels = torch.where(drop, torch.full_like(labels, UNCONDITIONAL), labels)
    context = (contextlib.nullcontext() if autocast is None
               else torch.autocast(device.type, dtype=autocast))
    with context:
        pred = unet(z_t, t.to(device), class_labels=labels).sample
    mse = (pred.float() - noise).square().mean()
    return {"mse": mse, "loss": mse}


def seed_latent_space(runs: Path, folder: Path) -> dict:
    """Write an exported model's VAE and latent statistics into ``runs/unet`` (as the frozen
    VAE and ``latent.json``), so training continues in the exported latent space.

    Returns:
        The exported ``config.json``.

    Raises:
        FileNotFoundError: ``folder`` holds no exported noise predictor.
    """
    config = json.loads((Path(folder) / "config.json").read_text())
    if "unet" not in config:
        raise FileNotFoundError(f"{folder}: no exported noise predictor to start from")
    run_dir = Path(runs) / "unet"
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(folder) / config["vae"]["file"], run_dir / "vae.safetensors")
    (run_dir / "latent.json").write_text(json.dumps(config["unet"]["latent_stats"], indent=1))
    return config


def warm_start(runs: Path, folder: Path) -> tuple[dict[str, Tensor], dict]:
    """Seed a new ``runs/unet`` from an exported model (e.g. the shipped one): its latent space
    (:func:`seed_latent_space`) and its noise predictor.

    Returns:
        The exported UNet's weights (float32) and ``{"from", "steps", "train_seconds"}``.

    Raises:
        FileNotFoundError: ``folder`` holds no exported UNet.
    """
    config = seed_latent_space(runs, folder)
    exported = load_file(str(Path(folder) / config["unet"]["file"]))
    weights = {k: v.float() for k, v in exported.items()}
    info = {"from": str(folder), "steps": config["unet"]["steps"],
            "train_seconds": config["unet"]["train_seconds"]}
    return weights, info


class EncodedCrops:
    """Training latents encoded on the fly: crops of a :class:`CropSampler` through the frozen
    VAE; the same interface as :class:`~diffmusic.train.pack.LatentPack`.

    Args:
        data: Data root (for the validation clips).
        sampler: Training crops of ``CLIP_SAMPLES`` samples.
        vae: The frozen VAE.
        mel_cfg: Log-mel settings of the VAE's input.
    """

    def __init__(self, data: Path, sampler: CropSampler, vae: AutoencoderKL, mel_cfg: MelConfig):
        self.data, self.sampler, self.vae, self.mel_cfg = Path(data), sampler, vae, mel_cfg

    @property
    def by_label(self) -> dict[int, list]:
        """Class -> its files."""
        return self.sampler.by_label

    def refresh(self) -> int:
        """Re-scan the data folders; returns the file count."""
        return self.sampler.refresh()

    def hours(self) -> float:
        """Duration of the usable files in hours."""
        return self.sampler.hours()

    def batch(self, size: int, generator: torch.Generator,
              class_weights: dict[int, float] | None = None) -> tuple[Tensor, Tensor]:
        """Unscaled posterior samples of random crops ``(size, 8, 128, 16)`` and their classes
        ``(size,)`` (see :meth:`CropSampler.batch`)."""
        wave, labels = self.sampler.batch(size, generator, class_weights)
        return encode(self.vae, wave, self.mel_cfg, generator), labels

    def validation(self) -> Tensor | None:
        """Unscaled posterior means of the fixed validation clips, ``(V, 8, 128, 16)``."""
        clips = validation_clips(self.data, CLIP_SAMPLES, count=VALID_CLIPS)
        return None if clips is None else encode(self.vae, clips, self.mel_cfg)


def encoded_crops(data: Path, runs: Path, mel_cfg: MelConfig) -> tuple[EncodedCrops, float]:
    """Crops of ``data``'s training split through the frozen VAE of ``runs/unet``, and the
    latent scaling factor (measured on first use, see :func:`latent_scaling`)."""
    sampler = CropSampler(data, "train", CLIP_SAMPLES)
    vae = frozen_vae(runs)
    return EncodedCrops(data, sampler, vae, mel_cfg), latent_scaling(runs, vae, sampler, mel_cfg)


def pack_scaling(runs: Path, pack: LatentPack) -> float:
    """Check that ``pack`` was encoded with the frozen VAE of ``runs/unet``; its scaling factor.

    ``runs/unet/latent.json`` is written from the pack when missing.

    Raises:
        ValueError: The pack's VAE or latent statistics differ from the run's.
    """
    run_dir = Path(runs) / "unet"
    if pack.info["vae_sha256"] != vae_digest(frozen_vae(runs).state_dict()):
        raise ValueError(f"the pack was encoded with another VAE than {run_dir}'s")
    path = run_dir / "latent.json"
    if not path.exists():
        path.write_text(json.dumps(pack.info["latent_stats"], indent=1))
    stats = json.loads(path.read_text())
    if stats["scaling_factor"] != pack.info["latent_stats"]["scaling_factor"]:
        raise ValueError(f"the pack's scaling factor differs from {path}'s")
    return stats["scaling_factor"]


def write_pack(data: Path, runs: Path, out: Path, megabytes: float, seed: int = 0,
               init: Path | None = None, batch: int = 8) -> dict:
    """Encode training crops of ``data`` into a latent pack of at most ``megabytes`` (10^6 B).

    The crops are drawn like the noise predictor's (:data:`CLASS_SHARES`, loudness redraws,
    attenuation) and encoded with the frozen VAE of ``runs/unet``, seeded from ``init`` (an
    exported model, e.g. the shipped one) when ``runs/unet`` has none yet.

    Args:
        data: Data root (its training split; the validation clips for ``valid_latents``).
        runs: Runs root.
        out: The pack file.
        megabytes: Size limit.
        seed: Seed of the crop draws.
        init: Exported model folder whose VAE and latent statistics to use.
        batch: Crops encoded together.

    Returns:
        The pack's metadata plus ``"bytes"``.
    """
    if init is not None and not (Path(runs) / "unet" / "vae.safetensors").exists():
        seed_latent_space(runs, init)
    mel_cfg = MelConfig()
    crops, _ = encoded_crops(data, runs, mel_cfg)
    valid = crops.validation()
    valid = torch.zeros(0, *LATENT_SHAPE) if valid is None else valid
    count = crops_that_fit(megabytes, LATENT_SHAPE, len(valid))
    generator = torch.Generator().manual_seed(seed)
    latents, labels = [], []
    for start in range(0, count, batch):
        z, y = crops.batch(min(batch, count - start), generator, CLASS_SHARES)
        latents.append(z.half())
        labels.append(y)
        if start // batch % 25 == 0:
            print(f"pack: {start + len(z)} of {count} crops", flush=True)
    info = {"vae_sha256": vae_digest(crops.vae.state_dict()),
            "latent_stats": json.loads((Path(runs) / "unet" / "latent.json").read_text()),
            "crop_samples": CLIP_SAMPLES, "seed": seed, "data": str(data),
            "data_hours": round(crops.hours(), 3), "data_files": len(crops.sampler.sources),
            "class_shares": CLASS_SHARES, "classes": list(CLASSES)}
    size = save_pack(out, torch.cat(latents), torch.cat(labels), valid, info)
    print(f"pack: wrote {out} ({count} crops, {size / 1e6:.1f} MB)", flush=True)
    return {**info, "bytes": size, "crops": count}


def run(data: Path, runs: Path, minutes: float, seed: int = 0, batch: int = 8,
        lr: float = 1e-3, p_uncond: float = 0.1, init: Path | None = None,
        pack: Path | None = None, device: str = "cpu", precision: str = "float32",
        save_minutes: float = 4.0, max_steps: int = 0) -> dict:
    """Train (or resume training) the noise predictor, from audio crops or a latent pack.

    Args:
        data: Data root with ``music/`` and, when present, ``stems/`` (unused with ``pack``).
        runs: Runs root; needs ``runs/vae`` (or an already frozen ``runs/unet/vae.safetensors``).
        minutes: Time budget of this invocation.
        seed: Data seed (first run only).
        batch: Latents per step.
        lr: Learning rate.
        p_uncond: Classifier-free label dropout.
        init: An exported model folder to continue from when ``runs/unet`` has no checkpoint
            yet (see :func:`warm_start`).
        pack: A latent pack (:func:`write_pack`) to train from instead of ``data``; it must
            have been encoded with the run's frozen VAE.
        device: Where the noise predictor trains; checkpoints are device-independent.
        precision: A key of :data:`PRECISIONS`.
        save_minutes: Minutes between checkpoints.
        max_steps: Stop at this step in total (0: only the time budget).
    """
    mel_cfg = MelConfig()
    extra: dict = {}
    if init is not None and not Checkpoint(Path(runs) / "unet").exists():
        weights, extra["init"] = warm_start(runs, init)
    if pack is None:
        source, scale = encoded_crops(data, runs, mel_cfg)
    else:
        source = LatentPack(pack)
        scale = pack_scaling(runs, source)
    print(f"unet: {pack or data}, {source.hours():.2f} h, classes {sorted(source.by_label)}, "
          f"on {device}", flush=True)
    abar = alphas_cumprod()
    torch.manual_seed(seed)
    unet = build_unet()
    if extra:
        unet.load_state_dict(weights)
    unet.to(device)
    autocast = PRECISIONS[precision]

    def step(generator: torch.Generator) -> dict[str, Tensor]:
        z, labels = source.batch(batch, generator, CLASS_SHARES)
        return diffusion_losses(unet, z.to(device) * scale, (labels + 1).to(device), abar,
                                generator, p_uncond, autocast)

    def losses(emas: dict, latents: Tensor) -> dict[str, float]:
        z0 = latents.to(device) * scale
        generator = torch.Generator().manual_seed(0)
        labels = torch.ones(len(z0), dtype=torch.long, device=device)
        mse = [float(diffusion_losses(emas["unet"], z0, labels, abar, generator, 0.0,
                                      autocast)["mse"]) for _ in range(4)]
        return {"mse": sum(mse) / len(mse)}

    return train_stage("unet", data, runs, source, {"unet": unet}, step, losses, minutes, lr,
                       seed, valid_inputs=source.validation, save_every_s=save_minutes * 60,
                       max_steps=max_steps or None,
                       config=UNET_CONFIG, batch=batch, p_uncond=p_uncond,
                       scaling_factor=scale, schedule=SCHEDULE, **extra)
