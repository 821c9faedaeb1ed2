"""The latent de-biasing stage (Ramaswamy, Kim & Russakovsky, CVPR 2021) as one cached, resumable step.

``prepare_augmentation(cfg)`` runs the method's steps 1–4 for the training run being configured:

1. f_t and f_g: the runs named by ``debias.target_run`` / ``debias.protected_run``, else trained here
   with the experiment's own data config (f_t: the target alone, exactly the baseline; f_g: the target
   and the protected attribute as heads), cached under ``<data_dir>/debias/classifiers/`` by config;
   the planted grayscale is read off the pixels instead (``facebias.models.rules.GrayscaleRule``: it is
   done to the photo, so it needs no classifier, and no data set has it as a label to train one on);
2. latents from the generator (the SynthFaces renderer draws from the training rows' own latents, so
   G(z) carries the planted correlation, as a GAN trained on them would), G(z) scored by f_t and f_g
   and binarised at the threshold that maximises F1 on each classifier's validation split;
3. linear SVMs h_t, h_g on (z, labels), normalised to ||w|| = 1;
4. z' = z - 2 (w_g.z + b_g) / (1 - c^2) (w_g - c w_t), rendered beside G(z).

The output is an augmented set (``facebias.data.augmented``): G(z) labelled (f_t, f_g), G(z') labelled
(z's f_t label, the flipped f_g label), keyed by generator, classifiers, sizes and seed, built in
``<key>.partial/`` chunk by chunk (an interrupted stage resumes there) and renamed when complete.
Step 5, training on real + generated, is the training run itself (``debias.arm``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from facebias.data.augmented import PAIRS
from facebias.data.bias import GRAYSCALE
from facebias.reporting.console import get_logger
from facebias.reporting.files import read_json, write_json_atomic

log = get_logger(__name__)
ARMS = {"debiased": ("z", "zprime"), "control": ("z",)}
STAGE_VERSION = 2  # 2: labels.npz holds `agreed` per pair (debias.pairs=agreed)
CHUNK = 1024


class DebiasConfigError(ValueError):
    """A de-biasing option that cannot work, named with the fix, raised before anything is trained."""


@dataclass
class Classifier:
    """One of f_t / f_g: a training run and the head that answers the attribute."""

    role: str  # "target" | "protected"
    attribute: str
    run: Any  # facebias.runs.TrainedRun, or None for a pixel rule (facebias.models.rules)
    head: int
    model: Any  # the run's classifier, loaded once (eval mode, CPU), or the rule

    def identity(self) -> dict[str, Any]:
        """What the augmented set's key records of this classifier: its run and checkpoint, or the rule."""
        if self.run is None:
            return self.model.describe()
        return {**self.run.parent(), "head": self.head}

    def source(self) -> str:
        return str(self.run.run_dir) if self.run is not None else self.model.describe()["rule"]


# ----------------------------------------------------------------------------------------------- options

