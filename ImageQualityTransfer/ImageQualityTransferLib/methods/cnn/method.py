"""3D-ESPCN methods (Tanno et al. 2017): `espcn`, the heteroscedastic `espcn-hetero`, and the
heteroscedastic + variational-dropout `espcn-hetero-var1` (per unit) / `espcn-hetero-var2` (per channel),
which predict by Monte Carlo with `samples` draws (maps std, std_intrinsic, std_parameter, md_std, fa_std);
`deep`, `deep-hetero`, `deep-hetero-var1`: the same with 9^3 low-res voxels of context (networks.DeepESPCN3D).

`model=None` uses the shipped model for the requested factor (Resources/Models/registry.json); a path
to a `.pt` weights file or its `.json` sidecar uses that model instead. Torch is imported only when a
prediction or a training is made, so the engine lists and validates these methods without it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...core.errors import IQTError
from ...core.words import counted
from ..learned import LearnedMethod
from ..context import raise_where_filled
from ..inputs import clip_input


class CNNMethod(LearnedMethod):
    requires_torch = True
    model_suffix = ".pt"
    tile = None  # low-res positions per tile side (None: the inference default)
    peak = (5.0, 5.0)  # espcn 3.8-4.1x, espcn-hetero 4.1-4.5x measured
    # σ over the filled context beyond a tight mask (context.raise_where_filled): the median, over the training
    # subjects' tight x2 inputs, of how much larger the error was relative to σ there than at the rest of the brain's
    # edge (docs/measurements.md, "Uncertainty by style"; benchmarks/filled_context_sigma.py)
    filled_std_scale = 1.0

    def _model_io(self):
        # torch comes with a model's weights (model_io.load); which factors are shipped, sidecars and the registry
        # are JSON, so a factor without a model is refused without the 2 s import
        from . import model_io

        return model_io

    def _predict(self, lr, r, mask, progress):
        from . import inference

        model = self.load(r)
        kw = {"device": self.device} if self.tile is None else {"tile": self.tile, "device": self.device}
        if self.takes_samples:
            kw.update(samples=self.samples, seed=self.seed)
        lr = clip_input(lr)
        hr, unc = inference.predict_volume(model, lr, mask, progress=progress, **kw)
        if unc and mask is not None:
            filled = inference.lr_support(mask, lr.shape[:3]) & ~np.any(lr != 0, axis=-1)
            raise_where_filled(unc, filled, r, self.filled_std_scale)
        return hr, unc

    def map_names(self, direction=True):
        if not (self.takes_samples and (self.samples is None or self.samples >= 1)):
            return super().map_names(direction)  # one deterministic pass: the predicted std only
        return ("std", "std_intrinsic", "std_parameter", "md_std", "fa_std") + (("direction",) if direction else ())

    def fit_options(self):
        from .training_data import DEFAULTS

        return ("epochs", "minutes", "threads", "init", "checkpoint", "input_unit", *DEFAULTS)

    def _fit(self, subjects, r, *, seed, log, progress, epochs=None, minutes=None, threads=None, init=None, **settings):
        """Degraded training volumes from every subject (every block shift), then the family's trainer."""
        from . import networks, require_torch, training, training_data
        from .model_io import LoadedModel

        require_torch()
        unit = settings.pop("input_unit", None)
        if unit is not None:  # "fixed": no subject scale, the input seen in mm^2/s through the normalisation alone
            from ..forest import INPUT_UNITS  # constants only

            if unit not in INPUT_UNITS:
                raise IQTError(f"--input-unit {unit}: choose one of {', '.join(INPUT_UNITS)}")
            if init is not None:
                raise IQTError("--input-unit: an --init model brings its own input unit; drop --input-unit")
            settings["subject_scale"] = unit != "fixed"
        if settings.get("reference_noise") and not issubclass(networks.ARCHITECTURES[self.name], networks.HeteroESPCN3D):
            raise IQTError(f"--reference-noise enters the heteroscedastic loss only; {self.name!r} has none (train "
                           "espcn-hetero or espcn-hetero-var1 with it)")
        if init is not None:  # its weights, factor and network, before the data are prepared (they had been after)
            training.warm_start(init, self.name, r)
        ck = settings.get("checkpoint")
        if ck is not None and Path(ck).exists():  # a damaged one, or another run's, refused before the data are prepared
            training.load_checkpoint(ck, self.name, r, seed)
        t0 = time.perf_counter()
        randomised = settings.get("randomise", training_data.DEFAULTS["randomise"])
        items = training_data.load_items(subjects, r, log=log, randomise_seed=seed if randomised else None,
                                    variants=int(settings.get("variants", training_data.DEFAULTS["variants"])),
                                    subsets=float(settings.get("subset_fraction", 0.0)),
                                    noise=float(settings.get("noise_fraction", 0.0)),
                                    halo=networks.halo_of(self.name),
                                    reference_noise=bool(settings.get("reference_noise")))
        prep = time.perf_counter() - t0
        if log:
            log(f"training data: {len(items)} degraded volumes from {len(subjects)} subject(s) ({prep:.0f} s)")
        epochs = epochs if epochs is not None else (10_000 if minutes else 200)
        net, meta, _ = training.train(items, method=self.name, factor=r, seed=seed, epochs=epochs, minutes=minutes,
                                      log=log, progress=progress, threads=threads, init=init,
                                      device=self.device, data=getattr(self, "_data_record", None), **settings)
        meta["training"]["data_preparation_seconds"] = prep
        return LoadedModel(net, meta)

    def _save(self, model, path):
        from . import model_io

        return model_io.save(model.net, model.meta, path)

    def summary(self, factor=2):
        t = self.trained(factor).meta["training"]
        return (f"{counted(t['epochs_run'], 'epoch')} (stopped by: {t['stopped_by']}), best validation loss {t['best_val_loss']:.4f} "
                f"({validation_loss_is(t)}), {t['minutes']:.1f} min + {t['data_preparation_seconds']:.0f} s data preparation")


