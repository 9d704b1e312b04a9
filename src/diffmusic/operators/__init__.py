"""Measurement operators ``A``, one class per restoration task (DESIGN.md section 3)."""

from __future__ import annotations

from diffmusic.operators.base import Operator
from diffmusic.operators.declipping import Declipping
from diffmusic.operators.denoising import Denoising
from diffmusic.operators.dereverberation import Dereverberation, synthetic_rir
from diffmusic.operators.inpainting import Inpainting, make_gaps
from diffmusic.operators.phase_retrieval import PhaseRetrieval
from diffmusic.operators.source_separation import STEMS, SourceSeparation
from diffmusic.operators.super_resolution import SuperResolution

OPERATORS: dict[str, type[Operator]] = {
    cls.task: cls
    for cls in (Inpainting, SuperResolution, PhaseRetrieval, SourceSeparation, Dereverberation,
                Declipping, Denoising)
}
TASKS = tuple(OPERATORS)


def from_spec(spec: dict) -> Operator:
    """Rebuild the exact operator :meth:`Operator.spec` described."""
    args = dict(spec)
    task = args.pop("task", None)
    if task not in OPERATORS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return OPERATORS[task](**args)


__all__ = [
    "OPERATORS", "STEMS", "TASKS", "Declipping", "Denoising", "Dereverberation", "Inpainting",
    "Operator", "PhaseRetrieval", "SourceSeparation", "SuperResolution", "from_spec",
    "make_gaps", "synthetic_rir",
]
