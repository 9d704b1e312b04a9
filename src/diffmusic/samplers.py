"""Samplers: functions of a prior, an operator and a measurement, over one shared DDIM core.

Every sampler returns a :class:`Sample`: the raw restored waveform (no projection; see
:func:`diffmusic.restoration.restore`) and a :class:`SampleRecord` with the per-step
measurement loss. The prior's parameterisation (noise or ``v`` prediction) and its schedule
(discrete timesteps or continuous ``sigma``) are absorbed by :func:`denoise` and the
:class:`~diffmusic.priors.schedule.Level` grid: the samplers see one variance-preserving DDIM
process whatever the prior.

The operator sees ``B`` signals ``(B, N)`` (``(B, K, N)`` for ``K = operator.num_sources``);
a prior of ``C`` channels restores ``B / C`` groups of ``C`` consecutive signals (the channels of
one recording) jointly, one latent per group and source: latents are ``(B / C * K, *latent)``
(:func:`to_signals`, :func:`to_latent_layout`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from diffmusic.operators import Operator
from diffmusic.priors.base import Condition, Prior
from diffmusic.priors.schedule import Level, timesteps

__all__ = ["SAMPLERS", "Sample", "SampleRecord", "WarmStart", "denoise", "timesteps",
           "to_latent_layout", "to_signals"]

GAMMA = 3e4
"""Default MPGD step size for the per-item mean-squared losses of the operators (the tuned file
of a prior holds the per-task values; ``benchmarks/RESULTS.md`` how they were chosen).
DiffMusic's plain step (``gamma=...``) has no default: the paper's algorithm needs a value per
task."""
RHO = 0.15
"""Default DiffMusic normalised step: the guidance moves ``sqrt(a_t) z0`` by this fraction of
the noise level ``sqrt(1 - a_t)`` (RMS per latent element); the tuned file of a prior holds the
per-task values."""
ETA = 1.0
"""Default DDIM noise of DiffMusic: fresh noise lets the UNet pull a guided latent back to the
prior (the paper's deterministic update, ``eta=0``, leaves it off the music manifold;
``benchmarks/RESULTS.md`` compares the two)."""
DEFAULT_ETA: dict[str, float] = {"diffmusic": ETA, "dsg": 1.0, "dps": 0.0, "mpgd": 0.0,
                                 "ddim": 0.0}
"""Each sampler's DDIM noise when none is given (DSG's sphere needs noise; DPS and MPGD follow
their papers' deterministic update)."""

Callback = Callable[[dict], None]
"""Called after every step with ``{"i", "steps", "t", "loss"}``."""
StepFn = Callable[[Tensor, Level, float], tuple[Tensor, Tensor | None]]
"""``(z_t, level, alpha_bar_prev) -> (z_prev, per-item loss or None)``."""


@dataclass
class SampleRecord:
    """What a sampler did: settings, seed, per-step mean loss and wall-clock seconds."""

    sampler: str
    steps: int
    seed: int | None
    settings: dict
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return asdict(self)


@dataclass
class WarmStart:
    """Start the reverse process part-way, from a noised initial estimate.

    Come-Closer-Diffuse-Faster (Chung, Sim & Ye, CVPR 2022): ``z_t0 = sqrt(a_t0) z_init +
    sqrt(1 - a_t0) noise``, then only the steps at ``t <= strength * T`` run.

    Attributes:
        latent: ``z_init``, the latent of an initial restoration, ``(B * K, *latent)``.
        strength: Fraction of the schedule to run, in ``(0, 1]`` (1: from ``t = T - 1``).
    """

    latent: Tensor
    strength: float

    def __post_init__(self) -> None:
        if not 0 < self.strength <= 1:
            raise ValueError(f"warm-start strength must be in (0, 1], got {self.strength}")


@dataclass
class Sample:
    """A sampler's output: waveform ``(B, N)`` or ``(B, K, N)`` and its record."""

    wave: Tensor
    record: SampleRecord


def ddim_sigma(a_t: float, a_prev: float, eta: float) -> float:
    """DDIM noise level ``sigma_t(eta)`` (Song et al., ICLR 2021, eq. 16)."""
    return eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))


def ddim_update(z0: Tensor, eps: Tensor, a_prev: float, sigma: float = 0.0,
                noise: Tensor | None = None) -> Tensor:
    """``z_{t-1} = sqrt(a') z0 + sqrt(1 - a' - sigma^2) eps + sigma noise`` (DDIM eq. 12)."""
    z = math.sqrt(a_prev) * z0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
    return z if noise is None or sigma == 0 else z + sigma * noise