def validation_loss_is(training: dict) -> str:
    """What the best validation loss of a sidecar's training record is: the shipped espcn's 0.8578 and espcn-hetero's
    0.0701 are different losses, which without a unit read as one figure. Which loss, on what, and that it is
    optimistic."""
    hetero = "hetero" in (training.get("epochs_per_phase") or {})
    share = (training.get("options") or {}).get("val_fraction", 0.15)
    what = ("the Gaussian negative log-likelihood per normalised tensor element (can be negative)" if hetero
            else "the mean squared error of the normalised tensor elements")
    return (f"{what}, on the held-out slab ({share:.0%}) of the training subjects, which also chose the epoch kept, so "
            "optimistic; not comparable across methods")


class ESPCN(CNNMethod):
    name = "espcn"
    description = "3D-ESPCN CNN (residual over cubic), shipped model trained on the training subjects"


class ESPCNHetero(CNNMethod):
    name = "espcn-hetero"
    description = "3D-ESPCN with a heteroscedastic second network: per-voxel predictive standard deviation"
    filled_std_scale = 1.6  # 1.44-1.65 on the four training subjects
    gives_uncertainty = True
    tta_peak = 6.0  # --tta: the float64 sums of the tensors and the 6-element std


class ESPCNHeteroVar1(CNNMethod):
    name = "espcn-hetero-var1"
    peak = (7.0, 7.0)  # the Monte Carlo mean and variances: espcn-hetero-var1 6.2-6.6x measured
    tta_peak = 9.0  # --tta: the float64 sums of the tensors and the five maps, 7.8-8.9x more measured (espcn-hetero-var1)
    description = ("3D-ESPCN, heteroscedastic + variational dropout per unit: Monte Carlo mean, total, intrinsic "
                   "and parameter standard deviation")
    filled_std_scale = 1.55  # 1.40-1.60 on the four training subjects
    gives_uncertainty = True
    takes_samples = True


class ESPCNHeteroVar2(CNNMethod):
    name = "espcn-hetero-var2"
    # espcn-hetero-var1's figures (measured on it: 6.2-6.6x, and 7.8-8.9x more with --tta), assumed because it
    # makes the same maps; these multiples were not measured on this method itself
    peak = (7.0, 7.0)  # the Monte Carlo mean and variances
    tta_peak = 9.0  # --tta: the float64 sums of the tensors and the five maps
    description = ("3D-ESPCN, heteroscedastic + variational dropout per channel: Monte Carlo mean, total, intrinsic "
                   "and parameter standard deviation")
    filled_std_scale = 1.55  # espcn-hetero-var1's, assumed (no shipped model to measure it on)
    gives_uncertainty = True
    takes_samples = True


class Deep(CNNMethod):
    name = "deep"
    description = ("deeper 3D-ESPCN: a residual block of two 3^3 convolutions after the first layer, 9^3 low-res voxels "
                   "of context (warm-start its training from an espcn model with --init)")


class DeepHetero(CNNMethod):
    name = "deep-hetero"
    description = "deeper 3D-ESPCN (9^3 context) with a heteroscedastic second network: per-voxel predictive std"
    filled_std_scale = 1.4  # deep-hetero-var1's, assumed (no shipped model to measure it on)
    gives_uncertainty = True
    tta_peak = 6.0  # --tta: as espcn-hetero


class DeepHeteroVar1(CNNMethod):
    name = "deep-hetero-var1"
    # espcn-hetero-var1's figures (measured on it: 6.2-6.6x, and 7.8-8.9x more with --tta), assumed because it
    # makes the same maps; these multiples were not measured on this method itself
    peak = (7.0, 7.0)  # the Monte Carlo mean and variances
    tta_peak = 9.0  # --tta: the float64 sums of the tensors and the five maps
    description = ("deeper 3D-ESPCN (9^3 context), heteroscedastic + variational dropout per unit: Monte Carlo mean, "
                   "total, intrinsic and parameter standard deviation")
    filled_std_scale = 1.4  # 1.33-1.49 on the four training subjects
    gives_uncertainty = True
    takes_samples = True