def check_debias_config(cfg: DictConfig) -> None:
    """Everything that can be checked before any classifier is trained or any image rendered."""
    d = cfg.debias
    if d.arm not in ARMS:
        raise DebiasConfigError(f"debias.arm={d.arm!r}: use debiased (real + G(z) + G(z')) or control (real + G(z))")
    if len(cfg.data.targets) != 1:
        raise DebiasConfigError(f"data.targets={list(cfg.data.targets)}: latent de-biasing trains one target at a "
                                "time; give one attribute, e.g. data.targets=[Smiling]")
    protected = protected_attribute(cfg)
    if protected == cfg.data.targets[0]:
        raise DebiasConfigError(f"the protected attribute {protected!r} is the target itself: set data.protected "
                                "(or data.concept) to another attribute")
    kind = d.generator.get("kind")
    if protected == "grayscale" and kind == "synthfaces":
        raise DebiasConfigError(
            "grayscale is not a latent attribute of the SynthFaces renderer (it is applied to the photo after "
            "rendering), so no hyperplane in z can flip it: de-bias the grayscale family with a trained GAN "
            "(debias.generator.kind=gan, the GAN issue) or choose a latent concept such as Eyeglasses")
    if d.get("pairs", "all") not in PAIRS:
        raise DebiasConfigError(f"debias.pairs={d.get('pairs')!r}: use all (every pair, the method) or agreed (only "
                                "pairs where f_t keeps the target on G(z') and f_g sees the protected attribute flip)")
    if kind == "gan" and not d.generator.get("run"):
        raise DebiasConfigError("debias.generator.kind=gan needs the GAN's run dir: +debias.generator.run=<dir> "
                                "(python train.py +experiment=gan_p80, or gan_gray_p80 for the grayscale family, "
                                "trained on the same data as this classifier)")
    if kind == "synthfaces" and cfg.data.source != "synthfaces":
        raise DebiasConfigError(f"debias.generator.kind=synthfaces renders SynthFaces, but data.source="
                                f"{cfg.data.source}: the generator must be trained on the same data (a GAN run "
                                "or a user generator for real data)")
    for key in ("n_fit", "seed", "batch_size"):
        value = d.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise DebiasConfigError(f"debias.{key}={value!r}: use a positive integer")
    n_augment = d.get("n_augment")
    if n_augment is not None and (isinstance(n_augment, bool) or not isinstance(n_augment, int) or n_augment < 1):
        raise DebiasConfigError(f"debias.n_augment={n_augment!r}: a positive integer, or null for as many "
                                "latents as real training images")


def protected_attribute(cfg: DictConfig) -> str:
    """g: data.protected, else the planted concept, else Male (the data module's rule)."""
    data = cfg.data
    return str(data.get("protected") or data.get("concept") or "Male")


# ------------------------------------------------------------------------------------------- classifiers

