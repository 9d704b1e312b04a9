"""Priors: the only layer that touches diffusers/transformers (DESIGN.md section 2)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from diffmusic.names import DEFAULT_PRIOR
from diffmusic.priors.base import Condition, Prior
from diffmusic.priors.gaussian import GaussianPrior
from diffmusic.priors.latent import LatentDiffusionPrior


class PriorNotFound(ValueError):
    """A prior name or folder that cannot be loaded; the message says how to get it."""


PRIOR_NAMES = ("embedded", "tiny", "gaussian", "audioldm2", "audioldm2-music", "audioldm2-large",
               "musicldm", "stable-audio")
REPOSITORIES = {"audioldm2": "cvssp/audioldm2-music", "audioldm2-music": "cvssp/audioldm2-music",
                "audioldm2-large": "cvssp/audioldm2-large", "musicldm": "ucsd-reach/musicldm",
                "stable-audio": "stabilityai/stable-audio-open-1.0"}
"""Hugging Face repositories of the named pretrained priors (``cvssp/audioldm2``: by its id)."""
FAMILIES = {"AudioLDM2Pipeline": "audioldm2", "MusicLDMPipeline": "musicldm",
            "StableAudioPipeline": "stable-audio"}
"""``model_index.json`` ``_class_name`` -> prior family."""


def _pretrained(spec: str, device: torch.device, dtype: torch.dtype, offload: bool) -> Prior:
    """AudioLDM2 / MusicLDM / Stable Audio Open from a folder, a repository id or a name in
    :data:`REPOSITORIES`."""
    from diffmusic.priors.hub import family, locate

    folder = locate(REPOSITORIES.get(spec, spec))
    kind = FAMILIES.get(family(folder))
    if kind is None:
        raise PriorNotFound(f"{spec}: {family(folder) or 'unknown'} checkpoints are not supported "
                            f"(use {' or '.join(FAMILIES)})")
    name = f"{kind}:{folder}" if Path(spec).exists() else REPOSITORIES.get(spec, spec)
    if kind == "audioldm2":
        from diffmusic.priors.audioldm2 import load_audioldm2 as load
    elif kind == "musicldm":
        from diffmusic.priors.musicldm import load_musicldm as load
    else:
        from diffmusic.priors.stable_audio import load_stable_audio as load
    return load(folder, name, device, dtype, offload)


def _is_embedded_folder(name: str) -> bool:
    """True for a folder holding an exported embedded model (``config.json`` of that format)."""
    config = Path(name) / "config.json"
    return config.is_file() and '"diffmusic-embedded"' in config.read_text()


def _moved(prior: LatentDiffusionPrior, device: torch.device,
           dtype: torch.dtype) -> LatentDiffusionPrior:
    """``prior`` with its networks on ``device`` in ``dtype`` (no-op casts skipped)."""
    if (prior.device, prior.dtype) != (device, dtype):
        for module in prior.networks():
            module.to(device=device, dtype=dtype)
        prior.device, prior.dtype = device, dtype
    return prior


def load_prior(name: str, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, *, offload: bool = False,
               compile: bool = False, checkpointing: bool = False) -> Prior:
    """Load a prior by name, Hugging Face repository id, or checkpoint folder.

    Args:
        name: ``tiny``, ``gaussian``, ``audioldm2`` (= ``audioldm2-music``),
            ``audioldm2-large``, ``musicldm``, ``stable-audio`` (Stable Audio Open 1.0), a
            repository id such as ``cvssp/audioldm2``, or a folder in the diffusers layout
            (family read from ``model_index.json``).
        device: Device of the networks.
        dtype: Parameter dtype (``float16``/``bfloat16`` on GPUs; guidance math stays float32).
        offload: Keep text encoders on the CPU except while encoding prompts.
        compile: Wrap the UNet (DiT) in ``torch.compile`` (opt-in; first steps are slow).
        checkpointing: Gradient checkpointing in the UNet (DiT) and VAE (less memory for the
            backward passes of the guided samplers, some recomputation).

    Raises:
        PriorNotFound: Unknown names, folders that are not a prior, repositories that are
            neither cached nor downloadable (one line saying how to get them).
    """
    device = torch.device(device)
    if name == "tiny":
        from diffmusic.priors.tiny import tiny_prior

        prior = _moved(tiny_prior(), device, dtype)
    elif name == "embedded" or _is_embedded_folder(name):
        from diffmusic.priors.embedded import EMBEDDED_DIR, embedded_prior

        try:
            prior = embedded_prior(EMBEDDED_DIR if name == "embedded" else name)
        except FileNotFoundError as missing:
            raise PriorNotFound(str(missing)) from None
        prior = _moved(prior, device, dtype)
    elif name == "gaussian":
        return GaussianPrior()
    elif name in REPOSITORIES or Path(name).exists() or "/" in name:
        prior = _pretrained(name, device, dtype, offload)
    else:
        raise PriorNotFound(f"unknown prior {name!r}; choose from {', '.join(PRIOR_NAMES)}, "
                            "a Hugging Face repository id or a folder")
    denoiser = prior.denoiser_name
    if checkpointing:
        prior.use_gradient_checkpointing()
    if compile:
        setattr(prior, denoiser, torch.compile(getattr(prior, denoiser)))
    return prior


def cached_prior(name: str, device: str = "cpu", dtype: str = "float32", compile: bool = False,
                 checkpointing: bool = False, offload: bool = False) -> Prior:
    """:func:`load_prior` once per process and set of arguments (loading builds or reads the
    whole model; priors are read-only, so callers share one). The two most recent are kept;
    ``cached_prior.cache_clear()`` drops them.

    Logging at WARNING and below is off while it loads (diffusers warns about an empty list of
    fp32 modules).

    Args:
        name: As :func:`load_prior`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: Name of a torch dtype: ``"float32"``, ``"float16"``, ``"bfloat16"``.
        compile: As :func:`load_prior`.
        checkpointing: As :func:`load_prior`.
        offload: As :func:`load_prior`.

    Raises:
        ValueError: A CUDA device without CUDA ("CUDA is not available on this machine"), an
            unknown dtype name.
        PriorNotFound: As :func:`load_prior`.
    """
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available on this machine")
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16")
    # one key however the arguments are spelt (positional, keyword, default)
    return _cached_prior(name, str(torch.device(device)), dtype, bool(compile),
                         bool(checkpointing), bool(offload))


@functools.lru_cache(maxsize=2)
def _cached_prior(name: str, device: str, dtype: str, compile: bool, checkpointing: bool,
                  offload: bool) -> Prior:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        return load_prior(name, device, getattr(torch, dtype), compile=compile,
                          checkpointing=checkpointing, offload=offload)
    finally:
        logging.disable(previous)


cached_prior.cache_clear = _cached_prior.cache_clear  # type: ignore[attr-defined]


__all__ = ["DEFAULT_PRIOR", "PRIOR_NAMES", "Condition", "GaussianPrior", "Prior",
           "PriorNotFound", "REPOSITORIES", "cached_prior", "load_prior"]
