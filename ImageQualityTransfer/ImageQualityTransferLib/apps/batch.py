"""Cohort processing: every subject of a BIDS dataset (or of a list of subject folders or DTI files) upsampled on
a Dask cluster into a BIDS-derivatives dataset, resumable, with a cohort QC table.

`process` runs one subject and is the same function whatever runs it (in this process, a `LocalCluster` or a
remote scheduler), so a laptop run takes the cluster's code path. A subject whose outputs all carry a sidecar
that matches the request (input hash, method, model hash, factor, Monte Carlo samples) is skipped; every file is
written atomically and the sidecars last (the tensor's the very last), so a killed run leaves nothing that a
restart would trust without redoing it.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import IQTError, IQTWarning
from ..core.version import __version__
from ..fileio.paths import write_json

BIDS_VERSION = "1.10.0"
PIPELINE = "ImageQualityTransfer"
TEMP_PREFIX = ".iqt-"  # fileio.atomic_write's temporary files: left only by a killed writer, removed on restart
QC_METRICS = ("voxel_mm3", "snr", "brain_ml", "median_std", "nonphysical_pct", "noise_index")


@dataclass(frozen=True)
class Item:
    """One input: `prefix` is its BIDS entity chain (sub-X[_ses-Y][_acq-..][_run-..]), `subdir` its derivatives
    folder, `kind` "dwi" (fitted first) or "dti" (upsampled directly)."""

    prefix: str
    subdir: str
    path: str
    kind: str
    source: str = ""  # the path relative to `root`, for the sidecars' Sources (a BIDS URI bids:raw:<source>)
    root: str = ""  # the input dataset's folder (or the list's), linked as "raw" in dataset_description.json


@dataclass(frozen=True)
class Settings:
    """What every subject is run with, and what its sidecars record."""

    method: str
    factor: int | tuple = 2  # an integer r, or per-axis factors (fx, fy, fz)
    uncertainty: bool = False
    mc_samples: int | None = None
    device: str = "cpu"
    model: str | None = None  # --model (None: the shipped one)
    model_file: str | None = None  # the model file used, recorded in the sidecars
    model_sha256: str | None = None
    tta: bool = False  # learned methods averaged over the grid's symmetries (methods/symmetry.py); model-<method>tta
    tensor_order: str = "nifti"  # how a listed 4D tensor file holds its components (fileio.load_tensor)
    noisy_model_file: str | None = None  # the model the method runs on noisy inputs (methods/base.py), recorded
    noisy_model_sha256: str | None = None


# ---------------------------------------------------------------- inputs


def label(text: str) -> str:
    """A BIDS label: letters and digits only."""
    out = re.sub(r"[^A-Za-z0-9]", "", text)
    if not out:
        raise IQTError(f"{text!r}: cannot make a BIDS label (letters and digits) from this name; rename it")
    return out


def bids_items(root) -> list[Item]:
    """Every `sub-*/[ses-*/]dwi/*_dwi.nii[.gz]` of a BIDS dataset, by a glob over the layout the BIDS specification
    fixes. On the 3-subject phantom dataset of Testing/test_batch.py, pybids 0.22 took 0.07-0.09 s to index it
    (BIDSLayout, validate=False) after 0.3-0.4 s to import, this glob under 1 ms; pybids also brings SQLAlchemy,
    pandas and formulaic (README, Process a cohort)."""
    root = Path(root)
    found = []
    for pattern in ("sub-*/dwi/*_dwi.nii.gz", "sub-*/dwi/*_dwi.nii", "sub-*/ses-*/dwi/*_dwi.nii.gz", "sub-*/ses-*/dwi/*_dwi.nii"):
        found += root.glob(pattern)
    items = []
    for p in sorted(set(found)):
        prefix = p.name[: p.name.rindex("_dwi.nii")]
        if not prefix.startswith(p.parts[-3] if p.parts[-3].startswith("sub-") else p.parts[-4]):
            continue  # a file whose name does not start with its folder's subject: not BIDS, left alone
        rel = p.relative_to(root)
        items.append(Item(prefix, str(rel.parent), str(p), "dwi", rel.as_posix(), os.path.normpath(root.absolute())))
    return items


def list_items(listfile) -> list[Item]:
    """A text file with one subject folder (dwi.nii.gz, dwi.bval, dwi.bvec inside) or DTI file per line; relative
    paths are read from the list's folder, blank lines and "#" comments are skipped. Each subject is named after the
    folder or file (a "sub-" it already has is not doubled); where two would share a name, after as many parent folders
    as tell them apart (c/P02/dwi and c/P03/dwi: sub-P02dwi and sub-P03dwi)."""
    from ..fileio import TENSOR_SUFFIXES

    listfile = Path(listfile)
    try:
        lines = listfile.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise IQTError(f"{listfile}: cannot be read as a text list of subjects ({exc}); give a BIDS folder or a text file "
                       "with one subject folder or DTI file per line") from None
    entries = []  # (path parts naming the subject, kind, input path, the line)
    for line in lines:
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()  # "#" starts a comment, also after a path
        if not line:
            continue
        p = Path(line) if Path(line).is_absolute() else listfile.parent / line
        parts = [x for x in Path(line).parts if x not in ("/", "..", ".")]
        if str(p).lower().endswith(TENSOR_SUFFIXES):
            suffix = next(suf for suf in sorted(TENSOR_SUFFIXES, key=len, reverse=True) if p.name.lower().endswith(suf))
            parts[-1] = p.name[: -len(suffix)]
            entries.append((parts, "dti", str(p), line))
        else:
            entries.append((parts, "dwi", str(p / "dwi.nii.gz"), line))
    depth = [1] * len(entries)
    while True:  # lengthen the colliding names by a parent folder until they differ (or no folder is left)
        names = [_list_label(e[0], d) for e, d in zip(entries, depth)]
        grow = [i for i, n in enumerate(names) if names.count(n) > 1 and depth[i] < len(entries[i][0])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    return [Item(sub, f"{sub}/dwi", path, kind, line if not Path(line).is_absolute() else "",
                 os.path.normpath(listfile.parent.absolute()) if not Path(line).is_absolute() else "")
            for sub, (_, kind, path, line) in zip(names, entries)]


def _list_label(parts: list[str], depth: int) -> str:
    text = "".join(parts[-depth:])
    return "sub-" + label(text[4:] if text.lower().startswith("sub-") else text)


def find_items(path) -> list[Item]:
    """The subjects of INPUT: a BIDS folder or a text list; an IQTError when there are none or two share a name."""
    p = Path(path)
    if not p.exists():
        raise IQTError(f"{p}: not found; give a BIDS dataset folder or a text file listing subject folders or DTI files")
    items = bids_items(p) if p.is_dir() else list_items(p)
    if not items:
        raise IQTError(f"{p}: no subjects found; a BIDS dataset holds sub-*/[ses-*/]dwi/*_dwi.nii.gz, a list names one "
                       "subject folder or DTI file per line")
    seen = {}
    for it in items:
        if it.prefix in seen and Path(seen[it.prefix]).resolve() == Path(it.path).resolve():
            raise IQTError(f"{it.path} is listed twice; list each subject once")
        if it.prefix in seen:
            raise IQTError(f"{it.path} and {seen[it.prefix]} both become {it.prefix}; rename one of them")
        seen[it.prefix] = it.path
    return items


# ---------------------------------------------------------------- outputs


def output_names(item: Item, s: Settings, maps=()) -> dict[str, str]:
    """File name of every output by key ("tensor", "fa", "md", "mask", then the uncertainty maps): the BIDS entities
    of the input, then space-orig, res-<factor>x (res-1x1x3x for per-axis factors), model-<method>, param-<tensor|fa|md>,
    desc-<map> for uncertainty maps; desc-brain_mask for the run's brain mask."""
    base = f"{item.prefix}_space-orig_res-{_res_label(s)}_model-{label(_method_label(s))}"
    names = {p: f"{base}_param-{p}_dwimap.nii.gz" for p in ("tensor", "fa", "md")}
    names["mask"] = f"{base}_desc-brain_mask.nii.gz"
    for m in maps:
        names[m] = f"{base}_param-tensor_desc-{label(m)}_dwimap.nii.gz"
    return names


