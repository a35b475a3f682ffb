"""The networks: pure ``torch.nn.Module``s, no data handling, no training loop.

Our reading of the study (which names a CNN on Canny-edge images and nothing more)
---------------------------------------------------------------------------------
A compact VGG-style regressor, the design a careful reader reproduces when a paper
says "CNN" and gives no architecture: blocks of 3 × 3 convolution → batch norm → ReLU,
each closed by 2 × 2 max pooling; the last feature map flattened, as in VGG, into a
small fully connected head with dropout; one linear output (the standardised SMI).
Flattening keeps *where* each edge is, and a calf's width is a distance between two
edges; global average pooling (``pool='avg'``) throws positions away and did worse
(phantom-v1 lateral, cnn-lite, two folds: test r 0.24 against 0.40 in the same
setting). Two variants, sized to train on two CPU cores (see :data:`VARIANTS`):

- ``cnn-paper``: 224 × 224 input (the common ImageNet-era size); a stem of one 3 × 3
  convolution with stride 2 (8 channels, 112 × 112 out), then four blocks of
  16-32-64-128 channels, one convolution per block (7 × 7 before pooling, an overall
  stride of 32 as in VGG). VGG's widths (64…512), its two to three convolutions per
  block and a full-resolution first block would make one fold take minutes on two CPU
  cores (docs/results.md); with 80 training images the narrow network is also the one
  less likely to overfit. A 3 × 3 kernel with stride 2 still covers every input pixel,
  so no one-pixel Canny line falls between its taps.
- ``cnn-lite``: 96 × 96 input, no stem, four blocks of 8-16-32-64 channels.

Max pooling keeps thin edges alive where average pooling would dilute them.

Covariates (sex, age, height, standardised) can be concatenated to the pooled image
features before the head and added through a linear term of their own
(``n_covariates > 0``); off in the study's mode.
"""

from __future__ import annotations

import torch
from torch import nn

#: Default architecture of each named variant.
VARIANTS = {
    "cnn-paper": {"image_size": 224, "stem": 8, "widths": (16, 32, 64, 128), "convs_per_block": 1,
                  "hidden": 64, "dropout": 0.3, "pool": "flatten"},
    "cnn-lite": {"image_size": 96, "stem": 0, "widths": (8, 16, 32, 64), "convs_per_block": 1,
                 "hidden": 32, "dropout": 0.3, "pool": "flatten"},
}


