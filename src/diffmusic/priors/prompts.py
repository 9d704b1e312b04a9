"""Prompts from the command line: one text for all sources, ``SOURCE=TEXT`` pairs, or a JSON file.

The result feeds :func:`diffmusic.restoration.restore`'s ``prompts`` argument: ``None`` (the paper's
default: empty prompt, or each stem's own label for separation), one string for every source, or
one entry per source in the operator's order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

KEY = re.compile(r"([A-Za-z_][\w-]*)=(.*)", re.DOTALL)


def _from_json(path: Path) -> str | list | dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read prompts ({exc})") from None
    if isinstance(data, str | list | dict):
        return data
    raise ValueError(f"{path}: prompts must be a string, a list or a {{source: text}} object")


def _by_source(pairs: dict[str, str | None], sources: Sequence[str]) -> list[str | None]:
    unknown = sorted(set(pairs) - set(sources))
    if unknown:
        raise ValueError(f"prompt for unknown source {', '.join(unknown)}; the sources are "
                         f"{', '.join(sources)}")
    return [pairs.get(name, name) for name in sources]


def parse_prompts(values: str | Sequence[str] | None,
                  sources: Sequence[str] | None = None) -> str | list[str | None] | None:
    """Turn ``--prompt`` values into ``restore``'s ``prompts``.

    Args:
        values: ``None``/empty (no prompt); one text for every source; ``SOURCE=TEXT`` items
            (separation: ``vocals="a singer"``; sources without one keep their own label); or a
            single path to a JSON file holding a string, a list (one per source) or an object
            ``{"vocals": "a singer", ...}``.
        sources: The operator's source names (multi-source tasks) or ``None``.

    Returns:
        ``None``, a string, or one prompt per source in ``sources`` order.

    Raises:
        ValueError: ``SOURCE=TEXT`` naming no source, several plain texts, a list of the wrong
            length, an unreadable JSON file.
    """
    if values is None or isinstance(values, str):
        values = [] if values is None else [values]
    values = list(values)
    if not values:
        return None
    if len(values) == 1 and values[0].endswith(".json") and Path(values[0]).is_file():
        data = _from_json(Path(values[0]))
        if isinstance(data, dict):
            if not sources:
                raise ValueError(f"{values[0]}: per-source prompts need a multi-source task")
            return _by_source({str(k): v for k, v in data.items()}, sources)
        if isinstance(data, list) and len(data) != len(sources or [None]):
            raise ValueError(f"{values[0]}: {len(data)} prompts for {len(sources or [None])} "
                             "sources")
        return data if isinstance(data, str) or sources else data[0]
    pairs = [KEY.fullmatch(v) for v in values] if sources else [None] * len(values)
    if all(pairs):
        return _by_source({m.group(1): m.group(2) for m in pairs}, sources)
    if len(values) > 1:
        raise ValueError("give one --prompt TEXT for all sources or SOURCE=TEXT for each source")
    return values[0]
