"""LSD, LSD-HF and SI-SDR against values known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffmusic.metrics import lsd, lsd_hf, lsd_in, si_sdr

RATE = 16000


def noise(seed: int, n: int = 16000) -> torch.Tensor:
    return 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(seed))


def test_lsd_of_identical_signals_is_zero() -> None:
    x = noise(0)
    assert float(lsd(x, x)) == 0.0


def test_lsd_of_a_doubled_signal_is_log10_2() -> None:
    x = noise(1)
    assert float(lsd(2 * x, x)) == pytest.approx(math.log10(2), abs=1e-6)
    assert float(lsd(x, 2 * x)) == pytest.approx(math.log10(2), abs=1e-6)


def test_lsd_is_batched_and_accepts_numpy() -> None:
    x = torch.stack([noise(2), noise(3)])
    values = lsd(np.asarray(x * torch.tensor([[1.0], [10.0]])), x)
    assert values.shape == (2,)
    assert values.tolist() == pytest.approx([0.0, 1.0], abs=1e-6)


def test_lsd_hf_ignores_changes_below_the_cutoff() -> None:
    x = noise(4)
    t = torch.arange(x.numel()) / RATE
    low = x + 0.5 * torch.sin(2 * math.pi * 200 * t)
    assert float(lsd(low, x)) > 0.1
    assert float(lsd_hf(low, x, cutoff_hz=4000, sample_rate=RATE)) < 0.01
    assert float(lsd_hf(2 * x, x, 4000, RATE)) == pytest.approx(math.log10(2), abs=1e-6)


def test_si_sdr_known_value_for_orthogonal_noise() -> None:
    x = noise(5).double()
    x = x - x.mean()
    n = noise(6).double()
    n = n - n.mean()
    n = n - (n @ x) / (x @ x) * x
    n = n * (x.norm() / n.norm()) * 10 ** (-13.0 / 20)  # 13 dB below the signal
    assert float(si_sdr(x + n, x)) == pytest.approx(13.0, abs=1e-6)


def test_si_sdr_is_scale_invariant() -> None:
    x, est = noise(7), noise(7) + 0.3 * noise(8)
    assert float(si_sdr(5 * est, x)) == pytest.approx(float(si_sdr(est, x)), abs=1e-5)
    assert float(si_sdr(x, x)) > 100


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        lsd(noise(0, 1000), noise(0, 999))


# --- benchmark additions (issue 5): SI-SDR improvement, museval SDR, LSD against librosa ---


def test_si_sdr_improvement_of_the_mixture_itself_is_zero() -> None:
    from diffmusic.metrics import si_sdr_improvement

    refs = torch.stack([noise(1), noise(2)])
    mixture = refs.sum(0)
    assert si_sdr_improvement(mixture.expand_as(refs), refs, mixture).abs().max() < 1e-9
    assert (si_sdr_improvement(refs, refs, mixture) > 50).all()


def test_museval_sdr_is_none_without_museval() -> None:
    from diffmusic.metrics import museval_sdr

    refs = torch.stack([noise(1), noise(2)])
    try:
        import museval  # noqa: F401
    except ImportError:
        assert museval_sdr(refs, refs) is None
    else:
        assert museval_sdr(refs + 0.01 * noise(3), refs) > 20


def test_lsd_matches_a_librosa_reference() -> None:
    librosa = pytest.importorskip("librosa")
    x, ref = noise(11, 16000).double(), (noise(11, 16000) + 0.2 * noise(12, 16000)).double()
    spec = [np.log10(np.abs(librosa.stft(s.numpy(), n_fft=1024, hop_length=160,
                                         window="hann", pad_mode="reflect")) + 1e-10)
            for s in (x, ref)]
    expected = np.sqrt(((spec[0] - spec[1]) ** 2).mean(0)).mean()
    assert float(lsd(x, ref)) == pytest.approx(expected, rel=1e-3)


def test_lsd_in_counts_only_frames_centred_in_the_spans() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(RATE, generator=g)
    est = ref.clone()
    est[8000:12000] *= 2  # doubled in [0.5, 0.75) s
    inside = float(lsd_in(est, ref, [(8800, 11200)]))
    assert inside == pytest.approx(math.log10(2), abs=1e-6)
    assert float(lsd_in(est, ref, [(0, 4000)])) < 1e-9
    assert float(lsd(est, ref)) < inside
    with pytest.raises(ValueError, match="no frame"):
        lsd_in(est, ref, [(5, 10)])
