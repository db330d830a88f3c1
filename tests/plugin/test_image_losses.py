"""The shared image losses: loss resolution, effective weights, grayscale handling, weighting."""

import numpy as np
import pytest
import torch

from stylegan2_ada_pytorch import dnnlib
from gradstyle_plugin import image_losses, perceptual


def test_default_loss_resolution_follows_e4e_face_pool():
    assert image_losses.default_loss_resolution(1024) == 256
    assert image_losses.default_loss_resolution(256) == 256
    assert image_losses.default_loss_resolution(64) == 64
    assert image_losses.default_loss_resolution(32) == 32
    assert image_losses.resolve_loss_resolution(None, 1024) == 256
    assert image_losses.resolve_loss_resolution(128, 1024) == 128
    with pytest.raises(dnnlib.UserError, match='--loss-res'):
        image_losses.resolve_loss_resolution(2048, 1024)


def test_effective_weights_turn_missing_terms_off_with_a_warning():
    w, notes = image_losses.effective_weights(1.0, 0.8, 0.1, lpips_weights=None, id_weights=None)
    assert (w.l2, w.lpips, w.id) == (1.0, 0.0, 0.0)
    assert len(notes) == 2 and '--lpips-weights' in notes[0] and '--id-weights' in notes[1]
    w, notes = image_losses.effective_weights(1.0, 0.8, 0.1, lpips_weights='vgg.pth', id_weights='ir.pth')
    assert (w.l2, w.lpips, w.id) == (1.0, 0.8, 0.1) and notes == []
    w, notes = image_losses.effective_weights(1.0, 0.0, 0.0, lpips_weights=None, id_weights=None)
    assert notes == []       # a term switched off on purpose is not warned about


def test_pooling_to_the_loss_resolution_is_a_block_mean():
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    ref = x.numpy().reshape(2, 3, 16, 4, 16, 4).mean(axis=(3, 5))
    np.testing.assert_allclose(image_losses.to_loss_resolution(x, 16).numpy(), ref, atol=1e-12)
    assert image_losses.to_loss_resolution(x, 64) is x


def test_l2_is_the_mse_at_the_loss_resolution():
    x, y = torch.randn(3, 1, 32, 32, dtype=torch.float64), torch.randn(3, 1, 32, 32, dtype=torch.float64)
    losses = image_losses.ImageLosses(loss_res=8, l2_weight=2.5)
    px = x.numpy().reshape(3, 1, 8, 4, 8, 4).mean(axis=(3, 5))
    py = y.numpy().reshape(3, 1, 8, 4, 8, 4).mean(axis=(3, 5))
    ref = ((px - py) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(losses(x, y).numpy(), 2.5 * ref, atol=1e-12)
    assert set(losses.terms(x, y)) == {'l2'}


def test_grayscale_lpips_equals_lpips_of_the_repeated_image():
    torch.manual_seed(1)
    net = perceptual.build_lpips('random')
    x, y = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    losses = image_losses.ImageLosses(loss_res=32, l2_weight=0.0, lpips_weight=0.8, lpips_net=net)
    ref = net(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)).flatten()
    torch.testing.assert_close(losses.terms(x, y)['lpips'], ref)
    torch.testing.assert_close(losses(x, y), 0.8 * ref)


def test_a_term_without_its_network_has_weight_zero():
    losses = image_losses.ImageLosses(loss_res=16, l2_weight=1.0, lpips_weight=0.8, id_weight=0.1)
    assert (losses.weights.lpips, losses.weights.id) == (0.0, 0.0)
