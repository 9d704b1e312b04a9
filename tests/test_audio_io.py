"""Audio files: decoding without a system ffmpeg, every output format, full scale, atomic and
durable writes."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from signals import music_like

from diffmusic.audio import (
    RESCALE_PEAK,
    AudioError,
    audio_info,
    fit_full_scale,
    load_audio,
    pcm_bits,
    save_audio,
)
from diffmusic.files import OutputError, write_together

RATE = 44100
N = 2 * RATE + 337  # not a whole number of codec frames: the last frame is padded


def stereo(n: int = N, rate: int = RATE) -> np.ndarray:
    return torch.stack([music_like(1, n, rate), music_like(2, n, rate)]).numpy()


def encode(path: Path, data: np.ndarray, rate: int, container: str, codec: str,
           **options: str) -> Path:
    """Encode as a real encoder would: the priming is signalled (pts from 0, edit list)."""
    with av.open(str(path), "w", format=container, options=options) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data, np.float32),
                                           format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def aligned_error(decoded: np.ndarray, source: np.ndarray) -> float:
    """RMS error relative to the source's RMS."""
    return float(np.sqrt(((decoded - source) ** 2).mean() / (source**2).mean()))


@pytest.mark.usefixtures("no_ffmpeg")
def test_m4a_aac_and_webm_opus_decode_to_the_source_length_without_ffmpeg(
        tmp_path: Path) -> None:
    source = stereo()
    m4a = encode(tmp_path / "song.m4a", source, RATE, "mp4", "aac",
                 movie_timescale=str(RATE))
    wave, rate = load_audio(m4a)
    assert rate == RATE and wave.shape == (2, N)  # priming dropped, end padding cut
    info = audio_info(m4a)  # from the header, as the studio reads it before decoding
    assert (info.sample_rate, info.channels) == (RATE, 2)
    assert info.seconds == pytest.approx(N / RATE, abs=0.05)
    assert aligned_error(wave.numpy(), source) < 0.1
    opus_rate, n48 = 48000, round(N * 48000 / RATE)
    source48 = stereo(n48, opus_rate)
    webm = encode(tmp_path / "song.webm", source48, opus_rate, "webm", "libopus")
    wave, rate = load_audio(webm)
    assert rate == opus_rate and wave.shape == (2, n48)
    error = aligned_error(wave.numpy(), source48)  # a perceptual codec: not a close waveform
    pre_skip = aligned_error(wave.numpy()[:, 312:], source48[:, :-312])
    assert error < 0.3 and pre_skip > 2 * error
    mono, _ = load_audio(webm, 16000, mono=True)
    assert mono.shape == (1, round(n48 / 3))


@pytest.mark.usefixtures("no_ffmpeg")
def test_a_file_no_decoder_reads_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "song.m4a"
    bad.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(range(200)))
    with pytest.raises(AudioError, match="song.m4a: cannot decode audio"):
        load_audio(bad)


@pytest.mark.parametrize("playlist", ["#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n{}\n",
                                      "ffconcat version 1.0\nfile '{}'\n"])
