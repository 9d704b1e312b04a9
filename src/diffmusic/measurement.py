"""Measurement folders (written by ``diffmusic degrade``, read by ``diffmusic restore``) and
measurement files.

Every function raises ``ValueError`` with a message that names the file for what a user can fix
(a malformed folder, a measurement of the wrong shape), and ``OutputError`` for a failed write.
"""

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
from diffmusic.dsp import fit_length
from diffmusic.files import write_together
from diffmusic.operators import Operator, from_spec
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


def load_magnitude(path: Path) -> Tensor:
    """A magnitude measurement ``(frequency bins, frames)`` from ``.npy``, shape ``(1, F, T)``."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with open(path, "rb") as file:
        magic = file.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        raise ValueError(f"{path}: not a .npy array; phase_retrieval restores a magnitude "
                       "spectrogram (frequency bins x frames) saved with numpy.save")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npy array ({error})") from None
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating) or array.shape[1] < 2:
        raise ValueError(f"{path}: expected a float array of shape (frequency bins, frames), got "
                       f"{array.dtype} {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{path}: magnitudes must be finite and non-negative")
    return torch.from_numpy(array.astype(np.float32))[None]


def folder_outputs(folder: Path, operator: Operator) -> dict[str, Path]:
    """Files a measurement folder holds: the measurement, JSON and clean reference(s)."""
    sources = operator.sources or []
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
    if operator.measurement_kind == "magnitude":
        write_y = partial(write_npy, array=y[0].numpy())
    else:
        write_y = partial(save_audio, wave=y[0:1], sample_rate=operator.measurement_rate)
    writes: list[tuple[Path, Callable[[Path], object]]] = [(files["measurement"], write_y)]
    clean_names: str | dict[str, str] = "clean.wav"
    if operator.num_sources == 1:
        cleans = {"clean": clean[0]}
    else:
        cleans = {f"clean:{name}": clean[0, k:k + 1] for k, name in enumerate(operator.sources)}
        clean_names = {name: f"clean/{name}.wav" for name in operator.sources}
    writes += [(files[key], partial(save_audio, wave=wave, sample_rate=operator.sample_rate))
               for key, wave in cleans.items()]
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
        ValueError: A missing or malformed ``measurement.json`` or measurement file (one that
            does not have the operator's measurement shape, or is longer than its clip).
    """
    json_path = folder / MEASUREMENT_JSON
    if not json_path.is_file():
        raise ValueError(f"{folder}: no {MEASUREMENT_JSON} (make one with diffmusic degrade, or "
                       "restore a file with --task)")
    try:
        info = json.loads(json_path.read_text(encoding="utf-8"))
        spec = dict(info["operator"])
        length = int(info["length"])
        name = str(info["measurement"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{json_path}: not a valid measurement description ({error!r})") from None
    try:
        operator = from_spec(spec)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{json_path}: bad operator spec ({error})") from None
    if not 0 < length <= operator.num_samples:
        raise ValueError(f"{json_path}: length {length} does not fit the operator's "
                       f"{operator.num_samples} samples")
    path = folder / name
    if operator.measurement_kind == "magnitude":  # (1, n_fft // 2 + 1, frames)
        y = load_magnitude(path)
    else:
        y = load_audio(path, operator.measurement_rate, mono=True)[0]
    require_signal(y, path)
    expected = (1, *operator.measurement_shape())
    if y.shape[:-1] != expected[:-1]:
        raise ValueError(f"{path}: a {operator.task} measurement has shape "
                         f"{expected[1:-1]} x length, got {tuple(y.shape[1:])}")
    if y.shape[-1] > expected[-1]:
        raise ValueError(f"{path}: the measurement is longer than the operator's clip of "
                         f"{operator.num_samples} samples")
    y = fit_length(y, expected[-1])  # zero-padded to the operator's shape
    clean = info.get("clean")
    clean_files = [clean] if isinstance(clean, str) else list((clean or {}).values())
    inputs = [json_path, path, *(folder / c for c in clean_files)]
    return Measurement(operator, y, length, folder, inputs)
