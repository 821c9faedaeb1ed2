"""The face GAN (issue 11): networks, the adversarial step, the quality figures on planted cases, the generator
read back from a run, and `train.py +experiment=gan` end to end at 16 px (fit, checkpoints, resume)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

from facebias.debias.hyperplanes import fit_hyperplane
from facebias.generators import GanRunGenerator, NotAGanRunError, build_generator
from facebias.generators.quality import (
    GanQuality,
    attribute_rates,
    frechet_distance,
    grayscale_flags,
    knn_precision_recall,
    knn_radii,
)
from facebias.models.gan import DCDiscriminator, DCGenerator, FaceGAN, d_loss, g_loss
from facebias.runs import RunRecord

CLASSIFIER = "facebias.models.classifier.AttributeClassifier"
GAN = "facebias.models.gan.FaceGAN"
# tiny GAN runs: 16 px, narrow networks, a few batches; SynthFaces as conftest's TINY makes it (1200 faces)
GAN_TINY = [
    "+experiment=gan",
    "data.synth.n_faces=1200",
    "data.image_size=16",
    "data.batch_size=32",
    "model.g_width=16",
    "model.d_width=16",
    "model.quality.n_samples=120",
    "model.quality.n_final=160",
    "+trainer.limit_train_batches=3",
    "trainer.accelerator=cpu",
    "callbacks.progress_bar=null",
]


# ------------------------------------------------------------------------------------------------ helpers

def tiny_gan(**overrides) -> FaceGAN:
    torch.manual_seed(0)
    options = {"image_size": 16, "g_width": 8, "d_width": 8, "latent_dim": 16, "n_grid": 4, "quality": None}
    return FaceGAN(**{**options, **overrides})


def save_run(run_dir: Path, model, config: dict) -> Path:
    """A run dir as train.py leaves it (run.json, checkpoints/best.ckpt and last.ckpt), written here directly."""
    import pytorch_lightning as pl

    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
               "pytorch-lightning_version": pl.__version__}
    for name in ("best", "last"):
        torch.save(payload, run_dir / "checkpoints" / f"{name}.ckpt")
    RunRecord(kind="train", config=config,
              checkpoints={"best": "checkpoints/best.ckpt", "last": "checkpoints/last.ckpt"}).write(run_dir)
    return run_dir


def classifier_run(run_dir: Path, image_size: int = 16) -> Path:
    """A small_cnn AttributeClassifier run (Male, Eyeglasses heads), untrained: a fixed feature map."""
    from facebias.models.classifier import AttributeClassifier

    torch.manual_seed(0)
    model = AttributeClassifier(targets=["Male", "Eyeglasses"], backbone="small_cnn")
    config = {"model": {"_target_": CLASSIFIER, "backbone": "small_cnn"},
              "data": {"targets": ["Male", "Eyeglasses"], "image_size": image_size, "crop": "celeba"}}
    return save_run(run_dir, model, config)


def gan_run(run_dir: Path, model: FaceGAN) -> Path:
    config = {"model": {"_target_": GAN}, "data": {"targets": ["Male"], "image_size": model.hparams.image_size,
                                                   "crop": "celeba"}}
    return save_run(run_dir, model, config)


@pytest.fixture(scope="module")
def faces(data_dir):
    """The tiny SynthFaces set at 16 px, every training face (what +experiment=gan trains on)."""
    from facebias.data.datamodule import FaceDataModule

    dm = FaceDataModule(source="synthfaces", data_dir=str(data_dir), synth={"n_faces": 1200}, image_size=16,
                        progress=False)
    dm.setup()
    return dm


# ----------------------------------------------------------------------------------------------- networks

@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_networks_at_every_size(size):
    g, d = DCGenerator(latent_dim=8, width=4, image_size=size), DCDiscriminator(width=4, image_size=size)
    x = g(torch.randn(2, 8))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1.0  # tanh
    assert d(x).shape == (2,)
    assert any(name.endswith("weight_orig") for name, _ in d.named_parameters())  # spectral norm in D
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())


def test_bad_options_fail_with_the_option_name():
    with pytest.raises(ValueError, match="model.image_size=48"):
        tiny_gan(image_size=48)
    with pytest.raises(ValueError, match="model.loss='wgan'"):
        tiny_gan(loss="wgan")
    with pytest.raises(TypeError, match="model.g_optimizer must be a config with a _target_"):
        tiny_gan(g_optimizer={"lr": 1e-3})


def test_losses_by_hand():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # hinge: mean(relu(1 - real)) + mean(relu(1 + fake)) = (0 + 0.5)/2 + (0 + 1)/2
    assert d_loss(real, fake, "hinge").item() == pytest.approx(0.75)
    assert g_loss(fake, "hinge").item() == pytest.approx(1.0)
    softplus = torch.nn.functional.softplus
    assert d_loss(real, fake, "nonsaturating").item() == pytest.approx(
        (softplus(-real).mean() + softplus(fake).mean()).item())
    assert g_loss(fake, "nonsaturating").item() == pytest.approx(softplus(-fake).mean().item())


def test_adversarial_step_trains_both_networks_and_the_ema():
    model = tiny_gan()
    opt_g, opt_d = model.configure_optimizers()
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    e0 = [p.detach().clone() for p in model.generator_ema.parameters()]
    real = model.preprocess({"image": torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8),
                             "gray": torch.zeros(8, dtype=torch.bool)})["image"]
    assert real.min() >= -1 and real.max() <= 1 and real.shape == (8, 3, 16, 16)
    values = model.adversarial_step(real, opt_g, opt_d, True)
    assert set(values) == {"train/loss_d", "train/d_real", "train/d_fake", "train/loss_g"}
    assert all(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters(), strict=True))
    assert all(p.requires_grad for p in model.discriminator.parameters())  # restored after G's step
    # EMA: the first update (decay warm-up (1+0)/(10+0) = 0.1) moves 90 % of the way to G
    for before, ema, live in zip(e0, model.generator_ema.parameters(), model.generator.parameters(), strict=True):
        assert torch.allclose(ema, 0.1 * before + 0.9 * live.detach(), atol=1e-6)
    assert int(model.ema_updates) == 1
    values = model.adversarial_step(real, opt_g, opt_d, False)  # n_critic: a D step only
    assert "train/loss_g" not in values and int(model.ema_updates) == 1


def test_generate_is_uint8_batched_and_deterministic():
    model = tiny_gan()
    z = model.sample_latents(5, seed=3)
    assert torch.equal(z, model.sample_latents(5, seed=3)) and z.shape == (5, 16)
    a, b = model.generate(z), model.generate(z, batch_size=2)
    assert a.shape == (5, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)  # EMA G in eval mode: a face does not depend on its batch


def test_hparams_are_plain_values():
    from omegaconf import OmegaConf

    quality = OmegaConf.create({"_target_": "facebias.generators.quality.GanQuality", "n_samples": 10,
                                "separability": {"_target_": "facebias.debias.hyperplanes.fit_hyperplane",
                                                 "_partial_": True}})
    model = tiny_gan(quality=quality, g_optimizer=OmegaConf.create({"_target_": "torch.optim.Adam", "lr": 1e-3}))

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str))

    assert plain(dict(model.hparams)), dict(model.hparams)
    assert model.evaluator().n_samples == 10  # built on first use, with the SVM injected from the config
    assert model.evaluator().separability.func is fit_hyperplane


# ------------------------------------------------------------------------------ quality: feature arrays

def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shift = np.array([3.0, 0.0, 0.0, 4.0])  # same covariance, mean moved by |shift|^2 = 25
    assert frechet_distance(a, a + shift) == pytest.approx(25.0, abs=1e-6)
    # N(0, I) vs N(0, 4 I) in d=4: Tr(I + 4I - 2 * 2I) = 4
    assert frechet_distance(a, 2 * rng.standard_normal((4000, 4))) == pytest.approx(4.0, rel=0.1)
    with pytest.raises(ValueError, match="4-d and 3-d"):
        frechet_distance(a, a[:, :3])


def test_knn_precision_recall_known_answers():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((600, 8))
    assert knn_precision_recall(real, real, k=3) == (1.0, 1.0)
    precision, recall = knn_precision_recall(real, rng.standard_normal((600, 8)), k=3)
    assert precision > 0.8 and recall > 0.8  # another draw of the same distribution
    assert knn_precision_recall(real, real + 50.0, k=3) == (0.0, 0.0)  # far away: neither
    # mode collapse: every fake is a near copy of one of 10 real faces -> realistic (precision) but no coverage
    collapsed = real[rng.integers(0, 10, 600)] + 1e-3 * rng.standard_normal((600, 8))
    precision, recall = knn_precision_recall(real, collapsed, k=3)
    assert precision == 1.0 and recall < 0.1
    radii = knn_radii(np.array([[0.0], [1.0], [3.0], [7.0]]), k=1)
    np.testing.assert_allclose(radii, [1.0, 1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="k=4 needs"):
        knn_radii(real[:4], k=4)


def test_attribute_rates_and_grayscale_flags():
    male = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    glasses = np.array([1, 1, 1, 0, 1, 0, 0, 0], dtype=bool)
    rates = attribute_rates({"Male": male, "Eyeglasses": glasses})
    assert rates == {"Male": 0.5, "Eyeglasses": 0.5, "Eyeglasses_given_Male": 0.75, "Eyeglasses_given_not_Male": 0.25}
    from facebias.data.transforms import to_grayscale

    colour = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    colour[..., 0] = 200  # red
    gray = to_grayscale(torch.from_numpy(colour), torch.ones(3, dtype=torch.bool)).numpy()
    assert grayscale_flags(gray).all() and not grayscale_flags(colour).any()


# ----------------------------------------------------------------------- quality: the planted images case

class FacesAsGenerator:
    """A "generator" whose faces are training faces (another draw than the reference's) or uniform noise."""

    def __init__(self, datamodule, kind: str):
        self.datamodule, self.kind = datamodule, kind

    def sample_latents(self, n, seed):
        return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))

    def generate(self, z, batch_size=256):
        n, train = len(z), self.datamodule.dataset("train")
        if self.kind == "noise":
            return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
        idx = np.random.default_rng(123).choice(len(train), size=n, replace=False)
        return train.__getitems__(idx)["image"].numpy()


