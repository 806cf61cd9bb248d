"""Forest-family methods: `global-linear` (IQT-GL), `rf` (IQT-RF) and `biqt` (Bayesian IQT-RF).

`model=None` uses the shipped model for the requested factor (Resources/Models/registry.json); a path to a
`.npz` model or its `.json` sidecar uses that model instead. Models are checksum-verified on load.
numpy only: every patch is routed down each tree at once and the leaf models are applied per leaf in batches.
"""

from __future__ import annotations

import warnings

from ...core.errors import IQTError, IQTWarning
from ...core.i18n import _
from ..learned import LearnedMethod


class ForestMethod(LearnedMethod):
    model_suffix = ".npz"
    min_trees = 1
    peak = (5.0, 5.0)  # global-linear 3.8-4.1x measured

    def _model_io(self):
        from . import model_io

        return model_io

    def _predict(self, lr, r, mask, progress):
        from .training import predict_volume

        return predict_volume(self.load(r), lr, mask, with_variance=self.gives_uncertainty, progress=progress)

    def fit_options(self):
        from .training import DEFAULTS

        return tuple(DEFAULTS)

    def _fit(self, subjects, r, *, seed, log, progress, **settings):
        from ...core.progress import progress_bar
        from . import training

        trees = settings.get("n_trees")
        trees = training.DEFAULTS["n_trees"] if trees is None else trees
        if trees < 1:  # the command line refuses it first; 0 had trained the default 8 (a review)
            raise IQTError(f"--n-trees {trees}: give a positive whole number")
        if trees < self.min_trees:  # one tree has no spread: calibrated by ~1e18, its std was noise (a training audit)
            raise IQTError(f"--n-trees {trees}: {self.name}'s uncertainty is the spread between its trees, which one tree "
                           f"does not have; give at least {self.min_trees} (default {training.DEFAULTS['n_trees']}), or "
                           "train biqt, whose leaves give their own")
        bar = progress_bar(total=trees if self.name != "global-linear" else 1, desc=f"train {self.name}",
                           enabled=progress)
        try:
            return training.train(self.name, subjects, factor=r, seed=seed, log=log,
                                  progress=lambda done, total: bar.update(1), **settings)
        finally:
            bar.close()

    def _save(self, model, path):
        from . import model_io

        return model_io.save(model, path)

    def summary(self, factor=2):
        model = self.trained(factor)
        leaves = f", {model.forest.n_leaves} leaves in {len(model.forest.trees)} trees" if model.forest is not None else ""
        return (f"{model.meta['training']['examples']} examples{leaves}; no validation figure: the forests hold no "
                "subject out (score the model with 'iqt benchmark --model' on subjects it was not trained on)")


class GlobalLinearMethod(ForestMethod):
    name = "global-linear"
    description = "IQT-GL: one least-squares map from the 3^3 low-res patch to the high-res block (residual over cubic)"


class RFMethod(ForestMethod):
    name = "rf"
    peak = (6.0, 6.0)  # 5.0-5.3x measured, the same without --uncertainty: its maps are made either way
    tta_peak = 7.0  # --tta: the float64 sums of the tensors and its maps (made either way): biqt 6.1x more measured
    description = "IQT-RF: 8 regression trees with linear leaves on top of the global-linear map; std = spread between trees, calibrated on training data"
    gives_uncertainty = True
    min_trees = 2

    def _run(self, lr, f, mask, uncertainty, *args, **kw):
        """As every method's, with a warning where a model of one tree (trained before that was refused) gives its
        uncertainty maps: the spread between trees, which it has none of (a review: a benchmark scored that noise,
        exit 0); said with each prediction, so that each subject of a batch carries it in its notes (a second review)."""
        pred = super()._run(lr, f, mask, uncertainty, *args, **kw)
        model = self.load(f)
        trees = 0 if model.forest is None else len(model.forest.trees)
        if uncertainty and trees < self.min_trees:
            where = self.model_path or _("its model")
            line = _("{model}: this rf model has {count} tree: its uncertainty is the spread between trees, so its "
                     "uncertainty maps mean nothing; retrain it with --n-trees 2 or more (default 8)") if trees == 1 else \
                _("{model}: this rf model has {count} trees: its uncertainty is the spread between trees, so its "
                  "uncertainty maps mean nothing; retrain it with --n-trees 2 or more (default 8)")
            warnings.warn(line.format(model=where, count=trees), IQTWarning, stacklevel=2)
        return pred

    def _judges_uncertainty(self, f) -> bool:
        # a model of one tree has no spread (an SD of 0): `_run`'s warning says its maps mean nothing instead
        model = self.load(f)
        return model.forest is not None and len(model.forest.trees) >= self.min_trees


class BIQTMethod(ForestMethod):
    name = "biqt"
    peak = (6.0, 6.0)  # 5.1-5.4x measured, the same without --uncertainty
    tta_peak = 7.0  # --tta: the float64 sums of the tensors and its maps (made either way): biqt 6.1x more measured
    description = "Bayesian IQT-RF: Bayesian linear leaves (evidence-tuned), per-voxel predictive standard deviation with an input-dependent noise scale"
    gives_uncertainty = True