def init_weights(net: nn.Module) -> None:
    """He initialisation of every convolution and linear layer (biases zero), in module order."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)


def conv_block(c_in: int, c_out: int, n_convs: int = 1) -> nn.Sequential:
    """``n_convs`` × (3 × 3 conv → batch norm → ReLU), then 2 × 2 max pooling."""
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, kernel_size=3, padding=1, bias=False),
                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class VGGRegressor(nn.Module):
    """VGG-style CNN with a scalar regression output.

    Parameters
    ----------
    in_channels : int
        Input channels (input mode's channels × number of views).
    stem : int
        Channels of a 3 × 3 stride-2 convolution → batch norm → ReLU before the blocks
        (0 = no stem).
    widths : sequence of int
        Output channels of each block; each block halves the resolution.
    convs_per_block : int
    n_covariates : int
        Extra features concatenated to the pooled image features (0 = none).
    hidden : int
        Width of the hidden fully connected layer.
    dropout : float
        Dropout before each fully connected layer.
    pool : {'flatten', 'avg'}
        ``'flatten'``: the last feature map is flattened into the head, as in VGG, so the
        head knows *where* each edge is (a width is a distance between edges);
        ``'avg'``: global average pooling (position-free, fewer weights).
    image_size : int
        Input side, px; needed for ``pool='flatten'`` to size the head.

    Shapes
    ------
    ``forward(x: (N, in_channels, H, W), covariates: (N, n_covariates) | None) -> (N, 1)``
    """

    def __init__(self, in_channels: int, widths=(16, 32, 64, 128), convs_per_block: int = 1,
                 n_covariates: int = 0, hidden: int = 64, dropout: float = 0.3, stem: int = 8,
                 pool: str = "flatten", image_size: int = 224):
        super().__init__()
        if in_channels < 1 or not widths:
            raise ValueError("need in_channels >= 1 and at least one block")
        self.in_channels, self.n_covariates = int(in_channels), int(n_covariates)
        layers: list[nn.Module] = []
        c0 = int(in_channels)
        if int(stem) > 0:
            layers += [nn.Conv2d(c0, int(stem), kernel_size=3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(int(stem)), nn.ReLU(inplace=True)]
            c0 = int(stem)
        chans = [c0] + [int(w) for w in widths]
        layers += [conv_block(a, b, int(convs_per_block)) for a, b in zip(chans, chans[1:])]
        self.features = nn.Sequential(*layers)
        if pool == "avg":
            self.pool = nn.AdaptiveAvgPool2d(1)
            n_feat = chans[-1]
        elif pool == "flatten":
            side = int(image_size)
            if int(stem) > 0:
                side = (side + 1) // 2
            for _ in widths:
                side //= 2
            if side < 1:
                raise ValueError(f"image_size {image_size} is too small for {len(widths)} pooling blocks")
            self.pool = nn.Identity()
            n_feat = chans[-1] * side * side
        else:
            raise ValueError(f"pool must be 'flatten' or 'avg', got {pool!r}")
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(n_feat + self.n_covariates, int(hidden)),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(int(hidden), 1),
        )
        init_weights(self)
        # covariates also reach the output through a linear term of their own: in the
        # hidden layer they are 3 inputs among hundreds of image features and dropout
        # would hide them half the time, while SMI is close to linear in sex and height
        self.cov_linear = nn.Linear(self.n_covariates, 1, bias=False) if self.n_covariates else None
        # the output starts at 0 = the training mean of the standardised target, so the
        # first epochs learn the signal instead of undoing a random offset
        nn.init.zeros_(self.head[-1].weight)
        if self.cov_linear is not None:
            nn.init.zeros_(self.cov_linear.weight)

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        z = self.pool(self.features(x)).flatten(1)
        if self.n_covariates:
            if covariates is None or covariates.shape != (x.shape[0], self.n_covariates):
                got = None if covariates is None else tuple(covariates.shape)
                raise ValueError(f"expected covariates ({x.shape[0]}, {self.n_covariates}), got {got}")
            cov = covariates.to(z.dtype)
            return self.head(torch.cat([z, cov], dim=1)) + self.cov_linear(cov)
        return self.head(z)


def build_net(variant: str, in_channels: int, n_covariates: int = 0, **overrides) -> VGGRegressor:
    """The network of a named variant, with optional overrides of its architecture keys."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CNN variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    spec = dict(VARIANTS[variant])
    spec.update({k: v for k, v in overrides.items() if v is not None})
    return VGGRegressor(in_channels, n_covariates=n_covariates, **spec)


def regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error that refuses mismatched shapes.

    ``F.mse_loss`` of an ``(N, 1)`` prediction and an ``(N,)`` target broadcasts to
    ``(N, N)`` (with only a warning) and trains on garbage; here that is an error.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}; "
                         "squeeze the network output to (N,) before the loss")
    return torch.mean((pred - target) ** 2)


class GeoNet(nn.Module):
    """cnn-geo's trunk: a leg mask in, the leg's geometry out (several numbers, standardised).

    The same conv blocks as :class:`VGGRegressor` (3 × 3 conv → batch norm → ReLU → 2 × 2
    max pooling), the last map flattened (a width is a distance between two outline
    positions) and, with ``profile``, each input row's sum (the leg's width in that row, a
    fixed linear read-out that max pooling would blur) into one hidden layer, the *embedding*, then a
    linear layer with one output per geometry target. ``embed`` returns the embedding, ``forward`` the targets.

    Shapes
    ------
    ``embed(x: (N, in_channels, S, S)) -> (N, hidden)``; ``forward(x) -> (N, n_outputs)``
    """

    def __init__(self, n_outputs: int, in_channels: int = 1, widths=(16, 32, 64, 96), hidden: int = 64,
                 dropout: float = 0.2, image_size: int = 96, profile: bool = True):
        super().__init__()
        if n_outputs < 1 or in_channels < 1 or not widths:
            raise ValueError("need n_outputs >= 1, in_channels >= 1 and at least one block")
        self.in_channels, self.n_outputs = int(in_channels), int(n_outputs)
        chans = [int(in_channels)] + [int(w) for w in widths]
        self.features = nn.Sequential(*[conv_block(a, b) for a, b in zip(chans, chans[1:])])
        side = int(image_size) // 2 ** len(widths)
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(widths)} pooling blocks")
        self.profile = bool(profile)
        n_profile = int(image_size) * int(in_channels) if self.profile else 0
        self.embedding = nn.Sequential(nn.Dropout(dropout), nn.Linear(chans[-1] * side * side + n_profile, int(hidden)),
                                       nn.ReLU(inplace=True))
        self.out = nn.Linear(int(hidden), int(n_outputs))
        init_weights(self)
        # the outputs start at 0 = the training means of the standardised targets: a random start's
        # large first gradients can silence the hidden layer's ReLUs for good (seen on the posterior view)
        nn.init.zeros_(self.out.weight)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        z = self.features(x).flatten(1)
        if self.profile:  # each row's leg coverage (px / 16): the width profile, to sub-pixel precision
            z = torch.cat([z, x.sum(dim=3).flatten(1) / 16.0], dim=1)
        return self.embedding(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(x))
