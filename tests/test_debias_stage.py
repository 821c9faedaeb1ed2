"""The latent de-biasing stage end to end at tiny scale: one command trains f_t and f_g, builds the
augmented set, and trains on real + G(z) (+ G(z')); the set is cached by key and resumes after an
interruption; every guard rail stops with its message before rendering."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, compose
from test_evaluate import run_script

from facebias.data.augmented import AugmentedBatches, JoinedBatches
from facebias.debias import stage
from facebias.runs import find_runs

SMALL = ["debias.n_fit=600", "debias.n_augment=300", "debias.batch_size=128", "trainer.max_epochs=3",
         "model.optimizer.lr=3e-3"]  # classifiers that learn enough for both labels to occur on G(z)


@pytest.fixture(scope="module")
def debiased(data_dir, tmp_path_factory):
    """train.py +experiment=debias_p80 (tiny), then the control arm, which reuses classifiers and set."""
    root = tmp_path_factory.mktemp("debias")
    common = ["+experiment=debias_p80", *TINY, *SMALL, f"paths.root_dir={root}", f"paths.data_dir={data_dir}"]
    run_script("train.py", *common)
    sets = sorted((data_dir / "debias").glob("augment-*[!k]"))
    stamps = {p: p.stat().st_mtime_ns for p in (data_dir / "debias").rglob("best.ckpt")}
    run_script("train.py", *common, "debias.arm=control")
    runs = {json.loads((d / "metrics.json").read_text())["augmented"]["arm"]: d for d in find_runs(root, "train")}
    return runs, sets, stamps, data_dir


@pytest.mark.slow
def test_one_command_trains_classifiers_builds_the_set_and_trains_on_it(debiased):
    runs, sets, _, data_dir = debiased
    assert set(runs) == {"debiased", "control"}
    (augmented,) = [s for s in sets if s.is_dir()]
    meta = json.loads((augmented / "meta.json").read_text())
    full = json.loads((runs["debiased"] / "metrics.json").read_text())["augmented"]
    control = json.loads((runs["control"] / "metrics.json").read_text())["augmented"]
    assert full["n_generated"] == 600 and control["n_generated"] == 300  # G(z) + G(z') vs G(z) alone
    assert full["path"] == control["path"] == str(augmented)
    labels = np.load(augmented / "labels.npz")
    n = 300
    assert np.array_equal(labels["target"][n:], labels["target"][:n])  # z' keeps z's target label
    assert np.array_equal(labels["protected"][n:], 1 - labels["protected"][:n])  # and flips the protected one
    assert -1 < meta["hyperplanes"]["c"] < 1
    # the reported true flip / keep rates are the renderer's own attributes of the stored z and z'
    from facebias.generators import SynthFacesGenerator

    truth = SynthFacesGenerator.from_dataset(next((data_dir).glob("synthfaces-*"))).true_attributes
    before, after = truth(np.load(augmented / "z.npy")), truth(np.load(augmented / "zprime.npy"))
    assert meta["truth"]["protected_flip_rate"] == pytest.approx(np.mean(before["Eyeglasses"] != after["Eyeglasses"]))
    assert meta["truth"]["target_keep_rate"] == pytest.approx(np.mean(before["Male"] == after["Male"]))
    # the classifiers were trained once into the cache, as ordinary training runs with the heads needed
    classifiers = find_runs(data_dir / "debias" / "classifiers", "train")
    heads = sorted(json.loads((d / "run.json").read_text())["config"]["data"]["targets"] for d in classifiers)
    assert heads == [["Male"], ["Male", "Eyeglasses"]]
    for run in runs.values():
        assert (run / "augment" / "pairs.png").stat().st_size > 5_000
        assert {r["quantity"] for r in _csv(run / "augment" / "augment.csv")} >= {"c = w_g . w_t",
                                                                                  "true protected flip rate"}


@pytest.mark.slow
def test_the_control_arm_reuses_classifiers_and_the_set(debiased):
    _, sets, stamps, data_dir = debiased
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no classifier retrained
    assert sorted((data_dir / "debias").glob("augment-*[!k]")) == sets  # no second set


@pytest.mark.slow
def test_an_interrupted_set_resumes_and_equals_what_it_would_have_written(debiased, monkeypatch):
    _, _, _, data_dir = debiased
    cfg = compose(["+experiment=debias_p80", *TINY, *SMALL, "debias.n_augment=200",
                   f"paths.data_dir={data_dir}"])
    monkeypatch.setattr(stage, "CHUNK", 64)
    from facebias.generators import SynthFacesGenerator

    real_render, calls = SynthFacesGenerator.render, {"n": 0}

    def failing_render(self, z, batch_size=256, out=None):
        calls["n"] += 1
        if calls["n"] == 4:  # the fit batch, then G(z) and G(z') of the first chunk: die in the second chunk
            raise KeyboardInterrupt("simulated kill")
        return real_render(self, z, batch_size=batch_size, out=out)

    monkeypatch.setattr(SynthFacesGenerator, "render", failing_render)
    identity = {"group": "t", "name": "t"}
    with pytest.raises(KeyboardInterrupt):
        stage.prepare_augmentation(cfg, identity)  # the classifiers exist (the fixture trained them)
    (partial,) = (data_dir / "debias").glob("augment-*.partial")
    assert json.loads((partial / "progress.json").read_text()) == {"rendered": 64}
    monkeypatch.setattr(SynthFacesGenerator, "render", real_render)
    result = stage.prepare_augmentation(cfg, identity)
    assert not partial.exists() and result.path == partial.with_name(partial.name.removesuffix(".partial"))
    images = np.load(result.path / "images.npy")
    z, zprime = np.load(result.path / "z.npy"), np.load(result.path / "zprime.npy")
    generator, _ = stage.build_stage_generator(cfg, _datamodule(cfg))
    assert np.array_equal(images[:200], generator.render(z))  # the resumed rows and the first ones alike
    assert np.array_equal(images[200:], generator.render(zprime))
    again = stage.prepare_augmentation(cfg, identity)  # same key: reused
    assert again.path == result.path


class GrayHalfSpace:
    """A stand-in GAN whose photos are grayscale exactly on one side of a hyperplane of z (the renderer's faces
    otherwise): the setting the grayscale family needs, where grayscale is a latent attribute of the generator."""

    def __init__(self, renderer, seed: int = 3):
        from facebias.generators.base import Generator

        direction = np.random.default_rng(seed).standard_normal(renderer.latent_dim)
        self.normal = direction / np.linalg.norm(direction)

        class Wrapped(Generator):
            latent_dim, image_size, crop = renderer.latent_dim, renderer.image_size, renderer.crop

            def sample(_, n, seed):
                return renderer.sample(n, seed)

            def _render_batch(_, z):
                from facebias.data.transforms import to_grayscale

                gray = torch.from_numpy(z @ self.normal > 0)
                return to_grayscale(torch.from_numpy(renderer._render_batch(z)), gray).numpy()

        self.generator = Wrapped()


@pytest.mark.slow
def test_grayscale_is_labelled_by_the_pixel_rule_and_flipped_by_z_prime(debiased, monkeypatch):
    """protected = grayscale: no f_g is trained (none could be: no data set labels it); the pixel rule labels G(z)
    exactly, h_g recovers the generator's grayscale hyperplane and G(z') flips grayscale in >= 99 % of pairs."""
    _, _, _, data_dir = debiased
    (f_t,) = [d for d in find_runs(data_dir / "debias" / "classifiers", "train")
              if json.loads((d / "run.json").read_text())["config"]["data"]["targets"] == ["Male"]]
    cfg = compose(["+experiment=debias_gray_p80", *TINY, *SMALL, "data.n_train=null", "debias.n_fit=3000",
                   "debias.generator.run=a-gan-run",
                   f"debias.target_run={f_t}", f"paths.data_dir={data_dir}"])
    renderer, _ = stage.build_stage_generator(compose(["+experiment=debias_p80", *TINY, f"paths.data_dir={data_dir}"]),
                                              _datamodule(cfg))
    fake = GrayHalfSpace(renderer)
    monkeypatch.setattr(stage, "build_stage_generator", lambda cfg, dm: (fake.generator, {"kind": "gray-half-space"}))
    before = set((data_dir / "debias" / "classifiers").iterdir())
    result = stage.prepare_augmentation(cfg, {"group": "t", "name": "t"})
    assert set((data_dir / "debias" / "classifiers").iterdir()) == before  # f_g was not trained
    meta = result.meta
    assert meta["key_fields"]["f_g"]["rule"].startswith("grayscale") and meta["thresholds"]["g"]["threshold"] == 0.5
    assert meta["hyperplanes"]["protected"]["holdout_accuracy"] >= 0.97
    assert meta["classifier_view"]["protected_flip_rate"] >= 0.99
    z, zprime = np.load(result.path / "z.npy"), np.load(result.path / "zprime.npy")
    assert np.mean((z @ fake.normal > 0) != (zprime @ fake.normal > 0)) >= 0.99  # against the generator's truth
    labels = np.load(result.path / "labels.npz")
    images = np.load(result.path / "images.npy")
    from facebias.generators.quality import grayscale_flags

    assert np.array_equal(grayscale_flags(images).astype(np.uint8)[: len(z)], labels["protected"][: len(z)])
    agreed, view = labels["agreed"], meta["classifier_view"]  # one mark per pair, on both of its faces
    assert np.array_equal(agreed[: len(z)], agreed[len(z):]) and agreed.mean() == pytest.approx(view["agreed_rate"])
    assert view["protected_flip_rate"] + view["target_keep_rate"] - 1 - 1e-9 <= view["agreed_rate"] \
        <= min(view["protected_flip_rate"], view["target_keep_rate"]) + 1e-9


@pytest.mark.slow
def test_stage_only_prepares_and_a_multi_process_job_refuses_to_train_classifiers(debiased, tmp_path, monkeypatch):
    """debias.stage_only=true builds (here: reuses) the stage and trains no model; under plain multi-process DDP a
    classifier the stage would have to train stops with how to prepare it in one process."""
    _, _, _, data_dir = debiased
    common = ["+experiment=debias_p80", *TINY, *SMALL, f"paths.data_dir={data_dir}"]
    sets = sorted((data_dir / "debias").glob("augment-*[!k]"))
    run_script("train.py", *common, "debias.stage_only=true", f"paths.root_dir={tmp_path / 'stage'}")
    assert find_runs(tmp_path / "stage", "train") == []  # no training run recorded
    assert list((tmp_path / "stage").rglob("augment/augment.csv"))  # but the stage's report is there
    assert sorted((data_dir / "debias").glob("augment-*[!k]")) == sets  # and the cached set was reused
    monkeypatch.setenv("SLURM_NTASKS", "4")
    cfg = compose([*common, "seed=7", f"paths.data_dir={tmp_path / 'fresh'}"])
    with pytest.raises(stage.DebiasConfigError, match=r"runs as 4 processes \(plain DDP\).*debias.stage_only=true"):
        stage.resolve_classifier(cfg, "target", "Male", {"group": "g", "name": "n"}, train=lambda *a, **k: None)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert stage.processes() == 1


@pytest.mark.parametrize("baseline", ["p50", "p60", "p70", "p80", "p90", "gray_p80"])
def test_each_debias_experiment_trains_on_its_baseline_s_real_data(baseline):
    """The arms compare with the baseline at the same real data (N, P, concept, seed): only the generated rows
    differ (a debias experiment that forgot gray_p80's n_train once trained on 15,814 real faces, not 4,800)."""
    from omegaconf import OmegaConf

    debias = "debias_" + baseline
    a, b = (OmegaConf.to_container(compose([f"+experiment={name}"]).data, resolve=True) for name in (baseline, debias))
    assert a == b


def test_guard_rails_stop_before_anything_is_trained(tmp_path):
    base = ["+experiment=debias_p80", f"paths.data_dir={tmp_path}"]
    with pytest.raises(stage.DebiasConfigError, match=r"grayscale is not a latent attribute .*trained GAN"):
        stage.check_debias_config(compose([*base, "data.concept=grayscale"]))
    with pytest.raises(stage.DebiasConfigError, match=r"kind=gan needs the GAN's run dir: \+debias.generator.run="):
        stage.check_debias_config(compose(["+experiment=debias_gray_p80", *TINY]))
    with pytest.raises(stage.DebiasConfigError, match=r"debias.arm='both': use debiased .* or control"):
        stage.check_debias_config(compose([*base, "debias.arm=both"]))
    with pytest.raises(stage.DebiasConfigError, match=r"debias.pairs='some': use all .* or agreed"):
        stage.check_debias_config(compose([*base, "debias.pairs=some"]))
    with pytest.raises(stage.DebiasConfigError, match=r"one target at a time"):
        stage.check_debias_config(compose([*base, "data.targets=[Male,Smiling]"]))
    with pytest.raises(stage.DebiasConfigError, match=r"data.source=folder: the generator must be trained"):
        stage.check_debias_config(compose([*base, "data=folder"]))
    with pytest.raises(stage.DebiasConfigError, match=r"debias.n_fit=0"):
        stage.check_debias_config(compose([*base, "debias.n_fit=0"]))
    assert not any(tmp_path.iterdir())


def test_a_classifier_run_without_the_needed_head_is_named(data_dir):
    from test_evaluate import shared_sweep

    (run,) = [p for p in find_runs(shared_sweep(data_dir), "train") if "p100" in p.name]
    cfg = compose(["+experiment=debias_p80", *TINY, f"debias.protected_run={run}", f"paths.data_dir={data_dir}"])
    with pytest.raises(ValueError, match=r"has no head 'Eyeglasses'; its heads are \['Male'\]"):
        stage.resolve_classifier(cfg, "protected", "Eyeglasses", {"group": "g", "name": "n"})


def test_stored_hyperplanes_of_another_latent_space_are_refused(tmp_path):
    from facebias.debias.hyperplanes import Hyperplane, LatentDimensionError

    plane = Hyperplane(np.ones(8) / np.sqrt(8), 0.0)
    with pytest.raises(LatentDimensionError, match=r"h_t has dimension 8 but the generator's latents have "
                                                   r"dimension 32.*delete"):
        stage.check_planes(plane, plane, 32, tmp_path / "planes.json")


def test_joined_batches_mix_real_and_generated_rows(tmp_path):
    n = 4
    np.save(tmp_path / "images.npy", np.arange(2 * n * 2 * 2 * 3, dtype=np.uint8).reshape(2 * n, 2, 2, 3))
    np.savez(tmp_path / "labels.npz", target=np.array([1, 0, 1, 0] * 2), protected=np.array([1, 1, 0, 0, 0, 0, 1, 1]),
             part=np.repeat([0, 1], n))
    (tmp_path / "meta.json").write_text("{}")
    control = AugmentedBatches(tmp_path, ["z"])
    assert len(control) == n and len(AugmentedBatches(tmp_path)) == 2 * n
    real = AugmentedBatches(tmp_path, ["zprime"])  # stands in for the real rows: same batch dict
    joined = JoinedBatches(real, control)
    batch = joined.__getitems__([0, 5, 7])
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (3, 2, 2, 3)
    assert batch["target"].tolist() == [[1.0], [0.0], [0.0]] and batch["protected"].tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match=r"use a non-empty subset of \['z', 'zprime'\]"):
        AugmentedBatches(tmp_path, ["both"])
    with pytest.raises(ValueError, match="no 'agreed'.*delete the folder"):  # a set built before the marks
        AugmentedBatches(tmp_path, pairs="agreed")
    with pytest.raises(ValueError, match=r"pairs='some'"):
        AugmentedBatches(tmp_path, pairs="some")
    with pytest.raises(FileNotFoundError, match=r"not a finished augmented set: meta.json missing"):
        (tmp_path / "meta.json").unlink()
        AugmentedBatches(tmp_path)


