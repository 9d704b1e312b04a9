"""The command line answers ``--help``, ``--version`` and usage errors without importing torch,
and the names it offers are those the library implements."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diffmusic import names
from diffmusic.operators import OPERATORS, STEMS, SuperResolution
from diffmusic.samplers import SAMPLERS

HEAVY = ("torch", "diffusers", "transformers", "av", "soundfile", "scipy")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["restore", "--help"],
                                  ["degrade", "--help"], ["restore", "x.wav", "-o", "y.wav",
                                                          "--steps", "1"],
                                  ["restore", "x.wav", "-o", "y.wav", "--sampler", "nope"]])
def test_help_version_and_usage_errors_import_no_model_code(argv: list[str]) -> None:
    code = ("import sys\nfrom diffmusic.cli import main\nstatus = main(sys.argv[1:])\n"
            f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not loaded, loaded\nsys.exit(status)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert result.returncode in (0, 2), result.stderr
    assert "AssertionError" not in result.stderr
    if result.returncode == 2:
        assert result.stderr.count("\n") == 1 and "diffmusic: error:" in result.stderr


def test_the_parsers_names_are_the_library_s() -> None:
    assert tuple(OPERATORS) == names.TASKS
    assert tuple(SAMPLERS) == names.SAMPLER_NAMES
    assert names.STEMS == STEMS and SuperResolution.factors == names.SUPER_RESOLUTION_FACTORS
