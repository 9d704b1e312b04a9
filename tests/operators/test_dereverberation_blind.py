"""Blind dereverberation: simulated rooms, the decay read from a recording, the room refined
jointly with the signal, the late-reverberation suppression, WPE, and the record."""

import pytest
import torch

from diffmusic.dsp.rooms import blind_decay_times, decay_times, octave_bands, simulated_room
from diffmusic.operators import Dereverberation, dereverberation, from_spec
from diffmusic.operators.dereverberation import DEFAULT_RT60, synthetic_rir

RATE = 16000
N = 4 * RATE


@pytest.fixture(scope="module")
def bursts() -> torch.Tensor:
    """Noise bursts of 0.4 s with 1.6 s of silence after each: free decays to read."""
    envelope = torch.zeros(N)
    for start in range(0, N, 2 * RATE):
        envelope[start: start + round(0.4 * RATE)] = 1
    return torch.randn(N, generator=torch.Generator().manual_seed(0)) * envelope


def reverberant(x: torch.Tensor, rt60: float) -> torch.Tensor:
    h = synthetic_rir(RATE, rt60, 2.0, seed=1)  # its tail holds as much energy as its direct path
    return Dereverberation(RATE, x.shape[-1], rir=h)(x[None])


@pytest.mark.parametrize("rt60", [0.3, 0.5, 1.0, 1.5])
def test_the_room_refined_against_the_signal_is_within_25_percent(bursts, rt60, monkeypatch):
    monkeypatch.setattr(dereverberation, "REFINE_ANCHOR", 0.0)  # the fit alone
    y = reverberant(bursts, rt60)
    op = Dereverberation(RATE, N, rt60="blind", band_rt60=[[0.7] * 6])  # a wrong start
    for _ in range(40):
        op.refine(bursts[None], y)
    assert torch.allclose(op.band_rt60, torch.full_like(op.band_rt60, rt60), rtol=0.25)
    tail = torch.tensor(op.estimates()["tail_db"]["1000"])
    assert float(tail.abs().max()) < 3  # the tail's energy equals the direct path's


def test_the_anchor_holds_the_refined_room_towards_the_first_reading(bursts, monkeypatch):
    y = reverberant(bursts, 1.5)
    found = {}
    for anchor in (0.0, 1.0, 10.0):
        monkeypatch.setattr(dereverberation, "REFINE_ANCHOR", anchor)
        op = Dereverberation(RATE, N, rt60="blind", band_rt60=[[0.7] * 6])
        for _ in range(40):
            op.refine(bursts[None], y)
        found[anchor] = float(op.band_rt60.mean())
    assert 0.7 < found[10.0] < found[1.0] < found[0.0] <= 1.6


def test_the_decay_read_blind_grows_with_the_room(bursts):
    short, long = (blind_decay_times(reverberant(bursts, t), RATE)[0] for t in (0.3, 1.5))
    assert short.shape == (len(octave_bands(RATE, 512)[0]),)
    assert bool((long > 1.3 * short).all())
    assert float(short.median()) == pytest.approx(0.3, rel=0.3)


def test_a_simulated_room_has_its_rt60_and_a_unit_direct_path():
    h = simulated_room(RATE, 0.6, seed=3)
    assert float(h[0]) == 1 and float(h.abs().max()) == 1
    assert float(decay_times(h, RATE)[1:].median()) == pytest.approx(0.6, rel=0.2)
    assert torch.equal(h, simulated_room(RATE, 0.6, seed=3))
    assert not torch.equal(h[:2000], simulated_room(RATE, 0.6, seed=4)[:2000])


def test_degrading_with_a_room_makes_a_blind_operator(bursts):
    op = Dereverberation(RATE, N, room=0.6, seed=3)
    assert op.blind and op.rt60 == "blind"
    y = op.degrade(bursts[None])
    h = simulated_room(RATE, 0.6, seed=3)
    assert torch.allclose(y, Dereverberation(RATE, N, rir=h)(bursts[None]), atol=1e-4)
    fitted = op.fitted(y)
    assert fitted.band_rt60.shape == (1, 6) and fitted is not op
    with pytest.raises(ValueError, match="--room"):
        Dereverberation(RATE, N, rt60="blind").degrade(bursts[None])


def test_each_signal_keeps_its_own_room_and_each_restoration_its_own_copy(bursts):
    y = torch.cat([reverberant(bursts, 0.4), reverberant(bursts, 1.2)])
    op = Dereverberation(RATE, N, rt60="blind", band_rt60=[[0.7] * 6, [0.7] * 6])
    copy = op.fitted(y)
    assert copy is not op and torch.equal(copy.band_rt60, op.band_rt60)
    for _ in range(40):
        copy.refine(torch.stack([bursts, bursts]), y)
    assert torch.equal(op.band_rt60, torch.full((2, 6), 0.7))  # the original is untouched
    short, long = copy.band_rt60.mean(-1).tolist()
    assert short == pytest.approx(0.4, rel=0.25) and long == pytest.approx(1.2, rel=0.25)


