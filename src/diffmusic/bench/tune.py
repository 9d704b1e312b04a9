"""``diffmusic bench --tune``: pick each guided sampler's step size on a validation split.

For every task and guided sampler, every value of :data:`GRID` restores the validation clips;
the value with the best mean of the task's metric (:data:`METRIC`) wins. Then the sampler
whose choices score best becomes the task's default (``--sampler auto``). The choice is written
to ``RESULTS/tuned.json`` in the format of :mod:`diffmusic.restoration.tuned`, which the
benchmark (and, named by ``$DIFFMUSIC_TUNED`` or copied to ``diffmusic/assets/tuned/PRIOR.json``,
every restoration) reads as the samplers' defaults; every result row records its ``split``. The
benchmark's own clips are never used (the CLI refuses ``--tune-data`` or ``--tune-stems`` equal
to DATA or ``--stems``); source separation is tuned only when ``--tune-stems`` names validation
songs with stems.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from diffmusic.audio import AudioError
from diffmusic.bench.jobs import Job
from diffmusic.bench.options import BenchOptions, load_clips
from diffmusic.bench.run import RunConfig, Runner
from diffmusic.names import STEP_SIZE
from diffmusic.operators import TASKS
from diffmusic.samplers import DEFAULT_ETA, GAMMA, RHO

GRID: dict[str, tuple[float, ...]] = {
    "diffmusic": (RHO / 8, RHO / 4, RHO / 2, RHO, RHO * 2),
    "mpgd": (GAMMA / 1000, GAMMA / 100, GAMMA / 10, GAMMA, GAMMA * 10),
    "dps": (0.3, 1.0, 3.0, 10.0, 30.0),
    "dsg": (0.005, 0.01, 0.02, 0.05, 0.2, 0.5),
}
"""Guided sampler -> candidate values of its step size (:data:`diffmusic.names.STEP_SIZE`)
around its own default; a wider grid reuses the scores already in ``tuned.json``."""
GUIDANCE: dict[str, tuple[float, ...]] = {"source_separation": (2.0, 4.0)}
"""Task -> classifier-free guidance scales tried besides 1, at each sampler's chosen step size
(separation conditions every source on its stem class)."""
WARM_START: tuple[float, ...] = (0.5, 0.3, 0.15)
"""Warm-start strengths tried besides 1 (from noise) for every task, after the guidance scale:
the sampler then runs only that fraction of the schedule, from the noised latent of the task's
classical baseline."""
ETA: tuple[float, ...] = (0.0, 0.5, 1.0)
"""DDIM noise values tried last, besides the sampler's own default
(:data:`diffmusic.samplers.DEFAULT_ETA`), at the choices made before."""
METRIC: dict[str, tuple[str, int]] = {"source_separation": ("si_sdr", -1)}
"""Task -> (metric, sign) where ``sign * metric`` is minimised; other tasks minimise LSD."""


def _save(path: Path, content: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=1))
    os.replace(tmp, path)


def _previous(opts: BenchOptions, fresh: dict) -> dict:
    """The scores of an earlier run on the same split, steps and clips (else ``fresh``): a
    killed run's ``tuned.partial.json``, else a finished one's ``tuned.json``."""
    for name in ("tuned.partial.json", "tuned.json"):
        path = opts.out / name
        if path.is_file():
            old = json.loads(path.read_text())
            if all(old.get(k) == fresh[k] for k in ("prior", "split", "steps", "clips")):
                return old
    return fresh


def settings_text(choice: dict) -> str:
    """``"KEY=VALUE, ..."``: how score keys name the settings a value was scored at."""
    return ", ".join(f"{k}={v}" for k, v in choice.items())


def mean_score(runner: Runner, task: str, sampler: str, keywords: dict, clips: list) -> float:
    """Mean of the task's :data:`METRIC` (else LSD) over ``clips``, restored with the sampler
    ``keywords`` (a tuned file's names) instead of any tuned defaults."""
    rows = [runner.run([Job(c.name, task, sampler, 0)], c, keywords=keywords)[0] for c in clips]
    return float(np.mean([r[METRIC.get(task, ("lsd", 1))[0]] for r in rows]))


def best_value(task: str, means: dict[str, float], values: tuple[float, ...]) -> float:
    """The value of ``values`` whose mean score (``means[str(value)]``) is best for ``task``."""
    sign = METRIC.get(task, ("lsd", 1))[1]
    return min(values, key=lambda v: sign * means[str(v)])


def with_choice(choice: dict, key: str, value: float, neutral: float | None) -> dict:
    """``choice`` with ``key`` set to ``value``, or without ``key`` when ``value`` is the
    ``neutral`` one (the sampler's behaviour without it)."""
    rest = {k: v for k, v in choice.items() if k != key}
    return rest if value == neutral else {**rest, key: value}


def _follow_ups(task: str, sampler: str) -> list[tuple[str, float, tuple[float, ...]]]:
    """``(keyword, neutral value, values tried besides it)`` tuned after the step size, in order;
    ``eta``'s neutral value is the sampler's default."""
    knobs = [("guidance_scale", 1.0, GUIDANCE[task])] if task in GUIDANCE else []
    eta = DEFAULT_ETA[sampler]
    return [*knobs, ("warm_start", 1.0, WARM_START),
            ("eta", eta, tuple(v for v in ETA if v != eta))]


def _tune_task(task: str, samplers: list[str], runner: Runner, clips: Callable[[], list],
               tuned: dict, partial: Path, quiet: bool) -> None:
    """Each sampler's best step size of :data:`GRID`, then each of :func:`_follow_ups` in turn.

    Scores live in ``tuned["scores"][task]``, under the sampler's name for step sizes and under
    ``"SAMPLER KEYWORD at PARAM=VALUE[, ...]"`` (:func:`settings_text`) for a follow-up; ``tuned``
    is saved to ``partial`` after every value and choice; ``clips()`` loads the tuning clips.
    """
    scores = tuned["scores"].setdefault(task, {})
    metric = METRIC.get(task, ("lsd", 1))[0]

    def best(sampler: str, means: dict[str, float], key: str, values: tuple[float, ...],
             fixed: dict, desc: str) -> float:
        """Score the ``values`` of ``key`` not yet in ``means`` (with ``fixed``); the best one."""
        for value in tqdm([v for v in values if str(v) not in means], desc=desc, unit="value",
                          file=sys.stderr, disable=True if quiet else None):
            means[str(value)] = mean_score(runner, task, sampler, {**fixed, key: value},
                                           clips())
            _save(partial, tuned)
        return best_value(task, means, values)

    for sampler in samplers:
        param, values = STEP_SIZE[sampler], GRID[sampler]
        means = scores.setdefault(sampler, {})
        step = best(sampler, means, param, values, {}, f"tune {task} {sampler}")
        choice, score = {param: step}, means[str(step)]
        for key, neutral, tried in _follow_ups(task, sampler):
            k_means = scores.setdefault(f"{sampler} {key} at {settings_text(choice)}",
                                        {str(neutral): score})
            value = best(sampler, k_means, key, (neutral, *tried), choice,
                         f"tune {task} {sampler} {key}")
            score = k_means[str(value)]
            choice = with_choice(choice, key, value, neutral)
        tuned["metric"][task] = metric
        tuned["per_task"].setdefault(task, {})[sampler] = choice
        scores.setdefault("default sampler", {})[sampler] = score
        _save(partial, tuned)
    choose_sampler(task, tuned)


def choose_sampler(task: str, tuned: dict) -> str:
    """The sampler whose score at its tuned settings (``tuned["scores"][task]["default
    sampler"]``) is best: ``auto``'s choice, stored in ``tuned["default_sampler"][task]``."""
    means = tuned["scores"][task]["default sampler"]
    sign = METRIC.get(task, ("lsd", 1))[1]
    best = min([s for s in tuned["per_task"][task] if s in means], key=lambda s: sign * means[s])
    tuned.setdefault("default_sampler", {})[task] = best
    return best


def tune(opts: BenchOptions, config: RunConfig) -> Path:
    """Tune on ``opts.tune_data`` and write ``opts.out / "tuned.json"``; returns its path.

    A killed run resumes from ``tuned.partial.json``, and a wider :data:`GRID` scores only its
    new values (when split, steps and clip limit are unchanged).
    """
    assert opts.tune_data is not None
    samplers = [s for s in GRID if opts.methods is None or s in opts.methods
                or (s == "diffmusic" and "diffmusic_raw" in opts.methods)]
    tune_opts = replace(opts, data=opts.tune_data, stems=opts.tune_stems,
                        limit=opts.tune_limit or opts.limit)
    runner = Runner(replace(config, embedding=None, audio_dir=None, tuned=False))
    partial = opts.out / "tuned.partial.json"
    split = ", ".join(str(p) for p in (opts.tune_data, opts.tune_stems) if p is not None)
    tuned = _previous(opts, {"prior": runner.prior.name, "split": split,
                             "metric": {}, "steps": opts.steps, "clips": tune_opts.limit,
                             "per_task": {}, "scores": {}})
    for task in opts.tasks or TASKS:
        clips = functools.cache(lambda t=task: load_clips(tune_opts, [t])[t])
        try:
            _tune_task(task, samplers, runner, clips, tuned, partial, opts.quiet)
        except (AudioError, FileNotFoundError, NotADirectoryError):
            if not any(tuned["scores"].get(task, {}).values()):
                tuned["scores"].pop(task, None)  # no clips for this task: nothing was scored
    path = opts.out / "tuned.json"
    _save(path, tuned)
    partial.unlink(missing_ok=True)
    return path
