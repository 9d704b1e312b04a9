"""AudioLDM2 and MusicLDM priors from tiny checkpoints saved in the diffusers layout, offline."""

import json

import pytest
import torch
from hf_components import save_audioldm2, save_musicldm
from operator_cases import RATE, SOURCES, N, short_operators
from signals import music_like

from diffmusic.dsp import log_mel
from diffmusic.priors import PriorNotFound, load_prior
from diffmusic.priors.prompts import parse_prompts
from diffmusic.restoration import Settings, restore

OPERATORS = short_operators(iterations=10)
# every sampler and every task once per prior, paired to keep the file fast
RUNS = list(zip(["diffmusic", "dps", "dsg", "mpgd", "ddim"], OPERATORS, strict=True))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {"audioldm2": save_audioldm2(root / "audioldm2"),
            "musicldm": save_musicldm(root / "musicldm")}


@pytest.fixture(scope="module")
def priors(folders):
    return {kind: load_prior(str(path)) for kind, path in folders.items()}


def test_checkpoints_have_the_diffusers_layout(folders):
    index = json.loads((folders["audioldm2"] / "model_index.json").read_text())
    assert index["_class_name"] == "AudioLDM2Pipeline"
    assert index["unet"] == ["audioldm2", "AudioLDM2UNet2DConditionModel"]
    for part in ("unet", "vae", "vocoder", "text_encoder", "text_encoder_2", "tokenizer",
                 "tokenizer_2", "projection_model", "language_model"):
        assert (folders["audioldm2"] / part / "config.json").is_file() or part.startswith("tok")
    assert (folders["audioldm2"] / "scheduler" / "scheduler_config.json").is_file()
    index = json.loads((folders["musicldm"] / "model_index.json").read_text())
    assert index["_class_name"] == "MusicLDMPipeline"
    assert not list(folders["musicldm"].rglob("*.bin")), "weights must be safetensors"


@pytest.mark.parametrize("kind", ["audioldm2", "musicldm"])
@pytest.mark.parametrize(("sampler", "task"), RUNS)
def test_restores_every_task_with_every_sampler(priors, kind, sampler, task):
    prior, op = priors[kind], OPERATORS[task]()
    if task == "source_separation":
        x = torch.stack([music_like(30 + k, N) for k in range(len(SOURCES))])[None]
        prompts = parse_prompts(["vocals=a soprano singing"], SOURCES)
    else:
        x, prompts = music_like(7, N)[None], "solo piano"
    settings = Settings(sampler=sampler, steps=2, seed=0, prompts=prompts, guidance_scale=2.5,
                        negative_prompt="noise")
    result = restore(prior, op, op(x), settings)
    assert result.wave.shape == x.shape and torch.isfinite(result.wave).all()
    assert result.record["prior"]["name"].startswith(kind)
    assert result.record["guidance_scale"] == 2.5


