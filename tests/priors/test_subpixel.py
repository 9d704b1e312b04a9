"""The sub-pixel form of diffusers' Upsample2D: exact, same weights, used by the latent priors."""

import pytest
import torch
from diffusers.models.upsampling import Upsample2D

from diffmusic.priors import load_prior
from diffmusic.priors.subpixel import SubpixelUpsample2D, use_subpixel_upsampling


@pytest.fixture
def upsample():
    torch.manual_seed(0)
    return Upsample2D(5, use_conv=True, out_channels=7)


@pytest.mark.parametrize("size", [(6, 9), (1, 1), (128, 16)])
def test_subpixel_upsampling_equals_nearest_then_conv(upsample, size):
    x = torch.randn(2, 5, *size, generator=torch.Generator().manual_seed(1), requires_grad=True)
    fast = SubpixelUpsample2D(upsample)
    want, got = upsample(x), fast(x)
    assert got.shape == (2, 7, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    weight = torch.randn(want.shape, generator=torch.Generator().manual_seed(2))
    grad_want, = torch.autograd.grad((want * weight).sum(), x)
    grad_got, = torch.autograd.grad((got * weight).sum(), x)
    torch.testing.assert_close(grad_got, grad_want, rtol=1e-5, atol=1e-5)


def test_subpixel_upsampling_honours_other_output_sizes(upsample):
    x = torch.randn(1, 5, 6, 9, generator=torch.Generator().manual_seed(1))
    got = SubpixelUpsample2D(upsample)(x, output_size=(13, 19))
    torch.testing.assert_close(got, upsample(x, output_size=(13, 19)))


def test_only_exact_rewrites_are_made():
    transpose = Upsample2D(4, use_conv_transpose=True)
    with pytest.raises(ValueError, match="exact"):
        SubpixelUpsample2D(transpose)
    model = torch.nn.Sequential(Upsample2D(4, use_conv=True), transpose, Upsample2D(4))
    keys = list(model.state_dict())
    assert use_subpixel_upsampling(model) == 1
    assert isinstance(model[0], SubpixelUpsample2D) and isinstance(model[1], Upsample2D)
    assert list(model.state_dict()) == keys


def test_latent_priors_decode_with_subpixel_upsampling():
    prior = load_prior("tiny")
    ups = [m for m in prior.vae.modules() if isinstance(m, (Upsample2D, SubpixelUpsample2D))]
    assert ups and all(isinstance(m, SubpixelUpsample2D) for m in ups)
