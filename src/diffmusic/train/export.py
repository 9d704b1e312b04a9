"""Export the trained stages into ``diffmusic/assets/embedded``.

Files written (safetensors only, no pickles)::

    vocoder.safetensors   VocosVocoder, float32
    vae.safetensors       diffusers AutoencoderKL, float32 (the copy the noise predictor saw)
    decoder.safetensors   SubPixelMelDecoder of that VAE, float32 (replaces its decoder)
    unet.safetensors      diffusers UNet2DModel, float16 (cast to float32 when loading)
    config.json           every architecture, the latent scaling, the schedule, mel, classes

:func:`diffmusic.priors.embedded.load_embedded` reads them back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from diffmusic.dsp import MelConfig
from diffmusic.names import CLIP_SAMPLES, SAMPLE_RATE
from diffmusic.priors.embedded import EMBEDDED_DIR as EMBEDDED
from diffmusic.priors.embedded import FORMAT
from diffmusic.train.datasets import CLASSES, UNCONDITIONAL
from diffmusic.train.decoder import DECODER_CONFIG, vae_digest
from diffmusic.train.diffusion import SCHEDULE, UNET_CONFIG
from diffmusic.train.loop import Checkpoint, atomic_write, save_tensors
from diffmusic.train.vae import VAE_CONFIG
from diffmusic.train.vocoder import VOCODER_CONFIG


def _write(out: Path, name: str, tensors: dict[str, Tensor], dtype: torch.dtype, cls: str,
           **entry) -> dict:
    """Save ``tensors`` as ``out/NAME.safetensors`` in ``dtype``; returns its config.json entry."""
    path = out / f"{name}.safetensors"
    save_tensors(tensors, path, dtype)
    os.chmod(path, 0o644)
    return {"class": cls, "file": path.name, "dtype": str(dtype).removeprefix("torch."), **entry}


def _stage_info(run_dir: Path) -> dict:
    """Steps and seconds of a stage, including those of the model it was warm-started from."""
    state = Checkpoint(run_dir).state()
    init = state.get("init", {})
    info = {"steps": state.get("step", 0) + init.get("steps", 0),
            "train_seconds": round(state.get("seconds", 0.0) + init.get("train_seconds", 0)),
            "batch": state.get("batch")}
    return {**info, "continued_from": init} if init else info


def _export_decoder(runs: Path, out: Path, previous: dict | None) -> dict | None:
    """Write the decoder stage's weights when it has a checkpoint; its ``config.json`` entry.

    The entry records the digest of the VAE the decoder was trained for. Without a checkpoint
    the previous entry is kept only if that VAE is still the exported one (``None`` otherwise).

    Raises:
        ValueError: The checkpoint's decoder was trained for another VAE than the exported one.
    """
    if not (out / "vae.safetensors").exists():
        return None
    exported = vae_digest(load_file(str(out / "vae.safetensors")))
    ckpt = Checkpoint(runs / "decoder")
    if not ckpt.exists():
        if previous is not None and previous.get("vae_sha256") != exported:
            print("dropping the sub-pixel decoder: it was trained for another VAE", flush=True)
            (out / previous["file"]).unlink(missing_ok=True)
            return None
        return previous
    state = ckpt.state()
    digest = state.get("vae_sha256")
    if digest != exported:
        raise ValueError(f"{runs / 'decoder'} was trained for another VAE than "
                         f"{out / 'vae.safetensors'}; train it again with the exported VAE")
    return _write(out, "decoder", ckpt.weights("decoder"), torch.float32,
                  "diffmusic.priors.mel_decoder.SubPixelMelDecoder",
                  config=state.get("config", DECODER_CONFIG.to_dict()), vae_sha256=digest,
                  input="unscaled VAE latent; replaces the VAE's decoder",
                  sampled_batch=state.get("sampled_batch", 0), **_stage_info(runs / "decoder"))


def export(runs: Path, out: Path | None = None) -> dict:
    """Write whatever stages have a checkpoint into ``out`` (default: :data:`EMBEDDED`); the
    entries of stages without one are kept from the ``config.json`` already there.

    Args:
        runs: Runs root with ``vocoder/``, ``vae/``, ``unet/`` and ``decoder/``.
        out: Destination folder.

    Returns:
        The ``config.json`` content.
    """
    runs, out = Path(runs), Path(out or EMBEDDED)
    out.mkdir(parents=True, exist_ok=True)
    previous = (json.loads((out / "config.json").read_text())
                if (out / "config.json").exists() else {})
    config: dict = {
        "format": FORMAT, "version": 1, "sample_rate": SAMPLE_RATE,
        "mel": MelConfig().to_dict(), "window_samples": CLIP_SAMPLES,
        "latent_shape": [8, 128, 16], "classes": list(CLASSES),
        "class_embed_index": {"unconditional": UNCONDITIONAL,
                              **{name: k + 1 for k, name in enumerate(CLASSES)}},
        "schedule": SCHEDULE,
    }
    if Checkpoint(runs / "vocoder").exists():
        config["vocoder"] = _write(out, "vocoder", Checkpoint(runs / "vocoder").weights("vocoder"),
                                   torch.float32, "diffmusic.priors.vocos.VocosVocoder",
                                   config=VOCODER_CONFIG.to_dict(), **_stage_info(runs / "vocoder"))
    latent = runs / "unet" / "latent.json"
    stats = json.loads(latent.read_text()) if latent.exists() else None
    if stats is not None and Checkpoint(runs / "unet").exists():
        config["scaling_factor"] = stats["scaling_factor"]
        config["unet"] = _write(out, "unet", Checkpoint(runs / "unet").weights("unet"),
                                torch.float16, "diffusers.UNet2DModel", config=UNET_CONFIG,
                                latent_stats=stats,
                                class_labels="class_labels = class_embed_index[name]",
                                **_stage_info(runs / "unet"))
    frozen = runs / "unet" / "vae.safetensors"
    if frozen.exists() or Checkpoint(runs / "vae").exists():
        weights = (load_file(str(frozen)) if frozen.exists()
                   else Checkpoint(runs / "vae").weights("vae"))
        vae_info = (_stage_info(runs / "vae") if Checkpoint(runs / "vae").exists() else
                    {k: v for k, v in previous.get("vae", {}).items()
                     if k in ("steps", "train_seconds", "batch")})
        vae_config = dict(VAE_CONFIG)
        if "scaling_factor" in config:
            vae_config["scaling_factor"] = config["scaling_factor"]
        config["vae"] = _write(out, "vae", weights, torch.float32, "diffusers.AutoencoderKL",
                               config=vae_config, input="log-mel as (B, 1, frames, 64); "
                               "latent (B, 8, frames/4, 16)", **vae_info)
    decoder = _export_decoder(runs, out, previous.get("decoder"))
    if decoder is not None:
        config["decoder"] = decoder
    for stage in ("vocoder", "vae", "unet", "scaling_factor"):
        if stage not in config and stage in previous:
            config[stage] = previous[stage]
    atomic_write(out / "config.json", lambda tmp: tmp.write_text(json.dumps(config, indent=1)))
    sizes = {p.name: p.stat().st_size for p in out.glob("*.safetensors")}
    print(f"exported to {out}: {sizes} ({sum(sizes.values()) / 1e6:.1f} MB)", flush=True)
    return config