def classifier_config(cfg: DictConfig, targets: list[str], role: str) -> DictConfig:
    """The experiment's config as a plain training run of ``targets`` (no de-biasing, no resume), resolved
    except for where it is written (``paths.output_dir``, set by the caller)."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    for key in ("debias", "hydra"):
        plain.pop(key, None)
    plain["family"] = str(cfg.get("family") or "run")
    plain["paths"]["output_dir"] = "???"
    sub = OmegaConf.create(plain)
    OmegaConf.update(sub, "data.targets", list(targets), merge=False)
    OmegaConf.update(sub, "ckpt_path", None)
    OmegaConf.update(sub, "exp_name", f"{cfg.get('exp_name') or 'run'}-f_{role[0]}")
    return sub


def config_key(sub: DictConfig) -> str:
    """What makes a classifier: data, model, trainer and seed (not where it is written or logged)."""
    anywhere = copy.deepcopy(sub)
    OmegaConf.update(anywhere, "paths.output_dir", "<run dir>")
    resolved = {k: OmegaConf.to_container(anywhere[k], resolve=True) if isinstance(anywhere.get(k), DictConfig)
                else anywhere.get(k) for k in ("data", "model", "trainer", "seed")}
    wanted = dict(resolved)
    wanted["data"] = {k: v for k, v in (wanted["data"] or {}).items() if k not in ("progress", "num_workers")}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_classifier(cfg: DictConfig, role: str, attribute: str, identity: dict[str, str],
                       train=None) -> Classifier:
    """The named run (``debias.<role>_run``), or one trained (once, cached) with the experiment's data by
    ``train(cfg, out=, identity=)`` (the training task, handed in so this stage does not import it)."""
    from facebias.runs import RunRecord, locate_run

    named = cfg.debias.get(f"{role}_run")
    if role == "protected" and attribute == GRAYSCALE and not named:
        from facebias.models.rules import GrayscaleRule

        tolerance = cfg.debias.get("grayscale_tolerance", "auto")
        rule = GrayscaleRule(None if tolerance == "auto" else tolerance)
        log.info("f_g (grayscale) is the pixel rule: mean channel spread < %s", tolerance)
        return Classifier(role, attribute, None, 0, rule)
    if named:
        run = locate_run(run=str(named))
        where = f"debias.{role}_run={named}"
    else:
        targets = [cfg.data.targets[0]] if role == "target" else [cfg.data.targets[0], attribute]
        sub = classifier_config(cfg, targets, role)
        run_dir = Path(cfg.paths.data_dir) / "debias" / "classifiers" / f"{role}-{config_key(sub)}"
        finished = (run_dir / "run.json").is_file() and RunRecord.read(run_dir).status == "finished"
        if not finished:
            if train is None:
                raise ValueError(f"no f_{role[0]} for {attribute}: name a run with debias.{role}_run=<dir>")
            check_one_process(role, attribute)
            shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted training starts over
            log.info("training f_%s (%s) for the de-biasing stage into %s", role[0], attribute, run_dir)
            OmegaConf.update(sub, "paths.output_dir", str(run_dir))
            train(sub, out=run_dir, identity={"group": identity["group"], "name": f"{identity['name']} f_{role[0]}"})
        else:
            log.info("reusing f_%s (%s): %s", role[0], attribute, run_dir)
        run = locate_run(run=str(run_dir))
        where = f"the f_{role[0]} run {run_dir}"
    from facebias.models.scoring import head_index
    from facebias.runs import load_model

    model = load_model(run)
    return Classifier(role, attribute, run, head_index(model, attribute, where), model)


def validation_threshold(classifier: Classifier, calibration=None) -> dict[str, Any]:
    """The F1-maximising threshold of the classifier's head on its own validation split (the reference's);
    a pixel rule's is 0.5 by construction (its logit is positive exactly where the rule holds), after its
    tolerance is calibrated if it is auto (``calibration()``: generated and real colour faces)."""
    if classifier.run is None:
        rule = classifier.model
        found = rule.calibrate(*calibration()) if rule.auto else {"tolerance": rule.tolerance}
        return {"threshold": 0.5, "rule": rule.describe()["rule"], **found}
    from facebias.debias.hyperplanes import f1_threshold
    from facebias.models.scoring import score_loader
    from facebias.runs import build_datamodule

    datamodule = build_datamodule(classifier.run, {"progress": False})
    scores, targets = score_loader(classifier.model, datamodule.val_dataloader())
    found = f1_threshold(scores[:, classifier.head], targets[:, classifier.head].astype(np.int64))
    return {"threshold": float(found.threshold), "val_f1": float(found.f1)}


def processes() -> int:
    """How many processes run this job together (plain DDP: every SLURM task or torchrun worker runs train.py)."""
    import os

    for name in ("WORLD_SIZE", "SLURM_NTASKS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return int(value)
    return 1


def check_one_process(role: str, attribute: str) -> None:
    """The stage trains its classifiers in one process. Under plain multi-process DDP every process would start
    the same training (into the same cache dir) and a single-device training inside a DDP job can hang, so it
    stops and says how to prepare the stage first; the augmented set itself is safe to build there (file lock:
    one process renders, the others wait and reuse it)."""
    n = processes()
    if n > 1:
        raise DebiasConfigError(
            f"f_{role[0]} ({attribute}) is not trained yet and this job runs as {n} processes (plain DDP): prepare "
            "the stage in one process first, with the same overrides plus `trainer=default debias.stage_only=true` "
            "(trains f_t and f_g and builds the augmented set, then stops), or name debias.target_run / "
            "debias.protected_run; this job then reuses them")


# --------------------------------------------------------------------------------------------- the stage

@dataclass
class AugmentedSet:
    path: Path
    meta: dict[str, Any]


def build_stage_generator(cfg: DictConfig, datamodule):
    """The configured generator; the renderer draws from the real training rows' latents."""
    from facebias.generators import build_generator

    options = OmegaConf.to_container(cfg.debias.generator, resolve=True)
    options.setdefault("image_size", int(cfg.data.image_size))
    options.setdefault("crop", str(cfg.data.crop))
    if options.get("kind") == "synthfaces":
        options["root"] = str(datamodule.table.image_dir.parent)
        options["rows"] = np.asarray(datamodule.splits.train.rows)
    generator = build_generator(options)
    return generator, _generator_identity(options, getattr(generator, "checkpoint", None))


