"""Objective metrics of the benchmark protocol (DESIGN.md section 3): LSD, LSD-HF and SI-SDR."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from diffmusic.dsp import stft

LSD_EPS = 1e-10
"""Added to STFT magnitudes before ``log10`` in :func:`lsd`."""

ArrayLike = Tensor | np.ndarray


def _pair(x: ArrayLike, ref: ArrayLike) -> tuple[Tensor, Tensor]:
    """Both signals as float64 tensors of the same shape ``(..., N)``."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    ref = torch.as_tensor(ref).detach().to("cpu", torch.float64)
    if x.shape != ref.shape:
        raise ValueError(f"signal shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}")
    if x.shape[-1] == 0:
        raise ValueError("cannot compare empty signals")
    return x, ref


def _frame_distances(x: ArrayLike, ref: ArrayLike, n_fft: int, hop: int,
                     bins: slice = slice(None)) -> Tensor:
    """Per-frame log-spectral distance (RMS over ``bins``), shape ``(..., frames)``."""
    x, ref = _pair(x, ref)
    diff = (torch.log10(stft(x, n_fft, hop).abs() + LSD_EPS)
            - torch.log10(stft(ref, n_fft, hop).abs() + LSD_EPS))[..., bins, :]
    if diff.shape[-2] == 0:
        raise ValueError("no frequency bins selected")
    return diff.pow(2).mean(-2).sqrt()


def _log_spectral_distance(x: ArrayLike, ref: ArrayLike, n_fft: int, hop: int,
                           bins: slice = slice(None)) -> Tensor:
    return _frame_distances(x, ref, n_fft, hop, bins).mean(-1)


def lsd(x: ArrayLike, ref: ArrayLike, n_fft: int = 1024, hop: int = 160) -> Tensor:
    """Log-spectral distance of ``x`` to ``ref``, as in the DiffMusic paper's tables.

    Settings: centred STFT with a periodic Hann window of ``n_fft`` samples (default 1024) and a
    hop of ``hop`` samples (default 160); ``S = log10(|X| + 1e-10)`` (magnitude, not power);
    the root mean square of ``S_x - S_ref`` over all ``n_fft // 2 + 1`` frequency bins of a frame,
    then the mean over frames. Identical signals give 0; ``2 x`` against ``x`` gives
    ``log10(2) ~ 0.301``.

    Args:
        x: Estimate, shape ``(..., N)`` (tensor or array, any float dtype).
        ref: Reference, same shape.
        n_fft: FFT and window size in samples.
        hop: Hop between frames in samples.

    Returns:
        LSD per signal, shape ``(...)``, float64.
    """
    return _log_spectral_distance(x, ref, n_fft, hop)


def lsd_in(x: ArrayLike, ref: ArrayLike, spans: list[tuple[int, int]], n_fft: int = 1024,
           hop: int = 160) -> Tensor:
    """:func:`lsd` over the frames whose centre lies inside one of ``spans`` only (inpainting's
    gap LSD: the frames where content was invented).

    Args:
        x: Estimate, shape ``(..., N)``.
        ref: Reference, same shape.
        spans: ``(start, end)`` in samples, end exclusive.
        n_fft: FFT and window size in samples.
        hop: Hop between frames in samples (frame ``t`` is centred on sample ``t * hop``).

    Returns:
        Gap LSD per signal, shape ``(...)``, float64.

    Raises:
        ValueError: When no frame centre lies inside a span.
    """
    per_frame = _frame_distances(x, ref, n_fft, hop)
    centres = torch.arange(per_frame.shape[-1]) * hop
    inside = torch.zeros(per_frame.shape[-1], dtype=torch.bool)
    for a, b in spans:
        inside |= (centres >= a) & (centres < b)
    if not inside.any():
        raise ValueError("no frame is centred inside the spans")
    return per_frame[..., inside].mean(-1)


def lsd_hf(x: ArrayLike, ref: ArrayLike, cutoff_hz: float, sample_rate: int,
           n_fft: int = 1024, hop: int = 160) -> Tensor:
    """High-band LSD: :func:`lsd` restricted to the bins strictly above ``cutoff_hz``.

    Used for super-resolution with ``cutoff_hz`` = the Nyquist frequency of the low-rate
    measurement (4 kHz for 16 kHz audio downsampled by 2). Bin ``k`` has frequency
    ``k * sample_rate / n_fft``.

    Args:
        x: Estimate, shape ``(..., N)``.
        ref: Reference, same shape.
        cutoff_hz: Only bins above this frequency in Hz count.
        sample_rate: Sample rate of both signals in Hz.
        n_fft: FFT and window size in samples.
        hop: Hop between frames in samples.

    Returns:
        LSD-HF per signal, shape ``(...)``, float64.
    """
    first = int(np.floor(cutoff_hz * n_fft / sample_rate)) + 1
    return _log_spectral_distance(x, ref, n_fft, hop, slice(first, None))


def si_sdr(est: ArrayLike, ref: ArrayLike, eps: float = 1e-12) -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., ICASSP 2019).

    Both signals are made zero-mean; with ``alpha = <est, ref> / ||ref||^2`` the target is
    ``alpha ref`` and the distortion ``est - alpha ref``;
    ``SI-SDR = 10 log10(||alpha ref||^2 / ||est - alpha ref||^2)``. Rescaling ``est`` leaves
    it unchanged; ``ref + n`` with ``n`` zero-mean and orthogonal to ``ref`` gives
    ``10 log10(||ref||^2 / ||n||^2)``.

    Args:
        est: Estimate, shape ``(..., N)``.
        ref: Reference, same shape.
        eps: Guards the divisions for silent signals.

    Returns:
        SI-SDR per signal in dB, shape ``(...)``, float64.
    """
    est, ref = _pair(est, ref)
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def si_sdr_improvement(est: ArrayLike, ref: ArrayLike, mixture: ArrayLike) -> Tensor:
    """SI-SDR improvement in dB: ``si_sdr(est, ref) - si_sdr(mixture, ref)``.

    Args:
        est: Estimate of a source, shape ``(..., N)``.
        ref: The source, same shape.
        mixture: The unprocessed input (broadcast against ``ref``), shape ``(..., N)`` or ``(N,)``.

    Returns:
        SI-SDRi per signal in dB, shape ``(...)``, float64.
    """
    mixture = torch.as_tensor(mixture).expand(torch.as_tensor(ref).shape)
    return si_sdr(est, ref) - si_sdr(mixture, ref)


def museval_sdr(est: ArrayLike, ref: ArrayLike, sample_rate: int = 16000) -> float | None:
    """BSS Eval v4 SDR (median over 1 s windows, mean over sources) when ``museval`` is installed.

    Args:
        est: Estimated sources ``(K, N)``.
        ref: Reference sources ``(K, N)``.
        sample_rate: Sample rate in Hz (the window is one second).

    Returns:
        SDR in dB, or ``None`` without ``museval`` or when every window is silent.
    """
    try:
        import museval
    except ImportError:
        return None
    est, ref = _pair(est, ref)
    sdr, *_ = museval.evaluate(ref.numpy()[..., None], est.numpy()[..., None],
                               win=sample_rate, hop=sample_rate)
    value = float(np.nanmean(np.nanmedian(sdr, axis=1)))
    return value if np.isfinite(value) else None


__all__ = ["LSD_EPS", "lsd", "lsd_hf", "museval_sdr", "si_sdr", "si_sdr_improvement"]
