"""A method with a trained model (the CNNs and forests derive from it): which model serves which factors, loading it
checksum-verified, `fit` and `save`, and what a trained model's sidecar records so that it can be made again."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..core import grid
from ..core.errors import IQTError
from .base import Method

class LearnedMethod(Method):
    """A method with a trained model: `model=None` means the shipped one for the requested factors, a path
    means that file. Models are loaded once per factor set, checksum-verified by the family's `model_io`.
    A model trained for factors (fx, fy, fz) on canonical axes serves any reordering of them: `predict` permutes
    the input's axes (tensor components with them) so that the axis it refines most is the model's (grid.axis_order),
    and back; so one through-plane model (1, 1, 3) serves thick slices stored along any voxel axis."""

    learned = True
    model_suffix = ""  # the family's weights file suffix

    def __init__(self, model=None, samples: int | None = None, seed: int = 0, device: str = "cpu", tta: bool = False):
        super().__init__(model, samples, seed, device, tta)
        self._loaded = {}
        self._fitted = set()  # the factors whose model `fit` made in this session (no file names it)
        self._twins = {}

    def for_noisy_inputs(self, f: tuple):
        if self.model_path is not None or self.model_for is not None:  # a given model is what the user asked for
            return None
        if f not in self._twins:
            from ..fileio.model_files import NOISY

            io = self._model_io()
            have = io.shipped_factor_sets(self.name, kind=NOISY)
            order = grid.axis_order(f, have)
            path = None if order is None else io.shipped_for(self.name, tuple(f[i] for i in order), NOISY)
            twin = None
            if path is not None:
                twin = type(self)(model=path, samples=self.samples, seed=self.seed, device=self.device, tta=self.tta)
                twin.model_for = NOISY
            self._twins[f] = twin
        return self._twins[f]

    def context(self, f: tuple) -> int | None:
        model = self.load(f)
        half = getattr(model, "n", None)  # a forest's patch radius
        if half is None:
            half = getattr(getattr(model, "net", None), "halo", None)  # a CNN's halo
        return None if half is None else 2 * int(half) + 1

    def _model_io(self):
        """The family's model I/O module (with `shipped(method, factor)`, `load(path)` and `register(sidecar)`)."""
        raise NotImplementedError

    def factor_sets(self) -> list[tuple[int, int, int]]:
        """The factors of the models this method can use: the given model's, else the shipped ones."""
        if self.model_path is not None:
            if not self._loaded:
                model = self._read(self.model_path)
                self._loaded[grid.factors(model.factor)] = model
            return list(self._loaded)
        return self._model_io().shipped_factor_sets(self.name)

    def model_file(self, factor):
        """The model file that serves `factor` (the given one, else the shipped one for it or for a reordering)."""
        f = grid.factors(factor)
        if self.model_path is not None:
            return self.model_path
        order = grid.axis_order(f, self._model_io().shipped_factor_sets(self.name)) or (0, 1, 2)
        return self._model_io().shipped(self.name, tuple(f[i] for i in order))

    def model_record(self, factor) -> tuple[str, str]:
        """(model file, SHA256 of its weights) for `factor`: what a run's records name (batch sidecars, benchmark JSON)."""
        from ..fileio.checksums import sha256
        from ..fileio.model_files import read_json, sidecar_path

        path = self.model_file(factor)
        side = sidecar_path(path)
        try:
            weights = side.with_name(read_json(side)["weights"])
        except (OSError, ValueError, KeyError):
            weights = Path(path)
        return os.path.abspath(side), sha256(weights)  # the sidecar, wherever the records are read

    def load(self, factor, *, cubic: bool = True):
        """The model for `factor` (an integer r or (fx, fy, fz)) or for a reordering of it (what `predict` will use);
        an IQTError naming what exists if there is none. `cubic`: whether that refusal may advise an interpolation
        method (not where the caller cannot run one: 'iqt propagate' needs an uncertainty map)."""
        f = grid.factors(factor)
        if f not in self._loaded:
            order = grid.axis_order(f, self.factor_sets())
            if order not in (None, (0, 1, 2)):
                return self.load(tuple(f[i] for i in order), cubic=cubic)
            path = self.model_path if self.model_path is not None else self._model_io().shipped(self.name, f)
            model = self._read(path)
            if grid.factors(model.factor) != f:
                advice = _use_instead(model.factor)
                interpolation = f", or an interpolation method (cubic) for {grid.describe(f)}" if cubic else ""
                exc = IQTError(f"{path}: this {self.name} model is for {grid.describe(model.factor)}, not "
                               f"{grid.text(f)}; {advice}"
                               + (", or leave --model out for the shipped model"
                                  if self.model_path is not None and grid.axis_order(
                                      f, self._model_io().shipped_factor_sets(self.name)) is not None else "")
                               + interpolation)
                exc.advice = advice  # 'iqt batch' puts its cohort's own in its place (apps/cli/batch_plan.py _method_for)
                raise exc
            self._loaded[f] = model
        return self._loaded[f]

    def _check_model(self, f: tuple) -> None:
        self.load(f)

    def _read(self, path):
        """The model file at `path`, checksum-verified; an IQTError when it is another method's."""
        model = self._model_io().load(path)
        if model.method != self.name:
            raise IQTError(f"{path}: this is a model of {model.method!r}; use --method {model.method} with it")
        return model

    def _model_named(self, f) -> dict:
        """The model that ran, as the header names it (records.made_by: "shipped model espcn_x2.pt"), for every caller:
        the Python API, iqt batch and the CLI write the same header for the same values; nothing for a model `fit`
        made in this session (it is not the shipped one, and a factor with none shipped would fail after the
        prediction)."""
        from ..fileio.model_files import model_origin

        key = f if f in self._loaded else tuple(f[i] for i in (self._axis_order(f) or (0, 1, 2)))
        if key in self._fitted:
            return {}
        try:
            path = self.model_file(f)
        except IQTError:
            return {}
        name, origin = model_origin(path, given=self.model_path is not None and self.model_for is None)
        return {"model_name": Path(name).name, "model_origin": origin}

    def _axis_order(self, f: tuple):
        if f in self._loaded:
            return None
        order = grid.axis_order(f, self.factor_sets())
        return None if order is None or order == (0, 1, 2) else order

    def _family_factor(self, f: tuple):
        self.load(f)  # no model for these factors: fails here, naming what exists
        return f

    def fit(self, subjects, factor=2, *, seed: int = 0, log=None, progress: bool = True, **options):
        f = grid.factors(factor)
        unknown = sorted(k for k, v in options.items() if v is not None and k not in self.fit_options())
        if unknown:
            flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
            raise IQTError(f"{flags}: {'does' if len(unknown) == 1 else 'do'} not apply to {self.name!r}; drop "
                           f"{'it' if len(unknown) == 1 else 'them'}")
        data = data_record(subjects)  # before the training: the files as it read them
        self._data_record = data  # a CNN's checkpoint is resumed on these files only (methods/cnn/training.py)
        model = self._fit(list(subjects), f, seed=seed, log=log, progress=progress,
                          **{k: v for k, v in options.items() if v is not None})
        record = model.meta.setdefault("training", {})
        record.update(libraries=library_versions(torch=self.requires_torch), data_sha256=data)
        self._loaded[f] = model
        self._fitted.add(f)
        return self

    def fit_options(self) -> tuple[str, ...]:
        """The `fit` options the family takes besides seed, log and progress (its trainer's settings)."""
        return ()

    def _fit(self, subjects, f: tuple, **options):
        """The family's trainer for factors `f` (fx, fy, fz) on canonical axes: returns a model object as `load`
        gives."""
        raise NotImplementedError

    def trained(self, factor=2):
        """The model `fit` made for `factor`."""
        f = grid.factors(factor)
        if f not in self._loaded:
            raise IQTError(f"method {self.name!r} has no model for {grid.describe(f)} to save; call fit first")
        return self._loaded[f]

    def save(self, path, factor=2, command: str | None = None, register: bool = False):
        """Write the model `fit` made (weights + JSON sidecar with `command`); returns the sidecar path."""
        model = self.trained(factor)
        model.meta.setdefault("training", {})["command"] = command
        if command:  # the folder its relative paths are read from
            model.meta["training"]["directory"] = os.getcwd()
        from ..fileio.model_files import registering
        from ..fileio.staging import own_stage

        folder = Path(path).parent
        if not folder.is_dir():  # before the registry's lock file is made there
            why = "is a file, not a folder" if folder.exists() else "does not exist; create it or choose another output path"
            raise IQTError(f"{path}: the folder {folder} {why}")
        # the registry of the folder the model is written to, put in place with the model under its lock
        stage = None
        try:
            with (registering(folder) if register else contextlib.nullcontext()), own_stage() as stage:
                side = self._save(model, path)
                if register:
                    self._model_io().register(side, folder)
        except BaseException as exc:  # a signal as the lock is let go, the model in place: said so (apps/cli)
            if stage is not None and stage.committed and stage.declared and not getattr(exc, "in_place", None):
                exc.in_place = sorted(str(p) for p in stage.declared)
            raise
        return side

    def _save(self, model, path):
        raise NotImplementedError

    def summary(self, factor: int = 2) -> str:
        """One line on the training `fit` ran (for the command line)."""
        return ""