def _generator_identity(options: dict[str, Any], checkpoint: str | Path | None = None) -> dict[str, Any]:
    """What the augmented set depends on: the options, the renderer's rows, a user generator's files by content
    and a GAN run's checkpoint by path, size and mtime (a GAN retrained into the same dir is a new key)."""
    from facebias.runs import checkpoint_identity

    identity = {k: v for k, v in options.items() if k != "rows"}
    if checkpoint is not None:
        identity["weights"] = checkpoint_identity(Path(checkpoint))
    if "rows" in options:
        identity["rows_sha"] = hashlib.sha256(np.asarray(options["rows"], dtype=np.int64).tobytes()).hexdigest()[:16]
    for key in ("file", "state_dict"):  # a user generator: its code and weights, by content
        if isinstance(options.get(key), str) and Path(options[key]).is_file():
            identity[f"{key}_sha"] = hashlib.sha256(Path(options[key]).read_bytes()).hexdigest()[:16]
    return identity


def prepare_augmentation(cfg: DictConfig, identity: dict[str, str], train=None) -> AugmentedSet:
    """Steps 1–4 of the method for this experiment: the augmented set, built or reused. ``train`` trains
    the classifiers that are not named (facebias.training.task.train)."""
    import hydra
    from filelock import FileLock

    check_debias_config(cfg)
    d = cfg.debias
    target, protected = str(cfg.data.targets[0]), protected_attribute(cfg)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    n_augment = int(d.n_augment or len(datamodule.splits.train))
    f_t = resolve_classifier(cfg, "target", target, identity, train)
    f_g = resolve_classifier(cfg, "protected", protected, identity, train)
    generator, generator_identity = build_stage_generator(cfg, datamodule)
    key_fields = {"version": STAGE_VERSION, "generator": generator_identity,
                  "f_t": f_t.identity(), "f_g": f_g.identity(),
                  "n_fit": int(d.n_fit), "n_augment": n_augment, "seed": int(d.seed), "C": float(d.C),
                  "min_sin2": float(d.min_sin2)}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()[:16]
    final = Path(cfg.paths.data_dir) / "debias" / f"augment-{key}"
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / "meta.json").is_file():
            log.info("reusing the augmented set %s", final)
            return AugmentedSet(final, read_json(final / "meta.json"))
        work = final.with_name(final.name + ".partial")
        work.mkdir(exist_ok=True)
        write_json_atomic(work / "key.json", key_fields)
        meta = _build(work, generator, f_t, f_g, d, n_augment, target, protected,
                      real_colour=lambda: _real_colour_faces(datamodule))
        meta.update({"key": key, "key_fields": key_fields})
        write_json_atomic(work / "meta.json", meta)
        work.rename(final)
    return AugmentedSet(final, meta)


def _real_colour_faces(datamodule, n: int = 2000) -> np.ndarray:
    """At most n real training faces that are not in the planted grayscale (the grayscale rule's reference)."""
    faces, have = [], 0
    for batch in datamodule.train_dataloader():
        colour = batch["image"][~batch["gray"].bool()].numpy()
        faces.append(colour)
        have += len(colour)
        if have >= n:
            break
    return np.concatenate(faces)[:n]


