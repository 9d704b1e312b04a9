"""Run independent jobs on a Ray cluster: one task per item, results as they finish."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def _call(fn: Callable[[Item], Result], item: Item) -> Result:
    return fn(item)


def ray_imap(fn: Callable[[Item], Result], items: Sequence[Item],
             address: str) -> Iterator[tuple[int, Result | BaseException]]:
    """``fn(item)`` for every item as a Ray task of one CPU, in the order they finish.

    Each worker process keeps what ``fn`` caches (a loaded prior) between its tasks. A task that
    raises yields the original exception instead of a result; leaving the loop early (an error,
    Ctrl-C, SIGTERM) cancels the tasks not yet finished.

    Args:
        fn: A picklable function of one item (a module-level function or a ``partial`` of one).
        items: The work.
        address: A running cluster (``ray://host:10001``, ``auto``) or ``local`` to start one in
            this machine for the duration of the call.

    Yields:
        ``(index in items, result or exception)``.

    Raises:
        RuntimeError: Ray is not installed, or no cluster answers at ``address``.
    """
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs Ray: pip install 'ray>=2.9'") from None
    try:
        ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
                 include_dashboard=False, log_to_driver=False)
    except (ConnectionError, ValueError) as error:
        raise RuntimeError(f"--ray {address}: {error}") from None
    remote = ray.remote(num_cpus=1, max_retries=0)(_call)
    index = {remote.remote(fn, item): i for i, item in enumerate(items)}
    pending = list(index)
    try:
        while pending:
            (ready,), pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(ready)
            except ray.exceptions.RayError as error:  # a task's own exception is its cause
                cause = getattr(error, "cause", None)
                result = cause if isinstance(cause, BaseException) else error
            yield index[ready], result
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if address == "local":
            ray.shutdown()
