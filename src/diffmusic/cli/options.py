"""Command-line options shared by the subcommands: their parsers and checks (no model code, so
that ``--help`` and usage errors answer at once; :mod:`diffmusic.cli.build` builds the operator
they describe)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from diffmusic.cli.errors import CliError
from diffmusic.gaps import parse_gap_list
from diffmusic.names import (
    AUTO_CUTOFF,
    AUTO_SAMPLER,
    BLIND_ROOM,
    DEVICES,
    DTYPES,
    LEVEL_DB,
    MASK_TYPES,
    SAMPLER_NAMES,
    SUPER_RESOLUTION_FACTORS,
    TASKS,
)

TASK_OPTIONS = {"gaps": ("--gap", "inpainting"), "mask_type": ("--mask-type", "inpainting"),
                "factor": ("--factor", "super_resolution"), "rt60": ("--rt60", "dereverberation"),
                "rir": ("--rir", "dereverberation"), "sources": ("--sources", "source_separation"),
                "clip_level": ("--clip-level", "declipping"),
                "input_sdr": ("--input-sdr", "declipping"),
                "noise_sample": ("--noise-sample", "denoising"), "snr": ("--snr", "denoising"),
                "noise": ("--noise", "denoising"), "cutoff": ("--cutoff", "super_resolution"),
                "order": ("--order", "super_resolution"),
                "filter": ("--filter", "super_resolution"), "room": ("--room", "dereverberation")}
"""Task-specific options: attribute -> (flag, the task it applies to)."""
if TYPE_CHECKING:
    from diffmusic.restoration import Settings

SETTING_FLAGS = {"sampler": "--sampler", "steps": "--steps", "step": "--step", "gamma": "--gamma",
                 "eta": "--eta", "warm_start": "--warm-start", "guidance_scale": "--cfg",
                 "clip_mode": "--clip-mode"}
"""The flag of each field of :class:`diffmusic.restoration.Settings` (named in errors)."""
SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def gap_type(text: str) -> list[tuple[float, float]]:
    """Parse ``--gap``: ``START-END`` (seconds or ``mm:ss.s``) or ``S:E`` in seconds, several
    separated by commas (see :mod:`diffmusic.gaps`)."""
    try:
        return parse_gap_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _number(text: str, cast: type, what: str = "a number") -> float:
    """``cast(text)``; an argparse error saying ``what`` was expected when that fails."""
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def steps_type(text: str) -> int:
    """Parse a number of sampling steps (at least 2)."""
    steps = _number(text, int, "an integer")
    if steps < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {steps}")
    return steps


MAX_SEED = 2**63 - 1
"""Largest ``--seed`` (torch generators take 64-bit seeds; window ``i`` uses ``seed + i``)."""


def seed_type(text: str) -> int:
    """Parse a seed: an integer in ``[0, 2**63 - 1]``."""
    seed = _number(text, int, "an integer")
    if not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {text}")
    return seed


def cutoff_type(text: str) -> float | str:
    """Parse ``--cutoff``: ``auto`` or a frequency in Hz."""
    if text.lower() == AUTO_CUTOFF:
        return AUTO_CUTOFF
    return positive_float(text)


def noise_sample_type(text: str) -> tuple[float, float]:
    """Parse ``--noise-sample``: one stretch, written as a ``--gap``."""
    stretches = gap_type(text)
    if len(stretches) != 1:
        raise argparse.ArgumentTypeError(f"expected one stretch START-END, got {text!r}")
    return stretches[0]


def rt60_type(text: str) -> float | str:
    """``--rt60``: ``blind`` or a positive number of seconds."""
    return BLIND_ROOM if text.lower() == BLIND_ROOM else positive_float(text)


def positive_float(text: str) -> float:
    """Parse a finite number greater than 0."""
    value = _number(text, float)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def sources_type(text: str) -> list[str]:
    """Parse comma-separated source names (used as file names: letters, digits, ``_``, ``-``)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    bad = [name for name in names if not SOURCE_NAME.match(name)]
    if bad:
        raise argparse.ArgumentTypeError(f"source names may hold only letters, digits, _ and -; "
                                         f"got {bad[0]!r}")
    if len(names) < 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"need at least two distinct source names, got {text!r}")
    return names


