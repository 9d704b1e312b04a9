"""Benchmark jobs: one ``(clip, task, method, seed)`` each, and the methods of every task."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from diffmusic.operators import OPERATORS, TASKS

DIFFUSION_METHODS: dict[str, tuple[str, bool]] = {
    "dps": ("dps", True), "dsg": ("dsg", True), "mpgd": ("mpgd", True),
    "diffmusic": ("diffmusic", True), "diffmusic_raw": ("diffmusic", False),
}
"""Diffusion method -> (sampler, projection)."""


@dataclass(frozen=True, order=True)
class Job:
    """One cell of the benchmark: restore ``clip`` degraded by ``task`` with ``method``."""

    clip: str
    task: str
    method: str
    seed: int

    @property
    def key(self) -> tuple[str, str, str, int]:
        """The store's unique key."""
        return (self.clip, self.task, self.method, self.seed)


def split_task(name: str) -> tuple[str, dict[str, float | str]]:
    """A task name, or a variant ``task[option=value;...]`` (task options, numbers or words,
    e.g. ``inpainting[gap_length=0.5]``, ``denoising[snr=10;noise=pink]``), as
    ``(task, options)``.

    Raises:
        ValueError: An unknown task or a malformed variant.
    """
    task, _, rest = name.partition("[")
    if task not in OPERATORS or (rest and not rest.endswith("]")):
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    options = {}
    for item in filter(None, rest[:-1].split(";")):
        key, _, value = item.partition("=")
        if key not in OPERATORS[task].options:
            raise ValueError(f"{task} takes no option {key!r}")
        try:
            number = float(value)
        except ValueError:
            if not value.isidentifier():
                raise ValueError(f"{task}: {key}={value!r} is neither a number nor a "
                                 "word") from None
            options[key] = value
            continue
        options[key] = int(number) if number.is_integer() and "." not in value else number
    return task, options


def variant(task: str, **options: float | str) -> str:
    """The name :func:`split_task` reads back."""
    inner = ";".join(f"{key}={value:g}" if isinstance(value, (int, float)) else
                     f"{key}={value}" for key, value in options.items())
    return f"{task}[{inner}]" if inner else task


def task_methods(task: str) -> tuple[str, ...]:
    """Every method of ``task`` (or a variant): its operator's baselines, then the diffusion
    methods."""
    return OPERATORS[split_task(task)[0]].baseline_names + tuple(DIFFUSION_METHODS)


def all_methods() -> list[str]:
    """Every method name of every task, in table order."""
    names = [m for t in TASKS for m in OPERATORS[t].baseline_names]
    return list(dict.fromkeys(names + list(DIFFUSION_METHODS)))


def plan(clips: dict[str, Sequence[str]], methods: Sequence[str] | None, seeds: int) -> list[Job]:
    """All jobs for ``clips`` (task -> clip names), ``methods`` (``None``: all) and ``seeds``.

    Classical baselines are deterministic and run with seed 0 only; diffusion methods run with
    seeds ``0 .. seeds - 1``.
    """
    jobs = []
    for task, names in clips.items():
        for method in task_methods(task):
            if methods is not None and method not in methods:
                continue
            method_seeds = range(seeds) if method in DIFFUSION_METHODS else range(1)
            jobs += [Job(c, task, method, s) for c in names for s in method_seeds]
    return jobs


def group(jobs: Iterable[Job]) -> list[list[Job]]:
    """Jobs in runnable groups: ``diffmusic`` and ``diffmusic_raw`` of one clip, task and seed
    share one sampling run (the raw output is the sample before projection)."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        shared = DIFFUSION_METHODS.get(job.method, (job.method,))[0]
        groups.setdefault((job.clip, job.task, shared, job.seed), []).append(job)
    return list(groups.values())
