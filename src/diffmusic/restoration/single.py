"""One window from a measurement to a restoration: conditioning, level, sampling, projection,
record."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from diffmusic.operators import Operator
from diffmusic.priors.base import Prior
from diffmusic.restoration.settings import Prompts, Settings
from diffmusic.samplers import SAMPLERS, Callback, WarmStart, to_latent_layout

MAX_GAIN_DB = 40.0
"""Largest boost or cut of the level normalisation (near-silent measurements stay quiet)."""


@dataclass
class Restoration:
    """Result of :func:`restore`.

    Attributes:
        wave: Restored audio, ``(B, N)`` or ``(B, K, N)``; projected unless disabled.
        raw: The sampler's output before projection, same shape.
        record: JSON-ready record: sampler, settings, seed, prior, operator spec, seconds,
            per-step losses and the final measurement loss of ``wave`` and ``raw``.
    """

    wave: Tensor
    raw: Tensor
    record: dict


def expand_prompts(prompts: Prompts, operator: Operator, batch: int) -> list[str | None]:
    """One prompt per latent (``B * K``): a string for all, a list per source, or the labels.

    For multi-source operators without prompts each source is conditioned on its own name.
    """
    k = operator.num_sources
    if prompts is None:
        per_source = list(operator.sources or [None] * k)
    elif isinstance(prompts, str):
        per_source = [prompts] * k
    else:
        per_source = list(prompts)
        if len(per_source) != k:
            raise ValueError(f"got {len(per_source)} prompts for {k} sources")
    return per_source * batch


def level_gain_db(operator: Operator, y: Tensor, level_db: float | None,
                  channels: int = 1) -> Tensor:
    """Per-item gain in dB that brings ``y`` to ``level_db`` dBFS (zeros for ``None``), ``(B,)``.

    Items restored jointly by a prior of ``channels`` channels (groups of consecutive items,
    the channels of one recording) share one gain, from their mean power: the prior sees the
    recording's own balance between its channels.
    """
    if level_db is None:
        return torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
    power = operator.level(y).pow(2).reshape(-1, channels).mean(1, keepdim=True)
    level = 10 * torch.log10(power.clamp_min(1e-20)).expand(-1, channels).reshape(-1)
    return (level_db - level).clamp(-MAX_GAIN_DB, MAX_GAIN_DB)


def _per_item(gain: Tensor, like: Tensor) -> Tensor:
    return gain.to(like.dtype).view(-1, *[1] * (like.dim() - 1))


def warm_start_from_baseline(prior: Prior, operator: Operator, y: Tensor,
                             strength: float) -> WarmStart | None:
    """A :class:`WarmStart` from the latent of the operator's default classical baseline.

    Args:
        prior: The diffusion prior (its ``encode`` makes the latent).
        operator: The measurement operator.
        y: Measurements ``(B, ...)`` at the level the sampler sees.
        strength: Fraction of the schedule to run, in ``(0, 1]``; 1: no warm start (``None``).

    Raises:
        ValueError: For a strength outside ``(0, 1]``.
    """
    if strength == 1:
        return None
    with torch.no_grad():
        init = operator.baseline(y)
        return WarmStart(prior.encode(to_latent_layout(init, operator, prior.channels)),
                         strength)


def restore(prior: Prior, operator: Operator, y: Tensor, settings: Settings,
            callback: Callback | None = None) -> Restoration:
    """Restore measurements ``y`` (batch ``B``) with a sampler and the operator's projection.

    The operator first reads what it needs from the measurement
    (:meth:`~diffmusic.operators.Operator.fitted`). With ``settings.similarity`` it then looks
    for what the measurement repeats
    (:meth:`~diffmusic.operators.Operator.with_similarity`; an operator searched already, as a
    recording's windows are, keeps its matches).

    Args:
        prior: The diffusion prior.
        operator: The measurement operator, built for ``prior.sample_rate``.
        y: Measurements, ``(B, ...)``.
        settings: Sampler, steps, seed, guidance, level, projection and similarity; tunable
            values left ``None`` come from the tuned defaults of the prior and the operator's
            task.
        callback: Progress callback, see :data:`diffmusic.samplers.Callback`.

    Raises:
        ValueError: An operator at another rate than the prior's.
    """
    if operator.sample_rate != prior.sample_rate:
        raise ValueError(f"operator at {operator.sample_rate} Hz but prior at "
                         f"{prior.sample_rate} Hz")
    operator = operator.fitted(y)
    if settings.similarity:
        operator, y = operator.with_similarity(y)
    generator = torch.Generator(device=prior.device).manual_seed(settings.seed)
    resolved = settings.resolve(prior.name, operator.task)
    cond = prior.condition(expand_prompts(settings.prompts, operator,
                                          y.shape[0] // prior.channels),
                           resolved.guidance_scale, settings.negative_prompt)
    dc = operator.dc_offset(y)
    offset = 0.0 if dc is None else dc * torch.ones(operator.num_samples, dtype=y.dtype,
                                                     device=y.device)
    with torch.no_grad():
        y_ac = y if dc is None else y - operator(offset)
    gain_db = level_gain_db(operator, y_ac, settings.level_db, prior.channels)
    gain = 10 ** (gain_db / 20)
    y_in = y_ac * _per_item(gain, y_ac)
    at_level = operator.rescaled(gain)
    start = warm_start_from_baseline(
        prior, at_level if settings.similarity else at_level.without_similarity(), y_in,
        resolved.warm_start)
    sample = SAMPLERS[resolved.sampler](prior, at_level, y_in, steps=settings.steps,
                                        generator=generator, cond=cond, callback=callback,
                                        start=start, **resolved.kwargs)
    raw = sample.wave.float() / _per_item(gain, sample.wave) + offset
    with torch.no_grad():
        wave = operator.project(raw, y) if settings.project else raw
        raw_loss = operator.loss(raw, y)
        final_loss = operator.loss(wave, y) if settings.project else raw_loss
    record = {**sample.record.to_dict(), "sampler_choice": settings.sampler,
              "prior": prior.describe(), "operator": operator.spec(),
              "estimates": operator.estimates(),
              "prompts": settings.prompts, "guidance_scale": resolved.guidance_scale,
              "negative_prompt": settings.negative_prompt, "projection": settings.project,
              "tuned_defaults": resolved.tuned.describe(),
              "level": {"target_dbfs": settings.level_db,
                        "gain_db": gain_db.tolist(),
                        "dc_offset": None if dc is None else dc[:, 0].tolist()},
              "final_loss": final_loss.tolist(), "raw_loss": raw_loss.tolist()}
    return Restoration(wave, raw, record)
