"""3D-ESPCN and its heteroscedastic variant (Tanno et al., MICCAI 2017).

conv 3^3 -> 50, ReLU, conv 1^3 -> 100, ReLU, conv 3^3 -> 6 r^3, 3D sub-pixel shuffle. The convolutions
are unpadded ("valid"), so the receptive field of each low-res output position is exactly 5^3 low-res
voxels and an input patch of n+4 voxels gives an n^3 block of low-res positions, i.e. (r n)^3 high-res
voxels. Callers pad the volume by `HALO` voxels on every side.

The heteroscedastic model has a second network of the same shape whose output is the per-voxel,
per-element log-variance of the (normalised) prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from .shuffle import pixel_shuffle_3d

HALO = 2  # low-res voxels lost on each side by the two unpadded 3^3 convolutions
N_ELEMENTS = 6


class ESPCN3D(nn.Module):
    def __init__(self, factor: int = 2, widths=(50, 100), n_in: int = N_ELEMENTS, n_out: int = N_ELEMENTS):
        super().__init__()
        self.factor = int(factor)
        self.n_out = n_out
        w1, w2 = widths
        self.conv1 = nn.Conv3d(n_in, w1, 3)
        self.conv2 = nn.Conv3d(w1, w2, 1)
        self.conv3 = nn.Conv3d(w2, n_out * self.factor**3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        return pixel_shuffle_3d(self.conv3(h), self.factor)


class HeteroESPCN3D(nn.Module):
    """Mean network and log-variance network; `forward` returns (mean, log_variance)."""

    def __init__(self, factor: int = 2, widths=(50, 100)):
        super().__init__()
        self.mean = ESPCN3D(factor, widths)
        self.logvar = ESPCN3D(factor, widths)
        self.factor = int(factor)

    def forward(self, x: torch.Tensor):
        return self.mean(x), self.logvar(x)


ARCHITECTURES = {"espcn": ESPCN3D, "espcn-hetero": HeteroESPCN3D}


def build(arch: dict) -> nn.Module:
    """A network from the `arch` entry of a model sidecar: {"name", "factor", "widths"}."""
    cls = ARCHITECTURES[arch["name"]]
    return cls(factor=int(arch["factor"]), widths=tuple(arch.get("widths", (50, 100))))


def is_hetero(net: nn.Module) -> bool:
    return isinstance(net, HeteroESPCN3D)
