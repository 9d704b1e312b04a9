"""Atomic, durable output files: a temporary sibling, fsync, rename, the umask's permissions."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".part"
"""Suffix of the temporary sibling ``.NAME.XXXX.part`` an output is written to."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A new empty temporary file next to ``path`` to write its content to (the folder is
    created; temporary files an earlier, killed write of ``path`` left are removed).

    When the block succeeds, the file gets the permissions the umask allows, is flushed to disk
    and renamed to ``path``, and the folder is flushed: ``path`` is either the old file or the
    whole new one. When it raises, the file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_together(writes: Sequence[tuple[Path, Callable[[Path], object]]]) -> None:
    """Write several files as one: call each ``writer(path)`` in turn (each writes its own path
    atomically); when one fails, or the process is interrupted between two of them, remove the
    files the earlier ones wrote and the folders created for them.

    Raises:
        OutputError: A file could not be written; its message names the file.
    """
    new_folders = sorted({folder for path, _ in writes for folder in path.absolute().parents
                          if not folder.exists()}, key=lambda folder: -len(folder.parts))
    written: list[Path] = []
    try:
        for path, writer in writes:
            writer(path)
            written.append(path)
    except BaseException as error:
        for path in written:
            path.unlink(missing_ok=True)
        for folder in new_folders:  # deepest first; a folder someone else filled stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        if not isinstance(error, OSError):
            raise
        failed = writes[len(written)][0]
        raise OutputError(f"cannot write {failed}: {error.strerror or error}") from None


class OutputError(OSError):
    """An output file that could not be written (full disk, read-only folder...)."""
