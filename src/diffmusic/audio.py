"""Audio file I/O: decode with libsndfile or PyAV (FFmpeg's libraries, no system binary), write
wav/flac/mp3/ogg/opus atomically, and keep restorations inside full scale."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from diffmusic.dsp import resample
from diffmusic.files import atomic_path
from diffmusic.names import BITS, CLIP_MODES


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the reason."""


WRITE_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")
"""Output formats, chosen by the file's suffix."""
RESCALE_PEAK = 0.99
"""Peak a restoration is scaled to by ``clip_mode="rescale"`` when it would pass full scale."""
LOSSY = {".mp3": ("mp3", "libmp3lame", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100,
                                        48000), 320_000),
         ".opus": ("ogg", "libopus", (8000, 12000, 16000, 24000, 48000), 256_000)}
"""Suffix -> (container, PyAV encoder, sample rates it takes, bit rate for stereo)."""
LOSSY_LAYOUTS = {1: "mono", 2: "stereo"}
AV_DEMUXERS = "wav,w64,flac,mp3,ogg,mov,matroska,mpegts,aac,asf,aiff,caf,wv,ape,au"
"""The containers PyAV may open (FFmpeg demuxer names): audio and video files, never a playlist
or a concat list, which would make FFmpeg open other files that the caller did not name."""
AV_OPTIONS = {"format_whitelist": AV_DEMUXERS, "protocol_whitelist": "file"}


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header declares, read without decoding.

    Attributes:
        seconds: Duration (``None``: the container does not say).
        sample_rate: Rate in Hz.
        channels: Channel count.
    """

    seconds: float | None
    sample_rate: int
    channels: int


def audio_info(path: str | Path) -> AudioInfo:
    """The duration, rate and channels ``path`` declares, read without decoding (so that a
    server can refuse a small file that would decode to gigabytes).

    Raises:
        AudioError: Neither libsndfile nor PyAV reads the file, or it holds no audio stream.
    """
    try:
        info = sf.info(str(path))
        return AudioInfo(info.frames / info.samplerate, info.samplerate, info.channels)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    import av

    try:
        with av.open(str(path), container_options=AV_OPTIONS) as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: the file holds no audio stream")
            stream = container.streams.audio[0]
            seconds = (float(stream.duration * stream.time_base) if stream.duration is not None
                       and stream.time_base is not None else
                       container.duration / av.time_base if container.duration else None)
            return AudioInfo(seconds, stream.codec_context.sample_rate,
                             stream.codec_context.channels)
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from None


def _decode_with_av(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any container FFmpeg reads, ``(samples, channels)``.

    The decoder drops the encoder's priming (skip samples, edit lists, Opus pre-skip); the end
    padding of the last frame is cut to the duration the container declares.
    """
    import av

    try:
        container = av.open(str(path), container_options=AV_OPTIONS)
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from None
    with container:
        if not container.streams.audio:
            raise AudioError(f"{path}: cannot decode audio (the file holds no audio stream)")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout,
                                      rate=rate)
        chunks = []
        try:
            for frame in container.decode(stream):
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
        except av.FFmpegError as error:
            raise AudioError(f"{path}: cannot decode audio ({error})") from None
        if not chunks or not rate:
            raise AudioError(f"{path}: cannot decode audio (no audio frames)")
        data = np.concatenate(chunks, axis=1)
        if stream.duration is not None and stream.time_base is not None:
            declared = round(stream.duration * stream.time_base * rate)
            data = data[:, :declared] if 0 < declared < data.shape[1] else data
    return np.ascontiguousarray(data.T, dtype=np.float32), rate