@pytest.mark.parametrize("kind", ["audioldm2", "musicldm"])
def test_vae_sees_the_same_log_mel_frames_by_64(priors, kind):
    prior, wave = priors[kind], music_like(3, N)[None]
    seen = []
    hook = prior.vae.encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        z = prior.encode(wave)
        mel = prior.decode(z)
    hook.remove()
    assert prior.mel.n_mels == 64 and prior.mel.hop_length == 160 and prior.sample_rate == RATE
    assert seen[0].shape == (1, 1, N // 160, 64)
    torch.testing.assert_close(seen[0][:, 0], log_mel(wave, prior.mel))
    assert z.shape == (1, *prior.latent_shape(N)) == (1, 8, N // 640, 16)
    assert mel.shape == (1, N // 160, 64) and prior.vocode(mel).shape == (1, N)
    torch.testing.assert_close(prior.alphas_cumprod[0].item(), 1 - 0.0015)


@pytest.mark.parametrize("kind", ["audioldm2", "musicldm"])
def test_prompts_and_guidance_reach_the_unet(priors, kind):
    prior = priors[kind]
    z = torch.randn(1, *prior.latent_shape(N), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        empty = prior.predict(z, 500, prior.condition([None]))
        piano = prior.predict(z, 500, prior.condition(["solo piano"]))
        guided = prior.predict(z, 500, prior.condition(["solo piano"], guidance_scale=4.0))
        negative = prior.predict(z, 500, prior.condition(["solo piano"], 4.0, "a long negative"))
    assert not torch.allclose(empty, piano)
    torch.testing.assert_close(guided, empty + 4.0 * (piano - empty), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(guided, negative)


def test_audioldm2_condition_matches_the_pipeline_encoder(folders, priors):
    from diffusers import AudioLDM2Pipeline
    from transformers import GPT2LMHeadModel

    # the pipeline's own generation loop needs GPT-2 with its LM head (same trunk weights)
    lm = GPT2LMHeadModel.from_pretrained(folders["audioldm2"] / "language_model")
    pipe = AudioLDM2Pipeline.from_pretrained(folders["audioldm2"], language_model=lm)
    prompts = ["solo piano", "a soprano singing over drums"]
    ours = priors["audioldm2"].conditioner(prompts)
    for k, prompt in enumerate(prompts):  # each prompt as the pipeline encodes it alone
        with torch.no_grad():
            t5, mask, generated = pipe.encode_prompt([prompt], "cpu", 1, False)
        length = mask.shape[1]
        torch.testing.assert_close(ours["encoder_hidden_states"][k:k + 1], generated,
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours["encoder_hidden_states_1"][k:k + 1, :length], t5,
                                   atol=1e-5, rtol=1e-4)
        assert torch.equal(ours["encoder_attention_mask_1"][k:k + 1, :length], mask)
        assert not ours["encoder_attention_mask_1"][k, length:].any()  # padding is masked


def test_guidance_scales_at_or_below_one_turn_guidance_off(priors):
    for scale in (0.5, 1.0):
        assert priors["musicldm"].condition(["drums"], guidance_scale=scale).uncond is None
    assert priors["musicldm"].condition(["drums"], guidance_scale=2.0).uncond is not None


def test_audioldm2_prompts_do_not_change_each_other(priors):
    conditioner = priors["audioldm2"].conditioner
    alone = conditioner(["drums"])
    batched = conditioner(["drums", "a long prompt about a string quartet playing softly"])
    length = alone["encoder_hidden_states_1"].shape[1]
    torch.testing.assert_close(batched["encoder_hidden_states"][:1],
                               alone["encoder_hidden_states"], atol=0, rtol=0)
    torch.testing.assert_close(batched["encoder_hidden_states_1"][:1, :length],
                               alone["encoder_hidden_states_1"], atol=0, rtol=0)
    z = torch.randn(2, *priors["audioldm2"].latent_shape(N),
                    generator=torch.Generator().manual_seed(0))
    prior = priors["audioldm2"]
    with torch.no_grad():
        eps_alone = prior.predict(z[:1], 500, prior.condition(["drums"]))
        eps_batched = prior.predict(z, 500, prior.condition(
            ["drums", "a long prompt about a string quartet playing softly"]))
    torch.testing.assert_close(eps_batched[:1], eps_alone, atol=1e-5, rtol=1e-4)


def test_half_precision_keeps_guidance_in_float32(folders):
    prior = load_prior(str(folders["musicldm"]), dtype=torch.bfloat16)
    z = torch.randn(1, *prior.latent_shape(N), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eps = prior.predict(z, 300, prior.condition(["drums"], guidance_scale=3.0))
    assert prior.dtype == torch.bfloat16 and prior.unet.dtype == torch.bfloat16
    assert eps.dtype == torch.float32 and torch.isfinite(eps).all()


@pytest.mark.parametrize(("name", "repo"), [("musicldm", "ucsd-reach/musicldm"),
                                            ("audioldm2", "cvssp/audioldm2-music"),
                                            ("cvssp/audioldm2", "cvssp/audioldm2")])
def test_missing_repository_offline_is_one_clear_line(monkeypatch, tmp_path, name, repo):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(PriorNotFound) as info:
        load_prior(name)
    message = str(info.value)
    assert "\n" not in message and repo in message
    assert f"huggingface-cli download {repo}" in message and "--prior PATH" in message


def test_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(PriorNotFound, match="model_index.json"):
        load_prior(str(tmp_path))


def test_parse_prompts():
    assert parse_prompts(None) is None and parse_prompts([]) is None
    assert parse_prompts(["a=b c"]) == "a=b c"
    assert parse_prompts(["jazz trio"], SOURCES) == "jazz trio"
    assert parse_prompts(["drums=drum kit"], SOURCES) == ["vocals", "drum kit"]
    assert parse_prompts(['vocals=a singer', "drums="], SOURCES) == ["a singer", ""]
    with pytest.raises(ValueError, match="unknown source bass"):
        parse_prompts(["bass=deep"], SOURCES)
    with pytest.raises(ValueError, match="SOURCE=TEXT"):
        parse_prompts(["one", "two"])


def test_parse_prompts_from_json(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"vocals": "a tenor"}))
    assert parse_prompts([str(path)], SOURCES) == ["a tenor", "drums"]
    path.write_text(json.dumps(["a tenor", "brushes"]))
    assert parse_prompts(str(path), SOURCES) == ["a tenor", "brushes"]
    path.write_text(json.dumps(["only one"]))
    with pytest.raises(ValueError, match="1 prompts for 2"):
        parse_prompts(str(path), SOURCES)


def test_gradient_checkpointing_gives_the_same_restoration(folders, priors):
    prior = load_prior(str(folders["musicldm"]), checkpointing=True)
    assert prior.unet.is_gradient_checkpointing and prior.vae.is_gradient_checkpointing
    op = OPERATORS["inpainting"]()
    y = op(music_like(9, N)[None])
    settings = Settings(sampler="dps", steps=2, seed=1, prompts="drums")
    a = restore(prior, op, y, settings)
    b = restore(priors["musicldm"], op, y, settings)
    torch.testing.assert_close(a.raw, b.raw, atol=1e-5, rtol=1e-4)
