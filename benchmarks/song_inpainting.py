"""Recording-level inpainting: excerpts of whole tracks with several gaps, scored inside the gaps.

Each track of DATA gives one excerpt (``--excerpt`` seconds from ``--offset``, 16 kHz mono)
with ``--gaps`` gaps of ``--gap`` seconds at seeded random places at least 6 s apart. Every
method restores the whole excerpt; the score is the LSD over the frames centred in the gaps
(``metrics.lsd_in``). Methods: the classical ``context_copy`` and ``similarity_copy``, and
DiffMusic through ``Restorer.restore_recording`` with the similarity search (the default) and
without it.

``--solo`` adds the fallback case: each excerpt again, with 4 s of another track pasted over
one gap's surroundings (a passage that occurs once), so that this gap has no good match.

    python benchmarks/song_inpainting.py DATA --out results/songs [--limit 12] [--steps 25] \
        [--methods diffmusic,context_copy]

Writes ``OUT/songs.json`` (every gap's scores and matches) and ``OUT/songs.md``.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from diffmusic.audio import load_audio
from diffmusic.bench.datasets import AUDIO_SUFFIXES
from diffmusic.metrics import lsd_in
from diffmusic.operators import Inpainting
from diffmusic.operators.inpainting import MIN_GUIDE, MIN_MATCH
from diffmusic.priors import cached_prior
from diffmusic.restoration import Restorer, Settings

RATE = 16000
METHODS = ("context_copy", "similarity_copy", "diffmusic", "diffmusic_no_similarity")
SPACING = 6.0
"""Least distance between gap starts, and margin at the excerpt's ends, in seconds."""
SOLO_SECONDS = 4.0


