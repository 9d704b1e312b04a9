"""Where a CLI restoration's wall time goes: interpreter and imports, prior loading, sampling,
projection and writing.

Runs ``diffmusic restore`` in a fresh process (as a user does) with ``-X importtime`` for the
import phase, and reads the other phases from the restoration's record (``seconds`` is the
sampler's own time, ``seconds_window`` the window with conditioning, warm start and projection,
``seconds_total`` everything after the prior is loaded). Also times ``--help`` and a usage
error, which must not import torch.

Usage::

    python benchmarks/cli_wall_time.py [--task super_resolution] [--steps 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "src" / "diffmusic" / "assets" / "demo" / "clip.wav"


def timed(argv: list[str]) -> tuple[float, str]:
    """Wall seconds of ``python -X importtime -m diffmusic.cli ARGV`` and its stderr."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "diffmusic.cli", *argv],
                          capture_output=True, text=True)
    return time.perf_counter() - start, done.stderr


def import_seconds(stderr: str) -> float:
    """Cumulative import time of the top-level modules, from ``-X importtime``'s lines."""
    lines = (re.match(r"import time:\s+\d+ \|\s+(\d+) \| \S", line) for line in stderr.splitlines())
    return sum(int(match.group(1)) for match in lines if match) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="super_resolution")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        meas = Path(tmp) / "meas"
        subprocess.run([sys.executable, "-m", "diffmusic.cli", "degrade", str(DEMO), "--task",
                        args.task, "-o", str(meas), "--quiet"], check=True)
        for label, argv in (("--help", ["--help"]),
                            ("usage error", ["restore", str(meas), "-o", "x.wav", "--steps",
                                             "1"])):
            walls = [timed(argv)[0] for _ in range(args.repeat)]
            print(f"{label}: {statistics.median(walls):.2f} s wall (median of {args.repeat})")
        rows = []
        for i in range(args.repeat):
            out = Path(tmp) / f"r{i}.wav"
            wall, stderr = timed(["restore", str(meas), "-o", str(out), "--steps",
                                  str(args.steps), "--quiet"])
            record = json.loads(out.with_suffix(".json").read_text())
            window = record["windows"][0]["seconds_window"]
            rows.append({"wall": wall, "imports": import_seconds(stderr),
                         "sampling": record["seconds"], "window": window,
                         "after_load": record["seconds_total"]})
        median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        load = median["wall"] - median["imports"] - median["after_load"]
        print(f"restore --task {args.task} --steps {args.steps} (median of {args.repeat}): "
              f"wall {median['wall']:.2f} s = imports {median['imports']:.2f} + interpreter, "
              f"prior loading and measurement reading {load:.2f} + sampling "
              f"{median['sampling']:.2f} + conditioning, warm start and projection "
              f"{median['window'] - median['sampling']:.2f} + writing and the rest "
              f"{median['after_load'] - median['window']:.2f}")


if __name__ == "__main__":
    main()
