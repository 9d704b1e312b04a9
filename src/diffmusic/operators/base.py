"""The measurement operator ``A`` of a restoration task: forward model, loss, projection."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from diffmusic.dsp import MelConfig, add_noise, log_mel

LossDomain = Literal["measurement", "logmel"]
Baseline = Callable[[Tensor], Tensor]


def weighted_mean(values: Tensor, weight: Tensor | float) -> Tensor:
    """Mean of ``values`` ``(B, ...)`` under 0/1 ``weight`` (broadcastable), shape ``(B,)``."""
    weight = torch.ones_like(values) * weight
    return (values * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1.0)


class Operator(nn.Module, ABC):
    """A differentiable measurement ``y = A(x)`` with its loss, projection and classical baseline.

    Waveforms are ``(B, N)``, or ``(B, K, N)`` for operators with ``num_sources = K > 1``.
    Subclasses set :attr:`task`, implement :meth:`forward`, :meth:`project`, :meth:`_spec_args`
    and :meth:`baselines`, and may refine :meth:`features` / :meth:`feature_weight`.

    Args:
        sample_rate: Sample rate of ``x`` in Hz.
        num_samples: Length ``N`` of ``x`` in samples.
        noise_snr: SNR in dB of the white noise :meth:`degrade` adds (``None``: noiseless).
        loss_domain: ``"measurement"`` compares ``A(x)`` and ``y`` directly (the plain
            ``||A(x) - y||^2``); ``"logmel"`` compares their log-compressed spectra, which ignores
            the phase the vocoder cannot reproduce.
    """

    task: ClassVar[str]
    measurement_kind: ClassVar[Literal["audio", "magnitude"]] = "audio"
    num_sources: int = 1
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
        :func:`diffmusic.restore.restore` can bring any measurement to the level the prior was
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

        :func:`diffmusic.restore.restore` removes ``A(dc)`` from ``y``, restores, and adds the
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

    @abstractmethod
    def baselines(self) -> dict[str, Baseline]:
        """Classical restorations by name, each ``y -> x``."""

    default_baseline: ClassVar[str]

    def baseline(self, y: Tensor, name: str | None = None) -> Tensor:
        """Run the classical baseline ``name`` (default :attr:`default_baseline`)."""
        methods = self.baselines()
        name = name or self.default_baseline
        if name not in methods:
            raise ValueError(f"unknown baseline {name!r} for {self.task}; "
                             f"choose from {', '.join(methods)}")
        return methods[name](y)

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
