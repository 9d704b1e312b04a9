"""Few sampling steps give a sane restoration: every task and sampler, on the shipped prior, at
2, 4 and 8 steps stays within 3 dB of the clean clip's level (no blast, no NaN). 25-step runs
meet the same bound (``benchmarks/few_steps.py`` compares them with the few-step ones)."""

from __future__ import annotations

import math

import pytest
import torch

from diffmusic.audio import load_audio
from diffmusic.operators import OPERATORS, TASKS
from diffmusic.priors import load_prior
from diffmusic.restoration import Settings, restore
from diffmusic.restoration.tuned import TUNED_DIR
from diffmusic.samplers import SAMPLERS

DEMO = TUNED_DIR.parent / "demo" / "clip.wav"
@pytest.fixture(scope="module")
def prior():
    return load_prior("embedded")


def rms_db(wave: torch.Tensor) -> float:
    return 20 * math.log10(float(wave.pow(2).mean().sqrt()))


@pytest.mark.slow
@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("task", TASKS)
def test_two_four_and_eight_steps_keep_the_clean_level(task: str, sampler: str, prior) -> None:
    clip = load_audio(DEMO, prior.sample_rate, mono=True)[0][:, :prior.window]
    operator = OPERATORS[task](prior.sample_rate, prior.window,
                               **({"sources": ["vocals", "drums"]}
                                  if task == "source_separation" else {}))
    clean = (torch.stack([clip, clip.roll(prior.sample_rate // 3, -1)], 1)
             if operator.num_sources > 1 else clip)
    y = operator.degrade(clean, torch.Generator().manual_seed(0))
    reference = rms_db(clean.sum(1) if operator.num_sources > 1 else clean)
    levels = {}
    for steps in (2, 4, 8):
        wave = restore(prior, operator, y, Settings(sampler=sampler, steps=steps, seed=0)).wave
        assert torch.isfinite(wave).all(), steps
        levels[steps] = rms_db(wave.sum(1) if operator.num_sources > 1 else wave) - reference
    assert all(abs(level) < 3 for level in levels.values()), levels
