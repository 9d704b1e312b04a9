"""One call from a measurement to a restoration: conditioning, sampling, projection, record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from diffmusic.names import LEVEL_DB
from diffmusic.operators import Operator
from diffmusic.priors.base import Prior
from diffmusic.samplers import SAMPLERS, Callback, WarmStart
from diffmusic.tuning import TunedSource, load_tuned

Prompts = str | Sequence[str | None] | None
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
        per_source = list(getattr(operator, "sources", [None] * k))
    elif isinstance(prompts, str):
        per_source = [prompts] * k
    else:
        per_source = list(prompts)
        if len(per_source) != k:
            raise ValueError(f"got {len(per_source)} prompts for {k} sources")
    return per_source * batch


def level_gain_db(operator: Operator, y: Tensor, level_db: float | None) -> Tensor:
    """Per-item gain in dB that brings ``y`` to ``level_db`` dBFS (zeros for ``None``), ``(B,)``."""
    if level_db is None:
        return torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
    level = 20 * torch.log10(operator.level(y).clamp_min(1e-10))
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
        return WarmStart(prior.encode(init.reshape(-1, init.shape[-1])), strength)


def restore(prior: Prior, operator: Operator, y: Tensor, *, sampler: str = "diffmusic",
            steps: int = 50, seed: int = 0, prompts: Prompts = None,
            guidance_scale: float | None = None, negative_prompt: str | None = None,
            project: bool = True, callback: Callback | None = None,
            tuned: TunedSource = None, level_db: float | None = LEVEL_DB,
            warm_start: float | None = None, **sampler_kwargs) -> Restoration:
    """Restore measurements ``y`` (batch ``B``) with a sampler and the operator's projection.

    Args:
        prior: The diffusion prior.
        operator: The measurement operator, built for ``prior.sample_rate``.
        y: Measurements, ``(B, ...)``.
        sampler: One of :data:`diffmusic.samplers.SAMPLERS`.
        steps: Number of sampling steps (at least 2).
        seed: Seed of the sampler's generator (recorded).
        prompts: Text prompts / stem labels (see :func:`expand_prompts`).
        guidance_scale: Classifier-free guidance scale (1: no guidance; ``None``: the tuned
            ``guidance_scale`` of the task and sampler, else 1).
        negative_prompt: Prompt of the unconditional branch of classifier-free guidance.
        project: Apply :meth:`Operator.project` to the sampler's output.
        callback: Progress callback, see :data:`diffmusic.samplers.Callback`.
        tuned: Where defaults of the sampler's hyper-parameters come from (see
            :func:`diffmusic.tuning.load_tuned`; ``False``: the sampler's own defaults).
        level_db: Sample at this RMS level (dBFS, estimated by :meth:`Operator.level`) and
            scale the result back, so quiet and loud recordings meet the prior at the level
            it knows; ``None`` samples at the measurement's own level.
        warm_start: Run only this fraction of the schedule, starting from the noised latent
            of the operator's classical baseline (:class:`diffmusic.samplers.WarmStart`); 1:
            from pure noise; ``None``: the task's tuned ``warm_start``, else 1.
        **sampler_kwargs: Sampler hyper-parameters (``gamma``, ``zeta``, ``guidance_rate``...);
            they override the tuned defaults.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    if operator.sample_rate != prior.sample_rate:
        raise ValueError(f"operator at {operator.sample_rate} Hz but prior at "
                         f"{prior.sample_rate} Hz")
    generator = torch.Generator(device=prior.device).manual_seed(seed)
    defaults = load_tuned(prior.name, tuned)
    kwargs = {**defaults.kwargs(operator.task, sampler), **sampler_kwargs}
    tuned_scale = kwargs.pop("guidance_scale", 1.0)
    guidance_scale = tuned_scale if guidance_scale is None else guidance_scale
    tuned_strength = kwargs.pop("warm_start", 1.0)
    warm_start = tuned_strength if warm_start is None else warm_start
    cond = prior.condition(expand_prompts(prompts, operator, y.shape[0]), guidance_scale,
                           negative_prompt)
    dc = operator.dc_offset(y)
    offset = 0.0 if dc is None else dc * torch.ones(operator.num_samples, dtype=y.dtype,
                                                     device=y.device)
    with torch.no_grad():
        y_ac = y if dc is None else y - operator(offset)
    gain_db = level_gain_db(operator, y_ac, level_db)
    gain = 10 ** (gain_db / 20)
    y_in = y_ac * _per_item(gain, y_ac)
    start = warm_start_from_baseline(prior, operator, y_in, warm_start)
    sample = SAMPLERS[sampler](prior, operator, y_in, steps=steps, generator=generator,
                               cond=cond, callback=callback, start=start, **kwargs)
    raw = sample.wave.float() / _per_item(gain, sample.wave) + offset
    with torch.no_grad():
        wave = operator.project(raw, y) if project else raw
        raw_loss = operator.loss(raw, y)
        final_loss = operator.loss(wave, y) if project else raw_loss
    record = {**sample.record.to_dict(), "prior": prior.describe(), "operator": operator.spec(),
              "prompts": prompts, "guidance_scale": guidance_scale,
              "negative_prompt": negative_prompt, "projection": project,
              "tuned_defaults": defaults.describe(),
              "level": {"target_dbfs": level_db,
                        "gain_db": gain_db.tolist(),
                        "dc_offset": None if dc is None else dc[:, 0].tolist()},
              "final_loss": final_loss.tolist(), "raw_loss": raw_loss.tolist()}
    return Restoration(wave, raw, record)
