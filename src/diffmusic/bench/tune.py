"""``diffmusic bench --tune``: pick each guided sampler's step size on a validation split.

For every task and guided sampler, every value of :data:`GRID` restores the validation clips;
the value with the lowest mean LSD wins. The choice is written to ``RESULTS/tuned.json``
(``{"split", "metric", "per_task": {task: {sampler: {param: value}}}, "scores"}``), which the
benchmark reads as the samplers' defaults and whose ``split`` every result row records.
The benchmark's own clips are never used (the CLI refuses ``--tune-data`` equal to DATA).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diffmusic.audio import AudioError
from diffmusic.bench.jobs import Job
from diffmusic.bench.run import RunConfig, Runner
from diffmusic.operators import TASKS

if TYPE_CHECKING:
    from diffmusic.bench.main import BenchOptions

GRID: dict[str, tuple[str, tuple[float, ...]]] = {
    "diffmusic": ("gamma", (0.3, 1.0, 3.0)), "mpgd": ("gamma", (0.3, 1.0, 3.0)),
    "dps": ("zeta", (0.3, 1.0, 3.0)), "dsg": ("guidance_rate", (0.05, 0.2, 0.5)),
}
"""Sampler -> (step-size keyword, candidate values)."""


def load_defaults(path: str | Path) -> tuple[dict[str, dict[str, dict]], str | None]:
    """Per task sampler keyword arguments and the split they were tuned on, from ``tuned.json``."""
    tuned = json.loads(Path(path).read_text())
    return tuned["per_task"], tuned.get("split")


def tune(opts: BenchOptions, config: RunConfig) -> Path:
    """Tune on ``opts.tune_data`` and write ``opts.out / "tuned.json"``; returns its path."""
    from diffmusic.bench.main import load_clips

    assert opts.tune_data is not None
    samplers = [s for s in GRID if opts.methods is None or s in opts.methods
                or (s == "diffmusic" and "diffmusic_raw" in opts.methods)]
    tune_opts = replace(opts, data=opts.tune_data, stems=None)
    runner = Runner(replace(config, embedding=None, audio_dir=None, sampler_kwargs={}))
    per_task: dict[str, dict] = {}
    scores: dict[str, dict] = {}
    for task in opts.tasks or TASKS:
        try:
            clips = load_clips(tune_opts, [task])[task]
        except (AudioError, FileNotFoundError, NotADirectoryError):
            continue
        for sampler in samplers:
            param, values = GRID[sampler]
            lsds = {}
            for value in values:
                runner.config.sampler_kwargs = {task: {sampler: {param: value}}}
                rows = [runner.run([Job(c.name, task, sampler, 0)], c)[0] for c in clips]
                lsds[value] = float(np.mean([r["lsd"] for r in rows]))
            best = min(lsds, key=lsds.get)
            per_task.setdefault(task, {})[sampler] = {param: best}
            scores.setdefault(task, {})[sampler] = {str(v): s for v, s in lsds.items()}
    path = opts.out / "tuned.json"
    path.write_text(json.dumps({"split": str(opts.tune_data), "metric": "lsd", "steps": opts.steps,
                                "clips": opts.limit, "per_task": per_task, "scores": scores},
                               indent=1))
    return path


__all__ = ["GRID", "load_defaults", "tune"]
