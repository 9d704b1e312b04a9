"""Blind dereverberation on validation clips, each in its own simulated room.

``diffmusic bench --tasks 'dereverberation[room=0.5]'`` puts every clip in the room of one seed;
here clip ``i`` is convolved with the shoebox room of seed ``i`` (pyroomacoustics, direct path
at time 0), and the reverberant input, WPE, the Wiener suppression of the room read from the
recording, and DiffMusic (embedded prior, the shipped defaults) are scored against the dry clip,
with the paired difference of DiffMusic and WPE (mean ± standard error).

Usage::

    .venv/bin/python benchmarks/blind_rooms.py /work/val/test_clips --rooms 0.5 1.0 --steps 25
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from diffmusic.bench.datasets import audio_clips
from diffmusic.metrics import lsd, si_sdr
from diffmusic.operators import Dereverberation
from diffmusic.priors import cached_prior
from diffmusic.restoration import Settings, restore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="folder of clips (diffmusic.bench.datasets.audio_clips)")
    parser.add_argument("--rooms", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    prior = cached_prior("embedded", "cpu", "float32")
    clips = audio_clips(args.data)
    for room in args.rooms:
        rows: dict[str, list[tuple[float, float]]] = {}
        seconds = []
        for i, clip in enumerate(clips):
            x = clip.wave[None]
            operator = Dereverberation(prior.sample_rate, x.shape[-1], room=room, seed=i)
            y = operator.degrade(x)
            began = time.perf_counter()
            result = restore(prior, operator, y, Settings(steps=args.steps, seed=0))
            seconds.append(time.perf_counter() - began)
            outputs = {"reverberant": y, "wpe": operator.baseline(y, "wpe"),
                       "wiener": operator.baseline(y), "diffmusic": result.wave}
            for name, wave in outputs.items():
                rows.setdefault(name, []).append((float(lsd(wave[0], x[0])),
                                                  float(si_sdr(wave[0], x[0]))))
            print(f"room {room:g} s, clip {i}: RT60 per band",
                  [round(v, 2) for v in result.record["operator"]["band_rt60"][0]], flush=True)
        table = {name: np.array(values) for name, values in rows.items()}
        diff = table["diffmusic"] - table["wpe"]
        error = diff.std(0, ddof=1) / np.sqrt(len(diff))
        print(f"room {room:g} s, {len(clips)} clips (LSD / SI-SDR dB): "
              + " | ".join(f"{k} {v[:, 0].mean():.3f} / {v[:, 1].mean():.2f}"
                           for k, v in table.items())
              + f" | diffmusic - wpe: LSD {diff[:, 0].mean():+.3f} ± {error[0]:.3f}, "
                f"SI-SDR {diff[:, 1].mean():+.2f} ± {error[1]:.2f} | "
                f"{np.mean(seconds):.1f} s per clip", flush=True)


if __name__ == "__main__":
    main()