def _build(work: Path, generator, f_t: Classifier, f_g: Classifier, d: DictConfig, n_augment: int,
           target: str, protected: str, real_colour=None) -> dict[str, Any]:
    from facebias.debias.hyperplanes import (
        Hyperplane,
        fit_hyperplane,
        perturb,
        plane_cosine,
    )
    from facebias.models.scoring import score_images

    started = time.time()
    models = {"t": f_t.model, "g": f_g.model}
    heads = {"t": f_t.head, "g": f_g.head}
    fitting: dict[str, np.ndarray] = {}

    def fitting_faces() -> tuple[np.ndarray, np.ndarray]:
        """The fitting latents and their faces, rendered once (the grayscale rule's calibration and fit())."""
        if not fitting:
            fitting["z"] = generator.sample(int(d.n_fit), int(d.seed))
            fitting["faces"] = generator.render(fitting["z"], batch_size=int(d.batch_size))
        return fitting["z"], fitting["faces"]

    def calibration() -> tuple[np.ndarray, np.ndarray]:  # the fitting faces and real colour photos
        return fitting_faces()[1], real_colour()

    thresholds = _cached_json(work / "thresholds.json",
                              lambda: {"t": validation_threshold(f_t), "g": validation_threshold(f_g, calibration)})
    if f_g.run is None:  # a pixel rule: its (calibrated) tolerance, also when resuming
        f_g.model.tolerance = float(thresholds["g"]["tolerance"])

    def label(images: np.ndarray) -> dict[str, np.ndarray]:
        scores = {r: score_images(models[r], images, int(d.batch_size))[:, heads[r]] for r in "tg"}
        return {**{f"score_{r}": s for r, s in scores.items()},
                **{r: (s > thresholds[r]["threshold"]).astype(np.uint8) for r, s in scores.items()}}

    # steps 2-3: label G(z) of the fitting latents, fit the hyperplanes
    def fit() -> dict[str, Any]:
        z_fit, faces = fitting_faces()
        labels = label(faces)
        planes = {r: fit_hyperplane(z_fit, labels[r], C=float(d.C), seed=int(d.seed)) for r in "tg"}
        return {r: planes[r].to_dict() for r in "tg"} | {
            "positive_rate": {r: float(labels[r].mean()) for r in "tg"},
            "joint": _joint_rates(labels["t"], labels["g"])}

    fitted = _cached_json(work / "planes.json", fit)
    h_t, h_g = Hyperplane.from_dict(fitted["t"]), Hyperplane.from_dict(fitted["g"])
    check_planes(h_t, h_g, generator.latent_dim, work / "planes.json")
    z = generator.sample(n_augment, int(d.seed) + 1)
    zprime = perturb(z, h_t, h_g, min_sin2=float(d.min_sin2))  # guard rail: stops when 1 - c^2 is tiny
    # step 4: render G(z) and G(z') chunk by chunk; progress.json says how far a previous attempt got
    images, table = render_pairs(work, generator, z, zprime, label, int(d.batch_size))
    t, g, t_prime, g_prime = (table[:, i].astype(np.uint8) for i in range(4))
    tmp = work / ".labels.tmp.npz"
    agreed = ((t_prime == t) & (g_prime != g)).astype(np.uint8)  # the classifiers see the pair as the method means it
    np.savez(tmp, target=np.concatenate([t, t]), protected=np.concatenate([g, 1 - g]),
             part=np.repeat(np.array([0, 1], dtype=np.uint8), n_augment), agreed=np.concatenate([agreed, agreed]))
    tmp.replace(work / "labels.npz")
    del images
    np.save(work / "z.npy", z.astype(np.float32))
    np.save(work / "zprime.npy", zprime.astype(np.float32))
    meta: dict[str, Any] = {
        "target": target, "protected": protected, "n_fit": int(d.n_fit), "n_augment": n_augment,
        "thresholds": thresholds,
        "hyperplanes": {"target": {"holdout_accuracy": h_t.holdout_accuracy, "n_fit": h_t.n_fit},
                        "protected": {"holdout_accuracy": h_g.holdout_accuracy, "n_fit": h_g.n_fit},
                        "c": plane_cosine(h_t, h_g)},
        "fit_labels": {"positive_rate": fitted["positive_rate"], "joint": fitted["joint"]},
        "classifier_view": {  # what f_t and f_g say about the pairs
            "protected_flip_rate": float(np.mean(g_prime != g)), "target_keep_rate": float(np.mean(t_prime == t)),
            "agreed_rate": float(agreed.mean())},
        "composition": {"G(z)": _joint_rates(t, g), "G(z')": _joint_rates(t, 1 - g)},
        "classifiers": {"target": f_t.source(), "protected": f_g.source()},
        "seconds": round(time.time() - started, 1),
    }
    if hasattr(generator, "true_attributes"):
        meta["truth"] = _truth(generator, z, zprime, t, g, target, protected)
    (work / "labels_partial.npy").unlink(missing_ok=True)
    return meta


