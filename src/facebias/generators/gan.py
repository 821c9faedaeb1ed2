"""A GAN run trained by train.py (``+experiment=gan``, ``gan_p80``, ...) as a Generator (issue 11; design §2, §6).

``GanRunGenerator(run=<dir>)`` reads the run's manifest, checks it trained a FaceGAN, and loads only the EMA
generator's weights from its checkpoint with ``torch.load(..., weights_only=True)``. Latents are z ~ N(0, I)
(``normal_latents``, the interface's convention); faces come out as uint8 at the GAN's own size, which is the
run's ``data.image_size`` and crop, or resized (PIL bilinear, as the image cache) to another ``image_size``.
Config: ``{kind: gan, run: <dir>}``, e.g. ``debias.generator.kind=gan +debias.generator.run=<dir>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Generator, check_image_options, crop_and_resize, normal_latents

GAN_TARGET = "facebias.models.gan.FaceGAN"
RENDERER_OPTIONS = ("jitter", "keep_attributes")  # the renderer's options conf/debias/latent.yaml sets by default


class NotAGanRunError(ValueError):
    """The run given as a generator did not train a GAN."""


class GanRunGenerator(Generator):
    """The EMA generator of a FaceGAN run.

    run: the train.py run dir; checkpoint: best (by the quality figure) or last; image_size: output size
    (default: the GAN's); crop: must be the crop the GAN's training faces had (default: that crop);
    device: where the forward passes run.
    """

    def __init__(self, run: str | Path | None = None, checkpoint: str = "best", image_size: int | None = None,
                 crop: str | None = None, device: str = "cpu"):
        import torch

        from facebias.models.gan import DCGenerator, NotAGanCheckpointError, ema_state_dict
        from facebias.runs import locate_run

        if run is None:
            raise ValueError("generator kind 'gan' needs run=<the train.py dir of a GAN run> (python train.py "
                             "+experiment=gan), e.g. debias.generator.kind=gan +debias.generator.run=outputs/train/...")
        trained = locate_run(run=str(run), checkpoint=checkpoint)
        target = str(trained.config.get("model", {}).get("_target_", ""))
        if target != GAN_TARGET:
            raise NotAGanRunError(
                f"generator run={run}: {trained.run_dir} trained {target or 'an unknown model'}, not a GAN "
                f"({GAN_TARGET}), so it has no generator to sample; train one with `python train.py +experiment=gan` "
                "(or gan_p80, gan_gray_p80) and pass that run dir")
        try:
            checkpoint_data = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)
        except Exception as error:
            raise NotAGanRunError(f"cannot read {trained.checkpoint} with torch.load(weights_only=True): {error}") from error
        hp = checkpoint_data.get("hyper_parameters") or {}
        try:
            weights = ema_state_dict(checkpoint_data.get("state_dict") or {})
        except NotAGanCheckpointError as error:
            raise NotAGanRunError(f"{trained.checkpoint}: {error}") from None
        self.module = DCGenerator(int(hp["latent_dim"]), int(hp["g_width"]), int(hp["image_size"]),
                                  int(hp.get("max_width", 512)))
        self.module.load_state_dict(weights)
        self.device = torch.device(device)
        self.module = self.module.to(self.device).eval().requires_grad_(False)
        self.run_dir, self.checkpoint = trained.run_dir, trained.checkpoint
        self.latent_dim = int(hp["latent_dim"])
        self.native_size = int(hp["image_size"])
        data_crop = str(trained.config.data.get("crop", "celeba"))
        crop = data_crop if crop is None else crop
        image_size = self.native_size if image_size is None else image_size
        check_image_options(image_size, crop)
        if crop != data_crop:
            raise ValueError(f"crop={crop!r}, but the GAN of {trained.run_dir} learnt faces cropped with "
                             f"data.crop={data_crop!r}; its pictures cannot be re-cropped: use crop={data_crop!r}")
        self.image_size, self.crop = int(image_size), crop

    @classmethod
    def from_options(cls, **options) -> GanRunGenerator:
        """build_generator's entry: drops the renderer-only options the debias config sets by default."""
        for name in RENDERER_OPTIONS:
            options.pop(name, None)
        return cls(**options)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """z ~ N(0, I), the prior the GAN was trained with."""
        return normal_latents(n, seed, self.latent_dim)

    def _render_batch(self, z: np.ndarray) -> np.ndarray:
        import torch

        from facebias.models.gan import to_uint8

        with torch.inference_mode():
            pictures = to_uint8(self.module(torch.from_numpy(z).to(self.device))).cpu().numpy()
        if self.image_size == self.native_size:
            return pictures
        return crop_and_resize(pictures, self.image_size, "none")  # square already: a resize only
