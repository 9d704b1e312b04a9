"""Priors: the only layer that touches diffusers/transformers (DESIGN.md section 2)."""

from __future__ import annotations

from pathlib import Path

import torch

from diffmusic.priors.base import Condition, Prior
from diffmusic.priors.gaussian import GaussianPrior


class PriorNotFound(ValueError):
    """A prior name or folder that cannot be loaded; the message says how to get it."""


PRIOR_NAMES = ("tiny", "gaussian")
DEFAULT_PRIOR = "tiny"


def load_prior(name: str, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> Prior:
    """Load a prior by name (``tiny``, ``gaussian``) or from a local folder.

    Raises:
        PriorNotFound: Unknown names and folders that are not a prior.
    """
    if name == "tiny":
        from diffmusic.priors.tiny import tiny_prior

        prior = tiny_prior()
        for module in (prior.unet, prior.vae, prior.vocoder):
            module.to(device=device, dtype=dtype)
        prior.device, prior.dtype = torch.device(device), dtype
        return prior
    if name == "gaussian":
        return GaussianPrior()
    if Path(name).exists():
        raise PriorNotFound(f"{name}: loading a prior from a folder is not supported yet")
    raise PriorNotFound(f"unknown prior {name!r}; choose from {', '.join(PRIOR_NAMES)} "
                        "or give a folder")


__all__ = ["DEFAULT_PRIOR", "PRIOR_NAMES", "Condition", "GaussianPrior", "Prior",
           "PriorNotFound", "load_prior"]
