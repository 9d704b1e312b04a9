"""Noise schedules: the AudioLDM family's ``alpha_bar_t`` tensors, and the grids of noise levels
the samplers walk (:class:`DiscreteSchedule`, :class:`SigmaSchedule`)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

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
        ValueError: For a beta schedule the samplers do not support.
    """
    kind = config.get("beta_schedule", "scaled_linear")
    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.0015)), float(config.get("beta_end", 0.0195))
    if kind == "scaled_linear":
        return scaled_linear_alphas_cumprod(steps, start, end)
    if kind == "linear":
        return torch.cumprod(1 - torch.linspace(start, end, steps, dtype=torch.float64), 0)
    raise ValueError(f"unsupported beta schedule {kind!r} (use linear or scaled_linear)")


PREDICTION_TYPES = ("epsilon", "v_prediction")
"""What a network predicts: the noise, or ``v = sqrt(a) noise - sqrt(1 - a) z0`` (Salimans &
Ho, 2022); the samplers convert either to the noise and the Tweedie estimate of ``z0``."""


def prediction_type_from_config(config: dict) -> str:
    """The ``prediction_type`` of a diffusers scheduler config (default ``"epsilon"``).

    Raises:
        ValueError: A parameterisation the samplers do not convert (``"sample"``, ...).
    """
    kind = str(config.get("prediction_type", "epsilon"))
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"unsupported prediction type {kind!r} (use "
                         f"{' or '.join(PREDICTION_TYPES)})")
    return kind


@dataclass(frozen=True)
class Level:
    """One noise level of a sampling grid, in the variance-preserving form every sampler uses.

    Attributes:
        t: The network's own time input at this level: a training timestep index (discrete
            schedules) or the noise level ``sigma`` of a continuous one.
        alpha_bar: ``a`` in ``z_t = sqrt(a) z0 + sqrt(1 - a) noise``.
    """

    t: float
    alpha_bar: float


class Schedule(ABC):
    """A prior's noise schedule as the samplers see it: grids of :class:`Level` objects.

    Attributes:
        a_last: ``alpha_bar`` of the cleanest level the network was trained at.
        max_steps: Most steps a grid can have (``None``: any number).
    """

    a_last: float
    max_steps: int | None

    @abstractmethod
    def levels(self, steps: int, strength: float = 1.0) -> list[Level]:
        """The levels of a ``steps``-step grid, noisiest first, that a warm start of
        ``strength`` (the fraction of the schedule it runs, in ``(0, 1]``) keeps; at least one.

        Raises:
            ValueError: Fewer than 2 steps, or more than :attr:`max_steps`.
        """

    @abstractmethod
    def describe(self) -> dict:
        """JSON-ready description for restoration records."""

    def _check(self, steps: int) -> None:
        top = self.max_steps if self.max_steps is not None else math.inf
        if not 2 <= steps <= top:
            raise ValueError(f"steps must be between 2 and {self.max_steps}, got {steps}")


def timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """``steps`` training timesteps ``T - 1 - i T / steps``: diffusers' "trailing" spacing
    (every step a real jump, the last from ``T / steps - 1`` to the clean latent)."""
    if not 2 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be between 2 and {num_train_timesteps}, got {steps}")
    return [round(num_train_timesteps - i * num_train_timesteps / steps) - 1
            for i in range(steps)]


class DiscreteSchedule(Schedule):
    """The ``alpha_bar_t`` of ``T`` training timesteps (the AudioLDM family, the embedded prior),
    sampled on the "trailing" grid of :func:`timesteps`.

    Args:
        alphas_cumprod: ``alpha_bar_t``, ``(T,)``.
    """

    def __init__(self, alphas_cumprod: Tensor) -> None:
        self.alphas_cumprod = alphas_cumprod.double().cpu()
        self.max_steps = self.alphas_cumprod.numel()
        self.a_last = float(self.alphas_cumprod[0])

    def levels(self, steps: int, strength: float = 1.0) -> list[Level]:
        ts = timesteps(self.max_steps, steps)
        last = math.ceil(strength * self.max_steps) - 1
        ts = [t for t in ts if t <= last] or [last]  # strength > 0, so last >= 0
        return [Level(t, float(self.alphas_cumprod[t])) for t in ts]

    def describe(self) -> dict:
        return {"kind": "discrete", "num_train_timesteps": self.max_steps}


SIGMA_SCHEDULES = ("exponential", "karras")


class SigmaSchedule(Schedule):
    """A continuous noise schedule in ``sigma`` (``x_sigma = x0 + sigma noise``), as the EDM
    family of diffusers schedulers defines it (Stable Audio Open's
    ``CosineDPMSolverMultistepScheduler``), sampled on that scheduler's grid: ``steps`` levels
    from ``sigma_max`` to ``sigma_min``, then the clean latent.

    The samplers see ``z = x_sigma / sqrt(sigma^2 + 1)``, a variance-preserving latent at
    ``alpha_bar = 1 / (1 + sigma^2)``; with the EDM preconditioning at ``sigma_data = 1`` this is
    exactly the network's input ``c_in x_sigma`` (other ``sigma_data``: the prior measures its
    latents in units of ``sigma_data``, and ``sigma`` here is in those units).

    Args:
        sigma_min: Smallest noise level of the grid.
        sigma_max: Largest.
        kind: ``"exponential"`` (log-linear) or ``"karras"`` (linear in ``sigma^(1/rho)``).
        rho: Karras's exponent.
    """

    max_steps = None

    def __init__(self, sigma_min: float, sigma_max: float, kind: str = "exponential",
                 rho: float = 7.0) -> None:
        if kind not in SIGMA_SCHEDULES:
            raise ValueError(f"unsupported sigma schedule {kind!r} (use "
                             f"{' or '.join(SIGMA_SCHEDULES)})")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max, self.kind, self.rho = sigma_min, sigma_max, kind, rho
        self.a_last = 1 / (1 + sigma_min**2)

    def sigma(self, position: float) -> float:
        """``sigma`` at ``position`` in ``[0, 1]`` of the schedule (1: ``sigma_max``)."""
        if self.kind == "exponential":
            return math.exp(math.log(self.sigma_min)
                            + position * (math.log(self.sigma_max) - math.log(self.sigma_min)))
        low, high = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (low + position * (high - low)) ** self.rho

    def levels(self, steps: int, strength: float = 1.0) -> list[Level]:
        self._check(steps)
        positions = [1 - i / (steps - 1) for i in range(steps)]
        kept = [p for p in positions if p <= strength + 1e-12] or [strength]
        return [Level(s, 1 / (1 + s**2)) for s in map(self.sigma, kept)]

    def describe(self) -> dict:
        return {"kind": self.kind, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
                "rho": self.rho}