def test_quality_planted_training_faces_vs_noise(faces, tmp_path):
    quality = GanQuality(classifier_run=str(classifier_run(tmp_path / "clf")), n_samples=300, n_final=300,
                         separability=partial(fit_hyperplane), true_fid=False)
    real = quality.evaluate(FacesAsGenerator(faces, "faces"), faces)
    noise = quality.evaluate(FacesAsGenerator(faces, "noise"), faces)
    assert real["settings"]["quality_figure"] == "classifier-FID" and real["quality"] == real["cfid"]
    assert real["precision"] > 0.85 and real["recall"] > 0.85, real  # measured 0.95, 0.95
    assert noise["precision"] < 0.05 and noise["recall"] < 0.05, noise  # measured 0, 0
    assert real["cfid"] < 0.02 * noise["cfid"], (real["cfid"], noise["cfid"])  # measured 0.003 vs 1.57
    assert real["pixel_fd"] < 0.02 * noise["pixel_fd"]
    # the rates of training faces under the classifier are the training faces' rates (same classifier)
    for name, rate in real["rates"]["train"].items():
        if np.isfinite(rate):
            assert abs(real["rates"]["generated"][name] - rate) < 0.1, name
    assert set(real["rates"]["train_true"]) >= {"Male", "Eyeglasses", "Eyeglasses_given_Male"}
    # the same faces as the reference (the same seeded draw): exactly zero and one
    same = GanQuality(classifier_run=str(tmp_path / "clf"), n_samples=300, n_final=300, true_fid=False)
    same_faces = same.reference(faces, 300)["images"]
    figures = same.evaluate(type("Same", (), {"sample_latents": lambda self, n, s: torch.zeros(n, 2),
                                             "generate": lambda self, z, batch_size=256: same_faces})(), faces)
    assert figures["cfid"] == pytest.approx(0.0, abs=1e-6) and (figures["precision"], figures["recall"]) == (1.0, 1.0)


