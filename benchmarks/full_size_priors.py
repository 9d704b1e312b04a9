"""Seconds per sampling step and peak memory of full-size AudioLDM2-music, MusicLDM and Stable
Audio Open priors.

The UNet (DiT), VAE and vocoder have the published architectures (random weights: the real ones
cannot be downloaded here); the text encoders are one layer deep at the published widths, since
they run once per restoration and are not part of a step. One clip (the prior's window, or
``--seconds``; Stable Audio Open: stereo at 44.1 kHz), inpainting of [2 s, 3 s), prompt + CFG.

Usage::

    .venv/bin/python benchmarks/full_size_priors.py --models audioldm2 musicldm --steps 3
    .venv/bin/python benchmarks/full_size_priors.py --models stable-audio --seconds 10 47
"""

from __future__ import annotations

import argparse
import functools
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from diffmusic.operators import Inpainting
from diffmusic.priors.audioldm2 import audioldm2_prior
from diffmusic.priors.musicldm import musicldm_prior
from diffmusic.priors.stable_audio import stable_audio_prior
from diffmusic.restoration import Settings, restore

# the random full-size components are test material, kept in tests/hf_components.py
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hf_components import (  # noqa: E402
    STABLE_AUDIO_SCHEDULER,
    audioldm2_components,
    musicldm_components,
    stable_audio_components,
)

BUILDERS = {"audioldm2": (audioldm2_components, audioldm2_prior),
            "musicldm": (musicldm_components, musicldm_prior),
            "stable-audio": (stable_audio_components,
                             functools.partial(stable_audio_prior,
                                               scheduler=STABLE_AUDIO_SCHEDULER))}


def millions(module: torch.nn.Module) -> float:
    """Parameters in millions."""
    return sum(p.numel() for p in module.parameters()) / 1e6


def peak_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA allocator peak, or the process's max RSS on the CPU (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(model: str, steps: int, device: torch.device, dtype: torch.dtype,
          samplers: list[str], checkpointing: bool = False,
          seconds: list[float] | None = None) -> None:
    """Build one full-size prior and time sampler steps on one clip per window length."""
    build, wrap = BUILDERS[model]
    start = time.perf_counter()
    prior = wrap(build("full"), f"{model}-full-random", device, dtype)
    denoiser = getattr(prior, prior.denoiser_name)
    if checkpointing:
        prior.use_gradient_checkpointing()
    sizes = ", ".join(f"{name} {millions(module):.0f}M" for name, module in
                      (("denoiser", denoiser), ("VAE", prior.vae),
                       ("vocoder", getattr(prior, "vocoder", None))) if module is not None)
    print(f"{model}: built in {time.perf_counter() - start:.1f} s; {sizes} parameters; "
          f"window {prior.window / prior.sample_rate:.2f} s; RSS/peak {peak_mb(device):.0f} MB",
          flush=True)
    lengths = ([prior.window] if not seconds else
               [min(prior.window, round(s * prior.sample_rate) // prior.latent_hop
                    * prior.latent_hop) for s in seconds])
    for n in lengths:
        time_window(prior, model, n, steps, samplers, device)


def time_window(prior, model: str, n: int, steps: int, samplers: list[str],
                device: torch.device) -> None:
    """Time each sampler's steps on an inpainting clip of ``n`` samples."""
    op = Inpainting(prior.sample_rate, n, [(2.0, 3.0)])
    clean = 0.1 * torch.randn(prior.channels, n, generator=torch.Generator().manual_seed(0))
    y = op(clean)
    label = f"{model} {n / prior.sample_rate:.2f} s {prior.channels} ch, latent " \
            f"{prior.latent_shape(n)}"
    for sampler in samplers:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        stamps = [time.perf_counter()]
        stamp = stamps.append
        settings = Settings(sampler=sampler, steps=steps, seed=0, prompts="piano",
                            guidance_scale=3.0)
        result = restore(prior, op, y, settings, lambda _, add=stamp: add(time.perf_counter()))
        per_step = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]
        first = stamps[1] - stamps[0]
        print(f"{label} {sampler}: {statistics.median(per_step or [first]):.2f} s/step "
              f"(median of steps 2..{steps}; first step incl. prompt encoding {first:.2f} s; "
              f"total {result.record['seconds']:.1f} s); peak memory {peak_mb(device):.0f} MB",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--samplers", nargs="+", default=["diffmusic", "dps"])
    parser.add_argument("--checkpointing", action="store_true",
                        help="gradient checkpointing in the UNet (DiT) and the VAE")
    parser.add_argument("--seconds", type=float, nargs="+", default=None,
                        help="window lengths (default: the prior's window)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {args.device}, dtype {args.dtype}, "
          f"gradient checkpointing {args.checkpointing}")
    for model in args.models:
        bench(model, args.steps, torch.device(args.device), getattr(torch, args.dtype),
              args.samplers, args.checkpointing, args.seconds)


if __name__ == "__main__":
    main()
