"""The studio's store: one SQLite database of uploaded files and restoration jobs, with their
audio in folders beside it, so that a page reload or a server restart loses no finished result.

Every path the server opens is built here from an id it issued itself (32 hex digits) and a
name from a fixed set; nothing a client sends becomes part of a path.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ID_PATTERN = re.compile(r"[0-9a-f]{32}")
SUFFIX_PATTERN = re.compile(r"\.[a-z0-9]{1,5}")
PLAYBACK = "input.wav"
"""The decoded input, written as a wav that every browser plays."""
JOB_STATES = ("queued", "running", "done", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL, sample_rate INTEGER NOT NULL,
    channels INTEGER NOT NULL, frames INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, file_id TEXT NOT NULL REFERENCES files(id), status TEXT NOT NULL,
    request TEXT NOT NULL, argv TEXT NOT NULL, progress TEXT NOT NULL, outputs TEXT NOT NULL,
    record TEXT, error TEXT, created REAL NOT NULL, finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0);
"""


class NotInStore(LookupError):
    """An id or a file name the store did not issue."""


@dataclass(frozen=True)
class AudioFile:
    """An uploaded recording.

    Attributes:
        id: Its id (32 hex digits).
        name: The client's file name, for display only.
        source: The stored original's file name (``original`` plus the upload's suffix).
        sample_rate: Rate in Hz.
        channels: Channel count.
        frames: Samples per channel.
        created: Upload time (Unix seconds).
    """

    id: str
    name: str
    source: str
    sample_rate: int
    channels: int
    frames: int
    created: float

    def as_json(self) -> dict:
        """The file as the API lists it."""
        return {**self.__dict__, "seconds": self.frames / self.sample_rate}


def new_id() -> str:
    """A fresh id: 32 random hex digits."""
    return uuid.uuid4().hex


def checked_id(text: str) -> str:
    """``text`` if it has the form of an id the store issues.

    Raises:
        NotInStore: Anything else (``..``, slashes, other lengths).
    """
    if not ID_PATTERN.fullmatch(text):
        raise NotInStore(f"no such item: {text!r}")
    return text


def safe_suffix(name: str) -> str:
    """The lower-case suffix of a client's file name if it is short and plain, else ``""``."""
    suffix = Path(name.replace("\\", "/")).suffix.lower()
    return suffix if SUFFIX_PATTERN.fullmatch(suffix) else ""


class Store:
    """Files and jobs under ``root``: ``root/studio.sqlite``, ``root/files/ID/`` and
    ``root/jobs/ID/``. Safe to use from several threads."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        for folder in ("files", "jobs", "incoming"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = sqlite3.connect(self.root / "studio.sqlite")
            db.row_factory = sqlite3.Row
            try:
                with db:
                    yield db
            finally:
                db.close()

    def _row(self, table: str, item: str) -> sqlite3.Row:
        """Row ``item`` of ``files`` or ``jobs``.

        Raises:
            NotInStore: No such row.
        """
        with self._connect() as db:
            row = db.execute(f"SELECT * FROM {table} WHERE id = ?", (checked_id(item),)).fetchone()
        if row is None:
            raise NotInStore(f"no such {table[:-1]}: {item}")
        return row

    def folder(self, kind: str, item: str) -> Path:
        """The folder of file or job ``item`` (``kind`` ``files`` or ``jobs``).

        Raises:
            NotInStore: ``item`` is not an id.
        """
        return self.root / kind / checked_id(item)

    def incoming(self) -> Path:
        """A fresh path for an upload in progress."""
        return self.root / "incoming" / new_id()

    def add_file(self, file: AudioFile) -> None:
        """Record an upload whose folder already holds its audio."""
        with self._connect() as db:
            db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (file.id, file.name, file.source, file.sample_rate, file.channels,
                        file.frames, file.created))

    def file(self, file_id: str) -> AudioFile:
        """The upload ``file_id``.

        Raises:
            NotInStore: No such upload.
        """
        return AudioFile(**dict(self._row("files", file_id)))

    def files(self) -> list[AudioFile]:
        """Every upload, newest first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM files ORDER BY created DESC").fetchall()
        return [AudioFile(**dict(row)) for row in rows]

    def add_job(self, job_id: str, file_id: str, request: dict, argv: list[str],
                outputs: list[str]) -> None:
        """Queue job ``job_id`` (from :func:`new_id`) on ``file_id``: the client's ``request``,
        the ``restore`` arguments it became and the names of the audio files it will write in
        its folder."""
        self.folder("jobs", job_id).mkdir()
        with self._connect() as db:
            db.execute("INSERT INTO jobs (id, file_id, status, request, argv, progress, outputs, "
                       "created) VALUES (?, ?, 'queued', ?, ?, '{}', ?, ?)",
                       (job_id, checked_id(file_id), json.dumps(request), json.dumps(argv),
                        json.dumps(outputs), time.time()))

    def update_job(self, job_id: str, **fields: object) -> None:
        """Set ``status``, ``progress``, ``record``, ``error``, ``finished`` or ``attempts``
        of a job (dicts stored as JSON)."""
        allowed = {"status", "progress", "record", "error", "finished", "attempts"}
        if not fields or not set(fields) <= allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)} of a job")
        values = [json.dumps(v) if isinstance(v, dict) else v for v in fields.values()]
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                       (*values, checked_id(job_id)))

    def job(self, job_id: str) -> dict:
        """Job ``job_id`` as the API shows it.

        Raises:
            NotInStore: No such job.
        """
        return job_json(self._row("jobs", job_id))

    def jobs(self, status: tuple[str, ...] = JOB_STATES) -> list[dict]:
        """Jobs in any of ``status``, oldest first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM jobs WHERE status IN ({','.join('?' * len(status))})"
                              " ORDER BY created", status).fetchall()
        return [job_json(row) for row in rows]

    def job_audio(self, job_id: str, name: str) -> Path:
        """The path of audio file ``name`` that job ``job_id`` wrote.

        Raises:
            NotInStore: No such job, or ``name`` is not one of its outputs.
        """
        if name not in self.job(job_id)["outputs"]:
            raise NotInStore(f"job {job_id} has no output {name!r}")
        return self.folder("jobs", job_id) / name


def job_json(row: sqlite3.Row) -> dict:
    """A job's row with its JSON columns decoded."""
    job = dict(row)
    for key in ("request", "argv", "progress", "outputs", "record"):
        if job[key] is not None:
            job[key] = json.loads(job[key])
    return job
