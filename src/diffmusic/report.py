"""Report helpers: atomic file output, spectrogram PNGs and a static HTML results page."""

from __future__ import annotations

import html
import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from torch import Tensor

from diffmusic.dsp import stft
from diffmusic.files import atomic_path


@contextmanager
def atomic_output(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path``, published as ``path`` when the block succeeds
    (:func:`diffmusic.files.atomic_path`): readers never see a half-written file.

    Args:
        path: Final file path (its folder is created).
        mode: ``"w"`` (text, UTF-8) or ``"wb"``.
    """
    with atomic_path(path) as tmp, open(tmp, mode, **({} if "b" in mode else
                                                      {"encoding": "utf-8"})) as handle:
        yield handle


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_output(path) as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Write one array in ``.npy`` format, atomically."""
    with atomic_output(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def log_spectrogram_db(wave: Tensor, n_fft: int = 1024, hop: int = 160,
                       floor_db: float = -100.0) -> np.ndarray:
    """``20 log10 |STFT|`` in dB (centred Hann STFT), floored, shape ``(n_fft // 2 + 1, frames)``.

    Args:
        wave: Mono waveform, shape ``(N,)`` or ``(1, N)``.
        n_fft: FFT and window size in samples.
        hop: Hop in samples.
        floor_db: Lowest value kept, in dB.
    """
    mag = stft(wave.detach().float().cpu().reshape(-1), n_fft, hop).abs().numpy()
    return np.maximum(20 * np.log10(mag + 1e-10), floor_db)


def spectrogram_png(path: str | Path, panels: Sequence[tuple[str, Tensor]],
                    sample_rate: int, dynamic_range_db: float = 80.0) -> None:
    """Side-by-side log-|STFT| spectrograms (dB) with labelled time and frequency axes.

    All panels share one colour scale: the loudest bin of any panel down to
    ``dynamic_range_db`` below it. Written atomically with matplotlib's Agg backend.

    Args:
        path: Output PNG path.
        panels: ``(title, mono waveform)`` pairs, each waveform ``(N,)`` or ``(1, N)``.
        sample_rate: Sample rate of every waveform in Hz.
        dynamic_range_db: Range of the colour scale in dB.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    specs = [log_spectrogram_db(wave) for _, wave in panels]
    top = max(float(s.max()) for s in specs)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False,
                             sharey=True, constrained_layout=True)
    image = None
    for ax, (title, wave), spec in zip(axes[0], panels, specs, strict=True):
        seconds = wave.shape[-1] / sample_rate
        image = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma",
                          extent=(0, seconds, 0, sample_rate / 2000),
                          vmin=top - dynamic_range_db, vmax=top)
        ax.set_title(title)
        ax.set_xlabel("time (s)")
    axes[0][0].set_ylabel("frequency (kHz)")
    fig.colorbar(image, ax=axes[0].tolist(), label="level (dB)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    with atomic_output(path, "wb") as handle:
        handle.write(buffer.getvalue())


@dataclass
class Section:
    """One block of the results page.

    Attributes:
        title: Heading.
        text: A short explanatory paragraph (plain text).
        audio: ``(label, relative path)`` pairs shown as audio players.
        images: Relative paths of images.
        metrics: Rows of a table: ``{column: value}``; floats are shown with 3 decimals.
    """

    title: str
    text: str = ""
    audio: list[tuple[str, str]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    metrics: list[dict[str, object]] = field(default_factory=list)


def _cell(value: object) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return f"<td>{html.escape(text)}</td>"


def _table(rows: list[dict[str, object]]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _section_html(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    if section.text:
        parts.append(f"<p>{html.escape(section.text)}</p>")
    if section.audio:
        players = "".join(
            f'<figure><figcaption>{html.escape(label)}</figcaption>'
            f'<audio controls preload="none" src="{html.escape(src)}"></audio></figure>'
            for label, src in section.audio)
        parts.append(f'<div class="players">{players}</div>')
    parts.extend(f'<img src="{html.escape(src)}" alt="spectrograms">' for src in section.images)
    parts.append(_table(section.metrics))
    return "<section>" + "".join(parts) + "</section>"


STYLE = """body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}
.players{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}img{max-width:100%}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em}"""


def write_html(path: str | Path, title: str, intro: str, sections: Sequence[Section]) -> None:
    """Write a self-contained static page (relative links to audio and images), atomically.

    Args:
        path: Output HTML path.
        title: Page title and top heading.
        intro: A paragraph under the heading (plain text).
        sections: The blocks of the page.
    """
    body = "".join(_section_html(s) for s in sections)
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>{body}</body></html>\n")
    with atomic_output(path) as handle:
        handle.write(page)

