"""How good a GAN is, without downloaded weights (issue 11): figures in the space of the project's own classifier.

Pure functions on arrays:

- ``frechet_distance(a, b)``: ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), the Fréchet
  distance of Gaussians fitted to two feature sets (FID's formula; the square root through symmetric
  eigendecompositions, so it is real and stable for singular covariances);
- ``knn_precision_recall(real, fake, k=3)``: Kynkäänniemi et al. (NeurIPS 2019). Each sample's radius is the
  distance to its k-th nearest neighbour within its own set; precision = share of fake samples inside some real
  sample's ball, recall = share of real samples inside some fake sample's ball;
- ``attribute_rates``, ``grayscale_flags``, ``pixel_features``.

``GanQuality`` (the ``_target_`` of ``model.quality``; a FaceGAN builds it on first use) computes, on a fixed
number of samples of the EMA generator (always the same z, so epochs compare) against as many training faces:

- **classifier-FID** (``cfid``) and **precision/recall** in the penultimate features of an ``AttributeClassifier``
  run (``classifier_run=<dir>``); named as such: it is *not* FID;
- **attribute rates** of generated faces vs the training faces under that classifier (score > 0.5), and the
  training faces' true rates; for every attribute A besides Male also P(A | Male) and P(A | not Male), the
  planted correlation of a ``gan_p80`` run; the planted grayscale is read off the pixels (``grayscale_flags``);
- **linear separability**: held-out accuracy of a linear SVM on z for each label
  (``separability``: a ``_target_`` of ``facebias.debias.hyperplanes.fit_hyperplane``, injected by the config);
- **pixel-FD**: the Fréchet distance of 8x8 thumbnails, which needs nothing; it is the checkpoint monitor
  (``quality``) when no classifier run is given;
- **true FID** at the end of training only, and only where the Inception weights are already in the local torch
  hub cache and torch-fidelity is installed; otherwise one line says why not (nothing is ever downloaded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facebias.data.bias import GRAYSCALE
from facebias.data.transforms import GRAY_TOLERANCE, channel_spread

log = logging.getLogger(__name__)

MALE = "Male"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # what torch-fidelity (torchmetrics' FID) loads


# ------------------------------------------------------------------------------------------ pure functions

def _features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name}: features must be an (n >= 2, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: features contain NaN or infinite values")
    return x


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Fréchet distance of N(mu1, s1) and N(mu2, s2); Tr((s1 s2)^1/2) = Tr((s1^1/2 s2 s1^1/2)^1/2)."""
    root1 = _sqrt_psd(s1)
    middle = root1 @ s2 @ root1
    trace_root = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum())
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * trace_root)
    return max(value, 0.0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted (mean, unbiased covariance) to feature sets a and b."""
    a, b = _features(a, "frechet_distance"), _features(b, "frechet_distance")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: {a.shape[1]}-d and {b.shape[1]}-d features")
    return frechet_from_stats(a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)),
                              b.mean(0), np.atleast_2d(np.cov(b, rowvar=False)))


def _pairwise(x, y, chunk: int = 2048):
    import torch

    for start in range(0, x.shape[0], chunk):
        yield start, torch.cdist(x[start:start + chunk], y)


def knn_radii(x: np.ndarray, k: int = 3) -> np.ndarray:
    """(n,) distance of each row of x to its k-th nearest neighbour among the other rows."""
    import torch

    x = _features(x, "knn_radii")
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"knn_radii: k={k} needs 1 <= k < n = {x.shape[0]} samples")
    t = torch.from_numpy(x)
    radii = np.empty(x.shape[0])
    for start, d in _pairwise(t, t):
        radii[start:start + d.shape[0]] = torch.kthvalue(d, k + 1, dim=1).values.numpy()  # k+1: itself is 0
    return radii


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Share of points inside at least one ball (centre, radius)."""
    import torch

    c, r = torch.from_numpy(centres), torch.from_numpy(radii)
    inside = np.zeros(points.shape[0], dtype=bool)
    for start, d in _pairwise(torch.from_numpy(points), c):
        inside[start:start + d.shape[0]] = (d <= r[None, :]).any(dim=1).numpy()
    return float(inside.mean())


def knn_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``fake`` against ``real`` features.

    precision: the share of fake samples within the k-NN radius of at least one real sample (realism);
    recall: the share of real samples within the k-NN radius of at least one fake sample (coverage).
    """
    real, fake = _features(real, "knn_precision_recall"), _features(fake, "knn_precision_recall")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"knn_precision_recall: {real.shape[1]}-d real and {fake.shape[1]}-d fake features")
    return _coverage(fake, real, knn_radii(real, k)), _coverage(real, fake, knn_radii(fake, k))


def pixel_features(images: np.ndarray, size: int = 8) -> np.ndarray:
    """(n, size*size*3) float features of uint8 faces (n, S, S, 3): area-averaged thumbnails in [0, 1]."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return F.adaptive_avg_pool2d(x, size).flatten(1).double().numpy()


def grayscale_flags(images: np.ndarray, tolerance: float = GRAY_TOLERANCE) -> np.ndarray:
    """(n,) bool: the face is grayscale, i.e. its mean per-pixel channel spread (max - min, 0..255) is below
    ``tolerance`` (exactly 0 for the planted grayscale; SynthFaces' colour faces are far above)."""
    import torch

    return (channel_spread(torch.from_numpy(np.ascontiguousarray(images))) < tolerance).numpy()


def attribute_rates(labels: Mapping[str, np.ndarray], male: str = MALE) -> dict[str, float]:
    """Rate of each 0/1 label, and for every label A other than ``male``: P(A | male) and P(A | not male)
    (``A_given_Male``, ``A_given_not_Male``; NaN where a group is empty)."""
    rates: dict[str, float] = {name: float(np.mean(v)) if len(v) else float("nan") for name, v in labels.items()}
    if male in labels:
        m = np.asarray(labels[male]).astype(bool)
        for name, values in labels.items():
            if name == male:
                continue
            values = np.asarray(values).astype(bool)
            rates[f"{name}_given_{male}"] = float(values[m].mean()) if m.any() else float("nan")
            rates[f"{name}_given_not_{male}"] = float(values[~m].mean()) if (~m).any() else float("nan")
    return rates


def true_fid_status() -> tuple[bool, str]:
    """Whether true FID can be computed here without any download, and if not, the one-line reason."""
    import importlib.util

    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if not path.is_file():
        return False, (f"true FID skipped: the Inception weights are not in the local torch hub cache ({path}); "
                       "nothing is downloaded (the classifier-FID above is this project's stand-in)")
    if importlib.util.find_spec("torch_fidelity") is None:
        return False, ("true FID skipped: the Inception weights are cached but torch-fidelity, which torchmetrics' "
                       "FID needs, is not installed")
    return True, f"true FID with the cached Inception weights ({path})"


def true_fid(real: np.ndarray, fake: np.ndarray, device: str = "cpu", batch_size: int = 128) -> float:
    """FID (torchmetrics, Inception pool3 features) of uint8 faces; call only when ``true_fid_status()`` is True."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=2048).to(device)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).permute(0, 3, 1, 2)
            fid.update(batch.to(device), real=is_real)
    return float(fid.compute())


# --------------------------------------------------------------------------------------- the classifier

class ClassifierFeatures:
    """An AttributeClassifier as a feature map: penultimate features (the input of its last Linear layer) and
    sigmoid scores of uint8 faces, resized to the classifier's own input size when it differs."""

    def __init__(self, model, image_size: int | None = None, source: str = "the classifier"):
        from torch import nn

        self.model = model.eval()
        self.heads = list(getattr(model, "targets", []))
        self.image_size, self.source = image_size, source
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears or not self.heads:
            raise TypeError(f"{source} is not an attribute classifier (no heads or no final Linear layer)")
        self._last = linears[-1]

    @classmethod
    def from_run(cls, run: str | Path, checkpoint: str = "best") -> ClassifierFeatures:
        """The classifier of a train.py run dir; a clear error when the run is not an attribute classifier."""
        from facebias.models.classifier import AttributeClassifier
        from facebias.runs import load_model, locate_run

        trained = locate_run(run=str(run), checkpoint=checkpoint)
        target = str(trained.config.model.get("_target_", ""))
        if target.rpartition(".")[2] != AttributeClassifier.__name__:
            raise ValueError(f"model.quality.classifier_run={run}: {trained.run_dir} trained {target or 'no model'}, "
                             "not an AttributeClassifier; give a classifier run, e.g. one of "
                             "`python train.py data.targets=[Male,Eyeglasses]`")
        return cls(load_model(trained), int(trained.config.data.image_size), f"classifier run {trained.run_dir}")

    def __call__(self, images: np.ndarray, batch_size: int = 256, device="cpu") -> tuple[np.ndarray, np.ndarray]:
        """(features (n, d) float64, scores (n, heads) float64) of uint8 faces (n, S, S, 3)."""
        import torch
        import torch.nn.functional as F

        captured: list[torch.Tensor] = []
        hook = self._last.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().float().cpu()))
        model = self.model.to(device)
        scores = []
        try:
            with torch.no_grad():
                for start in range(0, len(images), batch_size):
                    x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
                    if self.image_size and x.shape[1] != self.image_size:
                        x = F.interpolate(x.permute(0, 3, 1, 2).float(), size=self.image_size, mode="bilinear",
                                          antialias=True, align_corners=False)
                        x = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
                    logits = model(model.preprocess({"image": x})["image"]).float()
                    scores.append(torch.sigmoid(logits).cpu())
        finally:
            hook.remove()
        if not scores:
            raise ValueError("ClassifierFeatures: no images")
        return torch.cat(captured).flatten(1).double().numpy(), torch.cat(scores).double().numpy()