def test_agreed_pairs_keep_both_faces_of_each_agreed_pair(tmp_path):
    """pairs=agreed: pairs 0 and 2 of 4 agreed, so G(z) rows 0, 2 and G(z') rows 4, 6 are served, nothing else."""
    n = 4
    np.save(tmp_path / "images.npy", np.arange(2 * n, dtype=np.uint8).repeat(12).reshape(2 * n, 2, 2, 3))
    np.savez(tmp_path / "labels.npz", target=np.array([1, 0, 1, 0] * 2), protected=np.array([1, 1, 0, 0, 0, 0, 1, 1]),
             part=np.repeat([0, 1], n), agreed=np.array([1, 0, 1, 0] * 2))
    (tmp_path / "meta.json").write_text("{}")
    agreed = AugmentedBatches(tmp_path, pairs="agreed")
    batch = agreed.__getitems__(list(range(len(agreed))))
    assert batch["image"][:, 0, 0, 0].tolist() == [0, 2, 4, 6] and batch["row"].tolist() == [-1, -3, -5, -7]
    assert batch["target"].tolist() == [[1.0], [1.0], [1.0], [1.0]] and batch["protected"].tolist() == [1, 0, 0, 1]
    assert len(AugmentedBatches(tmp_path, ["z"], pairs="agreed")) == 2 and len(AugmentedBatches(tmp_path)) == 2 * n


def _datamodule(cfg):
    import hydra

    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.setup()
    return datamodule


def _csv(path: Path):
    from facebias.reporting.files import read_csv

    return read_csv(path)
