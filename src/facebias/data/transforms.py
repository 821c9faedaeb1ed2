"""Batch transforms as tensor ops, run after the batch reaches its device (an epoch is slicing + these)."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")
GRAY_TOLERANCE = 6.0  # mean per-pixel channel spread (0..255) below which a face counts as grayscale


def _constant(values, device: torch.device, shape=(1, 3, 1, 1)) -> torch.Tensor:
    """A small constant on ``device`` without a host-device sync: ``torch.tensor(..., device=cuda)`` waits for
    every queued kernel each step (it copies from pageable memory); ``non_blocking`` does not."""
    return torch.tensor(values, dtype=torch.float32).view(shape).to(device, non_blocking=True)


def to_grayscale(images: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Replace the images whose flag is 1 by their luminance in all three channels (uint8 NHWC in/out)."""
    if images.device.type == "cpu" and not bool(flags.any()):  # on a GPU, any() would sync every step
        return images
    weights = _constant(LUMA, images.device, shape=(3,))
    luma = (images.float() * weights).sum(-1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return torch.where(flags.view(-1, 1, 1, 1).bool(), luma.expand_as(images), images)


def channel_spread(images: torch.Tensor) -> torch.Tensor:
    """(n,) float: each uint8 NHWC face's mean per-pixel channel spread (max - min over R, G, B; 0..255).
    Exactly 0 for the planted grayscale, far above for colour faces: the one definition of "grayscale"
    that the GAN's quality figures and the de-biasing stage's pixel rule share."""
    values = images.to(torch.int16)
    return (values.amax(-1) - values.amin(-1)).flatten(1).float().mean(1)


def to_model_input(images: torch.Tensor, channels_last: bool = False, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   size: int | None = None) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW, the input every classifier in facebias expects (ImageNet's mean and
    std); a model the user brings passes its own, and its input ``size`` (bilinear, antialiased, when the images
    have another size)."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
    x = (x - _constant(mean, x.device)) / _constant(std, x.device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def to_display(x: torch.Tensor) -> torch.Tensor:
    """Normalised float NCHW -> float NCHW in [0, 1], for image grids."""
    return (x * _constant(IMAGENET_STD, x.device) + _constant(IMAGENET_MEAN, x.device)).clamp(0, 1)


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip a random half of the batch left-right (faces are symmetric enough; labels do not change)."""
    flip = torch.rand(x.shape[0], generator=generator).to(x.device, non_blocking=True) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
