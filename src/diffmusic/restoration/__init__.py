"""Restoration: settings, one window, measurements of any length, whole recordings.

:class:`Settings` says how to restore (sampler, steps, guidance, level, projection; tuned
defaults per prior and task), :class:`Restorer` holds a prior with its settings and restores one
window (:meth:`Restorer.restore`), a measurement of any length (:meth:`Restorer.restore_windows`)
or a damaged recording at any rate and channel count (:meth:`Restorer.restore_recording`).
"""

from diffmusic.restoration.restorer import (
    OperatorFactory,
    Progress,
    RecordingRestoration,
    Restorer,
)
from diffmusic.restoration.settings import Prompts, Settings
from diffmusic.restoration.single import Restoration, restore

__all__ = ["OperatorFactory", "Progress", "Prompts", "RecordingRestoration", "Restoration",
           "Restorer", "Settings", "restore"]
