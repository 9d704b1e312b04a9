"""End-to-end restoration on the tiny latent prior: every task, every sampler, projection on/off."""

import pytest
import torch
from operator_cases import RATE, N, short_operators
from signals import music_like

from diffmusic.operators import (
    Inpainting,
    SourceSeparation,
)
from diffmusic.restoration import Settings, restore
from diffmusic.restoration.single import expand_prompts
from diffmusic.samplers import SAMPLERS


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return music_like(5, N)[None]


OPERATORS = {task: make for task, make in short_operators().items()
             if task != "source_separation"}


@pytest.mark.parametrize("task", OPERATORS)
def test_diffmusic_restores_every_single_source_task(task, tiny, clip):
    op = OPERATORS[task]()
    y = op(clip)
    result = restore(tiny, op, y, Settings(steps=2, seed=3))
    assert result.wave.shape == result.raw.shape == clip.shape
    assert torch.isfinite(result.wave).all()
    rec = result.record
    assert rec["seed"] == 3 and rec["sampler"] == "diffmusic" and len(rec["losses"]) == 2
    assert rec["operator"] == op.with_similarity(y)[0].spec() and rec["projection"] is True
    assert rec["final_loss"][0] < rec["raw_loss"][0]


def test_a_clip_is_searched_for_passages_unless_similarity_is_off(tiny, clip, monkeypatch):
    import diffmusic.operators.inpainting as inpainting

    calls = []
    search = inpainting.find_matches
    monkeypatch.setattr(inpainting, "find_matches", lambda *a: calls.append(1) or search(*a))
    op = OPERATORS["inpainting"]()
    y = op(clip)
    warm = Settings(steps=2, seed=3, warm_start=0.5)  # the warm start copies passages too
    searched = restore(tiny, op, y, warm).record["operator"]["matches"]
    assert searched and all(set(m) >= {"source", "score", "gain"} for m in searched)
    assert len(calls) == 1
    plain = restore(tiny, op, y, warm.replace(similarity=False))
    assert plain.record["operator"]["matches"] is None and len(calls) == 1


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_and_is_seeded(sampler, tiny, clip):
    op = OPERATORS["inpainting"]()
    y = op(clip)
    a = restore(tiny, op, y, Settings(sampler=sampler, steps=2, seed=1, project=False))
    b = restore(tiny, op, y, Settings(sampler=sampler, steps=2, seed=1, project=False))
    c = restore(tiny, op, y, Settings(sampler=sampler, steps=2, seed=2, project=False))
    assert torch.equal(a.wave, b.wave) and not torch.equal(a.wave, c.wave)
    assert torch.equal(a.wave, a.raw)


def test_separation_gives_one_latent_per_source(tiny):
    stems = torch.stack([music_like(20 + k, N) for k in range(3)])[None]
    op = SourceSeparation(RATE, N, ["vocals", "drums", "bass"], [1.0, 0.5, 1.0])
    y = op(stems)
    seen = []
    result = restore(tiny, op, y, Settings(steps=2, seed=0), seen.append)
    assert result.wave.shape == (1, 3, N)
    assert [s["i"] for s in seen] == [0, 1]
    assert float((op(result.wave) - y).norm() / y.norm()) < 1e-4
    assert expand_prompts(None, op, 2) == ["vocals", "drums", "bass"] * 2


def test_vmc_ablation_uses_the_decoder_mel(tiny, clip):
    op = OPERATORS["super_resolution"]()
    y = op(clip)
    with_vmc = restore(tiny, op, y, Settings(steps=2, seed=0, vmc=True))
    without = restore(tiny, op, y, Settings(steps=2, seed=0, vmc=False))
    assert with_vmc.record["settings"]["vmc"] is True and without.record["settings"]["vmc"] is False
    assert with_vmc.record["losses"] != without.record["losses"]


def test_restore_rejects_unknown_sampler_and_wrong_rate(tiny, clip):
    op = OPERATORS["inpainting"]()
    with pytest.raises(ValueError, match="sampler"):
        restore(tiny, op, op(clip), Settings(sampler="nope"))
    with pytest.raises(ValueError, match="Hz"):
        restore(tiny, Inpainting(8000, N, [(0.5, 0.7)]), op(clip), Settings())


@pytest.mark.slow
@pytest.mark.parametrize("task", OPERATORS)
def test_level_normalisation_makes_restoration_scale_equivariant(task, tiny, clip):
    op = OPERATORS[task]()
    y = op(clip)
    loud = restore(tiny, op, y, Settings(steps=2, seed=0))
    quiet = restore(tiny, op, 1e-2 * y, Settings(steps=2, seed=0))
    peak = loud.raw.abs().max()
    torch.testing.assert_close(1e2 * quiet.raw, loud.raw, rtol=1e-3, atol=1e-5 * peak)
    gains = quiet.record["level"]["gain_db"][0] - loud.record["level"]["gain_db"][0]
    assert quiet.record["level"]["target_dbfs"] == -20.0 and abs(gains - 40.0) < 1e-3
    as_is = restore(tiny, op, 1e-2 * y, Settings(steps=2, seed=0, level_db=None))
    assert as_is.record["level"]["gain_db"] == [0.0]
    assert not torch.allclose(1e2 * as_is.raw, loud.raw, atol=1e-3 * peak)
