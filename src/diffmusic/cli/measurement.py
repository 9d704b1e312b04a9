"""Measurement folders (written by ``degrade``, read by ``restore``) and measurement files."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffmusic.audio import load_audio, require_signal, save_audio
from diffmusic.cli.build import padded_length
from diffmusic.cli.errors import CliError
from diffmusic.cli.options import STFT_HOP
from diffmusic.files import write_together
from diffmusic.longform import fit_length
from diffmusic.operators import OPERATORS, Operator, from_spec
from diffmusic.recording import measurement_shape
from diffmusic.report import write_json, write_npy

MEASUREMENT_JSON = "measurement.json"
NPY_MAGIC = b"\x93NUMPY"
"""The first bytes of every ``.npy`` file."""
FORMAT = "diffmusic-measurement"
VERSION = 1


@dataclass
class Measurement:
    """A measurement ready for restoration.

    Attributes:
        operator: The operator, built for a whole number of latent frames.
        y: The measurement, batch of one, zero-padded to the operator's measurement shape.
        length: Samples of the clip at ``operator.sample_rate`` (any number: clips longer than
            the prior's window are restored window by window); outputs are cropped to it.
        origin: The file or folder it came from (named in messages and records).
        inputs: Every file it was read from or refers to (never overwritten).
    """

    operator: Operator
    y: Tensor
    length: int
    origin: Path
    inputs: list[Path] = field(default_factory=list)


def pad_measurement(operator: Operator, y: Tensor, origin: Path) -> Tensor:
    """Zero-pad ``y`` (batch of one) to the shape of ``operator``'s measurements.

    Raises:
        CliError: ``y`` does not have the measurement's shape or is longer than the clip.
    """
    expected = (1, *measurement_shape(operator))
    if y.shape[:-1] != expected[:-1]:
        raise CliError(f"{origin}: a {operator.task} measurement has shape "
                       f"{expected[1:-1]} x length, got {tuple(y.shape[1:])}")
    if y.shape[-1] > expected[-1]:
        raise CliError(f"{origin}: the measurement is longer than the operator's clip of "
                       f"{operator.num_samples} samples")
    return fit_length(y, expected[-1])


def load_magnitude(path: Path) -> Tensor:
    """A magnitude measurement ``(frequency bins, frames)`` from ``.npy``, shape ``(1, F, T)``."""
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    with open(path, "rb") as file:
        magic = file.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        raise CliError(f"{path}: not a .npy array; phase_retrieval restores a magnitude "
                       "spectrogram (frequency bins x frames) saved with numpy.save")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise CliError(f"{path}: not a readable .npy array ({error})") from None
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating) or array.shape[1] < 2:
        raise CliError(f"{path}: expected a float array of shape (frequency bins, frames), got "
                       f"{array.dtype} {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise CliError(f"{path}: magnitudes must be finite and non-negative")
    return torch.from_numpy(array.astype(np.float32))[None]


def load_measurement(path: Path, task: str, measurement_rate: int, sample_rate: int,
                     hop_length: int = STFT_HOP) -> tuple[Tensor, int]:
    """Read a measurement file of ``task`` and infer the clip length it implies.

    Args:
        path: An audio file (resampled to ``measurement_rate``) or, for magnitude
            measurements, a ``.npy`` array ``(n_fft // 2 + 1, frames)``.
        task: The task, which fixes the kind of measurement.
        measurement_rate: Rate of audio measurements in Hz.
        sample_rate: Rate of the clip in Hz.
        hop_length: STFT hop of magnitude measurements in samples.

    Returns:
        The measurement ``(1, ...)`` and the clip length in samples at ``sample_rate``.
    """
    if OPERATORS[task].measurement_kind == "magnitude":
        magnitude = require_signal(load_magnitude(path), path)
        return magnitude, (magnitude.shape[-1] - 1) * hop_length
    wave, _ = load_audio(path, measurement_rate, mono=True)
    return require_signal(wave, path), wave.shape[-1] * sample_rate // measurement_rate


def folder_outputs(folder: Path, operator: Operator) -> dict[str, Path]:
    """Files a measurement folder holds: the measurement, JSON and clean reference(s)."""
    sources = getattr(operator, "sources", None)
    suffix = ".npy" if operator.measurement_kind == "magnitude" else ".wav"
    files = {"json": folder / MEASUREMENT_JSON, "measurement": folder / f"measurement{suffix}"}
    if operator.num_sources == 1:
        files["clean"] = folder / "clean.wav"
    else:
        files |= {f"clean:{name}": folder / "clean" / f"{name}.wav" for name in sources}
    return files


def write_measurement(folder: Path, operator: Operator, clean: Tensor, seed: int,
                      input_path: str) -> Tensor:
    """Degrade ``clean`` and write a measurement folder.

    Writes ``measurement.wav`` (audio measurements, at the measurement rate) or
    ``measurement.npy`` (magnitudes, ``(bins, frames)``), ``clean.wav`` or ``clean/NAME.wav``,
    and ``measurement.json``: format, task, operator spec, rates, clip length, seed, file names
    and the clean input's path.

    Args:
        folder: Output folder (created).
        operator: The operator, built for ``clean`` padded to ``operator.num_samples``.
        clean: Clean clip ``(1, L)`` or sources ``(1, K, L)``.
        seed: Seed of the measurement noise (recorded).
        input_path: Where the clean input came from (recorded).

    Returns:
        The measurement ``y``, batch of one.

    Raises:
        OutputError: A file could not be written (the files already written are removed).
    """
    length = clean.shape[-1]
    files = folder_outputs(folder, operator)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        y = operator.degrade(fit_length(clean, operator.num_samples), generator)
    writes: list[tuple[Path, Callable[[Path], object]]] = []
    if operator.measurement_kind == "magnitude":
        writes.append((files["measurement"], partial(write_npy, array=y[0].numpy())))
    else:
        writes.append((files["measurement"], partial(save_audio, wave=y[0:1],
                                                     sample_rate=operator.measurement_rate)))
    if operator.num_sources == 1:
        writes.append((files["clean"], partial(save_audio, wave=clean[0],
                                               sample_rate=operator.sample_rate)))
        clean_names: str | dict[str, str] = "clean.wav"
    else:
        clean_names = {}
        for k, name in enumerate(operator.sources):
            writes.append((files[f"clean:{name}"], partial(save_audio, wave=clean[0, k:k + 1],
                                                           sample_rate=operator.sample_rate)))
            clean_names[name] = f"clean/{name}.wav"
    writes.append((files["json"], partial(write_json, data={
        "format": FORMAT, "version": VERSION, "task": operator.task,
        "sample_rate": operator.sample_rate, "length": length,
        "seconds": length / operator.sample_rate, "seed": seed,
        "measurement": files["measurement"].name, "measurement_kind": operator.measurement_kind,
        "measurement_rate": operator.measurement_rate, "clean": clean_names,
        "input": input_path, "operator": operator.spec()})))
    write_together(writes)
    return y


def read_measurement(folder: Path) -> Measurement:
    """Read a folder written by :func:`write_measurement` (or by hand in the same format).

    Raises:
        CliError: A missing or malformed ``measurement.json`` or measurement file.
    """
    json_path = folder / MEASUREMENT_JSON
    if not json_path.is_file():
        raise CliError(f"{folder}: no {MEASUREMENT_JSON} (make one with diffmusic degrade, or "
                       "restore a file with --task)")
    try:
        info = json.loads(json_path.read_text(encoding="utf-8"))
        spec = dict(info["operator"])
        length = int(info["length"])
        name = str(info["measurement"])
    except (ValueError, KeyError, TypeError) as error:
        raise CliError(f"{json_path}: not a valid measurement description ({error!r})") from None
    try:
        operator = from_spec({**spec, "num_samples": padded_length(int(spec["num_samples"]))})
    except (ValueError, KeyError, TypeError) as error:
        raise CliError(f"{json_path}: bad operator spec ({error})") from None
    if not 0 < length <= operator.num_samples:
        raise CliError(f"{json_path}: length {length} does not fit the operator's "
                       f"{operator.num_samples} samples")
    path = folder / name
    y, _ = load_measurement(path, operator.task, operator.measurement_rate, operator.sample_rate)
    clean = info.get("clean")
    clean_files = [clean] if isinstance(clean, str) else list((clean or {}).values())
    inputs = [json_path, path, *(folder / c for c in clean_files)]
    return Measurement(operator, pad_measurement(operator, y, path), length, folder, inputs)
