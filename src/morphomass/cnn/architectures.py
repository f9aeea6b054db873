"""The four networks of the paper (SPEC N2-N5): a trunk, a dense head and an output layer.

* CNN1 / CNN2: a timm backbone (``resnet50`` at 197 px, ``legacy_xception`` at 128 px in the paper) whose
  convolutional part ends in global average pooling, then dense 256 ReLU -> dense 37 ReLU -> the GZ2
  normalisation layer. The single band is copied to 3 channels (and standardised with the backbone's ImageNet
  mean and standard deviation) so that ImageNet weights fit without changing the architecture.
* CNN3: the custom network after Dieleman et al. (2015) at 69x69x1, valid padding, Glorot-uniform
  initialisation: conv 5x5x32 -> max pool 2 -> dropout; conv 4x4x64 -> max pool 2 -> dropout; conv 3x3x128 ->
  max pool 2 -> dropout; conv 3x3x128 -> global max pool; dense 512 ReLU -> dense 37 ReLU -> GZ2 normalisation
  (340,133 parameters).
* CNN4: CNN1's trunk and head with the normalisation replaced by a dense-1 output, trained on M/L. Its 37-unit
  next-to-last layer (the rectified dense-37 outputs) gives the CNN4 features (SPEC F4).

Every network takes images of shape (B, 1, S, S), float, in [0, 1] (the log-scaled images of ``images.zarr``).
The dense layers use Keras' default initialisation (Glorot uniform, zero bias), as the paper's Keras models
did, with one exception: the biases of the 37 outputs start at :data:`OUTPUT_BIAS_INIT` (0.1). With zero
biases about half the rectified outputs start at zero for every galaxy; a question whose answers are all zero
gets no gradient through the normalisation layer and stays stuck (the problem Dieleman et al. 2015 met and
solved with positive dense biases and a warm-up without normalisation). On the blob images of the tests, zero
biases left the validation MSE at 3x that of the mean prediction after 12 epochs; biases of 0.1 beat the mean
prediction after 2.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from morphomass.cnn.encoders import PRETRAINED_NONE, create_timm_model, resolve_pretrained
from morphomass.cnn.normalisation import N_ANSWERS, GZ2Normalisation
from morphomass.config import DIELEMAN, NetConfig
from morphomass.errors import ConfigError

__all__ = [
    "DIELEMAN",
    "DielemanTrunk",
    "OUTPUT_BIAS_INIT",
    "GZ2Net",
    "MLNet",
    "TimmTrunk",
    "build_gz2_net",
    "check_pretrained",
    "glorot_init",
    "make_ml_net",
]

#: Initial bias of the 37 rectified outputs: every answer starts alive (see the module docstring).
OUTPUT_BIAS_INIT = 0.1
#: Width of the dense layer between the trunk and the 37 outputs, per backbone family.
HEAD_WIDTH = {"timm": 256, DIELEMAN: 512}


def glorot_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every convolution and dense layer inside ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class DielemanTrunk(nn.Module):
    """Convolutional part of CNN3: (B, 1, S, S) -> (B, 128) after global max pooling.

    Parameters
    ----------
    dropout : float
        Dropout rate after each of the first three pooled blocks (the paper does not give it).
    """

    num_features = 128

    def __init__(self, *, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out, kernel in ((1, 32, 5), (32, 64, 4), (64, 128, 3)):
            layers += [nn.Conv2d(c_in, c_out, kernel), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(dropout)]
        layers += [nn.Conv2d(128, 128, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten()]
        self.layers = nn.Sequential(*layers)
        glorot_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) float images -> (B, 128) features."""
        return self.layers(images)


