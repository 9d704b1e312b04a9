"""AudioLDM2, MusicLDM and Stable Audio Open component sets built in code, saved in the diffusers
layout (test and
benchmark material, not part of the package: ``tests/test_hf_priors.py`` and
``benchmarks/full_size_priors.py`` import it).

Everything is built offline, tokenizers included: a byte-level BPE vocabulary for CLAP's RoBERTa
tokenizer (the 256 byte symbols, no merges) and a Unigram vocabulary for T5 (letters, digits,
punctuation, word starts). GPT-2 needs no tokenizer: AudioLDM2 feeds it embeddings only.

``size="tiny"`` gives networks of a few thousand parameters for tests; ``size="full"`` gives the
published UNet/VAE/vocoder architectures (UNet channels 128/256/384/640, VAE 128/256/512 with 8
latent channels, HiFi-GAN upsample rates 5,4,2,2,2 from 1024 channels) with random weights and
one-layer text encoders of the published widths (they run once per restoration), for
benchmarks. Stable Audio Open at ``size="full"`` is the published DiT (24 layers, 24 heads of
64, 1024 latent frames of 64 channels) and Oobleck VAE (hop 2048, 44.1 kHz stereo) with a
one-layer T5 of width 768; its scheduler is written as the checkpoint's JSON config, since the
scheduler class needs ``torchsde``.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AudioLDM2Pipeline,
    AudioLDM2ProjectionModel,
    AudioLDM2UNet2DConditionModel,
    AutoencoderKL,
    AutoencoderOobleck,
    DDIMScheduler,
    MusicLDMPipeline,
    StableAudioDiTModel,
    StableAudioPipeline,
    StableAudioProjectionModel,
    UNet2DConditionModel,
)
from transformers import (
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    GPT2Config,
    GPT2Model,
    RobertaTokenizer,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.0015, "beta_end": 0.0195,
            "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}
"""The AudioLDM2/MusicLDM training schedule (DDIM scheduler config of the checkpoints)."""


@dataclass(frozen=True)
class Sizes:
    """Widths of one component set.

    Attributes:
        unet: UNet block channels.
        heads: Attention heads per UNet block (``attention_head_dim`` in diffusers terms).
        layers: Resnet layers per UNet block.
        vae: VAE block channels (3 blocks: a latent 4x smaller than the mel).
        vae_layers: Resnet layers per VAE block.
        groups: Group-norm groups.
        vocoder: HiFi-GAN ``upsample_initial_channel``.
        resblocks: HiFi-GAN residual kernel sizes (dilations 1, 3, 5 each).
        clap: CLAP text width; ``clap_proj``: its projection (MusicLDM's class label width).
        t5: T5 ``d_model``; ``gpt``: GPT-2 width.
    """

    unet: tuple[int, ...]
    heads: tuple[int, ...]
    layers: int
    vae: tuple[int, ...]
    vae_layers: int
    groups: int
    vocoder: int
    resblocks: tuple[int, ...]
    clap: int
    clap_proj: int
    t5: int
    gpt: int


SIZES = {
    "tiny": Sizes(unet=(16, 32), heads=(2, 4), layers=1, vae=(8, 16, 16), vae_layers=1, groups=4,
                  vocoder=32, resblocks=(3,), clap=16, clap_proj=16, t5=24, gpt=16),
    "full": Sizes(unet=(128, 256, 384, 640), heads=(4, 8, 12, 20), layers=2, vae=(128, 256, 512),
                  vae_layers=2, groups=32, vocoder=1024, resblocks=(3, 7, 11), clap=768,
                  clap_proj=512, t5=1024, gpt=768),
}


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE (GPT-2's byte-to-unicode table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    table = dict(zip(printable, printable, strict=True))
    table.update({b: 256 + i for i, b in enumerate(shifted)})
    return [chr(table[b]) for b in range(256)]


def roberta_tokenizer(model_max_length: int = 32) -> RobertaTokenizer:
    """A byte-level BPE RoBERTa tokenizer over the 256 byte symbols (ids: <s> 0, <pad> 1)."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in _byte_symbols():
        vocab.setdefault(symbol, len(vocab))
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def t5_tokenizer(model_max_length: int = 128) -> T5Tokenizer:
    """A sentencepiece-free Unigram T5 tokenizer (ids: <pad> 0, </s> 1, <unk> 2)."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [("▁" + c, -2.5) for c in string.ascii_lowercase]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def clap_model(s: Sizes, vocab_size: int) -> ClapModel:
    """A CLAP model with an ``s.clap``-wide one-layer text branch and a minimal audio branch."""
    text = {"vocab_size": vocab_size, "hidden_size": s.clap, "intermediate_size": 2 * s.clap,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 160,
            "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": s.clap_proj}
    audio = {"spec_size": 64, "window_size": 4, "num_mel_bins": 64, "hidden_size": 16,
             "depths": [1, 1], "num_attention_heads": [2, 2], "intermediate_size": 32,
             "patch_size": 4, "patch_stride": [4, 4], "patch_embed_input_channels": 4,
             "projection_dim": s.clap_proj}
    return ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=s.clap_proj))


def vae(s: Sizes) -> AutoencoderKL:
    """The mel VAE: ``(B, 1, frames, 64)`` <-> ``(B, 8, frames / 4, 16)``."""
    return AutoencoderKL(in_channels=1, out_channels=1, latent_channels=8,
                         block_out_channels=s.vae, layers_per_block=s.vae_layers,
                         down_block_types=("DownEncoderBlock2D",) * len(s.vae),
                         up_block_types=("UpDecoderBlock2D",) * len(s.vae),
                         norm_num_groups=s.groups, sample_size=512, scaling_factor=0.45)


def vocoder(s: Sizes) -> SpeechT5HifiGan:
    """HiFi-GAN from 64-band log-mel at 100 frames/s to 16 kHz audio (hop 160 = 5*4*2*2*2)."""
    return SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=s.vocoder,
        upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
        resblock_kernel_sizes=list(s.resblocks), resblock_dilation_sizes=[[1, 3, 5]] * len(
            s.resblocks), normalize_before=False, initializer_range=0.2))


def _blocks(s: Sizes) -> dict:
    n = len(s.unet)
    return {"block_out_channels": s.unet, "attention_head_dim": s.heads,
            "layers_per_block": s.layers, "norm_num_groups": s.groups, "in_channels": 8,
            "out_channels": 8, "down_block_types": ("DownBlock2D",)
            + ("CrossAttnDownBlock2D",) * (n - 1),
            "up_block_types": ("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",)}


def audioldm2_components(size: str = "tiny", seed: int = 0) -> dict:
    """The keyword arguments of ``AudioLDM2Pipeline`` at ``size`` (``tiny`` or ``full``)."""
    s = SIZES[size]
    torch.manual_seed(seed)
    tokenizer = roberta_tokenizer(77 if size == "full" else 32)
    tokenizer_2 = t5_tokenizer()
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=s.t5, d_ff=2 * s.t5,
                                 d_kv=s.t5 // 2, num_heads=2, num_layers=1))
    gpt2 = GPT2Model(GPT2Config(n_embd=s.gpt, n_head=2, n_layer=1, vocab_size=16,
                                n_positions=256, bos_token_id=0, eos_token_id=0))
    gpt2.config.max_new_tokens = 8
    unet = AudioLDM2UNet2DConditionModel(
        sample_size=(128, 16), cross_attention_dim=[[None, s.gpt, s.t5]] * len(s.unet),
        **_blocks(s))
    return {"vae": vae(s), "text_encoder": clap_model(s, len(tokenizer)), "text_encoder_2": t5,
            "projection_model": AudioLDM2ProjectionModel(s.clap_proj, s.t5, s.gpt),
            "language_model": gpt2, "tokenizer": tokenizer, "tokenizer_2": tokenizer_2,
            "feature_extractor": ClapFeatureExtractor(), "unet": unet,
            "scheduler": DDIMScheduler(**SCHEDULE), "vocoder": vocoder(s)}


def musicldm_components(size: str = "tiny", seed: int = 0) -> dict:
    """The keyword arguments of ``MusicLDMPipeline`` at ``size`` (``tiny`` or ``full``)."""
    s = SIZES[size]
    torch.manual_seed(seed)
    tokenizer = roberta_tokenizer(77 if size == "full" else 32)
    unet = UNet2DConditionModel(
        sample_size=(128, 16), cross_attention_dim=s.unet, class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=s.clap_proj, class_embeddings_concat=True,
        **_blocks(s))
    return {"vae": vae(s), "text_encoder": clap_model(s, len(tokenizer)), "tokenizer": tokenizer,
            "feature_extractor": ClapFeatureExtractor(), "unet": unet,
            "scheduler": DDIMScheduler(**SCHEDULE), "vocoder": vocoder(s)}


def save_audioldm2(folder: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write an AudioLDM2 checkpoint (``model_index.json``, one folder per component)."""
    AudioLDM2Pipeline(**audioldm2_components(size, seed)).save_pretrained(folder)
    return Path(folder)


def save_musicldm(folder: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a MusicLDM checkpoint (``model_index.json``, one folder per component)."""
    MusicLDMPipeline(**musicldm_components(size, seed)).save_pretrained(folder)
    return Path(folder)


STABLE_AUDIO_SCHEDULER = {"_class_name": "CosineDPMSolverMultistepScheduler", "sigma_min": 0.3,
                          "sigma_max": 500.0, "sigma_data": 1.0, "sigma_schedule": "exponential",
                          "num_train_timesteps": 1000, "solver_order": 2,
                          "prediction_type": "v_prediction", "rho": 7.0,
                          "solver_type": "midpoint", "lower_order_final": True,
                          "euler_at_final": False, "final_sigmas_type": "zero"}
"""Stable Audio Open's ``scheduler/scheduler_config.json``."""
STABLE_AUDIO_SIZES = {
    "tiny": {"dit": {"sample_size": 256, "in_channels": 8, "out_channels": 8, "num_layers": 2,
                     "attention_head_dim": 8, "num_attention_heads": 2,
                     "num_key_value_attention_heads": 1, "cross_attention_dim": 16,
                     "time_proj_dim": 8, "global_states_input_dim": 32,
                     "cross_attention_input_dim": 16},
             "vae": {"encoder_hidden_size": 16, "downsampling_ratios": [4, 8, 16],
                     "channel_multiples": [1, 2, 2], "decoder_channels": 4,
                     "decoder_input_channels": 8},
             "t5": 16, "tokens": 16},
    "full": {"dit": {}, "vae": {}, "t5": 768, "tokens": 128},
}
"""Stable Audio widths: ``tiny`` (hop 512, a window of 256 frames = 2.97 s at 44.1 kHz) and
``full`` (the diffusers defaults, which are the published model's)."""


def stable_audio_components(size: str = "tiny", seed: int = 0) -> dict:
    """The keyword arguments of ``StableAudioPipeline`` at ``size``, without the scheduler."""
    widths = STABLE_AUDIO_SIZES[size]
    torch.manual_seed(seed)
    tokenizer = t5_tokenizer(widths["tokens"])
    width = widths["t5"]
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=width, d_ff=2 * width,
                                 d_kv=width // 2, num_heads=2, num_layers=1))
    transformer = StableAudioDiTModel(**widths["dit"])
    vae = AutoencoderOobleck(audio_channels=2, sampling_rate=44100, **widths["vae"])
    conditioning = transformer.config.cross_attention_input_dim
    projection = StableAudioProjectionModel(text_encoder_dim=width,
                                            conditioning_dim=conditioning, min_value=0,
                                            max_value=512)
    return {"vae": vae, "text_encoder": t5, "projection_model": projection,
            "tokenizer": tokenizer, "transformer": transformer}


def save_stable_audio(folder: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a Stable Audio Open checkpoint (``model_index.json``, one folder per component,
    ``scheduler/scheduler_config.json``)."""
    folder = Path(folder)
    StableAudioPipeline(**stable_audio_components(size, seed), scheduler=None).save_pretrained(
        folder)
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(STABLE_AUDIO_SCHEDULER, indent=2))
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", STABLE_AUDIO_SCHEDULER["_class_name"]]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder
