"""3D-ESPCN methods (Tanno et al. 2017): `espcn`, the heteroscedastic `espcn-hetero`, and the
heteroscedastic + variational-dropout `espcn-hetero-var1` (per unit) / `espcn-hetero-var2` (per channel),
which predict by Monte Carlo with `samples` draws (uncertainty maps std, std_intrinsic, std_parameter, md_std).

`model=None` uses the shipped model for the requested factor (Resources/Models/registry.json); a path
to a `.pt` weights file or its `.json` sidecar uses that model instead. Torch is imported only when a
prediction is made, so the engine lists and validates these methods without it.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import IQTError
from ..base import LearnedMethod, clip_input


class CNNMethod(LearnedMethod):
    variational = False
    requires_torch = True  # the Slicer Logic runs these in a PythonSlicer process
    tile = None  # low-res positions per tile side (None: the inference default)

    samples = None  # Monte Carlo samples (variational methods; None: the inference default)
    seed = 0

    def __init__(self, model=None, samples: int | None = None, seed: int = 0):
        super().__init__(model)
        if samples is not None:
            if int(samples) < 0:
                raise IQTError(f"--samples {samples}: give a number of Monte Carlo samples >= 0")
            self.samples = int(samples)
        self.seed = int(seed)

    def _model_io(self):
        from . import model_io, require_torch

        require_torch()
        return model_io

    def _predict(self, lr, r, mask, progress):
        from . import inference

        model = self.load(r)
        kw = {} if self.tile is None else {"tile": self.tile}
        if self.variational:
            kw.update(samples=self.samples, seed=self.seed)
        return inference.predict_volume(model, clip_input(lr), mask, progress=progress, **kw)


class ESPCN(CNNMethod):
    name = "espcn"
    description = "3D-ESPCN CNN (residual over cubic), shipped model trained on the three training subjects"


class ESPCNHetero(CNNMethod):
    name = "espcn-hetero"
    description = "3D-ESPCN with a heteroscedastic second network: per-voxel predictive standard deviation"
    gives_uncertainty = True


class ESPCNHeteroVar1(CNNMethod):
    name = "espcn-hetero-var1"
    description = ("3D-ESPCN, heteroscedastic + variational dropout per unit: Monte Carlo mean, total, intrinsic "
                   "and parameter standard deviation")
    gives_uncertainty = True
    variational = True


class ESPCNHeteroVar2(CNNMethod):
    name = "espcn-hetero-var2"
    description = ("3D-ESPCN, heteroscedastic + variational dropout per channel: Monte Carlo mean, total, intrinsic "
                   "and parameter standard deviation")
    gives_uncertainty = True
    variational = True


# Registered (listed by 'iqt methods', run by the benchmark and the orientation tests): the methods with a shipped
# model. `espcn-hetero-var2` trains ('iqt train --method espcn-hetero-var2') but ships no model yet, so it is
# not registered; add it here together with its registry entry.
CNN_METHODS = (ESPCN, ESPCNHetero, ESPCNHeteroVar1)
UNSHIPPED_CNN_METHODS = (ESPCNHeteroVar2,)
