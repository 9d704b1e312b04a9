"""diffmusic: zero-shot music restoration with latent audio diffusion models."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed version of diffmusic (``"unknown"`` when not installed)."""
    try:
        return version("diffmusic")
    except PackageNotFoundError:
        return "unknown"