# ------------------------------------------------------------------------------------------- the evaluator

class GanQuality:
    """The quality figures of a FaceGAN against its training faces (see the module docstring).

    classifier_run: a train.py AttributeClassifier run dir (or pass ``classifier``, a model, in code);
    n_samples / n_final: generated faces (and at most as many training faces) per validation epoch / at the
    end; k: the k-NN of precision/recall; seed: the fixed z and the training faces drawn; separability: a
    callable (z, labels, seed=..., holdout=...) -> Hyperplane (fit_hyperplane), or None to skip;
    true_fid: "auto" (where possible without a download) or false.
    """

    def __init__(self, classifier_run: str | None = None, checkpoint: str = "best", n_samples: int = 1000,
                 n_final: int = 5000, k: int = 3, seed: int = 0, batch_size: int = 256,
                 separability: Callable | None = None, holdout: float = 0.2, true_fid: str | bool = "auto",
                 pixel_size: int = 8, gray_tolerance: float | str = "auto", classifier=None):
        for name, value in (("n_samples", n_samples), ("n_final", n_final), ("k", k), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.quality.{name}={value!r} must be a positive int")
        if min(n_samples, n_final) <= k:
            raise ValueError(f"model.quality: n_samples={n_samples} and n_final={n_final} must exceed k={k}")
        if true_fid not in ("auto", False, "false", None):
            raise ValueError(f"model.quality.true_fid={true_fid!r}: use auto or false")
        self.classifier_run, self.checkpoint = classifier_run, checkpoint
        self.n_samples, self.n_final, self.k, self.seed, self.batch_size = n_samples, n_final, k, seed, batch_size
        self.separability, self.holdout = separability, holdout
        self.true_fid, self.pixel_size, self.gray_tolerance = true_fid == "auto", pixel_size, gray_tolerance
        self._classifier = classifier if classifier is None or isinstance(classifier, ClassifierFeatures) \
            else ClassifierFeatures(classifier)
        self._loaded = classifier is not None
        self._reference: dict[tuple[int, int], dict[str, Any]] = {}
        self._said: set[str] = set()

    def _say_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            log.info(message)

    @property
    def classifier(self) -> ClassifierFeatures | None:
        if not self._loaded:
            self._loaded = True
            if self.classifier_run:
                self._classifier = ClassifierFeatures.from_run(self.classifier_run, self.checkpoint)
            else:
                self._say_once("GAN quality: no model.quality.classifier_run given, so no classifier-FID, precision/"
                               "recall, attribute rates or latent separability; pixel-FD is the quality figure "
                               "(give model.quality.classifier_run=<an AttributeClassifier run dir>)")
        return self._classifier

    # -- the training faces ---------------------------------------------------------------------------------
    def reference(self, datamodule, n: int, device="cpu") -> dict[str, Any]:
        """At most n training faces (a seeded draw, planted grayscale applied), their features, labels and rates."""
        key = (id(datamodule), n)
        if key in self._reference:
            return self._reference[key]
        from facebias.data.transforms import to_grayscale

        train = datamodule.dataset("train")
        count = min(n, len(train))
        idx = np.sort(np.random.default_rng(self.seed).choice(len(train), size=count, replace=False))
        images = []
        for start in range(0, count, 1024):
            batch = train.__getitems__(idx[start:start + 1024])
            images.append(to_grayscale(batch["image"], batch["gray"]).numpy())
        images = np.concatenate(images)
        table, concept = datamodule.table, getattr(datamodule, "concept", None)
        truth = {name: table.attr(name)[train.rows].astype(bool)
                 for name in self._label_names(table.attr_names) if name in table.attr_names}
        ref: dict[str, Any] = {"images": images, "pixels": pixel_features(images, self.pixel_size)}
        if concept == GRAYSCALE:
            truth[GRAYSCALE] = np.asarray(train.gray).astype(bool)
            ref["colour"] = images[~truth[GRAYSCALE][idx]]
        ref["true_rates"] = attribute_rates(truth)
        if self.classifier is not None:
            ref["features"], ref["scores"] = self.classifier(images, self.batch_size, device)
        self._reference[key] = ref
        return ref

    def _label_names(self, available: Sequence[str]) -> list[str]:
        heads = self.classifier.heads if self.classifier is not None else [MALE]
        return [h for h in heads if h in available]

    def _labels(self, scores: np.ndarray | None, images: np.ndarray, gray_tolerance: float | None = None,
                ) -> dict[str, np.ndarray]:
        """Head labels at 0.5, and grayscale (channel spread below ``gray_tolerance``) where one is given."""
        labels = {}
        if scores is not None:
            labels = {head: scores[:, i] > 0.5 for i, head in enumerate(self.classifier.heads)}
        if gray_tolerance is not None:
            labels[GRAYSCALE] = grayscale_flags(images, gray_tolerance)
        return labels

    def _tolerance(self, images: np.ndarray, colour: np.ndarray | None) -> float | None:
        """The grayscale tolerance for generated faces of a grayscale-family set (None otherwise): as configured,
        or (auto) the pixel rule calibrated on them, since a GAN's grayscale keeps a faint tint; capped at the
        real colour photos' 1 % quantile of spread."""
        if colour is None or self.gray_tolerance != "auto":
            return None if colour is None else float(self.gray_tolerance)
        if len(colour) < 2:
            return GRAY_TOLERANCE
        from facebias.models.rules import GrayscaleRule, GrayscaleRuleError

        try:
            return float(GrayscaleRule(None).calibrate(images, colour, strict=False)["tolerance"])
        except GrayscaleRuleError:  # every face alike: no cut to make
            return GRAY_TOLERANCE

    # -- the figures ------------------------------------------------------------------------------------------
    def evaluate(self, gan, datamodule, final: bool = False) -> dict[str, Any]:
        """The figures of ``gan`` (a FaceGAN: ``sample_latents``, ``generate``) against ``datamodule``'s training
        faces: per validation epoch (n_samples) or at the end (``final``: n_final, and true FID if possible)."""
        import torch

        n = self.n_final if final else self.n_samples
        try:
            device = next(gan.parameters()).device
        except (AttributeError, StopIteration):
            device = torch.device("cpu")
        ref = self.reference(datamodule, n, device)
        z = gan.sample_latents(n, self.seed)
        images = gan.generate(z, batch_size=self.batch_size)
        z = np.asarray(z.cpu().numpy() if isinstance(z, torch.Tensor) else z, dtype=np.float64)
        figures: dict[str, Any] = {"pixel_fd": frechet_distance(ref["pixels"], pixel_features(images, self.pixel_size))}
        scores = None
        if self.classifier is not None:
            features, scores = self.classifier(images, self.batch_size, device)
            figures["cfid"] = frechet_distance(ref["features"], features)
            figures["precision"], figures["recall"] = knn_precision_recall(ref["features"], features, self.k)
        figures["quality"] = figures.get("cfid", figures["pixel_fd"])
        tolerance = self._tolerance(images, ref.get("colour"))
        generated = self._labels(scores, images, tolerance)
        if generated:
            real_tolerance = None  # the planted grayscale of real photos is exact: no calibration
            if tolerance is not None:
                real_tolerance = GRAY_TOLERANCE if self.gray_tolerance == "auto" else tolerance
            reference = self._labels(ref.get("scores"), ref["images"], real_tolerance)
            figures["rates"] = {"generated": attribute_rates(generated), "train": attribute_rates(reference),
                                "train_true": ref["true_rates"]}
            figures["separability"] = self._separability(z, generated)
        notes = []
        if final and self.true_fid:
            possible, message = true_fid_status()
            self._say_once(message)
            if possible:
                figures["fid"] = true_fid(ref["images"], images, str(device))
            else:
                notes.append(message)
        figures["settings"] = {"quality_figure": "classifier-FID" if "cfid" in figures else "pixel-FD",
                               "n_generated": int(len(images)), "n_train": int(len(ref["images"])), "k": self.k,
                               "seed": self.seed, "classifier_run": self.classifier_run,
                               "classifier_heads": self.classifier.heads if self.classifier is not None else [],
                               "threshold": 0.5, "gray_tolerance": tolerance, "notes": notes}
        return figures

    def _separability(self, z: np.ndarray, labels: Mapping[str, np.ndarray]) -> dict[str, float | None]:
        """Held-out accuracy of a linear SVM on z for each label (None: one class only, or no fit configured)."""
        if self.separability is None:
            self._say_once("GAN quality: model.quality.separability is null, so no latent separability")
            return {}
        result: dict[str, float | None] = {}
        for name, values in labels.items():
            try:
                plane = self.separability(z, np.asarray(values, dtype=np.uint8), seed=self.seed, holdout=self.holdout)
                result[name] = plane.holdout_accuracy
            except ValueError as error:  # one class only (OneClassSampleError) or too few samples
                self._say_once(f"GAN quality: no latent SVM for {name}: {str(error).split(':')[0]}")
                result[name] = None
        return result