# What a model's sidecar records beside its seed and command so that its weights can be made again (1 and 2
# threads give other CNN weights, and so can other libraries or other bytes of the subjects).
TRAINING_FILES = ("dwi.bval", "dwi.bvec")  # with the subject's DWI (dwi.nii.gz or dwi.nii)


def library_versions(torch: bool = False) -> dict:
    """The versions of Python and of the numerical libraries a training ran on (torch for the CNNs), and the BLAS
    library numpy and scipy call (its name and version, from threadpoolctl)."""
    import platform
    from importlib import metadata

    from threadpoolctl import threadpool_info

    out: dict = {"python": platform.python_version()}
    for dist in ("numpy", "scipy", "nibabel", "dipy", "threadpoolctl") + (("torch",) if torch else ()):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # importable without its metadata (a bare copy on the PYTHONPATH)
            out[dist] = _module_version(dist)
    if torch:
        import sys

        out["torch_cuda"] = getattr(getattr(sys.modules.get("torch"), "version", None), "cuda", None)
    out["blas"] = sorted({f"{lib.get('internal_api')} {lib.get('version')}" for lib in threadpool_info()
                          if lib.get("user_api") == "blas"})
    return out


def _module_version(name: str):
    """The `__version__` of an importable module, or None where it cannot be imported or has none."""
    import importlib

    try:
        return getattr(importlib.import_module(name), "__version__", None)
    except ImportError:
        return None


