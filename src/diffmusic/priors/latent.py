"""A latent diffusion prior assembled from diffusers/transformers components."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from diffmusic.dsp import MelConfig, log_mel
from diffmusic.priors.base import Prior
from diffmusic.priors.subpixel import use_subpixel_upsampling

UnetKwargs = dict[str, Tensor]
Conditioner = Callable[[Sequence[str | None]], UnetKwargs]
"""Maps one prompt per batch item (``None`` or ``""``: unconditional) to UNet keyword tensors."""


@dataclass
class GuidedCondition:
    """UNet inputs for the prompts and, for classifier-free guidance, for the negative prompt.

    Attributes:
        cond: Keyword tensors for the prompts, batch ``B``.
        uncond: Keyword tensors for the negative/empty prompt, batch ``B`` (``None``: no CFG).
        scale: Guidance scale ``w`` in ``eps_u + w (eps_c - eps_u)``.
    """

    cond: UnetKwargs
    uncond: UnetKwargs | None = None
    scale: float = 1.0


MASKS = {"encoder_hidden_states": "encoder_attention_mask",
         "encoder_hidden_states_1": "encoder_attention_mask_1"}
"""Sequence inputs of the UNets and the attention mask that says which of their tokens count."""
WINDOW_FRAMES = 128
"""Latent frames of the AudioLDM family's native window: 128 x 640 samples = 5.12 s at 16 kHz
(the protocol's clip)."""


def vae_downsample(vae: nn.Module) -> int:
    """Factor between mel frames/bands and latent height/width of an ``AutoencoderKL``."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _pad_tokens(kwargs: UnetKwargs, states: str, length: int) -> UnetKwargs:
    """Pad the masked sequence input ``states`` ``(B, L, D)`` with ignored tokens to ``length``."""
    extra = length - kwargs[states].shape[1]
    if extra == 0:
        return kwargs
    mask = MASKS[states]
    if mask not in kwargs:
        raise ValueError(f"cannot pad {states} without {mask}")
    return {**kwargs, states: nn.functional.pad(kwargs[states], (0, 0, 0, extra)),
            mask: nn.functional.pad(kwargs[mask], (0, extra))}


def cat_kwargs(a: UnetKwargs, b: UnetKwargs) -> UnetKwargs:
    """Batch two sets of UNet inputs, padding masked token sequences to a common length."""
    for states in MASKS:
        if states in a:
            length = max(a[states].shape[1], b[states].shape[1])
            a, b = _pad_tokens(a, states, length), _pad_tokens(b, states, length)
    return {k: torch.cat([a[k], b[k]]) for k in a}


class LatentDiffusionPrior(Prior):
    """AudioLDM-style prior: ``eps`` from a UNet, ``decode`` by a VAE, ``vocode`` by a vocoder.

    Args:
        name: Name written into outputs.
        unet: Noise predictor called as ``unet(z, t, **kwargs).sample``.
        vae: ``AutoencoderKL`` over log-mel images ``(B, 1, frames, n_mels)``.
        vocoder: Module mapping log-mel ``(B, frames, n_mels)`` to waveforms ``(B, samples)``.
        alphas_cumprod: Training schedule ``(T,)``.
        conditioner: Prompt encoder (``None``: the UNet takes no conditioning).
        mel: Front-end settings shared by the VAE and the vocoder.
        latent_channels: Channels of the latent (``None``: the VAE config's).
        downsample: Factor between mel frames/bands and latent height/width (``None``: the
            VAE's, from the number of its blocks).
        unet_kwargs: Fixed keyword arguments of every UNet call (e.g. MusicLDM's
            ``encoder_hidden_states=None``).
        decoder: Optional module that replaces ``vae.decode`` (unscaled latent in, log-mel
            image out), e.g. the embedded prior's sub-pixel decoder; ``vae`` still encodes.
        window: Native window in samples, a multiple of :attr:`latent_hop` (``None``:
            :data:`WINDOW_FRAMES` latent frames).
        prediction_type: What the UNet predicts (``"epsilon"`` or ``"v_prediction"``).

    Raises:
        ValueError: A window that is not a whole number of latent frames.
    """

    def __init__(self, name: str, unet: nn.Module, vae: nn.Module, vocoder: nn.Module,
                 alphas_cumprod: Tensor, conditioner: Conditioner | None = None,
                 mel: MelConfig = MelConfig(), latent_channels: int | None = None,
                 downsample: int | None = None, unet_kwargs: dict | None = None,
                 decoder: nn.Module | None = None, window: int | None = None,
                 prediction_type: str = "epsilon") -> None:
        self.name = name
        self.prediction_type = prediction_type
        self.unet, self.vae, self.vocoder = unet.eval(), vae.eval(), vocoder.eval()
        self.decoder = decoder.eval() if decoder is not None else None
        for module in self.networks():
            module.requires_grad_(False)
            use_subpixel_upsampling(module)
        self.alphas_cumprod = alphas_cumprod.double().cpu()
        self.conditioner = conditioner
        self.mel = mel
        self.latent_channels = (vae.config.latent_channels if latent_channels is None
                                else latent_channels)
        self.downsample = vae_downsample(vae) if downsample is None else downsample
        self.window = WINDOW_FRAMES * self.latent_hop if window is None else window
        if self.window <= 0 or self.window % self.latent_hop:
            raise ValueError(f"{name}: a window of {self.window} samples is not a whole number "
                             f"of latent frames of {self.latent_hop} samples")
        param = next(unet.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.scaling_factor = float(vae.config.scaling_factor)
        self.unet_kwargs = dict(unet_kwargs or {})
        self._null: UnetKwargs | None = None

    denoiser_name = "unet"
    """Attribute that holds the noise predictor (compiled by ``load_prior(compile=True)``)."""

    def networks(self) -> list[nn.Module]:
        """Every network of the prior (UNet, VAE, vocoder, and the decoder when separate)."""
        return [m for m in (self.unet, self.vae, self.vocoder, self.decoder) if m is not None]

    def use_gradient_checkpointing(self) -> None:
        """Gradient checkpointing in the UNet and the VAE (less memory for the backward passes
        of the guided samplers, some recomputation)."""
        for module in (self.unet, self.vae):
            if getattr(module, "_supports_gradient_checkpointing", False):
                module.enable_gradient_checkpointing()

    @property
    def latent_hop(self) -> int:
        """Samples per latent frame: the mel hop times the VAE's time downsampling."""
        return self.mel.hop_length * self.downsample

    def latent_shape(self, num_samples: int) -> tuple[int, ...]:
        frames = self.mel.frames(num_samples)
        if frames % self.downsample or num_samples % self.mel.hop_length:
            raise ValueError(f"{num_samples} samples do not fill whole latent frames; pad to a "
                             f"multiple of {self.latent_hop}")
        return (self.latent_channels, frames // self.downsample, self.mel.n_mels // self.downsample)

    def condition(self, prompts: Sequence[str | None], guidance_scale: float = 1.0,
                  negative_prompt: str | None = None) -> GuidedCondition | None:
        if self.conditioner is None:
            return None
        cond = self.conditioner(list(prompts))
        if guidance_scale <= 1.0:  # as in the diffusers pipelines: no guidance at or below 1
            return GuidedCondition(cond)
        if negative_prompt:
            uncond = self.conditioner([negative_prompt] * len(prompts))
        else:
            uncond = self._unconditional(len(prompts))
        return GuidedCondition(cond, uncond, guidance_scale)

    def _unconditional(self, batch: int) -> UnetKwargs:
        """The empty prompt's UNet inputs for ``batch`` items, encoded once and cached."""
        if self._null is None:
            self._null = self.conditioner([None])
        return {k: v.expand(batch, *v.shape[1:]) for k, v in self._null.items()}

    def _unet(self, z: Tensor, t: int, kwargs: UnetKwargs) -> Tensor:
        """One UNet call; float inputs cast to the network dtype, the output returned in float32.

        Integer inputs (attention masks, class labels) keep their dtype.
        """
        kwargs = {k: v.to(self.device, self.dtype if v.is_floating_point() else v.dtype)
                  for k, v in kwargs.items()}
        step = torch.full((z.shape[0],), t, device=self.device, dtype=torch.long)
        out = self.unet(z.to(self.device, self.dtype), step, **self.unet_kwargs, **kwargs)
        return out.sample.float()

    def predict(self, z_t: Tensor, t: int, cond: GuidedCondition | None = None) -> Tensor:
        if cond is None and self.conditioner is not None:
            cond = GuidedCondition(self._unconditional(z_t.shape[0]))
        if cond is None:
            return self._unet(z_t, t, {})
        if cond.uncond is None:
            return self._unet(z_t, t, cond.cond)
        both = self._unet(torch.cat([z_t, z_t]), t, cat_kwargs(cond.uncond, cond.cond))
        eps_u, eps_c = both.chunk(2)
        return eps_u + cond.scale * (eps_c - eps_u)

    def decode(self, z: Tensor) -> Tensor:
        z = (z / self.scaling_factor).to(self.device, self.dtype)
        image = self.decoder(z) if self.decoder is not None else self.vae.decode(z).sample
        return image[:, 0].float()

    def vocode(self, mel: Tensor) -> Tensor:
        wave = self.vocoder(mel.to(self.device, self.dtype)).float()
        samples = mel.shape[-2] * self.mel.hop_length
        wave = wave[..., :samples]
        return torch.nn.functional.pad(wave, (0, samples - wave.shape[-1]))

    def encode(self, wave: Tensor) -> Tensor:
        mel = log_mel(wave.float(), self.mel)[:, None].to(self.device, self.dtype)
        return self.vae.encode(mel).latent_dist.mean.float() * self.scaling_factor
