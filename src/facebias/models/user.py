"""A model the user brings to dissect.py's analyses (layers, units, regions): a Python file, a class and a state_dict.

SECURITY: importing the user's file is the only outside code facebias executes; it goes through the one loader
of user code, ``facebias.usercode`` (as a user generator does). The file's top-level code runs, so pass only
files you trust. The weights are read with ``torch.load(..., weights_only=True)``: tensors, never code.

Convention the class must follow: an ``nn.Module`` built by ``Class(**model.kwargs)`` whose forward maps images
(n, 3, S, S) float, S = ``model.image_size``, RGB scaled to [0, 1] then normalised per channel with
``model.mean`` and ``model.std`` (ImageNet's by default), to logits (n, len(model.heads)): column i is the logit
of the binary attribute ``model.heads[i]`` (a label of the data it is analysed on). Layers are chosen by their
``named_modules()`` names, as for a facebias classifier. ``UserModel`` wraps the network so the analyses read it
as they read a trained run's classifier: ``net`` (the user's module), ``targets`` (the heads) and ``preprocess``
(a uint8 batch into the model's input).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facebias.data.transforms import IMAGENET_MEAN, IMAGENET_STD, to_grayscale, to_model_input
from facebias.usercode import UserCodeError, build_module, import_user_class, load_weights, read_state_dict

OPTIONS = ("file", "class_name", "state_dict", "kwargs", "heads", "image_size", "mean", "std")
PROBE_BATCH = 2


class ModelLoadError(UserCodeError):
    """The user's model file, class, options or weights are unusable; the message names the option and the fix."""


class UserModel(nn.Module):
    """The user's network with what the analyses need around it: its heads and its input transform."""

    def __init__(self, net: nn.Module, heads: Sequence[str], image_size: int,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.net = net
        self.targets = [str(h) for h in heads]
        self.image_size = int(image_size)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def preprocess(self, batch: dict) -> dict:
        """A uint8 NHWC batch dict -> the same dict with ``image`` as this model's input: planted grayscale where
        ``batch["gray"]`` says so, RGB in [0, 1], resized to image_size (bilinear, antialiased) when the batch has
        another size, then (x - mean) / std per channel. A batch that is not uint8 is returned unchanged."""
        images = batch["image"]
        if images.dtype != torch.uint8:
            return batch
        if "gray" in batch:
            images = to_grayscale(images, batch["gray"])
        return {**batch, "image": to_model_input(images, mean=self.mean, std=self.std, size=self.image_size)}


def model_options(node: Mapping[str, Any]) -> dict[str, Any]:
    """The ``model.*`` options of a user model, checked (each message names the option and the fix); paths are
    left as given (the caller resolves them)."""
    options = {key: node.get(key) for key in OPTIONS}
    for key, example in (("file", "net.py"), ("class_name", "Net"), ("state_dict", "weights.pt")):
        value = options[key]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ModelLoadError(f"model.{key} is not set: a model you bring needs model.file=<net.py>, "
                                 f"model.class_name=<its nn.Module class> and model.state_dict=<weights.pt> "
                                 f"(e.g. model.{key}={example})")
    options["class_name"] = str(options["class_name"])
    heads = options["heads"]
    if isinstance(heads, str):
        heads = [heads]
    if not isinstance(heads, Sequence) or not heads or not all(isinstance(h, str) and h for h in heads):
        raise ModelLoadError(f"model.heads={heads!r}: list the attribute of each output column, in order, "
                             "e.g. model.heads=[Male] (one logit) or model.heads=[Male,Smiling]")
    if len(set(heads)) != len(heads):
        raise ModelLoadError(f"model.heads={list(heads)}: a head is named twice; each output column is one attribute")
    options["heads"] = [str(h) for h in heads]
    size = options["image_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ModelLoadError(f"model.image_size={size!r}: give the model's input size in pixels (an integer >= 8), "
                             "e.g. model.image_size=64")
    for key, default in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        value = default if options[key] is None else options[key]
        if (isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 3
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
            raise ModelLoadError(f"model.{key}={value!r}: give one number per RGB channel (inputs in [0, 1]), "
                                 f"e.g. model.{key}=[{','.join(f'{v:g}' for v in default)}] (ImageNet's)")
        if key == "std" and min(value) <= 0:
            raise ModelLoadError(f"model.std={list(value)}: every channel's std must be > 0")
        options[key] = [float(v) for v in value]
    kwargs = options["kwargs"]
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ModelLoadError(f"model.kwargs={kwargs!r}: give the constructor's keyword arguments as a mapping, "
                             "e.g. 'model.kwargs={width: 16}' (or {} for none)")
    options["kwargs"] = {str(k): v for k, v in kwargs.items()}
    return options


def load_user_model(file: str | Path, class_name: str, state_dict: str | Path | Mapping, heads: Sequence[str],
                    image_size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    kwargs: Mapping[str, Any] | None = None, check: bool = True) -> UserModel:
    """Import, build and load the user's network, then check its output on a probe batch; a UserModel in eval mode.

    Everything is checked here, before any data is read: the file (a syntax error shows the line), the class
    (a missing one lists those the file defines), the constructor arguments, the state_dict's keys (missing and
    unexpected ones listed) and shapes, and the forward pass: a (2, 3, S, S) batch must give (2, len(heads)).
    ``check=False`` leaves the output to the caller (the counterfactual search checks it against its objective:
    logits of a head, or a map).
    """
    file = Path(file)
    cls = import_user_class(file, class_name, label=f"model.file={file}", class_option="model.class_name",
                            error=ModelLoadError)
    net = build_module(cls, kwargs, class_name=class_name, file=file, kwargs_option="model.kwargs",
                       error=ModelLoadError)
    label = "model.state_dict" if isinstance(state_dict, Mapping) else f"model.state_dict={state_dict}"
    weights = read_state_dict(state_dict, label=label, error=ModelLoadError)
    owner = f"{class_name} from {file} (built with model.kwargs={dict(kwargs or {})})"
    load_weights(net, weights, label=label, owner=owner,
                 fix="; save the weights of the same class with torch.save(net.state_dict(), path), or fix "
                     "model.class_name / model.kwargs", error=ModelLoadError)
    model = UserModel(net, heads, image_size, mean, std).eval()
    if check:
        check_output(model, class_name)
    return model


def check_output(model: UserModel, class_name: str) -> None:
    """The network's output on a zero batch at its input size: (batch, one logit per head)."""
    size, heads = model.image_size, model.targets
    probe = torch.zeros(PROBE_BATCH, 3, size, size)
    try:
        with torch.no_grad():
            output = model.net(probe)
    except Exception as err:
        raise ModelLoadError(f"{class_name}.forward failed on a batch of shape {tuple(probe.shape)} "
                             f"(model.image_size={size}): {type(err).__name__}: {err}; set model.image_size to the "
                             "input size the network expects") from err
    if not isinstance(output, torch.Tensor):
        raise ModelLoadError(f"{class_name}.forward returned a {type(output).__name__}; the convention is a tensor "
                             f"of logits (batch, len(model.heads)) = ({PROBE_BATCH}, {len(heads)})")
    if tuple(output.shape) != (PROBE_BATCH, len(heads)):
        raise ModelLoadError(
            f"model.heads={heads} names {len(heads)} output column(s), but {class_name} returns shape "
            f"{tuple(output.shape)} for a batch of {PROBE_BATCH} at {size} px; the output must be (batch, "
            f"len(model.heads)) logits: name one attribute per output column, in order")
