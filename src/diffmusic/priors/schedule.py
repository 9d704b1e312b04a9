"""Noise schedules of the AudioLDM family, as ``alpha_bar_t`` tensors."""

from __future__ import annotations

import torch
from torch import Tensor


def scaled_linear_alphas_cumprod(num_train_timesteps: int = 1000, beta_start: float = 0.0015,
                                 beta_end: float = 0.0195) -> Tensor:
    """``alpha_bar_t`` of the scaled-linear schedule (betas linear in sqrt), float64, ``(T,)``."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps,
                           dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def alphas_cumprod_from_config(config: dict) -> Tensor:
    """``alpha_bar_t`` from a diffusers scheduler config (``scheduler_config.json``).

    Raises:
        ValueError: For a beta schedule or prediction type the samplers do not support.
    """
    if config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(f"only epsilon prediction is supported, the checkpoint uses "
                         f"{config['prediction_type']!r}")
    kind = config.get("beta_schedule", "scaled_linear")
    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.0015)), float(config.get("beta_end", 0.0195))
    if kind == "scaled_linear":
        return scaled_linear_alphas_cumprod(steps, start, end)
    if kind == "linear":
        return torch.cumprod(1 - torch.linspace(start, end, steps, dtype=torch.float64), 0)
    raise ValueError(f"unsupported beta schedule {kind!r} (use linear or scaled_linear)")