def expected_maps(s: Settings) -> tuple[str, ...]:
    """The uncertainty maps a run with these settings writes (none without --uncertainty)."""
    from .. import methods

    if not s.uncertainty:
        return ()
    cls = methods.method_class(s.method)
    return ("std", "direction") + (("std_intrinsic", "std_parameter", "md_std", "fa_std") if cls.takes_samples else ())


def sidecar(path) -> Path:
    return Path(str(path)[: -len(".nii.gz")] + ".json")


def _sha256(path) -> str:
    from ..fileio.model_files import sha256

    try:
        return sha256(path)
    except FileNotFoundError:
        raise IQTError(f"{path}: file not found; check the path") from None
    except OSError as exc:
        raise IQTError(f"{path}: cannot be read ({exc}); check the file") from None


def input_hashes(item: Item) -> dict:
    """SHA256 of the input image (and of its bval/bvec for a DWI): what a resumed run compares."""
    from ..fileio import bval_bvec_paths

    if item.kind == "dwi" and Path(item.path).name == "dwi.nii.gz" and not Path(item.path).exists():  # a listed folder
        raise IQTError(f"{Path(item.path).parent}: no dwi.nii.gz there (or no such folder); a subject folder holds "
                       "dwi.nii.gz, dwi.bval and dwi.bvec")
    out = {"InputSHA256": _sha256(item.path)}
    if item.kind == "dwi":
        bval, bvec = bval_bvec_paths(item.path)
        for p, flag in ((bval, "bval"), (bvec, "bvec")):
            if not p.exists():
                raise IQTError(f"{p}: not found; every DWI needs its FSL .{flag} file beside it")
        out["GradientSHA256"] = {"bval": _sha256(bval), "bvec": _sha256(bvec)}
    return out


