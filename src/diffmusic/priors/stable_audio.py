"""Stable Audio Open (Evans et al., 2024) as a prior: T5 -> projection -> DiT over a waveform VAE.

44.1 kHz stereo up to 47 s: an ``AutoencoderOobleck`` turns audio ``(B, 2, N)`` into latents
``(B, 64, N / 2048)`` and back (no mel, no vocoder: the samplers' loss sees the decoder's output,
the decoder constraint), and a ``StableAudioDiTModel`` predicts ``v`` on a continuous ``sigma``
schedule with the EDM preconditioning of the checkpoint's ``CosineDPMSolverMultistepScheduler``.
That preconditioning makes the network's input the variance-preserving latent
``c_in x_sigma = x_sigma / sqrt(sigma^2 + sigma_data^2)`` and its output ``v``, so the prior is
a v-predicting model at ``alpha_bar = 1 / (1 + (sigma / sigma_data)^2)`` (its latents measured in
units of ``sigma_data``), and the project's samplers run it as they run the others.

The condition follows ``StableAudioPipeline.encode_prompt`` and ``encode_duration`` of diffusers,
computed on the components (the pipeline's ``__call__`` and its scheduler class are never used):
T5 states of the prompt padded to the tokenizer's ``model_max_length``, projected and zeroed at
the padding; the projected ``seconds_start`` (0) and ``seconds_total`` (the window's length)
appended as two more tokens and, concatenated, as the global state. Classifier-free guidance
mixes in the negative prompt's states, or without one an all-zero input, as the pipeline does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from diffmusic.dsp import MelConfig, log_mel
from diffmusic.priors import PriorNotFound
from diffmusic.priors.base import Prior
from diffmusic.priors.hub import load_component, moved_to, scheduler_config
from diffmusic.priors.schedule import SigmaSchedule, prediction_type_from_config
from diffmusic.priors.text import TextEncoders, prompt_texts

TEXT_PARTS = ("text_encoder", "tokenizer")
DECODE_CHUNK_FRAMES = 128
"""Latent frames per decoded chunk with gradient checkpointing (about 6 s of audio)."""
DECODE_MARGIN_FRAMES = 16
"""Context frames decoded on either side of a chunk and dropped: more than the Oobleck
decoder's receptive field (tests/priors/test_stable_audio.py checks the seams)."""
ABLATION_MEL = {"n_fft": 2048, "win_length": 2048, "hop_length": 512, "n_mels": 128}
"""Log-mel settings (at the prior's rate, up to its Nyquist) of the ``vmc=False`` ablation."""


@dataclass
class TextCondition:
    """Projected prompt states and what classifier-free guidance mixes in.

    Attributes:
        text: Projected T5 states of the prompts, zero at the padding, ``(B, L, D)``.
        negative: The negative prompt's, same shape (``None``: guidance against an all-zero
            input, the pipeline's choice without a negative prompt).
        scale: Guidance scale ``w`` in ``u + w (c - u)``; no guidance at or below 1.
    """

    text: Tensor
    negative: Tensor | None = None
    scale: float = 1.0


