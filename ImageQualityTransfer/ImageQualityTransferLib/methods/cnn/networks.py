"""3D-ESPCN and its heteroscedastic variant (Tanno et al., MICCAI 2017).

conv 3^3 -> 50, ReLU, conv 1^3 -> 100, ReLU, conv 3^3 -> 6 r^3, 3D sub-pixel shuffle. The convolutions
are unpadded ("valid"), so the receptive field of each low-res output position is exactly 5^3 low-res
voxels and an input patch of n+4 voxels gives an n^3 block of low-res positions, i.e. (r n)^3 high-res
voxels. Callers pad the volume by `HALO` voxels on every side.

`deep` (more context): the same network with a residual block of two unpadded 3^3 convolutions (50 -> 32 -> 50
channels; at 32 oneDNN runs the block in half the time of 50) after the first layer, so each output position sees
9^3 low-res voxels (halo 4). The block's last convolution starts at zero, so a `deep` network warm-started
(`--init`) from a trained `espcn` of the same widths computes exactly that model, and training moves on from
there. Each network class has its `halo`.

The heteroscedastic model has a second network of the same shape whose output is the per-voxel,
per-element log-variance of the (normalised) prediction.

Variational dropout (Kingma et al. 2015): Gaussian multiplicative noise h * xi, xi ~ N(1, alpha), on the two
hidden layers of the mean network, with log alpha learned per hidden channel (a conv unit: its weights are
shared over positions). `-var1` draws xi independently for every unit (channel x voxel); `-var2` draws one xi
per channel for the whole volume (the channel is dropped as a whole). The KL divergence to the log-uniform
prior uses Molchanov et al. (2017)'s approximation. The log-variance network of the hetero+var models is
deterministic, so Monte Carlo samples vary only the mean (parameter uncertainty) and the predicted variance
is the intrinsic part.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...core import grid
from ...core.threads import limit_torch

limit_torch()  # where the engine's runs first import torch: the --threads cap given before holds for it

from .shuffle import pixel_shuffle_3d

HALO = 2  # low-res voxels lost on each side by ESPCN's two unpadded 3^3 convolutions
N_ELEMENTS = 6


K1, K2, K3 = 0.63576, 1.87320, 1.48695  # Molchanov et al. 2017, -KL(q || log-uniform) approximation
LOG_ALPHA_RANGE = (-10.0, 4.0)


class VarDropout(nn.Module):
    """Gaussian multiplicative noise with learned log alpha per channel; `mode` "unit" or "channel".

    Active in training mode, or in eval mode while `sampling` is True (Monte Carlo prediction). `generator`
    (a torch.Generator) makes the draws reproducible; `channel_noise` ((C,) standard normal draws) fixes the
    per-channel noise of one Monte Carlo sample across the tiles of a volume in "channel" mode.
    """

    def __init__(self, channels: int, mode: str = "unit", init_log_alpha: float = -4.0):
        super().__init__()
        if mode not in ("unit", "channel"):
            raise ValueError(f"variational dropout mode {mode!r}: 'unit' or 'channel'")
        self.mode = mode
        self.log_alpha = nn.Parameter(torch.full((channels,), float(init_log_alpha)))
        self.sampling = False
        self.generator = None
        self.channel_noise = None

    def alpha_std(self) -> torch.Tensor:
        return (0.5 * self.log_alpha.clamp(*LOG_ALPHA_RANGE)).exp()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not (self.training or self.sampling):
            return h
        std = self.alpha_std().view(1, -1, 1, 1, 1)
        if self.mode == "unit":
            eps = torch.randn(h.shape, generator=self.generator, dtype=h.dtype, device=h.device)
        elif self.channel_noise is not None:
            eps = self.channel_noise.to(h.dtype).view(1, -1, 1, 1, 1)
        else:
            eps = torch.randn((h.shape[0], h.shape[1], 1, 1, 1), generator=self.generator, dtype=h.dtype, device=h.device)
        return h * (1.0 + std * eps)

    def kl(self) -> torch.Tensor:
        la = self.log_alpha.clamp(*LOG_ALPHA_RANGE)
        neg_kl = K1 * torch.sigmoid(K2 + K3 * la) - 0.5 * nn.functional.softplus(-la) - K1
        return -neg_kl.sum()


class ESPCN3D(nn.Module):
    halo = HALO
    default_widths = (50, 100)

    def __init__(self, factor=2, widths=(50, 100), n_in: int = N_ELEMENTS, n_out: int = N_ELEMENTS,
                 dropout: str | None = None):
        super().__init__()
        self.factor = grid.record(factor)  # r, or [fx, fy, fz] for per-axis factors
        self.n_out = n_out
        w1, w2 = widths
        self.conv1 = nn.Conv3d(n_in, w1, 3)
        self.conv2 = nn.Conv3d(w1, w2, 1)
        self.conv3 = nn.Conv3d(w2, n_out * math.prod(grid.factors(factor)), 3)
        self.dropout = dropout
        if dropout is not None:
            self.drop1 = VarDropout(w1, dropout)
            self.drop2 = VarDropout(w2, dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The first hidden layer (deterministic: the noise acts on it in `head`)."""
        return torch.relu(self.conv1(x))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            h = self.drop1(h)
        h = torch.relu(self.conv2(h))
        if self.dropout is not None:
            h = self.drop2(h)
        return pixel_shuffle_3d(self.conv3(h), self.factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def dropout_layers(self):
        return [self.drop1, self.drop2] if self.dropout is not None else []

    def kl(self) -> torch.Tensor:
        return sum((d.kl() for d in self.dropout_layers()), torch.zeros(()))


class DeepESPCN3D(ESPCN3D):
    """ESPCN with a zero-initialised residual block of two 3^3 convolutions after the first layer: 9^3 context."""

    halo = HALO + 2
    default_widths = (50, 100, 32)  # first layer, second layer, residual block's middle

    def __init__(self, factor=2, widths=default_widths, n_in: int = N_ELEMENTS, n_out: int = N_ELEMENTS,
                 dropout: str | None = None):
        super().__init__(factor, widths[:2], n_in, n_out, dropout)
        w1, wb = widths[0], widths[2]
        self.res_a = nn.Conv3d(w1, wb, 3)
        self.res_b = nn.Conv3d(wb, w1, 3)
        nn.init.zeros_(self.res_b.weight)
        nn.init.zeros_(self.res_b.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        return h[:, :, 2:-2, 2:-2, 2:-2] + self.res_b(torch.relu(self.res_a(h)))  # the block's two 3^3 take 2 a side


class HeteroESPCN3D(nn.Module):
    """Mean network and log-variance network; `forward` returns (mean, log_variance)."""

    dropout = None
    body = ESPCN3D

    def __init__(self, factor=2, widths=None):
        super().__init__()
        widths = self.body.default_widths if widths is None else widths
        self.mean = self.body(factor, widths, dropout=self.dropout)
        self.logvar = self.body(factor, widths)
        self.factor = grid.record(factor)

    @property
    def halo(self) -> int:
        return self.body.halo

    def forward(self, x: torch.Tensor):
        return self.mean(x), self.logvar(x)


class HeteroVar1ESPCN3D(HeteroESPCN3D):
    """Heteroscedastic + variational dropout per unit (independent noise for every channel x voxel)."""

    dropout = "unit"


class HeteroVar2ESPCN3D(HeteroESPCN3D):
    """Heteroscedastic + variational dropout per channel (one draw per channel and volume)."""

    dropout = "channel"


class HeteroDeepESPCN3D(HeteroESPCN3D):
    body = DeepESPCN3D


class HeteroVar1DeepESPCN3D(HeteroDeepESPCN3D):
    dropout = "unit"


ARCHITECTURES = {"espcn": ESPCN3D, "espcn-hetero": HeteroESPCN3D,
                 "espcn-hetero-var1": HeteroVar1ESPCN3D, "espcn-hetero-var2": HeteroVar2ESPCN3D,
                 "deep": DeepESPCN3D, "deep-hetero": HeteroDeepESPCN3D, "deep-hetero-var1": HeteroVar1DeepESPCN3D}


def build(arch: dict) -> nn.Module:
    """A network from the `arch` entry of a model sidecar: {"name", "factor", "widths"}."""
    cls = ARCHITECTURES[arch["name"]]
    return cls(factor=grid.factors(arch["factor"]), widths=tuple(arch.get("widths", default_widths(arch["name"]))))


def default_widths(method: str) -> tuple:
    cls = ARCHITECTURES[method]
    return getattr(cls, "body", cls).default_widths


def halo_of(method: str) -> int:
    """Low-res voxels an architecture's network needs on each side of its output positions."""
    cls = ARCHITECTURES[method]
    return getattr(cls, "body", cls).halo


def is_hetero(net: nn.Module) -> bool:
    return isinstance(net, HeteroESPCN3D)


def is_variational(net: nn.Module) -> bool:
    return isinstance(net, HeteroESPCN3D) and net.dropout is not None
