"""The embedded prior: the small music model of ``diffmusic.train``, shipped as safetensors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DModel
from safetensors.torch import load_file
from torch import nn

from diffmusic.dsp import MelConfig
from diffmusic.priors.latent import LatentDiffusionPrior, UnetKwargs
from diffmusic.priors.mel_decoder import MelDecoderConfig, SubPixelMelDecoder
from diffmusic.priors.schedule import alphas_cumprod_from_config
from diffmusic.priors.vocos import VocosConfig, VocosVocoder

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "embedded"
"""Where the package keeps the embedded model (``config.json`` + ``*.safetensors``)."""


def _load(module: nn.Module, folder: Path, entry: dict) -> nn.Module:
    state = load_file(str(folder / entry["file"]))
    module.load_state_dict({k: v.float() for k, v in state.items()})
    return module.eval().requires_grad_(False)


class ClassConditioner:
    """Prompts are class names (``mix``, ``vocals``, ``drums``, ``bass``, ``other``).

    ``None`` or ``""`` selects the unconditional embedding the model learned with classifier-free
    dropout.
    """

    def __init__(self, index: dict[str, int]) -> None:
        self.index = index

    def __call__(self, prompts: Sequence[str | None]) -> UnetKwargs:
        labels = []
        for prompt in prompts:
            key = prompt or "unconditional"
            if key not in self.index:
                names = ", ".join(k for k in self.index if k != "unconditional")
                raise ValueError(f"the embedded prior knows the classes {names}; got {prompt!r}")
            labels.append(self.index[key])
        return {"class_labels": torch.tensor(labels, dtype=torch.long)}


def embedded_prior(folder: str | Path = EMBEDDED_DIR) -> LatentDiffusionPrior:
    """Load the embedded prior from ``folder`` (default: the copy inside the package).

    Raises:
        FileNotFoundError: When the weights are missing or incomplete (with how to make them).
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    missing = [part for part in ("vocoder", "vae", "unet") if part not in config]
    if missing:
        raise FileNotFoundError(f"the embedded model in {folder} lacks {', '.join(missing)}; "
                                "train and export it with `make train`")
    vocoder = _load(VocosVocoder(VocosConfig(**config["vocoder"]["config"])), folder,
                    config["vocoder"])
    vae = _load(AutoencoderKL(**config["vae"]["config"]), folder, config["vae"])
    unet = _load(UNet2DModel(**config["unet"]["config"]), folder, config["unet"])
    decoder = None
    if "decoder" in config:
        decoder_config = MelDecoderConfig(**config["decoder"]["config"])
        decoder = _load(SubPixelMelDecoder(decoder_config), folder, config["decoder"])
    return LatentDiffusionPrior(
        "embedded", unet, vae, vocoder, alphas_cumprod_from_config(config["schedule"]),
        conditioner=ClassConditioner(config["class_embed_index"]),
        mel=MelConfig(**config["mel"]), decoder=decoder)