def add_operator_options(parser: argparse.ArgumentParser, *, task_required: bool,
                         sources: bool = False) -> None:
    """``--task`` and the options of each task's operator (``--sources`` when ``sources``)."""
    group = parser.add_argument_group("degradation (operator) options")
    group.add_argument("--task", choices=TASKS, required=task_required,
                       help="restoration task" + ("" if task_required else
                                                  " (restoring a file instead of a folder)"))
    group.add_argument("--gap", dest="gaps", metavar="START-END", type=gap_type,
                       action="extend",
                       help="inpainting: gaps as START-END in seconds or mm:ss.s (or S:E in "
                            "seconds), comma-separated, repeatable (default 2:3)")
    group.add_argument("--mask-type", choices=MASK_TYPES,
                       help="inpainting: box (the --gap list), random (30%% in 0.1 s holes) or "
                            "periodic (0.1 s every 1 s); default box")
    band = group.add_mutually_exclusive_group()
    band.add_argument("--factor", type=int, choices=SUPER_RESOLUTION_FACTORS,
                      help="super_resolution: the recording was resampled to 1/FACTOR of the "
                           "prior's rate (degrade's default: 2)")
    band.add_argument("--cutoff", type=cutoff_type, metavar="auto|HZ",
                      help="super_resolution: the recording was low-passed at HZ by a filter "
                           "nobody wrote down; auto reads the cutoff from its spectrum (restore's "
                           "default when --factor is not given)")
    rir = group.add_mutually_exclusive_group()
    rir.add_argument("--rt60", type=rt60_type, metavar="blind|SEC",
                     help="dereverberation: RT60 of the synthetic room response, or blind: the "
                          "room is estimated with the signal (restore's default when --rir is "
                          "not given; degrade's: 0.5)")
    rir.add_argument("--rir", type=Path, metavar="FILE",
                     help="dereverberation: a room impulse response audio file")
    group.add_argument("--clip-level", type=positive_float, metavar="LEVEL",
                       help="declipping: the level the recording was clipped at (full scale 1; "
                            "default: read from the pile-up of its samples)")
    group.add_argument("--noise-sample", type=noise_sample_type, metavar="START-END",
                       help="denoising: a noise-only stretch to read the noise spectrum from "
                            "(default: minimum statistics over the whole recording)")
    if sources:
        group.add_argument("--sources", type=sources_type, metavar="A,B,...",
                           help="source_separation: source names (default "
                                "vocals,drums,bass,other)")


def level_type(text: str) -> float | None:
    """``--level``: a level in dBFS (below 0), or ``off``."""
    if text.lower() == "off":
        return None
    value = _number(text, float, "a level in dBFS or 'off'")
    if not -80 <= value < 0:
        raise argparse.ArgumentTypeError(f"a level must be in [-80, 0) dBFS, got {text}")
    return value


def add_run_options(parser: argparse._ActionsContainer, steps: int, prior_help: str) -> None:
    """``--prior``, ``--steps`` (default ``steps``) and ``--seed``."""
    parser.add_argument("--prior", default=None, metavar="NAME|PATH", help=prior_help)
    parser.add_argument("--steps", type=steps_type, default=steps,
                        help=f"sampling steps, at least 2 (default {steps})")
    parser.add_argument("--seed", type=seed_type, default=0, help="random seed (default 0)")


def add_device_options(parser: argparse._ActionsContainer) -> None:
    """``--device`` and ``--dtype`` of the prior."""
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where the prior runs (default cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="parameter dtype of the prior's networks; guidance math stays "
                             "float32 (default float32)")


