"""What a cohort run writes beside its volumes: the settings, the BIDS names of the outputs, the sidecars a resumed run
compares (input and model hashes) and the derivatives' dataset_description.json."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ...core.errors import IQTError
from ...core.version import __version__
from ...fileio.gradients import sidecar_path
from ...fileio.model_files import build
from ...fileio.writing import write_json
from .items import Item, label

BIDS_VERSION = "1.10.0"
PIPELINE = "ImageQualityTransfer"
TEMP_PREFIX = ".iqt-"  # fileio.atomic_write's temporary files: left only by a killed writer, removed on restart
# the temporary of a subject's output or sidecar (fileio.atomic_write: ".iqt-" + tempfile's random letters + the suffix);
# not ".iqt-earlier-<name>.<random>.tmp" (an output's earlier file set aside by a run of another command) nor ".iqt-probe-"
BIDS_DATATYPES = ("dwi", "anat", "func", "fmap", "perf")  # the folders a subject's files lie in
TEMPORARY = re.compile(r"\.iqt-[a-z0-9_]+(\.nii\.gz|\.mif|\.mif\.gz|\.json|\.png)\Z")
OUTPUT_SUFFIXES = {"nifti": ".nii.gz", "mif": ".mif", "mif.gz": ".mif.gz"}  # --output-format: the images' suffix
EARLIER_PREFIX = ".iqt-earlier-"  # fileio.staging._aside


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
    order_stated: bool | None = None  # whether --tensor-order was given (load_tensor's `stated`; None: an engine caller)
    output_order: str = "input"  # how the tensors are written (fileio.write_order): as each input was read, or one order
    noisy_model_file: str | None = None  # the model the method runs on noisy inputs (methods/base.py), recorded
    noisy_model_sha256: str | None = None
    bmax: float | None = None  # DWI inputs: fit the b0s and the volumes with b up to it only (dmri.dti.keep_bmax)
    exclude_outliers: bool = False  # DWI inputs: fit without the slices and volumes the fit does not explain
    # (dmri.outliers.check_fit, iqt fit --exclude-outliers); off, they are only counted and said
    frame_check: bool = True  # tensor files in another tool's order: iqt upsample's frame check (subject.frame_record);
    # a warning, not part of what a rerun compares
    note: str | None = None  # said in each subject's notes: the default ran interpolation for lack of a learned model
    # for the factors (methods/factor_choice.py Choice.note)
    output_format: str = "nifti"  # the images written: NIfTI, or MRtrix's .mif (fileio/mif.py) (OUTPUT_SUFFIXES)
    record: bool = True  # False under `iqt --no-record`: a .mif output's header then holds no command_history
    # (subject._input_history); its sidecars say so (identity: CommandHistory), so a rerun with the other setting redoes it


def output_names(item: Item, s: Settings, maps=()) -> dict[str, str]:
    """File name of every output by key ("tensor", "fa", "md", "mask", then the uncertainty maps): the BIDS entities
    of the input, then space-orig, res-<factor>x (res-1x1x3x for per-axis factors), model-<method>, param-<tensor|fa|md>,
    desc-<map> for uncertainty maps; desc-brain_mask for the run's brain mask; .nii.gz, or .mif by --output-format."""
    base = f"{item.prefix}_space-orig_res-{res_label(s)}_model-{label(method_label(s))}"
    ext = OUTPUT_SUFFIXES[s.output_format]
    names = {p: f"{base}_param-{p}_dwimap{ext}" for p in ("tensor", "fa", "md")}
    names["mask"] = f"{base}_desc-brain_mask{ext}"
    for m in maps:
        names[m] = f"{base}_param-tensor_desc-{label(m)}_dwimap{ext}"
    return names


def image_stem(name: str) -> str:
    """An output's name without its image suffix (.nii.gz, .mif, .mif.gz): its sidecar's and figure's stem."""
    for ext in sorted(OUTPUT_SUFFIXES.values(), key=len, reverse=True):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def figure_path(folder: Path, names: dict) -> Path:
    """The subject's QC figure (subject.qc_figure) for the run `names` come from: in figures/ beside the subject's dwi/
    folder (as fMRIPrep keeps its reports' figures), named as its outputs with desc-qc."""
    return Path(folder).parent / "figures" / (image_stem(names["tensor"])[: -len("_param-tensor_dwimap")] + "_desc-qc_dwimap.png")


