"""One door to every data source: `load_table(source, ...)` -> FaceTable."""

from __future__ import annotations

from pathlib import Path

from facebias.data.table import FaceTable

SOURCES = ("synthfaces", "celeba", "folder")


def load_table(source: str, root: str | None, data_dir: str | Path, synth: dict | None = None,
               folder: dict | None = None, progress: bool = True,
               require_splits: tuple[str, ...] = ("train",)) -> FaceTable:
    """Read (and for SynthFaces, generate on first use into `data_dir`) the face table of a source.

    `require_splits` lists the splits that must hold images; an empty one fails here, naming the file
    that assigns the splits (the partition file, or the CSV's split column or fractions).
    """
    if source == "synthfaces":
        from facebias.data.celeba import read_celeba
        from facebias.data.synthfaces import generate

        synth_root = generate(Path(data_dir), progress=progress, **(synth or {}))
        return read_celeba(synth_root, source="synthfaces", require_splits=require_splits)
    if root is None:
        raise ValueError(f"data={source} needs data.root: the directory holding the images "
                         f"(e.g. data.root=/datasets/celeba for CelebA's official layout)")
    if source == "celeba":
        from facebias.data.celeba import read_celeba

        return read_celeba(root, require_splits=require_splits)
    if source == "folder":
        from facebias.data.folder import read_folder

        options = dict(folder or {})
        if not options.get("csv_path"):
            raise ValueError("data=folder needs data.folder.csv_path: a CSV with a relative image path column "
                             "and 0/1 label columns")
        return read_folder(root, **options, require_splits=require_splits)
    raise ValueError(f"unknown data source {source!r}; use one of {', '.join(SOURCES)}")
