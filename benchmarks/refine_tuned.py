"""Re-choose one follow-up setting of a tuned file on more tuning clips, for every method alike.

``diffmusic bench --tune`` scores everything on ``--tune-limit`` clips per task; with few clips a
follow-up choice (``warm_start``, ``guidance_scale``) can be noise. This script scores the
``VALUES`` of ``KEY`` for each diffusion method of the tuned file at its other tuned settings, on
up to ``--clips`` clips of the tuning split (never the benchmark's own), records the means
under ``scores[TASK]["METHOD KEY at SETTINGS (N clips)"]`` and replaces the method's choice by
the best value (a ``--neutral`` value is dropped from the choice, as the tuner does). ``KEY``
may also be a step size (``rho``, ``guidance_rate``...), re-chosen at the other settings.

Usage::

    python benchmarks/refine_tuned.py runs/bench4/tuned.json --task source_separation \\
        --key warm_start --values 1 0.5 0.3 0.15 --neutral 1 --clips 8 \\
        --tune-data runs/bench4/splits/tune/music --tune-stems runs/bench4/splits/tune/stems
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    """Score, choose, rewrite the tuned file."""
    import torch

    from diffmusic.bench.options import BenchOptions, load_clips
    from diffmusic.bench.run import RunConfig, Runner
    from diffmusic.bench.tune import METRIC, best_value, mean_score, settings_text, with_choice

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tuned", type=Path)
    parser.add_argument("--task", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--values", type=float, nargs="+", required=True)
    parser.add_argument("--neutral", type=float,
                        help="the value that means 'off' (dropped from the choice when best)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=None,
                        help="diffusion methods to refine (default: all in the tuned file); "
                             "processes refining different methods may share one file")
    parser.add_argument("--tune-data", type=Path, required=True)
    parser.add_argument("--tune-stems", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tuned = json.loads(args.tuned.read_text())
    opts = BenchOptions(data=args.tune_data, stems=args.tune_stems, out=args.tuned.parent,
                        prior=tuned["prior"], steps=tuned["steps"], limit=args.clips,
                        quiet=True)
    clips = load_clips(opts, [args.task])[args.task]
    runner = Runner(RunConfig(prior=tuned["prior"], steps=tuned["steps"], embedding=None,
                              tuned=False))
    metric = METRIC.get(args.task, ("lsd", 1))[0]
    choices = tuned["per_task"][args.task]
    for method in args.methods or list(choices):
        fixed = {k: v for k, v in choices[method].items() if k != args.key}
        at = settings_text(fixed)
        means = {}
        for value in args.values:
            means[str(value)] = mean_score(runner, args.task, method, {**fixed, args.key: value},
                                           clips)
            print(f"{args.task} {method} {at} {args.key}={value}: {metric} "
                  f"{means[str(value)]:.4f} over {len(clips)} clips", flush=True)
        best = best_value(args.task, means, tuple(args.values))
        latest = json.loads(args.tuned.read_text())  # other processes may refine other methods
        latest["scores"][args.task][f"{method} {args.key} at {at} ({len(clips)} clips)"] = means
        latest["per_task"][args.task][method] = with_choice(fixed, args.key, best, args.neutral)
        args.tuned.write_text(json.dumps(latest, indent=1))
        print(json.dumps({method: latest["per_task"][args.task][method]}), flush=True)


if __name__ == "__main__":
    main()
