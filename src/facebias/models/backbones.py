"""torchvision backbones with a fresh head of any width; pretrained weights only from the local cache."""

from __future__ import annotations

from torch import nn

BACKBONES = ("resnet18", "resnet34", "resnet50", "small_cnn")


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for but are not on this machine and cannot be downloaded."""


def _load_torchvision(name: str, pretrained: bool) -> nn.Module:
    import torchvision

    builder = getattr(torchvision.models, name)
    if not pretrained:
        return builder(weights=None)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return builder(weights=weights)
    except Exception as error:  # offline: urllib raises URLError / OSError from inside torch.hub
        raise PretrainedWeightsUnavailable(
            f"model.pretrained=true needs the ImageNet weights of {name} ({weights.url}); they are not in the "
            f"torch hub cache (TORCH_HOME, default ~/.cache/torch/hub/checkpoints) and could not be downloaded "
            f"({type(error).__name__}: {error}). Copy the file there, or train from scratch with "
            f"model.pretrained=false."
        ) from error


def small_cnn(num_outputs: int, width: int = 32) -> nn.Module:
    """A four-block CNN: the 'small CNN' of the design's learnability check, fast on two CPU cores."""
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True), nn.MaxPool2d(2))
    return nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width),
                         block(4 * width, 8 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8 * width, num_outputs))


def build_backbone(name: str, num_outputs: int, pretrained: bool = False) -> nn.Module:
    """A classifier network ending in `num_outputs` logits."""
    if name == "small_cnn":
        if pretrained:
            raise PretrainedWeightsUnavailable("model.backbone=small_cnn has no pretrained weights; "
                                               "set model.pretrained=false")
        return small_cnn(num_outputs)
    if name not in BACKBONES:
        raise ValueError(f"unknown model.backbone={name!r}; choose one of {', '.join(BACKBONES)}")
    net = _load_torchvision(name, pretrained)
    net.fc = nn.Linear(net.fc.in_features, num_outputs)
    return net