def render_pairs(work: Path, generator, z: np.ndarray, zprime: np.ndarray, label, batch_size: int,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """G(z) into rows [0, n) and G(z') into [n, 2n) of ``work/images.npy``, labelled by ``label`` (a function of
    uint8 images -> {"t", "g", "score_t", "score_g"}), in chunks; ``progress.json`` records the rows done, so a
    killed stage resumes at the next chunk. Returns the image memmap and the (n, 6) label table."""
    n = len(z)
    images = _open_images(work / "images.npy", 2 * n, generator.image_size)
    table = _open_table(work / "labels_partial.npy", n, 6)  # t, g, t of G(z'), g of G(z'), score_t, score_g
    done = read_json(work / "progress.json")["rendered"] if (work / "progress.json").is_file() else 0
    if done:
        log.info("resuming the augmented set at %d of %d latents", done, n)
    for start in range(done, n, CHUNK):
        stop = min(start + CHUNK, n)
        generator.render(z[start:stop], batch_size=batch_size, out=images[start:stop])
        generator.render(zprime[start:stop].astype(np.float32), batch_size=batch_size, out=images[n + start:n + stop])
        ours, theirs = label(images[start:stop]), label(images[n + start:n + stop])
        table[start:stop] = np.stack([ours["t"], ours["g"], theirs["t"], theirs["g"], ours["score_t"],
                                      ours["score_g"]], axis=1)
        images.flush()
        table.flush()
        write_json_atomic(work / "progress.json", {"rendered": stop})
        log.info("augmented set: %d / %d latents rendered as G(z) and G(z')", stop, n)
    return images, table


def check_planes(h_t, h_g, latent_dim: int, where: Path) -> None:
    """Stored hyperplanes must live in the generator's latent space."""
    from facebias.debias.hyperplanes import LatentDimensionError

    for name, plane in (("h_t", h_t), ("h_g", h_g)):
        if plane.dim != latent_dim:
            raise LatentDimensionError(f"{where}: {name} has dimension {plane.dim} but the generator's latents have "
                                       f"dimension {latent_dim}: the hyperplanes belong to another generator; delete "
                                       f"{where.parent} to refit them")


def _truth(generator, z, zprime, t, g, target: str, protected: str) -> dict[str, Any] | None:
    """SynthFaces: the renderer's true attributes of z and z' against the hallucinated labels."""
    names = set(generator.attribute_names)
    if target not in names or protected not in names:
        return None
    before, after = generator.true_attributes(z), generator.true_attributes(zprime.astype(np.float32))
    return {"protected_flip_rate": float(np.mean(before[protected] != after[protected])),
            "target_keep_rate": float(np.mean(before[target] == after[target])),
            "target_label_accuracy": float(np.mean(before[target] == t.astype(bool))),
            "protected_label_accuracy": float(np.mean(before[protected] == g.astype(bool))),
            "true_joint_G(z)": _joint_rates(before[target].astype(np.uint8), before[protected].astype(np.uint8)),
            "true_joint_G(z')": _joint_rates(after[target].astype(np.uint8), after[protected].astype(np.uint8))}


def _joint_rates(t: np.ndarray, g: np.ndarray) -> dict[str, Any]:
    """Counts per (target, protected) cell and P(g=1 | t=1), P(g=1 | t=0): the correlation a set carries."""
    t, g = np.asarray(t).astype(bool), np.asarray(g).astype(bool)
    counts = {f"t{a}_g{b}": int(np.sum((t == a) & (g == b))) for a in (1, 0) for b in (1, 0)}
    rates = {f"P(g=1|t={a})": (float(g[t == a].mean()) if np.any(t == a) else None) for a in (1, 0)}
    return {"n": int(len(t)), **counts, **rates}


def _cached_json(path: Path, compute) -> dict[str, Any]:
    if path.is_file():
        return read_json(path)
    value = compute()
    write_json_atomic(path, value)
    return value


def _open_images(path: Path, n: int, size: int) -> np.ndarray:
    shape = (n, size, size, 3)
    if path.is_file():
        images = np.load(path, mmap_mode="r+")
        if images.shape == shape:
            return images
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)


def _open_table(path: Path, n: int, columns: int) -> np.ndarray:
    if path.is_file():
        table = np.load(path, mmap_mode="r+")
        if table.shape == (n, columns):
            return table
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, columns))