def add_sampler_options(parser: argparse.ArgumentParser, *, steps: int) -> None:
    """``--prior``, ``--steps``, ``--seed`` and the sampler settings of ``restore``."""
    group = parser.add_argument_group("sampling options")
    group.add_argument("--sampler", choices=(AUTO_SAMPLER, *SAMPLER_NAMES), default=AUTO_SAMPLER,
                       help="posterior sampler (default auto: the one tuned best for the task "
                            "on the prior's validation split, else diffmusic)")
    add_run_options(group, steps, "diffusion prior name or folder (default: the package default)")
    group.add_argument("--prompt", action="append", metavar="TEXT|SOURCE=TEXT|FILE.json",
                       help="text prompt (class name for the embedded prior): once for all "
                            "sources, SOURCE=TEXT per source, or a JSON file (default: the "
                            "source names for separation, none otherwise)")
    group.add_argument("--negative-prompt", metavar="TEXT",
                       help="prompt of the unconditional branch of classifier-free guidance")
    group.add_argument("--cfg", type=float, metavar="SCALE",
                       help="classifier-free guidance scale, at least 1 (1: none; default: "
                            "tuned, else 1)")
    group.add_argument("--step", type=positive_float, metavar="S",
                       help="guidance step size: the normalised step rho of diffmusic, gamma of "
                            "mpgd, zeta of dps, the guidance rate of dsg (default: tuned)")
    group.add_argument("--gamma", type=positive_float, metavar="G",
                       help="diffmusic only: the paper's plain step z0 - G grad instead of the "
                            "normalised one (with --eta 0: Algorithm 1 exactly)")
    group.add_argument("--eta", type=float, metavar="E",
                       help="DDIM noise of the sampler, 0 to 1 (default: the sampler's)")
    group.add_argument("--warm-start", type=float, metavar="S",
                       help="run only this fraction (0-1] of the schedule, from the noised "
                            "classical baseline; 1: from noise (default: tuned, else 1)")
    group.add_argument("--level", type=level_type, default=LEVEL_DB, metavar="DBFS|off",
                       help="sample at this RMS level and scale the result back (default "
                            f"{LEVEL_DB:g}; off: at the input's own level)")
    group.add_argument("--no-projection", dest="projection", action="store_false",
                       help="skip the measurement-consistency projection (the paper's raw output)")
    group.add_argument("--no-similarity", dest="similarity", action="store_false",
                       help="inpainting: do not copy into each gap the passage of the recording "
                            "whose context matches best (used as warm start and guidance)")
    add_device_options(group)
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the UNet (slow first steps, faster later ones)")
    group.add_argument("--offload", action="store_true",
                       help="keep the text encoders on the CPU except while encoding prompts "
                            "(less GPU memory; AudioLDM2 and MusicLDM)")
    group.add_argument("--checkpointing", action="store_true",
                       help="gradient checkpointing in the UNet (DiT) and VAE (less memory)")


def restore_settings(args: argparse.Namespace) -> Settings:
    """The :class:`~diffmusic.restoration.Settings` of parsed sampling options."""
    from diffmusic.restoration.settings import SettingError, Settings  # imports torch

    if args.cfg is not None and (args.cfg < 1 or not math.isfinite(args.cfg)):
        raise CliError(f"--cfg must be 1 (no guidance) or more, got {args.cfg:g} (the diffusers "
                       "pipelines turn guidance off below 1)")
    try:
        return Settings(sampler=args.sampler, steps=args.steps, seed=args.seed, step=args.step,
                        gamma=args.gamma, eta=args.eta, warm_start=args.warm_start,
                        guidance_scale=args.cfg, prompts=args.prompt,
                        negative_prompt=args.negative_prompt, level_db=args.level,
                        project=args.projection, similarity=args.similarity,
                        clip_mode=args.clip_mode)
    except SettingError as error:
        if error.field == "gamma":
            raise CliError("--gamma is the diffmusic sampler's plain step; use --step for "
                           f"{args.sampler}") from None
        raise CliError(f"{SETTING_FLAGS.get(error.field, error.field)} {error.message}") \
            from None


def refuse_overwrite(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Raise if an ``-o`` path is one of the input files (or the same file under another name)."""
    resolved = {Path(p).resolve(): Path(p) for p in inputs}
    for out in outputs:
        target = Path(out).resolve()
        for source, given in resolved.items():
            if target == source or (target.exists() and source.exists()
                                    and target.samefile(source)):
                raise CliError(f"-o {out}: would overwrite the input {given}")
