"""The layers do not leak: read from the source (DESIGN.md section 2)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "diffmusic"
OPERATOR_CLASSES = {"Inpainting", "SuperResolution", "PhaseRetrieval", "SourceSeparation",
                    "Dereverberation"}


def modules(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        yield from sorted(folder.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports (``from A import b`` gives ``A`` and ``A.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def outside(*folders: str, benchmarks: bool = True) -> list[Path]:
    """The library's modules outside ``diffmusic/FOLDER``s (and the benchmark scripts)."""
    roots = (PACKAGE, ROOT / "benchmarks") if benchmarks else (PACKAGE,)
    return [p for p in modules(*roots) if not any(PACKAGE / f in p.parents for f in folders)]


@pytest.mark.parametrize("path", outside("cli", "studio"), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_but_the_shells_imports_the_cli_or_the_studio(path: Path) -> None:
    """The library under the shells never imports them; the studio, a shell over the ``restore``
    command (its parser, checks and defaults), may import the CLI, and the CLI starts it."""
    assert not {n for n in imported(path) if n.startswith(("diffmusic.cli", "diffmusic.studio"))}


@pytest.mark.parametrize("path", outside("priors", "train", benchmarks=False),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_priors_and_training_touch_diffusers_and_transformers(path: Path) -> None:
    assert not {n for n in imported(path) if n.split(".")[0] in ("diffusers", "transformers")}


@pytest.mark.parametrize("path", outside("operators"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_isinstance_on_an_operator_class_outside_the_operators(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            assert not names & OPERATOR_CLASSES, f"{path.name}:{node.lineno}"


def test_the_checks_see_a_leak() -> None:
    source = PACKAGE / "cli" / "restore.py"
    assert any(n.startswith("diffmusic.cli") for n in imported(source))
