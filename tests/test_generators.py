"""Generators: SynthFaces renderer (pixels = the image cache's, ground truth, biased sampling) and user modules."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facebias.data.cache import image_cache
from facebias.data.celeba import read_celeba
from facebias.data.synthfaces import generate, load_latents, render
from facebias.data.table import FaceTable
from facebias.generators import (
    GeneratorLoadError,
    SynthFacesGenerator,
    UserGenerator,
    build_generator,
    resample_latents,
)


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("gen-data"), n_faces=12, seed=5, progress=False, workers=0)


# -- SynthFacesGenerator -----------------------------------------------------------------------------------


def test_render_shape_dtype_and_determinism() -> None:
    gen = SynthFacesGenerator(image_size=24)
    z = gen.sample(7, seed=3)
    assert z.shape == (7, gen.latent_dim) and z.dtype == np.float32
    np.testing.assert_array_equal(z, gen.sample(7, seed=3))
    images = gen.render(z, batch_size=3)
    assert images.shape == (7, 24, 24, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, gen.render(z, batch_size=7))  # batch-invariant
    out = np.zeros((7, 24, 24, 3), dtype=np.uint8)
    assert gen.render(z, out=out) is out and np.array_equal(out, images)
    assert gen.render(z[:0]).shape == (0, 24, 24, 3)


@pytest.mark.parametrize("crop", ["celeba", "none"])
def test_render_is_the_image_cache_of_the_lossless_frame(tmp_path: Path, crop: str) -> None:
    """Exact: the renderer's raw 178x218 frames, stored losslessly and read by the image cache."""
    gen = SynthFacesGenerator(image_size=32, crop=crop)
    z = gen.sample(5, seed=11)
    frames = render(torch.from_numpy(z), gen.model, with_masks=False).images.numpy()
    names = tuple(f"{i:06d}.png" for i in range(len(z)))
    for name, frame in zip(names, frames, strict=True):
        Image.fromarray(frame).save(tmp_path / name)
    table = FaceTable("synthfaces", tmp_path, names, ("Male",), np.zeros((5, 1), np.uint8), np.zeros(5, np.int8))
    cached = image_cache(table, 32, tmp_path / "cache", crop=crop, progress=False, num_workers=1)
    np.testing.assert_array_equal(gen.render(z), cached)


def test_render_of_stored_latents_matches_the_cached_jpegs(synth_set: Path, tmp_path: Path) -> None:
    """The faces a generated set wrote (JPEG quality 90) are what the generator renders from its latents."""
    table = read_celeba(synth_set, source="synthfaces")
    cached = image_cache(table, 32, tmp_path, progress=False, num_workers=1).astype(int)
    gen = SynthFacesGenerator.from_dataset(synth_set, image_size=32)
    latents = load_latents(synth_set)  # a read-only memmap
    diff = np.abs(gen.render(latents).astype(int) - cached)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 6  # measured: 0.6 and 3
    truth = gen.true_attributes(latents)
    for name in table.attr_names:
        np.testing.assert_array_equal(truth[name], table.attr(name).astype(bool), err_msg=name)


def test_attribute_normal_is_the_true_half_space() -> None:
    gen = SynthFacesGenerator(image_size=16)
    z = gen.sample(3000, seed=0)
    truth = gen.true_attributes(z)
    for name in gen.plain_attributes():
        w, b = gen.attribute_normal(name)
        assert np.linalg.norm(w) == pytest.approx(1.0)
        np.testing.assert_array_equal(z.astype(np.float64) @ w + b > 0, truth[name], err_msg=name)
    assert {"Male", "Eyeglasses", "Young", "Smiling"} <= set(gen.plain_attributes())
    with pytest.raises(ValueError, match=r"No_Beard is not a single half-space .*attributes that have one: .*Male"):
        gen.attribute_normal("No_Beard")
    with pytest.raises(KeyError, match="unknown SynthFaces attribute 'Glasses'"):
        gen.attribute_normal("Glasses")


