"""Golden slices: every sampler's output at a fixed seed on the Gaussian and the tiny prior.

Each sampler function is called directly (no restoration layer, no projection, no level) at 4
steps and seed 0; six samples of the raw output waveform are compared at :data:`ATOL`. The
values were recorded from the code at commit 8895c1b, identical over two runs. A change to a
sampler's update, its noise draws or the timestep grid moves them; so does a change of 1% to
any step size (or of DDIM's eta by 0.01), which moved the slices by 2.7e-4 (tiny DPS) to 0.16.
A refactor that keeps the outputs must keep these values.
"""

from __future__ import annotations

import pytest
import torch
from signals import music_like
from torch import Tensor

from diffmusic.operators import Inpainting, Operator, SuperResolution
from diffmusic.priors import Prior, load_prior
from diffmusic.samplers import SAMPLERS

STEPS = 4
SEED = 0
TINY_SAMPLES = 12800
"""0.8 s (20 latent frames of 640 samples): the tiny prior's full window (81,920) is five times
slower and checks nothing more."""
SAMPLER_KWARGS = {
    # the Gaussian prior's measurement-domain loss wants the step sizes of test_samplers.py
    "gaussian": {"diffmusic": {"rho": 0.3, "eta": 1.0}, "dps": {"zeta": 100.0, "eta": 1.0},
                 "dsg": {"guidance_rate": 0.5, "eta": 1.0}, "mpgd": {"gamma": 240.0, "eta": 1.0},
                 "ddim": {"eta": 1.0}},
    # the tiny prior's log-mel loss: the samplers' defaults at the time of recording
    "tiny": {"diffmusic": {"rho": 0.15, "eta": 1.0}, "dps": {"zeta": 100.0, "eta": 0.0},
             "dsg": {"guidance_rate": 0.2, "eta": 1.0}, "mpgd": {"gamma": 3e4, "eta": 0.0},
             "ddim": {"eta": 0.0}},
}
SLICE = {"gaussian": (0, slice(20, 500, 80)), "tiny": (0, slice(1000, TINY_SAMPLES, 2000))}
"""Item and samples of the output recorded, spread over the clip (sample 180 of the Gaussian
one is inside its inpainting gap, 160-192)."""

ATOL = {"gaussian": 3e-3, "tiny": 1e-4}
"""The Gaussian problem's strong guidance amplifies float32 rounding: recorded on one x86 CPU
(family 6 model 207), its guided samplers' slices came out up to 1.1e-3 away on another (model
167), DDIM's 5e-7. 3e-3 still catches a 1% change of any step size, which moves them by 6.4e-3
(MPGD) to 2.3e-2 (DSG), and of DDIM's eta by 0.01 (8.2e-2)."""
GOLDEN: dict[str, dict[str, list[float]]] = {
    "gaussian": {
        "diffmusic": [0.009866, -0.762642, 0.147017, 1.027484, 2.278751, 0.454831],
        "dps": [0.311466, -0.610808, -0.638036, 1.26952, 1.950697, 0.288385],
        "dsg": [-0.211208, -0.752311, -0.613114, 1.903099, 2.237066, 0.319471],
        "mpgd": [0.051058, -0.721902, 0.370323, 1.167683, 2.182765, 0.341697],
        "ddim": [-0.469871, -0.383718, 1.135797, 0.010059, 0.885706, 1.418755],
    },
    "tiny": {
        "diffmusic": [0.008032, -0.271109, -0.09298, -0.061139, -0.007914, -0.020335],
        "dps": [0.01447, -0.251325, -0.162566, -0.07738, -0.009231, -0.014642],
        "dsg": [0.006468, -0.250891, -0.071728, -0.054799, -0.003447, -0.016224],
        "mpgd": [0.007449, -0.199413, -0.11556, -0.062707, -0.011647, -0.013675],
        "ddim": [0.018831, -0.287092, -0.177377, -0.100784, -0.014388, -0.015937],
    },
}


def problem(prior: Prior, name: str) -> tuple[Operator, Tensor]:
    """The operator and measurement of ``name``'s golden problem."""
    if name == "gaussian":
        n = prior.window
        op = Inpainting(prior.sample_rate, n, [(0.01, 0.012)], loss_domain="measurement")
        return op, op(prior.sample(2, torch.Generator().manual_seed(2)))
    op = SuperResolution(prior.sample_rate, TINY_SAMPLES, 2)
    return op, op(0.1 * music_like(0, TINY_SAMPLES)[None])


def run_sampler(prior: Prior, name: str, sampler: str, **override: float) -> Tensor:
    """The raw output waveform of ``sampler`` on ``name``'s problem (``override``: kwargs)."""
    op, y = problem(prior, name)
    kwargs = {**SAMPLER_KWARGS[name][sampler], **override}
    return SAMPLERS[sampler](prior, op, y, steps=STEPS,
                             generator=torch.Generator().manual_seed(SEED), **kwargs).wave


@pytest.fixture(scope="module")
def priors(one_thread: None) -> dict[str, Prior]:
    return {name: load_prior(name) for name in GOLDEN}


def test_every_sampler_has_golden_values() -> None:
    for name, golden in GOLDEN.items():
        assert set(golden) == set(SAMPLERS) == set(SAMPLER_KWARGS[name]), name


@pytest.mark.parametrize("name", list(GOLDEN))
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_sampler_output_matches_golden_slice(priors: dict[str, Prior], name: str,
                                             sampler: str) -> None:
    wave = run_sampler(priors[name], name, sampler)
    item, samples = SLICE[name]
    got = wave[item, samples].double()
    torch.testing.assert_close(got, torch.tensor(GOLDEN[name][sampler], dtype=torch.float64),
                               atol=ATOL[name], rtol=0)
