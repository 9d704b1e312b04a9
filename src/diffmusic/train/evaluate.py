"""Quality and speed of the exported embedded model on validation clips.

Measures the protocol LSD (DESIGN.md §3) of (a) vocoder copy-synthesis from the true log-mel,
(b) the VAE round trip followed by the vocoder (through the decoder the prior uses and, when that
is the sub-pixel one, also through the VAE's own), (c) fast Griffin-Lim from the mel (the
classical reference); the seconds of one DiffMusic step; the FD-musicnn of unguided samples.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from diffmusic.dsp import MelConfig, fast_griffin_lim, log_mel, mel_filterbank
from diffmusic.metrics import lsd
from diffmusic.names import CLIP_SAMPLES
from diffmusic.priors.embedded import EmbeddedModels, load_embedded
from diffmusic.train.datasets import validation_clips
from diffmusic.train.diffusion import ddim_estimates
from diffmusic.train.vae import image_to_mel, mel_to_image


def griffin_lim_from_mel(mel: Tensor, cfg: MelConfig, length: int, seed: int = 0) -> Tensor:
    """Fast Griffin-Lim (100 it.) from a log-mel ``(B, T, n_mels)`` -> waveform ``(B, length)``.

    The mel magnitudes go back to linear frequency through the pseudo-inverse of the filterbank
    (negative values clipped); mel frame ``t`` is centred half a hop after STFT frame ``t``, so
    STFT frames take the mean of their two neighbouring mel frames.
    """
    inverse = torch.linalg.pinv(mel_filterbank(cfg, torch.float64))
    linear = (inverse @ mel.double().exp().transpose(1, 2)).clamp_min(0.0)
    padded = torch.cat([linear[..., :1], linear, linear[..., -1:]], -1)
    frames = 0.5 * (padded[..., :-1] + padded[..., 1:])
    generator = torch.Generator().manual_seed(seed)
    return fast_griffin_lim(frames, length, cfg.n_fft, cfg.hop_length, 100,
                            generator=generator).float()


@torch.no_grad()
def quality(models: EmbeddedModels, clips: Tensor, cfg: MelConfig) -> dict[str, float]:
    """Mean protocol LSDs (a), (b), (c) and the VAE's log-mel L1 over ``clips`` ``(B, N)``."""
    mel = log_mel(clips, cfg)
    vocoded = models.vocoder(mel)
    z = models.vae.encode(mel_to_image(mel)).latent_dist.mean
    rec = image_to_mel(models.decode(z))
    gl = griffin_lim_from_mel(mel, cfg, clips.shape[-1])
    result = {"clips": len(clips),
              "lsd_vocoder_copy_synthesis": float(lsd(vocoded, clips).mean()),
              "lsd_vae_round_trip_vocoder": float(lsd(models.vocoder(rec), clips).mean()),
              "lsd_fast_griffin_lim_100_from_mel": float(lsd(gl, clips).mean()),
              "vae_log_mel_l1": float((rec - mel).abs().mean())}
    if models.decoder is not None:
        full = image_to_mel(models.vae.decode(z).sample)
        result["lsd_vae_round_trip_vocoder_full_decoder"] = float(
            lsd(models.vocoder(full), clips).mean())
        result["vae_log_mel_l1_full_decoder"] = float((full - mel).abs().mean())
    return result


