"""DSP: the AudioLDM front end, STFT inversion, Griffin-Lim and resampling."""

import librosa
import numpy as np
import pytest
import torch
from signals import music_like

from diffmusic.dsp import (
    MelConfig,
    add_noise,
    fast_griffin_lim,
    istft,
    log_mel,
    magnitude_blend,
    mel_filterbank,
    peak_normalize,
    resample,
    resample_region,
    rms_db,
    stft,
)


def tone(freq: float, n: int = 16000, rate: int = 16000) -> torch.Tensor:
    return 0.5 * torch.sin(2 * torch.pi * freq * torch.arange(n) / rate)


def test_filterbank_matches_librosa_slaney():
    ours = mel_filterbank(MelConfig(), torch.float64).numpy()
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0, fmax=8000)
    np.testing.assert_allclose(ours, ref, atol=1e-7, rtol=1e-5)


def test_log_mel_matches_librosa_and_audioldm_framing():
    x = torch.randn(81920, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1
    ours = log_mel(x)
    assert ours.shape == (512, 64)
    padded = np.pad(x.numpy(), (432, 432), mode="reflect")
    mag = np.abs(librosa.stft(padded, n_fft=1024, hop_length=160, win_length=1024,
                              window="hann", center=False))
    ref = np.log(np.clip(librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64) @ mag, 1e-5, None))
    np.testing.assert_allclose(ours.numpy(), ref.T, atol=1e-5)


def test_log_mel_peaks_at_tone_band_and_is_batched():
    batch = torch.stack([tone(440.0), tone(2000.0)])
    mel = log_mel(batch)
    centres = librosa.mel_frequencies(n_mels=66, fmin=0, fmax=8000)[1:-1]
    peaks = mel.mean(1).argmax(-1)
    assert abs(centres[peaks[0]] - 440) < 60 and abs(centres[peaks[1]] - 2000) < 150


def test_log_mel_is_differentiable():
    x = tone(440.0).requires_grad_(True)
    log_mel(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    # the gradient is the derivative: a central difference along a random direction (float64,
    # music-like input, few bins at the log floor) agrees with it to 4.5e-5 relative
    x = music_like(0, 16000).double().requires_grad_(True)
    log_mel(x).mean().backward()
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        slope = (log_mel(x + h * v).mean() - log_mel(x - h * v).mean()) / (2 * h)
    assert float((x.grad * v).sum()) == pytest.approx(float(slope), rel=1e-3)


def test_istft_inverts_stft():
    x = torch.randn(3, 8000, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(istft(stft(x), 8000), x, atol=1e-5, rtol=0)


def test_unit_phase_is_exp_i_angle_and_one_at_zero():
    from diffmusic.dsp.griffin_lim import unit_phase

    gen = torch.Generator().manual_seed(0)
    spec = torch.complex(torch.randn(64, 32, generator=gen), torch.randn(64, 32, generator=gen))
    spec[0, 0] = 0
    torch.testing.assert_close(unit_phase(spec), torch.exp(1j * torch.angle(spec)))
    assert unit_phase(spec)[0, 0] == 1


@pytest.mark.slow
def test_fast_griffin_lim_beats_classic_and_random_phase():
    x = tone(330.0) + 0.5 * tone(1250.0)
    mag = stft(x).abs()

    def inconsistency(y: torch.Tensor) -> float:
        return float((stft(y).abs() - mag).norm() / mag.norm())

    gen = torch.Generator().manual_seed(0)
    fast = fast_griffin_lim(mag, x.numel(), iterations=50, generator=gen)
    gen = torch.Generator().manual_seed(0)
    classic = fast_griffin_lim(mag, x.numel(), iterations=50, momentum=0.0, generator=gen)
    gen = torch.Generator().manual_seed(0)
    none = fast_griffin_lim(mag, x.numel(), iterations=0, generator=gen)
    assert inconsistency(fast) < inconsistency(classic) < inconsistency(none)
    assert inconsistency(fast) < 0.1


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_resample_keeps_passband_and_removes_alias(factor):
    low_rate = 16000 // factor
    passband = tone(0.2 * low_rate)
    alias = tone(0.75 * 16000 / 2)
    down = resample(passband + alias, 16000, low_rate)
    assert down.shape[-1] == 16000 // factor
    back = resample(down, low_rate, 16000)
    err = (back - passband)[200:-200].norm() / passband[200:-200].norm()
    assert err < 0.01


def test_levels():
    x = tone(100.0)
    assert abs(float(rms_db(x)) - 10 * np.log10(0.125)) < 0.01
    assert abs(float(peak_normalize(x, -6.0).abs().max()) - 10 ** (-6 / 20)) < 1e-6
    noisy = add_noise(x[None], 20.0, torch.Generator().manual_seed(0))
    snr = 10 * torch.log10(x.pow(2).sum() / (noisy[0] - x).pow(2).sum())
    assert abs(float(snr) - 20.0) < 0.5


@pytest.mark.parametrize(("rate", "new_rate"), [(16000, 44100), (16000, 48000), (16000, 22050)])
def test_resample_region_matches_resampling_everything(rate: int, new_rate: int) -> None:
    wave = torch.randn(2, 3 * rate)
    full = resample(wave, rate, new_rate)
    for lo, hi in [(0, 500), (12345, 20000), (full.shape[-1] - 700, full.shape[-1])]:
        torch.testing.assert_close(resample_region(wave, rate, new_rate, lo, hi),
                                   full[..., lo:hi], atol=1e-5, rtol=0)


def test_magnitude_blend_keeps_texture_phase_at_geometric_mean_level():
    t = torch.arange(16000) / 16000
    texture = 0.8 * torch.sin(2 * torch.pi * 300 * t)
    other = 0.2 * torch.cos(2 * torch.pi * 300 * t)
    middle = slice(2000, 14000)
    half = magnitude_blend(texture, other, 0.5, 1024, 256)[middle]
    assert half.pow(2).mean().sqrt() == pytest.approx(0.4 / 2 ** 0.5, rel=0.01)
    assert torch.nn.functional.cosine_similarity(half, texture[middle], dim=0) > 0.999
    quarter = magnitude_blend(texture, other, 0.25, 1024, 256)[middle]
    assert quarter.pow(2).mean().sqrt() == pytest.approx(0.8 ** 0.25 * 0.2 ** 0.75 / 2 ** 0.5,
                                                         rel=0.01)
    torch.testing.assert_close(magnitude_blend(texture, other, 1.0, 1024, 256), texture,
                               atol=1e-5, rtol=0)


def test_magnitude_blend_bounds_gain_over_silence_and_checks_share():
    texture = torch.zeros(8000)
    texture[4000] = 1e-3  # a click in silence is not raised to the other's level
    other = 0.5 * torch.sin(2 * torch.pi * 300 * torch.arange(8000) / 16000)
    out = magnitude_blend(texture, other, 0.0, 1024, 256, max_ratio=8.0)
    assert out.abs().max() <= 8.0 * 1e-3 * 1.01
    with pytest.raises(ValueError, match="share"):
        magnitude_blend(texture, other, -0.1, 1024, 256)
