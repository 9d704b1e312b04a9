"""Checkpoints in the diffusers layout: find them (folder or Hugging Face cache), read their parts.

A checkpoint is a folder with ``model_index.json`` and one sub-folder per component (``unet/``,
``vae/``, ``vocoder/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/`` ...), exactly as
``DiffusionPipeline.save_pretrained`` writes it and as the Hub repositories hold it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffmusic.dsp import MelConfig
from diffmusic.priors import PriorNotFound
from diffmusic.priors.latent import LatentDiffusionPrior
from diffmusic.priors.schedule import alphas_cumprod_from_config, prediction_type_from_config

REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
TRUTHY = {"1", "true", "yes", "on"}
BACKBONE_PARTS = ("unet", "vae", "vocoder")
"""Components every AudioLDM-family checkpoint has besides its text encoders."""
WEIGHT_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]
"""Files a prior needs from a repository (configs, vocabularies, safetensors weights)."""


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids network access (read at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUTHY


def hub_cache() -> str | None:
    """The Hugging Face cache folder from ``HF_HUB_CACHE`` / ``HF_HOME`` (read at call time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


GATED = ("stabilityai/stable-audio-open-1.0",)
"""Repositories that download only after their licence is accepted on the Hub."""


def missing_message(repo: str, reason: str) -> str:
    """The one line shown when a repository is not available locally."""
    gated = (f"accept its licence at https://huggingface.co/{repo}, run `huggingface-cli login`, "
             if repo in GATED else "")
    return (f"prior {repo} is not available ({reason}); on a machine with internet {gated}run "
            f"`huggingface-cli download {repo}` and copy the Hugging Face cache "
            f"(~/.cache/huggingface/hub) here, or pass --prior PATH to a folder with its files")


def locate(spec: str) -> Path:
    """The folder of a checkpoint given as a path or as a Hub repository id.

    Repositories are looked up in the local cache first; when that fails and the hub is not
    offline, the needed files are downloaded.

    Raises:
        PriorNotFound: With one line naming the folder or repository and how to get it.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise PriorNotFound(f"{spec}: not a diffusers checkpoint folder (no model_index.json)")
        return path
    if not REPO_ID.fullmatch(spec):
        raise PriorNotFound(f"{spec}: no such folder")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, cache_dir=hub_cache(), local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not in the cache"
        if offline():
            raise PriorNotFound(missing_message(spec, "not in the local cache and "
                                                      "HF_HUB_OFFLINE is set")) from None
    try:
        return Path(snapshot_download(spec, cache_dir=hub_cache(),
                                      allow_patterns=WEIGHT_PATTERNS))
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all one message
        reason = f"not in the local cache and the download failed: {type(exc).__name__}"
        raise PriorNotFound(missing_message(spec, reason)) from None


def read_json(path: Path) -> dict:
    """A JSON file as a dictionary."""
    return json.loads(path.read_text())


def family(folder: Path) -> str:
    """The pipeline class named in ``model_index.json`` (e.g. ``"AudioLDM2Pipeline"``)."""
    return str(read_json(folder / "model_index.json").get("_class_name", ""))


def _resolve(library: str, class_name: str) -> type:
    """The class ``model_index.json`` names, e.g. ``["audioldm2", "AudioLDM2ProjectionModel"]``."""
    for module in (library, f"diffusers.pipelines.{library}", "diffusers", "transformers"):
        try:
            found = getattr(importlib.import_module(module), class_name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    raise PriorNotFound(f"cannot import {library}.{class_name}; update diffusers/transformers")


def load_component(folder: Path, name: str, dtype: torch.dtype | None = None) -> Any:
    """Load one component (model or tokenizer) of a checkpoint on the CPU.

    Args:
        folder: The checkpoint folder.
        name: Component name in ``model_index.json`` (also its sub-folder).
        dtype: Parameter dtype for models (``None``: as stored).

    Raises:
        PriorNotFound: The component is not listed or its files are missing.
    """
    entry = read_json(folder / "model_index.json").get(name)
    if not entry or entry[0] is None:
        raise PriorNotFound(f"{folder}: the checkpoint has no {name!r} component")
    cls = _resolve(*entry)
    try:
        obj = cls.from_pretrained(folder / name, **_load_options(cls, dtype))
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PriorNotFound(f"{folder}: cannot load {name}/ ({reason}); "
                            "the download may be incomplete") from None
    if isinstance(obj, nn.Module):
        obj.eval().requires_grad_(False)
    return obj


def _load_options(cls: type, dtype: torch.dtype | None) -> dict:
    """``from_pretrained`` keywords: the dtype (as each library spells it), memory mode."""
    if not issubclass(cls, nn.Module) or dtype is None:
        return {}
    from diffusers import ModelMixin

    if issubclass(cls, ModelMixin):
        lazy = importlib.util.find_spec("accelerate") is not None
        return {"torch_dtype": dtype, "low_cpu_mem_usage": lazy}
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"dtype" if major >= 5 else "torch_dtype": dtype}


def mel_config(vocoder: nn.Module) -> MelConfig:
    """The log-mel front end of a ``SpeechT5HifiGan`` vocoder config (bands, rate, hop)."""
    config = vocoder.config
    hop = math.prod(config.upsample_rates)
    return MelConfig(sample_rate=config.sampling_rate, hop_length=hop, n_mels=config.model_in_dim,
                     fmax=config.sampling_rate / 2)


def scheduler_config(folder: Path) -> dict:
    """``scheduler/scheduler_config.json`` of a checkpoint (read as JSON: the scheduler class
    itself is never built)."""
    return read_json(folder / "scheduler" / "scheduler_config.json")


def backbone_prior(parts: dict, name: str, device: torch.device, dtype: torch.dtype,
                   conditioner, scheduler: dict | None = None,
                   unet_kwargs: dict | None = None) -> LatentDiffusionPrior:
    """A :class:`LatentDiffusionPrior` around ``parts["unet"]``, ``["vae"]`` and ``["vocoder"]``.

    The mel front end comes from the vocoder config, the latent geometry from the VAE config,
    the schedule and prediction type from the scheduler config ``scheduler`` (default:
    ``parts["scheduler"].config``); the window is the family's 5.12 s
    (:data:`diffmusic.priors.latent.WINDOW_FRAMES` latent frames).
    """
    if scheduler is None:
        scheduler = dict(parts["scheduler"].config)
    unet, vae, vocoder = (moved_to(parts[k], device, dtype) for k in BACKBONE_PARTS)
    return LatentDiffusionPrior(name, unet, vae, vocoder, alphas_cumprod_from_config(scheduler),
                                conditioner, mel=mel_config(vocoder), unet_kwargs=unet_kwargs,
                                prediction_type=prediction_type_from_config(scheduler))


def moved_to(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Move a module, casting only when its dtype differs (diffusers warns on every cast)."""
    if next(module.parameters()).dtype != dtype:
        module = module.to(dtype)
    return module.to(device)
