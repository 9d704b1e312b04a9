"""``python -m diffmusic.train {vocoder,vae,unet,decoder,pack,export,evaluate,all} --data data
--runs runs``."""

from __future__ import annotations

import argparse
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

STAGES = {"vocoder": "diffmusic.train.vocoder", "vae": "diffmusic.train.vae",
          "unet": "diffmusic.train.diffusion", "decoder": "diffmusic.train.decoder"}
ALL_MINUTES = {"vocoder": 125.0, "vae": 45.0, "unet": 80.0, "decoder": 60.0}
"""Budgets of ``all``: the vocoder runs in a second process while the VAE, the UNet and then
the sub-pixel decoder train, one thread each."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser with one sub-command per stage."""
    parser = argparse.ArgumentParser(prog="python -m diffmusic.train",
                                     description="Train and export the embedded music prior.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in STAGES.items():
        p = sub.add_parser(name, help=f"train the {name} (resumes from RUNS/{name})")
        p.add_argument("--minutes", type=float, default=ALL_MINUTES[name])
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=1,
                       help="intra-op threads (default 1: stages run side by side)")
        stage = importlib.import_module(module)
        for option in list(inspect.signature(stage.run).parameters.values())[4:]:
            kind = Path if option.default is None else type(option.default)
            p.add_argument(f"--{option.name.replace('_', '-')}", type=kind, default=option.default,
                           **getattr(stage, "OPTION_HELP", {}).get(option.name, {}))
    p = sub.add_parser("pack", help="encode training crops into a latent pack for `unet --pack`")
    p.add_argument("--megabytes", type=float, default=60.0, help="size limit (10^6 bytes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--init", type=Path, default=None, metavar="DIR",
                   help="exported model whose VAE to use when RUNS/unet has none")
    sub.add_parser("export", help="write the EMA weights into the package")
    p = sub.add_parser("evaluate", help="LSDs on validation clips and seconds per DiffMusic step")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("all", help="vocoder (2nd process) alongside vae, unet, decoder; export")
    p.add_argument("--seed", type=int, default=0)
    for p in sub.choices.values():
        p.add_argument("--data", type=Path, default=Path("data"))
        p.add_argument("--runs", type=Path, default=Path("runs"))
        p.add_argument("--out", type=Path, default=None,
                       help="export folder (default: the package's assets/embedded); pack: "
                            "the pack file (default: RUNS/pack.safetensors)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = build_parser().parse_args(argv)
    from diffmusic.train import export

    if args.command in STAGES:
        import torch

        torch.set_num_threads(args.threads)
        options = {k: v for k, v in vars(args).items() if k not in ("command", "out", "threads")}
        importlib.import_module(STAGES[args.command]).run(**options)
    elif args.command == "pack":
        import torch

        from diffmusic.train.diffusion import write_pack

        torch.set_num_threads(args.threads)
        write_pack(args.data, args.runs, args.out or args.runs / "pack.safetensors",
                   args.megabytes, seed=args.seed, init=args.init)
    elif args.command == "export":
        export.export(args.runs, args.out)
    elif args.command == "evaluate":
        from diffmusic.train import evaluate

        evaluate.main(args.data, args.runs, args.out, args.clips, args.threads)
    else:
        train_all(args.data, args.runs, args.out, args.seed)


def train_all(data: Path, runs: Path, out: Path | None, seed: int) -> None:
    """Vocoder in a subprocess; VAE, noise predictor, decoder here; export after each stage."""
    import torch

    from diffmusic.train import export

    torch.set_num_threads(1)
    common = ["--data", str(data), "--runs", str(runs), "--seed", str(seed)]
    vocoder = subprocess.Popen([sys.executable, "-m", "diffmusic.train", "vocoder", *common,
                                "--minutes", str(ALL_MINUTES["vocoder"])])
    for stage in ("vae", "unet", "decoder"):
        importlib.import_module(STAGES[stage]).run(data, runs, ALL_MINUTES[stage], seed=seed)
        export.export(runs, out)
    if vocoder.wait() != 0:
        raise SystemExit("vocoder stage failed")
    export.export(runs, out)


if __name__ == "__main__":
    main()
