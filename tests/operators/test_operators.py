"""Operators: forward shapes, spec round trips, losses, projections and baselines."""

import pytest
import torch
from signals import RATE, N

from diffmusic.dsp import MelConfig, log_mel, stft
from diffmusic.operators import (
    TASKS,
    Declipping,
    Dereverberation,
    Inpainting,
    PhaseRetrieval,
    SourceSeparation,
    SuperResolution,
    from_spec,
    make_gaps,
    synthetic_rir,
)
from diffmusic.operators.inpainting import COPY_SHARE

SINGLE = {
    "inpainting": lambda: Inpainting(RATE, N, [(2.0, 3.0)]),
    "inpainting_random": lambda: Inpainting(
        RATE, N, make_gaps("random", N / RATE, generator=torch.Generator().manual_seed(0)),
        "random"),
    "inpainting_periodic": lambda: Inpainting(RATE, N, make_gaps("periodic", N / RATE),
                                              "periodic"),
    "super_resolution_2": lambda: SuperResolution(RATE, N, 2),
    "super_resolution_8": lambda: SuperResolution(RATE, N, 8),
    "phase_retrieval": lambda: PhaseRetrieval(RATE, N, iterations=60),
    "dereverberation": lambda: Dereverberation(RATE, N),
    "declipping": lambda: Declipping(RATE, N, clip_level=0.2),
}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_every_task_has_an_operator():
    assert set(TASKS) == {"inpainting", "super_resolution", "phase_retrieval",
                          "source_separation", "dereverberation", "declipping", "denoising"}


@pytest.mark.parametrize("name", SINGLE)
def test_spec_round_trip_rebuilds_the_same_operator(name, clips):
    op = SINGLE[name]()
    twin = from_spec(op.spec())
    assert twin.spec() == op.spec()
    torch.testing.assert_close(twin(clips), op(clips))


def test_separation_spec_round_trip_and_shapes(stems):
    op = SourceSeparation(RATE, N, ["vocals", "drums", "bass", "other"], [0.5, 1.0, 1.0, 2.0])
    assert from_spec(op.spec()).spec() == op.spec()
    y = op(stems)
    assert y.shape == (2, N)
    torch.testing.assert_close(y, 0.5 * stems[:, 0] + stems[:, 1] + stems[:, 2] + 2 * stems[:, 3])


