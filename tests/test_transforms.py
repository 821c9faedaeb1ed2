"""The on-device batch transforms against hand-computed values (they replaced per-image PIL work)."""

from __future__ import annotations

import torch

from facebias.data.transforms import random_hflip, to_display, to_grayscale, to_model_input


def test_grayscale_replaces_only_flagged_images_by_bt601_luminance():
    images = torch.zeros(2, 1, 2, 3, dtype=torch.uint8)
    images[:, 0, 0] = torch.tensor([200, 100, 50], dtype=torch.uint8)
    images[:, 0, 1] = torch.tensor([10, 20, 255], dtype=torch.uint8)
    out = to_grayscale(images, torch.tensor([True, False]))
    # 0.299*200 + 0.587*100 + 0.114*50 = 124.2 -> 124; 0.299*10 + 0.587*20 + 0.114*255 = 43.79 -> 44
    assert out[0, 0, 0].tolist() == [124, 124, 124]
    assert out[0, 0, 1].tolist() == [44, 44, 44]
    assert torch.equal(out[1], images[1])
    assert to_grayscale(images, torch.tensor([False, False])) is images


def test_model_input_is_imagenet_normalised_nchw_and_display_inverts_it():
    images = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    x = to_model_input(images, channels_last=True)
    assert x.shape == (1, 3, 2, 2) and x.is_contiguous(memory_format=torch.channels_last)
    expected = [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]
    assert torch.allclose(x[0, :, 0, 0], torch.tensor(expected))
    assert torch.allclose(to_display(x), torch.ones(1, 3, 2, 2))


def test_hflip_flips_whole_images_only():
    x = torch.arange(2 * 1 * 1 * 3, dtype=torch.float32).view(2, 1, 1, 3).expand(2, 1, 2, 3).clone()
    generator = torch.Generator().manual_seed(0)
    out = random_hflip(x, generator)
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