class TintedGrayscale:
    """A "generator" of the grayscale family as a GAN makes it: half its faces grayscale with a faint tint
    (channel spread 9, where the planted grayscale has 0), half in colour."""

    def __init__(self, datamodule):
        self.datamodule = datamodule

    def sample_latents(self, n, seed):
        return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))

    def generate(self, z, batch_size=256):
        from facebias.data.transforms import to_grayscale

        train = self.datamodule.dataset("train")
        faces = train.__getitems__(np.arange(len(z)))["image"]
        gray = torch.arange(len(z)) % 2 == 0
        tinted = (to_grayscale(faces, gray).to(torch.int16) + torch.tensor([6, 0, -3]) * gray.view(-1, 1, 1, 1))
        return tinted.clamp(0, 255).to(torch.uint8).numpy()


def test_quality_counts_a_gan_s_tinted_grayscale_faces(data_dir):
    """A grayscale-family GAN's rate of grayscale faces: the pixel rule calibrated on its faces finds the tinted
    half (a fixed tolerance for exact grayscale would find none)."""
    from facebias.data.datamodule import FaceDataModule

    dm = FaceDataModule(source="synthfaces", data_dir=str(data_dir), synth={"n_faces": 1200}, image_size=16,
                        concept="grayscale", p=80, progress=False)
    dm.setup()
    figures = GanQuality(n_samples=200, n_final=200, true_fid=False,
                         separability=partial(fit_hyperplane)).evaluate(TintedGrayscale(dm), dm)
    assert figures["rates"]["generated"]["grayscale"] == pytest.approx(0.5, abs=0.02)
    assert 9 < figures["settings"]["gray_tolerance"] < 26
    assert figures["rates"]["train"]["grayscale"] == pytest.approx(figures["rates"]["train_true"]["grayscale"], abs=0.1)
    fixed = GanQuality(n_samples=200, n_final=200, true_fid=False, gray_tolerance=6.0).evaluate(TintedGrayscale(dm), dm)
    assert fixed["rates"]["generated"]["grayscale"] == 0.0


