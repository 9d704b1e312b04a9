"""The studio's restorations: a form becomes the arguments of ``diffmusic restore`` (the same
parser, checks and defaults as the command line), and one worker thread runs the queued jobs
through the command's own code, recording each window's progress in the store.

A job runs on when its page is closed; jobs that a stopped server left queued or running are run
again when it starts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import queue
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from diffmusic.cli import build_parser
from diffmusic.cli.batch import FileJob
from diffmusic.cli.build import OperatorOptions
from diffmusic.cli.errors import CliError
from diffmusic.cli.restore import (
    RESTORE_ERRORS,
    file_settings,
    job_outputs,
    operator_options,
    recording_options,
    restore_job,
)
from diffmusic.names import TASKS
from diffmusic.priors import PRIOR_NAMES
from diffmusic.restoration import Settings
from diffmusic.samplers import Callback
from diffmusic.studio.store import Store

HIDDEN_FLAGS = frozenset({"-h", "-q", "-o", "--task", "--gap", "--mask", "--rir", "--ray",
                          "--overwrite"})
"""``restore`` flags the form does not offer: set by the studio (output, task, the marked gaps),
paths (the server opens only what its store holds), or batch-only."""
WINDOW_LABEL = re.compile(r"window (\d+)/(\d+)")
MAX_ATTEMPTS = 2
"""Starts of a job after which a server that stopped during it does not run it again."""
PROGRESS_EVERY = 0.25
"""Seconds between two progress writes to the store."""


@functools.cache
def restore_parser() -> argparse.ArgumentParser:
    """The ``diffmusic restore`` subcommand's parser (built once; parsing does not change it)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["restore"]


@functools.cache
def form_fields() -> tuple[dict, ...]:
    """The options the form offers, from the ``restore`` parser: flag, kind (``flag``,
    ``choice``, ``text``), choices, default, help and section (a task name for the options that
    apply to one task, else the parser's group title)."""
    fields = []
    for group in restore_parser()._action_groups:
        for action in group._group_actions:
            flag = max(action.option_strings, key=len, default=None)
            if flag is None or HIDDEN_FLAGS & set(action.option_strings):
                continue
            help_text = (action.help or "").replace("%%", "%")
            task = help_text.split(":", 1)[0]
            kind = ("flag" if action.nargs == 0 else "choice" if action.choices else "text")
            fields.append({"flag": flag, "kind": kind, "help": help_text,
                           "choices": [str(c) for c in action.choices or ()],
                           "default": action.default if kind != "flag" else False,
                           "section": task if task in TASKS else group.title})
    return tuple(fields)


def restore_argv(request: dict, source: Path, out: Path, priors: dict[str, str]) -> list[str]:
    """The ``restore`` arguments of a form ``request``.

    Args:
        request: ``{"task": ..., "gaps": [[start, end], ...] (seconds), "options": {flag:
            value}}``; a value is a string, ``true`` for a set flag, or a list of strings for a
            repeatable flag.
        source: The stored input.
        out: The ``-o`` path in the job's folder.
        priors: Prior names the client may pick, each with what ``--prior`` receives.

    Raises:
        CliError: An unknown task or flag, a prior not offered, a prompt naming a file.
    """
    task = request.get("task")
    if task not in TASKS:
        raise CliError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    argv = [str(source), "-o", str(out), "--task", task, "--quiet"]
    for start, end in checked_gaps(request.get("gaps") or []):
        argv.append(f"--gap={start:.6f}-{end:.6f}")
    options = request.get("options") or {}
    if not isinstance(options, dict):
        raise CliError("options must be an object of flags and values")
    offered = {field["flag"]: field["kind"] for field in form_fields()}
    for flag, value in options.items():
        if flag not in offered:
            raise CliError(f"{flag} is not an option of the studio")
        if value is None or value == "" or value is False:
            continue
        if offered[flag] == "flag":
            argv.append(flag)
            continue
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int | float) for v in values):
            raise CliError(f"{flag}: a value is text, a number or a list of them")
        for item in map(str, values):
            if flag == "--prior":
                if item not in priors:
                    raise CliError(f"--prior {item}: choose one of {', '.join(priors)}")
                item = priors[item]
            if flag == "--prompt" and item.lower().endswith(".json"):
                raise CliError("--prompt: the studio takes prompt text, not a file")
            argv += [flag, item]
    return argv


