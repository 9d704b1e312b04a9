"""The library's windowed restoration (:class:`diffmusic.restoration.Restorer`) on the tiny
prior: one window, gaps, refusals, super-resolution at 44.1 kHz that keeps the input."""

from __future__ import annotations

import functools
import subprocess
import sys

import julius
import pytest
import torch
from signals import band_levels, music_like

from diffmusic.operators import (
    Dereverberation,
    Inpainting,
    PhaseRetrieval,
    SuperResolution,
)
from diffmusic.operators.inpainting import MIN_MATCH
from diffmusic.priors import Prior, load_prior
from diffmusic.restoration import Restorer, Settings, restore

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("task", ["inpainting", "dereverberation"])
def test_one_window_is_exactly_restore(task: str, tiny: Prior, clips: torch.Tensor) -> None:
    n = 20480
    operator = (Inpainting(16000, n, gaps=[(0.5, 0.6)]) if task == "inpainting"
                else Dereverberation(16000, n, rt60=0.3))
    y = operator(clips[:, :n])
    settings = Settings(steps=2, seed=5)
    direct = restore(tiny, operator, y, settings)
    windowed = Restorer(tiny, settings).restore_windows(operator, y, n)
    torch.testing.assert_close(windowed.wave, direct.wave)
    torch.testing.assert_close(windowed.raw, direct.raw)
    assert windowed.record["seed"] == 5 and len(windowed.record["windows"]) == 1


def test_a_gap_far_from_the_start_gets_the_only_window(tiny: Prior) -> None:
    rate, n = 16000, 16000 * 12
    wave = torch.stack([music_like(3, n), music_like(4, n)])
    restorer = Restorer(tiny, Settings(steps=2), segment=1.28, overlap=0.25)
    result = restorer.restore_recording(functools.partial(Inpainting, gaps=[(10.0, 10.2)]),
                                        wave, rate)
    windows = result.record["windows"]
    assert len(windows) == 1 and windows[0]["start"] <= 10 * rate < windows[0]["start"] + 20480
    assert windows[0]["operator"]["gaps"] == [[(10 * rate - windows[0]["start"]) / rate,
                                               (10.2 * rate - windows[0]["start"]) / rate]]
    outside = torch.ones(n, dtype=torch.bool)
    outside[10 * rate - 80: round(10.2 * rate) + 80] = False
    assert torch.equal(result.wave[:, outside], wave[:, outside])


def test_similarity_gives_each_window_the_repeat_of_its_gap(tiny: Prior) -> None:
    rate = 16000
    wave = music_like(7, round(2.5 * rate)).repeat(4)[None]  # a 2.5 s pattern, four times
    gap = (6.0, 6.5)
    damaged = wave.clone()
    damaged[:, round(gap[0] * rate): round(gap[1] * rate)] = 0
    make = functools.partial(Inpainting, gaps=[gap])
    for similarity in (True, False):
        restorer = Restorer(tiny, Settings(steps=2, similarity=similarity), segment=1.28,
                            overlap=0.25)
        record = restorer.restore_recording(make, damaged, rate).record
        (window,) = record["windows"]
        if similarity:
            (match,) = record["similarity"]
            assert match["score"] >= MIN_MATCH and abs(match["gain"] - 1) < 0.01
            assert round((match["source"] - gap[0]) * rate) % round(2.5 * rate) == 0
            offset = window["start"] / rate
            assert window["operator"]["matches"] == [{
                **match, "start": round(gap[0] - offset, 4), "end": round(gap[1] - offset, 4),
                "source": round(match["source"] - offset, 4)}]
        else:
            assert record["similarity"] is None and window["operator"]["matches"] is None


def test_a_recording_is_searched_once_even_when_nothing_matches(
        tiny: Prior, monkeypatch: pytest.MonkeyPatch) -> None:
    import diffmusic.operators.inpainting as inpainting

    calls = []
    search = inpainting.find_matches
    monkeypatch.setattr(inpainting, "find_matches",
                        lambda *args: calls.append(1) or search(*args))
    # 3 s with a 1 s gap: no passage with 1 s of context on each side fits elsewhere
    noise = 0.1 * torch.randn(1, 3 * 16000, generator=torch.Generator().manual_seed(4))
    record = Restorer(tiny, Settings(steps=2), segment=1.28, overlap=0.1).restore_recording(
        functools.partial(Inpainting, gaps=[(1.0, 2.0)]), noise, 16000).record
    assert len(calls) == 1 and record["similarity"] == []


