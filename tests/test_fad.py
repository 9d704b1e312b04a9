"""FAD: the Fréchet distance, the TF checkpoint reader and MTT_musicnn against TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffmusic.embeddings import available_embeddings, load_embedding
from diffmusic.fad import frechet_distance

GOLDEN = Path(__file__).parent / "data" / "musicnn_golden.npz"


def test_frechet_distance_of_a_set_to_itself_is_zero() -> None:
    a = np.random.default_rng(0).standard_normal((200, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form_for_scaled_gaussians() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((20000, 3))
    b = 2 * rng.standard_normal((20000, 3)) + 1
    # |mu|^2 + tr(I + 4I - 2 * 2I) = 3 + 3
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)


def test_frechet_distance_refuses_a_single_frame() -> None:
    with pytest.raises(ValueError):
        frechet_distance(np.ones((1, 4)), np.ones((5, 4)))


def test_vggish_is_never_claimed_without_its_weights() -> None:
    if "vggish" not in available_embeddings():
        with pytest.raises(FileNotFoundError):
            load_embedding("vggish")


@pytest.fixture(scope="module")
def musicnn():
    pytest.importorskip("diffmusic.embeddings.musicnn")
    from diffmusic.embeddings.musicnn import MusiCNN, checkpoint_prefix
    from diffmusic.embeddings.tfcheckpoint import read_checkpoint

    try:
        prefix = checkpoint_prefix()
    except FileNotFoundError:
        pytest.skip("musicnn is not installed (pip install --no-deps musicnn)")
    weights = read_checkpoint(f"{prefix}/")
    return MusiCNN(weights).eval(), weights


def test_the_checkpoint_reader_finds_every_musicnn_variable(musicnn) -> None:
    _, weights = musicnn
    assert weights["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert weights["dense/kernel"].shape == (1506, 200)
    assert not any(name.endswith("/Adam") for name in weights)
    assert sum(1 for n in weights if n.startswith("batch_normalization")) == 11 * 4


def test_musicnn_matches_the_tensorflow_reference(musicnn) -> None:
    from diffmusic.embeddings.musicnn import log_mel_patches

    model, _ = musicnn
    golden = np.load(GOLDEN)
    wave = torch.from_numpy(golden["pcm"].astype(np.float32) / 32768)
    with torch.no_grad():
        out = model(log_mel_patches(wave, int(golden["hop"])))
    for layer in ("penultimate", "logits", "mean_pool"):
        assert np.abs(out[layer].numpy() - golden[layer]).max() < 1e-4, layer
    scale = np.abs(golden["max_pool"]).max()
    assert np.abs(out["max_pool"].numpy() - golden["max_pool"]).max() < 1e-4 * scale


def test_fad_musicnn_separates_noise_from_music(musicnn) -> None:
    from diffmusic.fad import fad

    embed = load_embedding("musicnn")
    t = torch.arange(48000) / 16000
    music = [sum(torch.sin(2 * torch.pi * f0 * h * t) * torch.exp(-3 * (t % 0.5)) / h
                 for h in (1, 2, 3)) * 0.2 for f0 in (220.0, 261.6, 329.6)]
    noise = [0.1 * torch.randn(48000, generator=torch.Generator().manual_seed(s))
             for s in range(3)]
    assert embed(music[0]).shape == (1, 200)
    assert fad(noise, music, embed) > fad(music[1:], music[:2], embed)