def test_quality_without_a_classifier_says_so_once(faces, caplog):
    quality = GanQuality(n_samples=50, n_final=50, true_fid="auto")
    with caplog.at_level("INFO", logger="facebias.generators.quality"):
        first = quality.evaluate(FacesAsGenerator(faces, "faces"), faces)
        quality.evaluate(FacesAsGenerator(faces, "faces"), faces, final=True)
    assert set(first) == {"pixel_fd", "quality", "settings"} and first["quality"] == first["pixel_fd"]
    assert first["settings"]["quality_figure"] == "pixel-FD"
    said = [r.getMessage() for r in caplog.records]
    assert sum("no model.quality.classifier_run" in m for m in said) == 1
    assert sum("true FID" in m for m in said) == 1  # skipped (no cached weights here) or computed: one line


def test_a_gan_run_is_not_a_classifier_for_quality(tmp_path):
    with pytest.raises(ValueError, match="not an AttributeClassifier"):
        _ = GanQuality(classifier_run=str(gan_run(tmp_path / "gan", tiny_gan())), n_samples=10).classifier


# --------------------------------------------------------------------------------- the generator of a run

def test_gan_run_generator_loads_the_ema_weights(tmp_path):
    model = tiny_gan()
    opt_g, opt_d = model.configure_optimizers()
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    for _ in range(3):
        model.adversarial_step(real, opt_g, opt_d, True)
    run = gan_run(tmp_path / "gan", model)
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")  # plain values
    assert ckpt["hyper_parameters"]["latent_dim"] == 16
    gen = GanRunGenerator(run=str(run))
    assert (gen.latent_dim, gen.image_size, gen.crop) == (16, 16, "celeba")
    z = gen.sample(6, seed=0)
    assert z.shape == (6, 16) and z.dtype == np.float32
    images = gen.render(z, batch_size=4)
    assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, model.generate(torch.from_numpy(z)))  # the EMA G, not the live one
    # through the factory, as the de-biasing stage builds it (its renderer-only default jitter is ignored)
    built = build_generator({"kind": "gan", "run": str(run), "jitter": 0.1}, image_size=32, crop="celeba")
    assert built.render(z[:2]).shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="data.crop='celeba'"):
        GanRunGenerator(run=str(run), crop="none")
    with pytest.raises(ValueError, match="needs run="):
        build_generator(kind="gan")