def stale_maps(folder: Path, names: dict) -> list[Path]:
    """The uncertainty maps (and sidecars) of an earlier run of this subject, method and factor that this run does not
    write (it runs without --uncertainty, or with fewer maps): left beside new outputs, they would hold the old input's
    hashes. An output of the same name in the other format (.nii.gz for .mif) is stale too where its sidecar, which
    this run rewrites, describes it (`written_by_us`); another file of that name (a lab's mrconvert copy, a mask edited
    by hand) is no output of ours and stays."""
    base = image_stem(names["tensor"])[: -len("tensor_dwimap")]
    keep = {n for n in names.values()} | {sidecar(Path(n)).name for n in names.values()}
    stems = {image_stem(n) for n in names.values()}
    found = list(Path(folder).glob(base + "tensor_desc-*_dwimap.*"))
    found += [Path(folder) / (stem + ext) for stem in stems for ext in OUTPUT_SUFFIXES.values()]
    return sorted({p for p in found if p.name not in keep and p.is_file()
                   and (image_stem(p.name) not in stems or written_by_us(p))})


def stale_role(path: Path, names: dict, prefix: str) -> str:
    """What a file `stale_maps` found is, as the input refusal names it: an output of an earlier run in the other
    format (a NIfTI brain mask before a .mif run), or an earlier uncertainty map or its sidecar."""
    key = next((k for k, n in names.items() if image_stem(n) == image_stem(path.name)), None)
    if key is not None:
        fmt = next(f for f, ext in sorted(OUTPUT_SUFFIXES.items(), key=lambda e: -len(e[1])) if path.name.endswith(ext))
        return f"{prefix}'s {key} output of an earlier --output-format {fmt} run"
    what = "the sidecar of an earlier uncertainty map" if path.name.endswith(".json") else "an earlier uncertainty map"
    return f"{what} of {prefix}"


