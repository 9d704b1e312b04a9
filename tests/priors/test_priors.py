"""Priors: the tiny latent prior's geometry and conditioning, schedules, the Gaussian prior."""

import json
import shutil

import pytest
import torch

from diffmusic.dsp import log_mel
from diffmusic.priors import GaussianPrior, PriorNotFound, cached_prior, load_prior
from diffmusic.priors.embedded import EMBEDDED_DIR, embedded_prior, load_embedded
from diffmusic.priors.latent import LatentDiffusionPrior
from diffmusic.priors.schedule import (
    alphas_cumprod_from_config,
    prediction_type_from_config,
    scaled_linear_alphas_cumprod,
)
from diffmusic.priors.tiny import tiny_prior


def test_tiny_prior_has_the_audioldm_geometry(tiny):
    assert tiny.latent_shape(81920) == (8, 128, 16)
    z = torch.randn(2, 8, 128, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mel = tiny.decode(z)
        wave = tiny.vocode(mel)
        assert mel.shape == (2, 512, 64) and wave.shape == (2, 81920)
        assert tiny.encode(wave).shape == (2, 8, 128, 16)
        assert tiny.predict(z, 500).shape == z.shape
    assert torch.isfinite(wave).all() and wave.abs().max() > 1e-3


def test_tiny_prior_rejects_partial_latent_frames(tiny):
    with pytest.raises(ValueError, match="multiple of 640"):
        tiny.latent_shape(1000)


def test_decode_vocode_is_differentiable(tiny):
    z = torch.randn(1, 8, 32, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def loss(z: torch.Tensor) -> torch.Tensor:
        return log_mel(tiny.vocode(tiny.decode(z))).mean()

    loss(z).backward()
    assert torch.isfinite(z.grad).all()
    # the gradient is the derivative: a central difference along it (step RMS 1e-3) changes the
    # loss by <grad, step> (0.5% off measured)
    step = 1e-3 * z.grad / z.grad.pow(2).mean().sqrt()
    with torch.no_grad():
        slope = (loss(z + step) - loss(z - step)) / 2
    assert float(slope) == pytest.approx(float((z.grad * step).sum()), rel=0.05)


def test_prompts_and_classifier_free_guidance_change_eps(tiny):
    z = torch.randn(2, 8, 32, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = tiny.predict(z, 400, tiny.condition([None, None]))
        drums = tiny.predict(z, 400, tiny.condition(["drums", "drums"]))
        guided = tiny.predict(z, 400, tiny.condition(["drums", "drums"], guidance_scale=3.0))
    assert not torch.allclose(plain, drums)
    torch.testing.assert_close(guided, plain + 3.0 * (drums - plain), atol=1e-4, rtol=1e-4)


def test_schedule_from_checkpoint_config():
    config = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear",
              "beta_start": 0.0015, "beta_end": 0.0195, "prediction_type": "epsilon"}
    ac = alphas_cumprod_from_config(config)
    torch.testing.assert_close(ac, scaled_linear_alphas_cumprod())
    assert ac.shape == (1000,) and float(ac[0]) == pytest.approx(1 - 0.0015)
    assert 0 < float(ac[-1]) < 1e-3
    assert prediction_type_from_config(config) == "epsilon"
    assert prediction_type_from_config({**config, "prediction_type": "v_prediction"}) == (
        "v_prediction")
    with pytest.raises(ValueError, match="v_prediction"):
        prediction_type_from_config({**config, "prediction_type": "sample"})
    with pytest.raises(ValueError, match="schedule"):
        alphas_cumprod_from_config({**config, "beta_schedule": "cosine"})


def test_gaussian_prior_samples_have_its_covariance():
    prior = GaussianPrior(64)
    draws = prior.sample(20000, torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(torch.cov(draws.T), prior.cov, atol=0.05, rtol=0)


def test_unknown_prior_says_what_exists():
    with pytest.raises(PriorNotFound, match="tiny"):
        load_prior("no-such-prior")


def test_embedded_prior_runs_in_bfloat16_close_to_float32():
    z = torch.randn(1, 8, 32, 16, generator=torch.Generator().manual_seed(0))
    waves = []
    for dtype in (torch.float32, torch.bfloat16):
        prior = load_prior("embedded", dtype=dtype)
        with torch.no_grad():
            waves.append(prior.vocode(prior.decode(z)))
    assert waves[1].dtype == torch.float32
    assert float((waves[1] - waves[0]).norm() / waves[0].norm()) < 0.1


def test_window_and_latent_hop_are_the_priors_own(tiny, tmp_path):
    embedded = load_prior("embedded")
    for prior in (tiny, embedded):
        assert (prior.window, prior.latent_hop) == (81920, 640)
        assert prior.latent_shape(prior.window)[1] * prior.latent_hop == prior.window
    assert (GaussianPrior(64).window, GaussianPrior(64).latent_hop) == (64, 1)
    # the embedded prior's window is its config's window_samples
    folder = tmp_path / "embedded"
    shutil.copytree(EMBEDDED_DIR, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "window_samples": 40960}))
    assert load_prior(str(folder)).window == 40960


def test_a_window_must_be_whole_latent_frames():
    parts = tiny_prior()
    with pytest.raises(ValueError, match="latent frames of 640 samples"):
        LatentDiffusionPrior("odd", parts.unet, parts.vae, parts.vocoder, parts.alphas_cumprod,
                             window=1000)


def test_embedded_folder_without_weights_says_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="lacks vocoder, vae, unet; train"):
        embedded_prior(tmp_path)
    with pytest.raises(FileNotFoundError, match="lacks vocoder, vae; train"):
        load_embedded(tmp_path)  # the networks without the noise predictor may be read


def test_cached_prior_loads_once_per_arguments():
    cached_prior.cache_clear()
    first = cached_prior("tiny")
    assert cached_prior("tiny") is first and cached_prior("tiny", "cpu", "float32") is first
    half = cached_prior("tiny", dtype="bfloat16")
    assert half is not first and half.dtype == torch.bfloat16 and first.dtype == torch.float32
    assert cached_prior("tiny", dtype="bfloat16") is half
    with pytest.raises(ValueError, match="unknown dtype"):
        cached_prior("tiny", dtype="f32")
    cached_prior.cache_clear()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cached_prior_refuses_cuda_without_it():
    with pytest.raises(ValueError, match="^CUDA is not available on this machine$"):
        cached_prior("tiny", device="cuda")