def test_a_gan_run_travels_in_halves_and_samples_the_same(tmp_path):
    """scripts/gan_halves.py: what a GPU session brings back (runs.tgz + EMA halves) rebuilds a working run dir."""
    import shutil
    import tarfile

    model = tiny_gan()
    opt_g, opt_d = model.configure_optimizers()
    for _ in range(2):
        model.adversarial_step(torch.rand(4, 3, 16, 16) * 2 - 1, opt_g, opt_d, True)
    run = gan_run(tmp_path / "runs" / "gan", model)
    out = tmp_path / "out"
    script = [sys.executable, str(REPO / "scripts" / "gan_halves.py")]
    subprocess.run([*script, "split", str(run / "checkpoints"), str(out)], check=True, capture_output=True)
    halves = [torch.load(out / f"gan_best_ema_{part}.ckpt", weights_only=True)["state_dict"] for part in "ab"]
    assert halves[0] and halves[1] and not set(halves[0]) & set(halves[1])  # two disjoint, non-empty halves
    with tarfile.open(out / "runs.tgz", "w:gz") as tar:  # as gpu_session.sh packs it: no checkpoints
        tar.add(run, arcname="gan", filter=lambda info: None if "checkpoints" in info.name else info)
    shutil.rmtree(run)
    joined = tmp_path / "train" / "gan_w64"
    subprocess.run([*script, "join", str(out), str(joined)], check=True, capture_output=True)
    z = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    for name in ("best", "last"):
        np.testing.assert_array_equal(GanRunGenerator(run=str(joined), checkpoint=name).render(z),
                                      model.generate(torch.from_numpy(z)))
    again = subprocess.run([*script, "join", str(out), str(joined)], capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr  # never written over
    shutil.copy(out / "gan_best_ema_a.ckpt", out / "gan_best_ema_b.ckpt")
    mixed = subprocess.run([*script, "join", str(out), str(tmp_path / "other")], capture_output=True, text=True)
    assert mixed.returncode != 0 and "share tensors" in mixed.stderr and not (tmp_path / "other").exists()


def test_a_classifier_run_is_not_a_generator(tmp_path):
    run = classifier_run(tmp_path / "clf")
    with pytest.raises(NotAGanRunError, match=r"trained facebias.models.classifier.AttributeClassifier, not a GAN"):
        build_generator(kind="gan", run=str(run))


def test_the_augmentation_key_follows_the_gan_weights(tmp_path):
    """A GAN retrained into the same run dir must not reuse the augmented set of the old weights."""
    from omegaconf import OmegaConf

    from facebias.debias import stage

    run = gan_run(tmp_path / "gan", tiny_gan())
    cfg = OmegaConf.create({"debias": {"generator": {"kind": "gan", "run": str(run)}},
                            "data": {"image_size": 16, "crop": "celeba"}})
    _, before = stage.build_stage_generator(cfg, None)
    _, same = stage.build_stage_generator(cfg, None)
    assert before == same  # unchanged weights: the same key
    gan_run(tmp_path / "gan", tiny_gan(g_width=12))  # retrained in place (other weights, other size)
    later = (run / "checkpoints" / "best.ckpt").stat().st_mtime + 10
    os.utime(run / "checkpoints" / "best.ckpt", (later, later))
    _, after = stage.build_stage_generator(cfg, None)
    assert after["weights"]["checkpoint"] == before["weights"]["checkpoint"]
    assert after != before


# -------------------------------------------------------------------------------------- train.py end to end

def run_gan(root: Path, data_dir: Path, *overrides: str, env: dict | None = None, timeout: int = 600):
    if not any(o.startswith("logger=") for o in overrides):
        overrides = ("logger=none", *overrides)
    cmd = [sys.executable, str(REPO / "train.py"), *GAN_TINY, f"paths.data_dir={data_dir}", *overrides]
    root.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "WANDB_MODE": "disabled", **(env or {})})
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    (run_dir,) = sorted(p.parent for p in root.rglob("metrics.json"))
    return run_dir


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("gan_fit")
    clf = classifier_run(root / "classifier")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb_dir"), "WANDB_SILENT": "true"}
    run_dir = run_gan(root / "train", data_dir, "trainer.max_epochs=2", f"model.quality.classifier_run={clf}",
                      "logger=wandb", env=env)
    return run_dir, clf