def written_by_us(path: Path) -> bool:
    """Whether `path` is the file its sidecar describes (its FileSHA256 recorded and matching, `intact`): an earlier
    output of iqt batch, not another file given its name."""
    try:
        meta = json.loads(sidecar(path).read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and "FileSHA256" in meta and intact(Path(path), meta)


def expected_maps(s: Settings) -> tuple[str, ...]:
    """The uncertainty maps a run with these settings writes (none without --uncertainty)."""
    from ... import methods

    if not s.uncertainty:
        return ()
    cls = methods.method_class(s.method)
    sampled = cls.takes_samples and s.mc_samples != 0  # --mc-samples 0: one deterministic pass, its std only
    return ("std", "direction") + (("std_intrinsic", "std_parameter", "md_std", "fa_std") if sampled else ())


def sidecar(path) -> Path:
    return Path(path).with_name(image_stem(Path(path).name) + ".json")


def _sha256(path, image: bool = False) -> str:
    """SHA256 of a file, or of an image as read (a NRRD header with its detached data: fileio/checksums.py). A file
    that is no regular one (a FIFO, a device) is not opened, as fileio/checksums.py image_files rules: a FIFO dwi.bval
    or dwi.json had hung the worker; its reader refuses it (fileio/gradients.py), and no record matches the digest."""
    import hashlib

    from ...fileio.checksums import image_sha256, sha256
    from ...fileio.paths import not_a_file

    kind = None if image else not_a_file(path)
    if kind is not None:
        return hashlib.sha256(f"unread: {kind}".encode()).hexdigest()
    try:
        return image_sha256(path) if image else sha256(path)
    except FileNotFoundError:  # a header's missing data file is left to its reader (checksums.image_files)
        raise IQTError(f"{path}: file not found; check the path") from None
    except OSError as exc:
        raise IQTError(f"{exc.filename or path}: cannot be read ({exc}); check the file") from None


def input_hashes(item: Item) -> dict:
    """SHA256 of the input image (and of its bval/bvec and BIDS sidecar for a DWI): what a resumed run compares (a
    changed dwi.json had left a subject skipped, its outputs made with the old slice axis: a researcher's audit)."""
    if item.kind == "dwi" and Path(item.path).name == "dwi.nii.gz" and not Path(item.path).exists():  # a listed folder
        raise IQTError(f"{Path(item.path).parent}: no dwi.nii.gz there (or no such folder); a subject folder holds "
                       "dwi.nii.gz, dwi.bval and dwi.bvec (or an MRtrix dwi.mif holding its dw_scheme)")
    out = {"InputSHA256": _sha256(item.path, image=True)}
    if item.kind == "dwi" and item.gradients():  # an MRtrix DWI's own dw_scheme is in InputSHA256
        bval, bvec = item.gradients()
        for p, flag in ((bval, "bval"), (bvec, "bvec")):
            if not p.exists():
                raise IQTError(f"{p}: not found; every DWI needs its FSL .{flag} file beside it")
        out["GradientSHA256"] = {"bval": _sha256(bval), "bvec": _sha256(bvec)}
    if item.kind == "dwi":
        sidecar = sidecar_path(item.path)
        if sidecar.exists():  # its slice axis decides which slices --exclude-outliers drops and what the notes name
            out["SidecarSHA256"] = _sha256(sidecar)
    if item.mask:  # a list line's own mask
        out["MaskSHA256"] = _sha256(item.mask, image=True)
    return out


def read_order(item: Item, s: Settings) -> str:
    """The order a listed tensor file is read in: its list line's --tensor-order, the run's where given, else the one
    this tool recorded in its header (as `iqt upsample` reads it), else "nifti"."""
    if item.tensor_order:
        return item.tensor_order
    if s.order_stated or s.tensor_order != "nifti":
        return s.tensor_order
    from ...fileio import recorded_file_order

    return recorded_file_order(item.path) or "nifti"


def output_order(item: Item, s: Settings) -> str:
    """The order a subject's tensor file is written in: --output-order's, or with "input" (the default) the order its
    file was read in (`read_order`), so that a dtifit file comes back as dtifit's, one whose header records fsl too, as
    `iqt upsample` writes it (it came back 5D: a researcher's audit); a DWI fitted here, a NRRD or a 5D file: "nifti";
    "mrtrix" for .mif outputs."""
    if s.output_format != "nifti":  # an MRtrix image holds dwi2tensor's order only (fileio.save_tensor)
        return "mrtrix"
    if s.output_order != "input":
        return s.output_order
    return "nifti" if item.kind == "dwi" else read_order(item, s)


def identity(item: Item, s: Settings, hashes: dict) -> dict:
    """The sidecar fields that must match for a subject to be skipped (OutputOrder only where it is not this tool's 5D,
    as earlier versions wrote it, so that their outputs are still skipped). SoftwareVersion and SoftwareBuild too:
    outputs another version wrote (a worker of another version's, say) are redone, and so are those of another build of
    this version (other code or shipped models: a cohort resumed after an upgrade would otherwise mix the two builds'
    results without a word) or of one from before the build was recorded (which build made them is unknown)."""
    order, written = (read_order(item, s) if item.kind == "dti" else "nifti"), output_order(item, s)
    return {**hashes, "SoftwareVersion": __version__, "SoftwareBuild": build(), "Method": s.method, "ModelSHA256": s.model_sha256, "Factor": _factor(s), "MCSamples": mc_samples(s),
            **_tta_record(s), **({"TensorOrder": order} if order != "nifti" and item.kind == "dti" else {}),
            **({"OutputOrder": written} if written != "nifti" else {}),
            **({"BMax": s.bmax} if s.bmax is not None and item.kind == "dwi" else {}),
            **({"ExcludeOutliers": True} if s.exclude_outliers and item.kind == "dwi" else {}),
            **({"CommandHistory": False} if not s.record and s.output_format != "nifti" else {})}


def mc_samples(s: Settings) -> int | None:
    """The Monte Carlo samples a variational method draws with these settings (--mc-samples, else the default that
    runs: 10, not null), None for a method that draws none."""
    from ... import methods

    if s.mc_samples is not None or not methods.method_class(s.method).takes_samples:
        return s.mc_samples
    from ...methods.cnn.inference import DEFAULT_SAMPLES

    return DEFAULT_SAMPLES


def res_label(s: Settings) -> str:
    """The res- entity's label: 2x, or 1x1x3x for per-axis factors."""
    from ...core.grid import text

    return text(s.factor).replace(",", "x") + "x"


def method_label(s: Settings) -> str:
    return s.method + ("+tta" if _tta_record(s) else "")


def _tta_record(s: Settings) -> dict:
    """{"TTA": true} for a method averaged over flips; {} otherwise, so that sidecars written before the setting
    existed still match a plain run."""
    return {"TTA": True} if s.tta else {}


def _factor(s: Settings):
    """The factor as the sidecars record it: an integer when isotropic, else [fx, fy, fz]."""
    from ...core.grid import record

    return record(s.factor)


# identity fields written only where a setting is not its default: one in a sidecar but not asked for is a mismatch
OPTIONAL_IDENTITY = ("TensorOrder", "OutputOrder", "BMax", "MaskSHA256", "TTA", "ExcludeOutliers", "SidecarSHA256",
                     "CommandHistory")


def finished(folder: Path, names: dict, ident: dict) -> dict | None:
    """The tensor sidecar when every output and its sidecar exist, match `ident` and the files are as written
    (`intact`), else None. The sidecars are compared first, so that a changed request reads no output file."""
    metas = {}
    for key, name in names.items():
        path = folder / name
        try:
            meta = json.loads(sidecar(path).read_bytes())
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(meta, dict) or not path.is_file() or any(meta.get(k) != v for k, v in ident.items()) or any(
                k in meta and k not in ident for k in OPTIONAL_IDENTITY):
            return None
        metas[key] = meta
    if not all(intact(folder / name, metas[key]) for key, name in names.items()):
        return None
    return metas.get("tensor")


def check_same_input(folder: Path, names: dict, item, ident: dict) -> None:
    """An IQTError where the subject's folder holds outputs made from another input file with other contents: two
    lists of one folder naming different scans by one label (siteA/P01, siteB/P01) had replaced each other's outputs
    in turn, each run saying 'done' (a cohort audit). The same file changed, or the same contents moved, is redone."""
    try:
        meta = json.loads(sidecar(folder / names["tensor"]).read_bytes())
    except (OSError, ValueError, KeyError, RecursionError):
        return
    if not isinstance(meta, dict) or not isinstance(meta.get("InputFile"), str):
        return
    mine = str(Path(item.path).absolute())
    if (meta["InputFile"] != mine and meta.get("InputSHA256") != ident.get("InputSHA256")
            and not _moved_header_only(meta, item.path)):
        raise IQTError(f"{folder} holds this subject label's outputs made from another input, {meta['InputFile']}, "
                       f"not {mine}: two subjects share the label; give them distinct folder names (or list lines) or "
                       "another -o, or remove that folder to redo it from this input")


def _moved_header_only(meta: dict, path) -> bool:
    """Whether the record's InputSHA256 is `path`'s header-only hash (a .nhdr record before 0.21.0) and its InputFile is
    gone (the input really moved): a recorded input still there may be another scan behind a byte-identical header,
    whose outputs had been replaced. A record without a hash, or an input that is no .nhdr, matches nothing."""
    if os.path.exists(meta["InputFile"]):
        return False
    header = _header_only(path)
    return header is not None and meta.get("InputSHA256") == header


def _header_only(path) -> str | None:
    """A .nhdr input's SHA256 as outputs before 0.21.0 recorded it, of the header alone (its data file's is hashed too
    now: fileio/checksums.py image_files), so that the same input moved is redone, not taken for another; None else."""
    from ...fileio.checksums import sha256
    from ...fileio.paths import nrrd_data_file

    if nrrd_data_file(path) is None:
        return None
    try:
        return sha256(path)
    except OSError:
        return None


def other_build(folder: Path, names: dict, ident: dict) -> str | None:
    """Where the subject's tensor sidecar records another version or build than this run's (or none, from before the
    build was recorded) while asking for the same outputs: that version and build ("version 0.1.0 build 0008cb8bf136"),
    for the line that says why it is redone, not skipped (a cohort resumed after an upgrade recomputes every subject:
    without a word it looked like a resume that failed to resume); None otherwise."""
    try:
        meta = json.loads(sidecar(folder / names["tensor"]).read_bytes())
    except (OSError, ValueError, KeyError, RecursionError):
        return None
    if not isinstance(meta, dict):
        return None
    mine = ("SoftwareVersion", "SoftwareBuild")
    # MCSamples null, as written for the default samples before commit 3609c72: the same request
    if any(meta.get(k) != v for k, v in ident.items() if k not in mine and not (k == "MCSamples" and meta.get(k) is None)):
        return None  # another request: redone for that, as always
    was = (meta.get("SoftwareVersion"), meta.get("SoftwareBuild"))
    if was == (ident.get("SoftwareVersion"), ident.get("SoftwareBuild")):
        return None
    return f"version {was[0]} build {was[1]}" if was[1] else f"version {was[0]} (before builds were recorded)"


def file_record(path) -> dict:
    """The size and SHA256 of an output as written, kept in its sidecar: a resumed run redoes a subject whose file
    differs (else a truncated map or a flipped byte would be skipped as already done)."""
    return {"FileSizeBytes": Path(path).stat().st_size, "FileSHA256": _sha256(path)}


def intact(path: Path, meta: dict) -> bool:
    """Whether `path` is the file its sidecar describes: its size, then its SHA256 (about 20 ms for a dev subject's
    outputs); a sidecar written before the hashes were kept (no FileSHA256) is trusted when the file reads fully."""
    if "FileSHA256" not in meta:
        from ...fileio import reads_fully

        return reads_fully(path)
    try:
        return path.stat().st_size == meta.get("FileSizeBytes") and _sha256(path) == meta["FileSHA256"]
    except (OSError, IQTError):
        return False


def add_file_records(folder: Path, names: dict) -> None:
    """Give a skipped subject's sidecars written before the hashes were kept their files' size and SHA256 (the files
    have just read fully), so that later resumes compare hashes (about 20 ms a dev subject) instead of decompressing
    every file again (0.3-0.5 s); a folder that cannot be written keeps the slower check."""
    for name in names.values():
        side = sidecar(folder / name)
        try:
            meta = json.loads(side.read_bytes())
            if "FileSHA256" not in meta:
                write_json(side, {**meta, **file_record(folder / name)})
        except (OSError, ValueError, IQTError, RecursionError):
            return


ROOT_FILES = ("dataset_description.json", "qc.tsv", "qc.html")  # what a run writes in the derivatives folder itself


def input_files(item: Item) -> list[tuple[str, str]]:
    """(path, what it is) of every file a subject's run reads: its image, a DWI's b-values, b-vectors and JSON sidecar,
    a line's mask, and a NRRD or .mih header's detached data file."""
    from ...fileio.checksums import detached_data

    files = [(item.path, "input")]
    if item.kind == "dwi":
        from ...fileio.gradients import _stem

        files += [(str(g), what) for g, what in zip(item.gradients(), ("b-values", "b-vectors"))]
        files.append((_stem(item.path) + ".json", "sidecar"))
    if item.mask:
        files.append((item.mask, "mask"))
    images = [(item.path, "input")] + ([(item.mask, "mask")] if item.mask else [])
    return files + [(str(data), f"{what}'s data file") for path, what in images
                    if (data := detached_data(path)) is not None]


def check_apart_from_inputs(out_root, items) -> None:
    """An IQTError, before any work, where the derivatives folder is an input's own folder or holds one: the run would
    write its QC table, dataset description and subject folders among the raw data (`-o` naming a list subject's
    folder wrote them beside its dwi.nii.gz). A folder of their own inside an input's folder, or a BIDS dataset's
    derivatives/, holds none."""
    out = Path(out_root).resolve()
    for it in items:
        folder = Path(it.path).resolve().parent
        where = "is" if out == folder else "holds" if out in folder.parents else None
        if where:
            root = Path(it.root) if it.root else folder.parent
            while root.name.startswith(("sub-", "ses-")) or root.name in BIDS_DATATYPES:  # not into a subject's folder
                root = root.parent
            suggest = root / "derivatives" / "iqt" if root.is_dir() else Path("derivatives") / "iqt"
            raise IQTError(f"{out_root}: {where} the folder of an input ({it.line or it.as_typed(it.path)}), so the "
                           f"derivatives would lie among the raw data; write them into a folder of their own, e.g. {suggest}")


def check_inputs_kept(out_root, items, s: Settings) -> None:
    """An IQTError, before any work, where a file this run writes or removes is a file of the cohort's inputs, by real
    path (symlinks, `..`) or, for a file already there, by inode (a hard link), as fileio.paths.Outputs checks a single
    command's: every subject's outputs and their sidecars, the earlier maps of its own that it removes (`stale_maps`)
    and the QC table and dataset description, against every subject's input, gradients, sidecar and mask (else a
    list line naming an earlier run's tensor output in -o would be replaced by its own upsampled tensor; a rerun
    naming an earlier brain mask as a line's --mask would replace that mask). Said for the first such file, naming its
    list line."""
    out_root = Path(out_root)
    by_path: dict[str, tuple] = {}
    by_inode: dict[tuple, tuple] = {}
    for it in items:
        for path, what in input_files(it):
            by_path.setdefault(os.path.realpath(path), (it, path, what))
            try:
                st = os.stat(path)
            except OSError:
                continue
            by_inode.setdefault((st.st_dev, st.st_ino), (it, path, what))

    def named(path: Path):
        found = by_path.get(os.path.realpath(path))
        if found is None:
            try:
                st = os.stat(path)
            except OSError:
                return None
            found = by_inode.get((st.st_dev, st.st_ino))
        return found

    planned = [(out_root / name, f"the run's {name}", "write") for name in ROOT_FILES]
    maps = expected_maps(s)
    for it in items:
        folder = out_root / it.subdir
        names = output_names(it, s, maps)
        for key, name in names.items():
            planned += [(folder / name, f"{it.prefix}'s {key} output", "write"),
                        (sidecar(folder / name), f"{it.prefix}'s {key} sidecar", "write")]
        if folder.is_dir():
            planned += [(p, stale_role(p, names, it.prefix), "remove") for p in stale_maps(folder, names)]
    for path, role, how in planned:
        found = named(path)
        if found is None:
            continue
        it, src, what = found
        shown = it.as_typed(str(src))
        where = it.line or shown
        at = "" if os.path.normpath(shown) == os.path.normpath(str(path)) else f" ({path})"
        raise IQTError(f"{where}: its {what} {shown} is {role}{at}, which this run would {how}; inputs are never "
                       f"overwritten: move it out of {out_root} or write the outputs to another folder")


def remove_temporaries(folder: Path) -> int:
    """Delete the temporaries a killed writer of this batch left in the subject folder `folder` (atomic writes rename
    them into place when they finish): only there, not in its subfolders, and only the names fileio.atomic_write gives
    an output or sidecar (`TEMPORARY`): removing every `.iqt-*` anywhere under -o would take the `.iqt-earlier-*` copy
    a SIGKILLed `iqt upsample` left (maybe the only copy of its earlier output) and the held outputs of an
    `iqt upsample` writing into -o/manual/ at that moment (which would then fail). A subject folder is this
    batch's (out/sub-X[/ses-Y]/dwi), written by one run at a time (batch/lock.py), so a temporary there is stale."""
    n = 0
    found = []
    for where in (Path(folder), Path(folder).parent / "figures"):  # and its QC figure's folder (figure_path)
        try:
            found += [p for p in where.iterdir() if TEMPORARY.match(p.name)]
        except OSError:  # no folder yet (or one that cannot be listed: its writes then fail on their own)
            continue
    for p in found:
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            n += 1
    return n


def remove_earlier_copies(folder: Path, names: dict) -> int:
    """Delete, once a subject's new outputs are in place, the `.iqt-earlier-<name>.<random>.tmp` copies of its own
    outputs (`names`, with their sidecars) that a run killed while putting them in place left in its folder: the subject
    is redone, so they are superseded, and otherwise each later run warns of them for ever. Others' stay."""
    import os

    from ...fileio.staging import ASIDE_NAME_BYTES

    own = {os.fsdecode(os.fsencode(n)[:ASIDE_NAME_BYTES])  # as the copy's name holds it (a long one cut)
           for name in names.values() for n in (name, sidecar(Path(name)).name)}
    n = 0
    try:
        found = list(Path(folder).glob(EARLIER_PREFIX + "*.tmp"))
    except OSError:
        return 0
    for p in found:
        name = p.name[len(EARLIER_PREFIX):].rsplit(".", 2)[0]  # .iqt-earlier-<name>.<random>.tmp
        if name in own and p.is_file() and not p.is_symlink():
            try:
                p.unlink(missing_ok=True)
            except OSError:  # a folder that cannot be written (a finished subject skipped there): left, said each run
                continue
            n += 1
    return n


def subject_folders(out_root: Path, items) -> list[Path]:
    """The folders this cohort's subjects are written to, once each."""
    return list(dict.fromkeys(Path(out_root) / it.subdir for it in items))


def earlier_copies_line(out_root: Path) -> str:
    """One line for the `.iqt-earlier-<name>.<random>.tmp` files under `out_root` (what a run of another command killed
    with SIGKILL left while putting its outputs in place: an output's earlier file, the only copy of it where the output
    is missing), as the README's advice after SIGKILL says: never removed here; "" where there is none."""
    try:
        found = sorted(p for p in Path(out_root).rglob(EARLIER_PREFIX + "*") if p.is_file())
    except OSError:
        return ""
    if not found:
        return ""
    shown = ", ".join(str(p) for p in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return (f"{len(found)} earlier output{'s' if len(found) > 1 else ''} set aside by a killed iqt run lie{'' if len(found) > 1 else 's'} "
            f"in {out_root} ({shown}): where the output named after '{EARLIER_PREFIX}' is missing, rename the file back to "
            "that name, else delete it; this run leaves them alone")


def noisy_model_record(method, factor) -> tuple[str | None, str | None]:
    """(model file, weights SHA256) of the model `method` runs on noisy inputs at `factor`, or (None, None)."""
    from ...core import grid

    twin = method.for_noisy_inputs(grid.factors(factor)) if method.learned else None
    return twin.model_record(factor) if twin is not None else (None, None)


def model_record(method, factor) -> tuple[str | None, str | None]:
    """(model file, SHA256 of its weights) of a learned method (the shipped one unless --model), (None, None) else."""
    return method.model_record(factor) if method.learned else (None, None)


DESCRIPTIONS = {
    "tensor": "high-resolution diffusion tensor",  # and its layout (fileio.layout_words)
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


def sources(item: Item) -> list[str]:
    """The sidecars' Sources: BIDS URIs into the input dataset linked as "raw" (file URIs for files outside it) of the
    input file and, for a DWI, its b-values and b-vectors."""
    files = [Path(item.path)] + (list(item.gradients()) if item.kind == "dwi" else []) + \
        ([Path(item.mask)] if item.mask else [])
    files = [Path(os.path.normpath(f.absolute())) for f in files]
    root = Path(item.root) if item.root else None
    # percent-encoded, as a file URI is: a space had stayed bare ("bids:raw:P 03/dwi.nii.gz", a cohort audit)
    return [f"bids:raw:{quote(f.relative_to(root).as_posix())}" if root is not None and root in f.parents else f.as_uri()
            for f in files]


def check_source(out_root: Path, items) -> None:
    """An IQTError, before any work, where `out_root` already holds derivatives of another input dataset or list (its
    DatasetLinks' "raw"): this run's sidecars and the earlier ones would resolve their bids:raw: Sources against
    different folders, and one link cannot serve both."""
    roots = {Path(it.root).as_uri() for it in items if it.root}
    path = Path(out_root) / "dataset_description.json"
    if not path.is_file():
        return
    here = Path(os.path.abspath(out_root))
    elsewhere = here.parent / ("iqt" if here.name != "iqt" else "iqt-dti")
    try:
        desc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        raise IQTError(f"{path}: cannot be read as JSON, so this folder cannot be told to be this tool's derivatives; "
                       f"write the outputs into a folder of their own, e.g. {elsewhere}") from None
    runs = desc.get("GeneratedBy") if isinstance(desc, dict) else None
    if not (isinstance(runs, list) and any(isinstance(r, dict) and r.get("Name") == PIPELINE for r in runs)):
        # another dataset's or pipeline's folder: its description would be replaced and our outputs mixed into it
        name = desc.get("Name") if isinstance(desc, dict) else None
        raise IQTError(f"{out_root}: its dataset_description.json" + (f" ({name!r})" if name else "") + " names no "
                       f"{PIPELINE} run, so it holds another dataset, not this tool's derivatives; write the outputs into "
                       f"a folder of their own, e.g. {elsewhere}")
    old = desc.get("DatasetLinks", {}).get("raw") if isinstance(desc.get("DatasetLinks"), dict) else None
    if old and len(roots) == 1 and old not in roots and not _same_dataset(old, next(it.root for it in items if it.root),
                                                                          out_root):
        raise IQTError(f"{out_root}: holds the derivatives of another input ({old}); write this run into another folder, "
                       "or run every subject from one list (a list line may end in its own --tensor-order ORDER and "
                       "--mask MASK)")


def _same_dataset(old_uri: str, root: str, out_root) -> bool:
    """Whether the dataset an output folder's "raw" link names (`old_uri`) is this run's (`root`) by another path: the
    same folder through a symbolic link (a cluster's login and compute nodes reach scratch so), or a dataset moved or
    copied with its derivatives inside it (BIDS's derivatives/ belongs to the dataset it sits in). A resume had been
    refused as 'another input' (a cohort audit); the link is then set to this run's path."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(old_uri)
    if parsed.scheme != "file":
        return False
    here, mine, old = os.path.realpath(out_root), os.path.realpath(root), unquote(parsed.path)
    if os.path.realpath(old) == mine:
        return True
    if Path(mine, "derivatives") not in Path(here).parents:
        return False
    # moved (the old folder gone) or copied (the old dataset holds its own copy of this folder); not another input's
    # outputs written under this dataset's derivatives/ (a review: those had been taken, their link repointed)
    return not Path(old).exists() or (Path(old) / Path(here).relative_to(mine) / "dataset_description.json").is_file()


def dataset_description(out_root: Path, s: Settings, items=()) -> None:
    """Write (or extend) the derivatives' dataset_description.json with this pipeline's GeneratedBy entry and the
    input dataset as its source ("raw" in DatasetLinks, the name the sidecars' BIDS URIs use)."""
    from ...core.noise_level import NOISY_MODEL

    from ...fileio.records import run_command

    path = out_root / "dataset_description.json"
    command = run_command()  # the sidecars are written by the workers, outside the command's record: said here
    entry = {"Name": PIPELINE, "Version": __version__, "Build": build(), "Method": s.method, "Factor": _factor(s),
             "Model": s.model_file, "ModelSHA256": s.model_sha256, **_tta_record(s),
             **({"MCSamples": mc_samples(s)} if mc_samples(s) is not None else {}),
             **({"BMax": s.bmax} if s.bmax is not None else {}),
             **({"ExcludeOutliers": True} if s.exclude_outliers else {}), **({"Command": command} if command else {})}
    if s.noisy_model_file:
        entry.update(NoisyInputModel=s.noisy_model_file, NoisyInputModelSHA256=s.noisy_model_sha256,
                     NoisyInputAboveNoiseIndex=NOISY_MODEL)
    desc = {"Name": "ImageQualityTransfer super-resolved DTI", "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
            "GeneratedBy": []}
    try:
        old = json.loads(path.read_bytes())
        if isinstance(old, dict) and isinstance(old.get("GeneratedBy"), list):
            desc = {**desc, **old}
    except (OSError, ValueError, RecursionError):
        pass
    changed = not path.exists()
    roots = {Path(it.root).as_uri() for it in items if it.root}
    uri = next(iter(roots)) if len(roots) == 1 else None
    if uri is not None and desc.get("DatasetLinks", {}).get("raw") != uri:
        before = desc.get("DatasetLinks", {}).get("raw")  # the same dataset by another path (_same_dataset): replaced
        desc["DatasetLinks"] = {**desc.get("DatasetLinks", {}), "raw": uri}
        gone = (uri,) + ((before,) if before else ())  # an entry without a URL (a DOI) stays
        desc["SourceDatasets"] = [d for d in desc.get("SourceDatasets", []) if d.get("URL") not in gone] + [{"URL": uri}]
        changed = True
    # one entry per run setting and build: the same model named by another path (relative, as earlier versions wrote it)
    # is that entry, and so is one of the same settings written before the build was recorded (no "Build"), which this
    # run's entry replaces; a run of another build adds its own. The latest command that ran those settings is kept.
    paths = ("Model", "NoisyInputModel", "Command")

    def same_run(e: dict) -> bool:
        skip = paths + (("Build",) if "Build" not in e else ())
        return {k: v for k, v in e.items() if k not in skip} == {k: v for k, v in entry.items() if k not in skip}

    same = [i for i, e in enumerate(desc["GeneratedBy"]) if isinstance(e, dict) and same_run(e)]
    if not same:
        desc["GeneratedBy"] = desc["GeneratedBy"] + [entry]
        changed = True
    elif desc["GeneratedBy"][same[0]] != entry:
        desc["GeneratedBy"] = [entry if i == same[0] else e for i, e in enumerate(desc["GeneratedBy"])]
        changed = True
    if changed:
        write_json(path, desc)


def _made_by(record: dict, build_key: str, dwi: bool = True) -> tuple:
    """What tells a GeneratedBy entry's outputs apart in their sidecars: the build, method, factor, model weights,
    averaging over flips, Monte Carlo samples, --bmax and --exclude-outliers (a run with any of them its own has an
    entry of its own; the last three had been left out, so a folder redone with --exclude-outliers kept naming the run
    without it, and one run's --mc-samples command stood for outputs of another: a cohort audit). `dwi` False: as a
    tensor file's outputs show it, without the two settings that act on DWIs alone (a review: else a run's entry was
    dropped where its outputs were tensor files')."""
    return (record.get(build_key), record.get("Method"), json.dumps(record.get("Factor")), record.get("ModelSHA256"),
            bool(record.get("TTA")), record.get("MCSamples"), record.get("BMax") if dwi else None,
            bool(record.get("ExcludeOutliers")) and dwi)


def generated_by_in_use(out_root: Path) -> None:
    """Drop from dataset_description.json's GeneratedBy the entries (`_made_by`) that made none of the
    outputs now in `out_root` (no subject's tensor sidecar names them): a cohort redone by a later build kept listing the
    earlier one, so GeneratedBy could not tell which build made the data. An entry from before builds were recorded
    (no "Build") stays while a sidecar without SoftwareBuild is there. Left as it is where it cannot be read or written
    (a full disk: the run's summary matters more)."""
    path = Path(out_root) / "dataset_description.json"
    try:
        desc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return
    if not isinstance(desc, dict) or not isinstance(desc.get("GeneratedBy"), list):
        return
    made, made_tensor = set(), set()  # by DWI subjects' sidecars; by tensor files' (which record no DWI-only setting)
    for side in Path(out_root).rglob("*_param-tensor_dwimap.json"):
        try:
            meta = json.loads(side.read_bytes())
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(meta, dict):  # a tensor file's sidecar records no --bmax or --exclude-outliers: they act on DWIs
            dwi = "GradientSHA256" in meta
            (made if dwi else made_tensor).add(_made_by(meta, "SoftwareBuild", dwi=dwi))
    if not made and not made_tensor:  # no subject's outputs at all (every one failed): the run that wrote the folder stays named
        return
    kept = [e for e in desc["GeneratedBy"] if not isinstance(e, dict) or e.get("Name") != PIPELINE
            or _made_by(e, "Build") in made or _made_by(e, "Build", dwi=False) in made_tensor]
    if kept != desc["GeneratedBy"]:
        try:
            write_json(path, {**desc, "GeneratedBy": kept})
        except (IQTError, OSError):
            pass
