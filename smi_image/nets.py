"""The learned segmenter's network: a small U-Net (pure ``nn.Module``; torch imported by the caller)."""

from __future__ import annotations

import torch
from torch import nn

#: Output channels: 0 any leg (knee down, foot included), 1 the line where the two legs meet,
#: 2 a leg seen behind the other one (the far leg of a side view, where the near one hides part of it).
#: Weights files with two outputs (no ``behind``) still load.
OUTPUTS = ("leg", "split", "behind")


def _conv(cin: int, cout: int) -> list:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _block(cin: int, cout: int, n: int = 2) -> nn.Sequential:
    layers = _conv(cin, cout)
    for _ in range(n - 1):
        layers += _conv(cout, cout)
    return nn.Sequential(*layers)


def stride_of(widths) -> int:
    """How many input px one pixel of :class:`TinyUNet`'s deepest level spans (the input must be a multiple)."""
    return 2 ** (len(widths) - 1)


class TinyUNet(nn.Module):
    """U-Net (Ronneberger et al. 2015, doi:10.1007/978-3-319-24574-4_28) with few channels.

    Parameters
    ----------
    widths : sequence of int
        Channels per level, finest first; each level halves the resolution, so the
        input's height and width must be multiples of ``2 ** (len(widths) - 1)``.
    in_channels, out_channels : int
        RGB in (values in [0, 1]); logits of :data:`OUTPUTS` out.
    """

    def __init__(self, widths=(8, 16, 32, 64), in_channels: int = 3, out_channels: int = len(OUTPUTS)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.widths = widths
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        # One convolution per decoder level (the encoder has two): half the cost, for CPU inference.
        self.up = nn.ModuleList(_block(widths[i] + widths[i + 1], widths[i], 1) for i in range(len(widths) - 1))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    @property
    def stride(self) -> int:
        return stride_of(self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - 0.5
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = nn.functional.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for i in range(len(self.up) - 1, -1, -1):
            x = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([skips[i], x], dim=1))
        return self.head(x)
