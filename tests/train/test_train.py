"""Training machinery: exact resume, warm start from the shipped model, export that keeps stages."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from diffmusic.priors.embedded import load_embedded
from diffmusic.train import diffusion
from diffmusic.train.export import EMBEDDED, export
from diffmusic.train.loop import Checkpoint, CsvLog, LoopConfig, train_loop

pytestmark = pytest.mark.usefixtures("one_thread")


def _regression(run_dir: Path, max_steps: int) -> nn.Linear:
    """A noisy linear regression trained (or resumed) in ``run_dir`` up to ``max_steps``."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    target = torch.tensor([[1.0, -2.0, 0.5, 3.0]])

    def step(generator: torch.Generator) -> dict[str, torch.Tensor]:
        x = torch.randn(16, 4, generator=generator)
        loss = (model(x) - x @ target.T).square().mean()
        return {"loss": loss}

    cfg = LoopConfig(run_dir=run_dir, minutes=10, lr=0.05, warmup_steps=3, max_steps=max_steps,
                     log_every=2)
    train_loop(cfg, {"model": model}, step)
    return model


def test_an_interrupted_run_resumes_exactly(tmp_path):
    straight = _regression(tmp_path / "straight", 12)
    _regression(tmp_path / "split", 5)
    resumed = _regression(tmp_path / "split", 12)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    state = Checkpoint(tmp_path / "split").state()
    assert state["step"] == 12
    ema = Checkpoint(tmp_path / "split").weights("model")
    assert torch.equal(ema["weight"], Checkpoint(tmp_path / "straight").weights("model")["weight"])
    log = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and [r.split(",")[0] for r in log[1:]] == \
        ["2", "4", "6", "8", "10", "12"]


def test_warm_start_and_export_continue_the_shipped_model(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    weights, info = diffusion.warm_start(runs, EMBEDDED)
    shipped = json.loads((EMBEDDED / "config.json").read_text())
    assert info["steps"] == shipped["unet"]["steps"] and info["from"] == str(EMBEDDED)
    assert json.loads((runs / "unet" / "latent.json").read_text())["scaling_factor"] == \
        shipped["scaling_factor"]
    unet = diffusion.build_unet()
    unet.load_state_dict(weights)  # every exported tensor fits the training architecture

    # one "trained" step's checkpoint on top of the warm start
    Checkpoint(runs / "unet").save({"unet": unet}, {"unet": unet},
                                   torch.optim.AdamW(unet.parameters()), torch.Generator(),
                                   {"step": 1, "seconds": 2.0, "batch": 8, "init": info})
    out.mkdir()
    for name in ("config.json", "vocoder.safetensors", "decoder.safetensors"):
        shutil.copy(EMBEDDED / name, out / name)
    config = export(runs, out)
    assert config["unet"]["steps"] == shipped["unet"]["steps"] + 1
    assert config["unet"]["continued_from"] == info
    assert config["vocoder"] == shipped["vocoder"]  # a stage without a checkpoint is kept
    assert config["vae"]["steps"] == shipped["vae"]["steps"]
    assert config["decoder"] == shipped["decoder"]  # kept: the frozen VAE is the shipped one
    models = load_embedded(out)
    reference = load_embedded(EMBEDDED)
    for a, b in zip(models.unet.parameters(), reference.unet.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(models.vae.parameters(), reference.vae.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sigterm_ends_the_step_and_writes_a_checkpoint(tmp_path):
    import signal

    model = nn.Linear(2, 1)

    def step(generator: torch.Generator) -> dict[str, torch.Tensor]:
        if len(calls) == 3:
            signal.raise_signal(signal.SIGTERM)
        calls.append(1)
        return {"loss": model(torch.randn(4, 2, generator=generator)).square().mean()}

    calls: list[int] = []
    state = train_loop(LoopConfig(run_dir=tmp_path, minutes=10, lr=0.01, max_steps=100),
                       {"model": model}, step)
    assert state["step"] == 4 and Checkpoint(tmp_path).state()["step"] == 4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored


def test_a_log_row_with_new_keys_widens_the_header(tmp_path):
    path = tmp_path / "log.csv"
    CsvLog(path).write({"step": 1, "loss": 0.5})
    log = CsvLog(path)  # a resumed run adds a loss term
    log.write({"step": 2, "loss": 0.4, "sampled": 0.3})
    log.write({"step": 3, "loss": 0.3})
    assert path.read_text().splitlines() == ["step,loss,sampled", "1,0.5,", "2,0.4,0.3", "3,0.3,"]


def test_ddim_estimates_recover_the_latent_an_exact_noise_predictor_implies():
    abar = diffusion.alphas_cumprod()
    generator = torch.Generator().manual_seed(0)
    z0 = torch.randn(2, 8, 4, 16, generator=generator)

    def exact(z: torch.Tensor, t: int, class_labels: torch.Tensor) -> SimpleNamespace:
        a = float(abar[t])
        return SimpleNamespace(sample=(z - a**0.5 * z0) / (1 - a) ** 0.5)

    noise = torch.randn(2, 8, 4, 16, generator=generator)
    estimates = diffusion.ddim_estimates(exact, abar, noise, torch.zeros(2, dtype=torch.long), 5)
    assert estimates.shape == (5, 2, 8, 4, 16)
    assert torch.allclose(estimates, z0.expand_as(estimates), atol=1e-4)
