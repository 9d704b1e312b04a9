"""Audio file I/O: decode anything soundfile or ffmpeg reads, write wav/flac atomically."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from diffmusic.dsp import resample


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the reason."""


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{path}: not readable by libsndfile and ffmpeg is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decoded.wav"
        result = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "wav",
                                 "-acodec", "pcm_f32le", str(out)], capture_output=True, text=True)
        if result.returncode != 0 or not out.exists():
            reason = (result.stderr.strip().splitlines() or ["unknown format"])[-1]
            raise AudioError(f"{path}: cannot decode audio ({reason})")
        data, rate = sf.read(out, dtype="float32", always_2d=True)
    return data, rate


def load_audio(path: str | Path, sample_rate: int | None = None, mono: bool = False,
               max_channels: int = 8) -> tuple[Tensor, int]:
    """Read an audio file as float32 ``(channels, samples)`` in [-1, 1].

    Args:
        path: Any file libsndfile (wav, flac, ogg, mp3) or ffmpeg decodes.
        sample_rate: Resample to this rate in Hz (keep the file's rate when ``None``).
        mono: Average the channels into one.
        max_channels: Refuse files with more channels than this.

    Returns:
        The waveform and its sample rate.

    Raises:
        AudioError: Missing, unreadable, empty, non-finite or too-many-channel audio.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        data, rate = _decode_with_ffmpeg(path)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    if data.shape[1] > max_channels:
        raise AudioError(f"{path}: {data.shape[1]} channels (at most {max_channels} supported)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    wave = torch.from_numpy(np.ascontiguousarray(data.T))
    if mono:
        wave = wave.mean(0, keepdim=True)
    if sample_rate is not None and sample_rate != rate:
        wave, rate = resample(wave, rate, sample_rate), sample_rate
    return wave, rate


def save_audio(path: str | Path, wave: Tensor, sample_rate: int,
               subtype: str | None = None) -> Path:
    """Write ``(channels, samples)`` or ``(samples,)`` audio atomically (temp file, then rename).

    The format follows the suffix (``.wav`` or ``.flac``); wav defaults to 32-bit float so that
    nothing is clipped or requantised, flac to 24-bit PCM.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".wav", ".flac"):
        raise AudioError(f"{path}: output must be .wav or .flac")
    data = wave.detach().cpu().float().reshape(-1, wave.shape[-1]).T.numpy()
    subtype = subtype or ("FLOAT" if suffix == ".wav" else "PCM_24")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, data, sample_rate, subtype=subtype, format=suffix[1:].upper())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
