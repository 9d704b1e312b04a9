"""Dereverberation: undo the convolution with a room impulse response."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from diffmusic.operators.base import Operator

RT60_RANGE = (0.05, 10.0)
"""RT60s in seconds the synthetic room response accepts."""


def synthetic_rir(sample_rate: int, rt60: float = 0.5, length: float = 0.8,
                  seed: int = 0) -> Tensor:
    """Unit direct path plus a unit-energy exponentially decaying Gaussian-noise tail.

    Args:
        sample_rate: Sample rate in Hz.
        rt60: Time in seconds for the tail to decay by 60 dB.
        length: Length of the response in seconds.
        seed: Seed of the noise.

    Returns:
        Impulse response, shape ``(round(length * sample_rate),)``.
    """
    n = round(length * sample_rate)
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    tail = torch.randn(n, generator=generator, dtype=torch.float64)
    tail = tail * torch.exp(-3 * math.log(10) * t / rt60)
    tail[0] = 0
    rir = tail / tail.norm()
    rir[0] = 1.0
    return rir.float()


def _fft_size(n: int) -> int:
    return 1 << (n - 1).bit_length()


class Dereverberation(Operator):
    """``A(x) = (h * x)[:N]``: convolution with a known impulse response, truncated.

    Args:
        sample_rate: Sample rate in Hz.
        num_samples: Clip length in samples.
        rir: Impulse response samples (a user's RIR file); overrides the synthetic one.
        rt60: RT60 in seconds of the synthetic response.
        rir_length: Length in seconds of the synthetic response.
        seed: Seed of the synthetic response.
        wiener_nsr: Noise-to-signal ratio of the Wiener baseline.
        refine_iterations: Conjugate-gradient iterations of :meth:`project` (300 converge to
            a measurement residual about 1e-5 of the start's on music; 30 left 3e-3, and a
            projected DiffMusic output worse than the Wiener baseline).
        refine_weight: Weight of ``||x - x_hat||^2`` against ``||h * x - y||^2`` in
            :meth:`project`.
        **kwargs: ``noise_snr`` and ``loss_domain`` of :class:`Operator`.
    """

    task: ClassVar[str] = "dereverberation"
    options: ClassVar[tuple[str, ...]] = ("rir", "rt60", "seed")
    baseline_names: ClassVar[tuple[str, ...]] = ("wiener",)
    default_baseline: ClassVar[str] = "wiener"

    def __init__(self, sample_rate: int, num_samples: int, rir: Sequence[float] | None = None,
                 rt60: float = 0.5, rir_length: float = 0.8, seed: int = 0,
                 wiener_nsr: float = 1e-2, refine_iterations: int = 300,
                 refine_weight: float = 1e-6, **kwargs) -> None:
        super().__init__(sample_rate, num_samples, **kwargs)
        if not RT60_RANGE[0] <= rt60 <= RT60_RANGE[1]:
            raise ValueError(f"rt60 must be between {RT60_RANGE[0]:g} and {RT60_RANGE[1]:g} s "
                             f"(rooms to large churches), got {rt60:g}")
        self.rt60, self.rir_length, self.seed = rt60, rir_length, seed
        self.user_rir = rir is not None
        h = (torch.as_tensor(rir, dtype=torch.float32) if rir is not None
             else synthetic_rir(sample_rate, rt60, rir_length, seed))
        if h.dim() != 1 or h.numel() == 0 or not torch.isfinite(h).all():
            raise ValueError("the impulse response must be a non-empty finite mono signal")
        if not bool((h != 0).any()):
            raise ValueError("the impulse response is silent (every sample is zero)")
        self.wiener_nsr = wiener_nsr
        self.refine_iterations, self.refine_weight = refine_iterations, refine_weight
        self.register_buffer("rir", h, persistent=False)
        self.n_fft = _fft_size(num_samples + h.numel())
        self._spectra: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    def _spectrum(self, like: Tensor) -> Tensor:
        """``rfft`` of the impulse response in ``like``'s dtype, computed once per dtype and
        device (the projection's conjugate gradient needs it twice per iteration)."""
        h = self.rir.to(like.dtype)
        key = (h.dtype, h.device)
        if key not in self._spectra:
            self._spectra[key] = torch.fft.rfft(h, self.n_fft)
        return self._spectra[key]

    def forward(self, x: Tensor) -> Tensor:
        full = torch.fft.irfft(torch.fft.rfft(x, self.n_fft) * self._spectrum(x), self.n_fft)
        return full[..., : self.num_samples]

    def adjoint(self, r: Tensor) -> Tensor:
        """``A^T r``: correlation with the impulse response, shape ``(..., N)``."""
        spec = torch.fft.rfft(r, self.n_fft) * self._spectrum(r).conj()
        return torch.fft.irfft(spec, self.n_fft)[..., : self.num_samples]

    def project(self, x_hat: Tensor, y: Tensor) -> Tensor:
        """Conjugate gradient on ``||A x - y||^2 + lam ||x - x_hat||^2`` started at ``x_hat``."""
        lam = self.refine_weight

        def normal(v: Tensor) -> Tensor:
            return self.adjoint(self(v)) + lam * v

        x = x_hat.clone()
        r = self.adjoint(y) + lam * x_hat - normal(x)
        p, rs = r.clone(), r.pow(2).sum(-1, keepdim=True)
        for _ in range(self.refine_iterations):
            ap = normal(p)
            alpha = rs / (p * ap).sum(-1, keepdim=True).clamp_min(1e-20)
            x, r = x + alpha * p, r - alpha * ap
            rs_new = r.pow(2).sum(-1, keepdim=True)
            p, rs = r + (rs_new / rs.clamp_min(1e-20)) * p, rs_new
        return x

    def wiener(self, y: Tensor) -> Tensor:
        """Wiener deconvolution with the known response: ``conj(H) Y / (|H|^2 + nsr)``."""
        h = self._spectrum(y)
        spec = torch.fft.rfft(y, self.n_fft) * h.conj() / (h.abs().pow(2) + self.wiener_nsr)
        return torch.fft.irfft(spec, self.n_fft)[..., : self.num_samples]

    def _spec_args(self) -> dict:
        args = {"rt60": self.rt60, "rir_length": self.rir_length, "seed": self.seed,
                "wiener_nsr": self.wiener_nsr, "refine_iterations": self.refine_iterations,
                "refine_weight": self.refine_weight}
        if self.user_rir:
            args["rir"] = self.rir.tolist()
        return args
