"""Short operators of every task for end-to-end tests (1.28 s at 16 kHz)."""

from __future__ import annotations

from collections.abc import Callable

from diffmusic.operators import (
    Dereverberation,
    Inpainting,
    Operator,
    PhaseRetrieval,
    SourceSeparation,
    SuperResolution,
)

RATE, N = 16000, 20480
SOURCES = ["vocals", "drums"]


def short_operators(iterations: int = 20) -> dict[str, Callable[[], Operator]]:
    """A maker of a short operator per task (``iterations`` of Griffin-Lim for phase retrieval;
    two weighted sources for separation)."""
    return {
        "inpainting": lambda: Inpainting(RATE, N, [(0.5, 0.7)]),
        "super_resolution": lambda: SuperResolution(RATE, N, 2),
        "phase_retrieval": lambda: PhaseRetrieval(RATE, N, iterations=iterations),
        "source_separation": lambda: SourceSeparation(RATE, N, SOURCES, [1.0, 0.7]),
        "dereverberation": lambda: Dereverberation(RATE, N, rir_length=0.3),
    }
