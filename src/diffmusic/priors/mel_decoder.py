"""A cheaper VAE decoder: it stops one up-sampling short and unfolds 4 channels into 2x2 pixels.

The embedded VAE's decoder spends about half of its forward and backward time at the full
log-mel resolution, where 16-channel convolutions run far below the CPU's peak. This decoder
keeps the latent (the same encoder, hence the same noise predictor) and the first two decoder
levels, drops the last level, and ends with a 3x3 convolution to ``factor**2`` channels at half
the resolution, rearranged into the full-resolution image by ``pixel_shuffle``
(Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network", CVPR 2016). It is trained to match the full decoder and the
log-mel (``python -m diffmusic.train decoder``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import Decoder
from torch import Tensor, nn


@dataclass(frozen=True)
class MelDecoderConfig:
    """Architecture of :class:`SubPixelMelDecoder` (JSON-ready through :meth:`to_dict`).

    Attributes:
        latent_channels: Channels of the VAE latent.
        block_out_channels: Widths of the decoder levels, finest first (diffusers' order).
        layers_per_block: As in diffusers (each level has ``layers_per_block + 1`` resnets).
        norm_num_groups: GroupNorm groups.
        factor: Sub-pixel factor of the last layer (height and width).
    """

    latent_channels: int = 8
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    factor: int = 2

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {**asdict(self), "block_out_channels": list(self.block_out_channels)}


class SubPixelMelDecoder(nn.Module):
    """Latent ``(B, C, H, W)`` (unscaled, as ``AutoencoderKL.decode`` takes it) -> image
    ``(B, 1, s H, s W)`` with ``s = 2 ** (levels - 1) * factor``; with the defaults
    ``(B, 8, T/4, 16)`` -> ``(B, 1, T, 64)``.

    Args:
        config: Architecture.
    """

    def __init__(self, config: MelDecoderConfig = MelDecoderConfig()) -> None:
        super().__init__()
        self.config = config
        levels = len(config.block_out_channels)
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)
        self.decoder = Decoder(
            in_channels=config.latent_channels, out_channels=config.factor ** 2,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=tuple(config.block_out_channels),
            layers_per_block=config.layers_per_block, norm_num_groups=config.norm_num_groups,
            mid_block_add_attention=False)

    def forward(self, z: Tensor) -> Tensor:
        """Decode latents ``(B, C, H, W)`` into log-mel images ``(B, 1, H', W')``."""
        phases = self.decoder(self.post_quant_conv(z))
        return nn.functional.pixel_shuffle(phases, self.config.factor)

    @classmethod
    def from_vae(cls, vae: AutoencoderKL, config: MelDecoderConfig = MelDecoderConfig()
                 ) -> SubPixelMelDecoder:
        """A decoder whose shared layers start from ``vae``'s decoder.

        Copied: ``post_quant_conv``, ``conv_in``, the mid block and, for every level this
        decoder keeps, its resnets and up-sampler. New: the last norm and the sub-pixel
        output convolution. ``config``'s widths must be the coarsest of ``vae``'s.
        """
        student = cls(config)
        teacher = {k: v for k, v in vae.state_dict().items()
                   if k.startswith(("post_quant_conv.", "decoder."))}
        own = student.state_dict()
        shared = {k: v for k, v in teacher.items()
                  if k in own and own[k].shape == v.shape
                  and not k.startswith(("decoder.conv_norm_out.", "decoder.conv_out."))}
        if not any(k.startswith("decoder.mid_block.") for k in shared):
            raise ValueError("the VAE's decoder does not share this decoder's coarse levels")
        with torch.no_grad():
            for k, v in shared.items():
                own[k].copy_(v)
        return student
