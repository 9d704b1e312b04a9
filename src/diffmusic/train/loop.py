"""The training loop shared by every stage: seeding, EMA, time budget, checkpoints, resume, logs.

A run lives in ``RUNS/STAGE/``::

    checkpoint/NAME.safetensors       weights of each trained module
    checkpoint/NAME_ema.safetensors   their exponential moving average (what gets exported)
    checkpoint/optimizer.pt           optimizer state (plain tensors and numbers)
    checkpoint/rng.safetensors        state of the torch.Generator that drives the data
    checkpoint/state.json             step, seconds trained, extra stage state
    log.csv                           step, seconds, learning rate, loss terms

Re-running a stage picks up from the checkpoint, so training survives interruptions and a larger
``--minutes`` just continues. SIGTERM and SIGINT (Ctrl-C) end the current step, write a
checkpoint and return. Checkpoints are device-independent (tensors are saved from and loaded to
the CPU), so a run trained on a GPU resumes on the CPU and vice versa. A checkpoint without
``optimizer.pt`` (dropped to move it, see ``benchmarks/gpu_train_unet.sh``) resumes with a
fresh optimizer whose learning rate warms up again from that step.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

StepFn = Callable[[torch.Generator], dict[str, Tensor]]
"""One training step: draws a batch from the generator, returns named losses; ``"loss"`` is
the scalar that gets backpropagated."""


@dataclass
class LoopConfig:
    """Settings of :func:`train_loop`.

    Attributes:
        run_dir: Folder of this stage's run (``RUNS/STAGE``).
        minutes: Wall-clock budget of this invocation.
        lr: Learning rate (constant after a linear warm-up).
        seed: Seed of the data generator (used only when no checkpoint exists).
        warmup_steps: Linear learning-rate warm-up.
        ema_decay: Upper bound of the EMA decay (the decay ramps up as ``(1+s)/(10+s)``).
        grad_clip: Global gradient-norm clip.
        save_every_s: Seconds between checkpoints.
        log_every: Steps between log lines.
        max_steps: Stop after this many steps in total (``None``: only the time budget).
        betas: Adam betas.
        weight_decay: AdamW weight decay.
    """

    run_dir: Path
    minutes: float
    lr: float
    seed: int = 0
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    save_every_s: float = 240.0
    log_every: int = 25
    max_steps: int | None = None
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    extra_state: dict = field(default_factory=dict)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary sibling of ``path``, then move it onto ``path``."""
    tmp = path.with_suffix(".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_tensors(tensors: dict[str, Tensor], path: Path, dtype: torch.dtype | None = None) -> None:
    """Write ``tensors`` (on the CPU, cast to ``dtype`` if given) atomically as safetensors."""
    tensors = {k: v.detach().to(dtype=dtype).contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


class Checkpoint:
    """Reads and writes the checkpoint folder of a run.

    Args:
        run_dir: ``RUNS/STAGE``.
    """

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir) / "checkpoint"

    def exists(self) -> bool:
        """Whether a complete checkpoint has been written."""
        return (self.dir / "state.json").exists()

    def state(self) -> dict:
        """The JSON state (step, seconds, extras); empty when there is no checkpoint."""
        return json.loads((self.dir / "state.json").read_text()) if self.exists() else {}

    def weights(self, name: str, ema: bool = True) -> dict[str, Tensor]:
        """State dict of module ``name`` (its EMA copy by default)."""
        return load_file(str(self.dir / f"{name}{'_ema' if ema else ''}.safetensors"))

    def save(self, modules: dict[str, nn.Module], emas: dict[str, nn.Module],
             optimizer: torch.optim.Optimizer, generator: torch.Generator, state: dict) -> None:
        """Write everything; ``state.json`` goes last so a half-written checkpoint is ignored."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, module in modules.items():
            save_tensors(module.state_dict(), self.dir / f"{name}.safetensors")
            save_tensors(emas[name].state_dict(), self.dir / f"{name}_ema.safetensors")
        atomic_write(self.dir / "optimizer.pt", lambda tmp: torch.save(optimizer.state_dict(), tmp))
        save_tensors({"state": generator.get_state()}, self.dir / "rng.safetensors")
        text = json.dumps(state, indent=1)
        atomic_write(self.dir / "state.json", lambda tmp: tmp.write_text(text))

    def load(self, modules: dict[str, nn.Module], emas: dict[str, nn.Module],
             optimizer: torch.optim.Optimizer, generator: torch.Generator) -> dict:
        """Restore everything written by :meth:`save`; returns the JSON state.

        Without ``optimizer.pt`` the optimizer stays fresh and the state's ``warmup_from`` is set
        to the checkpoint's step (the learning rate warms up again from there).
        """
        for name, module in modules.items():
            module.load_state_dict(self.weights(name, ema=False))
            emas[name].load_state_dict(self.weights(name, ema=True))
        state = self.state()
        if (self.dir / "optimizer.pt").exists():
            optimizer.load_state_dict(torch.load(self.dir / "optimizer.pt", map_location="cpu",
                                                 weights_only=True))
        else:
            print(f"{self.dir}: no optimizer state; a fresh optimizer warms up from step "
                  f"{state['step']}", flush=True)
            state["warmup_from"] = state["step"]
        generator.set_state(load_file(str(self.dir / "rng.safetensors"))["state"])
        return state


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for parameters; buffers are copied."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


class CsvLog:
    """Appends rows to ``log.csv``; a row with new keys widens the header (old rows: empty)."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            with path.open() as f:
                self.fields = next(csv.reader(f), None)

    def write(self, row: dict[str, float]) -> None:
        """Append one row (missing keys are left empty)."""
        added = [k for k in row if k not in (self.fields or [])]
        if added:  # (re)write the header, and the rows so far under it
            rows = []
            if self.fields is not None:
                with self.path.open() as f:
                    rows = list(csv.DictReader(f))
            self.fields = [*(self.fields or []), *added]
            self._write_rows(rows, "w")
        self._write_rows([row], "a")

    def _write_rows(self, rows: list[dict], mode: str) -> None:
        with self.path.open(mode, newline="") as f:
            writer = csv.DictWriter(f, self.fields)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Collect SIGTERM/SIGINT in a list instead of dying, so a checkpoint can be written."""
    received: list[int] = []
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda number, _: received.append(number))
                for sig in handled}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def train_loop(cfg: LoopConfig, modules: dict[str, nn.Module], step_fn: StepFn,
               validate: Callable[[dict[str, nn.Module]], dict[str, float]] | None = None) -> dict:
    """Train ``modules`` with AdamW until the time budget or ``max_steps`` is used up.

    Args:
        cfg: Loop settings.
        modules: Named modules whose parameters are optimised (all of them).
        step_fn: Computes the losses of one step (see :data:`StepFn`).
        validate: Optional; called with the EMA modules at every checkpoint, its numbers go to
            ``valid.csv``.

    Returns:
        The final JSON state (``step``, ``seconds``, and ``cfg.extra_state``).
    """
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas,
                                  weight_decay=cfg.weight_decay)
    emas = {name: copy.deepcopy(m).requires_grad_(False) for name, m in modules.items()}
    generator = torch.Generator().manual_seed(cfg.seed)
    ckpt = Checkpoint(cfg.run_dir)
    state = {"step": 0, "seconds": 0.0, "seed": cfg.seed, "warmup_from": 0, **cfg.extra_state}
    if ckpt.exists():
        state.update(ckpt.load(modules, emas, optimizer, generator))
        print(f"resumed {cfg.run_dir} at step {state['step']}", flush=True)
    log, valid_log = CsvLog(cfg.run_dir / "log.csv"), CsvLog(cfg.run_dir / "valid.csv")
    start = last_save = time.monotonic()
    seconds0, running, count = state["seconds"], {}, 0

    def checkpoint() -> None:
        state["seconds"] = seconds0 + time.monotonic() - start
        ckpt.save(modules, emas, optimizer, generator, state)
        if validate is not None:
            valid_log.write({"step": state["step"], **validate(emas)})

    with stop_requests() as stop:
        while time.monotonic() - start < cfg.minutes * 60 and not stop:
            if cfg.max_steps is not None and state["step"] >= cfg.max_steps:
                break
            step = state["step"]
            lr = cfg.lr * min(1.0, (step - state["warmup_from"] + 1) / cfg.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            losses = step_fn(generator)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            for name, module in modules.items():
                ema_update(emas[name], module, decay)
            state["step"] = step + 1
            for k, v in {**losses, "grad_norm": grad_norm}.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            count += 1
            if state["step"] % cfg.log_every == 0:
                seconds = round(seconds0 + time.monotonic() - start, 1)
                row = {"step": state["step"], "seconds": seconds, "lr": lr,
                       **{k: round(v / count, 5) for k, v in running.items()}}
                log.write(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
                running, count = {}, 0
            if time.monotonic() - last_save > cfg.save_every_s:
                checkpoint()
                last_save = time.monotonic()
    checkpoint()
    print(f"saved {cfg.run_dir} at step {state['step']}", flush=True)
    return state
