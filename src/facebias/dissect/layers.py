"""Find a model's layers by module name and capture their outputs with forward hooks.

Layers are named as ``model.named_modules()`` names them (``layer4``, ``layer3.1.conv2``,
``backbone.features.7``), so a model the user brings needs no adapter beyond its own module tree.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def list_layers(model: nn.Module, probe: torch.Tensor | None = None) -> list[str]:
    """Every named submodule of the model, in registration order (the root itself excluded).

    With a probe batch, each entry becomes ``"name (output shape)"`` for people choosing a layer
    (``layer_output_shapes`` gives the same as a dict); layers the probe does not reach are dropped.
    """
    names = [name for name, _ in model.named_modules() if name]
    if probe is None:
        return names
    shapes = layer_output_shapes(model, probe, names)
    return [f"{name} {shapes[name]}" for name in names if name in shapes]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; an unknown name suggests the closest existing ones."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = (
            f"did you mean {close}?" if close else f"top-level layers: {[n for n in names if '.' not in n]}"
        )
        raise KeyError(f"model {type(model).__name__} has no layer {name!r}; {hint}") from None


def layer_output_shapes(
    model: nn.Module, probe: torch.Tensor, names: Sequence[str] | None = None
) -> dict[str, tuple]:
    """Output shape of each named layer (all layers by default) for one probe batch.

    Layers whose output is not a tensor (tuples, dicts) map to ``()``; layers not reached by the
    forward pass are absent.
    """
    names = list(names) if names is not None else [n for n, _ in model.named_modules() if n]
    shapes: dict[str, tuple] = {}
    handles = []

    def make_hook(layer_name: str):
        def hook(_module, _inputs, output):
            shapes[layer_name] = tuple(output.shape) if isinstance(output, torch.Tensor) else ()

        return hook

    try:
        for name in names:
            handles.append(get_layer(model, name).register_forward_hook(make_hook(name)))
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(probe)
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return {name: shapes[name] for name in names if name in shapes}


class _AllLayersCaptured(Exception):
    """Raised from the last needed hook to skip the rest of the forward pass."""


class ActivationRecorder:
    """Outputs of several layers from one forward pass, checked to be (B, units, h, w) maps."""

    def __init__(self, model: nn.Module, names: Sequence[str], stop_early: bool = True):
        if not names:
            raise ValueError("no layer names given; list_layers(model) shows the choices")
        if len(set(names)) != len(names):
            raise ValueError(f"layer names repeat: {list(names)}")
        self.model = model
        self.names = list(names)
        self.stop_early = stop_early
        self.outputs: dict[str, torch.Tensor] = {}
        self._modules = {name: get_layer(model, name) for name in self.names}

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise ValueError(
                    f"layer {name!r} outputs {shape}; dissection needs a (batch, units, height, width) "
                    f"feature map: choose a convolutional layer (list_layers(model) names them)"
                )
            if name in self.outputs:
                raise ValueError(f"layer {name!r} ran twice in one forward pass; choose a module used once")
            self.outputs[name] = output.detach()
            if self.stop_early and len(self.outputs) == len(self.names):
                raise _AllLayersCaptured

        return hook

    @contextmanager
    def attached(self) -> Iterator[ActivationRecorder]:
        handles = [module.register_forward_hook(self._hook(name)) for name, module in self._modules.items()]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the model (inside ``attached()``) and return {layer: activations}."""
        self.outputs = {}
        try:
            self.model(images)
        except _AllLayersCaptured:
            pass
        missing = [name for name in self.names if name not in self.outputs]
        if missing:
            raise RuntimeError(
                f"layers {missing} never ran in the forward pass of {type(self.model).__name__}"
            )
        return self.outputs


def network_of(model: nn.Module) -> nn.Module:
    """The network inside a classifier wrapper (AttributeClassifier.net), else the model itself."""
    net = getattr(model, "net", None)
    return net if isinstance(net, nn.Module) else model



def probe_input(image_size: int) -> torch.Tensor:
    return torch.zeros(1, 3, image_size, image_size)



def feature_map_layers(net: nn.Module, image_size: int) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(every layer's output shape, the layers whose output is a (1, units, h, w) map) at this input size."""
    shapes = layer_output_shapes(net, probe_input(image_size))
    return shapes, {name: shape for name, shape in shapes.items() if len(shape) == 4}



def default_blocks(net: nn.Module, maps: dict[str, tuple]) -> list[str]:
    """The network's blocks: top-level containers whose output is a feature map larger than 1x1."""
    return [name for name, module in net.named_children()
            if name in maps and next(module.children(), None) is not None and maps[name][2] * maps[name][3] > 1]



def resolve_layers(net: nn.Module, requested: list[str] | None, image_size: int) -> tuple[list[str], dict[str, tuple]]:
    """The layers to dissect (requested or the default blocks), checked; and the map shape of every candidate."""
    shapes, maps = feature_map_layers(net, image_size)
    listing = ", ".join(f"{name} {tuple(shape[1:])}" for name, shape in maps.items())
    if requested is None:
        layers = default_blocks(net, maps)
        if not layers:
            raise ValueError(f"{type(net).__name__} has no block with a feature map larger than 1x1 at "
                             f"{image_size} px; choose layers= among: {listing}")
        return layers, maps
    if len(set(requested)) != len(requested):
        raise ValueError(f"layers={requested}: a layer is named twice")
    unknown = [name for name in requested if name not in shapes]
    if unknown:
        raise ValueError(f"layers={requested}: {type(net).__name__} has no layer {', '.join(map(repr, unknown))}. "
                         f"Valid names (feature maps, as units x h x w at {image_size} px): {listing}")
    flat = [name for name in requested if name not in maps]
    if flat:
        raise ValueError(f"layers={requested}: {', '.join(f'{n} outputs {shapes[n]}' for n in flat)}, not a "
                         f"(batch, units, h, w) feature map; choose among: {listing}")
    return requested, maps