def test_the_guided_samplers_refine_the_room_at_every_step(bursts, monkeypatch):
    from diffmusic.priors import cached_prior
    from diffmusic.restoration import Settings, restore

    calls = []
    refine = Dereverberation.refine
    monkeypatch.setattr(Dereverberation, "refine",
                        lambda self, x, y: calls.append(x.shape) or refine(self, x, y))
    y = reverberant(bursts[: 2 * RATE], 0.8)
    op = Dereverberation(RATE, 2 * RATE, rt60="blind")
    result = restore(cached_prior("tiny", "cpu", "float32"), op, y,
                     Settings(sampler="diffmusic", steps=4, seed=0))
    assert len(calls) >= 1 and calls[0] == (1, 2 * RATE)
    assert len(calls) == len(result.record["losses"])
    first_reading = op.fitted(y).estimates()["rt60_s"]["1000"]
    assert result.record["estimates"]["rt60_s"]["1000"] != first_reading


def test_suppression_and_wpe_take_out_reverberation(bursts):
    y = reverberant(bursts, 0.8)
    op = Dereverberation(RATE, N, rt60="blind").fitted(y)
    tail = slice(round(0.6 * RATE), round(1.8 * RATE))  # after the first burst's early part
    burst = slice(round(0.1 * RATE), round(0.4 * RATE))
    for name, most in (("wiener", 0.3), ("wpe", 0.95)):
        out = op.baseline(y, name)
        assert out.shape == y.shape and bool(torch.isfinite(out).all())
        assert float(out[0, tail].pow(2).mean()) < most * float(y[0, tail].pow(2).mean()), name
        kept = float(out[0, burst].pow(2).mean()) / float(bursts[burst].pow(2).mean())
        assert kept > 0.25, name


def test_the_projection_suppresses_the_room_refined_with_the_signal(bursts):
    y = reverberant(bursts, 0.8)
    op = Dereverberation(RATE, N, rt60="blind").fitted(y)
    before = op.project(torch.zeros_like(y), y)
    assert torch.equal(before, op.wiener(y))  # the restoration enters through its room only
    rt60 = op.band_rt60.clone()
    op.refine(bursts[None], y)
    assert not torch.equal(op.band_rt60, rt60)
    assert not torch.allclose(op.project(torch.zeros_like(y), y), before)


def test_the_blind_spec_round_trips_with_its_room(bursts):
    y = torch.stack([reverberant(bursts, 0.5)[0], reverberant(bursts, 1.0)[0]])
    op = Dereverberation(RATE, N, rt60="blind").fitted(y)
    again = from_spec(op.spec())
    assert torch.equal(again.band_rt60, op.band_rt60)
    assert torch.equal(again(y), op(y))
    window = op.for_window(RATE, 2 * RATE)
    assert window.num_samples == 2 * RATE and torch.equal(window.band_rt60, op.band_rt60)
    rt60 = op.estimates()["rt60_s"]
    assert list(rt60) == ["125", "250", "500", "1000", "2000", "4000"]
    assert all(len(v) == 2 for v in rt60.values())


def test_the_model_response_has_the_tail_it_is_given():
    op = Dereverberation(RATE, N, rt60="blind", band_rt60=[[0.5] * 6],
                         band_tail_db=[[3.0] * 6])
    h = op.response()[0]
    assert float(h[0]) == pytest.approx(1.0, abs=1e-3)
    assert float(10 * torch.log10(h[1:].pow(2).sum())) == pytest.approx(3.0, abs=0.5)
    assert float(decay_times(h, RATE)[1:].median()) == pytest.approx(0.5, rel=0.15)


def test_bad_blind_rooms_are_refused():
    with pytest.raises(ValueError, match="less than 1 s"):
        Dereverberation(RATE, RATE // 2, rt60="blind").fitted(torch.randn(1, RATE // 2))
    with pytest.raises(ValueError, match="known room"):
        Dereverberation(RATE, N, rt60="blind", rir=[1.0, 0.5])
    with pytest.raises(ValueError, match="simulated room"):
        Dereverberation(RATE, N, room=9.0)
    with pytest.raises(ValueError, match="rt60"):
        Dereverberation(RATE, N, rt60="loud")
    with pytest.raises(ValueError, match="band_rt60"):
        Dereverberation(RATE, N, rt60="blind", band_tail_db=[[0.0] * 6])
    known = Dereverberation(RATE, N)
    assert known.rt60 == DEFAULT_RT60 and not known.blind and known.estimates() == {}
