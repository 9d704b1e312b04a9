"""The sub-pixel mel decoder: geometry, its start from the VAE, its training stage, the prior and
the export that use it."""

import shutil

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from diffmusic.dsp import MelConfig
from diffmusic.priors.embedded import embedded_prior
from diffmusic.priors.mel_decoder import MelDecoderConfig, SubPixelMelDecoder
from diffmusic.train.decoder import DECODER_CONFIG, decoder_losses, vae_digest
from diffmusic.train.export import EMBEDDED, export, load_embedded
from diffmusic.train.loop import Checkpoint
from diffmusic.train.vae import build_vae

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
        assert torch.allclose(prior.decode(z), expected, atol=1e-5)
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
