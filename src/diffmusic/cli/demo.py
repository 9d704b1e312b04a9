"""``diffmusic demo``: every task on a test clip, with spectrograms, metrics and a web page."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from diffmusic import package_version, priors
from diffmusic.audio import save_audio
from diffmusic.cli.build import OperatorOptions, build_operator
from diffmusic.cli.errors import CliError
from diffmusic.cli.restore import restore_measurement
from diffmusic.measurement import read_measurement, write_measurement
from diffmusic.metrics import si_sdr
from diffmusic.names import CLIP_SAMPLES, SAMPLE_RATE
from diffmusic.operators import TASKS, Operator
from diffmusic.priors import DEFAULT_PRIOR, Prior
from diffmusic.report import Section, spectrogram_png, write_html, write_json
from diffmusic.restoration import Restoration, Settings
from diffmusic.synth import demo_clip, synth_stems

TASK_TEXT = {
    "inpainting": "The samples in [2.00 s, 3.00 s) are lost; restored outside the gap = input.",
    "super_resolution": "Downsampled to 8 kHz (factor 2); 'degraded' is the windowed-sinc "
                        "upsampled input, LSD-HF counts the bins above 4 kHz.",
    "super_resolution_cutoff": "Low-passed at 3 kHz by an 8th-order Chebyshev filter that the "
                               "restoration does not know (it models a low-pass of that cutoff "
                               "and keeps the band below it); LSD-HF counts the bins above "
                               "3 kHz.",
    "phase_retrieval": "Only |STFT| is measured (n_fft 1024, hop 160); 'degraded' is fast "
                       "Griffin-Lim (100 iterations) from it.",
    "source_separation": "The sum of three synthetic stems; each stem is restored from the "
                         "mixture, conditioned on its name.",
    "dereverberation": "Convolved with the response of a shoebox room of RT60 0.5 s simulated "
                       "by pyroomacoustics (seed 0); the restoration does not know the room and "
                       "estimates its RT60 per octave band with the signal.",
    "declipping": "Clipped at the level that leaves an input SDR of 7 dB; the restoration reads "
                  "the level from the pile-up of the clipped samples.",
    "denoising": "White noise added at 20 dB SNR; the restoration reads the noise spectrum from "
                 "the recording (minimum statistics).",
}
DEMO_RUNS: dict[str, tuple[str, dict]] = {
    **{task: (task, {}) for task in TASKS}, "dereverberation": ("dereverberation", {"room": 0.5}),
    "super_resolution_cutoff": ("super_resolution", {"cutoff": 3000.0})}
"""The demo's sections: name -> (task, operator options beyond the protocol's)."""
SCORE_NAMES = {"lsd": "LSD", "lsd_hf": "LSD-HF", "lsd_gap": "gap LSD"}
"""The operators' scores shown for one-source tasks, with their column names."""
METRICS_TEXT = ("LSD: STFT n_fft 1024, hop 160, Hann, log10(|X| + 1e-10), RMS over frequency "
                "bins, mean over frames; lower is better. SI-SDR: zero-mean, scale-invariant, "
                "in dB; higher is better.")


@dataclass
class TaskRun:
    """One demo task after restoration.

    Attributes:
        folder: ``DIR/TASK``.
        operator: The operator read back from the measurement folder.
        clean: Clean clip ``(1, L)`` or stems ``(1, K, L)``.
        y: The measurement, batch of one.
        result: The restoration (padded length).
    """

    folder: Path
    operator: Operator
    clean: Tensor
    y: Tensor
    result: Restoration

    def crop(self, x: Tensor) -> Tensor:
        """The first batch item of ``x`` cropped to the clip, ``(L,)`` or ``(K, L)``."""
        return x[0, ..., : self.clean.shape[-1]]

    def link(self, name: str) -> str:
        """Path of a file of this task relative to the page."""
        return f"{self.folder.name}/{name}"


def rows_by(rows: list[dict], key: str) -> dict[str, dict]:
    """Table rows as ``{row[key]: the rest of the row}`` (the metrics JSON)."""
    return {row[key]: {k: v for k, v in row.items() if k != key} for row in rows}


def single_source_section(run: TaskRun) -> tuple[Section, dict]:
    """Players, spectrograms and LSD (LSD-HF for super-resolution) of a one-source task."""
    operator, clean = run.operator, run.crop(run.clean)
    degraded, baseline = operator.audible(run.y)
    label = "degraded" if baseline is None else f"degraded ({baseline})"
    signals = {label: run.crop(degraded), "restored": run.crop(run.result.wave),
               "restored, no projection": run.crop(run.result.raw)}
    degraded_file = "measurement.wav"
    if baseline is not None:  # not the measurement itself: write what is played and scored
        degraded_file = "degraded.wav"
        save_audio(run.folder / degraded_file, signals[label][None], operator.sample_rate)
    spectrogram_png(run.folder / "spectrogram.png",
                    [("clean", clean), (label, signals[label]), ("restored", signals["restored"])],
                    operator.sample_rate)
    rows = [{"signal": name, **{SCORE_NAMES[k]: v for k, v in operator.score(wave, clean, run.y)
                                 .items() if k in SCORE_NAMES}}
            for name, wave in signals.items()]
    audio = [("clean", run.link("clean.wav")), (label, run.link(degraded_file)),
             ("restored", run.link("restored.wav"))]
    name = run.folder.name
    return (Section(name, TASK_TEXT[name], audio, [run.link("spectrogram.png")], rows),
            rows_by(rows, "signal"))