@pytest.mark.slow
def test_fit_writes_a_gan_run(fitted):
    run_dir, clf = fitted
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "gan" and metrics["experiment"] == "gan"
    quality = metrics["quality"]
    assert quality["settings"]["quality_figure"] == "classifier-FID"
    assert quality["quality"] == quality["cfid"] and 0 <= quality["precision"] <= 1 and 0 <= quality["recall"] <= 1
    assert {"generated", "train", "train_true"} <= set(quality["rates"]) and "Male" in quality["separability"]
    assert Path(metrics["best_checkpoint"]).name == "best.ckpt"
    for name in ("epoch_000.png", "epoch_001.png", "best.png"):  # the fixed-z grid, every epoch
        assert (run_dir / "samples" / name).is_file(), name
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["hyper_parameters"]["quality"]["classifier_run"] == str(clf)
    assert "val/quality" in str(ckpt["callbacks"])  # the best checkpoint is chosen by the quality figure
    model = FaceGAN.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert model.generate(model.grid_z[:2]).shape == (2, 16, 16, 3)
    assert RunRecord.read(run_dir).status == "finished"


@pytest.mark.slow
def test_quality_script_rescores_a_run_with_score_shares(fitted, tmp_path, data_dir):
    """scripts/gan_quality.py on a trained run: its bins of the Male score add up to the Male rate it reports."""
    run_dir, clf = fitted
    out = tmp_path / "quality.json"
    cmd = [sys.executable, str(REPO / "scripts" / "gan_quality.py"), str(run_dir), "--checkpoint", "last", "--n", "80",
           "--bins", "10", "--classifier-run", str(clf), "--data-dir", str(data_dir), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "disabled"}, timeout=300)
    figures = json.loads(out.read_text())
    assert figures["settings"]["checkpoint"] == "last" and figures["settings"]["n_generated"] == 80
    male = figures["score_shares"]["Male"]
    assert male["edges"][5] == 0.5 and len(male["generated"]) == len(male["train"]) == 10
    for side, rates in (("generated", "generated"), ("train", "train")):
        assert sum(male[side]) == pytest.approx(1.0, abs=1e-3)
        # scores above 0.5 are the faces labelled male: the upper five bins hold exactly the reported rate
        assert sum(male[side][5:]) == pytest.approx(figures["rates"][rates]["Male"], abs=1e-3)


@pytest.mark.slow
def test_fit_logs_losses_grids_and_quality_to_wandb(fitted):
    from wandb_records import find_runs, read_run

    run_dir, _ = fitted
    (path,) = find_runs(run_dir)
    record = read_run(path)
    assert record["job_type"] == "train" and record["group"] == "gan"
    logged = set().union(*record["history"])
    assert {"train/loss_d_epoch", "train/loss_g_epoch", "train/d_real_epoch", "val/d_real"} <= logged, logged
    # (the latent SVMs' accuracy is logged too where the untrained classifier's labels have two classes)
    assert {"val/quality", "val/cfid", "val/precision", "val/recall", "val/pixel_fd",
            "val/rates/generated/Male", "val/rates/train_true/Male"} <= logged, logged
    grids = [step for step in record["history"] if any(key.startswith("samples/grid") for key in step)]
    assert len(grids) == 2  # the fixed-z grid once per epoch
    assert any(key.startswith("samples/best") for key in logged) and "final/quality" in record["summary"]


@pytest.mark.slow
def test_resume_from_last_checkpoint(fitted, tmp_path, data_dir):
    run_dir, clf = fitted
    last = run_dir / "checkpoints" / "last.ckpt"
    before = torch.load(last, weights_only=True, map_location="cpu")
    assert before["epoch"] == 1
    resumed = run_gan(tmp_path, data_dir, "trainer.max_epochs=3", f"ckpt_path={last}",
                      f"model.quality.classifier_run={clf}")
    after = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert after["epoch"] == 2  # one more epoch, not three
    assert after["global_step"] == before["global_step"] * 3 // 2
    assert int(after["state_dict"]["ema_updates"]) == int(before["state_dict"]["ema_updates"]) * 3 // 2
    torch.testing.assert_close(after["state_dict"]["grid_z"], before["state_dict"]["grid_z"])  # the same fixed z
    assert sorted(p.name for p in (resumed / "samples").glob("epoch_*.png")) == ["epoch_002.png"]


