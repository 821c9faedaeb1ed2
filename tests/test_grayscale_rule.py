"""The grayscale pixel rule, the de-biasing stage's f_g for the grayscale family: exact on the planted grayscale,
Otsu's threshold against a brute force, and a refusal where generated faces have no grayscale mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, compose

from facebias.data.transforms import to_grayscale
from facebias.models.rules import GrayscaleRule, GrayscaleRuleError, otsu_threshold
from facebias.models.scoring import score_images


@pytest.fixture(scope="module")
def faces(data_dir):
    """A training batch of the grayscale family's data pipeline (colour photos; the tests plant grayscale)."""
    import hydra

    cfg = compose(["+experiment=gray_p80", *TINY, "data.n_train=null", "data.batch_size=128",
                   f"paths.data_dir={data_dir}"])
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))["image"]


def test_the_rule_reads_the_planted_grayscale_exactly(faces):
    flags = torch.arange(len(faces)) % 2 == 0
    images = to_grayscale(faces, flags).numpy()
    scores = score_images(GrayscaleRule(), images)
    assert scores.shape == (len(images), 1)
    assert np.array_equal(scores[:, 0] > 0.5, flags.numpy())
    with pytest.raises(ValueError, match=r"grayscale tolerance=0"):
        GrayscaleRule(0)


def brute_force_otsu(values: np.ndarray) -> float:
    """Every cut between distinct sorted values, the between-class variance written out per cut."""
    x = np.sort(values)
    best, cut = -1.0, None
    for k in range(1, len(x)):
        if x[k] == x[k - 1]:
            continue
        low, high = x[:k], x[k:]
        between = len(low) * len(high) / len(x) ** 2 * (low.mean() - high.mean()) ** 2
        if between > best:
            best, cut = between, (x[k - 1] + x[k]) / 2
    return cut


@pytest.mark.parametrize("seed", range(4))
def test_otsu_threshold_against_a_brute_force(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(12, 2, 60), rng.normal(45, 12, 90)]).round(1)
    threshold, eta = otsu_threshold(values)
    assert threshold == pytest.approx(brute_force_otsu(values))
    assert 14 < threshold < 35 and 0.6 < eta < 1
    assert otsu_threshold(np.array([0.0, 0, 0, 40, 40]))[1] == pytest.approx(1.0)  # two point masses
    with pytest.raises(GrayscaleRuleError, match="two distinct values"):
        otsu_threshold(np.full(5, 3.0))


def test_calibration_finds_a_tinted_grayscale_mode_and_refuses_a_colour_only_generator(faces):
    colour = faces.numpy()
    # a GAN's grayscale: luminance plus a faint tint (spread ~ 9), beside colour faces
    gray = to_grayscale(faces, torch.ones(len(faces), dtype=torch.bool)).numpy().astype(np.int16)
    tinted = np.clip(gray + np.array([6, 0, -3]), 0, 255).astype(np.uint8)
    generated = np.concatenate([tinted, colour])
    rule = GrayscaleRule(None)
    found = rule.calibrate(generated, colour)
    assert 9 < found["tolerance"] < found["real_colour_quantile"]
    assert found["generated_gray_rate"] == pytest.approx(0.5, abs=0.01)  # a rare pale colour face may fall below
    agree = (score_images(rule, generated)[:, 0] > 0.5) == (np.arange(len(generated)) < len(tinted))
    assert agree.mean() >= 0.99 and agree[: len(tinted)].all()
    with pytest.raises(GrayscaleRuleError, match=r"do not split into grayscale and colour.*train the GAN longer"):
        GrayscaleRule(None).calibrate(colour, colour)
    with pytest.raises(GrayscaleRuleError, match="not calibrated yet"):
        score_images(GrayscaleRule(None), colour)