def identity(item: Item, s: Settings, hashes: dict) -> dict:
    """The sidecar fields that must match for a subject to be skipped."""
    return {**hashes, "Method": s.method, "ModelSHA256": s.model_sha256, "Factor": _factor(s), "MCSamples": s.mc_samples,
            **_tta_record(s), **({"TensorOrder": s.tensor_order} if s.tensor_order != "nifti" and item.kind == "dti" else {})}


def _res_label(s: Settings) -> str:
    """The res- entity's label: 2x, or 1x1x3x for per-axis factors."""
    from ..core.grid import text

    return text(s.factor).replace(",", "x") + "x"


def _method_label(s: Settings) -> str:
    return s.method + ("+tta" if _tta_record(s) else "")


def _tta_record(s: Settings) -> dict:
    """{"TTA": true} for a method averaged over flips; {} otherwise, so that sidecars written before the setting
    existed still match a plain run."""
    return {"TTA": True} if s.tta else {}


def _factor(s: Settings):
    """The factor as the sidecars record it: an integer when isotropic, else [fx, fy, fz]."""
    from ..core.grid import record

    return record(s.factor)


def finished(folder: Path, names: dict, ident: dict) -> dict | None:
    """The tensor sidecar when every output and its sidecar exist and match `ident`, else None."""
    side = None
    for key, name in names.items():
        path = folder / name
        try:
            meta = json.loads(sidecar(path).read_text())
        except (OSError, ValueError):
            return None
        if not path.is_file() or any(meta.get(k) != v for k, v in ident.items()):
            return None
        side = meta if key == "tensor" else side
    return side


