"""Degrade, restore and score one group of benchmark jobs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffmusic.bench.datasets import Clip
from diffmusic.bench.jobs import DIFFUSION_METHODS, Job, split_task
from diffmusic.bench.memory import PeakMemory
from diffmusic.metrics import LSD_EPS
from diffmusic.names import SAMPLE_RATE
from diffmusic.operators import OPERATORS, Operator
from diffmusic.operators.source_separation import SILENT_DB
from diffmusic.priors import DEFAULT_PRIOR, cached_prior
from diffmusic.priors.base import Prior
from diffmusic.restoration import Settings, restore
from diffmusic.restoration.tuned import TunedSource

METRIC_SETTINGS = {"lsd": {"n_fft": 1024, "hop": 160, "window": "hann", "eps": LSD_EPS,
                           "log": "log10(|X|+eps)", "reduce": "rms over bins, mean over frames"},
                   "lsd_hf": "lsd over bins above the measurement Nyquist (super_resolution)",
                   "lsd_gap": "lsd over the frames centred inside the gaps (inpainting)",
                   "FAD-*-invented": "FAD of Operator.invented: the 3 s around the gaps "
                                     "(inpainting), the band above the cutoff (super_resolution)",
                   "si_sdr": "mean over the non-silent stems for source_separation",
                   "silent_stem_db": SILENT_DB,
                   "si_sdri": "si_sdr(est) - si_sdr(mixture), source_separation only",
                   "seconds": "wall clock of the restoration per clip",
                   "peak_mb": "peak RSS of the process during the job (model included)",
                   "peak_delta_mb": "in extra: peak RSS above the RSS at the job's start"}


def make_operator(task: str, clip: Clip, noise_snr: float | None = None) -> Operator:
    """The protocol's operator of ``task`` (DESIGN.md section 3), or of a variant
    (:func:`~diffmusic.bench.jobs.split_task`), for ``clip``."""
    task, options = split_task(task)
    if clip.sources:
        options["sources"] = clip.sources
    return OPERATORS[task].from_options(SAMPLE_RATE, clip.wave.shape[-1], noise_snr=noise_snr,
                                        **options)


Embedder = Callable[[Tensor], np.ndarray]
"""``(N,)`` audio at 16 kHz -> frame embeddings ``(frames, dim)``."""


@dataclass
class RunConfig:
    """Settings shared by every job of a benchmark run.

    Attributes:
        prior: Prior name for :func:`diffmusic.priors.load_prior`.
        steps: Sampling steps of the diffusion methods.
        noise_snr: Measurement noise SNR in dB (``None``: noiseless, the paper's setting).
        tuned: Source of the samplers' tuned defaults (see
            :func:`diffmusic.restoration.tuned.load_tuned`).
        device: Where the prior runs.
        dtype: Parameter dtype of the prior's networks.
        embedding: Name of the FAD embedding (``None``: no FAD).
        audio_dir: Where to save the outputs of ``grid_clips`` (for the spectrogram grids).
        grid_clips: Per task, the clip whose outputs are saved.
    """

    prior: str = DEFAULT_PRIOR
    steps: int = 50
    noise_snr: float | None = None
    tuned: TunedSource = None
    device: str = "cpu"
    dtype: str = "float32"
    embedding: str | None = None
    audio_dir: Path | None = None
    grid_clips: dict[str, str] = field(default_factory=dict)


class Runner:
    """Runs job groups; loads the prior and the embedding once, on first use."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self._prior: Prior | None = None
        self._embedder: Embedder | None = None

    @property
    def prior(self) -> Prior:
        """The diffusion prior (loaded once per process and name)."""
        if self._prior is None:
            self._prior = cached_prior(self.config.prior, self.config.device, self.config.dtype)
        return self._prior

    def embed(self, wave: Tensor | None) -> np.ndarray | None:
        """Frame embeddings of ``(N,)`` or ``(K, N)`` audio (stems pooled), or ``None``."""
        if self.config.embedding is None or wave is None:
            return None
        if self._embedder is None:
            from diffmusic.fad import load_embedding

            self._embedder = load_embedding(self.config.embedding)
        waves = wave.reshape(-1, wave.shape[-1])
        return np.concatenate([self._embedder(w) for w in waves])

    def restore(self, job: Job, operator: Operator, y: Tensor,
                keywords: dict | None = None) -> tuple[Tensor, Tensor, dict]:
        """Run a diffusion method: ``(projected, raw, settings)``, each ``(N,)`` or ``(K, N)``.

        ``keywords`` (a tuned file's sampler keywords) replace the tuned defaults.
        """
        sampler, _ = DIFFUSION_METHODS[job.method]
        settings = Settings.from_keywords(
            sampler, keywords or {}, steps=self.config.steps, seed=job.seed,
            tuned=False if keywords is not None else self.config.tuned)
        device = self.prior.device
        out = restore(self.prior, operator.to(device), y[None].to(device), settings)
        rec = out.record
        settings = {"sampler": sampler, "steps": rec["steps"], "seed": rec["seed"],
                    "sampler_settings": rec["settings"], "guidance_scale": rec["guidance_scale"],
                    "prior": rec["prior"],
                    "tuned_on": (rec["tuned_defaults"] or {}).get("split")}
        return out.wave[0].cpu(), out.raw[0].cpu(), settings

    def run(self, jobs: list[Job], clip: Clip, reference: bool = False,
            keywords: dict | None = None) -> list[dict]:
        """Degrade ``clip``, run the group's method(s), score; one row per job.

        Args:
            jobs: One job, or ``diffmusic`` and ``diffmusic_raw`` of one clip, task and seed.
            clip: The clip of the jobs.
            reference: Also return the clean clip's embedding (as a row with method
                ``reference`` that is not a result).
            keywords: The sampler's keywords instead of the tuned defaults (tuning).

        Returns:
            Result rows; a row's ``embedding`` (if any) belongs in the store's embeddings.
        """
        job = jobs[0]
        operator = make_operator(job.task, clip, self.config.noise_snr)
        ref = clip.wave
        generator = torch.Generator().manual_seed(job.seed)
        with torch.no_grad():
            y = operator.degrade(ref[None], generator)[0]
        start = time.perf_counter()
        with PeakMemory() as memory:
            if job.method in DIFFUSION_METHODS:
                wave, raw, settings = self.restore(job, operator, y, keywords)
                outputs = {"diffmusic_raw": raw, **{j.method: wave for j in jobs
                                                    if j.method != "diffmusic_raw"}}
            else:
                with torch.no_grad():
                    outputs = {job.method: operator.baseline(y[None], job.method)[0]}
                settings = {"baseline": job.method}
        seconds = time.perf_counter() - start
        settings = {**settings, "operator": operator.spec(), "clip_start": clip.start,
                    "clip_samples": int(ref.shape[-1]), "sample_rate": SAMPLE_RATE,
                    "metrics": METRIC_SETTINGS}
        rows = []
        for j in jobs:
            est = outputs[j.method].float()
            row = {"clip": j.clip, "task": j.task, "method": j.method, "seed": j.seed,
                   "seconds": seconds, "peak_mb": memory.peak_mb,
                   "extra": {"peak_delta_mb": memory.delta_mb},
                   "settings": {**settings, "projection": j.method != "diffmusic_raw"},
                   **operator.score(est, ref, y), "embedding": self.embed(est),
                   "invented_embedding": self.embed(operator.invented(est))}
            if "stems" in row:
                row["extra"]["stems"] = row.pop("stems")
            rows.append(row)
            self.save_audio(j, est, y, operator, ref, shared=reference)
        if reference:
            rows.append({"clip": job.clip, "task": job.task, "method": "reference", "seed": 0,
                         "embedding": self.embed(ref),
                         "invented_embedding": self.embed(operator.invented(ref))})
        return rows

    def save_audio(self, job: Job, est: Tensor, y: Tensor, operator: Operator,
                   ref: Tensor, shared: bool) -> None:
        """Save the grid clip's outputs (seed 0; the loudest stem) for the spectrogram grids;
        the reference and the degraded input only when ``shared`` (the one group of the clip
        and task that also embeds the reference: parallel workers never write one file twice)."""
        cfg = self.config
        if cfg.audio_dir is None or cfg.grid_clips.get(job.task) != job.clip or job.seed:
            return
        from diffmusic.audio import save_audio

        folder = cfg.audio_dir / job.task
        ref, est = ref.reshape(-1, ref.shape[-1]), est.reshape(-1, est.shape[-1])
        k = int(ref.pow(2).sum(-1).argmax())  # separation: the loudest stem
        save_audio(folder / f"{job.method}.wav", est[k: k + 1], SAMPLE_RATE)
        if not shared:
            return
        save_audio(folder / "reference.wav", ref[k: k + 1], SAMPLE_RATE)
        name = operator.sources[k] if operator.sources else None
        (folder / "clip.txt").write_text(job.clip + (f", stem {name}" if name else ""))
        if operator.measurement_kind == "audio":
            save_audio(folder / "degraded.wav", y.reshape(1, -1), operator.measurement_rate)