def predict_z0(z_t: Tensor, eps: Tensor, a_t: float) -> Tensor:
    """Tweedie estimate ``z0_hat = (z_t - sqrt(1 - a) eps) / sqrt(a)``."""
    return (z_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)


def denoise(prior: Prior, z_t: Tensor, level: Level,
            cond: Condition | None) -> tuple[Tensor, Tensor]:
    """The prior as a denoiser: its noise estimate ``eps`` and Tweedie estimate ``z0_hat``.

    A noise-predicting network gives ``eps`` and ``z0_hat`` by :func:`predict_z0`; a
    ``v``-predicting one (Salimans & Ho, ICLR 2022) ``z0_hat = sqrt(a) z_t - sqrt(1 - a) v`` and
    ``eps = sqrt(a) v + sqrt(1 - a) z_t``, which stay exact at the large noise levels where
    dividing by ``sqrt(a)`` would not.
    """
    out = prior.predict(z_t, level.t, cond)
    a = level.alpha_bar
    if prior.prediction_type == "epsilon":
        return out, predict_z0(z_t, out, a)
    return (math.sqrt(a) * out + math.sqrt(1 - a) * z_t,
            math.sqrt(a) * z_t - math.sqrt(1 - a) * out)


def to_signals(x: Tensor, operator: Operator, channels: int = 1) -> Tensor:
    """The prior's layout -> the operator's: ``(G * K, C, ...)`` (``(G * K, ...)`` for
    ``C = 1``) -> ``(G * C, K, ...)`` (``(G * C, ...)`` for ``K = 1``)."""
    k = operator.num_sources
    if channels > 1:
        groups = x.shape[0] // k
        x = x.reshape(groups, k, channels, *x.shape[2:]).transpose(1, 2)
        x = x.reshape(groups * channels * k, *x.shape[3:])
    return x if k == 1 else x.reshape(-1, k, *x.shape[1:])


def to_latent_layout(x: Tensor, operator: Operator, channels: int = 1) -> Tensor:
    """The inverse of :func:`to_signals`: signals ``(B, ...)`` or ``(B, K, ...)`` -> the
    prior's ``(B / C * K, C, ...)`` (``(B * K, ...)`` for ``C = 1``).

    Raises:
        ValueError: ``B`` is not a multiple of ``C``.
    """
    k = operator.num_sources
    if x.shape[0] % channels:
        raise ValueError(f"a {channels}-channel prior restores groups of {channels} signals, "
                         f"got {x.shape[0]}")
    x = x.reshape(x.shape[0], k, *x.shape[1 if k == 1 else 2:])
    if channels == 1:
        return x.reshape(-1, *x.shape[2:])
    groups = x.shape[0] // channels
    x = x.reshape(groups, channels, k, *x.shape[2:]).transpose(1, 2)
    return x.reshape(groups * k, channels, *x.shape[3:])


def measurement_loss(prior: Prior, operator: Operator, y: Tensor, z0: Tensor,
                     vmc: bool = True) -> Tensor:
    """Per-item loss of the latents ``z0`` against ``y``, shape ``(B,)``.

    With ``vmc`` (the Vocoder-Mel Constraint; for a waveform decoder, the decoder constraint)
    the loss sees the waveform ``V(D(z0))``, against which the operator first refines what it
    estimates jointly with the signal (:meth:`Operator.refine`); without it, the decoder's
    log-mel ``D(z0)`` through :meth:`Operator.mel_loss`.
    """
    decoded = prior.decode(z0)
    if not vmc:
        return operator.mel_loss(to_signals(prior.decoded_mel(decoded), operator,
                                            prior.channels), y, prior.mel)
    wave = to_signals(prior.vocode(decoded), operator, prior.channels)
    operator.refine(wave.detach(), y)
    return operator.loss(wave, y)