def _timed(fn, repeats: int) -> dict[str, float]:
    """Median wall seconds and median process CPU seconds of ``fn()``.

    On a shared machine the CPU time of a one-thread run is the cost on an idle core; the wall
    time includes whatever else the machine was doing.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"wall": round(statistics.median(wall), 4), "cpu": round(statistics.median(cpu), 4)}


def step_seconds(models: EmbeddedModels, cfg: MelConfig, repeats: int = 10) -> dict:
    """Median seconds of one DiffMusic step on a 5.12 s clip and of its parts (batch 1).

    The step is: UNet forward (no gradient), then decoder -> vocoder -> log-mel forward and
    backward of a squared-error loss to the latent.
    """
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(1, 8, 128, 16, generator=generator)
    target = torch.randn(1, 512, 64, generator=generator)
    label = torch.tensor([1])

    def unet() -> Tensor:
        with torch.no_grad():
            return models.unet(z, 500, class_labels=label).sample

    def guided(with_mel: bool) -> None:
        z0 = z.clone().requires_grad_(True)
        wave = models.vocoder(image_to_mel(models.decode(z0)))
        out = log_mel(wave, cfg) - target if with_mel else wave
        out.square().sum().backward()

    def step() -> None:
        unet()
        guided(True)

    result = {"decoder_vocoder_fwd_bwd": _timed(lambda: guided(False), repeats)}
    if models.unet is not None:
        result["unet_forward"] = _timed(unet, repeats)
        result["diffmusic_step"] = _timed(step, repeats)
    return result


@torch.no_grad()
def ddim_samples(models: EmbeddedModels, labels: Tensor, noise: Tensor,
                 steps: int = 50) -> Tensor:
    """Unguided DDIM (eta 0) samples from initial latents ``noise`` ``(B, 8, 128, 16)``.

    Args:
        models: The exported networks.
        labels: Embedding indices ``(B,)`` (0 unconditional, ``k + 1`` class ``k``).
        noise: Initial latents.
        steps: DDIM steps.

    Returns:
        Log-mels, shape ``(B, 512, 64)``.
    """
    z = ddim_estimates(models.unet, models.alphas_cumprod, noise, labels, steps)[-1]
    return image_to_mel(models.decode(z / models.scaling_factor))


def sample_fd(models: EmbeddedModels, references: Tensor, count: int = 24, batch: int = 8,
              seed: int = 0, embedding: str = "musicnn") -> dict[str, float]:
    """Fréchet distance (FD-musicnn) of generated samples to validation clips ``(B, N)``.

    ``count`` unconditional and ``count`` ``mix`` samples (DDIM, 50 steps, vocoded) are compared
    with ``references``; for scale, so are the references' vocoder copy-syntheses (the floor a
    sample can reach through this vocoder) and the same number of clips of white noise at the
    references' level.
    """
    from diffmusic.fad import fad, load_embedding

    embed = load_embedding(embedding)
    generator = torch.Generator().manual_seed(seed)
    refs = list(references)
    result = {}
    for name, label in (("unconditional", 0), ("mix", 1)):
        waves = []
        for start in range(0, count, batch):
            n = min(batch, count - start)
            noise = torch.randn(n, 8, 128, 16, generator=generator)
            mels = ddim_samples(models, torch.full((n,), label), noise)
            with torch.no_grad():
                waves.extend(models.vocoder(mels))
        result[name] = fad(waves, refs, embed)
    with torch.no_grad():
        copies = list(models.vocoder(log_mel(references, MelConfig())))
    result["vocoder_copy_synthesis"] = fad(copies, refs, embed)
    level = references.square().mean().sqrt()
    noise = torch.randn(references.shape, generator=generator) * level
    result["white_noise"] = fad(list(noise), refs, embed)
    return {f"fd_{embedding}_{k}": round(v, 3) for k, v in result.items()}


def sample_check(models: EmbeddedModels, batch: Tensor, cfg: MelConfig, out: Path) -> dict:
    """Samples per class -> ``out/samples.png``; L1 of their mean log-mel spectrum to validation's.

    A listen-free check: a prior that learned music has band energies close to real music's. The
    figure shows the samples' log-mels under the first validation clip's.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = torch.arange(len(models.config["classes"]) + 1)
    noise = torch.randn(1, 8, 128, 16, generator=torch.Generator().manual_seed(0))
    mels = ddim_samples(models, labels, noise.expand(len(labels), -1, -1, -1))
    reference = log_mel(batch, cfg)
    names = ["unconditional", *models.config["classes"]]
    panels = [("validation clip", reference[0]), *zip(names, mels, strict=True)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.6 * len(panels)))
    for ax, (name, mel) in zip(axes, panels, strict=True):
        ax.imshow(mel.T.numpy(), origin="lower", aspect="auto", vmin=-11.5, vmax=2.0)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "samples.png", dpi=80)
    plt.close(fig)
    profile = reference.mean((0, 1))
    return {name: round(float((mel.mean(0) - profile).abs().mean()), 3)
            for name, mel in zip(names, mels, strict=True)}


def main(data: Path, runs: Path, folder: Path | None, clips: int, threads: int) -> dict:
    """Evaluate the exported model; prints and writes ``runs/eval.json``."""
    torch.set_num_threads(threads)
    Path(runs).mkdir(parents=True, exist_ok=True)
    cfg = MelConfig()
    models = load_embedded(folder)
    batch = validation_clips(Path(data), CLIP_SAMPLES, count=clips, root="music")
    if batch is None:
        raise FileNotFoundError(f"no validation clips under {data}/music/valid")
    result = {"quality_music": quality(models, batch, cfg)}
    mixtures = validation_clips(Path(data), CLIP_SAMPLES, count=clips // 2, root="stems")
    if mixtures is not None:
        result["quality_stem_mixtures"] = quality(models, mixtures, cfg)
    result["speed"] = {}
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        result["speed"][f"threads_{n}"] = step_seconds(models, cfg)
    torch.set_num_threads(threads)
    result["steps"] = {k: models.config[k]["steps"] for k in ("vocoder", "vae", "unet", "decoder")
                       if k in models.config}
    if models.unet is not None:
        result["sample_band_profile_l1"] = sample_check(models, batch, cfg, Path(runs))
        references = validation_clips(Path(data), CLIP_SAMPLES, count=24, root="music")
        result["sample_fd"] = {"references": len(references), "samples": 24,
                               **sample_fd(models, references)}
        if models.decoder is not None:
            result["sample_fd_full_decoder"] = sample_fd(replace(models, decoder=None),
                                                         references)
    text = json.dumps(result, indent=1)
    print(text)
    (Path(runs) / "eval.json").write_text(text)
    return result