def remove_temporaries(folder: Path) -> int:
    """Delete the temporary files a killed writer left (atomic writes rename them into place when they finish)."""
    n = 0
    if folder.is_dir():
        for p in folder.rglob(TEMP_PREFIX + "*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    return n


def noisy_model_record(method, factor) -> tuple[str | None, str | None]:
    """(model file, weights SHA256) of the model `method` runs on noisy inputs at `factor`, or (None, None)."""
    from ..core import grid

    twin = method.for_noisy_inputs(grid.factors(factor)) if method.learned else None
    return twin.model_record(factor) if twin is not None else (None, None)


def model_record(method, factor) -> tuple[str | None, str | None]:
    """(model file, SHA256 of its weights) of a learned method (the shipped one unless --model), (None, None) else."""
    return method.model_record(factor) if method.learned else (None, None)


# ---------------------------------------------------------------- one subject


_METHODS: dict = {}


def _method(s: Settings):
    """The method object, made once per worker process (learned models load once)."""
    from .. import methods

    key = (s.method, s.model, s.mc_samples, s.device, s.tta)
    if key not in _METHODS:
        _METHODS[key] = methods.get(s.method, model=s.model, samples=s.mc_samples, device=s.device, tta=s.tta)
    return _METHODS[key]


def snr_estimate(dwi, mask: np.ndarray) -> float:
    """Mean of the first b0 in the brain over its standard deviation in the background (outside the mask dilated
    by three voxels, zero-filled voxels left out); NaN when there is no usable background."""
    from scipy import ndimage

    from ..dmri.dti import B0_THRESHOLD

    b0 = np.asarray(dwi.data[..., int(np.flatnonzero(dwi.bvals <= B0_THRESHOLD)[0])], dtype=np.float64)
    bg = ~ndimage.binary_dilation(mask, iterations=3) & (b0 != 0)
    if bg.sum() < 100:
        return float("nan")
    sd = float(b0[bg].std())
    return float(b0[mask].mean() / sd) if sd > 0 else float("nan")


def compute(item: Item, s: Settings) -> tuple[dict, dict]:
    """(volumes by output key, QC metrics) for one subject: fit if a DWI, upsample, uncertainty, FA and MD."""
    from .. import fileio
    from ..core import grid, tensors
    from ..core.volume import Volume
    from ..dmri.dti import brain_mask, fit_dti
    from ..methods.inputs import input_noise_index, whole_field, without_tiny_background

    snr, whole = float("nan"), None
    if item.kind == "dwi":
        dwi = fileio.load_dwi(item.path)
        mask = brain_mask(dwi)
        lr = fit_dti(dwi, mask)
        snr = snr_estimate(dwi, mask.data)
        del dwi
    else:
        lr = fileio.load_tensor(item.path, s.tensor_order)
        whole = whole_field(lr)
        lr = without_tiny_background(lr, whole)
        inside = np.any(lr.data != 0, axis=-1)  # the rule `iqt upsample` reads a tensor file's support by
        mask = None if whole or not inside.any() else Volume(inside, lr.affine, "mask")
    method = _method(s)
    brain_from = "dwi" if item.kind == "dwi" else "tensor"
    if mask is None:  # tensors over the whole field of view: the brain estimated from them (said in one warning)
        mask = method.support(lr, whole)
        brain_from = "estimated"
    pred = method.predict(lr, s.factor, mask, uncertainty=s.uncertainty, direction=s.uncertainty)
    t = pred.tensor
    brain = np.ones(t.shape3, bool) if mask is None else grid.repeat_blocks(np.asarray(mask.data, bool), s.factor)
    vols = {"tensor": t, "fa": t.replace(data=tensors.fa_fast(t.data).astype(np.float32), kind="scalar"),
            "md": t.replace(data=tensors.md(t.data).astype(np.float32), kind="scalar"),
            "mask": t.replace(data=brain, kind="mask")}
    if s.uncertainty:
        vols.update(pred.maps())
    inside = np.ones(lr.shape3, bool) if mask is None else np.asarray(mask.data, bool)
    vox = lr.voxel_size
    qc = {"voxel_mm": "x".join(f"{v:.2f}" for v in vox), "voxel_mm3": float(np.prod(vox)), "snr": snr,
          "brain_ml": float(inside.sum() * np.prod(vox) / 1000.0), "brain_from": brain_from,
          "median_std": float(np.median(pred.std.data[brain])) if s.uncertainty and pred.std is not None else float("nan"),
          # a negative eigenvalue: MD or FA there is not a measurement (the FA map's 1.0 can hide it)
          "nonphysical_pct": float(100 * np.mean(tensors.distance_to_physical(t.data[brain]) > 0)) if brain.any() else 0.0}
    # a learned method read it to choose its model (methods/base.py, _for_noise); interpolation did not
    index = t.meta.get("noise_index")
    if index is None and not (mask is None and brain_from == "estimated"):  # no brain found: background fits only
        index = input_noise_index(lr, inside, brain_from == "estimated")
    qc["noise_index"] = float("nan") if index is None else index
    return vols, qc


def process(item: Item, s: Settings, out_root: str) -> dict:
    """Run one subject into `out_root` (skipped when its outputs are there and match); never raises for bad input:
    returns {"subject", "status": done|skipped|failed, "reason", "qc", "seconds"}."""
    from .. import fileio

    t0 = time.perf_counter()
    res = {"subject": item.prefix, "input": item.path, "status": "failed", "reason": "", "qc": {}}
    folder = Path(out_root) / item.subdir
    try:
        ident = identity(item, s, input_hashes(item))
        names = output_names(item, s, expected_maps(s))
        done = finished(folder, names, ident)
        if done is not None:
            res.update(status="skipped", qc=done.get("QC", {}))
            return res
        with warnings.catch_warnings(record=True) as caught:  # the engine's warnings: this subject's notes
            warnings.simplefilter("always", IQTWarning)
            vols, qc = compute(item, s)
        # each once: batch and the method may both say the same (e.g. a whole-field input with no background)
        notes = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught if issubclass(w.category, IQTWarning)))
        for w in caught:
            if not issubclass(w.category, IQTWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        folder.mkdir(parents=True, exist_ok=True)
        remove_temporaries(folder)
        for key, name in names.items():  # data first, every sidecar after, the tensor's last
            (fileio.save_tensor if key == "tensor" else fileio.save_scalar)(vols[key], folder / name)
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        qc["seconds"] = round(time.perf_counter() - t0, 3)  # kept in the sidecar: a later skip still reports it
        used = vols["tensor"].meta
        # an input noisier than clean scans ran the method's model trained with added noise (methods/base.py)
        noisy_model = {}
        if used.get("model_for"):
            noisy_model = {"ModelUsed": used["model_file"], "ModelUsedSHA256": used["model_sha256"],
                           "ModelUsedFor": f"{used['model_for']} inputs"}
            qc["model_used"] = used["model_for"]
        if notes:
            noisy_model["Notes"] = notes
        for key in [k for k in names if k != "tensor"] + ["tensor"]:
            meta = {"Description": DESCRIPTIONS.get(key, key), "Units": UNITS.get(key, ""), "Sources": sources(item),
                    "InputFile": str(Path(item.path).absolute()), **ident, "Model": s.model_file, **noisy_model,
                    "SoftwareName": PIPELINE, "SoftwareVersion": __version__, "Time": stamp}
            if key == "tensor":
                meta["QC"] = qc
            write_json(sidecar(folder / names[key]), meta)
        res.update(status="done", qc=qc, notes=notes)
    except IQTError as exc:
        res["reason"] = " ".join(str(exc).split())
    except MemoryError:
        res["reason"] = "out of memory; give the workers more with --memory-limit or run fewer --workers"
    except Exception as exc:  # a bug, not bad input: recorded, the others go on
        res["reason"] = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"
    finally:
        res["seconds"] = round(time.perf_counter() - t0, 3)
    return res


DESCRIPTIONS = {
    "tensor": "high-resolution diffusion tensor (lower-triangular Dxx,Dxy,Dyy,Dxz,Dyz,Dzz, voxel axes)",
    "fa": "fractional anisotropy of the high-resolution tensor",
    "md": "mean diffusivity of the high-resolution tensor",
    "std": "predictive standard deviation averaged over the six tensor elements",
    "direction": "uncertainty of the principal eigenvector (RMS angle over 16 draws)",
    "std_intrinsic": "intrinsic (data) part of the standard deviation",
    "std_parameter": "parameter (model) part of the standard deviation",
    "md_std": "standard deviation of the mean diffusivity",
    "fa_std": "standard deviation of the fractional anisotropy",
    "mask": "the brain mask of the run on the high-resolution grid (the low-res mask the DWI was fitted in, the "
            "input tensors' own or the brain estimated from them, upsampled by nearest); the outputs reach one "
            "low-res voxel beyond it, where the brain's edge holds brain in part of a voxel",
}
UNITS = {"tensor": "mm^2/s", "fa": "", "md": "mm^2/s", "std": "mm^2/s", "direction": "degrees", "std_intrinsic": "mm^2/s",
         "std_parameter": "mm^2/s", "md_std": "mm^2/s", "fa_std": "", "mask": ""}


# ---------------------------------------------------------------- the cohort


def sources(item: Item) -> list[str]:
    """The sidecars' Sources: BIDS URIs into the input dataset linked as "raw" (file URIs for files outside it) of the
    input file and, for a DWI, its b-values and b-vectors."""
    from ..fileio import bval_bvec_paths

    files = [Path(item.path)] + (list(bval_bvec_paths(item.path)) if item.kind == "dwi" else [])
    files = [Path(os.path.normpath(f.absolute())) for f in files]
    root = Path(item.root) if item.root else None
    return [f"bids:raw:{f.relative_to(root).as_posix()}" if root is not None and root in f.parents else f.as_uri()
            for f in files]


def dataset_description(out_root: Path, s: Settings, items=()) -> None:
    """Write (or extend) the derivatives' dataset_description.json with this pipeline's GeneratedBy entry and the
    input dataset as its source ("raw" in DatasetLinks, the name the sidecars' BIDS URIs use)."""
    from ..core.tensors import NOISY_MODEL

    path = out_root / "dataset_description.json"
    entry = {"Name": PIPELINE, "Version": __version__, "Method": s.method, "Factor": _factor(s),
             "Model": s.model_file, "ModelSHA256": s.model_sha256, **_tta_record(s)}
    if s.noisy_model_file:
        entry.update(NoisyInputModel=s.noisy_model_file, NoisyInputModelSHA256=s.noisy_model_sha256,
                     NoisyInputAboveNoiseIndex=NOISY_MODEL)
    desc = {"Name": "ImageQualityTransfer super-resolved DTI", "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
            "GeneratedBy": []}
    try:
        old = json.loads(path.read_text())
        if isinstance(old, dict) and isinstance(old.get("GeneratedBy"), list):
            desc = {**desc, **old}
    except (OSError, ValueError):
        pass
    changed = not path.exists()
    roots = {Path(it.root).as_uri() for it in items if it.root}
    uri = next(iter(roots)) if len(roots) == 1 else None
    if uri is not None and desc.get("DatasetLinks", {}).get("raw") != uri:
        desc["DatasetLinks"] = {**desc.get("DatasetLinks", {}), "raw": uri}
        desc["SourceDatasets"] = [d for d in desc.get("SourceDatasets", []) if d.get("URL") != uri] + [{"URL": uri}]
        changed = True
    if entry not in desc["GeneratedBy"]:
        desc["GeneratedBy"] = desc["GeneratedBy"] + [entry]
        changed = True
    if changed:
        write_json(path, desc)


# A metric measured in different ways by input kind is compared within each kind only: the brain volume is a DWI's
# median-Otsu mask, a tensor file's non-zero voxels (another tool's mask) or a brain estimated from the tensors.
QC_GROUPED_BY = {"brain_ml": "brain_from"}


def flag_outliers(results: list[dict], metrics=QC_METRICS, k: float = 3.0) -> None:
    """Mark each subject whose metric lies outside median ± k·MAD over the subjects that have it (MAD scaled by
    1.4826, a standard deviation for normal data, and at least 0.1 % of the median: a cohort of one protocol has MAD 0
    or header rounding in its voxel volume, and the scan at another resolution is then still the one flagged); fewer
    than 3 values flag nothing. Metrics in QC_GROUPED_BY are compared within each group of subjects."""
    for r in results:
        r["outlier"] = []
    for m in metrics:
        groups: dict = {}
        for r in results:
            groups.setdefault(r["qc"].get(QC_GROUPED_BY[m]) if m in QC_GROUPED_BY else None, []).append(r)
        for members in groups.values():
            _flag(members, m, k)


def _flag(results: list[dict], m: str, k: float) -> None:
    """`flag_outliers` for metric `m` over `results`."""
    vals = [(r, r["qc"].get(m)) for r in results]
    vals = [(r, float(v)) for r, v in vals if v is not None and np.isfinite(float(v))]
    if len(vals) >= 3:
        x = np.array([v for _, v in vals])
        med = np.median(x)
        mad = max(1.4826 * np.median(np.abs(x - med)), 1e-3 * abs(med))
        for r, v in vals:
            if mad > 0 and abs(v - med) > k * mad:
                r["outlier"].append(m)


QC_COLUMNS = ("subject", "model", "res", "status", "input_voxel_mm", "snr", "brain_ml", "median_std_mm2s",
              "nonphysical_pct", "noise_index", "model_used", "outlier", "seconds", "reason")


def _fmt(v, spec):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return format(v, spec) if np.isfinite(v) else "n/a"


def _model_used(r: dict) -> str:
    """"noisy" where the subject ran the method's model trained with added noise, "default" otherwise, "-" if not run."""
    if r["status"] == "failed" or not r["qc"]:
        return "-"
    return r["qc"].get("model_used", "default")


def qc_rows(results: list[dict], model: str = "", res: str = "") -> list[list[str]]:
    """One QC row per subject of a run of `model` (the outputs' model- label) at `res` (their res- label)."""
    rows = []
    for r in results:
        q = r["qc"]
        seconds = q.get("seconds") if r["status"] == "skipped" else r.get("seconds")  # a skip keeps the run's time
        rows.append([r["subject"], model, res, r["status"], q.get("voxel_mm", "n/a"), _fmt(q.get("snr"), ".1f"),
                     _fmt(q.get("brain_ml"), ".1f"), _fmt(q.get("median_std"), ".3g"), _fmt(q.get("nonphysical_pct"), ".2f"),
                     _fmt(q.get("noise_index"), ".3f"), _model_used(r),
                     ",".join(r.get("outlier", [])) or "-", _fmt(seconds, ".1f"), r.get("reason", "")])
    return rows


def write_qc(out_root: Path, results: list[dict], s: Settings | None = None) -> None:
    """qc.tsv and qc.html: one row per subject and run (model, res), outliers by `flag_outliers` within the run; the
    rows of other runs into the same folder (another method or factor) are kept."""
    from ..core.tensors import NOISY_INPUT, NOISY_MODEL
    from ..fileio import write_text

    flag_outliers(results)
    model = label(_method_label(s)) if s is not None else ""
    res = _res_label(s) if s is not None else ""
    rows = [r for r in _read_qc(out_root / "qc.tsv") if (r[1], r[2]) != (model, res)] + qc_rows(results, model, res)
    rows.sort(key=lambda r: (r[1], r[2]))  # by run; subjects in input order within each
    tsv = "\t".join(QC_COLUMNS) + "\n" + "".join("\t".join(c.replace("\t", " ") for c in row) + "\n" for row in rows)
    write_text(out_root / "qc.tsv", tsv)
    flag = QC_COLUMNS.index("outlier")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in QC_COLUMNS)
    body = "".join(
        "<tr{}>{}</tr>".format(' class="flag"' if row[flag] != "-" or row[3] == "failed" else "",
                               "".join(f"<td>{html.escape(c)}</td>" for c in row)) for row in rows)
    page = ("<!doctype html><meta charset='utf-8'><title>IQT cohort QC</title><style>body{font-family:sans-serif}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}tr.flag{background:#fdd}</style>"
            f"<h1>IQT cohort QC</h1><p>{len(rows)} rows (subject, model, res). SNR: mean b0 in the brain / std of the b0 "
            "background. nonphysical_pct: share of the brain mask's output voxels with a negative eigenvalue (their MD/FA are "
            "not measurements). noise_index: the input tensors' roughness in the brain (clean dev inputs 0.049-0.070; above "
            f"{NOISY_MODEL:g} a method with a model trained with added noise runs it: model_used noisy; above {NOISY_INPUT:g} "
            "the others may do no better than cubic). Outlier: outside median &plusmn; 3 MAD "
            "(scaled) on voxel volume, SNR, brain volume, median uncertainty, nonphysical_pct or noise_index, within each "
            "run; brain volumes only among inputs of one kind (a DWI's median-Otsu mask, a tensor file's non-zero voxels, "
            f"a brain estimated from unmasked tensors).</p><table><tr>{head}</tr>{body}</table>\n")
    write_text(out_root / "qc.html", page)