def test_a_playlist_naming_another_file_is_not_followed(playlist: str, tmp_path: Path) -> None:
    """FFmpeg's HLS and concat demuxers would read the files a playlist names: a client of the
    studio could read any local media through an upload."""
    private = encode(tmp_path / "private.ts", stereo(RATE // 2), RATE, "mpegts", "mp2")
    assert load_audio(private)[0].shape[-1] > 0  # the target itself is readable
    for suffix in (".m3u8", ".txt", ".wav"):
        path = tmp_path / f"list{suffix}"
        path.write_text(playlist.format(private))
        with pytest.raises(AudioError, match="cannot decode audio"):
            load_audio(path)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg", ".opus"])
def test_every_output_format_round_trips_at_the_right_length(suffix: str,
                                                             tmp_path: Path) -> None:
    source = stereo()
    path = save_audio(tmp_path / f"out{suffix}", torch.from_numpy(source), RATE)
    wave, rate = load_audio(path)
    expected_rate = 48000 if suffix == ".opus" else RATE
    assert rate == expected_rate
    assert abs(wave.shape[-1] - N * expected_rate / RATE) <= 1
    if rate == RATE:
        tolerance = 1e-6 if suffix == ".wav" else 0.1
        assert aligned_error(wave.numpy(), source) < tolerance


@pytest.mark.parametrize(("suffix", "bits"), [(".wav", 16), (".wav", 24), (".flac", 16),
                                              (".flac", None)])
def test_integer_outputs_clamp_and_never_wrap(suffix: str, bits: int | None,
                                              tmp_path: Path) -> None:
    wave = torch.tensor([[0.5, 1.7, -1.9, 1.0, -1.0, 0.0] * 100])
    path = save_audio(tmp_path / f"out{suffix}", wave, 16000, bits=bits)
    assert pcm_bits(path) == (bits or 24)
    read, _ = sf.read(path, dtype="float32")
    assert read[1] > 0.999 and read[2] == -1.0 and read[3] > 0.999 and read[0] == 0.5


def test_float_wav_keeps_samples_beyond_full_scale(tmp_path: Path) -> None:
    wave = torch.tensor([[0.5, 1.7, -1.9]])
    read, _ = sf.read(save_audio(tmp_path / "out.wav", wave, 16000), dtype="float32")
    np.testing.assert_array_equal(read, wave[0].numpy())
    assert pcm_bits(tmp_path / "out.wav") is None


def test_full_scale_modes() -> None:
    loud = [torch.tensor([0.5, -2.0]), torch.tensor([1.5, 0.1])]
    (a, b), info = fit_full_scale(loud, "rescale")
    assert float(a.abs().max()) == pytest.approx(RESCALE_PEAK)  # one gain for every output
    torch.testing.assert_close(b, loud[1] * RESCALE_PEAK / 2.0)
    assert info.peak == 2.0 and info.gain_db == pytest.approx(20 * np.log10(0.99 / 2))
    (a, _), info = fit_full_scale(loud, "clamp")
    assert a.tolist() == [0.5, -1.0] and info.clamped_samples == 2
    (a, _), info = fit_full_scale(loud, "none")
    assert a is loud[0] and info.clamped_samples == 2
    quiet = [torch.tensor([0.5, -0.25])]
    (a,), info = fit_full_scale(quiet, "rescale")
    assert a is quiet[0] and info.gain_db == 0
    with pytest.raises(ValueError, match="clip mode"):
        fit_full_scale(quiet, "fold")


def test_unknown_suffix_and_five_channel_mp3_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="output must be one of"):
        save_audio(tmp_path / "out.aac", torch.zeros(1, 100), 16000)
    with pytest.raises(AudioError, match="mono or stereo"):
        save_audio(tmp_path / "out.mp3", torch.zeros(5, 100), 16000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_umask_permissions(umask: int, tmp_path: Path) -> None:
    previous = os.umask(umask)
    try:
        path = save_audio(tmp_path / "out.wav", torch.zeros(1, 10), 16000)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_killed_write_leaves_a_temporary_file_that_the_next_write_removes(
        tmp_path: Path) -> None:
    stale = tmp_path / ".out.wav.k1ll3d.part"  # what SIGKILL during a write leaves
    stale.write_bytes(b"half a file")
    other = tmp_path / ".other.wav.k1ll3d.part"
    other.write_bytes(b"another output's")
    save_audio(tmp_path / "out.wav", torch.zeros(1, 10), 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.wav.k1ll3d.part", "out.wav"]


def test_write_together_removes_what_it_wrote_when_a_later_file_fails(tmp_path: Path) -> None:
    def fail(path: Path) -> None:
        raise OSError(28, "No space left on device")

    first = tmp_path / "a.wav"
    with pytest.raises(OutputError, match=r"cannot write .*b\.json: No space left on device"):
        write_together([(first, lambda p: save_audio(p, torch.zeros(1, 10), 16000)),
                        (tmp_path / "b.json", fail)])
    assert list(tmp_path.iterdir()) == []
