"""A generator the user brings: a Python file, a class name and a state_dict.

SECURITY: importing the user's file is the only outside code facebias executes (here, and for a model the
user brings to dissect.py: both go through the one loader, ``facebias.usercode``). The file is imported with
importlib exactly as given (its top-level code runs), so pass only files you trust. The weights themselves
are read with ``torch.load(..., weights_only=True)``, which unpickles tensors and plain containers only,
never code.

Convention the class must follow: an ``nn.Module`` whose forward maps latents (n, latent_dim) float32
to images (n, 3, H, W) in [-1, 1] (values outside are clipped). Latents are sampled from N(0, I).
A square output is taken to be the face crop already (a GAN trained on cached crops) and is only
resized to image_size if needed, with PIL's bilinear filter as the image cache resizes; an output in
CelebA's aligned 178x218 frame (W x H) gets the data's crop as well.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from facebias.faces.geometry import ALIGNED_HEIGHT, ALIGNED_WIDTH
from facebias.usercode import UserCodeError, build_module, import_user_class, load_weights, read_state_dict

from .base import Generator, check_image_options, crop_and_resize, normal_latents

log = logging.getLogger(__name__)


class GeneratorLoadError(UserCodeError):
    """The user's generator file, class, weights or output convention is unusable; the message says why."""


class UserGenerator(Generator):
    """A user's generator module (see the module docstring for the convention and the security note).

    file, class_name: the Python file and the nn.Module class in it; state_dict: a path (or a mapping);
    init_kwargs: keyword arguments of the class's constructor; device: where the forward passes run.
    Loading checks everything once, including a forward pass on two latents, so a wrong file, class,
    key set, latent_dim or output shape fails here with a message rather than mid-stage.
    """

    def __init__(self, file: str | Path, class_name: str, state_dict, latent_dim: int, image_size: int = 64,
                 crop: str = "celeba", init_kwargs: Mapping | None = None, device: str = "cpu"):
        import torch

        check_image_options(image_size, crop)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim={latent_dim!r} must be a positive int")
        self.latent_dim, self.image_size, self.crop = latent_dim, image_size, crop
        self.file, self.class_name, self.device = Path(file), class_name, torch.device(device)
        cls = import_user_class(file, class_name, label=f"generator file {Path(file).expanduser()}",
                                error=GeneratorLoadError)
        module = build_module(cls, init_kwargs, class_name=class_name, file=file, kwargs_option="init_kwargs",
                              error=GeneratorLoadError)
        weights = read_state_dict(state_dict, error=GeneratorLoadError, label=None if isinstance(state_dict, Mapping)
                                  else f"generator state_dict file {Path(state_dict).expanduser()}")
        load_weights(module, weights, label="state_dict", owner=f"{class_name} from {file}", error=GeneratorLoadError)
        self.module = module.to(self.device).eval()
        self._resize_logged = False
        probe = self._forward(self.sample(2, seed=0))
        self.output_hw = tuple(probe.shape[1:3])

    def sample(self, n: int, seed: int) -> np.ndarray:
        """z ~ N(0, I), the prior the convention assumes."""
        return normal_latents(n, seed, self.latent_dim)

    def _forward(self, z: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 at the module's own resolution: [-1, 1] -> round((x + 1) * 127.5)."""
        import torch

        with torch.inference_mode():
            try:
                images = self.module(torch.from_numpy(z).to(self.device))
            except Exception as err:
                raise GeneratorLoadError(
                    f"{self.class_name}.forward failed on latents of shape {tuple(z.shape)}: "
                    f"{type(err).__name__}: {err} (is latent_dim={self.latent_dim} right?)"
                ) from err
            if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[:2] != (len(z), 3):
                shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
                raise GeneratorLoadError(
                    f"{self.class_name}.forward returned {shape} for {len(z)} latents; the convention is images "
                    f"(n, 3, H, W) in [-1, 1]"
                )
            if not torch.isfinite(images).all():
                raise GeneratorLoadError(f"{self.class_name}.forward returned NaN or infinite pixels")
            pixels = ((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
            return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def _render_batch(self, z: np.ndarray) -> np.ndarray:
        pictures = self._forward(z)
        height, width = pictures.shape[1:3]
        if height == width:
            if height == self.image_size:
                return pictures
            self._log_resize(f"resizing {self.class_name}'s {width}x{height} output to {self.image_size}px "
                             "(PIL bilinear, as the image cache resizes)")
            return crop_and_resize(pictures, self.image_size, "none")  # centre crop of a square: identity
        if self.crop == "celeba" and (height, width) != (ALIGNED_HEIGHT, ALIGNED_WIDTH):
            raise GeneratorLoadError(
                f"{self.class_name} outputs {width}x{height} images: neither a square face crop nor CelebA's "
                f"aligned {ALIGNED_WIDTH}x{ALIGNED_HEIGHT} frame, so crop='celeba' cannot apply"
            )
        self._log_resize(f"cropping ({self.crop}) and resizing {self.class_name}'s {width}x{height} output "
                         f"to {self.image_size}px, as the image cache does")
        return crop_and_resize(pictures, self.image_size, self.crop)

    def _log_resize(self, message: str) -> None:
        if not self._resize_logged:
            log.info(message)
            self._resize_logged = True