def _read_qc(path: Path) -> list[list[str]]:
    """The rows of an earlier qc.tsv in this layout (an older layout's rows are dropped: their run is unknown)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    if not lines or tuple(lines[0].split("\t")) != QC_COLUMNS:
        return []
    return [row for row in (line.split("\t") for line in lines[1:]) if len(row) == len(QC_COLUMNS)]


def start_client(workers: int = 2, scheduler: str | None = None, memory_limit="auto", dashboard_address=":8787"):
    """A Dask client: on the scheduler at `scheduler`, or on a new LocalCluster of `workers` single-threaded worker
    processes. Returns (client, cluster or None)."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            _reachable(scheduler)
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise IQTError(f"--scheduler {scheduler}: cannot connect ({' '.join(str(exc).split())}); start one with "
                           "'dask scheduler' and give its tcp://host:port") from None
    # Dask's workers start with glibc's malloc trim threshold at 64 KiB, which hands numpy's large temporaries back to
    # the OS and faults them in again: with it a dev subject took 9-11 s on a worker against 5-6 s without
    # (benchmarks/batch_throughput.py); the one-thread settings (OMP_NUM_THREADS=1 and co.) are kept.
    env = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                               dashboard_address=dashboard_address, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _reachable(address: str) -> None:
    """An OSError at once when nothing listens at a tcp/tls scheduler address: Dask's Client would retry a refused
    connection until its timeout (about 24 s)."""
    import socket

    from distributed.comm import parse_address, parse_host_port

    proto, loc = parse_address(address)
    if proto in ("tcp", "tls"):
        with socket.create_connection(parse_host_port(loc), timeout=5):
            pass


