"""diffmusic studio: a local web app over the restorer (``diffmusic studio``).

:mod:`~diffmusic.studio.app` serves the API and the page, :mod:`~diffmusic.studio.jobs` turns
a form into a ``restore`` job and runs the queue, :mod:`~diffmusic.studio.store` keeps files,
jobs and results in SQLite beside their audio, and :mod:`~diffmusic.studio.assets` fetches the
waveform component once.
"""
