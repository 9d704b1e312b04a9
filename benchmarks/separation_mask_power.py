"""SI-SDRi of the separation projection at several mask powers, from the same raw estimates.

For every song window of a MUSDB-style folder (tuning split, please: this chooses a default),
the sampler runs once with the shipped defaults and without projection; its raw estimates are
then projected with ``SourceSeparation(mask_power=p)`` for each ``p``, and scored like the
benchmark (``bench.run.score``: mean SI-SDRi over the non-silent stems). The masking baseline is
printed alongside.

Usage::

    python benchmarks/separation_mask_power.py runs/bench4/splits/tune/stems \\
        [--samplers diffmusic dsg] [--powers 0.5 0.75 1 1.5 2] [--steps 25]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch


def main() -> None:
    """Print one JSON object: per method, the mean and per-window SI-SDRi."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stems")
    parser.add_argument("--samplers", nargs="+", default=["diffmusic", "dsg"])
    parser.add_argument("--powers", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5, 2.0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prior", default="embedded")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from diffmusic.bench.datasets import stem_clips
    from diffmusic.operators import SourceSeparation
    from diffmusic.priors import load_prior
    from diffmusic.restoration import Restorer, Settings

    prior = load_prior(args.prior)
    scores: dict[str, list[float]] = {}
    for clip in stem_clips(args.stems):
        reference = clip.wave
        operators = {p: SourceSeparation(prior.sample_rate, reference.shape[-1],
                                         sources=list(clip.sources), mask_power=p)
                     for p in args.powers}
        any_op = operators[args.powers[0]]
        y = any_op(reference[None])
        scores.setdefault("masking", []).append(
            any_op.score(any_op.masking(y)[0], reference, y[0])["si_sdri"])
        for sampler in args.samplers:
            settings = Settings(sampler=sampler, steps=args.steps, project=False)
            raw = Restorer(prior, settings).restore(any_op, y).raw
            for p, op in operators.items():
                scores.setdefault(f"{sampler} p={p:g}", []).append(
                    op.score(op.project(raw, y)[0], reference, y[0])["si_sdri"])
    print(json.dumps({name: {"mean": round(statistics.fmean(v), 2),
                             "windows": [round(x, 2) for x in v]}
                      for name, v in scores.items()}, indent=1))


if __name__ == "__main__":
    main()
