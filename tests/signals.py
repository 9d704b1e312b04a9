"""Short music-like test signals at 16 kHz, and band levels of a spectrum."""

import torch

RATE = 16000
N = 81920


def music_like(seed: int, n: int = N, rate: int = RATE, floor: float = 0.3) -> torch.Tensor:
    """Decaying harmonic notes over a soft pink-ish noise floor (``floor`` of the notes' peak;
    0: none), shape ``(n,)``, peak < 1."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / rate
    x = torch.zeros(n)
    for start in torch.arange(0, n / rate, 0.5).tolist():
        f0 = float(110 * 2 ** (torch.randint(0, 24, (1,), generator=gen) / 12))
        env = torch.where(t >= start, torch.exp(-(t - start) * 4), torch.zeros(()))
        for h in range(1, 6):
            x += env * torch.sin(2 * torch.pi * f0 * h * t) / h**1.5
    noise = torch.randn(n, generator=gen)
    pink = torch.fft.irfft(torch.fft.rfft(noise) / torch.arange(1, n // 2 + 2).sqrt(), n)
    x = x + floor * pink / pink.abs().max()
    return 0.5 * x / x.abs().max()


def band_levels(x: torch.Tensor, rate: int, bands: list[tuple[float, float]]) -> list[float]:
    """Root-sum-square magnitude of the Hann-windowed spectrum of ``x`` in each band (Hz)."""
    spectrum = torch.fft.rfft(x * torch.hann_window(x.shape[-1]), dim=-1).abs()
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / rate)
    return [float(spectrum[..., (freqs >= lo) & (freqs < hi)].pow(2).sum().sqrt())
            for lo, hi in bands]


def assert_si_sdr_rises(clean: torch.Tensor, stages: list[torch.Tensor],
                        margins: list[float]) -> None:
    """Per signal of ``clean`` ``(B, N)``, the SI-SDR of each of ``stages`` (``(B, N)`` each,
    worst first) exceeds the one before by at least its margin in dB."""
    from diffmusic.metrics import si_sdr

    for c in range(clean.shape[0]):
        scores = [float(si_sdr(stage[c], clean[c])) for stage in stages]
        for before, after, margin in zip(scores[:-1], scores[1:], margins, strict=True):
            assert after > before + margin, (c, scores)
