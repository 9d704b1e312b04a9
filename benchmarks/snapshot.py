"""Snapshot what the shells produce, to show that a refactor leaves every output unchanged.

``snapshot.py OUT`` runs, with fixed seeds and few steps: the demo on the embedded prior
(``metrics.json`` and every wav it writes), ``diffmusic degrade`` + ``restore`` of the demo clip
for every task and sampler on the embedded prior, and ``diffmusic bench`` (every task and method,
one clip) on a two-clip folder; it keeps the audio and the scores in ``OUT/snapshot.npz``.
``snapshot.py OUT --compare OLD`` then prints the largest absolute difference of every array
against ``OLD/snapshot.npz`` and exits 1 when one exceeds ``--atol`` (default 1e-5).

Usage::

    python benchmarks/snapshot.py /tmp/before                  # on the old commit
    python benchmarks/snapshot.py /tmp/after --compare /tmp/before
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from diffmusic.names import SAMPLER_NAMES, TASKS
from diffmusic.restoration.tuned import TUNED_DIR

CLIP = TUNED_DIR.parent / "demo" / "clip.wav"
STEPS = "4"
CLI_TASKS = [task for task in TASKS if task != "source_separation"]
"""Tasks restored through the CLI here (separation needs stems; the demo covers it)."""
DEGRADE_FLAGS = {"inpainting": ["--gap", "2:2.5"]}
FILE_FLAGS = {"inpainting": ["--gap", "3:3.5,9:9.4"], "super_resolution": ["--factor", "4"],
              "dereverberation": ["--rt60", "0.4"]}
"""Tasks restored from a damaged 12 s stereo 44.1 kHz file (windows, channels, resampling)."""


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "diffmusic.cli", *args, "--quiet"], check=True)


def wavs(folder: Path, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}/{p.relative_to(folder)}": sf.read(p, dtype="float64")[0]
            for p in sorted(folder.rglob("*.wav"))}


def numbers(record: object, prefix: str) -> dict[str, np.ndarray]:
    """Every number of a JSON record, flattened (times, memory and paths left out)."""
    out: dict[str, np.ndarray] = {}
    if isinstance(record, dict):
        for key, value in record.items():
            if "second" not in key and "peak" not in key:
                out |= numbers(value, f"{prefix}.{key}")
    elif isinstance(record, list):
        for i, value in enumerate(record):
            out |= numbers(value, f"{prefix}[{i}]")
    elif isinstance(record, (int, float)) and not isinstance(record, bool):
        out[prefix] = np.asarray(float(record))
    return out


def take(out: Path) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    cli("demo", "-o", str(out / "demo"), "--steps", STEPS)
    arrays |= wavs(out / "demo", "demo")
    arrays |= numbers(json.loads((out / "demo" / "metrics.json").read_text()), "demo")
    for task in CLI_TASKS:
        meas = out / "cli" / task / "meas"
        cli("degrade", str(CLIP), "--task", task, "-o", str(meas), *DEGRADE_FLAGS.get(task, []))
        for sampler in SAMPLER_NAMES:
            restored = out / "cli" / task / f"{sampler}.wav"
            cli("restore", str(meas), "-o", str(restored), "--steps", STEPS, "--sampler", sampler)
            arrays[f"cli/{task}/{sampler}"] = sf.read(restored, dtype="float64")[0]
    song = out / "song" / "song.wav"
    song.parent.mkdir(parents=True, exist_ok=True)
    wave, rate = sf.read(CLIP)
    long = np.concatenate([wave, wave[::-1], wave])[: 12 * rate]
    times = np.arange(12 * 44100) / 44100
    left = np.interp(times, np.arange(long.size) / rate, long)
    sf.write(song, np.stack([left, 0.5 * left[::-1]], 1), 44100, subtype="FLOAT")
    for task, flags in FILE_FLAGS.items():
        restored = out / "song" / f"{task}.wav"
        cli("restore", str(song), "--task", task, *flags, "-o", str(restored), "--steps", STEPS,
            "--channels", "mid-side")
        arrays[f"file/{task}"] = sf.read(restored, dtype="float64")[0]
        arrays |= numbers(json.loads(restored.with_suffix(".json").read_text()), f"file/{task}")
    data = out / "bench_data"
    data.mkdir(parents=True, exist_ok=True)
    sf.write(data / "a.wav", wave, rate)
    sf.write(data / "b.wav", wave[::-1].copy(), rate)
    cli("bench", str(data), "-o", str(out / "bench"), "--steps", STEPS, "--embedding", "none",
        "--offset", "0", "--tasks", ",".join(CLI_TASKS))
    with sqlite3.connect(out / "bench" / "results.sqlite") as db:
        db.row_factory = sqlite3.Row
        for row in db.execute("SELECT * FROM results"):
            row = dict(row)
            key = f"bench/{row['clip']}/{row['task']}/{row['method']}/{row['seed']}"
            for text in ("settings", "extra"):
                row[text] = json.loads(row[text]) if row[text] else None
            arrays |= numbers(row, key)
    return arrays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--compare", type=Path, metavar="OLD")
    parser.add_argument("--atol", type=float, default=1e-5)
    args = parser.parse_args()
    arrays = take(args.out)
    np.savez(args.out / "snapshot.npz", **arrays)
    if args.compare is None:
        print(f"{len(arrays)} arrays in {args.out / 'snapshot.npz'}")
        return 0
    old = dict(np.load(args.compare / "snapshot.npz"))
    worst = 0.0
    for key in sorted(set(old) | set(arrays)):
        if key not in old or key not in arrays or old[key].shape != arrays[key].shape:
            print(f"{key}: only in {'new' if key not in old else 'old'} or reshaped")
            worst = np.inf
            continue
        diff = float(np.abs(old[key] - arrays[key]).max(initial=0.0))
        worst = max(worst, diff)
        if diff > args.atol:
            print(f"{key}: max abs diff {diff:.3g}")
    print(f"{len(arrays)} arrays; largest difference {worst:.3g} (atol {args.atol:g})")
    return int(worst > args.atol)


if __name__ == "__main__":
    sys.exit(main())
