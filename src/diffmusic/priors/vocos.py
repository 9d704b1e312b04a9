"""A small Vocos-style vocoder: ConvNeXt blocks over log-mel frames and an inverse-STFT head.

Vocos (Siuzdenko, ICLR 2024) keeps the whole network at the frame rate and lets an inverse STFT do
the upsampling, which makes it an order of magnitude cheaper than HiFi-GAN on a CPU. That matters
here: DiffMusic backpropagates through the vocoder at every sampling step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffmusic.dsp import MelConfig, mel_filterbank
from diffmusic.names import SAMPLE_RATE


@dataclass(frozen=True)
class VocosConfig:
    """Architecture of :class:`VocosVocoder`.

    Attributes:
        n_mels: Mel bands of the input log-mel.
        hop_length: Samples per mel frame (also the iSTFT hop).
        n_fft: FFT size (and Hann window length) of the synthesis iSTFT.
        width: Channels of the ConvNeXt trunk.
        intermediate: Hidden channels of each block's point-wise MLP.
        num_blocks: Number of ConvNeXt blocks.
        kernel_size: Depth-wise convolution kernel (frames).
        max_log_magnitude: Predicted log-magnitudes are clamped to this (stability).
        mel_skip: Add the "smooth inverse" of the mel (pseudo-inverse of the filterbank, in the
            log domain) to the predicted log-magnitude, so the network learns a residual.
        sample_rate: Sample rate in Hz (for the filterbank of ``mel_skip``).
        fmax: Highest mel filter edge in Hz (for the filterbank of ``mel_skip``).
    """

    n_mels: int = 64
    hop_length: int = 160
    n_fft: int = 640
    width: int = 192
    intermediate: int = 576
    num_blocks: int = 6
    kernel_size: int = 7
    max_log_magnitude: float = 6.0
    mel_skip: bool = True
    sample_rate: int = SAMPLE_RATE
    fmax: float = 8000.0

    def to_dict(self) -> dict:
        """JSON-ready dictionary of the settings."""
        return asdict(self)


class ConvNeXtBlock(nn.Module):
    """Depth-wise conv, LayerNorm, point-wise MLP, layer scale, residual; on ``(B, C, T)``."""

    def __init__(self, width: int, intermediate: int, kernel_size: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2, groups=width)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.pw1 = nn.Linear(width, intermediate)
        self.pw2 = nn.Linear(intermediate, width)
        self.gamma = nn.Parameter(torch.full((width,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T) -> (B, C, T)``."""
        h = self.dwconv(x).transpose(1, 2)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


def overlap_add_istft(spec: Tensor, n_fft: int, hop_length: int) -> Tensor:
    """Inverse STFT with "same" padding: ``T`` frames give exactly ``T * hop_length`` samples.

    Frame ``t`` is synthesised with a Hann window centred on sample ``t * hop + hop / 2``, which is
    where the AudioLDM mel frame ``t`` is centred; ``(n_fft - hop) / 2`` samples are trimmed on
    both sides and the result is divided by the squared-window envelope (weighted overlap-add).

    Args:
        spec: Complex spectrum, shape ``(B, n_fft // 2 + 1, T)``.
        n_fft: FFT size and window length.
        hop_length: Hop in samples.

    Returns:
        Waveform, shape ``(B, T * hop_length)``.
    """
    frames = spec.shape[-1]
    window = torch.hann_window(n_fft, periodic=True, dtype=spec.real.dtype, device=spec.device)
    chunks = torch.fft.irfft(spec, n=n_fft, dim=1) * window[None, :, None]
    out_len = (frames - 1) * hop_length + n_fft
    wave = F.fold(chunks, (1, out_len), (1, n_fft), stride=(1, hop_length))[:, 0, 0]
    envelope = F.fold(window.square()[None, :, None].expand(1, n_fft, frames), (1, out_len),
                      (1, n_fft), stride=(1, hop_length))[0, 0, 0]
    pad = (n_fft - hop_length) // 2
    return wave[:, pad:out_len - pad] / envelope[pad:out_len - pad].clamp_min(1e-8)


class VocosVocoder(nn.Module):
    """AudioLDM log-mel ``(B, T, n_mels)`` -> waveform ``(B, T * hop_length)`` at 16 kHz."""

    def __init__(self, config: VocosConfig | None = None):
        super().__init__()
        self.config = config or VocosConfig()
        c = self.config
        self.embed = nn.Conv1d(c.n_mels, c.width, c.kernel_size, padding=c.kernel_size // 2)
        self.norm_in = nn.LayerNorm(c.width, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(c.width, c.intermediate, c.kernel_size, 1.0 / c.num_blocks)
            for _ in range(c.num_blocks))
        self.norm_out = nn.LayerNorm(c.width, eps=1e-6)
        self.head = nn.Linear(c.width, 2 * (c.n_fft // 2 + 1))
        bank = mel_filterbank(MelConfig(sample_rate=c.sample_rate, n_fft=c.n_fft,
                                        win_length=c.n_fft, n_mels=c.n_mels, fmax=c.fmax),
                              torch.float64)
        self.register_buffer("inverse_bank", torch.linalg.pinv(bank).float(), persistent=False)

    def smooth_log_magnitude(self, mel: Tensor) -> Tensor:
        """Log of the mel mapped back to linear bins, ``(B, T, n_mels) -> (B, n_fft//2+1, T)``."""
        linear = self.inverse_bank @ mel.exp().transpose(1, 2)
        return torch.log(linear.clamp_min(1e-5))

    def spectrum(self, mel: Tensor) -> Tensor:
        """Predicted complex STFT, ``(B, T, n_mels) -> (B, n_fft // 2 + 1, T)``."""
        h = self.embed(mel.transpose(1, 2))
        h = self.norm_in(h.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            h = block(h)
        log_mag, phase = self.head(self.norm_out(h.transpose(1, 2))).transpose(1, 2).chunk(2, 1)
        if self.config.mel_skip:
            log_mag = log_mag + self.smooth_log_magnitude(mel)
        # the inverse STFT runs in float32 (complex tensors have no bfloat16 kind)
        magnitude = torch.exp(log_mag.float().clamp(max=self.config.max_log_magnitude))
        phase = phase.float()
        return torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))

    def forward(self, mel: Tensor) -> Tensor:
        """Log-mel ``(B, T, n_mels)`` -> waveform ``(B, T * hop_length)``."""
        c = self.config
        return overlap_add_istft(self.spectrum(mel), c.n_fft, c.hop_length)