def data_record(subjects) -> list[dict]:
    """Per training subject folder, its name, its absolute path, the SHA256 of its DWI, bval and bvec and of its DWI's
    decompressed bytes (a subject given as a loaded object is named only; a coarser copy is its folder's files,
    recorded once)."""
    from ..dmri.subject import Coarsened, dwi_path, subject_name
    from ..fileio.checksums import content_sha256, sha256

    out, seen = [], set()
    for s in subjects:
        if isinstance(s, Coarsened):
            s = s.folder
        if not isinstance(s, (str, os.PathLike)):
            out.append({"subject": getattr(s, "name", None), "folder": None, "sha256": None})
            continue
        folder = Path(os.path.abspath(s))
        if folder in seen:
            continue
        seen.add(folder)
        files = [dwi_path(folder)] + [folder / n for n in TRAINING_FILES]
        # and the DWI's bytes decompressed: the same scan stored as dwi.nii or gzipped again is told by it (a review)
        out.append({"subject": subject_name(folder), "folder": str(folder), "sha256": {p.name: sha256(p) for p in files},
                    "dwi_content_sha256": content_sha256(files[0])})
    return out


def _use_instead(own) -> str:
    """The --factor that runs a model for `own`: an isotropic model's own; a through-plane model's (1,1,3: along
    canonical S) with its factor along the input's thick-slice voxel axis, which the factors asked cannot tell: its own
    1,1,3 had been advised to a slice-first input, refining an in-plane axis, and 'leave --factor out' looped in
    benchmark and report, whose --factor defaults to 2 (a thick-slice audit and its reviews)."""
    own = grid.factors(own)
    if grid.largest_axis(own) is None or sorted(own)[1] != 1:
        return f"use --factor {grid.text(own)}"
    n = max(own)
    return (f"use --factor with {n} along the input's thick-slice voxel axis (1,1,{n} where its slices are thick along "
            f"k, {n},1,1 along i, 1,{n},1 along j)")
