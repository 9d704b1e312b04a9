"""The sub-pixel mel decoder: geometry, its start from the VAE, its training stage, the prior and
the export that use it."""

import shutil

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from diffmusic.dsp import MelConfig, log_mel
from diffmusic.priors.embedded import embedded_prior, load_embedded
from diffmusic.priors.mel_decoder import MelDecoderConfig, SubPixelMelDecoder
from diffmusic.train import decoder as decoder_stage
from diffmusic.train.decoder import (
    DECODER_CONFIG,
    bank_crops,
    decoder_losses,
    sampled_latent_bank,
    teacher_l1,
    vae_digest,
)
from diffmusic.train.diffusion import UNET_CONFIG, alphas_cumprod, build_unet, ddim_estimates
from diffmusic.train.export import EMBEDDED, export
from diffmusic.train.loop import Checkpoint
from diffmusic.train.vae import build_vae, mel_to_image

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vae() -> AutoencoderKL:
    """The shipped VAE (a real teacher)."""
    return load_embedded(EMBEDDED).vae


def test_latent_geometry_matches_the_vae_decoder(vae):
    decoder = SubPixelMelDecoder.from_vae(vae)
    z = torch.randn(2, 8, 32, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert decoder(z).shape == vae.decode(z).sample.shape == (2, 1, 128, 64)


def test_from_vae_copies_the_shared_levels_only(vae):
    decoder = SubPixelMelDecoder.from_vae(vae)
    teacher = vae.state_dict()
    own = decoder.state_dict()
    for key in ("post_quant_conv.weight", "decoder.conv_in.weight",
                "decoder.mid_block.resnets.0.conv1.weight",
                "decoder.up_blocks.0.upsamplers.0.conv.weight",
                "decoder.up_blocks.1.resnets.1.conv2.weight"):
        assert torch.equal(own[key], teacher[key]), key
    assert "decoder.up_blocks.1.upsamplers.0.conv.weight" not in own  # the level it drops
    assert own["decoder.conv_out.weight"].shape == (4, 32, 3, 3)
    wide = MelDecoderConfig(block_out_channels=(48, 96))
    with pytest.raises(ValueError, match="does not share"):
        SubPixelMelDecoder.from_vae(vae, wide)


def test_training_steps_lower_both_losses(vae, clips):
    decoder = SubPixelMelDecoder.from_vae(vae)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    wave = clips[:, :12800]  # 80 mel frames
    before = decoder_losses(decoder, vae, wave, MelConfig(), 1.0)
    for _ in range(15):
        losses = decoder_losses(decoder, vae, wave, MelConfig(), 1.0)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    after = decoder_losses(decoder, vae, wave, MelConfig(), 1.0)
    assert after["l1"] < 0.5 * before["l1"] and after["teacher"] < 0.5 * before["teacher"]
    assert torch.allclose(before["loss"], before["l1"] + before["teacher"])


def test_teacher_l1_is_the_teacher_term_of_the_posterior_mean(vae, clips):
    decoder = SubPixelMelDecoder.from_vae(vae)
    wave = clips[:, :12800]
    with torch.no_grad():
        z = vae.encode(mel_to_image(log_mel(wave, MelConfig()))).latent_dist.mean
        expected = decoder_losses(decoder, vae, wave, MelConfig(), 1.0)["teacher"]
        assert torch.allclose(teacher_l1(decoder, vae, z), expected)


TINY_UNET = {**UNET_CONFIG, "block_out_channels": [8, 16, 16], "norm_num_groups": 4,
             "attention_head_dim": 8}


def _unet_checkpoint(runs, unet, step: int, scale: float = 2.0) -> None:
    Checkpoint(runs / "unet").save({"unet": unet}, {"unet": unet},
                                   torch.optim.AdamW(unet.parameters()), torch.Generator(),
                                   {"step": step, "seconds": 1.0, "config": TINY_UNET})
    (runs / "unet" / "latent.json").write_text(f'{{"scaling_factor": {scale}}}')


def test_sampled_latent_bank_holds_ddim_estimates_cached_per_unet_step(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    torch.manual_seed(0)
    unet = build_unet(TINY_UNET).eval()
    _unet_checkpoint(runs, unet, step=1)
    bank = sampled_latent_bank(runs, trajectories=8, steps=3, keep=2)
    assert bank["train"].shape == (16, 8, 128, 16) and bank["valid"].shape == (8, 8, 128, 16)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(8, 8, 128, 16, generator=generator)
    labels = torch.arange(8) % 6
    expected = ddim_estimates(unet, alphas_cumprod(), noise, labels, 3)[[0, 2]] / 2.0
    assert torch.allclose(bank["train"], expected.flatten(0, 1), atol=1e-6)

    def no_unet(runs):
        raise AssertionError("the cached bank should have been used")

    monkeypatch.setattr(decoder_stage, "trained_unet", no_unet)
    assert torch.equal(sampled_latent_bank(runs, trajectories=8, steps=3, keep=2)["valid"],
                       bank["valid"])
    monkeypatch.undo()
    assert sampled_latent_bank(runs, trajectories=8, steps=3, keep=3)["train"].shape[0] == 24
    with pytest.raises(ValueError, match="multiple"):
        sampled_latent_bank(runs, trajectories=12, steps=3, keep=2)
    with torch.no_grad():
        unet.conv_out.bias.add_(1.0)
    _unet_checkpoint(runs, unet, step=2)  # a further trained noise predictor: a new bank
    assert not torch.allclose(sampled_latent_bank(runs, trajectories=8, steps=3, keep=2)["valid"],
                              bank["valid"])


def test_bank_crops_are_contiguous_windows_of_bank_latents():
    bank = torch.arange(3 * 8 * 10 * 16, dtype=torch.float32).reshape(3, 8, 10, 16)
    crops = bank_crops(bank, 5, 4, torch.Generator().manual_seed(0))
    assert crops.shape == (5, 8, 4, 16)
    for crop in crops:
        item, start = divmod(int(crop[0, 0, 0]) // 16, 8 * 10)  # value of [item, 0, start, 0]
        assert start <= 6 and torch.equal(crop, bank[item, :, start:start + 4])


def _decoder_checkpoint(runs, decoder: SubPixelMelDecoder, teacher: AutoencoderKL) -> None:
    Checkpoint(runs / "decoder").save(
        {"decoder": decoder}, {"decoder": decoder}, torch.optim.AdamW(decoder.parameters()),
        torch.Generator(), {"step": 3, "seconds": 1.0, "batch": 8,
                            "vae_sha256": vae_digest(teacher.state_dict())})


def test_export_ships_the_decoder_and_the_prior_decodes_with_it(tmp_path, vae):
    runs, out = tmp_path / "runs", tmp_path / "out"
    shutil.copytree(EMBEDDED, out)
    (out / "decoder.safetensors").unlink(missing_ok=True)
    decoder = SubPixelMelDecoder.from_vae(vae, DECODER_CONFIG)
    with torch.no_grad():
        decoder.decoder.conv_out.weight.normal_(generator=torch.Generator().manual_seed(0))
    _decoder_checkpoint(runs, decoder, vae)
    config = export(runs, out)
    assert config["decoder"]["steps"] == 3 and config["decoder"]["file"] == "decoder.safetensors"
    loaded = load_embedded(out).decoder
    for a, b in zip(loaded.parameters(), decoder.parameters(), strict=True):
        assert torch.equal(a, b)

    prior = embedded_prior(out)
    assert prior.decoder is not None and prior.decoder in prior.networks()
    z = torch.randn(1, *prior.latent_shape(12800), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = decoder(z / prior.scaling_factor)[:, 0]
        # same weights; float32 rounding of the latent scaling only (outputs reach ~20)
        torch.testing.assert_close(prior.decode(z), expected, atol=1e-4, rtol=1e-5)
        # the VAE still encodes: its own decoder would give a different image
        assert not torch.allclose(prior.vae.decode(z / prior.scaling_factor).sample[:, 0],
                                  expected, atol=1e-2)


def test_export_refuses_or_drops_a_decoder_of_another_vae(tmp_path, vae):
    runs, out = tmp_path / "runs", tmp_path / "out"
    shutil.copytree(EMBEDDED, out)
    other = build_vae()
    _decoder_checkpoint(runs, SubPixelMelDecoder.from_vae(other), other)
    with pytest.raises(ValueError, match="another VAE"):
        export(runs, out)
    shutil.rmtree(runs / "decoder")
    _decoder_checkpoint(runs, SubPixelMelDecoder.from_vae(vae), vae)
    assert export(runs, out)["decoder"]["steps"] == 3
    shutil.rmtree(runs / "decoder")
    assert export(runs, out)["decoder"]["steps"] == 3  # kept while its VAE is the exported one
    (runs / "unet").mkdir()
    save_file(other.state_dict(), str(runs / "unet" / "vae.safetensors"))  # a new frozen VAE
    assert "decoder" not in export(runs, out)
    assert load_embedded(out).decoder is None and not (out / "decoder.safetensors").exists()
