"""Offline training and validation data for the embedded music model.

Two parts are prepared from packaged, openly licensed material (see ``DATA_CARD.md``):

* ``music``: real game music from Debian packages, 16 kHz mono 16-bit wav
  (:mod:`diffmusic.data.music`);
* ``stems``: scores rendered per part with FluidSynth into MUSDB-style stems whose
  mixture is their exact sum (:mod:`diffmusic.data.stems`).

Run ``python -m diffmusic.data --out data``.
"""
