"""The one registry: every method by name, and what can be done with it here (run, train, shipped model).

The CLI (`iqt methods`, `upsample`, `train`, `benchmark`), the Slicer combo box, the demo and the report
all read it, so a method added here is offered everywhere.
"""

from __future__ import annotations

import importlib.util

from ..core import grid
from ..core.errors import IQTError
from ..fileio.model_files import NOISY, registered_factor_sets, shipped_factor_sets
from .base import Method
from .cnn.method import Deep, DeepHetero, DeepHeteroVar1, ESPCN, ESPCNHetero, ESPCNHeteroVar1, ESPCNHeteroVar2
from .forest.method import BIQTMethod, GlobalLinearMethod, RFMethod
from .interpolation import Cubic, Linear, LogEuclidCubic, Nearest

_METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (Nearest, Linear, Cubic, LogEuclidCubic, GlobalLinearMethod, RFMethod, BIQTMethod,
                ESPCN, ESPCNHetero, ESPCNHeteroVar1, ESPCNHeteroVar2, Deep, DeepHetero, DeepHeteroVar1)
}

# Best first, by `iqt benchmark` on the dev subjects (docs/accuracy.md, Deeper network): the first one that can run
# here, with a model for the factors where they are given, is the default; espcn stays next for factors deep has no
# model for.
PREFERENCE = ("deep", "espcn", "biqt", "cubic")
# The same for a run that needs an uncertainty map (--uncertainty, --propagate, `iqt propagate`, `iqt lesion-check`):
# deep-hetero-var1 is the most accurate at every shipped factor set (docs/accuracy.md, Deeper network); biqt needs no
# torch.
UNCERTAINTY_PREFERENCE = ("deep-hetero-var1", "espcn-hetero-var1", "biqt", "rf")


def names() -> list[str]:
    """Every registered method's name, whether or not it can run here (`runs_here` and `ready` check that)."""
    return list(_METHODS)


def method_class(name: str) -> type[Method]:
    if name not in _METHODS:
        raise IQTError(f"unknown method {name!r}; choose one of: {', '.join(_METHODS)} (see 'iqt methods')")
    return _METHODS[name]


def get(name: str, **settings) -> Method:
    """A method made with its settings (model, samples, seed, device), checked here."""
    return method_class(name)(**settings)


def trainable() -> list[str]:
    return [n for n, c in _METHODS.items() if c.learned]


def shipped_factors(name: str) -> list:
    """The factors of each shipped model of `name` as records hold them (grid.record): an integer r for (r, r, r),
    [fx, fy, fz] for per-axis factors; [] for interpolation (no model needed)."""
    return [grid.record(f) for f in shipped_factor_sets(name)]


def serves(shipped: list, factor) -> bool:
    """True when one of the `shipped` factor records (shipped_factors) serves `factor`: the same factors, or a
    reordering of them (the methods permute the axes: grid.axis_order)."""
    return grid.axis_order(factor, [grid.factors(s) for s in shipped]) is not None


def runs_here(name: str) -> bool:
    """True when the method's packages are installed (torch for the CNNs)."""
    return not (method_class(name).requires_torch and importlib.util.find_spec("torch") is None)


def ready(factor=2) -> list[str]:
    """The methods that run here at `factor` (an integer r or (fx, fy, fz)) without a model file: interpolation,
    and learned ones with a shipped model for those factors or a reordering of them whose packages are installed.
    What the benchmark, the demo and the Slicer module offer."""
    return [n for n, c in _METHODS.items()
            if runs_here(n) and (not c.learned or serves(shipped_factors(n), factor))]


def describe() -> list[dict]:
    """One entry per method: name, one-line description, uncertainty, learned, takes samples, shipped factors (and
    those of its models for noisy inputs; "registered", "registered_noisy": those of each kind that 'iqt train
    --register' put in the install's registry in place of the shipped one)."""
    return [
        {"name": c.name, "description": c.description, "uncertainty": c.gives_uncertainty, "learned": c.learned,
         "samples": c.takes_samples, "torch": c.requires_torch, "shipped": shipped_factors(c.name) if c.learned else [],
         "shipped_noisy": [grid.record(f) for f in shipped_factor_sets(c.name, kind=NOISY)] if c.learned else [],
         "registered": [grid.record(f) for f in registered_factor_sets(c.name)] if c.learned else [],
         "registered_noisy": [grid.record(f) for f in registered_factor_sets(c.name, kind=NOISY)] if c.learned else []}
        for c in _METHODS.values()
    ]


def with_uncertainty(factor=None) -> list[str]:
    """The methods that give an uncertainty map; with `factor`, those that run here at it (`ready`), so that a
    message suggesting them leads somewhere."""
    pool = _METHODS if factor is None else ready(factor)
    return [n for n in pool if _METHODS[n].gives_uncertainty]


def uncertainty_factor_sets() -> list[tuple[int, int, int]]:
    """The factors of the models the registry holds for the methods with an uncertainty map that run here, each set
    once, in the registry's order: what a refusal for factors none of them has names instead."""
    seen: list[tuple[int, int, int]] = []
    for name in with_uncertainty():
        if _METHODS[name].learned and runs_here(name):
            seen += [f for f in shipped_factor_sets(name) if f not in seen]
    return seen


def default_method(factor=None, uncertainty: bool = False) -> str:
    """The best shipped method that can run in this environment (espcn needs torch); with `factor`, the best that
    has a model for it (then any learned method with one, e.g. registered by a user; cubic where none has one).
    `uncertainty`: the best that gives an uncertainty map (IQTError where none has a model for `factor`)."""
    here = None if factor is None else [n for n in ready(factor) if _METHODS[n].learned]  # read the registry once
    for name in UNCERTAINTY_PREFERENCE if uncertainty else PREFERENCE:
        if runs_here(name) and (here is None or name in here):
            return name
    for name in here or ():  # a model a user trained and registered for factors none of those has ('iqt train --register')
        if _METHODS[name].gives_uncertainty or not uncertainty:
            return name
    if uncertainty:
        raise IQTError(f"no method with an uncertainty map has a model for {grid.describe(factor)}; give --method and "
                       "--model with one trained for these factors ('iqt train --method deep-hetero-var1 …')")
    return "cubic"


def viewer_default(factor=None, voxel_size=None) -> str:
    """The default of the viewers (the Slicer module, `iqt view`), which show an uncertainty overlay after a run: the
    best method with an uncertainty map that has a model for `factor` (deep-hetero-var1, as accurate as `deep` at ×2:
    docs/accuracy.md, Measured on the dev subjects), else `default_method(factor)`; cubic where `factor` makes the
    input's `voxel_size` into voxels far from the learned methods' near-isotropic training (`off_training_anisotropy`):
    the module's Through-plane 3 on a 2.7 mm isotropic scan had preselected deep-hetero-var1 and then warned to use
    cubic (a clinician's audit)."""
    from .base import off_training_anisotropy

    if factor is not None and voxel_size is not None and off_training_anisotropy(voxel_size, factor) is not None:
        return "cubic"
    try:
        return default_method(factor, uncertainty=True)
    except IQTError:
        return default_method(factor)