def load_audio(path: str | Path, sample_rate: int | None = None, mono: bool = False,
               max_channels: int = 8) -> tuple[Tensor, int]:
    """Read an audio file as float32 ``(channels, samples)``.

    Args:
        path: Any file libsndfile (wav, flac, ogg, mp3) or FFmpeg's libraries (m4a/aac, opus
            in webm/mp4, wma, the audio of video files) decode.
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
        check_complete(path)
    except OSError as error:
        raise AudioError(f"{path}: cannot read ({error.strerror or error})") from None
    try:  # libsndfile first, else PyAV
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        data, rate = _decode_with_av(path)
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


def require_signal(wave: Tensor, path: str | Path) -> Tensor:
    """``wave`` itself, unless every sample is zero: nothing to restore (or to degrade).

    Raises:
        AudioError: The signal is silent.
    """
    if not bool((wave != 0).any()):
        raise AudioError(f"{path}: every sample is zero (the recording is silent); nothing to "
                         "restore")
    return wave


def check_complete(path: Path) -> None:
    """Refuse a WAV file whose data chunk is cut short (libsndfile reads the rest silently).

    Raises:
        AudioError: The file's data chunk claims more bytes than the file holds.
    """
    with open(path, "rb") as file:
        header = file.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        size = path.stat().st_size
        while True:
            chunk = file.read(8)
            if len(chunk) < 8:
                return
            name, length = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"data":
                if length != 0xFFFFFFFF and file.tell() + length > size:
                    raise AudioError(f"{path}: truncated WAV file (its data chunk claims "
                                     f"{length} bytes, {size - file.tell()} are present)")
                return
            file.seek(length + (length & 1), 1)


def pcm_bits(path: str | Path) -> int | None:
    """The integer PCM depth of a wav/flac/aiff file (16 or 24), else ``None`` (float or lossy)."""
    try:
        subtype = sf.info(str(path)).subtype
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    return {"PCM_16": 16, "PCM_24": 24}.get(subtype)


def _encode_with_av(path: str, data: np.ndarray, rate: int, suffix: str) -> None:
    """Encode ``(channels, samples)`` float32 as mp3 or Ogg Opus with PyAV."""
    import av

    container_format, codec, rates, bit_rate = LOSSY[suffix]
    channels = data.shape[0]
    if channels not in LOSSY_LAYOUTS:
        raise AudioError(f"{path}: diffmusic writes {suffix} in mono or stereo, not "
                         f"{channels} channels (write .wav or .flac)")
    target = min((r for r in rates if r >= rate), default=max(rates))
    if target != rate:
        data = resample(torch.from_numpy(data), rate, target).numpy()
    layout = LOSSY_LAYOUTS[channels]
    with av.open(path, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=target, layout=layout)
        stream.bit_rate = bit_rate * channels // 2
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data, dtype=np.float32),
                                           format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = target, 0, Fraction(1, target)
        try:
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                container.mux(packet)
        except av.FFmpegError as error:  # a full disk, an I/O error
            raise OSError(f"cannot encode audio: {error}") from None


def save_audio(path: str | Path, wave: Tensor, sample_rate: int, bits: int | None = None) -> Path:
    """Write ``(channels, samples)`` or ``(samples,)`` audio atomically and durably.

    The format follows the suffix: ``.wav`` (32-bit float, or ``bits``-bit PCM), ``.flac``
    (24-bit, or ``bits``), ``.mp3`` (LAME, 320 kb/s), ``.ogg`` (Vorbis, through libsndfile's
    libvorbis: FFmpeg's own Vorbis encoder is experimental) and ``.opus`` (Ogg Opus at 48 kHz).
    Formats that cannot hold samples beyond full scale (integer PCM, lossy) get them clamped,
    never wrapped. The file is written to a temporary name, flushed to disk, renamed into place
    and given the permissions the umask allows.

    Raises:
        AudioError: An unsupported suffix, bit depth or channel count.
        OSError: The file cannot be written (nothing is left behind).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise AudioError(f"{path}: output must be one of {', '.join(WRITE_SUFFIXES)}")
    if bits is not None and bits not in BITS:
        raise AudioError(f"{path}: bit depth must be one of {BITS}, got {bits}")
    data = wave.detach().cpu().float().reshape(-1, wave.shape[-1]).numpy()
    if bits is not None or suffix != ".wav":
        data = np.clip(data, -1.0, 1.0)
    with atomic_path(path) as tmp:
        if suffix in LOSSY:
            _encode_with_av(str(tmp), data, sample_rate, suffix)
        else:
            subtype = {".wav": "FLOAT", ".flac": "PCM_24", ".ogg": "VORBIS"}[suffix]
            subtype = f"PCM_{bits}" if bits is not None and suffix != ".ogg" else subtype
            try:
                sf.write(tmp, data.T, sample_rate, subtype=subtype,
                         format={".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}[suffix])
            except sf.LibsndfileError as error:  # a full disk, an I/O error
                needed = data.size * data.itemsize
                reason = ("no space left on device"
                          if shutil.disk_usage(tmp.parent).free < needed else error.error_string)
                raise OSError(f"cannot write audio: {reason}") from None
    return path


@dataclass(frozen=True)
class FullScale:
    """What :func:`fit_full_scale` did, for the output record.

    Attributes:
        mode: ``rescale``, ``clamp`` or ``none``.
        peak: Peak of the restoration before, linear.
        gain_db: Gain applied by ``rescale`` (0 when nothing passed full scale).
        clamped_samples: Samples beyond full scale that were (or, for an integer or lossy
            format, will be) clamped.
    """

    mode: str
    peak: float
    gain_db: float
    clamped_samples: int


def fit_full_scale(waves: list[Tensor], mode: str = "rescale") -> tuple[list[Tensor], FullScale]:
    """Keep restorations inside full scale, as demucs does (one gain for all of ``waves``, so
    that separated stems still add up to the mixture).

    Args:
        waves: The output signals (any shapes).
        mode: ``rescale`` scales everything to a peak of :data:`RESCALE_PEAK` when a sample
            would pass 1; ``clamp`` clips to [-1, 1]; ``none`` leaves the samples as they are
            (a float wav keeps them; integer and lossy formats still clamp).

    Raises:
        ValueError: An unknown mode.
    """
    if mode not in CLIP_MODES:
        raise ValueError(f"clip mode must be one of {', '.join(CLIP_MODES)}, got {mode!r}")
    peak = max(float(w.abs().max()) for w in waves)
    gain_db = 0.0
    if mode == "rescale" and peak > 1:
        gain = RESCALE_PEAK / peak
        waves, gain_db = [w * gain for w in waves], 20 * math.log10(gain)
    clamped = sum(int((w.abs() > 1).sum()) for w in waves)
    if mode == "clamp":
        waves = [w.clamp(-1, 1) for w in waves]
    return waves, FullScale(mode, peak, gain_db, clamped)
