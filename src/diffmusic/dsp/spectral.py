"""STFT and the AudioLDM-compatible log-mel front end, in torch, batched and differentiable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

LOG_FLOOR = 1e-5
"""Magnitudes are clamped to this before the log, as in AudioLDM's ``dynamic_range_compression``."""


@dataclass(frozen=True)
class MelConfig:
    """Settings of a log-mel front end (defaults: AudioLDM / AudioLDM2 / MusicLDM at 16 kHz).

    Attributes:
        sample_rate: Audio sample rate in Hz.
        n_fft: FFT size in samples.
        win_length: Hann window length in samples.
        hop_length: Hop between frames in samples.
        n_mels: Number of mel bands.
        fmin: Lowest filter edge in Hz.
        fmax: Highest filter edge in Hz.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 8000.0

    def frames(self, num_samples: int) -> int:
        """Number of mel frames :func:`log_mel` returns for ``num_samples`` samples."""
        return num_samples // self.hop_length

    def to_dict(self) -> dict:
        """JSON-ready dictionary of the settings."""
        return asdict(self)


def nearest_fft_size(samples: float) -> int:
    """The power of two nearest ``samples`` (on a log scale): an STFT size set in seconds, or
    at 16 kHz and scaled to another rate."""
    return 2 ** round(math.log2(samples))


def _window(win_length: int, like: Tensor) -> Tensor:
    dtype = like.real.dtype if like.is_complex() else like.dtype
    return torch.hann_window(win_length, periodic=True, dtype=dtype, device=like.device)


def stft(x: Tensor, n_fft: int = 1024, hop_length: int = 160, win_length: int | None = None,
         center: bool = True) -> Tensor:
    """Complex STFT with a Hann window.

    Args:
        x: Waveform, shape ``(..., N)``.
        n_fft: FFT size in samples.
        hop_length: Hop in samples.
        win_length: Window length in samples (default ``n_fft``).
        center: Reflect-pad by ``n_fft // 2`` on both sides so frame ``t`` is centred on sample
            ``t * hop_length``.

    Returns:
        Complex spectrum, shape ``(..., n_fft // 2 + 1, frames)``.
    """
    win_length = win_length or n_fft
    lead = x.shape[:-1]
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop_length, win_length,
                      window=_window(win_length, x), center=center, pad_mode="reflect",
                      return_complex=True)
    return spec.reshape(*lead, *spec.shape[-2:])


def istft(spec: Tensor, length: int, n_fft: int = 1024, hop_length: int = 160,
          win_length: int | None = None) -> Tensor:
    """Inverse of :func:`stft` (centred), shape ``(..., F, T)`` -> ``(..., length)``."""
    win_length = win_length or n_fft
    lead = spec.shape[:-2]
    x = torch.istft(spec.reshape(-1, *spec.shape[-2:]), n_fft, hop_length, win_length,
                    window=_window(win_length, spec), center=True, length=length)
    return x.reshape(*lead, length)


def log_compress(magnitude: Tensor) -> Tensor:
    """``log(clamp(magnitude, 1e-5))``, the AudioLDM dynamic-range compression."""
    return torch.log(torch.clamp(magnitude, min=LOG_FLOOR))


_F_SP, _MIN_LOG_HZ, _LOGSTEP = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # the Slaney scale's constants


def hz_to_mel(hz: Tensor) -> Tensor:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    log = _MIN_LOG_MEL + torch.log(torch.clamp(hz, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(hz >= _MIN_LOG_HZ, log, hz / _F_SP)


def mel_to_hz(mel: Tensor) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log, _F_SP * mel)


def mel_filterbank(cfg: MelConfig, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> Tensor:
    """Slaney-normalised triangular mel filters (same as ``librosa.filters.mel(htk=False)``).

    Returns:
        Filterbank, shape ``(n_mels, n_fft // 2 + 1)``.
    """
    fft_hz = torch.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.linspace(hz_to_mel(torch.tensor(cfg.fmin, dtype=torch.float64)).item(),
                               hz_to_mel(torch.tensor(cfg.fmax, dtype=torch.float64)).item(),
                               cfg.n_mels + 2, dtype=torch.float64)
    hz_edges = mel_to_hz(mel_edges)
    widths = torch.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights.to(dtype=dtype, device=device)


def mel_magnitude(x: Tensor, cfg: MelConfig) -> Tensor:
    """Magnitude mel spectrogram framed exactly like AudioLDM's ``TacotronSTFT``.

    The waveform is reflect-padded by ``(n_fft - hop) / 2`` on both sides and framed without
    centring, so ``N`` samples give ``N // hop`` frames (81,920 samples -> 512 frames).

    Args:
        x: Waveform in [-1, 1], shape ``(..., N)``.
        cfg: Front-end settings.

    Returns:
        Mel magnitudes, shape ``(..., N // hop, n_mels)``.
    """
    pad = (cfg.n_fft - cfg.hop_length) // 2
    lead = x.shape[:-1]
    flat = torch.nn.functional.pad(x.reshape(-1, 1, x.shape[-1]), (pad, pad), mode="reflect")
    spec = stft(flat[:, 0], cfg.n_fft, cfg.hop_length, cfg.win_length, center=False).abs()
    mel = mel_filterbank(cfg, spec.dtype, spec.device) @ spec
    return mel.transpose(-1, -2).reshape(*lead, mel.shape[-1], cfg.n_mels)


def log_mel(x: Tensor, cfg: MelConfig = MelConfig()) -> Tensor:
    """AudioLDM log-mel: ``log(clamp(mel_magnitude, 1e-5))``, shape ``(..., N // hop, n_mels)``."""
    return log_compress(mel_magnitude(x, cfg))


def log_magnitude(x: Tensor, n_fft: int, hop_length: int) -> Tensor:
    """Log-compressed centred STFT magnitude, shape ``(..., n_fft // 2 + 1, frames)``."""
    return log_compress(stft(x, n_fft, hop_length).abs())


def magnitude_blend(texture: Tensor, other: Tensor, share: float, n_fft: int,
                    hop_length: int, max_ratio: float = 8.0) -> Tensor:
    """``texture`` with each STFT bin's magnitude moved to the weighted geometric mean
    ``|T| ** share * |O| ** (1 - share)`` of its own and ``other``'s; the phase stays
    ``texture``'s, and with it the texture's transients and the places of its partials.

    Args:
        texture: Waveform whose phase is kept, shape ``(..., N)``.
        other: Waveform whose magnitudes are blended in, same shape.
        share: Weight of ``texture``'s log-magnitude, in ``[0, 1]``.
        n_fft: FFT and Hann window size in samples.
        hop_length: Hop in samples.
        max_ratio: Bound on ``|O| / |T|`` per bin (and on its inverse), so that a bin where one
            signal is silent is not boosted from nothing.

    Returns:
        The blend, shape ``(..., N)``.

    Raises:
        ValueError: ``share`` outside ``[0, 1]``.
    """
    if not 0 <= share <= 1:
        raise ValueError(f"share {share} must lie in [0, 1]")
    t, o = stft(texture, n_fft, hop_length), stft(other, n_fft, hop_length)
    ratio = o.abs().clamp_min(LOG_FLOOR) / t.abs().clamp_min(LOG_FLOOR)
    gain = ratio.clamp(1 / max_ratio, max_ratio) ** (1 - share)
    return istft(t * gain, texture.shape[-1], n_fft, hop_length)
