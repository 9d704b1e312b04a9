"""MusicLDM (Chen et al., ICASSP 2024) as a prior: a CLAP text embedding as the UNet's class label.

MusicLDM's ``UNet2DConditionModel`` has no text cross-attention: it is called with
``encoder_hidden_states=None`` and ``class_labels`` = the CLAP text embedding ``(B, 512)``, which a
``simple_projection`` class embedding concatenates to the timestep embedding. The deprecated
diffusers pipeline's prompt code breaks under transformers 5, so the embedding is computed here
with ``ClapModel.get_text_features`` (see :func:`diffmusic.priors.text.clap_text_features`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from diffmusic.priors.hub import BACKBONE_PARTS, backbone_prior, load_component, scheduler_config
from diffmusic.priors.latent import LatentDiffusionPrior, UnetKwargs
from diffmusic.priors.text import TextEncoders, clap_text_features, prompt_texts


class ClapConditioner:
    """Prompts -> ``{"class_labels": (B, projection_dim)}`` CLAP text embeddings.

    Args:
        clap: ``ClapModel`` or ``ClapTextModelWithProjection``-like model with
            ``get_text_features``.
        tokenizer: Its RoBERTa tokenizer.
        device: Where encoding runs.
        offload: Keep the text encoder on the CPU between encodings.
    """

    def __init__(self, clap: nn.Module, tokenizer, device: torch.device,
                 offload: bool = False) -> None:
        self.clap, self.tokenizer = clap, tokenizer
        self.encoders = TextEncoders([clap], device, offload)

    def __call__(self, prompts: Sequence[str | None]) -> UnetKwargs:
        with self.encoders.active() as device:
            features = clap_text_features(self.clap, self.tokenizer, prompt_texts(prompts), device)
        return {"class_labels": features.float().cpu()}


def musicldm_prior(parts: dict, name: str, device: torch.device, dtype: torch.dtype,
                   offload: bool = False, scheduler: dict | None = None) -> LatentDiffusionPrior:
    """A MusicLDM prior from its components (the keyword arguments of ``MusicLDMPipeline``).

    Args:
        parts: ``unet``, ``vae``, ``vocoder``, ``text_encoder`` (CLAP), ``tokenizer``.
        name: Name written into outputs.
        device: Device of all networks.
        dtype: Parameter dtype of the UNet, VAE and vocoder.
        offload: Keep the text encoder on the CPU between encodings.
        scheduler: The scheduler config (default: ``parts["scheduler"].config``).
    """
    conditioner = ClapConditioner(parts["text_encoder"], parts["tokenizer"], device, offload)
    return backbone_prior(parts, name, device, dtype, conditioner, scheduler,
                          unet_kwargs={"encoder_hidden_states": None})


def load_musicldm(folder: Path, name: str, device: torch.device, dtype: torch.dtype,
                  offload: bool = False) -> LatentDiffusionPrior:
    """A MusicLDM prior from a checkpoint folder in the diffusers layout (see
    :func:`musicldm_prior`); CLAP stays float32 on the CPU, where it runs once."""
    text_dtype = torch.float32 if torch.device(device).type == "cpu" else dtype
    parts = {"text_encoder": load_component(folder, "text_encoder", text_dtype),
             "tokenizer": load_component(folder, "tokenizer")}
    parts.update({name_: load_component(folder, name_, dtype) for name_ in BACKBONE_PARTS})
    return musicldm_prior(parts, name, device, dtype, offload, scheduler_config(folder))
