"""MTT_musicnn (Pons & Serra, 2019) in torch, with weights read from the ``musicnn`` wheel.

The ``musicnn`` package (install it with ``pip install --no-deps musicnn``) ships TF1 checkpoints
of its music-tagging CNNs; :mod:`diffmusic.embeddings.tfcheckpoint` reads them without
TensorFlow. The network below reproduces ``musicnn.models.build_musicnn`` in inference mode
(batch norm with moving statistics, epsilon 1e-3); the front end reproduces
``musicnn.extractor.batch_data``: a 96-band Slaney mel power spectrogram (n_fft 512, hop 256,
centred with zero padding), cast to float16, then ``log10(10000 x + 1)``, cut into patches of 187
frames (3 s).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffmusic.dsp import MelConfig
from diffmusic.dsp.spectral import mel_filterbank
from diffmusic.embeddings.tfcheckpoint import read_checkpoint
from diffmusic.names import SAMPLE_RATE

MEL = MelConfig(sample_rate=SAMPLE_RATE, n_fft=512, win_length=512, hop_length=256, n_mels=96,
                fmin=0.0, fmax=8000.0)
PATCH_FRAMES = 187
"""Frames of one 3 s input patch (``librosa.time_to_frames(3, 16000, 256, 512) + 1``)."""
BN_EPS = 1e-3
LAYERS = ("timbral", "temporal", "cnn1", "cnn2", "cnn3", "mean_pool", "max_pool", "penultimate",
          "logits")


def checkpoint_prefix(model: str = "MTT_musicnn") -> Path:
    """Checkpoint prefix of ``model`` inside the installed ``musicnn`` package.

    Raises:
        FileNotFoundError: ``musicnn`` is not installed.
    """
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the musicnn package is not installed "
                                "(pip install --no-deps musicnn)")
    prefix = Path(list(spec.submodule_search_locations)[0]) / model
    if not (prefix / ".index").is_file():
        raise FileNotFoundError(f"{prefix}/.index: no checkpoint")
    return prefix


def log_mel_patches(wave: Tensor, hop_frames: int = PATCH_FRAMES) -> Tensor:
    """musicnn's input: ``(patches, 187, 96)`` log-compressed mel patches of mono 16 kHz audio.

    Args:
        wave: ``(N,)`` audio at 16 kHz.
        hop_frames: Frames between patch starts (187: no overlap, musicnn's default).
    """
    wave = wave.detach().to("cpu", torch.float32).reshape(-1)
    window = torch.hann_window(MEL.n_fft, periodic=True)
    spec = torch.stft(wave, MEL.n_fft, MEL.hop_length, window=window, center=True,
                      pad_mode="constant", return_complex=True)
    power = spec.real.pow(2) + spec.imag.pow(2)
    mel = (mel_filterbank(MEL) @ power).T.to(torch.float16).to(torch.float32)
    rep = torch.log10(10000 * mel + 1)
    starts = range(0, rep.shape[0] - PATCH_FRAMES + 1, hop_frames)
    if not starts:
        raise ValueError(f"audio shorter than one {PATCH_FRAMES}-frame patch (3 s)")
    return torch.stack([rep[s: s + PATCH_FRAMES] for s in starts])


class MusiCNN(nn.Module):
    """``build_musicnn(num_filt_midend=64, num_units_backend=200)`` with checkpoint weights.

    Args:
        weights: Variables of the TF checkpoint (:func:`read_checkpoint`).
    """

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.w = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}

    def _bn(self, x: Tensor, i: int, dim: int) -> Tensor:
        """Inference batch norm ``batch_normalization_i`` over axis ``dim`` of ``x``."""
        name = "batch_normalization" + (f"_{i}" if i else "")
        shape = [1] * x.dim()
        shape[dim] = -1
        p = {k: self.w[f"{name}/{k}"].reshape(shape)
             for k in ("gamma", "beta", "moving_mean", "moving_variance")}
        return (x - p["moving_mean"]) / torch.sqrt(p["moving_variance"] + BN_EPS) * p["gamma"] \
            + p["beta"]

    def _conv(self, x: Tensor, i: int) -> Tensor:
        """ReLU(conv2d_i) on NCHW ``x`` (TF kernel ``[kh, kw, in, out]``), valid padding."""
        name = "conv2d" + (f"_{i}" if i else "")
        kernel = self.w[f"{name}/kernel"].permute(3, 2, 0, 1)
        return F.relu(F.conv2d(x, kernel, self.w[f"{name}/bias"]))

    def _front_block(self, x: Tensor, conv: int, time_pad: tuple[int, int]) -> Tensor:
        """Conv, batch norm, max over frequency: ``(B, 1, T, 96) -> (B, T, C)``."""
        y = self._bn(self._conv(F.pad(x, (0, 0, *time_pad)), conv), conv + 1, 1)
        return y.amax(3).transpose(1, 2)

    def _mid_block(self, x: Tensor, conv: int) -> Tensor:
        """Conv over 7 frames and all features of ``(B, T, C)``, batch norm: ``(B, T, 64)``."""
        y = self._conv(F.pad(x, (0, 0, 3, 3))[:, None], conv)  # (B, 64, T, 1)
        return self._bn(y, conv + 1, 1)[..., 0].transpose(1, 2)

    def forward(self, patches: Tensor) -> dict[str, Tensor]:
        """Every layer musicnn's extractor returns, for ``(B, 187, 96)`` input patches."""
        x = self._bn(patches[:, None].float(), 0, 1)
        timbral = [self._front_block(x, c, (3, 3)) for c in (0, 1)]
        temporal = [self._front_block(x, c, ((k - 1) // 2, k // 2))
                    for c, k in ((2, 128), (3, 64), (4, 32))]
        front = torch.cat(timbral + temporal, 2)  # (B, T, 561)
        cnn1 = self._mid_block(front, 5)
        cnn2 = self._mid_block(cnn1, 6) + cnn1
        cnn3 = self._mid_block(cnn2, 7) + cnn2
        mid = torch.cat([front, cnn1, cnn2, cnn3], 2)  # (B, T, 753)
        max_pool, mean_pool = mid.amax(1), mid.mean(1)
        flat = self._bn(torch.stack([max_pool, mean_pool], 2).flatten(1), 9, 1)
        dense = F.relu(flat @ self.w["dense/kernel"] + self.w["dense/bias"])
        penultimate = self._bn(dense, 10, 1)
        logits = penultimate @ self.w["dense_1/kernel"] + self.w["dense_1/bias"]
        return dict(zip(LAYERS, (torch.cat(timbral, 2), torch.cat(temporal, 2), cnn1, cnn2, cnn3,
                                 mean_pool, max_pool, penultimate, logits), strict=True))


class MusicnnEmbedding:
    """FAD embedding: musicnn's 200-d ``penultimate`` layer per 3 s patch, hop 1 s.

    Args:
        layer: Which layer to return per patch (``penultimate``, ``mean_pool``, ``max_pool``).
        hop_frames: Frames between patches (62 frames ~ 1 s).
    """

    name = "musicnn"

    def __init__(self, layer: str = "penultimate", hop_frames: int = 62) -> None:
        self.layer, self.hop_frames = layer, hop_frames
        self.model = MusiCNN(read_checkpoint(f"{checkpoint_prefix()}/")).eval()

    def __call__(self, wave: Tensor) -> np.ndarray:
        """``(N,)`` 16 kHz audio -> ``(patches, dim)`` float32 embeddings.

        Audio shorter than one patch (3 s) is zero-padded to one patch.
        """
        wave = wave.reshape(-1)
        wave = F.pad(wave, (0, max(0, (PATCH_FRAMES - 1) * MEL.hop_length - wave.shape[0])))
        with torch.no_grad():
            out = self.model(log_mel_patches(wave, self.hop_frames))[self.layer]
        return out.numpy().astype(np.float32)
