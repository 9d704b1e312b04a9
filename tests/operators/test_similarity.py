"""Similarity-aware inpainting: the search, the copy, the operator's matches and its loss."""

from dataclasses import replace

import torch

from diffmusic.dsp import magnitude_blend
from diffmusic.operators import Inpainting, from_spec
from diffmusic.operators.inpainting import (
    BLEND_SECONDS,
    COPY_SHARE,
    MATCH_WEIGHT,
    MIN_GUIDE,
    MIN_MATCH,
    guide_weight,
)
from diffmusic.operators.similarity import SEAM_SECONDS, Match, copy_passages, find_matches

RATE = 16000


def looped(seconds: float = 10.0, period: float = 2.5, seed: int = 0) -> torch.Tensor:
    """A decaying noise pattern of ``period`` s repeated to ``seconds`` s, shape ``(1, N)``."""
    g = torch.Generator().manual_seed(seed)
    n = round(period * RATE)
    pattern = torch.randn(n, generator=g) * torch.linspace(1, 0.1, n)
    return pattern.repeat(round(seconds / period))[None]


def test_search_finds_the_repeat_to_the_sample_and_its_level():
    x = looped()
    quiet = x.clone()
    quiet[:, 5 * RATE:] *= 0.5  # the repeats after 5 s are 6 dB down
    gaps = [(round(6.3 * RATE), round(6.8 * RATE))]
    y = quiet.clone()
    y[:, gaps[0][0]:gaps[0][1]] = 0
    (match,) = find_matches(y, RATE, gaps)
    assert round(match.source * RATE) % round(2.5 * RATE) == gaps[0][0] % round(2.5 * RATE)
    assert match.source + 0.5 <= 6.3 or match.source >= 6.8
    restored = copy_passages(y, RATE, [match])
    torch.testing.assert_close(restored, quiet, atol=1e-5, rtol=0)


def test_a_repeat_is_corroborated_and_a_passage_heard_once_is_not():
    x = looped()
    gaps = [(round(6.3 * RATE), round(6.8 * RATE))]
    y = x.clone()
    y[:, gaps[0][0]:gaps[0][1]] = 0
    (repeat,) = find_matches(y, RATE, gaps)
    once = y.clone()  # 3 s of fresh noise around the gap: nothing elsewhere continues it
    once[:, 5 * RATE: 8 * RATE] = 0.5 * torch.randn(1, 3 * RATE,
                                                    generator=torch.Generator().manual_seed(9))
    once[:, gaps[0][0]:gaps[0][1]] = 0
    (compromise,) = find_matches(once, RATE, gaps)
    assert repeat.corroborated and not compromise.corroborated
    informed = Inpainting(RATE, x.shape[-1], gaps=[(6.3, 6.8)], matches=[
        replace(compromise, score=0.99)])
    assert informed.guides == [] and informed.used == []  # however well it scored