class TimmTrunk(nn.Module):
    """A timm backbone without its classifier: (B, 1, S, S) -> (B, F) globally average-pooled features.

    The backbone is made by :func:`morphomass.cnn.encoders.create_timm_model` with three input channels, so
    ImageNet weights and files fit unchanged; with ``"none"`` it is exactly ``timm.create_model(backbone,
    num_classes=0, global_pool="avg", in_chans=3)``.

    Parameters
    ----------
    backbone : str
        timm model name (``resnet50``, ``legacy_xception``, ``resnet18``, ...).
    pretrained : str or Path
        ``"imagenet"`` (timm's pretrained weights: the hub, the Hugging Face cache or the torch cache),
        ``"none"`` (random weights) or a local weights file (safetensors or a PyTorch state dict), loaded
        strictly (:func:`morphomass.cnn.encoders.load_state_into`).
    field : str
        The configuration key of ``pretrained``, for the messages.

    Raises
    ------
    ConfigError
        If the backbone is not a timm model, or the weights cannot be had.
    InputDataError
        If a weights file cannot be read or does not fit the backbone.
    """

    def __init__(
        self, backbone: str, *, pretrained: str | Path = PRETRAINED_NONE, field: str = "cnn.pretrained"
    ) -> None:
        super().__init__()
        import timm

        if not timm.is_model(backbone):
            msg = (
                f"cnn backbone {backbone!r} is neither {DIELEMAN!r} nor a timm model (see timm.list_models())"
            )
            raise ConfigError(msg)
        self.model = create_timm_model(
            backbone, pretrained=pretrained, in_chans=3, num_classes=0, global_pool="avg", field=field
        )
        self.num_features = int(self.model.num_features)
        cfg = self.model.pretrained_cfg
        mean = torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(cfg.get("std", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) float images in [0, 1] -> (B, F) features."""
        rgb = images.expand(-1, 3, -1, -1)
        return self.model((rgb - self.mean) / self.std)


def _head(n_in: int, width: int) -> nn.Sequential:
    head = nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, N_ANSWERS), nn.ReLU())
    glorot_init(head)
    nn.init.constant_(head[2].bias, OUTPUT_BIAS_INIT)
    return head


class GZ2Net(nn.Module):
    """Trunk -> dense head -> GZ2 normalisation: (B, 1, S, S) images -> (B, 37) probabilities."""

    def __init__(self, trunk: nn.Module, head: nn.Sequential) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.norm = GZ2Normalisation()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) float images -> (B, 37) probabilities obeying the GZ2 tree."""
        return self.norm(self.head(self.trunk(images)))

    def forward_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Trunk features (B, F) and probabilities (B, 37) in one pass, keyed ``trunk`` and ``p``."""
        trunk = self.trunk(images)
        return {"trunk": trunk, "p": self.norm(self.head(trunk))}


class MLNet(nn.Module):
    """Trunk -> dense head -> dense 1: (B, 1, S, S) images -> (B,) M/L (CNN4)."""

    def __init__(self, trunk: nn.Module, head: nn.Sequential) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.out = nn.Linear(N_ANSWERS, 1)
        glorot_init(self.out)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) float images -> (B,) predicted M/L (solar units)."""
        return self.out(self.head(self.trunk(images))).squeeze(-1)

    def forward_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the 37 next-to-last features (B, 37), keyed ``f``, and the prediction (B,), keyed ``ml``."""
        features = self.head(self.trunk(images))
        return {"f": features, "ml": self.out(features).squeeze(-1)}


def build_gz2_net(
    backbone: str,
    *,
    dropout: float = 0.25,
    pretrained: str | Path = PRETRAINED_NONE,
    pretrained_path: Path | None = None,
    field: str = "cnn.pretrained",
) -> GZ2Net:
    """Build CNN1, CNN2 or CNN3 (random, ImageNet- or file-initialised trunk, Glorot-initialised head).

    Parameters
    ----------
    backbone : str
        ``"dieleman"`` for the custom CNN3, otherwise a timm model name.
    dropout : float
        CNN3's dropout rate (ignored for timm backbones).
    pretrained : str or Path
        Initial weights of a timm trunk: ``"imagenet"``, ``"none"`` or a weights file (:class:`TimmTrunk`).
    pretrained_path : Path, optional
        A local weights file: the same as ``pretrained=pretrained_path`` (the older keyword).
    field : str
        The configuration key of ``pretrained``, for the messages.

    Returns
    -------
    GZ2Net

    Raises
    ------
    ConfigError
        If the backbone is unknown, pretrained weights are given for the custom network, both ``pretrained``
        and ``pretrained_path`` are given, or the weights cannot be had.
    InputDataError
        If a weights file cannot be read or does not fit the backbone.
    """
    if pretrained_path is not None:
        if str(pretrained) != PRETRAINED_NONE:
            msg = f"build_gz2_net: give pretrained={str(pretrained)!r} or pretrained_path, not both"
            raise ConfigError(msg)
        pretrained = pretrained_path
    if backbone == DIELEMAN:
        if str(pretrained) != PRETRAINED_NONE:
            msg = f"the {DIELEMAN!r} network has no pretrained variant; set {field} to 'none'"
            raise ConfigError(msg)
        trunk: nn.Module = DielemanTrunk(dropout=dropout)
        width = HEAD_WIDTH[DIELEMAN]
    else:
        trunk = TimmTrunk(backbone, pretrained=pretrained, field=field)
        width = HEAD_WIDTH["timm"]
    return GZ2Net(trunk, _head(int(trunk.num_features), width))


def check_pretrained(nets: Mapping[str, NetConfig]) -> None:
    """Make sure the initial weights of every network can be had, before anything trains.

    Each timm network's ``pretrained`` is resolved once (:func:`morphomass.cnn.encoders.resolve_pretrained`:
    ImageNet weights are found on the hub or in a local cache, a file is read); the weights are not kept.

    Parameters
    ----------
    nets : mapping of str to NetConfig
        ``cnn.nets``.

    Raises
    ------
    ConfigError
        If a backbone is unknown, the custom network is given weights, or weights cannot be had; one line
        naming ``cnn.nets.<net>.pretrained``, what was tried and how to pass a file or choose ``"none"``.
    InputDataError
        If a weights file cannot be read.
    """
    for name, net in nets.items():
        field = f"cnn.nets.{name}.pretrained"
        if net.backbone == DIELEMAN:
            if net.pretrained != PRETRAINED_NONE:
                msg = f"{field} = {net.pretrained!r}: the {DIELEMAN!r} network has no pretrained variant"
                raise ConfigError(msg)
            continue
        resolve_pretrained(net.pretrained, net.backbone, field=field)


def make_ml_net(gz2_net: GZ2Net) -> MLNet:
    """CNN4: a copy of a (trained) GZ2 network whose normalisation layer is replaced by a dense-1 output.

    Parameters
    ----------
    gz2_net : GZ2Net
        Usually the trained CNN1; it is not modified.

    Returns
    -------
    MLNet
        Trunk and head are deep copies of ``gz2_net``'s; the new output layer is Glorot-initialised.
    """
    return MLNet(copy.deepcopy(gz2_net.trunk), copy.deepcopy(gz2_net.head))
