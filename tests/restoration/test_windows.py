"""Window plans and the weighted overlap-add (:mod:`diffmusic.restoration.windows`)."""

from __future__ import annotations

import pytest
import torch

from diffmusic.restoration.windows import (
    Window,
    crossfades,
    fade_weights,
    overlap_add,
    plan_gap_windows,
    plan_windows,
    region_weights,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("length", [1, 640, 81920, 81921, 200_000, 1_000_003])
def test_plan_windows_cover_with_overlap(length: int) -> None:
    windows = plan_windows(length, 81920, 8000, 640)
    assert windows[0].start == 0 and windows[-1].end >= length
    assert all(w.start % 640 == 0 and w.length % 640 == 0 for w in windows)
    for left, right in zip(windows, windows[1:], strict=False):
        assert left.end - right.start >= 8000 and right.start > left.start
    if length > 81920:
        assert all(w.length == 81920 for w in windows) and windows[-1].end - length < 640


def test_gap_windows_hold_whole_gaps_and_skip_clean_audio() -> None:
    length, segment, context = 16000 * 60, 40960, 8000
    gaps = [(16000 * 2, 16000 * 2 + 3000), (40000, 41000), (16000 * 30 - 500, 16000 * 30 + 500),
            (length - 100, length)]
    windows = plan_gap_windows(length, segment, gaps, context, 640)
    assert len(windows) == 3  # the first two gaps share a window; nothing between the gaps
    held = [g for w in windows for g in w.gaps]
    assert sorted(held) == sorted(gaps)
    for window in windows:
        assert window.start >= 0 and window.end <= length and window.length == segment
        for a, b in window.gaps:
            assert window.start <= a and b <= window.end
            assert a - window.start >= min(context, a) and window.end - b >= min(context,
                                                                                  length - b)
    with pytest.raises(ValueError, match="longer than one window"):
        plan_gap_windows(length, segment, [(0, segment)], context, 640)
    with pytest.raises(ValueError, match="0 <= start < end"):
        plan_gap_windows(length, segment, [(length, length + 10)], context, 640)


def test_crossfades_sum_to_one_and_overlap_add_is_exact_for_identity() -> None:
    fade_out, fade_in = fade_weights(100, 0, 30)[-30:], fade_weights(100, 30, 0)[:30]
    torch.testing.assert_close(fade_out + fade_in, torch.ones(30))
    assert (fade_weights(50, 20, 20) > 0).all()
    signal = torch.randn(2, 100_000)
    windows = plan_windows(100_000, 20480, 3000, 640)

    def identity(window: Window) -> torch.Tensor:
        piece = signal[..., window.start: window.end]
        return torch.nn.functional.pad(piece, (0, window.length - piece.shape[-1]))

    torch.testing.assert_close(
        overlap_add(windows, identity, 100_000, crossfades(windows, 3000)), signal)


def test_region_weights_paste_only_the_gaps_and_their_margins() -> None:
    y = torch.randn(1, 50_000)
    windows = plan_gap_windows(50_000, 20480, [(10_000, 11_000), (40_000, 40_100)], 2000, 640)
    out = overlap_add(windows, lambda w: torch.full((2, 1, w.length), 7.0), 50_000,
                      region_weights([10, 0]), base=y)
    assert out.shape == (2, 1, 50_000)
    changed = (out[0] != y)[0].nonzero()[:, 0]
    assert set(changed.tolist()) == set(range(9990, 11010)) | set(range(39990, 40110))
    assert (out[0, 0, 9990:11010] == 7).all()
    changed = (out[1] != y)[0].nonzero()[:, 0]
    assert set(changed.tolist()) == set(range(10_000, 11_000)) | set(range(40_000, 40_100))


def test_a_later_window_overwrites_an_earlier_one_where_their_regions_meet() -> None:
    y = torch.zeros(1, 30_000)
    windows = plan_gap_windows(30_000, 10240, [(3000, 4000), (14_000, 14_500)], 0, 640)
    assert len(windows) == 2 and windows[0].end > windows[1].start  # the windows overlap
    out = overlap_add(windows, lambda w: torch.full((1, 1, w.length), float(w.start)), 30_000,
                      region_weights([windows[0].length]), base=y)[0, 0]
    overlap = slice(windows[1].start, windows[0].end)
    assert (out[overlap] == windows[1].start).all()  # pasted, not averaged
    assert (out[: windows[0].start] == 0).all() and (out[windows[1].end:] == 0).all()
