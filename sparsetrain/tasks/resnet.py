"""ResNet-18 for CIFAR-10: the usual 32x32 variant and torchvision's original.

``cifar``: torchvision's ResNet-18 (He et al. 2016) with the stem that CIFAR training uses
(a 3x3 stride-1 convolution and no max-pool, as in He et al. 2016, Sec. 4.2, and the common
pytorch-cifar code), so the 32x32 input keeps its resolution into the first stage: 11,173,962
parameters with a 10-way head.

``imagenet``: torchvision's ResNet-18 unchanged but for a new 10-way head (11,181,642
parameters), fed 224x224 images, optionally from ImageNet-pretrained weights: the RegTop-k
paper's setting (Bereyhi et al. 2025, Sec. 5.2; ALGORITHMS.md).
"""

from __future__ import annotations

from torch import nn

from sparsetrain.errors import ConfigError

__all__ = ["build_resnet18", "check_model", "pretrained_weights", "MODELS"]

MODELS = ("cifar", "imagenet")


def pretrained_weights():
    """The ImageNet weights ``task.pretrained=true`` starts from (downloaded once into torch's hub
    cache). torchvision is imported on use: importing the task stays cheap."""
    from torchvision.models import ResNet18_Weights

    return ResNet18_Weights.IMAGENET1K_V1


def check_model(model: str, pretrained: bool) -> None:
    """Raise :class:`~sparsetrain.errors.ConfigError` for a ``task.model`` / ``task.pretrained``
    pair that :func:`build_resnet18` cannot build."""
    if model not in MODELS:
        raise ConfigError(f"task.model={model!r} is not allowed: use one of {', '.join(MODELS)}")
    if pretrained and model != "imagenet":
        raise ConfigError("task.pretrained=true needs task.model=imagenet: there are no pretrained CIFAR-stem weights")


def build_resnet18(model: str, num_classes: int = 10, pretrained: bool = False) -> nn.Module:
    from torchvision.models import resnet18

    check_model(model, pretrained)
    if model == "cifar":
        net = resnet18(num_classes=num_classes)
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's
        net.maxpool = nn.Identity()
        return net
    net = resnet18(weights=pretrained_weights() if pretrained else None)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net
