"""Super-resolution of a recording low-passed by an unknown filter: the cutoff read from the
spectrum, the model low-pass, its projection and its errors."""

import pytest
import torch
from signals import music_like

from diffmusic.dsp import stft
from diffmusic.operators import SuperResolution, from_spec
from diffmusic.operators.super_resolution import estimate_lowpass


def broadband(rate: int, seconds: float = 4.0) -> torch.Tensor:
    """Two channels of notes over a pink floor, content up to the Nyquist frequency."""
    return torch.stack([music_like(s, round(seconds * rate), rate=rate) for s in range(2)])


@pytest.mark.parametrize("rate,cutoff", [(44100, 4000.0), (16000, 3000.0), (16000, 5000.0)])
@pytest.mark.parametrize("filter_,order", [("cheby1", 8), ("butter", 8), ("cheby1", 4)])
def test_cutoff_is_read_within_five_percent(rate, cutoff, filter_, order):
    x = broadband(rate)
    y = SuperResolution(rate, x.shape[-1], cutoff=cutoff, order=order,
                        filter=filter_).degrade(x)
    found, steepness = estimate_lowpass(y, rate)
    assert abs(found - cutoff) <= 0.05 * cutoff and steepness > 1


def test_a_full_band_recording_shows_no_cutoff_and_auto_refuses_it():
    x = broadband(16000)
    assert estimate_lowpass(x, 16000) is None
    with pytest.raises(ValueError, match="no cutoff found"):
        SuperResolution(16000, x.shape[-1], cutoff="auto").fitted(x)


def test_auto_reads_the_cutoff_at_the_recordings_rate_and_round_trips():
    original = broadband(44100)
    dull = SuperResolution(44100, original.shape[-1], cutoff=4000.0).degrade(original)
    op = SuperResolution(16000, 64000, cutoff="auto").fitted(dull, 44100)
    assert abs(op.cutoff_hz - 4000) <= 200 and op.measurement_rate == 16000
    assert from_spec(op.spec()).spec() == op.spec()
    with pytest.raises(ValueError, match="not known"):
        _ = SuperResolution(16000, 64000, cutoff="auto").cutoff_hz


def test_band_limited_projection_keeps_the_measured_band():
    x = broadband(16000)
    op = SuperResolution(16000, x.shape[-1], cutoff=3000.0, order=16)
    y = op(x)
    x_hat = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    out = op.project(x_hat, y)
    spec_out, spec_y, spec_hat = (stft(s, 1024, 256).abs() for s in (out, y, x_hat))
    low, high = slice(0, round(2000 / 16000 * 1024)), slice(round(4000 / 16000 * 1024), None)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    assert rel(spec_out[..., low, :], spec_y[..., low, :]) < 0.01  # the measured band stays
    assert rel(spec_out[..., high, :], spec_hat[..., high, :]) < 0.05  # above it, the restoration


def test_bad_cutoffs_are_refused():
    with pytest.raises(ValueError, match="Nyquist"):
        SuperResolution(16000, 16000, cutoff=9000.0)
    with pytest.raises(ValueError, match="filter"):
        SuperResolution(16000, 16000, cutoff=3000.0, filter="elliptic")
