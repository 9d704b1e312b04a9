"""The benchmark's sqlite store: one row per job, each in its own transaction.

A ``UNIQUE (clip, task, method, seed)`` key and ``INSERT OR IGNORE`` make a killed run resumable
without double counting: a restarted run skips every job whose row has landed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

RESULT_COLUMNS = ("clip", "task", "method", "seed", "lsd", "lsd_hf", "lsd_gap", "si_sdr", "si_sdri",
                  "sdr", "seconds", "peak_mb", "settings", "extra")
"""Columns of ``results``; ``settings`` and ``extra`` are JSON texts."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    clip TEXT NOT NULL, task TEXT NOT NULL, method TEXT NOT NULL, seed INTEGER NOT NULL,
    lsd REAL, lsd_hf REAL, lsd_gap REAL, si_sdr REAL, si_sdri REAL, sdr REAL,
    seconds REAL, peak_mb REAL, settings TEXT NOT NULL, extra TEXT,
    created TEXT DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (clip, task, method, seed)
);
CREATE TABLE IF NOT EXISTS embeddings (
    clip TEXT NOT NULL, task TEXT NOT NULL, method TEXT NOT NULL, seed INTEGER NOT NULL,
    embedding TEXT NOT NULL, dim INTEGER NOT NULL, data BLOB NOT NULL,
    UNIQUE (clip, task, method, seed, embedding)
);
CREATE TABLE IF NOT EXISTS set_metrics (
    task TEXT NOT NULL, method TEXT NOT NULL, metric TEXT NOT NULL, value REAL,
    clips INTEGER, settings TEXT NOT NULL,
    UNIQUE (task, method, metric)
);
"""

Key = tuple[str, str, str, int]
"""``(clip, task, method, seed)``."""


class Store:
    """The results database ``RESULTS/results.sqlite`` (created on first use).

    Args:
        path: The sqlite file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        have = {row[1] for row in self.db.execute("PRAGMA table_info(results)")}
        for column in sorted(set(RESULT_COLUMNS) - have):  # a store of an older version
            self.db.execute(f"ALTER TABLE results ADD COLUMN {column} REAL")

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def done(self) -> set[Key]:
        """Keys of the jobs whose rows have landed."""
        return {tuple(r) for r in self.db.execute("SELECT clip, task, method, seed FROM results")}

    def add(self, row: dict) -> bool:
        """Insert one result row in its own transaction; ``False`` if its key was already there."""
        values = [_cell(row.get(c)) for c in RESULT_COLUMNS]
        marks = ", ".join("?" * len(RESULT_COLUMNS))
        with self._transaction() as db:
            cur = db.execute(f"INSERT OR IGNORE INTO results ({', '.join(RESULT_COLUMNS)}) "
                             f"VALUES ({marks})", values)
        return cur.rowcount == 1

    def rows(self) -> list[dict]:
        """All result rows as dictionaries, ``settings`` and ``extra`` decoded."""
        cur = self.db.execute(f"SELECT {', '.join(RESULT_COLUMNS)} FROM results "
                              "ORDER BY task, method, clip, seed")
        rows = [dict(zip(RESULT_COLUMNS, r, strict=True)) for r in cur]
        for row in rows:
            row["settings"] = json.loads(row["settings"])
            row["extra"] = json.loads(row["extra"]) if row["extra"] else {}
        return rows

    def add_embedding(self, key: Key, name: str, frames: np.ndarray) -> None:
        """Store the frame embeddings ``(frames, dim)`` of one output (ignored if present)."""
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (*key, name, frames.shape[-1], frames.tobytes()))

    def embedding_keys(self) -> set[Key]:
        """Keys of every stored embedding (any embedding name)."""
        cur = self.db.execute("SELECT clip, task, method, seed FROM embeddings")
        return {tuple(r) for r in cur}

    def embeddings(self, name: str, task: str, method: str) -> dict[tuple[str, int], np.ndarray]:
        """Frame embeddings by ``(clip, seed)`` of one task and method."""
        cur = self.db.execute("SELECT clip, seed, dim, data FROM embeddings WHERE embedding = ? "
                              "AND task = ? AND method = ?", (name, task, method))
        return {(clip, seed): np.frombuffer(data, np.float32).reshape(-1, dim)
                for clip, seed, dim, data in cur}

    def set_metric(self, task: str, method: str, metric: str, value: float | None, clips: int,
                   settings: dict) -> None:
        """Write (or replace) a set-level metric such as ``FAD-musicnn``."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO set_metrics VALUES (?, ?, ?, ?, ?, ?)",
                       (task, method, metric, value, clips, json.dumps(settings)))

    def set_metrics(self) -> list[dict]:
        """All set-level metrics."""
        cols = ("task", "method", "metric", "value", "clips", "settings")
        cur = self.db.execute(f"SELECT {', '.join(cols)} FROM set_metrics")
        return [dict(zip(cols, r, strict=True)) for r in cur]


def _cell(value: object) -> object:
    """A value sqlite stores: dicts and lists as JSON, non-finite floats as NULL."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
