"""Level of few-step restorations: peak and RMS of the demo clip restored at 2, 4, 8 and 25 steps.

The measurement is the bundled demo clip degraded by each task (as ``diffmusic degrade clip.wav
--task TASK`` does); every restoration uses the default ``Settings`` (the shipped tuned file,
projection on), as ``diffmusic restore MEAS -o OUT --steps N`` does. Printed: the output's peak,
its RMS over the clean clip's (the ``RMS x`` of the fresh-machine issue) and its level in dB
against the 25-step run.

Usage::

    python benchmarks/few_steps.py [--tasks super_resolution ...] [--samplers diffmusic ...]
"""

from __future__ import annotations

import argparse
import math

import torch

from diffmusic.operators import OPERATORS, TASKS
from diffmusic.priors import load_prior
from diffmusic.restoration import Restorer, Settings
from diffmusic.samplers import SAMPLERS
from diffmusic.synth import demo_clip

STEPS = (2, 4, 8, 25)


def rms(wave: torch.Tensor) -> float:
    return float(wave.pow(2).mean().sqrt())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    args = parser.parse_args()
    prior = load_prior("embedded")
    clip = demo_clip(prior.window, prior.sample_rate)[0]
    print("| task | sampler | " + " | ".join(f"{s} steps: peak, RMS x, dB vs 25" for s in STEPS)
          + " |")
    print("|---|---|" + "---|" * len(STEPS))
    for task in args.tasks:
        extra = {"sources": ["vocals", "drums"]} if task == "source_separation" else {}
        operator = OPERATORS[task](prior.sample_rate, prior.window, **extra)
        clean = (torch.stack([clip, clip.roll(prior.sample_rate // 3, -1)], 1)
                 if operator.num_sources > 1 else clip)
        y = operator.degrade(clean, torch.Generator().manual_seed(0))
        for sampler in args.samplers:
            waves = {steps: Restorer(prior, Settings(sampler=sampler, steps=steps))
                     .restore(operator, y).wave for steps in STEPS}
            cells = [f"{float(w.abs().max()):.2f}, {rms(w) / rms(clean):.2f}x, "
                     f"{20 * math.log10(rms(w) / rms(waves[25])):+.1f}"
                     for w in waves.values()]
            print(f"| {task} | {sampler} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