def checked_gaps(gaps: object) -> list[tuple[float, float]]:
    """``[[start, end], ...]`` in seconds, each finite with ``0 <= start < end``.

    Raises:
        CliError: Anything else.
    """
    try:
        pairs = [(float(start), float(end)) for start, end in gaps]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise CliError("gaps must be a list of [start, end] pairs of seconds") from None
    for start, end in pairs:
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise CliError(f"a gap must have 0 <= start < end, got [{start:g}, {end:g}]")
    return pairs


@dataclasses.dataclass(frozen=True)
class ParsedJob:
    """A job's ``restore`` arguments as the command itself reads them.

    Attributes:
        args: The parsed arguments.
        options: The operator options.
        settings: The sampling settings, prompts resolved.
        outputs: The audio files the job writes.
    """

    args: argparse.Namespace
    options: OperatorOptions
    settings: Settings
    outputs: list[Path]


def parse_job(argv: list[str]) -> ParsedJob:
    """Parse and check a job's ``restore`` arguments.

    Raises:
        CliError: Whatever ``restore`` itself refuses, before any restoring starts.
    """
    args = restore_parser().parse_args(argv)
    options = operator_options(args)
    settings = file_settings(args, options)
    recording_options(args)
    return ParsedJob(args, options, settings, job_outputs(options, args.output)[0])


class WindowProgress:
    """The restorer's per-window progress, written to a job's ``progress``: window ``i`` of
    ``n``, its step and steps, the last measurement loss."""

    def __init__(self, write: Callable[[dict], None]) -> None:
        self.write = write
        self.state: dict = {}
        self.last = 0.0

    @contextlib.contextmanager
    def __call__(self, label: str, steps: int) -> Iterator[Callback]:
        match = WINDOW_LABEL.search(label)
        window, windows = (int(match[1]), int(match[2])) if match else (1, 1)
        self.state = {"label": label, "window": window, "windows": windows, "step": 0,
                      "steps": steps, "loss": None}
        self.write(self.state)

        def callback(info: dict) -> None:
            self.state["step"] += 1
            if info.get("loss") is not None:
                self.state["loss"] = float(info["loss"])
            now = time.monotonic()
            if now - self.last >= PROGRESS_EVERY or self.state["step"] == steps:
                self.last = now
                self.write(self.state)

        yield callback


class JobRunner:
    """Runs the store's jobs one at a time on a daemon thread, in the order they were queued."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: queue.Queue[str] = queue.Queue()
        for job in store.jobs(("queued", "running")):  # left by a stopped server
            if job["attempts"] >= MAX_ATTEMPTS:
                store.update_job(job["id"], status="failed", finished=time.time(),
                                 error=f"the server stopped during this job {MAX_ATTEMPTS} "
                                       "times (out of memory?); not run again")
                continue
            store.update_job(job["id"], status="queued", progress={})
            self.pending.put(job["id"])
        self.thread = threading.Thread(target=self._work, name="diffmusic-studio-jobs",
                                       daemon=True)
        self.thread.start()

    def submit(self, job_id: str) -> None:
        """Queue a job the store holds."""
        self.pending.put(job_id)

    def _work(self) -> None:
        while True:
            job_id = self.pending.get()
            try:
                self.run(job_id)
            except Exception as error:  # the store itself failed: the queue goes on
                traceback.print_exc()
                with contextlib.suppress(Exception):
                    self.store.update_job(job_id, status="failed", error=str(error),
                                          finished=time.time())

    def run(self, job_id: str) -> None:
        """Run one job and record its outcome (``done`` with the record, or ``failed`` with
        one line of error, the store's paths left out)."""
        job = self.store.job(job_id)
        self.store.update_job(job_id, status="running", attempts=job["attempts"] + 1)
        progress = WindowProgress(lambda state: self.store.update_job(job_id, progress=state))
        try:
            parsed = parse_job(job["argv"])
            result = restore_job(FileJob(parsed.args.input[0], parsed.args.output),
                                 parsed.options, parsed.args, parsed.settings, progress)
        except RESTORE_ERRORS as error:
            result = error
        except Exception as error:  # a bug: kept in the job, the server goes on
            traceback.print_exc()
            result = error
        if isinstance(result, BaseException):
            message = " ".join(str(result).replace(f"{self.store.root}/", "").split()) \
                or type(result).__name__
            self.store.update_job(job_id, status="failed", error=message,
                                  finished=time.time())
            return
        self.store.update_job(job_id, status="done", record=result, finished=time.time())


def prior_choices(folders: list[Path]) -> dict[str, str]:
    """The priors the form offers: every registered name, and the folders the server was
    started with (``--prior-folder``) under their folder names."""
    choices = {name: name for name in PRIOR_NAMES}
    choices.update({folder.name: str(folder.resolve()) for folder in folders})
    return choices
