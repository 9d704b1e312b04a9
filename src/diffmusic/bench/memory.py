"""Peak resident memory of a block of code, sampled from ``/proc/self/statm``."""

from __future__ import annotations

import os
import resource
import threading
from types import TracebackType

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size of this process in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:  # not Linux: the lifetime peak is the best available
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Context manager measuring the resident memory of this process inside the block.

    ``peak_mb`` is the peak RSS (the whole process: model weights included) and ``delta_mb`` the
    peak above the RSS at the start of the block.

    A background thread samples the RSS every ``interval`` seconds, so allocations made and freed
    by torch's allocator between samples may be missed; the sample at exit is always counted.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak_mb = self.delta_mb = 0.0
        self._stop = threading.Event()
        self._start = self._peak = 0

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, rss_bytes())

    def __enter__(self) -> PeakMemory:
        self._start = self._peak = rss_bytes()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, rss_bytes())
        self.peak_mb = self._peak / 2**20
        self.delta_mb = (self._peak - self._start) / 2**20