def test_sampling_a_biased_pool_keeps_its_correlation() -> None:
    """Issue 10: standing in for a GAN, G(z) must carry the training set's planted correlation."""
    gen = SynthFacesGenerator(image_size=16)
    z = gen.sample(10_000, seed=1)
    truth = gen.true_attributes(z)
    male, glasses = truth["Male"], truth["Eyeglasses"]
    rng = np.random.default_rng(0)
    cells = [(male & glasses, 800), (male & ~glasses, 200), (~male & glasses, 200), (~male & ~glasses, 800)]
    pool = z[np.concatenate([rng.choice(np.flatnonzero(mask), k, replace=False) for mask, k in cells])]
    biased = SynthFacesGenerator(image_size=16, latent_pool=pool)  # jitter 0.1, attributes kept
    sample = biased.sample(4000, seed=2)
    np.testing.assert_array_equal(sample, biased.sample(4000, seed=2))
    assert not np.array_equal(sample, biased.sample(4000, seed=3))
    pool_rows = {row.tobytes() for row in pool}
    assert np.mean([row.tobytes() in pool_rows for row in sample]) < 0.01  # new faces, not copies
    s = biased.true_attributes(sample)
    assert np.mean(s["Eyeglasses"][s["Male"]]) == pytest.approx(0.8, abs=0.025)  # P = 80, as the pool
    assert np.mean(s["Eyeglasses"][~s["Male"]]) == pytest.approx(0.2, abs=0.025)
    loose = SynthFacesGenerator(image_size=16, latent_pool=pool, jitter=0.3, keep_attributes=False)
    s = loose.true_attributes(loose.sample(4000, seed=2))  # plain jitter dilutes the planted bias
    assert np.mean(s["Eyeglasses"][s["Male"]]) < 0.72
    unbiased = gen.true_attributes(gen.sample(4000, seed=2))  # N(0, I): independent, ~30 % for both
    assert abs(np.mean(unbiased["Eyeglasses"][unbiased["Male"]]) - np.mean(unbiased["Eyeglasses"][~unbiased["Male"]])) < 0.05
    exact = resample_latents(pool, 50, seed=4, jitter=0.0)  # no jitter: rows of the pool, with replacement
    assert {row.tobytes() for row in exact} <= {row.tobytes() for row in pool}


def test_from_dataset_pools_the_given_rows(synth_set: Path) -> None:
    gen = SynthFacesGenerator.from_dataset(synth_set, image_size=16, rows=[2, 5], jitter=0.0)
    np.testing.assert_array_equal(np.unique(gen.sample(50, seed=0), axis=0), np.unique(load_latents(synth_set)[[2, 5]], axis=0))
    with pytest.raises(IndexError, match=r"rows must be non-empty indices in \[0, 12\)"):
        SynthFacesGenerator.from_dataset(synth_set, rows=[12])