@pytest.mark.slow
def test_generator_from_a_trained_run(fitted):
    run_dir, clf = fitted
    gen = build_generator(kind="gan", run=str(run_dir))
    images = gen.render(gen.sample(3, seed=1))
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    with pytest.raises(NotAGanRunError, match="not a GAN"):
        build_generator(kind="gan", run=str(clf))


@pytest.mark.parametrize("name", ["gan", "gan_p80", "gan_gray_p80"])
def test_gan_experiments_compose(name):
    from conftest import compose

    cfg = compose([f"+experiment={name}"])
    assert cfg.exp_name == name and cfg.model._target_ == GAN
    assert cfg.callbacks.model_checkpoint.monitor == "val/quality" and cfg.callbacks.model_checkpoint.mode == "min"
    assert cfg.data.concept == {"gan": None, "gan_p80": "Eyeglasses", "gan_gray_p80": "grayscale"}[name]
    assert cfg.model.image_size == cfg.data.image_size == 64
    from facebias.training.task import resolve_precision

    assert resolve_precision(cfg.trainer) == "32-true"  # fp32 on every device (bf16 is shown for classifiers only)
    celeba = compose([f"+experiment={name}", "data=celeba", "data.root=/datasets/celeba"])
    assert celeba.data.source == "celeba" and celeba.data.concept == cfg.data.concept


def test_console_summary_of_a_gan_run_shows_its_quality_not_an_empty_classifier_table(capsys, tmp_path):
    from facebias.training.report import print_summary

    quality = {"quality": 113.2, "pixel_fd": 1.0, "precision": 0.2, "recall": 0.1,
               "rates": {"generated": {"Male": 0.31, "Eyeglasses_given_Male": 0.36},
                         "train": {"Male": 0.49, "Eyeglasses_given_Male": 0.73},
                         "train_true": {"Male": 0.5, "Eyeglasses_given_Male": 0.8}},
               "separability": {"Eyeglasses": 0.912},
               "settings": {"quality_figure": "classifier-FID", "k": 3, "n_generated": 5000, "classifier_run": "clf"}}
    print_summary(tmp_path, {"experiment": "gan_p80", "quality": quality, "data": {"summary": "P=80"},
                             "best_checkpoint": "best.ckpt", "samples": "samples/best.png"}, None)
    shown = capsys.readouterr().out
    assert "classifier-FID" in shown and "113.2" in shown and "AP" not in shown
    assert "Eyeglasses | Male" in shown and "0.360" in shown and "0.730" in shown and "0.800" in shown
    assert "0.912" in shown


def test_score_shares_script_tables_runs_against_their_training_faces(tmp_path):
    """scripts/gan_score_shares.py: one CSV row per bin, a figure, and a refusal to mix different training faces."""
    import csv

    def figures(path: Path, generated: list[float], train: list[float]) -> str:
        shares = {"Male": {"edges": [0.0, 0.5, 1.0], "generated": generated, "train": train}}
        path.write_text(json.dumps({"score_shares": shares}))
        return str(path)

    a = figures(tmp_path / "a.json", [0.7, 0.3], [0.6, 0.4])
    b = figures(tmp_path / "b.json", [0.55, 0.45], [0.6, 0.4])
    script = [sys.executable, str(REPO / "scripts" / "gan_score_shares.py")]
    subprocess.run([*script, f"w48={a}", f"w64={b}", "--out", str(tmp_path / "shares")], check=True, capture_output=True)
    rows = list(csv.DictReader(open(tmp_path / "shares.csv")))
    assert [(r["score_from"], r["training"], r["w48"], r["w64"]) for r in rows] == [
        ("0.0", "0.6", "0.7", "0.55"), ("0.5", "0.4", "0.3", "0.45")]
    assert (tmp_path / "shares.png").stat().st_size > 1000
    other = figures(tmp_path / "c.json", [0.5, 0.5], [0.5, 0.5])  # scored against other training faces
    refused = subprocess.run([*script, f"w48={a}", f"x={other}", "--out", str(tmp_path / "x")], capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "other training faces" in refused.stderr
