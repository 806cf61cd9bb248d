"""The one interface every method implements: low-res tensor volume (+ mask) -> high-res tensor volume
and, where the method has one, uncertainty volumes. The CLI, the Slicer Logic and the benchmark call it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core import direction, grid, tensors
from ..core.errors import IQTError
from ..core.orientation import Reorientation
from ..core.volume import Volume


@dataclass
class Prediction:
    """A method's output on the high-res grid: the tensor volume and named uncertainty maps
    (e.g. "std": per-voxel standard deviation averaged over the 6 elements, mm^2/s; "direction": the
    uncertainty of the principal eigenvector in degrees, `direction.spread`, beside every "std")."""

    tensor: Volume
    uncertainty: dict[str, Volume] = field(default_factory=dict)


class Method:
    """Base class. Subclasses set `name`, `description`, `gives_uncertainty` and implement `_predict`
    on canonical-axis (RAS-ordered) arrays; `predict` handles checks and reorientation so that every
    method gives the same answer whatever the storage order of the input."""

    name = "?"
    description = ""
    gives_uncertainty = False
    learned = False

    def fit(self, *args, **kwargs):
        """Learned methods train here; interpolation has nothing to learn."""
        return self

    def predict(self, lr: Volume, factor: int = 2, mask: Volume | None = None, progress=None) -> Prediction:
        r = grid.check_factor(factor)
        check_tensor_input(lr)
        if mask is not None:
            if mask.shape3 != lr.shape3:
                raise IQTError(
                    f"mask shape {mask.shape3} differs from the low-res input {lr.shape3}; give a mask on the input's grid"
                )
            if not np.asarray(mask.data).any():
                raise IQTError("the mask is empty (no voxel inside); give a brain mask, for example from 'iqt mask'")
        reo = Reorientation.to_canonical(lr.affine)
        lr_c = reo.apply(lr)
        mask_c = None if mask is None else reo.apply(mask)
        tensor, unc = self._predict(
            np.asarray(lr_c.data, dtype=np.float32), r, None if mask_c is None else mask_c.data.astype(bool), progress
        )
        if "std" in unc and "direction" not in unc:
            unc["direction"] = direction.spread(tensor, unc["std"])
        hr_aff = grid.hr_affine(lr_c.affine, r)
        out = reo.undo(Volume(tensor.astype(np.float32), hr_aff, "tensor", meta={"method": self.name, "factor": r}))
        maps = {k: reo.undo(Volume(v.astype(np.float32), hr_aff, "scalar")) for k, v in unc.items()}
        return Prediction(out, maps)

    def _predict(self, lr: np.ndarray, r: int, mask: np.ndarray | None, progress) -> tuple[np.ndarray, dict]:
        raise NotImplementedError


class LearnedMethod(Method):
    """A method with a trained model: `model=None` means the shipped one for the requested factor, a path
    means that file. Models are loaded once per factor, checksum-verified by the family's `model_io`."""

    learned = True

    def __init__(self, model=None):
        self.model_path = model
        self._loaded = {}

    def _model_io(self):
        """The family's model I/O module (with `shipped(method, factor)` and `load(path)`)."""
        raise NotImplementedError

    def load(self, factor: int):
        if factor not in self._loaded:
            model_io = self._model_io()
            path = self.model_path if self.model_path is not None else model_io.shipped(self.name, factor)
            model = model_io.load(path)
            if model.method != self.name:
                raise IQTError(f"{path}: this is a {model.method!r} model; use --method {model.method} with it")
            if model.factor != factor:
                raise IQTError(f"{path}: this model is for factor {model.factor}, not {factor}; use --factor {model.factor}")
            self._loaded[factor] = model
        return self._loaded[factor]


def check_tensor_input(vol: Volume) -> None:
    """A method's input must be a finite tensor volume with a plausible scale."""
    if vol.kind != "tensor" or vol.data.ndim != 4 or vol.data.shape[3] != 6:
        raise IQTError(
            f"the input is not a diffusion tensor volume (shape {vol.data.shape}); give a DTI volume (fit one from DWIs with 'iqt fit')"
        )
    if not np.isfinite(vol.data).all():
        raise IQTError("the input tensors hold NaN/Inf values; replace them (0 outside the brain) and retry")
    diag = vol.data[..., [0, 2, 5]]
    big = np.percentile(np.abs(diag[diag != 0]), 99) if (diag != 0).any() else 0.0
    if big > 0.1:
        raise IQTError(
            f"the tensor values look like they are not in mm^2/s (99th percentile of |Dii| = {big:g}); "
            f"rescale them to mm^2/s (white matter MD about 0.7e-3)"
        )


def clip_input(lr: np.ndarray) -> np.ndarray:
    """Method inputs get eigenvalues clipped to [0, 4e-3] mm^2/s (docs/conventions.md, Degradation)."""
    return tensors.clip_eigenvalues(lr, *tensors.INPUT_CLIP)