def test_a_gap_at_the_very_end_is_searched_on_its_context_before():
    x = looped(seconds=5.0)
    gaps = [(x.shape[-1] - RATE // 2, x.shape[-1])]  # its context after lies past the end
    y = x.clone()
    y[:, gaps[0][0]:] = 0
    (match,) = find_matches(y, RATE, gaps)
    torch.testing.assert_close(copy_passages(y, RATE, [match]), x, atol=1e-5, rtol=0)


def test_no_match_where_not_even_half_the_gap_fits():
    y = looped(seconds=2.5)
    gaps = [(round(0.5 * RATE), round(2.2 * RATE))]
    assert find_matches(y, RATE, gaps) == []


def test_a_gap_too_long_for_any_passage_is_filled_from_both_sides():
    x = looped(seconds=8.0, period=1.0)
    gaps = [(2 * RATE, 5 * RATE)]  # no 3 s passage lies outside it; 1.5 s halves do
    y = x.clone()
    y[:, gaps[0][0]:gaps[0][1]] = 0
    first, second = find_matches(y, RATE, gaps)
    assert (first.start, first.end, second.start, second.end) == (2.0, 3.5, 3.5, 5.0)
    for match in (first, second):  # a whole number of periods away, at the same level
        assert round((match.source - match.start) * RATE) % RATE == 0
        assert abs(match.gain - 1) < 1e-4
    torch.testing.assert_close(copy_passages(y, RATE, [first, second]), x, atol=1e-5, rtol=0)


def test_operator_with_similarity_fills_gaps_and_round_trips():
    x = looped()
    op = Inpainting(RATE, x.shape[-1], gaps=[(3.0, 3.5), (8.0, 8.4)])
    informed, y = op.with_similarity(op(x))
    assert [m.score >= MIN_MATCH for m in informed.matches] == [True, True]
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(op.similarity_copy(op(x)), x, atol=1e-5, rtol=0)
    assert from_spec(informed.spec()).spec() == informed.spec()
    window = informed.for_window(2 * RATE, 4 * RATE)
    assert window.spec()["matches"] == [
        {**informed.matches[0].to_dict(), "start": 1.0, "end": 1.5, "source": 3.5}]
    assert (window.passage > 0).sum() == 0.5 * RATE


def test_unmatched_gaps_fall_back_to_context_copy():
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 6 * RATE, generator=g)  # nothing repeats
    op = Inpainting(RATE, noise.shape[-1], gaps=[(2.0, 3.0)])
    informed, filled = op.with_similarity(op(noise))
    (match,) = informed.matches
    assert match.score < MIN_GUIDE and informed.guides == [] and torch.equal(filled, op(noise))
    assert torch.equal(op.similarity_copy(op(noise)), op.context_copy(op(noise)))


def test_a_weaker_match_guides_by_its_score_but_is_not_kept():
    x = looped()
    op = Inpainting(RATE, x.shape[-1], gaps=[(3.0, 3.5)])
    (match,) = op.with_similarity(op(x))[0].matches
    scores = [MIN_GUIDE, (MIN_GUIDE + MIN_MATCH) / 2, MIN_MATCH]
    weak, middle, kept = (Inpainting(RATE, x.shape[-1], gaps=[(3.0, 3.5)],
                                     matches=[replace(match, score=s)]) for s in scores)
    assert weak.guides == [] and middle.used == [] and kept.used == [kept.matches[0]]
    assert float(middle.guide.max()) == guide_weight(scores[1]) == MATCH_WEIGHT / 2
    assert float(middle.passage.max()) == 0 and float(kept.passage.max()) == 1
    hole = op(x)
    y = copy_passages(hole, RATE, middle.guides)
    gap = slice(3 * RATE, round(3.5 * RATE))
    torch.testing.assert_close(y[:, gap], x[:, gap], atol=1e-5, rtol=0)  # y holds the passage
    # which is not kept: its gap holds the restoration, textured by the passage
    assert torch.equal(middle.project(hole, y)[:, gap], middle.textured(hole, y)[:, gap])
    inner = slice(round(3.1 * RATE), round(3.4 * RATE))
    torch.testing.assert_close(kept.project(hole, y)[:, inner], x[:, inner], atol=1e-5, rtol=0)
    assert float(middle.loss(hole, y)) > 1e-3 > 1e-6 > float(weak.loss(hole, y))


def test_copied_frames_pull_the_loss_towards_the_passage():
    x = looped()
    op = Inpainting(RATE, x.shape[-1], gaps=[(3.0, 3.5)])
    informed, y = op.with_similarity(op(x))
    other = x.clone()
    other[:, 3 * RATE: round(3.5 * RATE)] = 0.3 * torch.randn(
        1, RATE // 2, generator=torch.Generator().manual_seed(2))
    # without matches the gap is free; with them, a wrong fill costs
    assert float(op.loss(other, op(x))) < 1e-6
    assert float(informed.loss(other, y)) > 100 * float(informed.loss(x, y)) + 1e-3


def test_match_dicts_rebuild_matches():
    for match in (Match(1.0, 1.5, 4.0, 0.93, 1.2), Match(1.0, 1.5, 4.0, 0.93, 1.2, False)):
        assert Match(**match.to_dict()) == match


def test_projection_keeps_the_passage_but_for_the_seams():
    x = looped()
    op = Inpainting(RATE, x.shape[-1], gaps=[(3.0, 3.5)])
    informed, y = op.with_similarity(op(x))
    fill = 0.01 * torch.ones_like(x)
    out = informed.project(fill, y)
    a, b, seam = 3 * RATE, round(3.5 * RATE), round(SEAM_SECONDS * RATE)
    torch.testing.assert_close(out[:, a + seam: b - seam], x[:, a + seam: b - seam])
    textured = informed.textured(fill, y)
    assert torch.allclose(out[:, a: a + 2], textured[:, a: a + 2], atol=1e-4)
    # an operator that was not searched textures its fill with the context copy
    plain = op.project(fill, op(x))[:, a + seam: b - seam]
    assert torch.equal(plain, op.textured(fill, op(x))[:, a + seam: b - seam])
    share, n_fft = COPY_SHARE, round(BLEND_SECONDS * RATE)
    expected = magnitude_blend(op.context_copy(op(x)), fill, share, n_fft, n_fft // 4)
    torch.testing.assert_close(op.textured(fill, op(x)), expected)


def test_a_recording_keeps_its_own_full_band_passage():
    rate = 2 * RATE
    g = torch.Generator().manual_seed(3)
    n = round(2.5 * rate)
    pattern = torch.randn(n, generator=g) * torch.linspace(1, 0.1, n)  # full band to 16 kHz
    original = pattern.repeat(4)[None]
    gap = (6.0, 6.5)
    a, b = round(gap[0] * rate), round(gap[1] * rate)
    original[:, a:b] = 0
    op = Inpainting(RATE, 10 * RATE, gaps=[gap])
    y = op(torch.nn.functional.avg_pool1d(original[None], 2)[0])  # any 16 kHz view
    informed, _ = op.with_similarity(y)
    restored = torch.zeros(1, 10 * RATE)
    out = informed.keep_original(original, restored, rate, RATE, rate)
    seam = round(SEAM_SECONDS * rate)
    truth = pattern.repeat(4)[None]
    torch.testing.assert_close(out[:, a + seam: b - seam], truth[:, a + seam: b - seam],
                               atol=1e-5, rtol=0)
    assert torch.equal(out[:, : a - 200], original[:, : a - 200])
