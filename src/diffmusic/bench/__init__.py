"""The benchmark of issue 5: datasets, jobs, a resumable sqlite store, scoring and tables.

``diffmusic bench DATA -o RESULTS`` (see :mod:`diffmusic.cli.bench`) degrades every clip with every
task's operator, restores it with every method, scores it and stores one row per
``(clip, task, method, seed)`` in ``RESULTS/results.sqlite``.
"""
