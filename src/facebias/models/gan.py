"""FaceGAN: a DCGAN-family GAN trained by train.py on the classifiers' own data pipeline (issue 11; design §2, §6).

- **Networks.** ``DCGenerator``: z (latent_dim) -> 4x4 by a transposed conv, then stride-2 transposed convs with
  BatchNorm + ReLU up to ``image_size`` (16, 32, 64 or 128 px; tanh output in [-1, 1]). ``DCDiscriminator``: the
  mirror image, stride-2 convs with spectral normalisation and LeakyReLU(0.2), no BatchNorm, one logit. The
  channels at resolution r are ``width * image_size / (2 r)`` (DCGAN's 8w-4w-2w-w at 64 px), capped at
  ``max_width``.
- **Training** (manual optimisation): per batch, one D step on real + G(z).detach() (one forward of both halves
  together) and, every ``n_critic`` batches, one G step through D on the same G(z); hinge loss, or the
  non-saturating loss with ``loss=nonsaturating``. After every G step an EMA copy of G (``generator_ema``,
  buffers copied) is updated; every sample this module hands out comes from the EMA copy in eval mode.
- **Data.** The classifiers' batch dicts: uint8 NHWC images, the planted grayscale applied where ``gray`` says,
  normalised on the device to [-1, 1] (``preprocess``); optional left-right flips of the real images.
- **Hyperparameters** are plain values (checkpoints load with ``weights_only=True``): the optimizers are
  ``_target_`` dicts built in ``configure_optimizers``, and ``quality`` is the ``_target_`` config of the
  evaluator (``facebias.generators.quality.GanQuality``), built on first use, never at construction.
- **Every validation epoch:** D's mean logit on real validation faces and on G(z); the sample grid of the same
  fixed z (``grid_z``, a buffer saved in the checkpoint) as ``<run>/samples/epoch_NNN.png`` and W&B image
  ``samples/grid``; the quality figures (``val/quality``: classifier-FID with a classifier run, else pixel-FD;
  the checkpoint monitor of conf/callbacks/gan.yaml, lower is better).
- **End of training** (``run_metrics``, called by training.task.final_metrics on the best checkpoint): the same
  figures on ``quality.n_final`` samples, ``samples/best.png``, returned for metrics.json.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from facebias.data.transforms import to_grayscale

log = logging.getLogger(__name__)

LOSSES = ("hinge", "nonsaturating")
SIZES = (16, 32, 64, 128)
DEFAULT_G_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 2e-4, "betas": [0.0, 0.9]}
DEFAULT_D_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 2e-4, "betas": [0.0, 0.9]}
GRID_SEED = 1234  # the fixed z of the sample grid (the same in every run with the same latent_dim and n_grid)


class NotAGanCheckpointError(ValueError):
    """A checkpoint without the EMA generator this module writes."""


def _levels(image_size: int) -> int:
    if image_size not in SIZES:
        raise ValueError(f"model.image_size={image_size!r}: the DCGAN networks are built for {SIZES} px "
                         "(data.image_size must be one of them)")
    return int(math.log2(image_size // 4))


def _channels(width: int, image_size: int, resolution: int, max_width: int) -> int:
    return int(min(max_width, width * image_size // (2 * resolution)))


class DCGenerator(nn.Module):
    """z (n, latent_dim) -> images (n, 3, S, S) in [-1, 1]: DCGAN's generator at S = 16 ... 128."""

    def __init__(self, latent_dim: int = 128, width: int = 48, image_size: int = 64, max_width: int = 512):
        super().__init__()
        self.latent_dim, self.image_size = int(latent_dim), int(image_size)
        levels = _levels(image_size)
        widths = [_channels(width, image_size, 4 * 2**i, max_width) for i in range(levels)]
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))


