"""Time and peak memory of restoring long 44.1 kHz stereo recordings (the library path of
``diffmusic restore FILE --task TASK``: :meth:`diffmusic.restoration.Restorer.restore_recording`).

Each run is a fresh process (so that its peak RSS is its own; the prior is loaded before the
clock starts) on a synthetic music-like song of the given length: ``inpainting`` with three
0.3 s gaps (windows only around the gaps; the rest is copied), ``dereverberation`` (windows
over the whole song, overlap-added), which shows the cost per second of audio, and
``super_resolution`` (factor 2, on the song low-passed at 4 kHz; output at 44.1 kHz). Also checks
that inpainting keeps every sample outside the gaps' 5 ms crossfades bit for bit, and how far the
super-resolved output departs from the input below the cutoff.

Usage::

    .venv/bin/python benchmarks/long_audio.py --seconds 30 90 180 --steps 2 --prior tiny
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import julius
import numpy as np
import soundfile as sf
import torch

RATE = 44100
FADE = 0.005
CUTOFF = 4000
"""Hz: the cutoff of super-resolution with factor 2 at the prior's 16 kHz."""
TASK_OPTIONS = {"inpainting": {}, "dereverberation": {"rt60": 0.5},
                "super_resolution": {"factor": 2}}


def write_song(path: Path, seconds: float, gaps: list[tuple[float, float]],
               cutoff: float | None = None) -> np.ndarray:
    """A stereo song of decaying harmonic notes with zeroed gaps, low-passed at ``cutoff`` Hz
    when given, ``(N, 2)`` float32."""
    n = round(seconds * RATE)
    gen = np.random.default_rng(0)
    t = np.arange(n) / RATE
    wave = np.zeros((n, 2), np.float32)
    for start in np.arange(0, seconds, 0.5):
        f0 = 110 * 2 ** (gen.integers(0, 24) / 12)
        idx = slice(round(start * RATE), min(n, round((start + 0.5) * RATE)))
        env = np.exp(-(t[idx] - start) * 4)
        note = sum(np.sin(2 * np.pi * f0 * h * t[idx]) / h**1.5 for h in range(1, 6)) * env
        wave[idx, 0] += 0.3 * note
        wave[idx, 1] += 0.25 * note
    wave += 0.01 * gen.standard_normal((n, 2)).astype(np.float32)
    for a, b in gaps:
        wave[round(a * RATE): round(b * RATE)] = 0
    if cutoff is not None:
        wave = julius.lowpass_filter(torch.from_numpy(wave.T.copy()), cutoff / RATE,
                                     zeros=64).T.numpy()
    sf.write(path, wave, RATE, subtype="FLOAT")
    return wave


def one(task: str, song: Path, gaps: str, out: Path, steps: int, prior: str) -> dict:
    """Restore one song in this process (the child); returns time, windows and peak RSS."""
    from functools import partial

    from diffmusic.audio import load_audio, save_audio
    from diffmusic.operators import OPERATORS
    from diffmusic.priors import cached_prior
    from diffmusic.restoration import Restorer, Settings

    restorer = Restorer(cached_prior(prior), Settings(steps=steps))  # not part of the timing
    options = dict(TASK_OPTIONS[task])
    if task == "inpainting":
        options["gaps"] = [tuple(map(float, gap.split("-"))) for gap in gaps.split(",")]
    start = time.perf_counter()
    wave, rate = load_audio(song)
    result = restorer.restore_recording(partial(OPERATORS[task].from_options, **options), wave,
                                        rate)
    save_audio(out, result.wave, result.sample_rate)
    seconds_taken = time.perf_counter() - start
    windows = result.record["windows"]
    return {"seconds": round(seconds_taken, 2), "windows": len(windows),
            "seconds_windows": round(sum(w["seconds_window"] for w in windows), 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def bit_identical_outside(original: np.ndarray, restored: np.ndarray,
                          gaps: list[tuple[float, float]]) -> bool:
    """Whether ``restored`` equals ``original`` outside the gaps and their crossfades."""
    outside = np.ones(len(original), bool)
    fade = round(FADE * RATE)
    for a, b in gaps:
        outside[round(a * RATE) - fade: round(b * RATE) + fade] = False
    return restored.shape == original.shape and np.array_equal(restored[outside],
                                                               original[outside])


def low_band_error_db(original: np.ndarray, restored: np.ndarray) -> float:
    """Spectral difference below 0.9 x the cutoff, in dB relative to the input there."""
    spectra = [np.abs(np.fft.rfft(x, axis=0)) for x in (original, restored - original)]
    low = np.fft.rfftfreq(len(original), 1 / RATE) < 0.9 * CUTOFF
    level, error = (np.sqrt((s[low] ** 2).sum()) for s in spectra)
    return float(20 * np.log10(error / level))


def measure(task: str, seconds: float, steps: int, prior: str, folder: Path) -> str:
    """Write the song, restore it in a child process, check the output; one line of results."""
    gaps = [(round(seconds * q, 3), round(seconds * q + 0.3, 3)) for q in (0.25, 0.5, 0.75)]
    song, out = folder / f"{task}_song_{seconds:g}.wav", folder / f"{task}_{seconds:g}.wav"
    original = write_song(song, seconds, gaps if task == "inpainting" else [],
                          CUTOFF if task == "super_resolution" else None)
    gap_text = ",".join(f"{a}-{b}" for a, b in gaps)
    done = subprocess.run([sys.executable, __file__, "--one", task, str(song), gap_text,
                           str(out), "--steps", str(steps), "--prior", prior],
                          capture_output=True, text=True, check=True)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    restored, rate = sf.read(out, dtype="float32")
    line = (f"{task} {seconds:g} s: {r['seconds']:.1f} s wall ({r['seconds'] / seconds:.3f} s "
            f"per audio second; sampling {r['seconds_windows']:.1f} s in {r['windows']} "
            f"windows), output {list(restored.shape)} at {rate} Hz, peak RSS "
            f"{r['peak_rss_mb']} MB")
    if task == "inpainting":
        line += f", bit-identical outside gaps: {bit_identical_outside(original, restored, gaps)}"
    if task == "super_resolution":
        line += (f", below {0.9 * CUTOFF:g} Hz differs from the input by "
                 f"{low_band_error_db(original, restored):.0f} dB")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30, 90, 180])
    parser.add_argument("--tasks", nargs="+", choices=list(TASK_OPTIONS),
                        default=list(TASK_OPTIONS))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--prior", default="tiny")
    parser.add_argument("--one", nargs=4, metavar=("TASK", "SONG", "GAPS", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        task, song, gaps, out = args.one
        print(json.dumps(one(task, Path(song), gaps, Path(out), args.steps, args.prior)))
        return
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, "
          f"prior {args.prior}, {args.steps} steps, 44.1 kHz stereo")
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            for seconds in args.seconds:
                print(measure(task, seconds, args.steps, args.prior, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
