"""The settings of a restoration: one frozen object, with the tuned defaults of a prior and task."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from diffmusic.names import AUTO_SAMPLER, CLIP_MODES, LEVEL_DB, SAMPLER_NAMES, STEP_SIZE
from diffmusic.restoration.tuned import Tuned, TunedSource, load_tuned

Prompts = str | Sequence[str | None] | None
"""A text prompt for every source, one per source, or ``None`` (the sources' names)."""


class SettingError(ValueError):
    """A setting out of range; :attr:`field` names it (the command line names its flag)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Settings:
    """How to restore: sampler, schedule, guidance, level, projection, output.

    ``None`` means "the tuned value of the prior and task" (:meth:`resolve`), else the sampler's
    own default.

    Attributes:
        sampler: One of :data:`diffmusic.names.SAMPLER_NAMES`, or ``auto``: the tuned file's
            choice for the task (:meth:`resolve`).
        steps: Sampling steps (at least 2).
        seed: Seed of the sampler's generator (window ``i`` of a recording uses ``seed + i``).
        step: The guidance step size of the sampler (:data:`diffmusic.names.STEP_SIZE`).
        gamma: DiffMusic only: the paper's plain step ``z0 - gamma grad`` instead of the
            normalised one.
        eta: DDIM noise of the sampler, in ``[0, 1]``.
        warm_start: Run only this fraction ``(0, 1]`` of the schedule, from the noised latent
            of the task's classical baseline (1: from noise).
        guidance_scale: Classifier-free guidance scale (1 or below: none).
        prompts: Text prompts or stem labels.
        negative_prompt: Prompt of the unconditional branch of classifier-free guidance.
        level_db: Sample at this RMS level in dBFS and scale back (``None``: the input's own).
        project: Apply the operator's measurement-consistency projection.
        similarity: Let the operator use what the rest of the measurement repeats
            (:meth:`~diffmusic.operators.Operator.with_similarity`; a recording is searched
            whole, before it is cut into windows).
        vmc: Guide through the vocoder and mel (the Vocoder-Mel Constraint); ``False``: the
            decoder's mel alone (the paper's ablation; guided samplers only).
        clip_mode: What an output that would pass full scale gets
            (:data:`diffmusic.names.CLIP_MODES`).
        tuned: Where the tuned defaults come from (:func:`diffmusic.restoration.tuned.load_tuned`).
    """

    sampler: str = AUTO_SAMPLER
    steps: int = 50
    seed: int = 0
    step: float | None = None
    gamma: float | None = None
    eta: float | None = None
    warm_start: float | None = None
    guidance_scale: float | None = None
    prompts: Prompts = None
    negative_prompt: str | None = None
    level_db: float | None = LEVEL_DB
    project: bool = True
    similarity: bool = True
    vmc: bool = True
    clip_mode: str = "rescale"
    tuned: TunedSource = None

    def __post_init__(self) -> None:
        auto = self.sampler == AUTO_SAMPLER  # checked again once resolved
        checks = {
            "sampler": (auto or self.sampler in SAMPLER_NAMES,
                        f"must be {AUTO_SAMPLER} or one of {', '.join(SAMPLER_NAMES)}, got "
                        f"{self.sampler!r}"),
            "steps": (self.steps >= 2, f"must be at least 2, got {self.steps}"),
            "step": (self.step is None or auto or self.sampler in STEP_SIZE,
                     f"does not apply: the {self.sampler} sampler takes no guidance step size"),
            "gamma": (self.gamma is None or auto or self.sampler == "diffmusic",
                      f"is the diffmusic sampler's plain step; {self.sampler} takes step"),
            "eta": (self.eta is None or 0 <= self.eta <= 1,
                    f"must be between 0 and 1, got {self.eta}"),
            "warm_start": (self.warm_start is None or 0 < self.warm_start <= 1,
                           f"must be in (0, 1], got {self.warm_start}"),
            "guidance_scale": (self.guidance_scale is None or math.isfinite(self.guidance_scale),
                               f"must be finite, got {self.guidance_scale}"),
            "vmc": (self.vmc or auto or self.sampler in STEP_SIZE,
                    f"applies to the guided samplers, not {self.sampler}"),
            "clip_mode": (self.clip_mode in CLIP_MODES,
                          f"must be one of {', '.join(CLIP_MODES)}, got {self.clip_mode!r}"),
        }
        for field, (ok, message) in checks.items():
            if not ok:
                raise SettingError(field, message)

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` (checked again)."""
        return replace(self, **changes)

    def explicit(self) -> dict:
        """The sampler keywords set here, by the sampler's own names."""
        values = {"gamma": self.gamma, STEP_SIZE.get(self.sampler): self.step, "eta": self.eta,
                  "warm_start": self.warm_start, "guidance_scale": self.guidance_scale}
        out = {key: value for key, value in values.items() if key and value is not None}
        return out if self.vmc else {**out, "vmc": False}

    def resolve(self, prior: str, task: str) -> Resolved:
        """The sampler (``auto``: the tuned choice for ``task``) and the tuned values of
        ``prior`` and ``task`` with the explicit ones on top.

        Raises:
            SettingError: A setting the chosen sampler does not take.
        """
        tuned = load_tuned(prior, self.tuned)
        if self.sampler == AUTO_SAMPLER:
            return self.replace(sampler=tuned.sampler(task)).resolve(prior, task)
        kwargs = {**tuned.kwargs(task, self.sampler), **self.explicit()}
        guidance_scale = kwargs.pop("guidance_scale", 1.0)
        warm_start = kwargs.pop("warm_start", 1.0)
        return Resolved(self.sampler, kwargs, guidance_scale, warm_start, tuned)

    @classmethod
    def from_keywords(cls, sampler: str, keywords: dict, **fields: object) -> Settings:
        """Settings of ``sampler`` from its keywords as a tuned file names them (the inverse
        of :meth:`explicit`); ``fields`` set the rest."""
        return cls(sampler=sampler, step=keywords.get(STEP_SIZE.get(sampler)),
                   gamma=keywords.get("gamma") if sampler == "diffmusic" else None,
                   eta=keywords.get("eta"), warm_start=keywords.get("warm_start"),
                   guidance_scale=keywords.get("guidance_scale"), **fields)


@dataclass(frozen=True)
class Resolved:
    """Settings of one task, ready for a sampler.

    Attributes:
        sampler: The sampler's name.
        kwargs: The sampler's keyword arguments.
        guidance_scale: Classifier-free guidance scale.
        warm_start: Fraction of the schedule to run.
        tuned: The tuned defaults that were read.
    """

    sampler: str
    kwargs: dict
    guidance_scale: float
    warm_start: float
    tuned: Tuned