class DCDiscriminator(nn.Module):
    """images (n, 3, S, S) in [-1, 1] -> (n,) logits: DCGAN's discriminator with spectral norm, no BatchNorm."""

    def __init__(self, width: int = 48, image_size: int = 64, max_width: int = 512, spectral_norm: bool = True):
        super().__init__()
        sn = nn.utils.spectral_norm if spectral_norm else (lambda m: m)
        levels = _levels(image_size)
        # resolution after each stride-2 conv: S/2, S/4, ..., 4
        widths = [_channels(width, image_size, image_size // 2**(i + 1), max_width) for i in range(levels)]
        layers: list[nn.Module] = [sn(nn.Conv2d(3, widths[0], 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [sn(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
        layers += [sn(nn.Conv2d(widths[-1], 1, 4, 1, 0))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape[0])


def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """D's loss from its logits on real and generated images (hinge or non-saturating)."""
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    """G's loss from D's logits on generated images: -D (hinge) or softplus(-D) (non-saturating)."""
    if kind == "hinge":
        return -fake.mean()
    return F.softplus(-fake).mean()


def to_unit_range(images: torch.Tensor, gray: torch.Tensor | None = None, channels_last: bool = False) -> torch.Tensor:
    """uint8 NHWC faces -> float NCHW in [-1, 1] (the planted grayscale applied first where ``gray`` says)."""
    if gray is not None:
        images = to_grayscale(images, gray)
    x = images.permute(0, 3, 1, 2).float().mul_(2.0 / 255.0).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float NCHW in [-1, 1] -> uint8 NHWC (clipped), the pixels a generator hands out."""
    return ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """(n, S, S, 3) uint8 -> one (rows*(S+pad)+pad, cols*(S+pad)+pad, 3) uint8 picture."""
    n, size = images.shape[0], images.shape[1]
    columns = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    step = size + pad
    grid = np.full((rows * step + pad, columns * step + pad, 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[pad + r * step: pad + r * step + size, pad + c * step: pad + c * step + size] = image
    return grid


def save_png(picture: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(picture).save(tmp, format="PNG")
    tmp.replace(path)
    return path


EMA_PREFIX = "generator_ema."  # FaceGAN.generator_ema in a state_dict: what a generator run is sampled from


def ema_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The EMA generator's weights out of a FaceGAN state_dict (keys without the ``generator_ema.`` prefix)."""
    found = {key[len(EMA_PREFIX):]: value for key, value in state_dict.items() if key.startswith(EMA_PREFIX)}
    if not found:
        raise NotAGanCheckpointError("the checkpoint holds no generator_ema.* weights: it was not written by FaceGAN")
    return found


class FaceGAN(pl.LightningModule):
    def __init__(self, targets: Sequence[str] = ("Male",), image_size: int = 64, latent_dim: int = 128,
                 g_width: int = 48, d_width: int = 48, max_width: int = 512, loss: str = "hinge",
                 spectral_norm: bool = True, g_optimizer: Mapping[str, Any] | None = None,
                 d_optimizer: Mapping[str, Any] | None = None, n_critic: int = 1, ema_decay: float = 0.999,
                 hflip: bool = True, n_grid: int = 64, quality: Mapping[str, Any] | None = None,
                 channels_last: bool = False):
        super().__init__()
        targets = [str(t) for t in targets]  # kept for run.json/analyses; a GAN has no heads
        g_optimizer = self._target_dict(DEFAULT_G_OPTIMIZER if g_optimizer is None else g_optimizer, "g_optimizer")
        d_optimizer = self._target_dict(DEFAULT_D_OPTIMIZER if d_optimizer is None else d_optimizer, "d_optimizer")
        quality = None if quality is None else self._plain(quality)
        if loss not in LOSSES:
            raise ValueError(f"model.loss={loss!r}: use one of {LOSSES}")
        for name, value in (("latent_dim", latent_dim), ("g_width", g_width), ("d_width", d_width),
                            ("n_critic", n_critic), ("n_grid", n_grid), ("max_width", max_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name}={value!r} must be a positive int")
        if not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"model.ema_decay={ema_decay!r} must lie in [0, 1)")
        _levels(image_size)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.targets = targets
        self.generator = DCGenerator(latent_dim, g_width, image_size, max_width)
        self.discriminator = DCDiscriminator(d_width, image_size, max_width, spectral_norm)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)  # eval mode in generate()
        grid = torch.randn(n_grid, latent_dim, generator=torch.Generator().manual_seed(GRID_SEED))
        self.register_buffer("grid_z", grid)  # saved in the checkpoint: the same z every epoch, resumed too
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self._evaluator = None
        self._val_logits: list[torch.Tensor] = []

    # -- plain hyperparameters --------------------------------------------------------------------------
    @staticmethod
    def _plain(value: Any) -> Any:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
        if isinstance(value, Mapping):
            return {str(k): FaceGAN._plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [FaceGAN._plain(v) for v in value]
        return value

    @classmethod
    def _target_dict(cls, value: Any, name: str) -> dict[str, Any]:
        plain = cls._plain(value)
        if not isinstance(plain, dict) or not plain.get("_target_"):
            raise TypeError(f"model.{name} must be a config with a _target_ (e.g. {{_target_: torch.optim.Adam, "
                            f"lr: 2e-4, betas: [0.0, 0.9]}}), not {value!r}")
        return plain

    # -- sampling -----------------------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return int(self.hparams.latent_dim)

    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        """(n, latent_dim) z ~ N(0, I), a pure function of (n, seed), on the CPU."""
        return torch.randn(int(n), self.latent_dim, generator=torch.Generator().manual_seed(int(seed)))

    @torch.no_grad()
    def generate(self, z: torch.Tensor | np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 faces (n, S, S, 3) of the EMA generator (eval mode) for latents z; batched, any device."""
        z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z)
        g = self.generator_ema
        was_training = g.training
        g.eval()
        device = next(g.parameters()).device
        try:
            out = [to_uint8(g(z[i:i + batch_size].to(device=device, dtype=torch.float32))).cpu()
                   for i in range(0, z.shape[0], batch_size)]
        finally:
            g.train(was_training)
        size = int(self.hparams.image_size)
        return torch.cat(out).numpy() if out else np.zeros((0, size, size, 3), dtype=np.uint8)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] of the EMA generator (NCHW)."""
        return self.generator_ema(z)

    # -- training -----------------------------------------------------------------------------------------
    def preprocess(self, batch: dict, augment: bool = False) -> dict:
        """A uint8 batch dict -> the same dict with ``image`` as D's input: [-1, 1] NCHW on the batch's device
        (planted grayscale applied; with ``augment`` and ``hflip``, a random half flipped left-right)."""
        images = batch["image"]
        if images.dtype != torch.uint8:
            return batch
        x = to_unit_range(images, batch.get("gray"), self.hparams.channels_last)
        if augment and self.hparams.hflip:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        return {**batch, "image": x}

    def _noise(self, n: int, device) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=device)

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        real = self.preprocess(batch, augment=True)["image"]
        values = self.adversarial_step(real, opt_g, opt_d, (batch_idx + 1) % self.hparams.n_critic == 0,
                                       self.manual_backward)
        self.log_dict(values, prog_bar=False, on_step=True, on_epoch=True, batch_size=real.shape[0])

    def adversarial_step(self, real: torch.Tensor, opt_g, opt_d, g_step: bool = True,
                         backward=None) -> dict[str, torch.Tensor]:
        """One D step on real + G(z), then (``g_step``) one G step through D on the same G(z) and the EMA update.

        ``real``: D's input ([-1, 1] NCHW); ``backward``: how a loss is backpropagated (Lightning's
        ``manual_backward`` in training; ``Tensor.backward`` in bench/bench_gan.py, which times this very step
        on tensors in memory). Returns the detached losses and D's mean logits.
        """
        backward = backward or (lambda loss: loss.backward())
        n = real.shape[0]
        fake = self.generator(self._noise(n, real.device))
        if self.hparams.channels_last:
            fake = fake.contiguous(memory_format=torch.channels_last)
        kind = self.hparams.loss
        # D: real and generated halves in one forward (no BatchNorm in D, so this equals two forwards)
        logits = self.discriminator(torch.cat([real, fake.detach()])).float()
        d_real, d_fake = logits[:n], logits[n:]
        loss_d = d_loss(d_real, d_fake, kind)
        opt_d.zero_grad(set_to_none=True)
        backward(loss_d)
        opt_d.step()
        values = {"train/loss_d": loss_d.detach(), "train/d_real": d_real.detach().mean(),
                  "train/d_fake": d_fake.detach().mean()}
        if g_step:
            self.discriminator.requires_grad_(False)  # G's step needs gradients through D, not of D
            try:
                loss_g = g_loss(self.discriminator(fake).float(), kind)
                opt_g.zero_grad(set_to_none=True)
                backward(loss_g)
                opt_g.step()
            finally:
                self.discriminator.requires_grad_(True)
            self.update_ema()
            values["train/loss_g"] = loss_g.detach()
        return values

    @torch.no_grad()
    def update_ema(self) -> None:
        """generator_ema <- decay * ema + (1 - decay) * G (decay warmed up as min(decay, (1+t)/(10+t)));
        BatchNorm's running statistics are copied."""
        t = int(self.ema_updates)
        decay = min(float(self.hparams.ema_decay), (1.0 + t) / (10.0 + t))
        for ema, live in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            ema.lerp_(live.detach(), 1.0 - decay)
        for ema, live in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            ema.copy_(live)
        self.ema_updates += 1

    def configure_optimizers(self):
        """G's and D's optimizers from their ``_target_`` configs (extra arguments such as betas pass through)."""
        from hydra.utils import instantiate

        def build(config, params):
            return instantiate({**config, "_partial_": True})(params=params)

        return [build(self.hparams.g_optimizer, self.generator.parameters()),
                build(self.hparams.d_optimizer, self.discriminator.parameters())]

    # -- validation: D on held-out faces, the sample grid, the quality figures -----------------------------
    def validation_step(self, batch, batch_idx):
        real = self.preprocess(batch)["image"]
        fake = self.generator_ema(self._noise(real.shape[0], real.device))
        self._val_logits.append(torch.stack([self.discriminator(real).float().mean(),
                                             self.discriminator(fake).float().mean()]).cpu())

    def on_validation_epoch_end(self) -> None:
        if self._val_logits:
            means = torch.stack(self._val_logits).mean(0)
            self._val_logits.clear()
            self.log_dict({"val/d_real": float(means[0]), "val/d_fake_ema": float(means[1])})
        if self.trainer.sanity_checking:
            return
        self._log_grid(f"epoch_{self.current_epoch:03d}.png")
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        figures = self.evaluator().evaluate(self, datamodule, final=False)
        self.log_dict({f"val/{k}": float(v) for k, v in flat_figures(figures).items()})

    def _run_dir(self) -> Path | None:
        """The run dir: where the checkpoints go (``<run>/checkpoints``), else the Hydra job's output dir."""
        callback = getattr(self.trainer, "checkpoint_callback", None)
        dirpath = getattr(callback, "dirpath", None)
        if dirpath and Path(dirpath).name == "checkpoints":
            return Path(dirpath).parent
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
        root = getattr(self.trainer, "default_root_dir", None)
        return Path(root) if root and "${" not in str(root) else None

    def _log_grid(self, name: str) -> None:
        picture = image_grid(self.generate(self.grid_z))
        run_dir = self._run_dir()
        if run_dir is not None and self.trainer.is_global_zero:
            save_png(picture, run_dir / "samples" / name)
        from pytorch_lightning.loggers import WandbLogger

        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("samples/grid", [picture], caption=[f"epoch {self.current_epoch}, fixed z"])

    def evaluator(self):
        """The quality evaluator of ``hparams.quality`` (a ``_target_`` config), built once on first use."""
        if self._evaluator is None:
            from hydra.utils import instantiate

            config = self.hparams.quality
            if config is None:
                from types import SimpleNamespace

                self._evaluator = SimpleNamespace(evaluate=lambda *a, **k: {})
                log.info("model.quality is null: no quality figures (and nothing for a checkpoint to monitor)")
            else:
                self._evaluator = instantiate(config, _convert_="all")
        return self._evaluator

    # -- end of training --------------------------------------------------------------------------------
    def run_metrics(self, datamodule, out: Path) -> dict[str, Any]:
        """The GAN's part of metrics.json (training.task.final_metrics calls it on the best checkpoint):
        the quality figures on ``quality.n_final`` samples and ``samples/best.png`` of the fixed z."""
        out = Path(out)
        grid = save_png(image_grid(self.generate(self.grid_z)), out / "samples" / "best.png")
        figures = self.evaluator().evaluate(self, datamodule, final=True)
        result = {"model": "gan", "quality": figures, "samples": str(grid.relative_to(out)),
                  "latent_dim": self.latent_dim, "image_size": int(self.hparams.image_size),
                  "ema_updates": int(self.ema_updates)}
        log.info("GAN quality (best checkpoint): %s", ", ".join(
            f"{k} {v:.4g}" for k, v in flat_figures(figures).items() if isinstance(v, float)))
        _log_final_to_wandb(result, grid)
        return result


def flat_figures(figures: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number of a nested figures dict as ``a/b`` keys (what is logged per epoch)."""
    flat: dict[str, float] = {}
    for key, value in figures.items():
        if key == "settings":  # what was measured how, not a figure
            continue
        if isinstance(value, Mapping):
            flat.update(flat_figures(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool):
            if np.isfinite(float(value)):
                flat[f"{prefix}{key}"] = float(value)
    return flat


def _log_final_to_wandb(result: Mapping[str, Any], grid: Path) -> None:
    """The final figures into the active W&B run (the train stage's session), if there is one."""
    import sys

    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb is not None else None
    if run is None:
        return
    run.summary.update({f"final/{k}": v for k, v in flat_figures(result.get("quality") or {}).items()})
    run.log({"samples/best": wandb.Image(str(grid), caption="best checkpoint, fixed z")})
