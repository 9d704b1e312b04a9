"""The embedded prior: the small music model of ``diffmusic.train``, shipped as safetensors.

:func:`load_embedded` is the one reader of the exported folder (``config.json`` + safetensors,
written by :func:`diffmusic.train.export.export`); :func:`embedded_prior` wraps what it reads as a
prior, and ``diffmusic.train.evaluate`` measures the networks themselves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DModel
from safetensors.torch import load_file
from torch import Tensor, nn

from diffmusic.dsp import MelConfig
from diffmusic.priors.latent import LatentDiffusionPrior, UnetKwargs
from diffmusic.priors.mel_decoder import MelDecoderConfig, SubPixelMelDecoder
from diffmusic.priors.schedule import alphas_cumprod_from_config
from diffmusic.priors.vocos import VocosConfig, VocosVocoder

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "embedded"
"""Where the package keeps the embedded model (``config.json`` + ``*.safetensors``)."""
FORMAT = "diffmusic-embedded"
"""The ``format`` field of the folder's ``config.json``."""


@dataclass
class EmbeddedModels:
    """The networks of an exported embedded model, float32, in eval mode, gradients off.

    Attributes:
        config: Content of ``config.json``.
        vocoder: Log-mel ``(B, T, 64)`` -> waveform ``(B, 160 T)``.
        vae: ``AutoencoderKL``; images are log-mels ``(B, 1, T, 64)``.
        decoder: The sub-pixel decoder of ``vae`` (unscaled latent -> image), or ``None``.
        unet: Noise predictor ``(z_t, t, class_labels)``, or ``None`` when not exported yet.
        alphas_cumprod: Training schedule, shape ``(1000,)``, float64.
        scaling_factor: Multiply VAE latents by this before diffusion (``None`` without UNet).
    """

    config: dict
    vocoder: VocosVocoder
    vae: AutoencoderKL
    decoder: SubPixelMelDecoder | None
    unet: UNet2DModel | None
    alphas_cumprod: Tensor
    scaling_factor: float | None

    def decode(self, z: Tensor) -> Tensor:
        """Unscaled latents ``(B, 8, T/4, 16)`` -> log-mel images ``(B, 1, T, 64)``, through the
        sub-pixel decoder when there is one (as the prior decodes)."""
        return self.decoder(z) if self.decoder is not None else self.vae.decode(z).sample


def _unet(config: dict) -> UNet2DModel:
    return UNet2DModel(**{**config, "sample_size": tuple(config["sample_size"])})


BUILDERS = {"vocoder": lambda config: VocosVocoder(VocosConfig(**config)),
            "vae": lambda config: AutoencoderKL(**config),
            "decoder": lambda config: SubPixelMelDecoder(MelDecoderConfig(**config)),
            "unet": _unet}
"""Network of each stage from its ``config.json`` entry's ``config``."""


def _load(module: nn.Module, folder: Path, entry: dict) -> nn.Module:
    state = load_file(str(folder / entry["file"]))
    module.load_state_dict({k: v.float() for k, v in state.items()})
    return module.eval().requires_grad_(False)


def load_embedded(folder: str | Path | None = None, require_unet: bool = False) -> EmbeddedModels:
    """Read an exported embedded model: every stage its ``config.json`` lists, cast to float32.

    Args:
        folder: The exported folder (default: :data:`EMBEDDED_DIR`, the copy in the package).
        require_unet: Refuse a folder without the noise predictor (the vocoder and the VAE are
            always required; the decoder is optional).

    Raises:
        FileNotFoundError: When ``config.json`` or a required stage is missing (with the command
            that creates them).
    """
    folder = Path(folder or EMBEDDED_DIR)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    required = ("vocoder", "vae", "unet") if require_unet else ("vocoder", "vae")
    missing = [stage for stage in required if stage not in config]
    if missing:
        raise FileNotFoundError(f"the embedded model in {folder} lacks {', '.join(missing)}; "
                                "train and export it with `make train` "
                                "(python -m diffmusic.train all)")
    stages = {stage: _load(build(config[stage]["config"]), folder, config[stage])
              if stage in config else None for stage, build in BUILDERS.items()}
    return EmbeddedModels(config, stages["vocoder"], stages["vae"], stages["decoder"],
                          stages["unet"], alphas_cumprod_from_config(config["schedule"]),
                          config.get("scaling_factor"))


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
    """Load the embedded prior from ``folder`` (default: the copy inside the package); its
    window is the config's ``window_samples``.

    Raises:
        FileNotFoundError: When the weights are missing or incomplete (with how to make them).
    """
    models = load_embedded(folder, require_unet=True)
    config = models.config
    return LatentDiffusionPrior(
        "embedded", models.unet, models.vae, models.vocoder, models.alphas_cumprod,
        conditioner=ClassConditioner(config["class_embed_index"]),
        mel=MelConfig(**config["mel"]), decoder=models.decoder, window=config["window_samples"])
