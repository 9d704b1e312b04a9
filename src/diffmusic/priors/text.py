"""Text-encoder plumbing shared by the AudioLDM2 and MusicLDM conditioners."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def prompt_texts(prompts: Sequence[str | None]) -> list[str]:
    """Prompts as strings; ``None`` becomes the empty prompt (the unconditional branch)."""
    return [p or "" for p in prompts]


def tokenize(tokenizer, texts: Sequence[str], device: torch.device) -> tuple[Tensor, Tensor]:
    """Token ids and attention mask, both ``(B, L)``, padded to the longest text.

    Texts longer than the tokenizer's ``model_max_length`` are truncated, as in the pipelines.
    """
    batch = tokenizer(list(texts), padding=True, truncation=True,
                      max_length=tokenizer.model_max_length, return_tensors="pt")
    return batch.input_ids.to(device), batch.attention_mask.to(device)


def clap_text_features(clap: nn.Module, tokenizer, texts: Sequence[str],
                       device: torch.device) -> Tensor:
    """CLAP text embeddings ``(B, projection_dim)`` (L2-normalised by ``get_text_features``).

    ``get_text_features`` returns a tensor in transformers 4 and a model output whose
    ``pooler_output`` holds the features in transformers 5; both are accepted.
    """
    ids, mask = tokenize(tokenizer, texts, device)
    features = clap.get_text_features(ids, attention_mask=mask)
    return getattr(features, "pooler_output", features)


class TextEncoders:
    """Text encoders that live on ``home`` and visit ``device`` only while encoding.

    With ``offload`` the encoders wait on the CPU between encodings, so a GPU holds only the
    UNet, the VAE and the vocoder during sampling (conditions are computed once per
    restoration).

    Args:
        modules: The encoders (moved together).
        device: Where encoding runs.
        offload: Keep the encoders on the CPU between encodings.
    """

    def __init__(self, modules: Sequence[nn.Module], device: torch.device,
                 offload: bool = False) -> None:
        self.modules = [m.eval().requires_grad_(False) for m in modules]
        self.device = torch.device(device)
        self.home = torch.device("cpu") if offload else self.device
        for module in self.modules:
            module.to(self.home)

    @contextmanager
    def active(self) -> Iterator[torch.device]:
        """Move the encoders to :attr:`device` for the block (no gradients), then back home."""
        moved = self.home != self.device
        if moved:
            for module in self.modules:
                module.to(self.device)
        try:
            with torch.no_grad():
                yield self.device
        finally:
            if moved:
                for module in self.modules:
                    module.to(self.home)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