def test_library_refuses_bad_settings_with_value_errors(tiny: Prior) -> None:
    wave = music_like(0, 16000)[None]
    with pytest.raises(ValueError, match="^segment 60 s is longer"):
        Restorer(tiny, segment=60).window_samples()
    with pytest.raises(ValueError, match="^overlap 0.6 s must be at most half"):
        Restorer(tiny, segment=1.0, overlap=0.6).window_samples()
    restorer = Restorer(tiny, Settings(steps=2))
    with pytest.raises(ValueError, match="restore them with restore_windows"):
        restorer.restore_recording(PhaseRetrieval, wave, 16000)
    with pytest.raises(ValueError, match="channels must be one of"):
        restorer.restore_recording(functools.partial(Inpainting, gaps=[(0.1, 0.2)]), wave,
                                   16000, channels="surround")
    with pytest.raises(ValueError, match="longer than one window can restore"):
        Restorer(tiny, Settings(steps=2), segment=0.64, overlap=0.1).restore_recording(
            functools.partial(Inpainting, gaps=[(0.1, 0.9)]), wave, 16000)
    imports = subprocess.run(
        [sys.executable, "-c", "import sys, diffmusic.restoration; "
         "print(any(m.startswith('diffmusic.cli') for m in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert imports.stdout.strip() == "False"  # the library never needs the CLI


def test_super_resolution_at_44k_keeps_the_input_and_adds_the_missing_band(tiny: Prior) -> None:
    rate, n = 44100, round(2.5 * 44100)
    music = torch.stack([music_like(1, n, rate), music_like(2, n, rate)])
    tone = 0.05 * torch.sin(2 * torch.pi * 12000 * torch.arange(n) / rate)  # above the prior
    damaged = julius.lowpass_filter(music, 3600 / rate, zeros=64) + tone
    restorer = Restorer(tiny, Settings(steps=2), segment=1.28, overlap=0.25)
    result = restorer.restore_recording(functools.partial(SuperResolution, factor=2), damaged,
                                        rate)
    assert result.sample_rate == rate and result.wave.shape == damaged.shape
    assert result.record["sample_rate"] == rate and len(result.record["windows"]) == 3
    # below the 4 kHz cutoff and above the prior's 8 kHz: the input, up to the crossover
    # (differences 100 dB below the input's level, which is mostly the 0-3.5 kHz band)
    level = band_levels(damaged, rate, [(0, 22_050)])[0]
    errors = band_levels(result.wave - damaged, rate, [(0, 3500), (11_000, 13_000),
                                                       (13_000, 22_050)])
    assert max(errors) < 1e-5 * level
    # between the cutoff and 8 kHz, where the input is empty, the restoration
    added, before = band_levels(result.wave, rate, [(4500, 7000)])[0], band_levels(
        damaged, rate, [(4500, 7000)])[0]
    assert added > 100 * before


def test_a_sub_sample_gap_masks_one_sample_and_gaps_are_clipped_to_the_length(
        tiny: Prior) -> None:
    n = 20480
    operator = Inpainting(16000, n, gaps=[(0.3, 0.30002), (1.2, 1.28)])
    assert operator.regions()[0] == (4800, 4801)
    y = operator(music_like(2, n)[None])
    result = Restorer(tiny, Settings(steps=2)).restore_windows(operator, y, 19_840)
    assert result.wave.shape == (1, 19_840)
    assert result.record["windows"][0]["operator"]["gaps"][0] == [0.3, 0.3000625]


def test_one_window_needs_no_window_sizes_the_prior_could_not_cut() -> None:
    gaussian = load_prior("gaussian")
    operator = Inpainting(gaussian.sample_rate, gaussian.window, gaps=[(0.001, 0.002)])
    y = operator(torch.randn(1, gaussian.window, generator=torch.Generator().manual_seed(0)))
    result = Restorer(gaussian, Settings(steps=2)).restore(operator, y)
    assert result.wave.shape == y.shape
