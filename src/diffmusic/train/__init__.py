"""Training of the embedded music prior: vocoder, VAE and class-conditional noise predictor.

Run ``python -m diffmusic.train --help`` (or ``make train``); each stage resumes from its
checkpoint in ``runs/`` and ``export`` writes the shipped weights to ``assets/embedded``.
"""
