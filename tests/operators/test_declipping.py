"""Declipping: the clip level read from a recording, clipping to an input SDR, consistency,
the sparsity baseline, the projection and what a recording keeps."""

import pytest
import torch
from signals import RATE, assert_si_sdr_rises, music_like

from diffmusic.operators import Declipping
from diffmusic.operators.declipping import clip_levels, level_for_sdr

N = 2 * RATE


@pytest.fixture(scope="module")
def stereo() -> torch.Tensor:
    return torch.stack([music_like(0, N), music_like(1, N)])


def sdr_db(est: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).sum() / (est - ref).pow(2).sum()))


@pytest.mark.parametrize("share", [0.3, 0.6, 0.9])
def test_clip_level_is_read_within_two_percent_per_channel(stereo, share):
    levels = torch.tensor([share, share / 2])[:, None] * stereo.abs().amax(-1, keepdim=True)
    clipped = torch.minimum(torch.maximum(stereo, -levels), levels)
    found = clip_levels(clipped)
    for got, true in zip(found, levels[:, 0].tolist(), strict=True):
        assert got is not None and abs(got - true) <= 0.02 * true


def test_an_unclipped_recording_shows_no_level(stereo):
    assert clip_levels(stereo) == [None, None]
    with pytest.raises(ValueError, match="no clipping"):
        Declipping(RATE, N).fitted(stereo)


@pytest.mark.parametrize("target", [3.0, 7.0])
def test_degrade_clips_to_the_input_sdr(stereo, target):
    y = Declipping(RATE, N, input_sdr=target).degrade(stereo)
    for channel in range(2):
        assert sdr_db(y[channel], stereo[channel]) == pytest.approx(target, abs=0.05)
    assert level_for_sdr(stereo, target).shape == (2, 1)


def test_consistent_estimates_clip_back_to_the_measurement(stereo):
    op = Declipping(RATE, N, input_sdr=3.0)
    y = op.degrade(stereo)
    fitted = op.fitted(y)
    wild = torch.randn(stereo.shape, generator=torch.Generator().manual_seed(0))
    estimates = fitted.consistent(wild, y), fitted.consistent_iht(y), fitted.project(wild, y)
    for estimate in estimates:  # exact but within the clipped-sample tolerance of the level
        torch.testing.assert_close(fitted(estimate), y, atol=0.005 * float(y.abs().max()), rtol=0)
        reliable = y.abs() < 0.995 * torch.tensor(clip_levels(y))[:, None]
        assert torch.equal(estimate[reliable], y[reliable])


def test_sparsity_baseline_and_projection_of_the_truth_beat_the_clipped_input(stereo):
    op = Declipping(RATE, N, input_sdr=3.0)
    y = op.degrade(stereo)
    fitted = op.fitted(y)
    # the sparsity iterations started from the truth end further ahead than from the input
    assert_si_sdr_rises(stereo, [y, fitted.baseline(y), fitted.project(stereo, y)], [0.5, 0.5])


def test_rescaled_level_follows_the_gain():
    op = Declipping(RATE, N, clip_level=[0.2, 0.4])
    assert op.rescaled(torch.tensor([2.0, 0.5])).clip_level == pytest.approx([0.4, 0.2])


def test_keep_original_keeps_reliable_samples_and_holds_clipped_ones_beyond(stereo):
    op = Declipping(RATE, N, input_sdr=3.0)
    y = op.degrade(stereo)
    restored = 0.5 * stereo  # too low on the peaks: held at the level there
    out = op.fitted(y).keep_original(y, restored, RATE, RATE, RATE)
    level = torch.tensor(clip_levels(y))[:, None]
    clipped = y.abs() >= 0.995 * level
    assert torch.equal(out[~clipped], y[~clipped])
    assert bool((out[clipped] * torch.sign(y[clipped]) >= y[clipped].abs()).all())
