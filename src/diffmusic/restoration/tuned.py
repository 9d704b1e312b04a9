"""Tuned sampler defaults: the step sizes ``diffmusic bench --tune`` chose on a validation split.

A tuned file is JSON written by :func:`diffmusic.bench.tune.tune`::

    {"prior": "embedded", "split": "data/music/valid", "metric": "lsd", "steps": 25,
     "per_task": {"inpainting": {"diffmusic": {"gamma": 30000.0}, ...}, ...},
     "default_sampler": {"inpainting": "diffmusic", ...}, "scores": {...}}

:meth:`diffmusic.restoration.Settings.resolve` looks its sampler's keyword arguments up in the
file named by the environment variable ``DIFFMUSIC_TUNED``, else in the file shipped for the
prior (``diffmusic/assets/tuned/PRIOR.json``); settings given explicitly always win.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import diffmusic

TUNED_DIR = Path(diffmusic.__file__).parent / "assets" / "tuned"
"""Tuned files shipped with the package, one per prior: ``PRIOR.json``."""
ENV_VAR = "DIFFMUSIC_TUNED"
"""Environment variable naming a tuned file that replaces the shipped ones."""

TunedSource = str | Path | bool | None
"""Where defaults come from: ``None``/``True`` the default lookup, ``False`` none, or a file."""


@dataclass(frozen=True)
class Tuned:
    """Tuned defaults of one prior.

    Attributes:
        file: Where they were read from (``None``: no tuned defaults).
        prior: The prior they were tuned for.
        split: The data they were tuned on (never the benchmark's own clips).
        per_task: ``{task: {sampler: {keyword: value}}}``.
        default_sampler: ``{task: sampler}``: the sampler that scored best on the split.
    """

    file: str | None = None
    prior: str | None = None
    split: str | None = None
    per_task: dict[str, dict[str, dict]] = field(default_factory=dict)
    default_sampler: dict[str, str] = field(default_factory=dict)

    def sampler(self, task: str) -> str:
        """The sampler chosen for ``task`` (``diffmusic`` where none was chosen)."""
        return self.default_sampler.get(task, "diffmusic")

    def kwargs(self, task: str, sampler: str) -> dict:
        """Sampler keyword arguments for ``task`` (empty when not tuned)."""
        return dict(self.per_task.get(task, {}).get(sampler, {}))

    def describe(self) -> dict | None:
        """JSON-ready provenance for a restoration's record, or ``None``."""
        return None if self.file is None else {"file": self.file, "split": self.split}


def read_tuned(path: str) -> Tuned:
    """Parse a tuned file (cached until the file changes).

    Raises:
        ValueError: The file is not valid JSON or lacks ``per_task``.
        OSError: It cannot be read.
    """
    return _read_tuned(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_tuned(path: str, mtime_ns: int) -> Tuned:
    try:
        data = json.loads(Path(path).read_text())
        per_task = data["per_task"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a tuned-defaults file ({error})") from None
    return Tuned(str(path), data.get("prior"), data.get("split"), per_task,
                 data.get("default_sampler", {}))


def load_tuned(prior: str, source: TunedSource = None) -> Tuned:
    """The tuned defaults that apply to ``prior``.

    Args:
        prior: Prior name (``Prior.name``).
        source: ``None`` or ``True``: ``$DIFFMUSIC_TUNED`` if set, else the shipped file of the
            prior (if any); ``False``: none; a path: that file.

    Raises:
        ValueError: An explicitly named file (argument or environment) was tuned for another
            prior, or is malformed.
    """
    if source is False:
        return Tuned()
    explicit = source if source not in (None, True) else os.environ.get(ENV_VAR) or None
    if explicit is None:
        shipped = TUNED_DIR / f"{prior}.json"
        return read_tuned(str(shipped)) if shipped.is_file() else Tuned()
    tuned = read_tuned(str(explicit))
    if tuned.prior is not None and tuned.prior != prior:
        raise ValueError(f"{explicit}: tuned for the {tuned.prior} prior, not {prior}")
    return tuned


__all__ = ["ENV_VAR", "TUNED_DIR", "Tuned", "TunedSource", "load_tuned", "read_tuned"]
