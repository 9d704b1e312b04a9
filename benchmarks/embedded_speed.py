"""Seconds per DiffMusic step and per 5.12 s restoration on the embedded prior, peak memory.

Each (threads, task) runs in a fresh process so that its peak RSS is its own. The clip is the
bundled demo clip; the sampler, steps and step sizes are the default ``Settings`` (the
shipped tuned file, whose warm starts run only the tail of the schedule). Seconds per step is
the sampler's own time divided by the steps it ran; the restoration time adds conditioning, the
warm start's baseline and encoding, the final decode and the projection.

Usage::

    python benchmarks/embedded_speed.py [--threads 1 2] [--steps 25] [--tasks inpainting ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def measure(task: str, steps: int, threads: int, dtype: str) -> dict:
    """One restoration of the demo clip; runs in this process."""
    import torch

    from diffmusic.operators import OPERATORS, SourceSeparation
    from diffmusic.priors import load_prior
    from diffmusic.restoration import Restorer, Settings
    from diffmusic.synth import demo_clip, synth_stems

    torch.set_num_threads(threads)
    prior = load_prior("embedded", dtype=getattr(torch, dtype))
    clip, _ = demo_clip()
    if OPERATORS[task] is SourceSeparation:
        stems = synth_stems(clip.shape[-1])
        operator = SourceSeparation(prior.sample_rate, clip.shape[-1], sources=list(stems))
        clean = torch.stack(list(stems.values()))[None]
    else:
        operator, clean = OPERATORS[task](prior.sample_rate, clip.shape[-1]), clip
    y = operator.degrade(clean)
    Restorer(prior, Settings(steps=2)).restore(operator, y)  # warm-up: allocate, pick kernels
    ran = []
    start = time.perf_counter()
    result = Restorer(prior, Settings(steps=steps)).restore(operator, y, callback=ran.append)
    total = time.perf_counter() - start
    return {"task": task, "threads": threads, "dtype": dtype, "steps": steps,
            "steps_run": len(ran), "s_per_step": result.record["seconds"] / len(ran),
            "s_restoration": total,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "settings": result.record["settings"]}


def main() -> None:
    """Run every (threads, task) in its own process and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--tasks", nargs="+", default=["inpainting", "super_resolution",
                                                       "phase_retrieval", "dereverberation",
                                                       "source_separation"])
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.threads[0], args.dtype)))
        return
    import torch

    print(f"torch {torch.__version__}, {platform.machine()}, {platform.processor() or '?'}, "
          f"embedded prior, {args.steps} steps, {args.dtype}", flush=True)
    for threads in args.threads:
        for task in args.tasks:
            out = subprocess.run([sys.executable, __file__, "--one", task, "--threads",
                                  str(threads), "--steps", str(args.steps), "--dtype",
                                  args.dtype], check=True, capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{task} threads {threads}: {row['s_per_step']:.3f} s/step "
                  f"({row['steps_run']} of {args.steps} steps run), "
                  f"{row['s_restoration']:.1f} s per 5.12 s restoration, "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB, settings {row['settings']}", flush=True)


if __name__ == "__main__":
    main()
