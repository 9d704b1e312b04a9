"""Run a benchmark plan in this process, in local worker processes or on a Ray cluster.

Whatever runs the jobs, this process alone writes the store, one row per transaction, as each
group finishes; a killed run loses at most the groups in flight.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import multiprocessing
from collections.abc import Callable, Iterator

import torch

from diffmusic.bench.datasets import Clip
from diffmusic.bench.jobs import Job, group
from diffmusic.bench.run import RunConfig, Runner
from diffmusic.bench.store import Store
from diffmusic.cluster import ray_imap

Task = tuple[list[Job], Clip, bool]
"""A job group, its clip and whether to embed the clean reference too."""

_RUNNER: Runner | None = None


def _run_task(config: RunConfig, task: Task) -> list[dict]:
    """Run one group in this process with a runner kept for every later group of ``config``."""
    global _RUNNER
    if _RUNNER is None or _RUNNER.config != config:
        _RUNNER = Runner(config)
    return _RUNNER.run(*task)


def tasks(jobs: list[Job], clips: dict[tuple[str, str], Clip], store: Store) -> list[Task]:
    """The groups of ``jobs`` still missing from ``store``, each with its clip.

    Args:
        jobs: The plan.
        clips: Clips by ``(task, clip name)``.
        store: The results so far.
    """
    done = store.done()
    pending = [j for j in jobs if j.key not in done]
    have_ref = {(c, t) for c, t, m, _ in store.embedding_keys() if m == "reference"}
    out = []
    for g in group(pending):
        pair = (g[0].clip, g[0].task)
        out.append((g, clips[(g[0].task, g[0].clip)], pair not in have_ref))
        have_ref.add(pair)
    return out


def store_rows(store: Store, rows: list[dict], embedding: str | None) -> int:
    """Write one group's rows (each its own transaction); returns the number of new results."""
    new = 0
    for row in rows:
        key = (row["clip"], row["task"], row["method"], row["seed"])
        names = {"embedding": embedding, "invented_embedding": f"{embedding}-invented"}
        for field, name in names.items():
            frames = row.pop(field, None)
            if frames is not None and embedding is not None:
                store.add_embedding(key, name, frames)
        if row["method"] != "reference":
            new += store.add(row)
    return new


def _local(work: list[Task], config: RunConfig, workers: int) -> Iterator[list[dict]]:
    threads = max(1, torch.get_num_threads() // workers)
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, ctx, torch.set_num_threads, (threads,)) as pool:
        futures = [pool.submit(_run_task, config, task) for task in work]
        for future in cf.as_completed(futures):
            yield future.result()


def _ray(work: list[Task], config: RunConfig, address: str) -> Iterator[list[dict]]:
    for _, rows in ray_imap(functools.partial(_run_task, config), work, address):
        if isinstance(rows, BaseException):
            raise rows
        yield rows


def execute(work: list[Task], store: Store, config: RunConfig, workers: int = 1,
            ray_address: str | None = None,
            on_group: Callable[[list[dict]], None] | None = None) -> int:
    """Run ``work`` and store every row as its group finishes; returns the new result rows.

    Args:
        work: Groups from :func:`tasks`.
        store: The results store.
        config: Settings of every job.
        workers: Local worker processes (1: this process).
        ray_address: Fan out on this Ray cluster (``local`` starts one) instead.
        on_group: Called with each finished group's rows (progress).
    """
    if ray_address:
        results = _ray(work, config, ray_address)
    elif workers > 1:
        results = _local(work, config, workers)
    else:
        results = (_run_task(config, task) for task in work)
    new = 0
    for rows in results:
        new += store_rows(store, rows, config.embedding)
        if on_group is not None:
            on_group(rows)
    return new
