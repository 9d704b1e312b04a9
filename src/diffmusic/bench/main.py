"""The benchmark from options to tables: clips, plan, execution, FAD, tables and grids."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from diffmusic.audio import AudioError
from diffmusic.bench.execute import execute, tasks
from diffmusic.bench.jobs import plan, split_task, task_methods, variant
from diffmusic.bench.options import BenchOptions, has_audio, load_clips
from diffmusic.bench.run import RunConfig
from diffmusic.bench.store import Store
from diffmusic.bench.tables import spectrogram_grids, update_fad, write_tables
from diffmusic.bench.tune import tune
from diffmusic.operators import TASKS


def _resolve_tasks(opts: BenchOptions) -> list[str]:
    names = opts.tasks or list(TASKS)
    for name in names:
        split_task(name)
    if opts.gap_lengths:
        names = [v for n in names for v in ([variant(n, gap_length=g) for g in opts.gap_lengths]
                                            if n == "inpainting" else [n])]
    if opts.tasks is None and opts.stems is None and has_audio(opts.data):
        names = [t for t in names if t != "source_separation"]
    if opts.methods:
        known = {m for t in names for m in task_methods(t)}
        unknown = sorted(set(opts.methods) - known)
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)} for these tasks; "
                             f"choose from {', '.join(sorted(known))}")
    return names


def _embedding(name: str) -> str | None:
    if name == "none":
        return None
    from diffmusic.fad import available_embeddings

    found = available_embeddings()
    if name == "auto":
        return found[0] if found else None
    if name not in found:
        raise AudioError(f"embedding {name!r} is not available here; available: "
                         f"{', '.join(found) or 'none'}")
    return name


def _tuned_file(opts: BenchOptions) -> Path | None:
    """``--defaults``, else ``RESULTS/tuned.json`` if a tuning run wrote it, else ``None``
    (the prior's shipped defaults, see :func:`diffmusic.restoration.tuned.load_tuned`)."""
    path = opts.defaults or opts.out / "tuned.json"
    return path if opts.defaults or path.is_file() else None


def bench(opts: BenchOptions) -> dict:
    """Run (or resume) the benchmark and write its tables; returns a short summary."""
    names = _resolve_tasks(opts)
    clips = load_clips(opts, names)
    embedding = _embedding(opts.embedding)
    opts.out.mkdir(parents=True, exist_ok=True)
    config = RunConfig(prior=opts.prior, steps=opts.steps, noise_snr=opts.noise_snr,
                       device=opts.device, dtype=opts.dtype,
                       embedding=embedding, audio_dir=opts.out / "audio")
    if opts.tune_data is not None:
        tune(opts, config)
    config.tuned = _tuned_file(opts)
    config.grid_clips = {t: cs[0].name for t, cs in clips.items() if cs}
    by_key = {(t, c.name): c for t, cs in clips.items() for c in cs}
    jobs = plan({t: [c.name for c in cs] for t, cs in clips.items()}, opts.methods, opts.seeds)
    with Store(opts.out / "results.sqlite") as store:
        work = tasks(jobs, by_key, store)
        bar = tqdm(total=sum(len(g) for g, _, _ in work), desc="bench", unit="job",
                   file=sys.stderr, disable=True if opts.quiet else None)
        new = execute(work, store, config, opts.workers, opts.ray,
                      on_group=lambda rows: bar.update(sum(r["method"] != "reference"
                                                           for r in rows)))
        bar.close()
        if embedding is not None:
            update_fad(store, embedding)
            update_fad(store, f"{embedding}-invented")
        lines = write_tables(store, opts.out, opts.command)
        total = len(store.done())
    grids = spectrogram_grids(opts.out / "audio", opts.out)
    return {"jobs": len(jobs), "new_rows": new, "rows": total, "table_lines": len(lines),
            "embedding": embedding, "grids": [str(g) for g in grids]}