def test_bad_latents_and_options() -> None:
    gen = SynthFacesGenerator(image_size=16)
    with pytest.raises(ValueError, match=r"latents must be \(n, 32\), got shape \(2, 8\).*another generator"):
        gen.render(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        gen.render(np.full((1, 32), np.nan, np.float32))
    with pytest.raises(ValueError, match="seed=-1 must be a non-negative int"):
        gen.sample(2, seed=-1)
    with pytest.raises(ValueError, match="unknown crop 'face'"):
        SynthFacesGenerator(image_size=16, crop="face")
    with pytest.raises(ValueError, match="latent_pool must be a non-empty \\(m, 32\\) array"):
        SynthFacesGenerator(image_size=16, latent_pool=np.zeros((3, 4)))


def test_build_generator() -> None:
    gen = build_generator({"_target_": "facebias.generators.build_generator", "kind": "synthfaces"}, image_size=8)
    assert isinstance(gen, SynthFacesGenerator) and gen.image_size == 8
    with pytest.raises(ValueError, match="needs run="):
        build_generator(kind="gan")
    with pytest.raises(ValueError, match=r"unknown generator kind 'vae'; use one of \['gan', 'synthfaces', 'user'\]"):
        build_generator(kind="vae")


# -- UserGenerator ------------------------------------------------------------------------------------------

TINY_GENERATOR = textwrap.dedent(
    """
    import torch
    from torch import nn


    class TinyG(nn.Module):
        def __init__(self, latent_dim=8, size=16, frame=None):
            super().__init__()
            self.h, self.w = frame or (size, size)
            self.fc = nn.Linear(latent_dim, 3 * self.h * self.w)

        def forward(self, z):
            return torch.tanh(self.fc(z)).view(-1, 3, self.h, self.w)


    class Helper:
        pass
    """
)


@pytest.fixture
def user_files(tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "tiny_gen.py"
    source.write_text(TINY_GENERATOR)
    torch.manual_seed(0)
    weights = tmp_path / "tiny_gen.pt"
    fc = torch.nn.Linear(8, 3 * 16 * 16)
    torch.save({"fc.weight": fc.weight.detach(), "fc.bias": fc.bias.detach()}, weights)
    return source, weights


def test_user_generator_loads_and_renders(user_files, caplog) -> None:
    source, weights = user_files
    gen = UserGenerator(source, "TinyG", weights, latent_dim=8, image_size=16)
    z = gen.sample(5, seed=1)
    images = gen.render(z, batch_size=2)
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8
    state = torch.load(weights, weights_only=True)
    expected = torch.tanh(torch.from_numpy(z) @ state["fc.weight"].T + state["fc.bias"]).view(-1, 3, 16, 16)
    expected = ((expected + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(images, expected)

    small = UserGenerator(source, "TinyG", weights, latent_dim=8, image_size=8)
    with caplog.at_level(logging.INFO, logger="facebias.generators.user"):
        resized = small.render(z, batch_size=2)
    assert resized.shape == (5, 8, 8, 3)
    assert [r.getMessage() for r in caplog.records].count(
        "resizing TinyG's 16x16 output to 8px (PIL bilinear, as the image cache resizes)") == 1
    reference = np.stack([np.asarray(Image.fromarray(im).resize((8, 8), Image.Resampling.BILINEAR)) for im in images])
    np.testing.assert_array_equal(resized, reference)


def test_user_generator_crops_the_aligned_frame(tmp_path: Path) -> None:
    source = tmp_path / "tiny_gen.py"
    source.write_text(TINY_GENERATOR)
    module = {"fc.weight": torch.zeros(3 * 218 * 178, 8), "fc.bias": torch.linspace(-1, 1, 3 * 218 * 178)}
    gen = UserGenerator(source, "TinyG", module, latent_dim=8, image_size=32, init_kwargs={"frame": (218, 178)})
    frame = ((torch.tanh(module["fc.bias"]).view(3, 218, 178) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
    crop = Image.fromarray(frame.numpy()).crop((25, 57, 153, 185)).resize((32, 32), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(gen.render(gen.sample(2, seed=0))[1], np.asarray(crop))


def test_user_generator_errors(user_files, tmp_path: Path) -> None:
    source, weights = user_files
    with pytest.raises(FileNotFoundError, match="generator file .*missing.py not found"):
        UserGenerator(tmp_path / "missing.py", "TinyG", weights, latent_dim=8)
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\n\nclass TinyG(torch.nn.Module:\n    pass\n")
    with pytest.raises(GeneratorLoadError, match="broken.py has a syntax error at line 3"):
        UserGenerator(broken, "TinyG", weights, latent_dim=8)
    failing = tmp_path / "failing.py"
    failing.write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(GeneratorLoadError, match="importing generator file .*failing.py failed: RuntimeError: no GPU here"):
        UserGenerator(failing, "TinyG", weights, latent_dim=8)
    with pytest.raises(GeneratorLoadError, match=r"defines no class 'BigG'; classes it defines: \['Helper', 'TinyG'\]"):
        UserGenerator(source, "BigG", weights, latent_dim=8)
    with pytest.raises(GeneratorLoadError, match="Helper from .* is a Helper, not a torch.nn.Module"):
        UserGenerator(source, "Helper", weights, latent_dim=8)
    with pytest.raises(FileNotFoundError, match="state_dict file .*nope.pt not found"):
        UserGenerator(source, "TinyG", tmp_path / "nope.pt", latent_dim=8)

    state = torch.load(weights, weights_only=True)
    with pytest.raises(GeneratorLoadError, match=r"missing keys \['fc.bias'\]; unexpected keys none"):
        UserGenerator(source, "TinyG", {"fc.weight": state["fc.weight"]}, latent_dim=8)
    with pytest.raises(GeneratorLoadError, match=r"missing keys none; unexpected keys \['extra.weight'\]"):
        UserGenerator(source, "TinyG", {**state, "extra.weight": torch.zeros(1)}, latent_dim=8)
    with pytest.raises(GeneratorLoadError, match="size mismatch for fc.weight"):
        UserGenerator(source, "TinyG", {**state, "fc.weight": torch.zeros(3 * 16 * 16, 4)}, latent_dim=8)
    with pytest.raises(GeneratorLoadError, match=r"forward failed on latents of shape \(2, 4\).*is latent_dim=4 right"):
        UserGenerator(source, "TinyG", weights, latent_dim=4)

    pickled = tmp_path / "pickled.pt"
    torch.save({"fc": torch.nn.Linear(8, 2)}, pickled)  # a whole module: not loadable weights-only
    with pytest.raises(GeneratorLoadError, match="weights_only=True"):
        UserGenerator(source, "TinyG", pickled, latent_dim=8)

    odd = {"fc.weight": torch.zeros(3 * 10 * 12, 8), "fc.bias": torch.zeros(3 * 10 * 12)}
    gen = UserGenerator(source, "TinyG", odd, latent_dim=8, image_size=8, init_kwargs={"frame": (10, 12)})
    with pytest.raises(GeneratorLoadError, match="outputs 12x10 images: neither a square face crop nor CelebA's"):
        gen.render(gen.sample(1, seed=0))
