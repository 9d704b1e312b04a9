"""Every task and sampler end to end at 44.1 kHz stereo on a tiny Stable Audio Open prior: the two
channels of a recording are one latent, restored jointly."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hf_components import STABLE_AUDIO_SCHEDULER, stable_audio_components

from diffmusic.operators import (
    Declipping,
    Denoising,
    Dereverberation,
    Inpainting,
    PhaseRetrieval,
    SourceSeparation,
    SuperResolution,
)
from diffmusic.restoration import Restorer, Settings
from diffmusic.samplers import SAMPLERS
from diffmusic.synth import synth_stems

RATE, N = 44100, 65536
SOURCES = ["vocals", "drums"]
OPERATORS = {
    "inpainting": lambda: Inpainting(RATE, N, [(0.5, 0.7)]),
    "super_resolution": lambda: SuperResolution(RATE, N, 2),
    "phase_retrieval": lambda: PhaseRetrieval(RATE, N, iterations=5),
    "source_separation": lambda: SourceSeparation(RATE, N, SOURCES, [1.0, 0.7]),
    "dereverberation": lambda: Dereverberation(RATE, N, rir_length=0.3),
    "declipping": lambda: Declipping(RATE, N, input_sdr=7.0),
    "denoising": lambda: Denoising(RATE, N, snr=20.0),
}


@pytest.fixture(scope="module")
def prior():
    from diffmusic.priors.stable_audio import stable_audio_prior

    return stable_audio_prior(stable_audio_components("tiny"), "stable-audio-tiny",
                              torch.device("cpu"), torch.float32,
                              scheduler=STABLE_AUDIO_SCHEDULER)


def stereo(stem: torch.Tensor) -> torch.Tensor:
    """A mono stem ``(N,)`` as a stereo pair ``(2, N)`` with a different right channel."""
    return torch.stack([stem, 0.8 * torch.roll(stem, 441)])


@pytest.fixture(scope="module")
def stems() -> dict[str, torch.Tensor]:
    return {name: stereo(stem) for name, stem in synth_stems(N, RATE).items()}


def measurement(task: str, stems: dict[str, torch.Tensor]):
    operator = OPERATORS[task]()
    if task == "source_separation":
        clean = torch.stack([stems[name] for name in SOURCES], dim=1)  # (2 channels, K, N)
    else:
        clean = sum(stems.values())
    return operator, clean, operator.degrade(clean, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("task", list(OPERATORS))
def test_every_task_restores_stereo_at_44k(prior, stems, task):
    operator, clean, y = measurement(task, stems)
    result = Restorer(prior, Settings(steps=2, seed=0, sampler="diffmusic")).restore(operator, y)
    assert result.wave.shape == clean.shape and torch.isfinite(result.wave).all()
    assert result.record["prior"]["channels"] == 2 and len(result.record["losses"]) == 2
    left, right = result.raw[0], result.raw[1]
    assert (left - right).abs().max() > 1e-3  # two channels, one latent: not a copy
    if task == "inpainting":  # the projection keeps the known samples beyond its crossfades
        (start, end), = operator.regions()
        margin = operator.region_margin()
        for kept in (slice(0, start - margin), slice(end + margin, N)):
            torch.testing.assert_close(result.wave[..., kept], y[..., kept])


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs_on_the_stereo_prior(prior, stems, sampler):
    operator, clean, y = measurement("inpainting", stems)
    settings = Settings(steps=2, seed=0, sampler=sampler)
    first = Restorer(prior, settings).restore(operator, y)
    again = Restorer(prior, settings).restore(operator, y)
    assert first.raw.shape == (2, N) and torch.isfinite(first.raw).all()
    torch.testing.assert_close(first.raw, again.raw)  # the seed decides
    assert first.record["sampler"] == sampler


def test_warm_start_and_mel_ablation_use_the_stereo_layout(prior, stems):
    """A warm start encodes the stereo baseline as one latent; ``vmc=False`` compares the
    log-mel of the decoded stereo audio."""
    operator, clean, y = measurement("super_resolution", stems)
    warm = Restorer(prior, Settings(steps=4, seed=0, warm_start=0.5)).restore(operator, y)
    assert len(warm.record["losses"]) == 2 and warm.record["settings"]["warm_start"] == 0.5
    mel = Restorer(prior, Settings(steps=2, seed=0, sampler="dps", vmc=False)).restore(operator,
                                                                                      y)
    assert mel.record["settings"]["vmc"] is False and torch.isfinite(mel.wave).all()


def test_recording_of_any_channel_count_is_restored_jointly(prior, stems):
    """Mono is restored as a duplicated pair and downmixed; stereo keeps its two channels."""
    wave = sum(stems.values())
    restorer = Restorer(prior, Settings(steps=2, seed=0))
    make = partial(Inpainting, gaps=[(0.5, 0.7)])
    pair = restorer.restore_recording(make, wave, RATE)
    mono = restorer.restore_recording(make, wave[:1], RATE)
    assert pair.wave.shape == (2, N) and mono.wave.shape == (1, N)
    assert pair.record["channel_mode"] == mono.record["channel_mode"] == "joint"
    with pytest.raises(ValueError, match="jointly"):
        restorer.restore_recording(make, wave, RATE, channels="mid-side")
