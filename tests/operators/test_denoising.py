"""Denoising: the noise spectrum read from a recording, coloured noise at an SNR, the
noise-aware loss, the Wiener baseline and projection, and what a recording keeps."""

import math

import pytest
import torch
from signals import assert_si_sdr_rises, music_like

from diffmusic.dsp import resample, stft
from diffmusic.operators import Denoising, from_spec
from diffmusic.operators.denoising import coloured_noise

RATE = 16000
N = 3 * RATE


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    """Decaying notes with no noise floor of their own (the only floor is the one added)."""
    return torch.stack([music_like(0, N, floor=0.0), music_like(1, N, floor=0.0)])


def bin_power(noise: torch.Tensor) -> torch.Tensor:
    return stft(noise, 1024, 256).abs().pow(2).mean(-1)


@pytest.mark.parametrize("colour", ["white", "pink"])
def test_minimum_statistics_read_the_noise_spectrum_within_one_and_a_half_db(clean, colour):
    op = Denoising(RATE, N, snr=10.0, noise=colour)
    y = op.degrade(clean, torch.Generator().manual_seed(0))
    found = torch.tensor(op.fitted(y).noise_power)
    error_db = 10 * torch.log10(found / bin_power(y - clean))[:, 4:-4]
    assert float(error_db.median().abs()) < 1.5 and float(error_db.abs().quantile(0.9)) < 4


def test_a_noise_sample_reads_the_noise_of_that_stretch(clean):
    noisy = clean.clone()
    noisy[:, : RATE] = 0  # the first second holds noise only
    op = Denoising(RATE, N, snr=20.0, noise_sample=(0.0, 1.0))
    y = op.degrade(noisy, torch.Generator().manual_seed(1))
    found = torch.tensor(op.fitted(y).noise_power)
    error_db = 10 * torch.log10(found / bin_power((y - noisy)[:, : RATE]))
    assert float(error_db.abs().max()) < 1e-3


@pytest.mark.parametrize("colour,slope_db", [("white", 0.0), ("pink", -3.0), ("brown", -6.0)])
def test_degrade_adds_noise_of_the_colour_at_the_snr(clean, colour, slope_db):
    op = Denoising(RATE, N, snr=10.0, noise=colour)
    y = op.degrade(clean, torch.Generator().manual_seed(2))
    noise = y - clean
    snr = 10 * torch.log10(clean.pow(2).sum(-1) / noise.pow(2).sum(-1))
    torch.testing.assert_close(snr, torch.full((2,), 10.0), atol=1e-3, rtol=0)
    power = bin_power(coloured_noise((8, 4 * RATE), colour, torch.Generator().manual_seed(3)))
    octave = 10 * math.log10(float(power[:, 128:256].mean() / power[:, 64:128].mean()))
    assert octave == pytest.approx(slope_db, abs=0.5)


def test_loss_prefers_the_clean_signal_to_the_noisy_one(clean):
    op = Denoising(RATE, N, snr=10.0)
    y = op.degrade(clean, torch.Generator().manual_seed(4))
    fitted = op.fitted(y)
    assert (fitted.loss(clean, y) < 0.5 * fitted.loss(y, y)).all()


def test_wiener_baseline_and_projection_of_the_truth_denoise(clean):
    op = Denoising(RATE, N, snr=10.0)
    y = op.degrade(clean, torch.Generator().manual_seed(5))
    fitted = op.fitted(y)
    assert_si_sdr_rises(clean, [y, fitted.baseline(y), fitted.project(clean, y)], [2, 1])


def test_level_discounts_the_noise_and_rescaling_scales_its_power(clean):
    op = Denoising(RATE, N, snr=5.0)
    y = op.degrade(clean, torch.Generator().manual_seed(6))
    fitted = op.fitted(y)
    ratio_db = 20 * torch.log10(fitted.level(y) / clean.pow(2).mean(-1).sqrt())
    assert float(ratio_db.abs().max()) < 0.5
    scaled = fitted.rescaled(torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(torch.tensor(scaled.noise_power),
                               torch.tensor(fitted.noise_power)
                               * torch.tensor([[4.0], [0.25]]))
    assert from_spec(fitted.spec()).noise_power == fitted.noise_power


def test_bad_estimates_are_refused():
    with pytest.raises(ValueError, match="too short"):
        Denoising(RATE, RATE // 10).fitted(torch.randn(1, RATE // 10))
    with pytest.raises(ValueError, match="noise sample"):
        Denoising(RATE, N, noise_sample=(2.0, 4.0))
    with pytest.raises(ValueError, match="shorter"):
        Denoising(RATE, N, noise_sample=(0.0, 0.1))
    with pytest.raises(ValueError, match="noise"):
        Denoising(RATE, N, noise="blue")


def test_a_44k_recording_keeps_a_denoised_upper_band(clean):
    rate = 44100
    t = torch.arange(2 * rate) / rate
    tone = 0.3 * torch.sin(2 * torch.pi * 440 * t)[None]
    noisy = tone + 0.03 * torch.randn(1, 2 * rate, generator=torch.Generator().manual_seed(7))
    restored_16k = 0.3 * torch.sin(2 * torch.pi * 440 * torch.arange(2 * RATE) / RATE)[None]
    out = Denoising(RATE, 2 * RATE).keep_original(noisy, restored_16k, rate, RATE, rate)
    assert out.shape == noisy.shape and torch.isfinite(out).all()
    spec_in, spec_out = stft(noisy, 2048, 512).abs(), stft(out, 2048, 512).abs()
    upper = slice(round(9000 / rate * 2048), None)  # above the restoration's band
    assert float(spec_out[..., upper, :].pow(2).mean()) < 0.5 * float(
        spec_in[..., upper, :].pow(2).mean())


def test_the_noise_read_at_another_rate_is_this_operators(clean):
    op = Denoising(RATE, N, snr=10.0)
    y = op.degrade(clean, torch.Generator().manual_seed(8))
    at_16k = torch.tensor(op.fitted(y).noise_power)
    from_48k = torch.tensor(op.fitted(resample(y, RATE, 48000), 48000).noise_power)
    assert from_48k.shape == at_16k.shape
    error_db = 10 * torch.log10(from_48k / at_16k)[:, 4:-40]  # below the resampler's roll-off
    assert float(error_db.abs().median()) < 0.5
