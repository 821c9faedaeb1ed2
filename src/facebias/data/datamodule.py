"""FaceDataModule: any source (SynthFaces, CelebA, folder) + planted bias + the decoded cache, as Lightning data.

Batches are dicts: `image` (uint8 NHWC, turned into model input on the device by the model), `target`
(float, one column per head), `protected` and `concept` (long, per image), `gray` (bool: render this image
in grayscale, the planted `grayscale` concept) and `row` (index into the source table), so that metrics per
(target x concept) cell can be computed downstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from facebias.data.bias import GRAYSCALE, BiasedSplits, SplitRows, controlled_splits
from facebias.data.sources import load_table
from facebias.data.table import SPLITS, FaceTable, UnknownAttributeError


class FaceBatches(Dataset):
    """Rows of the decoded cache; `__getitems__` hands out a whole batch by one fancy index (no per-item work)."""

    def __init__(self, images: np.ndarray, split: SplitRows, targets: np.ndarray, protected: np.ndarray,
                 grayscale: bool):
        self.images, self.rows, self.concept = images, split.rows, split.concept
        self.targets, self.protected = targets, protected
        self.gray = split.concept if grayscale else np.zeros(len(split), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])

    def __getitems__(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx)
        rows = self.rows[idx]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(self.images[rows])),
            "target": torch.from_numpy(self.targets[idx].astype(np.float32)),
            "protected": torch.from_numpy(self.protected[idx].astype(np.int64)),
            "concept": torch.from_numpy(self.concept[idx].astype(np.int64)),
            "row": torch.from_numpy(rows.astype(np.int64)),
            "gray": torch.from_numpy(self.gray[idx].astype(np.bool_)),
        }


def _keep_batch(batch):
    return batch


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: (seed, epoch) mixed by numpy's SeedSequence (no collisions such as
    seed + epoch would give between (0, 1) and (1, 0))."""
    mixed = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch)]).generate_state(1, np.uint64)[0]
    return int(mixed)