class StableAudioPrior(Prior):
    """Stable Audio Open's DiT and waveform VAE as a prior (see the module docstring).

    Args:
        name: Name written into outputs.
        transformer: ``StableAudioDiTModel``.
        vae: ``AutoencoderOobleck``.
        text_encoder: ``T5EncoderModel``.
        tokenizer: Its T5 tokenizer.
        projection: ``StableAudioProjectionModel`` (text and seconds conditioners).
        scheduler: The scheduler config (``sigma_min``, ``sigma_max``, ``sigma_data``,
            ``sigma_schedule``, ``rho``, ``prediction_type``).
        device: Device of all networks (text encoder: see ``offload``).
        offload: Keep the text encoder on the CPU between encodings.

    Raises:
        ValueError: A scheduler config that is not the EDM ``v`` parameterisation.
    """

    decodes_waveform = True
    denoiser_name = "transformer"

    def __init__(self, name: str, transformer: nn.Module, vae: nn.Module, text_encoder: nn.Module,
                 tokenizer, projection: nn.Module, scheduler: dict,
                 device: torch.device | str = "cpu", offload: bool = False) -> None:
        self.name = name
        self.prediction_type = prediction_type_from_config(scheduler)
        if self.prediction_type != "v_prediction":
            raise ValueError(f"{name}: only the v-prediction EDM parameterisation is supported, "
                             f"the scheduler says {self.prediction_type!r}")
        self.sigma_data = float(scheduler.get("sigma_data", 1.0))
        self._schedule = SigmaSchedule(float(scheduler["sigma_min"]) / self.sigma_data,
                                       float(scheduler["sigma_max"]) / self.sigma_data,
                                       str(scheduler.get("sigma_schedule", "exponential")),
                                       float(scheduler.get("rho", 7.0)))
        self.transformer, self.vae, self.projection = transformer, vae, projection
        for module in self.networks():
            module.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.text_encoder = TextEncoders([text_encoder], torch.device(device), offload)
        param = next(transformer.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.channels = int(vae.config.audio_channels)
        self.latent_hop = int(math.prod(vae.config.downsampling_ratios))
        self.window = int(transformer.config.sample_size) * self.latent_hop
        rate = int(vae.config.sampling_rate)
        self.mel = MelConfig(sample_rate=rate, fmax=rate / 2, **ABLATION_MEL)
        self._null: TextCondition | None = None
        self.decode_chunk: int | None = None

    @property
    def schedule(self) -> SigmaSchedule:
        return self._schedule

    def networks(self) -> list[nn.Module]:
        """The DiT, the VAE and the projection model (the text encoder runs once)."""
        return [self.transformer, self.vae, self.projection]

    def use_gradient_checkpointing(self) -> None:
        """Gradient checkpointing in the DiT (diffusers') and chunked decoding (see
        :meth:`decode`): the decoder's last layers hold 128 channels at the audio rate, about
        1 GB per tensor for a 47 s window, so the loss's backward pass through a whole window
        does not fit machines without a large GPU."""
        self.transformer.enable_gradient_checkpointing()
        self.decode_chunk = DECODE_CHUNK_FRAMES

    def latent_shape(self, num_samples: int) -> tuple[int, ...]:
        if num_samples % self.latent_hop:
            raise ValueError(f"{num_samples} samples do not fill whole latent frames; pad to a "
                             f"multiple of {self.latent_hop}")
        return (int(self.transformer.config.in_channels), num_samples // self.latent_hop)

    def condition(self, prompts: Sequence[str | None], guidance_scale: float = 1.0,
                  negative_prompt: str | None = None) -> TextCondition:
        text = self._encode(prompt_texts(prompts))
        negative = (self._encode([negative_prompt] * len(prompts))
                    if guidance_scale > 1.0 and negative_prompt else None)
        return TextCondition(text, negative, guidance_scale)

    def _encode(self, texts: list[str]) -> Tensor:
        """Projected T5 states ``(B, model_max_length, D)``, zero at the padding."""
        batch = self.tokenizer(texts, padding="max_length", truncation=True,
                               max_length=self.tokenizer.model_max_length, return_tensors="pt")
        with self.text_encoder.active() as device:
            mask = batch.attention_mask.to(device)
            states = self.text_encoder.modules[0](batch.input_ids.to(device),
                                                  attention_mask=mask)[0]
        with torch.no_grad():
            states = self.projection(text_hidden_states=states.to(self.device).float())
        return states.text_hidden_states * mask.to(self.device)[..., None].float()

    @functools.lru_cache(maxsize=4)  # noqa: B019 - one prior per process, a few window lengths
    def _seconds(self, frames: int) -> tuple[Tensor, Tensor]:
        """Projected ``seconds_start`` (0) and ``seconds_total`` of a window of ``frames``
        latent frames, each ``(1, 1, D)``."""
        total = frames * self.latent_hop / self.sample_rate
        with torch.no_grad():
            out = self.projection(start_seconds=torch.zeros(1, device=self.device),
                                  end_seconds=torch.full((1,), total, device=self.device))
        return out.seconds_start_hidden_states, out.seconds_end_hidden_states

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def _rotary(self, tokens: int) -> tuple[Tensor, Tensor]:
        """The DiT's rotary embedding over ``tokens`` positions (the global token and the
        latent frames), as the pipeline builds it."""
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        cos, sin = get_1d_rotary_pos_embed(self.transformer.config.attention_head_dim // 2,
                                           tokens, use_real=True, repeat_interleave_real=False)
        return cos.to(self.device), sin.to(self.device)

    def predict(self, z_t: Tensor, t: float, cond: TextCondition | None = None) -> Tensor:
        if cond is None:
            if self._null is None:
                self._null = self.condition([None])
            cond = self._null
        batch = z_t.shape[0]
        start, end = (s.expand(batch, -1, -1) for s in self._seconds(z_t.shape[-1]))
        text = torch.cat([cond.text.expand(batch, -1, -1), start, end], dim=1)
        global_states = torch.cat([start, end], dim=2)
        if cond.scale <= 1.0:
            return self._dit(z_t, t, text, global_states)
        negative = (torch.zeros_like(text) if cond.negative is None else
                    torch.cat([cond.negative.expand(batch, -1, -1), start, end], dim=1))
        both = self._dit(torch.cat([z_t, z_t]), t, torch.cat([negative, text]),
                         torch.cat([global_states, global_states]))
        uncond, conditioned = both.chunk(2)
        return uncond + cond.scale * (conditioned - uncond)

    def _dit(self, z: Tensor, t: float, text: Tensor, global_states: Tensor) -> Tensor:
        """One DiT call at noise level ``t`` (in units of ``sigma_data``); float32 out."""
        noise = torch.tensor(t * self.sigma_data, device=self.device, dtype=torch.float32)
        timestep = (noise.atan() / math.pi * 2).expand(z.shape[0])  # EDM's c_noise
        out = self.transformer(z.to(self.device, self.dtype), timestep,
                               encoder_hidden_states=text.to(self.dtype),
                               global_hidden_states=global_states.to(self.dtype),
                               rotary_embedding=self._rotary(z.shape[-1] + 1),
                               return_dict=False)[0]
        return out.float()

    def decode(self, z: Tensor) -> Tensor:
        """Latents ``(B, 64, frames)`` -> audio ``(B, C, frames * latent_hop)``.

        With :meth:`use_gradient_checkpointing`, windows longer than ``decode_chunk`` frames
        are decoded chunk by chunk, each with :data:`DECODE_MARGIN_FRAMES` of context on either
        side (more than the decoder's receptive field, so the audio is the same), and each chunk
        is recomputed in the backward pass: memory grows with the chunk, not the window.
        """
        z = (z * self.sigma_data).to(self.device, self.dtype)
        frames, hop = z.shape[-1], self.latent_hop
        if self.decode_chunk is None or frames <= self.decode_chunk:
            return self._decode(z)[..., : frames * hop].float()
        pieces = []
        for start in range(0, frames, self.decode_chunk):
            end = min(frames, start + self.decode_chunk)
            a, b = max(0, start - DECODE_MARGIN_FRAMES), min(frames, end + DECODE_MARGIN_FRAMES)
            audio = _checkpointed(self._decode, z[..., a:b])
            pieces.append(audio[..., (start - a) * hop: (end - a) * hop])
        return torch.cat(pieces, -1).float()

    def _decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z).sample

    def vocode(self, mel: Tensor) -> Tensor:
        return mel

    def encode(self, wave: Tensor) -> Tensor:
        """Audio ``(B, C, N)`` -> latents ``(B, 64, N / latent_hop)`` (the posterior mean)."""
        if wave.dim() != 3 or wave.shape[1] != self.channels:
            raise ValueError(f"{self.name} encodes audio of shape (B, {self.channels}, N), got "
                             f"{tuple(wave.shape)}")
        posterior = self.vae.encode(wave.to(self.device, self.dtype)).latent_dist
        return posterior.mean.float() / self.sigma_data

    def decoded_mel(self, decoded: Tensor) -> Tensor:
        return log_mel(decoded, self.mel)


def _checkpointed(forward: Callable[[Tensor], Tensor], hidden_state: Tensor) -> Tensor:
    """``forward(hidden_state)`` that keeps only its input for the backward pass (recomputing
    the rest) while gradients are on."""
    if not torch.is_grad_enabled():
        return forward(hidden_state)
    return checkpoint(forward, hidden_state, use_reentrant=False)


def stable_audio_prior(parts: dict, name: str, device: torch.device, dtype: torch.dtype,
                       offload: bool = False, scheduler: dict | None = None) -> StableAudioPrior:
    """A Stable Audio prior from its components (the keyword arguments of
    ``StableAudioPipeline``): the DiT and VAE on ``device`` in ``dtype``, the projection model
    in float32 beside them, the text encoder float32 (see ``offload``).

    Args:
        parts: ``transformer``, ``vae``, ``text_encoder``, ``tokenizer``, ``projection_model``
            (and ``scheduler`` unless ``scheduler`` is given).
        name: Name written into outputs.
        device: Device of the networks.
        dtype: Parameter dtype of the DiT and the VAE.
        offload: Keep the text encoder on the CPU between encodings.
        scheduler: The scheduler config (default: ``parts["scheduler"].config``).

    Raises:
        PriorNotFound: A scheduler config the samplers cannot run.
    """
    config = dict(parts["scheduler"].config) if scheduler is None else scheduler
    transformer, vae = (moved_to(parts[k], device, dtype) for k in ("transformer", "vae"))
    projection = moved_to(parts["projection_model"], device, torch.float32)
    try:
        return StableAudioPrior(name, transformer, vae, parts["text_encoder"].float(),
                                parts["tokenizer"], projection, config, device, offload)
    except (KeyError, ValueError) as exc:
        raise PriorNotFound(f"{name}: unsupported scheduler config ({exc})") from None


def load_stable_audio(folder: Path, name: str, device: torch.device, dtype: torch.dtype,
                      offload: bool = False) -> StableAudioPrior:
    """A Stable Audio prior from a checkpoint folder in the ``StableAudioPipeline`` layout
    (the scheduler config is read as JSON: its class, which needs ``torchsde``, is never
    built)."""
    parts = {part: load_component(folder, part, torch.float32)
             for part in (*TEXT_PARTS, "projection_model")}
    parts.update({part: load_component(folder, part, dtype) for part in ("transformer", "vae")})
    return stable_audio_prior(parts, name, device, dtype, offload, scheduler_config(folder))