def _norm(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return torch.linalg.vector_norm(x, dim=dims, keepdim=True)


def _grad(loss: Tensor, wrt: Tensor) -> Tensor:
    return torch.autograd.grad(loss.sum(), wrt)[0]


def _norm_grad_through_unet(prior: Prior, operator: Operator, y: Tensor, z: Tensor,
                            level: Level, cond: Condition | None,
                            vmc: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``eps``, ``z0_hat``, the loss and ``grad_{z_t} sqrt(loss)``, backprop through the UNet."""
    z = z.requires_grad_(True)
    eps, z0 = denoise(prior, z, level, cond)
    loss = measurement_loss(prior, operator, y, z0, vmc)
    grad = _grad(loss.clamp_min(1e-12).sqrt(), z)
    return eps.detach(), z0.detach(), loss.detach(), grad


def _first_latent(prior: Prior, shape: tuple[int, ...], steps: int, generator: torch.Generator,
                  start: WarmStart | None) -> tuple[Tensor, list[Level]]:
    """``z`` at the first level that runs, and the levels that run (all without ``start``)."""
    noise = torch.randn(shape, generator=generator, device=generator.device)
    if start is None:
        return noise, prior.schedule.levels(steps)
    levels = prior.schedule.levels(steps, start.strength)
    a = levels[0].alpha_bar
    return math.sqrt(a) * start.latent.to(noise) + math.sqrt(1 - a) * noise, levels


def _run(name: str, prior: Prior, operator: Operator, y: Tensor, steps: int,
         generator: torch.Generator, step_fn: StepFn, settings: dict,
         callback: Callback | None, start: WarmStart | None = None) -> Sample:
    """The DDIM loop every sampler shares: draw ``z_T`` (or warm-start), step, decode, vocode."""
    began = time.perf_counter()
    if y.shape[0] % prior.channels:
        raise ValueError(f"the {prior.channels}-channel prior {prior.name} restores groups of "
                         f"{prior.channels} signals, got {y.shape[0]}")
    latents = y.shape[0] // prior.channels * operator.num_sources
    shape = (latents, *prior.latent_shape(operator.num_samples))
    record = SampleRecord(name, steps, generator.initial_seed(), settings)
    z, levels = _first_latent(prior, shape, steps, generator, start)
    if start is not None:
        record.settings = {**settings, "warm_start": start.strength}
    for i, level in enumerate(levels):
        a_prev = levels[i + 1].alpha_bar if i + 1 < len(levels) else 1.0
        z, loss = step_fn(z.detach(), level, a_prev)
        if loss is not None:
            record.losses.append(float(loss.detach().mean()))
        if callback is not None:
            callback({"i": i, "steps": len(levels), "t": level.t,
                      "loss": record.losses[-1] if loss is not None else None})
    with torch.no_grad():
        wave = prior.vocode(prior.decode(z.detach()))
    record.seconds = time.perf_counter() - began
    return Sample(to_signals(wave, operator, prior.channels), record)


def sample_ddim(prior: Prior, operator: Operator, y: Tensor, *, steps: int,
                generator: torch.Generator, cond: Condition | None = None,
                callback: Callback | None = None,
                start: WarmStart | None = None, eta: float = DEFAULT_ETA["ddim"]) -> Sample:
    """Unconditional DDIM (Song, Meng & Ermon, ICLR 2021, eq. 12); ignores ``y``."""

    def step(z: Tensor, level: Level, a_prev: float) -> tuple[Tensor, None]:
        with torch.no_grad():
            eps, z0 = denoise(prior, z, level, cond)
        noise = torch.randn(z.shape, generator=generator, device=z.device)
        return ddim_update(z0, eps, a_prev, ddim_sigma(level.alpha_bar, a_prev, eta),
                           noise), None

    return _run("ddim", prior, operator, y, steps, generator, step, {"eta": eta}, callback,
                start)


def sample_dps(prior: Prior, operator: Operator, y: Tensor, *, steps: int,
               generator: torch.Generator, cond: Condition | None = None,
               callback: Callback | None = None,
               start: WarmStart | None = None, zeta: float = 1.0,
               eta: float = DEFAULT_ETA["dps"],
               vmc: bool = True) -> Sample:
    """Diffusion Posterior Sampling (Chung et al., ICLR 2023, Algorithm 1, eq. 16).

    Steps by ``zeta * grad_{z_t} ||A(x0_hat(z_t)) - y||`` with backprop through the UNet.
    """

    def step(z: Tensor, level: Level, a_prev: float) -> tuple[Tensor, Tensor]:
        eps, z0, loss, grad = _norm_grad_through_unet(prior, operator, y, z, level, cond, vmc)
        noise = torch.randn(z.shape, generator=generator, device=z.device)
        z_prev = ddim_update(z0, eps, a_prev, ddim_sigma(level.alpha_bar, a_prev, eta), noise)
        return z_prev - zeta * grad, loss

    return _run("dps", prior, operator, y, steps, generator, step,
                {"zeta": zeta, "eta": eta, "vmc": vmc}, callback, start)


def sample_dsg(prior: Prior, operator: Operator, y: Tensor, *, steps: int,
               generator: torch.Generator, cond: Condition | None = None,
               callback: Callback | None = None,
               start: WarmStart | None = None, guidance_rate: float = 0.2,
               eta: float = DEFAULT_ETA["dsg"], vmc: bool = True) -> Sample:
    """Diffusion with Spherical Gaussian constraint (Yang et al., ICML 2024, Algorithm 2, eq. 13).

    The DDIM noise direction is mixed with the normalised negative gradient (through the UNet)
    by ``guidance_rate``, and the step is put on the sphere of radius ``sqrt(n) sigma_t``.
    """

    def step(z: Tensor, level: Level, a_prev: float) -> tuple[Tensor, Tensor]:
        eps, z0, loss, grad = _norm_grad_through_unet(prior, operator, y, z, level, cond, vmc)
        sigma = ddim_sigma(level.alpha_bar, a_prev, eta)
        mean = ddim_update(z0, eps, a_prev, sigma)
        if sigma == 0:
            return mean, loss
        dims = tuple(range(1, z.dim()))
        radius = math.sqrt(z[0].numel()) * sigma
        steepest = -radius * grad / _norm(grad, dims).clamp_min(1e-12)
        sampled = sigma * torch.randn(z.shape, generator=generator, device=z.device)
        mixed = sampled + guidance_rate * (steepest - sampled)
        return mean + radius * mixed / _norm(mixed, dims), loss

    return _run("dsg", prior, operator, y, steps, generator, step,
                {"guidance_rate": guidance_rate, "eta": eta, "vmc": vmc}, callback, start)


def normalized_step(grad: Tensor, size: float, num_sources: int) -> Tensor:
    """``grad`` rescaled to an RMS of ``size`` per latent element, per measurement.

    The norm is taken jointly over the ``K`` latents of one measurement, so a source the
    measurement barely sees takes a small share of the step.

    Args:
        grad: Gradient with respect to ``z0_hat``, ``(B * K, *latent)``.
        size: RMS of the step per element.
        num_sources: ``K``.
    """
    per_item = grad.reshape(-1, num_sources * grad[0].numel())
    norm = torch.linalg.vector_norm(per_item, dim=1).clamp_min(1e-12)
    scale = size * math.sqrt(per_item.shape[1]) / norm
    return grad * scale.repeat_interleave(num_sources).view(-1, *[1] * (grad.dim() - 1))


def normalized_step_size(rho: float, a_t: float, a_prev: float, sigma: float,
                         a_last: float) -> float:
    """RMS per element of DiffMusic's normalised step on ``z0_hat``.

    ``rho sqrt((1 - a_t) / a_t)`` moves ``sqrt(a_t) z0`` (the signal part of ``z_t``) by ``rho``
    times the noise RMS ``sqrt(1 - a_t)``, whatever the scale of the loss: strong guidance
    while the noise hides it, fading as ``t -> 0``. DiffMusic's DDIM update (``eps_hat``
    follows ``z0*``) carries a change of ``z0*`` into ``z_{t-1}`` with the factor
    ``sqrt(a') - sqrt(1 - a' - sigma^2) sqrt(a_t / (1 - a_t))``; the size is bounded so that the
    step never moves ``z_{t-1}`` by more than ``rho`` times the noise left in it,
    ``sqrt(1 - a')`` (the clean output counts as ``a_last``, the schedule's last level). Small
    steps are below the bound; a large jump (few steps) would otherwise land a step sized for
    ``t`` in an almost noiseless latent.

    Args:
        rho: Step as a fraction of the noise level.
        a_t: ``alpha_bar`` at the current step.
        a_prev: ``alpha_bar`` ``a'`` of the latent the step produces (1: the clean output).
        sigma: DDIM noise of the update.
        a_last: ``alpha_bar`` of the schedule's last training timestep.
    """
    carry = math.sqrt(a_prev) - math.sqrt(max(1 - a_prev - sigma**2, 0.0) * a_t / (1 - a_t))
    return rho * min(math.sqrt((1 - a_t) / a_t), noise_left(a_prev, a_last) / max(carry, 1e-12))


def noise_left(a_prev: float, a_last: float) -> float:
    """Noise RMS ``sqrt(1 - a')`` of the latent a step produces; the clean output counts as the
    schedule's last level ``a_last``."""
    return math.sqrt(1 - min(a_prev, a_last))


def _guided_z0(prior: Prior, operator: Operator, y: Tensor, z: Tensor, level: Level,
               cond: Condition | None, gamma: float | None, vmc: bool,
               step_size: float | None = None,
               bound: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``eps``, a guided ``z0*`` (no UNet backprop) and the loss.

    ``z0* = z0_hat - gamma grad_{z0_hat} loss`` (each element of the step clipped to
    ``+-bound`` when given), or with ``gamma=None`` the :func:`normalized_step` of RMS
    ``step_size``.
    """
    with torch.no_grad():
        eps, z0 = denoise(prior, z, level, cond)
    z0 = z0.requires_grad_(True)
    loss = measurement_loss(prior, operator, y, z0, vmc)
    grad = _grad(loss, z0)
    step = (gamma * grad if gamma is not None
            else normalized_step(grad, step_size, operator.num_sources))
    if bound is not None:
        step = step.clamp(-bound, bound)
    return eps, (z0 - step).detach(), loss


def sample_mpgd(prior: Prior, operator: Operator, y: Tensor, *, steps: int,
                generator: torch.Generator, cond: Condition | None = None,
                callback: Callback | None = None,
                start: WarmStart | None = None, gamma: float = GAMMA,
                eta: float = DEFAULT_ETA["mpgd"],
                vmc: bool = True) -> Sample:
    """Manifold Preserving Guided Diffusion (He et al., ICLR 2024, Algorithm 2, MPGD w/o proj.).

    A gradient step on ``z0_hat`` (no UNet backprop), then DDIM with the UNet's own ``eps``.
    The step is unnormalised, and a log-spectral loss has spikes (bins near its floor), so each
    element of the step is clipped to the :func:`noise_left` after it, divided by
    ``sqrt(a')``: no step moves an element of ``z_{t-1}`` by more than the noise the later steps
    can still remove (without it one spike, or the last step, can blast the output).
    """
    a_last = prior.schedule.a_last

    def step(z: Tensor, level: Level, a_prev: float) -> tuple[Tensor, Tensor]:
        bound = noise_left(a_prev, a_last) / math.sqrt(a_prev)
        eps, z0_star, loss = _guided_z0(prior, operator, y, z, level, cond, gamma, vmc,
                                        bound=bound)
        noise = torch.randn(z.shape, generator=generator, device=z.device)
        return ddim_update(z0_star, eps, a_prev, ddim_sigma(level.alpha_bar, a_prev, eta),
                           noise), loss

    return _run("mpgd", prior, operator, y, steps, generator, step,
                {"gamma": gamma, "eta": eta, "vmc": vmc}, callback, start)


def sample_diffmusic(prior: Prior, operator: Operator, y: Tensor, *, steps: int,
                     generator: torch.Generator, cond: Condition | None = None,
                     callback: Callback | None = None,
                     start: WarmStart | None = None, rho: float = RHO,
                     gamma: float | None = None, eta: float = DEFAULT_ETA["diffmusic"],
                     vmc: bool = True) -> Sample:
    """DiffMusic (Liao, Pan & Yang, Algorithm 1): a guided ``z0*`` and the ``eps`` it implies.

    ``z0* = z0_hat - step(grad ||A(T(V(D(z0_hat)))) - y||^2)``, then
    ``eps_hat = (z_t - sqrt(a) z0*) / sqrt(1 - a)`` and a DDIM step with noise ``eta``. The step
    is the paper's ``gamma grad`` when ``gamma`` is given (with ``eta=0``: Algorithm 1 exactly),
    else the :func:`normalized_step` of size ``rho``.
    """

    a_last = prior.schedule.a_last

    def step(z: Tensor, level: Level, a_prev: float) -> tuple[Tensor, Tensor]:
        a_t = level.alpha_bar
        sigma = ddim_sigma(a_t, a_prev, eta)
        size = (None if gamma is not None else
                normalized_step_size(rho, a_t, a_prev, sigma, a_last))
        _, z0_star, loss = _guided_z0(prior, operator, y, z, level, cond, gamma, vmc, size)
        eps_hat = (z - math.sqrt(a_t) * z0_star) / math.sqrt(1 - a_t)
        noise = torch.randn(z.shape, generator=generator, device=z.device)
        return ddim_update(z0_star, eps_hat, a_prev, sigma, noise), loss

    settings = {"gamma": gamma, "eta": eta, "vmc": vmc}
    if gamma is None:
        settings = {"rho": rho, **settings}
    return _run("diffmusic", prior, operator, y, steps, generator, step, settings, callback,
                start)


SAMPLERS: dict[str, Callable[..., Sample]] = {
    "diffmusic": sample_diffmusic, "dps": sample_dps, "dsg": sample_dsg, "mpgd": sample_mpgd,
    "ddim": sample_ddim,
}
