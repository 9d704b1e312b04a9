"""Progress bars on stderr for the sampling loop."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

from diffmusic.samplers import Callback


@contextmanager
def step_progress(description: str, steps: int, quiet: bool = False) -> Iterator[Callback]:
    """A sampler callback that advances a tqdm bar and shows the measurement loss.

    The bar writes to stderr and is hidden with ``quiet`` or when stderr is not a terminal.

    Args:
        description: Label in front of the bar.
        steps: Number of sampling steps.
        quiet: Never show the bar.
    """
    bar = tqdm(total=steps, desc=description, unit="step", file=sys.stderr, leave=False,
               disable=True if quiet else None)

    def callback(info: dict) -> None:
        if info.get("loss") is not None:
            bar.set_postfix(loss=f"{info['loss']:.4g}", refresh=False)
        bar.update(1)

    try:
        yield callback
    finally:
        bar.close()
