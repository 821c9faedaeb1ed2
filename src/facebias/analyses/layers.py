"""``dissect.py analysis=layers``: every module of a run's network (or of a model the user brings, ``model.file=``)
with its output shape, the dissectable ones (feature maps) marked, so a user knows what to pass as ``layers=`` or
``layer=``. Nothing but the network is loaded: no data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from facebias.analyses.base import Analysis, Context
from facebias.reporting.console import console
from facebias.reporting.files import write_json_atomic
from facebias.results import SCHEMA_VERSION
from facebias.runs import TrainedRun, UserModelRun, load_model


class LayerListing(Analysis):
    name = "layers"
    kind = "layers"
    result_file = "layers.json"
    subdir = "layers"
    user_model = True

    def run(self, run: TrainedRun | UserModelRun, settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        from facebias.dissect.layers import default_blocks, feature_map_layers, network_of

        net = network_of(load_model(run))
        image_size = int(run.config.data.image_size)
        shapes, maps = feature_map_layers(net, image_size)
        blocks = default_blocks(net, maps)
        rows = [{"layer": name, "shape": list(shape[1:]), "feature_map": name in maps, "default": name in blocks}
                for name, shape in shapes.items()]  # shape per image: (units, h, w) for a feature map
        summary = {"schema": SCHEMA_VERSION, "job": "dissect-layers",
                   "run_dir": None if run.run_dir is None else str(run.run_dir), "model": run.label,
                   "source": run.parent(), "checkpoint": str(run.checkpoint), "network": type(net).__name__,
                   "image_size": image_size, "default_layers": blocks, "layers": rows}
        write_json_atomic(ctx.out / "layers.json", summary)
        return summary

    def print_run(self, summary: Mapping[str, Any], ctx: Context) -> None:
        con = console()
        con.print(f"layers of {summary['network']} ({summary['model']}) at {summary['image_size']} px, output per "
                  "image (units, h, w); * = dissected by default, - = not a feature map", soft_wrap=True)
        for row in summary["layers"]:
            mark = "*" if row["default"] else (" " if row["feature_map"] else "-")
            con.print(f" {mark} {row['layer']:<28} {tuple(row['shape'])}", highlight=False)
        con.print(f"written to {ctx.out / 'layers.json'}")
