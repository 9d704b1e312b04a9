"""AudioLDM2 (Liu et al., 2024) as a prior: CLAP + T5 -> projection -> GPT-2 -> two-stream UNet.

The condition follows ``AudioLDM2Pipeline.encode_prompt`` of diffusers, computed on the components
directly (the pipeline's ``__call__`` is never used): the CLAP text embedding ``(B, 1, Dc)`` and the
T5 hidden states ``(B, L, Dt)`` are projected to the GPT-2 width with learned SOS/EOS tokens,
GPT-2 generates ``max_new_tokens`` (8) hidden states ``(B, 8, Dg)`` from them, and the UNet
cross-attends to the generated states (``encoder_hidden_states``) and to the T5 states
(``encoder_hidden_states_1`` with ``encoder_attention_mask_1``).

One deliberate difference: every prompt is encoded on its own (then padded with masked tokens),
so no condition depends on the other prompts of the batch or on the prompt's length (the pipeline
pads the negative prompt to the prompt's length, which changes GPT-2's positions).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from diffmusic.priors import PriorNotFound
from diffmusic.priors.hub import BACKBONE_PARTS, backbone_prior, load_component, scheduler_config
from diffmusic.priors.latent import LatentDiffusionPrior, UnetKwargs, cat_kwargs
from diffmusic.priors.text import TextEncoders, clap_text_features, prompt_texts, tokenize

MAX_NEW_TOKENS = 8
TEXT_PARTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "projection_model",
              "language_model")


def generate_hidden_states(language_model: nn.Module, embeds: Tensor, mask: Tensor,
                           steps: int = MAX_NEW_TOKENS) -> Tensor:
    """Let GPT-2 continue a sequence of embeddings by ``steps`` hidden states (greedy, no tokens).

    Each step feeds the sequence so far and appends the last position's final hidden state, as
    ``AudioLDM2Pipeline.generate_language_model`` does (there with a key/value cache).

    Args:
        language_model: ``GPT2Model`` (or ``GPT2LMHeadModel``, whose trunk is used).
        embeds: Projected prompt embeddings ``(B, L, D)``.
        mask: Their attention mask ``(B, L)`` (1: attend).
        steps: Number of generated states.

    Returns:
        The generated states ``(B, steps, D)``.
    """
    trunk = getattr(language_model, "transformer", language_model)
    for _ in range(steps):
        out = trunk(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        embeds = torch.cat([embeds, out.last_hidden_state[:, -1:]], dim=1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
    return embeds[:, -steps:]


class AudioLDM2Conditioner:
    """Prompts -> AudioLDM2 UNet inputs (see the module docstring).

    Args:
        clap: ``ClapModel`` (text branch used).
        tokenizer: Its RoBERTa tokenizer.
        t5: ``T5EncoderModel`` (FLAN-T5).
        tokenizer_2: Its T5 tokenizer.
        projection: ``AudioLDM2ProjectionModel``.
        language_model: ``GPT2Model``.
        device: Where encoding runs.
        offload: Keep the text encoders on the CPU between encodings.
    """

    def __init__(self, clap: nn.Module, tokenizer, t5: nn.Module, tokenizer_2,
                 projection: nn.Module, language_model: nn.Module, device: torch.device,
                 offload: bool = False) -> None:
        self.clap, self.t5, self.projection, self.language_model = (clap, t5, projection,
                                                                    language_model)
        self.tokenizer, self.tokenizer_2 = tokenizer, tokenizer_2
        self.encoders = TextEncoders([clap, t5, projection, language_model], device, offload)
        self.max_new_tokens = int(getattr(language_model.config, "max_new_tokens", None)
                                  or MAX_NEW_TOKENS)

    def __call__(self, prompts: Sequence[str | None]) -> UnetKwargs:
        """UNet inputs for one prompt per item: generated ``(B, 8, Dg)``, T5 ``(B, L, Dt)``.

        Each distinct prompt is encoded on its own: batched, T5's padding shifts GPT-2's
        positions, and one prompt's condition would depend on the others in the batch (the
        sources of a separation). The T5 sequences are then padded with masked tokens.
        """
        texts = prompt_texts(prompts)
        with self.encoders.active() as device:
            encoded = {text: self._encode(text, device) for text in dict.fromkeys(texts)}
        return functools.reduce(cat_kwargs, (encoded[text] for text in texts))

    def _encode(self, text: str, device: torch.device) -> UnetKwargs:
        """UNet inputs for one prompt, batch of one (inside :meth:`TextEncoders.active`)."""
        clap = clap_text_features(self.clap, self.tokenizer, [text], device)[:, None]
        ids, mask = tokenize(self.tokenizer_2, [text], device)
        t5 = self.t5(input_ids=ids, attention_mask=mask).last_hidden_state
        projected = self.projection(hidden_states=clap, hidden_states_1=t5,
                                    attention_mask=mask.new_ones(1, 1),
                                    attention_mask_1=mask)
        generated = generate_hidden_states(self.language_model, projected.hidden_states,
                                           projected.attention_mask, self.max_new_tokens)
        return {"encoder_hidden_states": generated.float().cpu(),
                "encoder_hidden_states_1": t5.float().cpu(), "encoder_attention_mask_1": mask.cpu()}


def audioldm2_prior(parts: dict, name: str, device: torch.device, dtype: torch.dtype,
                    offload: bool = False, scheduler: dict | None = None) -> LatentDiffusionPrior:
    """An AudioLDM2 prior from its components (the keyword arguments of ``AudioLDM2Pipeline``).

    Args:
        parts: ``unet``, ``vae``, ``vocoder``, ``text_encoder`` (CLAP), ``tokenizer``,
            ``text_encoder_2`` (T5), ``tokenizer_2``, ``projection_model``, ``language_model``.
        name: Name written into outputs.
        device: Device of all networks (text encoders: see ``offload``).
        dtype: Parameter dtype of the UNet, VAE and vocoder.
        offload: Keep the text encoders on the CPU between encodings.
        scheduler: The scheduler config (default: ``parts["scheduler"].config``).
    """
    kind = parts["text_encoder_2"].config.model_type
    if kind != "t5":
        raise PriorNotFound(f"{name}: text_encoder_2 is {kind!r}; only the text-to-audio/music "
                            "AudioLDM2 checkpoints (T5) are supported")
    conditioner = AudioLDM2Conditioner(
        parts["text_encoder"], parts["tokenizer"], parts["text_encoder_2"], parts["tokenizer_2"],
        parts["projection_model"], parts["language_model"], device, offload)
    return backbone_prior(parts, name, device, dtype, conditioner, scheduler)


def load_audioldm2(folder: Path, name: str, device: torch.device, dtype: torch.dtype,
                   offload: bool = False) -> LatentDiffusionPrior:
    """An AudioLDM2 prior from a checkpoint folder in the diffusers layout (see
    :func:`audioldm2_prior`); text encoders stay float32 on the CPU, where they run once."""
    text_dtype = torch.float32 if torch.device(device).type == "cpu" else dtype
    parts = {name_: load_component(folder, name_, text_dtype) for name_ in TEXT_PARTS}
    parts.update({name_: load_component(folder, name_, dtype) for name_ in BACKBONE_PARTS})
    return audioldm2_prior(parts, name, device, dtype, offload, scheduler_config(folder))
