"""Signal processing in torch: STFT, AudioLDM log-mel, Griffin-Lim, resampling, levels."""

from diffmusic.dsp.griffin_lim import fast_griffin_lim
from diffmusic.dsp.levels import add_noise, peak_normalize, raised_cosine, rms_db
from diffmusic.dsp.resample import fit_length, resample, resample_region
from diffmusic.dsp.spectral import (
    MelConfig,
    istft,
    log_compress,
    log_magnitude,
    log_mel,
    magnitude_blend,
    mel_filterbank,
    mel_magnitude,
    nearest_fft_size,
    stft,
)

__all__ = [
    "MelConfig", "add_noise", "fast_griffin_lim", "istft", "log_compress", "log_magnitude",
    "fit_length", "log_mel", "magnitude_blend", "mel_filterbank", "mel_magnitude",
    "nearest_fft_size", "peak_normalize", "resample", "raised_cosine", "resample_region",
    "rms_db", "stft",
]
