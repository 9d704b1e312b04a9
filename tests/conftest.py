"""Shared fixtures: short music-like test signals at 16 kHz."""

import pytest
import torch
from signals import music_like


@pytest.fixture(scope="session")
def clips() -> torch.Tensor:
    """Two music-like clips, ``(2, N)``."""
    return torch.stack([music_like(0), music_like(1)])


@pytest.fixture(scope="session")
def stems() -> torch.Tensor:
    """Two songs of four music-like stems, ``(2, 4, N)``."""
    return torch.stack([torch.stack([music_like(10 * s + k) for k in range(4)]) for s in range(2)])
