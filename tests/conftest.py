"""Shared fixtures: tiny configs composed once, a small SynthFaces set shared by the whole session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CELEBA_SAMPLE = REPO / "tests" / "data" / "celeba_sample"  # ten real CelebA images in CelebA's layout
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

# Small enough to train in seconds, large enough that a P-sweep has every cell populated.
TINY = [
    "data.synth.n_faces=1200",
    "data.image_size=32",
    "data.batch_size=64",
    "model.backbone=small_cnn",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "callbacks.progress_bar=null",
    "logger=none",
]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data dir (SynthFaces + image cache) for every test that trains."""
    return tmp_path_factory.mktemp("data")


def compose(overrides: list[str], config_name: str = "train"):
    """Compose a config the way the entry point does (hydra.runtime fields included)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import facebias.resolvers  # noqa: F401

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A writable copy of the real CelebA sample, for tests that change or break its files."""
    root = tmp_path / "celeba"
    shutil.copytree(CELEBA_SAMPLE, root)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@pytest.fixture
def one_thread():
    """Tiny models and maps: one torch thread is faster than two contending ones (and spares a busy machine).
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
