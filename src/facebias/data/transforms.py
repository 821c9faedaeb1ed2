"""Batch transforms as tensor ops, run after the batch reaches its device (an epoch is slicing + these)."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")


def to_grayscale(images: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Replace the images whose flag is 1 by their luminance in all three channels (uint8 NHWC in/out)."""
    if not bool(flags.any()):
        return images
    weights = torch.tensor(LUMA, device=images.device)
    luma = (images.float() * weights).sum(-1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return torch.where(flags.view(-1, 1, 1, 1).bool(), luma.expand_as(images), images)


def to_model_input(images: torch.Tensor, channels_last: bool = False, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   size: int | None = None) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW, the input every classifier in facebias expects (ImageNet's mean and
    std); a model the user brings passes its own, and its input ``size`` (bilinear, antialiased, when the images
    have another size)."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
    mean = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def to_display(x: torch.Tensor) -> torch.Tensor:
    """Normalised float NCHW -> float NCHW in [0, 1], for image grids."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip a random half of the batch left-right (faces are symmetric enough; labels do not change)."""
    flip = torch.rand(x.shape[0], generator=generator).to(x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
