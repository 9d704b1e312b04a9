"""The "tiny" prior: AudioLDM-shaped diffusers/transformers components with random weights."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import Tensor
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from diffmusic.names import SAMPLE_RATE
from diffmusic.priors.latent import LatentDiffusionPrior, UnetKwargs
from diffmusic.priors.schedule import scaled_linear_alphas_cumprod

TEXT_DIM = 32


def _prompt_embedding(prompt: str | None) -> Tensor:
    """A fixed pseudo-random embedding per prompt (zeros for no prompt), ``(1, TEXT_DIM)``."""
    if not prompt:
        return torch.zeros(1, TEXT_DIM)
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
    return torch.randn(1, TEXT_DIM, generator=torch.Generator().manual_seed(seed))


def hash_conditioner(prompts: Sequence[str | None]) -> UnetKwargs:
    """Encoder states ``(B, 1, TEXT_DIM)`` of :func:`_prompt_embedding` for each prompt."""
    return {"encoder_hidden_states": torch.stack([_prompt_embedding(p) for p in prompts])}


def tiny_prior(seed: int = 0) -> LatentDiffusionPrior:
    """A randomly initialised prior with the real classes and the real 8 x 128 x 16 latent.

    Args:
        seed: Seed of the weight initialisation.
    """
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=(128, 16), in_channels=8, out_channels=8, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1, norm_num_groups=8, sample_size=512, scaling_factor=0.5)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=SAMPLE_RATE, upsample_initial_channel=32,
        upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], normalize_before=False,
        initializer_range=0.2))
    return LatentDiffusionPrior("tiny", unet, vae, vocoder, scaled_linear_alphas_cumprod(),
                                conditioner=hash_conditioner)
