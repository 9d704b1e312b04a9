"""The paper-shaped table (``table.md``, ``table.csv``), FAD per set, spectrogram grids."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from diffmusic.bench.jobs import all_methods, split_task
from diffmusic.bench.store import Store
from diffmusic.operators import TASKS

DIFFERENCE_METHOD = "diffmusic"
"""The method whose paired differences against the best other method the table reports."""

COLUMNS = (("lsd", "LSD ↓"), ("lsd_hf", "LSD-HF ↓"), ("lsd_gap", "gap LSD ↓"),
           ("si_sdr", "SI-SDR ↑"), ("si_sdri", "SI-SDRi ↑"), ("sdr", "SDR ↑"),
           ("seconds", "s/clip"), ("peak_mb", "peak MB"))
"""Per-clip metrics averaged into the table: (column of ``results``, header)."""
LOWER_IS_BETTER = {"lsd", "lsd_hf", "lsd_gap"}


def update_fad(store: Store, embedding: str) -> None:
    """Recompute ``FAD-<embedding>`` of every (task, method) from the stored frame embeddings.

    Reference statistics are those of the clean clips the method was scored on.
    """
    from diffmusic.fad import frechet_distance

    tasks = {(r["task"], r["method"]) for r in store.rows()}
    for task, method in sorted(tasks):
        est = store.embeddings(embedding, task, method)
        refs = store.embeddings(embedding, task, "reference")
        clips = sorted({c for c, _ in est} & {c for c, _ in refs})
        if len(clips) < 2:
            continue
        a = np.concatenate([v for (c, _), v in est.items() if c in clips])
        b = np.concatenate([refs[(c, 0)] for c in clips if (c, 0) in refs])
        value = frechet_distance(a, b)
        store.set_metric(task, method, f"FAD-{embedding}", value, len(clips),
                         {"embedding": embedding, "frames": [len(a), len(b)],
                          "reference": "clean clips"})


def summarise(store: Store) -> list[dict]:
    """One line per (task, method): clip count and mean of every metric, in table order."""
    rows = store.rows()
    fads = {(m["task"], m["method"], m["metric"]): m["value"] for m in store.set_metrics()}
    fad_names = sorted({m for _, _, m in fads})
    order = {m: i for i, m in enumerate(all_methods())}
    lines = []
    for task in table_tasks(rows):
        methods = sorted({r["method"] for r in rows if r["task"] == task},
                         key=lambda m: order.get(m, len(order)))
        for method in methods:
            mine = [r for r in rows if r["task"] == task and r["method"] == method]
            line = {"task": task, "method": method, "clips": len({r["clip"] for r in mine}),
                    "rows": len(mine), "split": _split(mine)}
            for col, _ in COLUMNS:
                vals = [r[col] for r in mine if r[col] is not None]
                line[col] = float(np.mean(vals)) if vals else None
            for name in fad_names:
                line[name] = fads.get((task, method, name))
            lines.append(line)
    return lines


def table_tasks(rows: list[dict]) -> list[str]:
    """The tasks (and task variants) of ``rows``, in :data:`TASKS` order, variants by name."""
    names = {r["task"] for r in rows}
    return sorted(names, key=lambda n: (TASKS.index(split_task(n)[0]), n))


def paired_differences(store: Store, lines: list[dict], cols: list[str]) -> list[dict]:
    """Per task and quality metric, :data:`DIFFERENCE_METHOD` minus the best other method by
    mean, paired by clip (seeds averaged): mean and standard error over the shared clips."""
    rows = store.rows()
    out = []
    for task in table_tasks(rows):
        for col in cols:
            means = {ln["method"]: ln[col] for ln in lines
                     if ln["task"] == task and ln[col] is not None}
            others = {m: v for m, v in means.items()
                      if m not in (DIFFERENCE_METHOD, f"{DIFFERENCE_METHOD}_raw")}
            if DIFFERENCE_METHOD not in means or not others:
                continue
            lower = col in LOWER_IS_BETTER or col.startswith("FAD-")
            rival = (min if lower else max)(others, key=others.get)
            per_clip = {m: _per_clip(rows, task, m, col) for m in (DIFFERENCE_METHOD, rival)}
            clips = sorted(set(per_clip[DIFFERENCE_METHOD]) & set(per_clip[rival]))
            if not clips:
                continue
            diff = np.array([per_clip[DIFFERENCE_METHOD][c] - per_clip[rival][c] for c in clips])
            se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
            out.append({"task": task, "metric": col, "rival": rival, "clips": len(clips),
                        "difference": float(diff.mean()), "se": se,
                        "better": bool(diff.mean() < 0) if lower else bool(diff.mean() > 0)})
    return out


def _per_clip(rows: list[dict], task: str, method: str, col: str) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for r in rows:
        if r["task"] == task and r["method"] == method and r[col] is not None:
            values.setdefault(r["clip"], []).append(r[col])
    return {clip: float(np.mean(v)) for clip, v in values.items()}


def _split(rows: list[dict]) -> str:
    splits = {r["settings"].get("tuned_on") for r in rows} - {None}
    return ",".join(sorted(splits)) or "-"


def _fmt(value: float | None, col: str) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if col in ("peak_mb", "si_sdr", "si_sdri", "sdr") else f"{value:.3f}"


def write_tables(store: Store, out: Path, command: str = "") -> list[dict]:
    """Write ``table.md`` and ``table.csv`` into ``out``; returns the summary lines."""
    lines = summarise(store)
    cols = [(c, h) for c, h in COLUMNS if any(ln[c] is not None for ln in lines)]
    fad_cols = sorted({k for ln in lines for k in ln if k.startswith("FAD-")})
    cols += [(f, f"{f} ↓") for f in fad_cols if any(ln[f] is not None for ln in lines)]
    best = _best(lines, [c for c, _ in cols])
    md = ["| task | method | clips | " + " | ".join(h for _, h in cols) + " | tuned on |",
          "| --- | --- | ---: | " + " | ".join("---:" for _ in cols) + " | --- |"]
    for ln in lines:
        cells = [(f"**{_fmt(ln[c], c)}**" if (ln["task"], c) in best
                  and best[(ln["task"], c)] == ln["method"] else _fmt(ln[c], c))
                 for c, _ in cols]
        md.append(f"| {ln['task']} | {ln['method']} | {ln['clips']} | " + " | ".join(cells)
                  + f" | {ln['split']} |")
    quality = [c for c, _ in cols if c not in ("seconds", "peak_mb") and not c.startswith("FAD-")]
    pairs = paired_differences(store, lines, quality)
    if pairs:
        md += ["", f"Paired differences, {DIFFERENCE_METHOD} minus the best other method of "
                   "the row's task (mean over clips ± standard error):", "",
               "| task | metric | best other | clips | difference | better |",
               "| --- | --- | --- | ---: | ---: | --- |"]
        md += [f"| {d['task']} | {d['metric']} | {d['rival']} | {d['clips']} | "
               f"{d['difference']:+.3f}" + (f" ± {d['se']:.3f}" if d["se"] is not None else "")
               + f" | {'yes' if d['better'] else 'no'} |" for d in pairs]
    head = [f"Command: `{command}`", ""] if command else []
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text("\n".join(head + md) + "\n")
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["task", "method", "clips", "rows", "split",
                                    *[c for c, _ in cols]], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(lines)
    return lines


def _best(lines: list[dict], cols: list[str]) -> dict[tuple[str, str], str]:
    """The best method per (task, metric column) among the quality metrics."""
    best: dict[tuple[str, str], str] = {}
    for task in {ln["task"] for ln in lines}:
        mine = [ln for ln in lines if ln["task"] == task]
        for col in cols:
            if col in ("seconds", "peak_mb"):
                continue
            vals = [(ln[col], ln["method"]) for ln in mine if ln[col] is not None]
            if len(vals) > 1:
                lower = col in LOWER_IS_BETTER or col.startswith("FAD-")
                best[(task, col)] = (min if lower else max)(vals)[1]
    return best


def spectrogram_grids(audio_dir: Path, out: Path) -> list[Path]:
    """One PNG per task folder of ``audio_dir``: log spectrograms of reference, input, methods."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from diffmusic.audio import load_audio
    from diffmusic.dsp import stft

    order = {m: i for i, m in enumerate(["reference", "degraded", *all_methods()])}
    paths = []
    for folder in sorted(p for p in audio_dir.iterdir() if p.is_dir()) if audio_dir.is_dir() \
            else []:
        files = sorted(folder.glob("*.wav"), key=lambda p: order.get(p.stem, len(order)))
        fig, axes = plt.subplots(len(files), 1, figsize=(8, 1.6 * len(files)), squeeze=False)
        for ax, path in zip(axes[:, 0], files, strict=True):
            wave, rate = load_audio(path, mono=True)
            mag = torch.log10(stft(wave[0].double(), 1024, 160).abs() + 1e-10)
            ax.imshow(mag.numpy(), origin="lower", aspect="auto", vmin=-5, vmax=2,
                      extent=(0, wave.shape[-1] / rate, 0, rate / 2000), cmap="magma")
            ax.set_ylabel("kHz")
            ax.set_title(path.stem, fontsize=8, loc="left")
        axes[-1, 0].set_xlabel("s")
        clip = (folder / "clip.txt").read_text() if (folder / "clip.txt").is_file() else ""
        fig.suptitle(f"{folder.name}: {clip}", fontsize=9)
        fig.tight_layout()
        path = out / f"spectrograms_{folder.name}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths
