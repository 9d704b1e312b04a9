"""Shared fixtures: short music-like test signals at 16 kHz."""

import shutil
from collections.abc import Iterator

import pytest
import torch
from signals import music_like

from diffmusic.priors import Prior, load_prior


@pytest.fixture(scope="session")
def clips() -> torch.Tensor:
    """Two music-like clips, ``(2, N)``."""
    return torch.stack([music_like(0), music_like(1)])


@pytest.fixture(scope="session")
def stems() -> torch.Tensor:
    """Two songs of four music-like stems, ``(2, 4, N)``."""
    return torch.stack([torch.stack([music_like(10 * s + k) for k in range(4)]) for s in range(2)])


@pytest.fixture(scope="session")
def tiny() -> Prior:
    """The tiny prior: random weights, the real classes (priors are read-only, so one is shared)."""
    return load_prior("tiny")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for modules of tiny models: on a busy 2-core machine two threads
    spin-wait on each other and such a module runs several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_ffmpeg(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH that holds no ffmpeg or ffprobe (an empty folder)."""
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("empty_bin")))
    assert shutil.which("ffmpeg") is None and shutil.which("ffprobe") is None
