"""Forest-family methods: `global-linear` (IQT-GL), `rf` (IQT-RF) and `biqt` (Bayesian IQT-RF).

`model=None` uses the shipped model for the requested factor (Resources/Models/registry.json); a path to a
`.npz` model or its `.json` sidecar uses that model instead. Models are checksum-verified on load.
numpy only: every patch is routed down each tree at once and the leaf models are applied per leaf in batches.
"""

from __future__ import annotations

from ..base import LearnedMethod


class ForestMethod(LearnedMethod):
    def _model_io(self):
        from . import model_io

        return model_io

    def _predict(self, lr, r, mask, progress):
        from .training import predict_volume

        return predict_volume(self.load(r), lr, mask, with_variance=self.gives_uncertainty)


class GlobalLinearMethod(ForestMethod):
    name = "global-linear"
    description = "IQT-GL: one least-squares map from the 3^3 low-res patch to the high-res block (residual over cubic)"


class RFMethod(ForestMethod):
    name = "rf"
    description = "IQT-RF: 8 regression trees with linear leaves on top of the global-linear map; std = spread between trees, calibrated on training data"
    gives_uncertainty = True


class BIQTMethod(ForestMethod):
    name = "biqt"
    description = "Bayesian IQT-RF: Bayesian linear leaves (evidence-tuned), per-voxel predictive standard deviation with an input-dependent noise scale"
    gives_uncertainty = True


FOREST_METHODS = (GlobalLinearMethod, RFMethod, BIQTMethod)
