"""Rooms: octave bands, simulated rooms, and decay times measured from a response or read blind
from a reverberant recording."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from diffmusic.dsp.spectral import nearest_fft_size, stft

LOWEST_BAND_HZ = 125.0
"""Centre of the lowest octave band; the others double up to below the Nyquist frequency."""
BAND_N_FFT = 512
"""STFT size (Hann, hop a quarter) of the band energies at 16 kHz; scaled with the rate."""
DECAY_WINDOW = 0.1
"""Length in seconds of the regression window of :func:`blind_decay_times`."""
DECAY_QUANTILE = 0.02
"""Quantile of the decay slopes that :func:`blind_decay_times` takes: a recording decays no
faster than its room, and where a note stops it decays as fast."""
DECAY_RANGE = (0.1, 3.0)
"""Least and largest decay times in seconds read or modelled blind."""
ROOM_SIZE = ((5.0, 4.0, 2.6), (10.0, 8.0, 3.5))
"""Least and largest shoebox (length, width, height) in metres of :func:`simulated_room`."""
WALL_CLEARANCE = 1.0
"""Least distance in metres of the source and the microphone from every wall."""


def octave_bands(sample_rate: int, n_fft: int) -> tuple[list[float], Tensor]:
    """Octave bands from :data:`LOWEST_BAND_HZ` up to below the Nyquist frequency.

    Returns:
        The centres in Hz and, per ``rfft`` bin of ``n_fft`` points, its band's index
        ``(n_fft // 2 + 1,)`` (bins below the lowest band belong to it, those above the highest
        to that one).
    """
    count = max(1, math.ceil(math.log2(sample_rate / 2 / LOWEST_BAND_HZ)))
    centres = [LOWEST_BAND_HZ * 2**k for k in range(count)]
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    index = torch.log2(freqs.clamp_min(1.0) / LOWEST_BAND_HZ).round().clamp(0, count - 1)
    return centres, index.long()


def band_fft_size(sample_rate: int) -> int:
    """:data:`BAND_N_FFT` scaled to ``sample_rate`` (a power of two)."""
    return nearest_fft_size(BAND_N_FFT * sample_rate / 16000)


def energy_decay(rt60: Tensor, seconds: float) -> Tensor:
    """The factor by which energy decays in ``seconds`` in a room of ``rt60`` (60 dB in
    ``rt60``), shape of ``rt60``."""
    return 10 ** (-6 * seconds / rt60)


def band_energies(x: Tensor, sample_rate: int) -> tuple[Tensor, float]:
    """Energy per octave band and STFT frame of ``x`` ``(B, N)``, ``(B, bands, frames)`` (in
    ``x``'s dtype), and the frame hop in seconds."""
    n_fft = band_fft_size(sample_rate)
    power = stft(x, n_fft, n_fft // 4).abs().pow(2)
    _, index = octave_bands(sample_rate, n_fft)
    onehot = torch.nn.functional.one_hot(index).to(power.dtype)  # (F, bands)
    return torch.einsum("bft,fk->bkt", power, onehot), n_fft / 4 / sample_rate


def late_kernel(rt60: Tensor, tail_db: Tensor, hop: float, frames: int) -> Tensor:
    """How a room spreads a band's energy over STFT frames: ``k[0] = 1 + c``, ``k[s] = c r^s``
    with ``r`` the energy decay per hop and ``c = 10^(tail_db / 10) (1 - r)``.

    Args:
        rt60: Decay times in seconds, ``(..., bands)``.
        tail_db: Tail-to-direct energy in dB, same shape.
        hop: Frame hop in seconds.
        frames: Length of the kernel.

    Returns:
        ``(..., bands, frames)``, differentiable in ``rt60`` and ``tail_db``.
    """
    decay = energy_decay(rt60, hop)[..., None]
    s = torch.arange(frames, dtype=rt60.dtype, device=rt60.device)
    kernel = 10 ** (tail_db / 10)[..., None] * (1 - decay) * decay**s
    return kernel + (s == 0).to(kernel)


def decay_times(h: Tensor, sample_rate: int) -> Tensor:
    """RT60 per octave band of an impulse response ``h`` ``(N,)``: Schroeder's backward
    integral of each band's energy, its fall from -5 to -25 dB extrapolated to 60 dB (T20).

    Returns:
        Seconds, ``(bands,)``.
    """
    energy, hop = band_energies(h[None].double(), sample_rate)
    return t20(energy[0], hop).float()


def t20(energy: Tensor, hop: float) -> Tensor:
    """Decay time of energies ``(..., frames)`` spaced ``hop`` seconds: Schroeder's backward
    integral, its fall from -5 to -25 dB extrapolated to 60 dB, shape ``(...)``."""
    backward = energy.flip(-1).cumsum(-1).flip(-1)
    level = 10 * torch.log10(backward / backward[..., :1])
    return 3 * ((level < -25).double().argmax(-1) - (level < -5).double().argmax(-1)) * hop


def blind_decay_times(y: Tensor, sample_rate: int) -> Tensor:
    """RT60 per octave band read from a reverberant recording ``y`` ``(B, N)`` alone.

    Each band's energy (dB per STFT frame) is fitted by straight lines over a sliding window
    of :data:`DECAY_WINDOW`; where the window sits above the band's quietest fifth, the
    :data:`DECAY_QUANTILE` of the falling slopes is the room's decay.

    Returns:
        Seconds within :data:`DECAY_RANGE`, ``(B, bands)``.
    """
    energy, hop = band_energies(y.double(), sample_rate)
    level = 10 * torch.log10(energy + energy.amax(-1, keepdim=True) * 1e-10)
    width = max(3, min(level.shape[-1], round(DECAY_WINDOW / hop)))
    frames = level.unfold(-1, width, 1)  # (B, bands, windows, width)
    t = (torch.arange(width, dtype=level.dtype) - (width - 1) / 2) * hop
    slopes = frames @ t / (t @ t)  # dB per second
    loud = frames.mean(-1) > level.quantile(0.2, dim=-1, keepdim=True)
    rt60 = torch.full(level.shape[:2], DECAY_RANGE[1], dtype=level.dtype)
    for b, k in np.ndindex(*level.shape[:2]):
        falling = slopes[b, k][loud[b, k] & (slopes[b, k] < 0)]
        if falling.numel():
            rt60[b, k] = -60 / falling.quantile(DECAY_QUANTILE)
    return rt60.clamp(*DECAY_RANGE).float()


def simulated_room(sample_rate: int, rt60: float, seed: int = 0) -> Tensor:
    """The impulse response of a shoebox room simulated by the image source method
    (``pyroomacoustics``), its direct path at sample 0 with amplitude 1.

    The room's size and the source and microphone positions are drawn from ``seed``; the walls'
    absorption is set by Sabine's formula for ``rt60`` and corrected once so that the response's
    broadband T20 (:func:`t20` of its samples' energy) is ``rt60``.

    Args:
        sample_rate: Sample rate in Hz.
        rt60: Reverberation time in seconds.
        seed: Seed of the room's geometry.

    Returns:
        The response, ``(L,)``.
    """
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    dims = rng.uniform(*ROOM_SIZE)
    source, mic = (rng.uniform(WALL_CLEARANCE, dims - WALL_CLEARANCE) for _ in range(2))

    def simulate(target: float) -> np.ndarray:
        absorption, order = pra.inverse_sabine(target, dims)
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption),
                           max_order=order)
        room.add_source(source)
        room.add_microphone(mic)
        room.compute_rir()
        h = np.asarray(room.rir[0][0], dtype=np.float64)
        direct = int(np.argmax(np.abs(h)))
        return h[direct:] / h[direct]

    h = simulate(rt60)
    measured = float(t20(torch.from_numpy(h) ** 2, 1 / sample_rate))
    h = simulate(min(rt60 * rt60 / measured, 2 * rt60))
    return torch.from_numpy(h).float()