class EpochShuffle(DistributedSampler):
    """The training order: a permutation drawn from `epoch_seed(seed, epoch)`, nothing else.

    `set_epoch` (Lightning calls it before every epoch, resumed runs included) picks the epoch. With several
    processes (DDP) each rank takes every `world`-th index of the same permutation, padded to equal length as
    torch's DistributedSampler does; one process takes it whole. Being a DistributedSampler, Lightning keeps
    it under DDP instead of replacing it with its own.
    """

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int | None = None, rank: int | None = None):
        if num_replicas is None or rank is None:
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            num_replicas = torch.distributed.get_world_size() if distributed else 1
            rank = torch.distributed.get_rank() if distributed else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)

    def __iter__(self):
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        if self.total_size > len(order):  # pad so every rank gets the same number of indices
            order += (order * (self.total_size // max(1, len(order)) + 1))[:self.total_size - len(order)]
        return iter(order[self.rank:self.total_size:self.num_replicas])


class FaceDataModule(pl.LightningDataModule):
    """Builds the biased splits and the image cache once, then serves batches by tensor slicing."""

    def __init__(self, source: str = "synthfaces", root: str | None = None, data_dir: str = "data",
                 synth: dict | None = None, folder: dict | None = None, targets: Sequence[str] = ("Male",),
                 protected: str | None = None, concept: str | None = None, p: float = 50,
                 sweep: Sequence[float] | None = None, n_train: int | None = None, image_size: int = 64,
                 crop: str = "celeba", batch_size: int = 64, eval_batch_size: int = 256, num_workers: int = 0,
                 seed: int = 0, progress: bool = True):
        super().__init__()
        self.source, self.root, self.data_dir = source, root, Path(data_dir)
        self.synth, self.folder = dict(synth or {}), dict(folder or {})
        self.targets = list(targets)
        self.concept, self.p, self.sweep, self.n_train = concept, p, list(sweep or []), n_train
        self.protected_given = protected
        self.protected = protected or concept or ("Male" if "Male" not in self.targets else None)
        self.image_size, self.crop = image_size, crop
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.seed, self.progress = seed, progress
        self.table: FaceTable | None = None
        self.splits: BiasedSplits | None = None
        self.images: np.ndarray | None = None
        self._datasets: dict[str, FaceBatches] = {}
        self.augmented = None  # generated training images (facebias.data.augmented), joined to train only

    # -- building -------------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read the table, check it serves this request, draw the splits, then (only then) build the cache.

        Every stage needs all three splits (training picks its checkpoint on val and scores test;
        evaluate calibrates on val), and every attribute named in the options must exist: both are
        checked as soon as the annotation table is read, before any image is decoded.
        """
        if self.table is not None:
            return
        from facebias.data.cache import image_cache

        table = self.preflight()
        splits = controlled_splits(table, self.targets[0], self.concept, self.p, self.sweep, self.n_train,
                                   self.seed)
        self.table, self.splits = table, splits
        self.images = image_cache(table, self.image_size, self.data_dir / "cache", crop=self.crop,
                                  progress=self.progress)
        self._datasets = {name: self._dataset(getattr(splits, name)) for name in ("train", "val", "test")}

    def preflight(self) -> FaceTable:
        """The annotation table, checked to serve this request (all three splits hold images, every named
        attribute exists); no image is decoded. `setup` starts with it; train's `check_config` calls it for
        CelebA and folder data so that a bad request fails before the run directory or any stage exists
        (for SynthFaces it would generate the set, so check_config checks the options instead)."""
        table = load_table(self.source, self.root, self.data_dir, self.synth, self.folder, self.progress,
                           require_splits=tuple(SPLITS))
        self.check_attributes(table)
        return table

    def check_attributes(self, table: FaceTable) -> None:
        """Every attribute the options name (targets, concept, protected) is a column of `table`, or one
        error that names each unknown option and lists the attributes the source has."""
        from difflib import get_close_matches

        wanted = [("data.targets", name) for name in self.targets]
        if self.concept not in (None, GRAYSCALE):
            wanted.append(("data.concept", self.concept))
        if self.protected is not None and self.protected != self.concept:
            wanted.append(("data.protected", self.protected))
        unknown = [(option, name) for option, name in wanted if name not in table.attr_names]
        if not unknown:
            return
        problems = []
        for option, name in unknown:
            close = get_close_matches(name, table.attr_names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if option == "data.protected" and self.protected_given is None:
                problems.append(f"data.protected is null, so the protected attribute defaults to {name!r}, "
                                f"which this source lacks{hint}: set data.protected")
            else:
                problems.append(f"{option} names {name!r}{hint}")
        where = table.listed_in or table.image_dir
        raise UnknownAttributeError(
            f"unknown attribute for the {table.source} data ({where}): {'; '.join(problems)}. "
            f"It has: {', '.join(table.attr_names)}")

    def _dataset(self, split: SplitRows) -> FaceBatches:
        targets = np.stack([self.table.attr(t)[split.rows] for t in self.targets], axis=1)
        return FaceBatches(self.images, split, targets, self.protected_values(split), self.concept == GRAYSCALE)

    def protected_values(self, split: SplitRows) -> np.ndarray:
        """g per row: the concept flags when the protected attribute is the bias concept, else its column."""
        if self.protected is None:
            return np.zeros(len(split), dtype=np.uint8)
        if self.protected == self.concept:
            return split.concept
        return self.table.attr(self.protected)[split.rows]

    @property
    def cell_column(self) -> str:
        """The batch column that splits the per-cell accuracies and the gap: the planted concept where there is
        one (the target x concept cells of the controlled experiments), else the protected attribute (target x
        group, the reference's cells: e.g. Smiling x Male)."""
        return "concept" if self.concept is not None else "protected"

    @property
    def cell_attribute(self) -> str | None:
        """The name of what cell_column holds (the concept or the protected attribute)."""
        return self.concept if self.concept is not None else self.protected

    def dataset(self, split: str) -> FaceBatches:
        self.setup()
        return self._datasets[split]

    def attach_augmentation(self, augmented) -> None:
        """Train on the real training split joined with generated images (an AugmentedBatches); validation
        and test stay real."""
        self.augmented = augmented

    # -- loaders --------------------------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        """A split's loader; with `shuffle`, the order is `EpochShuffle`'s: a function of (seed, epoch) alone.

        Lightning calls the sampler's `set_epoch` before every epoch, so a run resumed from a checkpoint sees
        the same order as the uninterrupted run (a generator seeded once would replay epoch 0's order). The
        loader's own generator only seeds worker processes, which draw nothing at random. Under DDP the shuffle
        hands each rank its share (a DistributedSampler, which Lightning keeps); val and test loaders stay
        sequential and Lightning shares them out (the model gathers their scores back, see `AttributeClassifier`).
        """
        dataset = self.dataset(split)
        if split == "train" and self.augmented is not None:
            from facebias.data.augmented import JoinedBatches

            dataset = JoinedBatches(dataset, self.augmented)
        sampler = EpochShuffle(dataset, self.seed) if shuffle else None
        trainer = getattr(self, "trainer", None)  # pinned batches copy to a GPU without stalling the host
        on_gpu = trainer is not None and trainer.strategy.root_device.type == "cuda"
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          generator=torch.Generator().manual_seed(self.seed), collate_fn=_keep_batch,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0, pin_memory=on_gpu)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def describe(self) -> dict[str, Any]:
        """What was built, for the run summary and the logger."""
        self.setup()
        s = self.splits
        return {"source": self.source, "images": len(self.table), "targets": self.targets,
                "protected": self.protected, "concept": self.concept, "P": s.p, "n_train": len(s.train),
                "n_val": len(s.val), "n_test": len(s.test), "summary": s.summary(), "notes": s.notes}
