"""An analytic prior: Gaussian data, identity decoder and vocoder, closed-form noise predictor."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from diffmusic.dsp import MelConfig
from diffmusic.names import SAMPLE_RATE
from diffmusic.priors.base import Condition, Prior
from diffmusic.priors.schedule import scaled_linear_alphas_cumprod


def resonant_covariance(num_samples: int, length: float = 24.0, frequency: float = 0.0,
                        variance: float = 1.0, jitter: float = 1e-4) -> Tensor:
    """Stationary covariance ``v exp(-tau^2 / 2l^2) cos(2 pi f tau)`` of a tone-like process.

    Args:
        num_samples: Signal length ``N``.
        length: Correlation length in samples.
        frequency: Centre frequency in cycles per sample.
        variance: Marginal variance.
        jitter: Added to the diagonal.

    Returns:
        Covariance, shape ``(N, N)``, float64.
    """
    tau = torch.arange(num_samples, dtype=torch.float64)
    tau = tau[:, None] - tau[None, :]
    kernel = torch.exp(-0.5 * (tau / length) ** 2) * torch.cos(2 * math.pi * frequency * tau)
    return variance * kernel + jitter * torch.eye(num_samples, dtype=torch.float64)


class GaussianPrior(Prior):
    """Data ``x ~ N(mean, cov)`` in waveform space; latent = waveform (identity decoder/vocoder).

    Its noise predictor is the exact MMSE one, so samplers can be checked against the exact
    posterior of a linear measurement (:meth:`posterior_mean`).

    Args:
        num_samples: Signal length ``N`` (the latent is the waveform).
        sample_rate: Nominal sample rate in Hz (operators use it to place gaps).
        cov: Covariance ``(N, N)``; :func:`resonant_covariance` when omitted.
        mean: Mean ``(N,)``; zero when omitted.
    """

    name = "gaussian"
    latent_hop = 1
    """The latent is the waveform: one sample per latent frame."""

    def __init__(self, num_samples: int = 512, sample_rate: int = SAMPLE_RATE,
                 cov: Tensor | None = None, mean: Tensor | None = None) -> None:
        self.num_samples = num_samples
        self.mel = MelConfig(sample_rate=sample_rate)
        self.alphas_cumprod = scaled_linear_alphas_cumprod()
        self.device = torch.device("cpu")
        self.cov = resonant_covariance(num_samples) if cov is None else cov.double()
        self.mean = torch.zeros(num_samples, dtype=torch.float64) if mean is None else mean.double()
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(self.cov)

    @property
    def window(self) -> int:
        """The signal length: the prior models exactly ``num_samples`` samples."""
        return self.num_samples

    def latent_shape(self, num_samples: int) -> tuple[int, ...]:
        if num_samples != self.num_samples:
            raise ValueError(f"the Gaussian prior models exactly {self.num_samples} samples")
        return (num_samples,)

    def predict(self, z_t: Tensor, t: int, cond: Condition | None = None) -> Tensor:
        a = float(self.alphas_cumprod[t])
        u, lam = self.eigenvectors, self.eigenvalues
        centred = (z_t.double() - math.sqrt(a) * self.mean) @ u
        x0 = self.mean + (centred * (math.sqrt(a) * lam / (a * lam + 1 - a))) @ u.T
        return ((z_t.double() - math.sqrt(a) * x0) / math.sqrt(1 - a)).to(z_t.dtype)

    def decode(self, z: Tensor) -> Tensor:
        return z

    def vocode(self, mel: Tensor) -> Tensor:
        return mel

    def encode(self, wave: Tensor) -> Tensor:
        return wave

    def sample(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact draws from the data distribution, shape ``(count, N)``, float32."""
        noise = torch.randn(count, self.num_samples, generator=generator, dtype=torch.float64)
        root = self.eigenvectors * self.eigenvalues.clamp_min(0).sqrt()
        return (self.mean + noise @ root.T).float()

    def posterior_mean(self, measure: Callable[[Tensor], Tensor], y: Tensor,
                       noise_var: float = 1e-8) -> Tensor:
        """Exact ``E[x | y]`` for a linear measurement with Gaussian noise of ``noise_var``.

        Args:
            measure: The linear map ``(B, N) -> (B, M)`` (e.g. an operator).
            y: Measurements, shape ``(B, M)``.
            noise_var: Measurement-noise variance (a tiny value regularises noiseless cases).

        Returns:
            Posterior means, shape ``(B, N)``, float64.
        """
        eye = torch.eye(self.num_samples, dtype=torch.float64)
        matrix = measure(eye.float()).double().T
        gram = matrix @ self.cov @ matrix.T + noise_var * torch.eye(matrix.shape[0],
                                                                    dtype=torch.float64)
        residual = y.double() - self.mean @ matrix.T
        return self.mean + torch.linalg.solve(gram, residual.T).T @ (self.cov @ matrix.T).T