@pytest.mark.parametrize("name,shape", [("inpainting", (2, N)),
                                        ("super_resolution_2", (2, N // 2)),
                                        ("super_resolution_8", (2, N // 8)),
                                        ("phase_retrieval", (2, 513, 513)),
                                        ("dereverberation", (2, N))])
def test_measurement_shapes(name, shape, clips):
    assert SINGLE[name]()(clips).shape == shape


@pytest.mark.parametrize("name", SINGLE)
def test_loss_is_zero_at_truth_and_differentiable(name, clips):
    op = SINGLE[name]()
    y = op(clips)
    assert float(op.loss(clips, y).max()) < 1e-6
    other = clips.flip(0).clone().requires_grad_(True)
    loss = op.loss(other, y)
    assert loss.shape == (2,) and float(loss.detach().min()) > 1e-3
    loss.sum().backward()
    grad = other.grad
    assert torch.isfinite(grad).all()
    # a step of 0.1% of the signal's RMS against each item's gradient lowers its loss, one along
    # it raises it (first order, by about <grad, step>, except where phase retrieval's log
    # magnitudes curve)
    scale = other.detach().pow(2).mean(1, True).sqrt() / grad.pow(2).mean(1, True).sqrt()
    step = 1e-3 * scale * grad
    with torch.no_grad():
        assert (op.loss(other - step, y) < loss).all() and (op.loss(other + step, y) > loss).all()


@pytest.mark.parametrize("copy_share", [None, COPY_SHARE])
def test_inpainting_projection_is_exact_outside_crossfades(clips, copy_share):
    op = Inpainting(RATE, N, [(2.0, 3.0)], copy_share=copy_share)
    y = op(clips)
    x_hat = clips.flip(0)
    out = op.project(x_hat, y)
    ramp = round(op.crossfade * RATE)
    known = op.mask.bool().clone()
    known[2 * RATE - ramp: 3 * RATE + ramp] = False
    assert torch.equal(out[:, known], clips[:, known])
    gap = slice(2 * RATE, 3 * RATE)
    fill = x_hat if copy_share is None else op.textured(x_hat, y)
    assert torch.equal(out[:, gap], fill[:, gap])
    assert rel(op(out), y) < 0.1


def test_inpainting_projection_fills_gap_with_copy_texture_at_blended_level():
    """The gap gets the context copy's phase and the geometric mean of the copy's and the
    restoration's magnitudes: a tone of amplitude 0.5 around the gap and a restoration of 0.125
    in quadrature give a fill of amplitude 0.25 in the copy's phase."""
    t = torch.arange(N) / RATE
    y_clean = 0.5 * torch.sin(2 * torch.pi * 440 * t)[None]
    op = Inpainting(RATE, N, [(2.0, 3.0)])
    y = op(y_clean)
    x_hat = 0.125 * torch.cos(2 * torch.pi * 440 * t)[None]
    middle = slice(round(2.2 * RATE), round(2.8 * RATE))
    fill = op.project(x_hat, y)[0, middle]
    copy = op.context_copy(y)[0, middle]
    assert fill.pow(2).mean().sqrt() == pytest.approx(0.25 / 2 ** 0.5, rel=0.02)
    assert torch.nn.functional.cosine_similarity(fill, copy, dim=0) > 0.999


def test_inpainting_copy_share_round_trips_and_is_checked():
    op = Inpainting(RATE, N, [(2.0, 3.0)], copy_share=0.3)
    assert from_spec(op.spec()).copy_share == 0.3
    assert op.for_window(0, RATE * 3).copy_share == 0.3
    with pytest.raises(ValueError, match="copy_share"):
        Inpainting(RATE, N, [(2.0, 3.0)], copy_share=1.5)


def test_inpainting_measurement_domain_loss_ignores_the_gap(clips):
    op = Inpainting(RATE, N, [(1.0, 2.0)], loss_domain="measurement")
    y = op(clips)
    changed = clips.clone()
    changed[:, RATE: 2 * RATE] = 0.9
    assert float(op.loss(changed, y).max()) == 0.0


def test_inpainting_logmel_weight_covers_only_frames_outside_gaps():
    op = Inpainting(RATE, N, [(1.0, 2.0)])
    known = op.known_frames(MelConfig())[:, 0]
    assert known.shape == (512,)
    # frame t spans samples [160 t - 432, 160 t + 592); the gap is [16000, 32000)
    assert known[:97].all() and not known[97:203].any() and known[203:].all()


@pytest.mark.parametrize("bad", [[(3.0, 2.0)], [(5.0, 6.0)], [(-1.0, 0.5)], [(1.0, 1.0)], []])
def test_inpainting_rejects_bad_gaps(bad):
    with pytest.raises(ValueError):
        Inpainting(RATE, N, bad)


def test_mask_types():
    random_gaps = make_gaps("random", 5.12, generator=torch.Generator().manual_seed(3))
    assert len(random_gaps) == round(0.3 * 51)
    assert all(abs(e - s - 0.1) < 1e-9 for s, e in random_gaps)
    assert make_gaps("random", 5.12, generator=torch.Generator().manual_seed(3)) == random_gaps
    periodic = make_gaps("periodic", 5.12)
    assert len(periodic) == 5 and periodic[0] == (0.45, 0.55)
    with pytest.raises(ValueError):
        make_gaps("striped", 5.12)


def test_context_copy_fills_gap_with_preceding_audio(clips):
    op = SINGLE["inpainting"]()
    filled = op.baseline(op(clips), "context_copy")
    torch.testing.assert_close(filled[:, 2 * RATE: 3 * RATE], clips[:, RATE: 2 * RATE])
    assert torch.equal(op.baseline(op(clips), "zero_fill"), op(clips))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_super_resolution_projection_keeps_measured_band(factor, clips):
    op = SuperResolution(RATE, N, factor)
    y = op(clips)
    x_hat = clips.flip(0)
    out = op.project(x_hat, y)
    assert rel(op(out), y) < 0.02
    high = stft(out).abs()[..., round(513 / factor * 1.05):, :]
    high_hat = stft(x_hat).abs()[..., round(513 / factor * 1.05):, :]
    assert rel(high, high_hat) < 0.05
    assert rel(op.baseline(y), clips) < rel(torch.zeros_like(clips), clips)


def test_super_resolution_rejects_bad_factor():
    with pytest.raises(ValueError, match="factor"):
        SuperResolution(RATE, N, 3)


def test_phase_retrieval_projection_restores_measured_magnitude(clips):
    op = SINGLE["phase_retrieval"]()
    y = op(clips)
    x_hat = clips.flip(0)
    out = op.project(x_hat, y)
    assert rel(op(out), y) < 0.15 < rel(op(x_hat), y)
    baseline = op.baseline(y)
    assert rel(op(baseline), y) < 0.15


def test_separation_projection_is_exactly_consistent(stems):
    op = SourceSeparation(RATE, N, ["vocals", "drums", "bass", "other"], [1.0, 0.5, 1.0, 2.0])
    y = op(stems)
    x_hat = stems.roll(1, dims=1)
    out = op.project(x_hat, y)
    assert out.shape == stems.shape
    assert rel(op(out), y) < 1e-4
    for name in op.baselines():
        assert rel(op(op.baseline(y, name)), y) < 1e-4


def test_separation_projection_masks_the_mixture_by_the_estimates_energy(stems):
    op = SourceSeparation(RATE, N)
    y = op(stems)
    # only the estimates' magnitudes count: sources of the opposite sign (phase off by pi) give
    # the same output, which adding the shared residual to them would not
    assert torch.equal(op.project(-stems, y), op.project(stems, y))
    assert rel(op.project(-stems, y), stems) < 0.5 < rel(op.mixture(y), stems)


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_separation_mask_power_sets_each_sources_share(power, clips):
    op = SourceSeparation(RATE, N, ["vocals", "bass"], mask_power=power)
    assert from_spec(op.spec()).mask_power == power
    y = clips[:1]
    # estimates 1 : 2 in every bin -> shares 1 / (1 + 2^p) and 2^p / (1 + 2^p) of the mixture
    out = op.project(torch.stack([clips[1:], 2 * clips[1:]], 1), y)
    share = 1 / (1 + 2**power)
    assert rel(out[:, 0], share * y) < 1e-4 and rel(out[:, 1], (1 - share) * y) < 1e-4


def test_separation_masking_puts_low_notes_in_bass():
    t = torch.arange(N) / RATE
    bass, lead = torch.sin(2 * torch.pi * 80 * t), torch.sin(2 * torch.pi * 880 * t)
    op = SourceSeparation(RATE, N, ["bass", "vocals"])
    est = op.baseline((bass + lead)[None], "masking")[0]
    assert rel(est[0], bass) < 0.2 and rel(est[1], lead) < 0.2


def test_separation_rejects_bad_weights():
    with pytest.raises(ValueError):
        SourceSeparation(RATE, N, ["vocals", "drums"], [1.0])
    with pytest.raises(ValueError):
        SourceSeparation(RATE, N, ["vocals", "drums"], [1.0, 0.0])
    with pytest.raises(ValueError, match="mask_power"):
        SourceSeparation(RATE, N, ["vocals", "drums"], mask_power=0.0)


def test_synthetic_rir_properties():
    h = synthetic_rir(RATE, rt60=0.5, length=0.8, seed=0)
    assert h.shape == (12800,) and float(h[0]) == 1.0
    assert abs(float(h[1:].norm()) - 1.0) < 1e-4
    early, late = h[1:800].pow(2).mean(), h[-800:].pow(2).mean()
    assert 10 * torch.log10(early / late) > 60 * (0.8 - 0.1) / 0.5 * 0.8
    assert torch.equal(h, synthetic_rir(RATE, seed=0))
    assert not torch.equal(h, synthetic_rir(RATE, seed=1))


def test_dereverberation_projection_and_wiener(clips):
    op = SINGLE["dereverberation"]()
    y = op(clips)
    x_hat = clips.flip(0)
    out = op.project(x_hat, y)
    assert rel(op(out), y) < 1e-4 * rel(op(x_hat), y)  # the projection converges
    wiener = op.baseline(y, "wiener")
    assert rel(wiener, clips) < 0.2 < rel(y, clips)
    # only the nearly unobservable part comes from x_hat: even a wrong one beats Wiener
    assert rel(out, clips) < 0.7 * rel(wiener, clips)


def test_dereverberation_adjoint_is_transpose():
    op = Dereverberation(RATE, 4000, rir_length=0.05)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 4000, generator=gen), torch.randn(1, 4000, generator=gen)
    assert abs(float((op(a) * b).sum() - (a * op.adjoint(b)).sum())) < 1e-3


def test_user_rir_round_trips_through_spec(clips):
    op = Dereverberation(RATE, N, rir=[1.0, 0.0, 0.5, 0.25])
    twin = from_spec(op.spec())
    torch.testing.assert_close(twin(clips), op(clips))


@pytest.mark.parametrize("name", ["inpainting", "super_resolution_2", "dereverberation"])
def test_degrade_noise_has_requested_snr_and_is_seeded(name, clips):
    op = SINGLE[name]()
    op.noise_snr = 30.0
    y = op.degrade(clips, torch.Generator().manual_seed(0))
    clean = op(clips)
    snr = 10 * torch.log10(clean.pow(2).sum() / (y - clean).pow(2).sum())
    assert abs(float(snr) - 30.0) < 0.5
    torch.testing.assert_close(y, op.degrade(clips, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("name", SINGLE)
def test_mel_loss_prefers_the_true_mel(name, clips):
    op = SINGLE[name]()
    y = op(clips)
    mel = log_mel(clips)
    truth, wrong = op.mel_loss(mel, y, MelConfig()), op.mel_loss(mel.flip(0), y, MelConfig())
    assert truth.shape == (2,) and (truth < wrong).all()


def test_separation_mel_loss_prefers_the_true_stems(stems):
    op = SourceSeparation(RATE, N)
    y = op(stems)
    mel = log_mel(stems)
    assert (op.mel_loss(mel, y, MelConfig()) < op.mel_loss(mel.flip(0), y, MelConfig())).all()


@pytest.mark.parametrize("name", SINGLE)
def test_operators_are_homogeneous_and_read_the_clean_level(name, clips):
    op = SINGLE[name]()
    y = op(clips)
    # the operator of the scaled measurement (declipping's level scales; the others are the same)
    scaled = op.rescaled(torch.full((2,), 0.1))
    assert (scaled is op) == (name != "declipping")
    torch.testing.assert_close(scaled(0.1 * clips), 0.1 * y, rtol=1e-4,
                               atol=1e-6 * y.abs().max())
    level_db = 20 * torch.log10(op.level(y) / clips.pow(2).mean(-1).sqrt())
    # a reverberant measurement reads high by the tail's energy; lost samples read low
    assert float(level_db.abs().max()) < 4.0, level_db


def test_separation_level_is_the_mixture_level(stems):
    op = SourceSeparation(RATE, N, ["vocals", "drums", "bass", "other"])
    y = op(stems)
    torch.testing.assert_close(op.level(y), y.pow(2).mean(-1).sqrt())


@pytest.mark.parametrize("length", [8, 300, 1500])
def test_inpainting_texture_fits_short_clips(length):
    op = Inpainting(RATE, length, [(0.2 * length / RATE, 0.5 * length / RATE)])
    x = torch.randn(1, length, generator=torch.Generator().manual_seed(0))
    y = op(x)
    textured = op.textured(x, y)
    assert textured.shape == x.shape and torch.isfinite(textured).all()
    assert torch.equal(textured, x) == (length < 16)
