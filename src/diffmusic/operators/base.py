"""The measurement operator ``A`` of a restoration task: forward model, loss, projection."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from diffmusic.dsp import MelConfig, add_noise, fit_length, log_mel, resample
from diffmusic.metrics import lsd, si_sdr

LossDomain = Literal["measurement", "logmel"]
Baseline = Callable[[Tensor], Tensor]
Span = tuple[int, int]
"""``(start, end)`` in samples, end exclusive."""


def weighted_mean(values: Tensor, weight: Tensor | float) -> Tensor:
    """Mean of ``values`` ``(B, ...)`` under 0/1 ``weight`` (broadcastable), shape ``(B,)``."""
    weight = torch.ones_like(values) * weight
    return (values * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1.0)


class Operator(nn.Module, ABC):
    """A differentiable measurement ``y = A(x)`` with its loss, projection and classical baseline.

    Waveforms are ``(B, N)``, or ``(B, K, N)`` for operators with ``num_sources = K > 1``.
    Subclasses set :attr:`task`, :attr:`baseline_names` and :attr:`options`, implement
    :meth:`forward`, :meth:`project`, :meth:`_spec_args` and one method per baseline, and may
    refine :meth:`features` / :meth:`feature_weight`. The operator owns everything about its
    task: the protocol's defaults (:meth:`from_options`), its operators for windows of a long
    recording (:meth:`for_window`, :meth:`slice_measurement`, :meth:`regions`), what a
    restoration keeps of the original (:meth:`keep_original`) and its scores (:meth:`score`).

    Args:
        sample_rate: Sample rate of ``x`` in Hz.
        num_samples: Length ``N`` of ``x`` in samples.
        noise_snr: SNR in dB of the white noise :meth:`degrade` adds (``None``: noiseless).
        loss_domain: ``"measurement"`` compares ``A(x)`` and ``y`` directly (the plain
            ``||A(x) - y||^2``); ``"logmel"`` compares their log-compressed spectra, which ignores
            the phase the vocoder cannot reproduce.
    """

    task: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()
    """Keywords of :meth:`from_options` a user sets (command line, bench, demo); left out, they
    take the protocol's values."""
    baseline_names: ClassVar[tuple[str, ...]]
    """The classical baselines, each a method ``y -> x`` of that name, in table order."""
    measurement_kind: ClassVar[Literal["audio", "magnitude"]] = "audio"
    num_sources: int = 1
    sources: list[str] | None = None
    """Names of the ``num_sources > 1`` sources (stem labels or prompts), else ``None``."""
    default_loss_domain: ClassVar[LossDomain] = "logmel"

    def __init__(self, sample_rate: int, num_samples: int, noise_snr: float | None = None,
                 loss_domain: LossDomain | None = None) -> None:
        super().__init__()
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.sample_rate = int(sample_rate)
        self.num_samples = int(num_samples)
        self.noise_snr = noise_snr
        self.loss_domain: LossDomain = loss_domain or self.default_loss_domain

    @property
    def measurement_rate(self) -> int:
        """Sample rate of an audio measurement ``y`` in Hz."""
        return self.sample_rate

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """The noiseless measurement ``A(x)``."""

    def degrade(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``A(x)`` plus measurement noise at :attr:`noise_snr` (none when it is ``None``)."""
        y = self(x)
        return y if self.noise_snr is None else add_noise(y, self.noise_snr, generator)

    def features(self, y: Tensor) -> Tensor:
        """Phase-blind view of a measurement used by the ``logmel`` loss: ``(B, ..., D)``."""
        return log_mel(y, MelConfig(sample_rate=self.measurement_rate,
                                    fmax=self.measurement_rate / 2))

    def feature_weight(self, y: Tensor) -> Tensor | float:
        """Weights broadcastable to :meth:`features` (0 where the measurement says nothing)."""
        return 1.0

    def loss(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Mean squared measurement error per batch item, shape ``(B,)``."""
        pred = self(x_hat)
        if self.loss_domain == "measurement":
            diff, weight = pred - y, self.measurement_weight()
        else:
            diff, weight = self.features(pred) - self.features(y), self.feature_weight(y)
        return weighted_mean(diff.pow(2), weight)

    def level(self, y: Tensor) -> Tensor:
        """RMS amplitude of the clean signal estimated from ``y``, shape ``(B,)``.

        Every operator here is positively homogeneous (``A(c x) = c A(x)`` for ``c > 0``), so
        :func:`diffmusic.restoration.restore` can bring any measurement to the level the prior was
        trained at and scale the restoration back. Audio measurements: the RMS of ``y`` where
        :meth:`measurement_weight` counts (a reverberant or mixed ``y`` reads a few dB high).
        """
        return weighted_mean(y.pow(2), self.measurement_weight()).sqrt()

    def measurement_weight(self) -> Tensor | float:
        """Weights of the ``measurement`` loss (0 where ``y`` carries no information)."""
        return 1.0

    def dc_offset(self, y: Tensor) -> Tensor | None:
        """The clean signal's DC offset as ``y`` shows it, ``(B, 1)``; ``None`` where the operator
        does not separate it (the prior then sees the measurement as it is).

        :func:`diffmusic.restoration.restore` removes ``A(dc)`` from ``y``, restores, and adds the
        offset back, so that a filled gap sits at the offset of its surroundings.
        """
        return None

    def mel_loss(self, mel_hat: Tensor, y: Tensor, mel: MelConfig) -> Tensor:
        """Loss on the decoder's log-mel without the vocoder (the ``vmc=False`` ablation).

        Args:
            mel_hat: Log-mel of the estimate, ``(B, frames, n_mels)`` or ``(B, K, frames, n_mels)``.
            y: The measurement.
            mel: Front-end settings of ``mel_hat``.

        Returns:
            Weighted mean squared log-mel error per batch item, shape ``(B,)``.
        """
        target, weight = self.mel_target(y, mel)
        diff = self.mel_forward(mel_hat)[..., : target.shape[-2], :] - target
        return weighted_mean(diff.pow(2), weight)

    def mel_forward(self, mel_hat: Tensor) -> Tensor:
        """How the measurement acts in the log-mel domain (identity for a single source)."""
        return mel_hat

    def mel_target(self, y: Tensor, mel: MelConfig) -> tuple[Tensor, Tensor | float]:
        """Log-mel the measurement implies, ``(B, frames, n_mels)``, and its weights."""
        return log_mel(self.baselines()[self.default_baseline](y), mel), 1.0

    @abstractmethod
    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """The output closest to ``x_hat`` that agrees with ``y`` (DESIGN.md section 4)."""

    def baselines(self) -> dict[str, Baseline]:
        """Classical restorations by name, each ``y -> x``."""
        return {name: getattr(self, name) for name in self.baseline_names}

    default_baseline: ClassVar[str]

    def baseline(self, y: Tensor, name: str | None = None) -> Tensor:
        """Run the classical baseline ``name`` (default :attr:`default_baseline`)."""
        name = name or self.default_baseline
        if name not in self.baseline_names:
            raise ValueError(f"unknown baseline {name!r} for {self.task}; "
                             f"choose from {', '.join(self.baseline_names)}")
        return getattr(self.fitted(y), name)(y)

    def audible(self, y: Tensor) -> tuple[Tensor, str | None]:
        """The measurement as audio at :attr:`sample_rate`, and the baseline that made it.

        An audio measurement at the clip's rate is itself (baseline ``None``); others (a
        low-rate recording, a magnitude) go through :attr:`default_baseline`.
        """
        if self.measurement_kind == "audio" and self.measurement_rate == self.sample_rate:
            return y, None
        return self.baseline(y), self.default_baseline

    @classmethod
    def from_options(cls, sample_rate: int, num_samples: int, *,
                     noise_snr: float | None = None, **options: object) -> Operator:
        """The operator of the benchmark protocol (DESIGN.md section 3) with the task options
        a user set (``None``: the protocol's value).

        Raises:
            ValueError: An option the task does not have, or a value it refuses.
        """
        unknown = set(options) - set(cls.options)
        if unknown:
            raise ValueError(f"{cls.task} takes no option {sorted(unknown)[0]!r}")
        given = {name: value for name, value in options.items() if value is not None}
        return cls(sample_rate, num_samples, noise_snr=noise_snr, **given)

    def for_window(self, start: int, length: int) -> Operator:
        """This operator for the window ``[start, start + length)`` of its clip (samples)."""
        return type(self)(**{**self._window_args(start, length), "num_samples": length})

    def _with(self, **changes: object) -> Operator:
        """This operator with some constructor arguments changed."""
        return type(self)(**{**self._window_args(0, self.num_samples),
                             "num_samples": self.num_samples, **changes})

    def _window_args(self, start: int, length: int) -> dict:
        """Constructor arguments of :meth:`for_window` beyond ``num_samples``."""
        spec = self.spec()
        spec.pop("task")
        return spec

    def regions(self) -> list[Span] | None:
        """The spans of the clip that the restoration must invent (``None``: all of it); a
        long recording is then restored only in windows around them and is the measurement
        itself elsewhere."""
        return None

    def region_margin(self) -> int:
        """Samples beyond each of :meth:`regions` that a projected restoration changes."""
        return 0

    def fitted(self, y: Tensor, rate: int | None = None) -> Operator:
        """This operator with what it reads from its measurement ``y`` ``(B, ...)`` before a
        restoration (declipping: each signal's clip level; denoising: the noise spectrum); here
        itself. ``rate``: the rate of an audio ``y`` in Hz when it is not
        :attr:`measurement_rate` (a recording read at its own rate).

        Raises:
            ValueError: ``y`` shows nothing to restore.
        """
        return self

    def refine(self, x_hat: Tensor, y: Tensor) -> None:
        """Update, in place, what the operator estimates of its measurement jointly with the
        signal (blind dereverberation: the room) against the sampler's current estimate
        ``x_hat`` of the signal; here nothing. The guided samplers call it at every step before
        the measurement loss when that loss sees the waveform (the Vocoder-Mel Constraint; BUDDy,
        Moliner et al. 2024)."""

    def estimates(self) -> dict:
        """What the operator estimated from its measurement, JSON-ready, for the record (blind
        dereverberation: the RT60 per band); here nothing."""
        return {}

    def rescaled(self, gain: Tensor) -> Operator:
        """The operator of the measurements ``gain * y`` (``gain`` ``(B,)``): here itself, as
        every operator that is positively homogeneous (``A(c x) = c A(x)``, see
        :meth:`level`); declipping scales its clip level."""
        return self

    def with_similarity(self, y: Tensor) -> tuple[Operator, Tensor]:
        """The operator and measurement of a restoration that may use what the rest of a long
        measurement ``y`` repeats (inpainting: the passages whose context matches each gap's);
        here both unchanged."""
        return self, y

    def without_similarity(self) -> Operator:
        """The operator of a restoration that must not use what the measurement repeats (its
        classical baselines, the warm start among them, search nothing); here itself."""
        return self

    def measurement_shape(self) -> tuple[int, ...]:
        """Shape of one measurement without the batch axis, ``(..., M)``."""
        k, n = self.num_sources, self.num_samples
        with torch.no_grad():
            return tuple(self(torch.zeros((1, n) if k == 1 else (1, k, n))).shape[1:])

    def measurement_units(self) -> float:
        """Measurement samples (or frames) per sample of ``x``."""
        return self.measurement_rate / self.sample_rate

    def measurement_size(self, num_samples: int) -> int:
        """Size of the last axis of the measurement of ``num_samples`` samples."""
        return round(num_samples * self.measurement_units())

    def covered_samples(self, y: Tensor) -> int:
        """Samples of the signal that the measurement ``y`` covers."""
        return round(y.shape[-1] / self.measurement_units())

    def slice_measurement(self, y: Tensor, start: int, length: int) -> Tensor:
        """The part of a long measurement ``y`` that window ``[start, start + length)`` of the
        clip sees, zero-padded at the end to the window operator's measurement size."""
        first = round(start * self.measurement_units())
        size = self.measurement_size(length)
        return fit_length(y[..., first:first + size], size)

    def keep_original(self, original: Tensor, restored: Tensor, rate: int, restored_rate: int,
                      out_rate: int) -> Tensor:
        """A recording's restoration at ``out_rate`` that keeps what the measurement holds
        (here: nothing; the restoration resampled).

        Args:
            original: The damaged recording ``(C, N)`` at ``rate``.
            restored: Its restoration ``(C, M)`` at ``restored_rate`` (the clip's rate).
            rate: Rate of ``original`` in Hz.
            restored_rate: Rate of ``restored`` in Hz.
            out_rate: Output rate in Hz.

        Returns:
            ``(C, round(N * out_rate / rate))``.
        """
        return resampled_like(original, restored, rate, restored_rate, out_rate)

    def output_rate(self, rate: int) -> int:
        """The rate a recording at ``rate`` is restored to by default."""
        return rate

    def invented(self, wave: Tensor) -> Tensor | None:
        """The part of a signal ``(..., N)`` that a restoration had to invent, for a FAD of
        that part alone (``None``: no such part is singled out)."""
        return None

    def score(self, est: Tensor, ref: Tensor, y: Tensor) -> dict:
        """Per-clip metrics of an estimate ``est`` of ``ref`` (both ``(N,)``) from ``y``."""
        return {"lsd": float(lsd(est, ref)), "si_sdr": float(si_sdr(est, ref))}

    @abstractmethod
    def _spec_args(self) -> dict:
        """Constructor arguments beyond the common ones, JSON-ready."""

    def spec(self) -> dict:
        """JSON-ready description from which :func:`from_spec` rebuilds this exact operator."""
        return {"task": self.task, "sample_rate": self.sample_rate,
                "num_samples": self.num_samples, "noise_snr": self.noise_snr,
                "loss_domain": self.loss_domain, **self._spec_args()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.spec().items() if not isinstance(v, list))


def resampled_like(original: Tensor, restored: Tensor, rate: int, restored_rate: int,
                   out_rate: int) -> Tensor:
    """``restored`` (at ``restored_rate``) at ``out_rate``, as long as ``original`` (at ``rate``)
    is there: ``(C, round(N * out_rate / rate))``."""
    length = round(original.shape[-1] * out_rate / rate)
    return fit_length(resample(restored, restored_rate, out_rate), length)
