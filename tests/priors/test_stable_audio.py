"""Stable Audio Open as a prior: tiny components of the published classes, built in code; the
project's denoiser, decoder and schedule against what ``StableAudioPipeline`` computes."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import StableAudioPipeline
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from hf_components import STABLE_AUDIO_SCHEDULER, save_stable_audio, stable_audio_components

from diffmusic.priors import PriorNotFound, load_prior
from diffmusic.priors.schedule import Level
from diffmusic.priors.stable_audio import DECODE_CHUNK_FRAMES, StableAudioPrior, stable_audio_prior
from diffmusic.samplers import denoise

FRAMES = 32
PROMPTS = ["solo piano", "a drum kit"]


@pytest.fixture(scope="module")
def parts() -> dict:
    return stable_audio_components("tiny")


@pytest.fixture(scope="module")
def prior(parts) -> StableAudioPrior:
    return stable_audio_prior(parts, "stable-audio-tiny", torch.device("cpu"), torch.float32,
                              scheduler=STABLE_AUDIO_SCHEDULER)


@pytest.fixture(scope="module")
def pipe(parts) -> StableAudioPipeline:
    return StableAudioPipeline(**parts, scheduler=None)


def pipeline_prediction(pipe: StableAudioPipeline, x: torch.Tensor, sigma: float,
                        scale: float, negative: str | None) -> torch.Tensor:
    """One step of ``StableAudioPipeline.__call__``'s loop up to the guided network output, for
    the pipeline's own latents ``x`` (``x0 + sigma noise``), with the scheduler's EDM
    preconditioning (``c_in``, ``c_noise``) written out."""
    seconds = x.shape[-1] * pipe.vae.hop_length / pipe.vae.config.sampling_rate
    cfg = scale > 1
    embeds = pipe.encode_prompt(PROMPTS, torch.device("cpu"), cfg,
                                negative_prompt=[negative] * 2 if negative else None)
    start, end = pipe.encode_duration(0.0, seconds, torch.device("cpu"),
                                      cfg and negative is not None, 2)
    text = torch.cat([embeds, start, end], dim=1)
    global_states = torch.cat([start, end], dim=2)
    if cfg and negative is None:
        text = torch.cat([torch.zeros_like(text), text])
        global_states = torch.cat([global_states, global_states])
    rotary = get_1d_rotary_pos_embed(pipe.rotary_embed_dim, x.shape[-1] + global_states.shape[1],
                                     use_real=True, repeat_interleave_real=False)
    inputs = torch.cat([x, x]) if cfg else x
    c_in = 1 / math.sqrt(sigma**2 + 1)
    c_noise = torch.tensor([math.atan(sigma) / math.pi * 2])
    with torch.no_grad():
        out = pipe.transformer(inputs * c_in, c_noise, encoder_hidden_states=text,
                               global_hidden_states=global_states, rotary_embedding=rotary,
                               return_dict=False)[0]
    if not cfg:
        return out
    uncond, cond = out.chunk(2)
    return uncond + scale * (cond - uncond)


@pytest.mark.parametrize(("scale", "negative"), [(1.0, None), (4.0, None),
                                                 (4.0, "low quality noise")])
def test_denoiser_equals_the_pipeline_transformer(prior, pipe, scale, negative):
    sigma = 3.7
    x = sigma * torch.randn(2, 8, FRAMES, generator=torch.Generator().manual_seed(0))
    expected = pipeline_prediction(pipe, x, sigma, scale, negative)
    with torch.no_grad():
        ours = prior.predict(x / math.sqrt(sigma**2 + 1), sigma,
                             prior.condition(PROMPTS, scale, negative))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    if scale > 1:  # guidance changes the output
        plain = pipeline_prediction(pipe, x, sigma, 1.0, None)
        assert (ours - plain).abs().max() > 1e-3


def test_v_prediction_gives_the_schedulers_denoised_latent(prior):
    """``z0_hat`` of :func:`denoise` is ``CosineDPMSolverMultistepScheduler``'s
    ``precondition_outputs``: ``c_skip x + c_out v`` with ``c_out = -sigma / sqrt(sigma^2 + 1)``
    (sigma_data 1)."""
    sigma = 12.0
    x = sigma * torch.randn(1, 8, FRAMES, generator=torch.Generator().manual_seed(1))
    z = x / math.sqrt(sigma**2 + 1)
    cond = prior.condition(["piano"])
    with torch.no_grad():
        v = prior.predict(z, sigma, cond)
        eps, z0 = denoise(prior, z, Level(sigma, 1 / (1 + sigma**2)), cond)
    expected = x / (sigma**2 + 1) - sigma / math.sqrt(sigma**2 + 1) * v
    torch.testing.assert_close(z0, expected, atol=1e-5, rtol=1e-5)
    a = 1 / (1 + sigma**2)  # and eps is consistent with z_t = sqrt(a) z0 + sqrt(1 - a) eps
    torch.testing.assert_close(math.sqrt(a) * z0 + math.sqrt(1 - a) * eps, z, atol=1e-5,
                               rtol=1e-5)


def test_decode_and_encode_are_the_vaes(prior, pipe):
    z = torch.randn(2, 8, FRAMES, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        audio = prior.decode(z)
        torch.testing.assert_close(audio, pipe.vae.decode(z).sample)
        assert audio.shape == (2, 2, FRAMES * prior.latent_hop)
        torch.testing.assert_close(prior.encode(audio),
                                   pipe.vae.encode(audio).latent_dist.mean)
    assert prior.vocode(audio) is audio
    assert prior.decoded_mel(audio).shape[:2] == (2, 2)
    with pytest.raises(ValueError, match="shape"):
        prior.encode(audio[:, 0])


def test_schedule_is_the_checkpoints_exponential_sigmas(prior):
    """Five levels from sigma_max to sigma_min, log-linear as the scheduler's
    ``_compute_exponential_sigmas``; warm starts keep the levels below their strength."""
    levels = prior.schedule.levels(5)
    expected = torch.linspace(math.log(0.3), math.log(500.0), 5, dtype=torch.float64).exp().flip(0)
    torch.testing.assert_close(torch.tensor([lv.t for lv in levels], dtype=torch.float64),
                               expected)
    assert [lv.alpha_bar for lv in levels] == pytest.approx([1 / (1 + s**2) for s in
                                                             expected.tolist()])
    assert [lv.t for lv in prior.schedule.levels(5, 0.5)] == pytest.approx(expected[2:].tolist())
    assert prior.schedule.a_last == pytest.approx(1 / 1.09)
    assert prior.schedule.max_steps is None


def test_prior_describes_itself(prior):
    assert (prior.sample_rate, prior.channels, prior.latent_hop) == (44100, 2, 512)
    assert prior.window == 256 * 512 and prior.latent_shape(prior.window) == (8, 256)
    description = prior.describe()
    assert description["prediction_type"] == "v_prediction" and description["channels"] == 2
    assert description["schedule"]["kind"] == "exponential"
    with pytest.raises(ValueError, match="multiple of 512"):
        prior.latent_shape(1000)


def test_folder_in_the_pipeline_layout_loads(tmp_path, prior):
    folder = save_stable_audio(tmp_path / "sa")
    loaded = load_prior(str(folder))
    assert isinstance(loaded, StableAudioPrior) and loaded.name == f"stable-audio:{folder}"
    z = torch.randn(1, 8, FRAMES, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(z, 2.0, loaded.condition(["piano"], 3.0)),
                                   prior.predict(z, 2.0, prior.condition(["piano"], 3.0)))


def test_unsupported_parameterisation_is_refused(parts):
    with pytest.raises(PriorNotFound, match="v-prediction"):
        stable_audio_prior(parts, "eps", torch.device("cpu"), torch.float32,
                           scheduler={**STABLE_AUDIO_SCHEDULER, "prediction_type": "epsilon"})


def test_missing_gated_repository_is_one_line_naming_the_licence(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(PriorNotFound) as info:
        load_prior("stable-audio")
    message = str(info.value)
    repo = "stabilityai/stable-audio-open-1.0"
    assert "\n" not in message and f"huggingface-cli download {repo}" in message
    assert "licence" in message and "huggingface-cli login" in message


def test_gradient_checkpointing_keeps_the_gradients(prior):
    """The checkpointed DiT and the chunked, recomputed decoder give the same audio and the
    loss the same gradients."""
    checkpointed = stable_audio_prior(stable_audio_components("tiny"), "checkpointed",
                                      torch.device("cpu"), torch.float32,
                                      scheduler=STABLE_AUDIO_SCHEDULER)
    checkpointed.use_gradient_checkpointing()
    assert checkpointed.decode_chunk == DECODE_CHUNK_FRAMES
    checkpointed.decode_chunk = 6  # six chunks of the test window, the last one short
    z = torch.randn(1, 8, FRAMES, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(checkpointed.decode(z), prior.decode(z), atol=1e-6, rtol=0)

    def grad(model: StableAudioPrior) -> torch.Tensor:
        latent = z.clone().requires_grad_(True)
        v = model.predict(latent, 2.0, model.condition(["piano"]))
        model.decode(latent - 0.1 * v).pow(2).mean().backward()
        return latent.grad

    torch.testing.assert_close(grad(checkpointed), grad(prior), atol=1e-6, rtol=1e-5)