def place_gaps(name: str, length: int, count: int, gap: float) -> list[tuple[float, float]]:
    """``count`` gaps at places drawn from a seed of the track's name, ``SPACING`` apart."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    lo, hi = SPACING / 2, length / RATE - SPACING / 2 - gap
    starts: list[float] = []
    for _ in range(100 * count):
        s = lo + float(torch.rand(1, generator=g)) * (hi - lo)
        if all(abs(s - t) >= SPACING for t in starts):
            starts.append(round(s, 3))
        if len(starts) == count:
            break
    return [(s, round(s + gap, 3)) for s in sorted(starts)]


def with_solo(wave: torch.Tensor, other: torch.Tensor, gap: tuple[float, float]) -> torch.Tensor:
    """``wave`` with ``SOLO_SECONDS`` of ``other`` pasted centred on ``gap`` (level-matched)."""
    out = wave.clone()
    centre = round((gap[0] + gap[1]) / 2 * RATE)
    half = round(SOLO_SECONDS * RATE / 2)
    piece = other[..., 30 * RATE: 30 * RATE + 2 * half]
    piece = piece * wave.pow(2).mean().sqrt() / piece.pow(2).mean().sqrt().clamp_min(1e-9)
    out[..., centre - half: centre + half] = piece
    return out


def restore_all(restorers: dict[str, Restorer], clean: torch.Tensor,
                gaps: list[tuple[float, float]], methods: Sequence[str]) -> dict:
    """Each of ``methods`` on ``clean`` ``(1, N)`` with ``gaps``: per-gap LSDs, seconds,
    matches."""
    spans = [(round(a * RATE), round(b * RATE)) for a, b in gaps]
    operator = Inpainting(RATE, clean.shape[-1], gaps)
    damaged = operator(clean)
    out: dict = {"gaps": gaps, "lsd": {}, "seconds": {}}
    for method in methods:
        began = time.perf_counter()
        if method in restorers:
            result = restorers[method].restore_recording(partial(Inpainting, gaps=gaps),
                                                         damaged, RATE)
            wave = result.wave
            if result.record["similarity"] is not None:
                out["matches"] = result.record["similarity"]
        else:
            wave = operator.baseline(damaged, method)
        out["seconds"][method] = time.perf_counter() - began
        out["lsd"][method] = [float(lsd_in(wave[0], clean[0], [s])) for s in spans]
    return out


def paired(rows: list[dict], method: str, rival: str) -> tuple[float, float, int]:
    """Mean and standard error of ``method`` minus ``rival`` over all gaps of ``rows``."""
    diff = np.array([a - b for r in rows for a, b in zip(r["lsd"][method], r["lsd"][rival],
                                                          strict=True)])
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))), len(diff)


def table(rows: list[dict], title: str, methods: Sequence[str]) -> list[str]:
    """A markdown table: mean gap LSD per method and its paired difference to the copy."""
    lines = [f"### {title}", "", "| method | gap LSD ↓ | minus similarity_copy (± s.e.) |"
             " s/excerpt |", "| --- | ---: | ---: | ---: |"]
    for method in methods:
        mean = np.mean([v for r in rows for v in r["lsd"][method]])
        diff, se, n = paired(rows, method, "similarity_copy")
        seconds = np.mean([r["seconds"][method] for r in rows])
        lines.append(f"| {method} | {mean:.4f} | {diff:+.4f} ± {se:.4f} (n={n}) | "
                     f"{seconds:.1f} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--excerpt", type=float, default=90.0)
    parser.add_argument("--offset", type=float, default=10.0)
    parser.add_argument("--gaps", type=int, default=3)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--prior", default="embedded")
    parser.add_argument("--solo", action="store_true", help="also run the fallback case")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated subset of the methods (similarity_copy is always "
                             "run: the others are paired against it)")
    args = parser.parse_args()
    methods = [m for m in METHODS if m in {"similarity_copy", *args.methods.split(",")}]
    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    prior = cached_prior(args.prior)
    restorers = {"diffmusic": Restorer(prior, Settings(steps=args.steps)),
                 "diffmusic_no_similarity": Restorer(prior, Settings(steps=args.steps,
                                                                     similarity=False))}
    songs, solos = [], []
    waves = []
    for path in files[: args.limit]:
        wave, _ = load_audio(path, RATE, mono=True)
        first = round(args.offset * RATE)
        waves.append((path.name, wave[:, first: first + round(args.excerpt * RATE)]))
    for i, (name, clean) in enumerate(waves):
        gaps = place_gaps(name, clean.shape[-1], args.gaps, args.gap)
        songs.append({"track": name, **restore_all(restorers, clean, gaps, methods)})
        print(name, {m: round(float(np.mean(v)), 4) for m, v in songs[-1]["lsd"].items()},
              flush=True)
        if args.solo:
            other = waves[(i + 1) % len(waves)][1]
            solo = with_solo(clean, other, gaps[0])
            solos.append({"track": name, **restore_all(restorers, solo, gaps[:1], methods)})
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"command": vars(args) | {"data": str(args.data), "out": str(args.out)},
              "songs": songs, "solos": solos}
    (args.out / "songs.json").write_text(json.dumps(record, indent=1))
    md = table(songs, f"{len(songs)} excerpts of {args.excerpt:g} s, {args.gaps} gaps of "
                      f"{args.gap:g} s each, {args.steps} steps", methods)
    if solos:
        md += table(solos, "Fallback: the gap sits in a passage that occurs once", methods)
        found = [r["matches"][0] for r in solos if r.get("matches")]
        scores = ", ".join(f"{m['score']:.2f}" for m in sorted(found, key=lambda m: m["score"]))
        trusted = [m["score"] for m in found if m.get("corroborated", True)]
        kept = sum(s >= MIN_MATCH for s in trusted)
        guided = sum(MIN_GUIDE < s < MIN_MATCH for s in trusted)
        md.append(f"Fallback case: {len(trusted)} of {len(solos)} gaps found a corroborated "
                  f"passage, {kept} kept it and {guided} were guided by it (context scores "
                  f"{scores}; a passage guides from {MIN_GUIDE} and is kept from {MIN_MATCH}).")
    (args.out / "songs.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