def run_cohort(items: list[Item], s: Settings, out_root, client=None, progress: bool = True) -> list[dict]:
    """Every item through `process`, on `client` (a Dask client) or in this process when None; results in input order."""
    from ..core.progress import progress_bar

    out_root = Path(out_root)
    remove_temporaries(out_root)
    dataset_description(out_root, s, items)
    bar = progress_bar(total=len(items), desc="subjects", enabled=progress)
    results = {}
    if client is None:
        for it in items:
            results[it.prefix] = process(it, s, str(out_root))
            bar.update(1)
    else:
        from distributed import as_completed

        futures = {client.submit(process, it, s, str(out_root), key=f"iqt-{it.prefix}-{time.time_ns()}", pure=False): it
                   for it in items}
        for fut in as_completed(list(futures)):
            it = futures[fut]
            try:
                results[it.prefix] = fut.result()
            except Exception as exc:  # the task never returned: recorded like any failure
                from distributed import KilledWorker

                if isinstance(exc, KilledWorker):
                    reason = ("the worker running it died (memory limit or killed); give the workers more memory with "
                              "--memory-limit or run fewer --workers")
                else:
                    reason = (f"could not run on the cluster ({type(exc).__name__}: {' '.join(str(exc).split())}); the "
                              "workers need ImageQualityTransfer installed and the same paths as this machine")
                results[it.prefix] = {"subject": it.prefix, "input": it.path, "status": "failed", "qc": {},
                                      "reason": reason}
            bar.update(1)
    bar.close()
    ordered = [results[it.prefix] for it in items]
    write_qc(out_root, ordered, s)
    return ordered


def summary(results: list[dict]) -> str:
    n = {k: sum(r["status"] == k for r in results) for k in ("done", "skipped", "failed")}
    return f"{len(results)} subjects: {n['done']} done, {n['skipped']} skipped (already done), {n['failed']} failed"
