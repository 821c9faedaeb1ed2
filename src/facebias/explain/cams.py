"""Class activation maps of one network layer from the ``grad-cam`` package (pytorch-grad-cam), batched.

The map of image i for a binary head h and class c is the library's: the method (Grad-CAM, Grad-CAM++,
LayerCAM, Score-CAM, Eigen-CAM, ...) weights the layer's channels, the weighted sum is clipped at 0,
resized to the input size (OpenCV, bilinear) and min-max normalised per image to [0, 1]. The score the
gradients are taken of is the head's logit for c = 1 and minus the logit for c = 0 (the library's
``BinaryClassifierOutputTarget``, applied to one column of a multi-head output).

FaceX calls the library with one image at a time. ``compute_cams`` hands it whole batches, and while it runs
nothing before the chosen layer is recorded for autograd: the network's parameters are frozen and the layer's
output re-enters the graph as a fresh tensor (a forward hook), so the backward pass stops at the layer instead
of running down to the input and into every weight. The gradients at the layer, hence the maps, are the same
(the test compares them with ``library_loop_cams``, FaceX's way); BatchNorm is in eval mode, so images do
not interact within a batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

# canonical name -> pytorch_grad_cam class name
METHODS = {
    "GradCAM": "GradCAM",
    "GradCAM++": "GradCAMPlusPlus",
    "LayerCAM": "LayerCAM",
    "ScoreCAM": "ScoreCAM",
    "EigenCAM": "EigenCAM",
    "EigenGradCAM": "EigenGradCAM",
    "HiResCAM": "HiResCAM",
    "XGradCAM": "XGradCAM",
    "GradCAMElementWise": "GradCAMElementWise",
}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name)).lower().replace("plusplus", "++")


_BY_KEY = {_key(name): name for name in METHODS}


def method_name(name: str) -> str:
    """The canonical name of a CAM method given in any case/spelling (gradcam++, GradCAMPlusPlus, grad-cam)."""
    found = _BY_KEY.get(_key(name))
    if found is None:
        raise ValueError(f"method={name!r}: unknown CAM method; use one of {', '.join(METHODS)}")
    return found


class LogitTarget:
    """What the gradients are taken of: the logit of output column ``index``, negated for class 0."""

    def __init__(self, index: int, target_class: int):
        self.index, self.sign = int(index), 1.0 if int(target_class) == 1 else -1.0

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.sign * output[..., self.index]


def output_index(n_outputs: int, head: int, target_class: int) -> None:
    """Check a (head, class) against a network with ``n_outputs`` binary logits (one per head)."""
    if not 0 <= head < n_outputs:
        raise ValueError(f"head index {head} is out of range: the network has {n_outputs} output(s)")
    if isinstance(target_class, bool) or target_class not in (0, 1):
        raise ValueError(f"target_class={target_class!r} is out of range: each head of this model is binary "
                         "(one logit): use 1 (the attribute present) or 0 (absent)")


def _cam_class(method: str):
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, METHODS[method_name(method)])


@contextmanager
def _quiet_score_cam() -> Iterator[None]:
    """Score-CAM draws a tqdm bar per image; replace the bar by the plain iterable while it runs."""
    from pytorch_grad_cam import score_cam

    original = score_cam.tqdm
    score_cam.tqdm = SimpleNamespace(tqdm=lambda iterable, *args, **kwargs: iterable)
    try:
        yield
    finally:
        score_cam.tqdm = original


@contextmanager
def graph_from(net: nn.Module, layer: nn.Module) -> Iterator[None]:
    """Autograd only from ``layer``'s output on: parameters frozen, the output re-enters as a new graph root."""

    def restart(_module, _inputs, output):
        if not torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
            return None
        return output.detach().requires_grad_(True).clone()  # a non-leaf: in-place ops after it stay legal

    flags = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    handle = layer.register_forward_hook(restart, prepend=True)  # before the library's own hooks
    try:
        yield
    finally:
        handle.remove()
        for p, flag in zip(net.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def compute_cams(net: nn.Module, layer: str, inputs: torch.Tensor, head: int = 0, target_class: int = 1,
                 method: str = "GradCAM", batch_size: int = 64, device: torch.device | str = "cpu",
                 progress=None, restart_graph: bool = True) -> np.ndarray:
    """(n, H, W) float32 maps in [0, 1] at the input size, ``batch_size`` images per library call
    (``restart_graph=False``: autograd through the whole network, as the library does by itself)."""
    from facebias.dissect.layers import get_layer

    name = method_name(method)
    net = net.to(device).eval()
    module = get_layer(net, layer)
    n_outputs = _n_outputs(net, inputs[:1].to(device))
    output_index(n_outputs, head, target_class)
    targets_of = LogitTarget(head, target_class)
    cams = []
    trimmed = graph_from(net, module) if restart_graph else nullcontext()
    with trimmed, _quiet_score_cam() if name == "ScoreCAM" else nullcontext():
        cam = _cam_class(name)(model=net, target_layers=[module])
        cam.batch_size = batch_size  # Score-CAM: masked inputs per forward pass
        try:
            for start in range(0, len(inputs), batch_size):
                batch = inputs[start:start + batch_size].to(device)
                cams.append(cam(input_tensor=batch, targets=[targets_of] * len(batch)))
                if progress is not None:
                    progress(min(start + batch_size, len(inputs)), len(inputs))
        finally:
            cam.activations_and_grads.release()
    if not cams:
        return np.zeros((0, *inputs.shape[-2:]), dtype=np.float32)
    return np.concatenate(cams).astype(np.float32, copy=False)


def library_loop_cams(net: nn.Module, layer: str, inputs: torch.Tensor, head: int = 0, target_class: int = 1,
                      method: str = "GradCAM", device: torch.device | str = "cpu") -> np.ndarray:
    """FaceX's way, for comparison: the library as it comes, one image per call."""
    from facebias.dissect.layers import get_layer

    name = method_name(method)
    net = net.to(device).eval()
    targets = [LogitTarget(head, target_class)]
    with _quiet_score_cam() if name == "ScoreCAM" else nullcontext():
        cam = _cam_class(name)(model=net, target_layers=[get_layer(net, layer)])
        try:
            maps = [cam(input_tensor=inputs[i:i + 1].to(device), targets=targets) for i in range(len(inputs))]
        finally:
            cam.activations_and_grads.release()
    return np.concatenate(maps).astype(np.float32, copy=False)


def _n_outputs(net: nn.Module, probe: torch.Tensor) -> int:
    with torch.no_grad():
        output = net(probe)
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"the network returns {shape}; a CAM needs (batch, outputs) logits")
    return int(output.shape[1])


def randomised_copy(net: nn.Module, seed: int) -> nn.Module:
    """The same architecture with fresh random weights (every module's own initialiser, seeded): the model
    of Adebayo et al.'s sanity check. BatchNorm layers get fresh statistics too (mean 0, variance 1)."""
    import copy

    clone = copy.deepcopy(net).cpu()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in clone.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    finally:
        torch.random.set_rng_state(state)
    return clone.eval()