def separation_section(run: TaskRun) -> tuple[Section, dict]:
    """Players, one spectrogram per source and SI-SDR of source separation."""
    operator = run.operator
    mixture = run.crop(run.y)
    clean, restored, raw = run.crop(run.clean), run.crop(run.result.wave), run.crop(run.result.raw)
    audio, images, rows = [("mixture", run.link("measurement.wav"))], [], []
    for k, name in enumerate(operator.sources):
        image = f"spectrogram_{name}.png"
        spectrogram_png(run.folder / image, [(f"clean {name}", clean[k]), ("mixture", mixture),
                                             (f"restored {name}", restored[k])],
                        operator.sample_rate)
        images.append(run.link(image))
        audio += [(f"clean {name}", run.link(f"clean/{name}.wav")),
                  (f"restored {name}", run.link(f"restored/{name}.wav"))]
        rows.append({"source": name, "SI-SDR mixture": float(si_sdr(mixture, clean[k])),
                     "SI-SDR restored": float(si_sdr(restored[k], clean[k])),
                     "SI-SDR restored, no projection": float(si_sdr(raw[k], clean[k]))})
    name = run.folder.name
    return Section(name, TASK_TEXT[name], audio, images, rows), rows_by(rows, "source")


def run_task(name: str, out: Path, prior: Prior, clean: Tensor, sources: list[str] | None,
             settings: Settings, origin: str, quiet: bool) -> TaskRun:
    """Degrade ``clean`` into ``out/NAME`` and restore it exactly as the CLI would.

    Args:
        name: The section of :data:`DEMO_RUNS`.
        out: Demo folder.
        prior: The diffusion prior.
        clean: Clean clip ``(1, L)`` or stems ``(1, K, L)``.
        sources: Stem names for separation.
        settings: How to restore.
        origin: Description of the clip (recorded).
        quiet: Hide progress bars.
    """
    folder = out / name
    task, extra = DEMO_RUNS[name]
    options = OperatorOptions(task, sources=sources, **extra)
    operator = build_operator(options, clean.shape[-1])
    write_measurement(folder, operator, clean, 0, origin)
    measurement = read_measurement(folder)
    target = folder / ("restored" if operator.num_sources > 1 else "restored.wav")
    result, _ = restore_measurement(measurement, prior, settings, target, quiet)
    return TaskRun(folder, measurement.operator, clean, measurement.y, result)


def run(args: argparse.Namespace) -> int:
    """Run ``diffmusic demo``."""
    out: Path = args.output
    if out.exists() and not out.is_dir():
        raise CliError(f"-o {out}: exists and is not a folder")
    start = time.perf_counter()
    prior = priors.cached_prior(args.prior or DEFAULT_PRIOR)
    clip, origin = demo_clip(CLIP_SAMPLES, SAMPLE_RATE)
    stems = synth_stems(CLIP_SAMPLES, SAMPLE_RATE)
    settings = Settings(steps=args.steps, seed=args.seed)
    stem_clip = torch.stack(list(stems.values()))[None]
    sections, metrics, used = [], {}, {}
    for name, (task, _) in DEMO_RUNS.items():
        separation = task == "source_separation"
        task_run = run_task(name, out, prior, stem_clip if separation else clip,
                            list(stems) if separation else None, settings,
                            "synthetic stems (diffmusic.synth)" if separation else origin,
                            args.quiet)
        report = separation_section if separation else single_source_section
        section, metrics[name] = report(task_run)
        sections.append(section)
        record = task_run.result.record
        used[name] = {"sampler": record["sampler"], "guidance_scale": record["guidance_scale"],
                      **record["settings"]}
    seconds = time.perf_counter() - start
    summary = {"diffmusic_version": package_version(), "prior": prior.name, "clip": origin,
               "sampler": settings.sampler, "steps": settings.steps, "seed": settings.seed,
               "prompts": settings.prompts, "project": settings.project,
               "sampler_settings": used, "seconds": seconds,
               "metrics_settings": METRICS_TEXT, "metrics": metrics}
    write_json(out / "metrics.json", summary)
    intro = (f"Clip: {origin}, {CLIP_SAMPLES / SAMPLE_RATE:g} s at {SAMPLE_RATE} Hz. Prior: "
             f"{prior.name}; sampler {settings.sampler} ("
             + ", ".join(f"{name}: {u['sampler']}" for name, u in used.items())
             + f") with {settings.steps} steps, seed "
             f"{settings.seed}, measurement-consistency projection on. {METRICS_TEXT}")
    if prior.name == "tiny":
        intro += (" The tiny prior has random weights: this page shows that every task runs "
                  "end to end, not the quality of the method.")
    write_html(out / "index.html", "diffmusic demo", intro, sections)
    if not args.quiet:
        print(f"diffmusic: wrote {out / 'index.html'} ({seconds:.0f} s)", file=sys.stderr)
    return 0

