"""The sub-pixel decoder against the VAE's own decoder inside one guided step (embedded prior).

Times, interleaved round by round in one process (this machine's speed drifts by 15-40 % between
runs, so only interleaved medians compare), the guided part of a DiffMusic step on a 5.12 s clip
-- decoder -> vocoder -> log-mel loss, forward and backward to the latent -- through each
decoder, and the UNet forward that completes the step. Also prints how far apart the two
decoders' log-mels of the demo clip's latent are.

Usage::

    python benchmarks/decoder_speed.py [--threads 2] [--rounds 21] [--prior FOLDER]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor


def timed_rounds(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median seconds of each function, called in turn once per round (after one warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(ts), 4) for name, ts in times.items()}


def main() -> None:
    """Print one JSON object with the medians and the decoders' difference."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--prior", default="embedded", help="embedded, or an exported folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from diffmusic.dsp import log_mel
    from diffmusic.priors import load_prior
    from diffmusic.synth import demo_clip

    prior = load_prior(args.prior)
    if getattr(prior, "decoder", None) is None:
        raise SystemExit(f"{args.prior} has no sub-pixel decoder")
    clip = demo_clip()[0].reshape(1, -1)
    z = prior.encode(clip)
    target = log_mel(clip, prior.mel)

    def vae_decode(latent: Tensor) -> Tensor:
        return prior.vae.decode(latent / prior.scaling_factor).sample[:, 0]

    def guided(decode: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def step() -> None:
            z0 = z.clone().requires_grad_(True)
            mel = log_mel(prior.vocode(decode(z0)), prior.mel)
            torch.autograd.grad((mel - target).square().mean(), z0)
        return step

    cond = prior.condition(["mix"])
    decoders = {"vae_decoder": vae_decode, "subpixel_decoder": prior.decode}
    medians = timed_rounds({**{f"guided_{k}": guided(d) for k, d in decoders.items()},
                            "unet_forward": torch.no_grad()(lambda: prior.predict(z, 500, cond))},
                           args.rounds)
    with torch.no_grad():
        mels = {k: decode(z) for k, decode in decoders.items()}

    def l1(a: Tensor, b: Tensor) -> float:
        return round(float((a - b).abs().mean()), 4)

    print(json.dumps({"threads": args.threads, "rounds": args.rounds, "seconds": medians,
                      **{f"step_{k}": round(medians[f"guided_{k}"] + medians["unet_forward"], 4)
                         for k in decoders},
                      "demo_log_mel_l1": {**{k: l1(mel, target) for k, mel in mels.items()},
                                          "between_decoders": l1(*mels.values())}}, indent=1))


if __name__ == "__main__":
    main()
