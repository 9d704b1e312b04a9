"""Names and defaults that the command line needs before any model code loads (no torch here).

The modules that implement them import them from here, so each is stated once.
"""

from __future__ import annotations

SAMPLE_RATE = 16000
"""Sample rate in Hz of the protocol: the paper's clips, the embedded prior, the AudioLDM family,
the training data."""
CLIP_SAMPLES = 81920
"""Samples of one protocol clip (5.12 s at :data:`SAMPLE_RATE`: 128 latent frames of 640
samples), the native window of every shipped prior (a prior's own is ``Prior.window``)."""
TASKS = ("inpainting", "super_resolution", "phase_retrieval", "source_separation",
         "dereverberation", "declipping", "denoising")
"""The restoration tasks, in the order of the paper's table and then the real-world
degradations (``diffmusic.operators.OPERATORS`` has one operator per name)."""
SAMPLER_NAMES = ("diffmusic", "dps", "dsg", "mpgd", "ddim")
"""The samplers (``diffmusic.samplers.SAMPLERS`` has one function per name)."""
AUTO_SAMPLER = "auto"
"""The sampler setting that takes the tuned file's choice for the task (else ``diffmusic``)."""
STEMS = ("vocals", "drums", "bass", "other")
"""Default sources of separation: the MUSDB18 stems."""
SUPER_RESOLUTION_FACTORS = (2, 4, 8)
"""Downsampling factors of the super-resolution operator."""
AUTO_CUTOFF = "auto"
"""The super-resolution cutoff read from the recording (``--cutoff auto``)."""
BLIND_ROOM = "blind"
"""The dereverberation room estimated with the signal (``--rt60 blind``)."""
LOWPASS_FILTERS = ("cheby1", "butter")
"""Low-pass filters that ``degrade --task super_resolution --cutoff HZ`` band-limits with."""
DEFAULT_GAP = (2.0, 3.0)
"""The paper's inpainting gap in seconds: ``--gap``'s default (the benchmark scales it to its
clips' length, see :meth:`diffmusic.operators.Inpainting.from_options`)."""
NOISE_COLOURS = ("white", "pink", "brown")
"""Noise spectra of the denoising degradation: flat, falling 3 dB or 6 dB per octave."""
MASK_TYPES = ("box", "random", "periodic")
"""Inpainting masks: the gap list, 30 % in 0.1 s holes, 0.1 s every 1 s."""
CHANNEL_MODES = ("independent", "mid-side")
"""How a multi-channel recording is restored."""
CLIP_MODES = ("rescale", "clamp", "none")
"""What is done to a restoration that would pass full scale."""
BITS = (16, 24)
"""Integer PCM depths a wav/flac output may have (``None``: 32-bit float wav, 24-bit flac)."""
DEVICES = ("cpu", "cuda")
"""Where a prior may run."""
DTYPES = ("float32", "float16", "bfloat16")
"""Parameter dtypes of a prior's networks (guidance math stays float32)."""
DEFAULT_PRIOR = "embedded"
"""The prior used when none is named: the small music model shipped in the package."""
LEVEL_DB = -20.0
"""RMS level in dBFS that :func:`diffmusic.restoration.restore` brings a measurement to before
sampling.

The embedded prior was trained on crops around -23 dBFS (music at a median of -17.6 dBFS, then
0-10 dB of random attenuation); a quiet validation clip (-38.6 dBFS) inpainted at its own level
scored LSD 0.466, brought to -20.6 dBFS 0.171.
"""
STEP_SIZE = {"diffmusic": "rho", "mpgd": "gamma", "dps": "zeta", "dsg": "guidance_rate"}
"""The guidance step size of each guided sampler: the keyword of its function that ``--step``,
:attr:`diffmusic.restoration.Settings.step` and the tuner set (``ddim`` has none)."""
LATENT_HOP = 640
"""Samples per latent frame of the protocol's priors (mel hop 160 x latent downsampling 4): a
measurement folder is written for a whole number of them (a prior's own is
``Prior.latent_hop``)."""
