"""`iqt upsample`: high-resolution tensors (and uncertainty maps, and optionally propagated samples) from a
low-resolution DTI volume."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ...core.errors import IQTError
from ...fileio.paths import MAP_SUFFIXES, TENSOR_SUFFIXES, with_data_file
from ...fileio.staging import say  # say: 'wrote' lines, printed once the outputs are in place
from . import options

# where an input is at a map's name made from the output's (--maps, --propagate): not the user's to change alone
# the 'wrote' line's words for the model that ran, as the noise line says them (it had said "its model for noisy inputs")
_MODEL_FOR = {"noisy": "its noise-trained model"}  # methods/base.py _USES
BESIDE = "give the output another name (-o; its maps are named after it), or a copy of that input from another folder"


def add_parsers(sub) -> None:
    sp = sub.add_parser("upsample", help="high-resolution tensors from a low-resolution DTI volume")
    sp.add_argument("input", help="low-res tensor volume (NIfTI SYMMATRIX, 4D with --tensor-order, Slicer .nrrd, "
                                  "or MRtrix .mif/.mif.gz/.mih)")
    sp.add_argument("-o", "--output", required=True, help="high-res tensor output (.nii.gz, .nrrd for Slicer, or "
                                                          ".mif/.mif.gz for MRtrix in dwi2tensor's order)")
    sp.add_argument("--method", help="method name (see 'iqt methods'; default: with --model, the model's own method, else the best "
                         "shipped one for the factors, with --uncertainty or --propagate the best with an uncertainty map)")
    options.add_factor(sp, voxel_size=True, model=True)
    sp.add_argument("--mask", help="brain mask on the input grid (or on the high-res grid): NIfTI, MRtrix .mif, or a label "
                                   "map Slicer saved (.nrrd, .nhdr)")
    sp.add_argument("--uncertainty", help="write the per-voxel standard deviation map here (methods with uncertainty; "
                    ".nii.gz, .nrrd for Slicer, or .mif) and NAME_direction beside it (the principal direction's "
                    "uncertainty, degrees); the Monte Carlo methods also write NAME_std_intrinsic, NAME_std_parameter, "
                    "NAME_md_std and NAME_fa_std")
    options.add_method_settings(sp)
    sp.add_argument("--samples", type=int,
                    help="with --propagate: number of samples drawn from the predictive distribution (default 100); "
                         "without: Monte Carlo samples of the variational CNNs (espcn-hetero-var1/-var2, deep-hetero-var1; as --mc-samples)")
    sp.add_argument("--propagate", action="store_true",
                    help="uncertainty propagation (methods with uncertainty): draw --samples high-res DTI samples and "
                         "write FA/MD mean/std and tract visitation maps beside the output (<name>_fa_mean.nii.gz, ..., "
                         "<name>_propagation.json; .nrrd or .nhdr maps beside a NRRD output)")
    options.add_propagation(sp)
    options.add_tensor_order(sp)
    sp.add_argument("--no-frame-check", action="store_true",
                    help="skip the frame check of a --tensor-order fsl, mrtrix or dipy input, or of a 5D NIfTI iqt did "
                         "not upsample (a warning where its directions look mirrored)")
    options.add_output_order(sp)
    sp.add_argument("--maps", action="store_true",
                    help="also write dtifit's maps of the output beside it: NAME_FA, NAME_MD, NAME_L1, NAME_L2, NAME_L3 "
                         "(mm^2/s) and NAME_V1 (the principal eigenvector, 3 volumes, in the frame its viewer reads: "
                         "FSL's image frame, as dtifit writes V1 and FSLeyes and dipy read it (the voxel axes, x negated "
                         "on a grid whose affine has a positive determinant), for every output but an MRtrix-order one, "
                         "whose V1 is in scanner (RAS) coordinates as MRtrix reads vectors; 0 where L1 = L2), zero "
                         "outside the brain; an output X_tensor.nii.gz gives X_FA.nii.gz ..., as dtifit names them; beside a .nrrd or "
                         ".nhdr output, NRRD maps, V1 a spatial vector volume as Slicer saves one (RAS in Slicer)")
    sp.set_defaults(func=run)


def stem(path: Path) -> str:
    """The file name without its tensor/NIfTI suffix."""
    name = path.name
    for suf in sorted(TENSOR_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def map_suffix(out: Path) -> str:
    """The suffix of the maps written beside the output `out`: its own (.nii, .nii.gz, or .nrrd/.nhdr, which Slicer
    loads on the tensor NRRD's grid: fileio/nrrd.py save_scalar_nrrd)."""
    return out.name[len(stem(out)):]


def maps_paths(out: Path, suffix: str | None = None) -> dict[str, Path]:
    """Where `--maps` writes: NAME_FA.nii.gz ... beside the output NAME.nii.gz, in its suffix (`map_suffix`; `suffix`:
    another); an output named as dtifit names its tensor, X_tensor, gives X_FA ... as dtifit does."""
    from ...core.tensors import DTIFIT_MAPS

    s = stem(out)
    suffix = map_suffix(out) if suffix is None else suffix
    base = s[: -len("_tensor")] if s.endswith("_tensor") and len(s) > len("_tensor") else s
    return {key: out.with_name(f"{base}_{key}{suffix}") for key in DTIFIT_MAPS}


def retire_stale_maps(plan, out: Path, args) -> list[Path]:
    """The maps that an earlier run wrote for this very output and this run does not write (`--propagate`'s set,
    `--maps`' set): they would pass for this output's (the earlier run's fa_mean ... after a run without --propagate).
    Only maps whose run record names this output (X.nii.gz's X_FA.nii.gz beside X.nrrd, and another tool's X_FA, which
    has no record, stay), in any map suffix (an earlier version wrote X.nrrd's maps as X_FA.nii.gz ...), checked again
    when the outputs are put in place (fileio.paths.Outputs.retire, which leaves this run's outputs); a propagation
    summary goes with its maps. Kept if the run fails."""
    from ...analysis import propagation

    def ours(p: Path) -> bool:
        return _same_file(_recorded_output(p), out)

    stale = []
    for suffix in dict.fromkeys((map_suffix(out), *MAP_SUFFIXES)):
        prop = propagation.output_paths(out.parent, stem(out) + "_", suffix)
        maps = [p for key, p in prop.items() if key != "json" and _is_file(p) and ours(p) and plan.retire(p, ours)]
        stale += maps + _data_files(plan, maps, ours)
        if maps and prop["json"].is_file() and prop["json"] not in stale:  # its maps were this output's: so was it
            first = maps[0]
            if plan.retire(prop["json"], lambda _p: ours(first)):
                stale.append(prop["json"])
        maps = [p for p in maps_paths(out, suffix).values() if _is_file(p) and ours(p) and plan.retire(p, ours)]
        stale += maps + _data_files(plan, maps, ours)
    return list(dict.fromkeys(stale))  # one file under two suffixes where names ignore case


def _data_files(plan, maps, ours) -> list[Path]:
    """The data files of the detached NRRD headers among `maps` (retired with them), as `fileio.nrrd` writes them
    beside a header (paths.nhdr_data_files); a header that names another file leaves it."""
    from ...fileio.paths import nhdr_data_files, nrrd_data_file

    out = []
    for p in maps:
        data = nrrd_data_file(p) if p.name.lower().endswith(".nhdr") else None
        if data is not None and data in nhdr_data_files(p) and plan.retire(data, lambda _d, p=p: ours(p)):
            out.append(data)
    return out


def _is_file(p: Path) -> bool:
    """A file is there; False for a name the system cannot hold (longer than a file name may be: no map of an earlier
    run can have it)."""
    try:
        return p.is_file()
    except OSError:
        return False


def _refuse_foreign(paths, option: str, free: str = "a name whose maps are free") -> None:
    """Refuses (one line, before any work) to replace a file at a map's path that iqt did not write: dtifit's dti_FA
    ... beside -o dti.nii.gz had been replaced without a word (a bad-input audit)."""
    foreign = [p for p in paths if _is_file(p) and not _made_by_iqt(p)]
    if foreign:
        raise IQTError(f"{foreign[0]}: already there and not written by iqt (another tool's map, e.g. dtifit's), which "
                       f"{option} would replace; give -o {free} (or move that file)")


def refuse_foreign_summary(path: Path, option: str, free: str = "a name whose maps are free") -> None:
    """Refuses (one line, before any work) to replace a file at the propagation summary's path that is not one iqt
    wrote (analysis.propagation.is_summary; an empty file holds nothing to lose): a user's own X_propagation.json had
    been written over, where the maps beside it are checked (`_refuse_foreign`)."""
    from ...analysis.propagation import is_summary

    if _holds_data(path) and not is_summary(path):
        raise IQTError(f"{path}: already there and not a propagation summary written by iqt, which {option} would "
                       f"replace; give -o {free} (or move that file)")


def _holds_data(path: Path) -> bool:
    """Whether a file at `path` holds anything to lose (not an empty one; one that cannot be looked at is left to the
    write's own checks)."""
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def _made_by_iqt(path: Path) -> bool:
    """Whether a NIfTI or NRRD at `path` is this tool's: a run record, or a header description iqt wrote ("iqt cubic
    FA": maps written with --no-record, or before run records were kept, have only that)."""
    if _recorded_output(path) is not None:
        return True
    try:
        from ...fileio.nifti import is_nrrd

        if is_nrrd(path):
            import nrrd

            from ...fileio.nrrd import MADE_BY_KEY

            return str(nrrd.read_header(str(path)).get(MADE_BY_KEY, "")).startswith("iqt ")
        import nibabel as nib

        descrip = bytes(nib.load(path).header["descrip"]).split(b"\0")[0].decode("latin-1")
    except Exception:  # noqa: BLE001 - a file nibabel cannot read is not one of ours
        return False
    return descrip.startswith("iqt ")


def _not_another_tools_file(path: Path, option: str) -> None:
    """Refuses to write `option`'s file over one that iqt did not write (`_made_by_iqt`; an empty file holds nothing to
    lose): -o dti_V1.nii.gz and --uncertainty dti_MD.nii.gz had replaced dtifit's maps without a word, where --maps
    refuses it (a tool-inputs audit); this tool's own outputs, as a rerun meets them, are written over."""
    if _holds_data(path) and not _made_by_iqt(path):
        raise IQTError(f"{path}: already there and not written by iqt (another tool's file, e.g. dtifit's), which "
                       f"{option} would replace; give {option} another name (or move or delete that file first)")


def _recorded_output(path: Path) -> str | None:
    """The real path of the output named in the run record of the map at `path`, or None where it has none (another
    tool's file, `--no-record`). The record keeps `-o` as typed, and a map lies beside its output: the output is the
    record's file name in the map's folder (taken from this run's folder, a relative `-o` of a run started elsewhere
    named another file, and its maps stayed beside the output that replaced it: a first-contact audit)."""
    try:
        from ...fileio.nifti import is_nrrd, run_record_of
        from ...fileio.records import RUN_KEY, read_run

        if is_nrrd(path):  # a NRRD map's record is its iqt_run field (fileio/nrrd.py _records)
            import nrrd

            record = read_run(nrrd.read_header(str(path)).get(RUN_KEY))
        else:
            record = run_record_of(path)
    except Exception:  # noqa: BLE001 - a file nibabel or pynrrd cannot read is not one of ours
        return None
    output = (record or {}).get("options", {}).get("output")
    return os.path.realpath(Path(path).parent / Path(output).name) if isinstance(output, str) and output else None


def _maps_of_another_output(paths, out: Path, replaced: str = "which this run would replace") -> None:
    """Refuses to write maps over those an earlier run wrote for another output that is still there: X.nrrd's maps
    share X_FA ... with X.nii.gz's, and `-o X.nrrd --maps` replaced X.nii.gz's without a word, leaving it beside
    another run's maps (a first-contact audit)."""
    for p in paths:
        owner = _recorded_output(p) if _is_file(p) else None
        if owner is not None and not _same_file(owner, out) and os.path.isfile(owner):
            data = " and its data file" if owner.lower().endswith(".nhdr") else ""
            raise IQTError(f"{p}: already there, a map of {Path(owner).name} beside it (another output of this name), "
                           f"{replaced}; give -o another name, or remove {Path(owner).name}{data} "
                           f"with its maps first")


def _same_file(owner: str | None, out: Path) -> bool:
    """Whether `owner` (a real path) is the output `out`: by path, or as one file under two names (a hard link, or
    names differing only in case on macOS's and Windows's disks)."""
    if owner is None:
        return False
    if owner == os.path.realpath(out):
        return True
    try:
        return os.path.exists(owner) and os.path.exists(out) and os.path.samefile(owner, out)
    except OSError:
        return False


def v1_frame(order: str, nrrd: bool = False) -> str:
    """The frame of `--maps`'s V1 beside an output written in `order`: that of the viewer of the output's tool (audit
    S: V1 in the voxel axes of this tool's 5D file on a positive-determinant grid showed mirrored in FSLeyes, a median
    44.6 degrees off): MRtrix's scanner (RAS) frame for an MRtrix-order output (MRtrix reads a vector image's
    components against the scanner axes, peaksconvert's "xyz"), FSL's image frame (dtifit's V1, dipy's evecs; the
    voxel axes, x negated where the affine's determinant is positive) for every other NIfTI output; beside a NRRD
    output (`nrrd`) V1 is a spatial vector NRRD as Slicer saves one, RAS components once read (fileio/nrrd.py
    save_scalar_nrrd), as MRtrix's frame."""
    return "mrtrix" if order == "mrtrix" or nrrd else "fsl"


def v1_frame_words(order: str, affine, short: bool = False, nrrd: bool = False) -> str:
    """V1's frame (v1_frame) in words: for the 'wrote' line, or `short` for its header's description."""
    import numpy as np

    if nrrd:
        return ("RAS frame, stored LPS as Slicer's spatial vectors" if short else
                "RAS coordinates in Slicer (a spatial vector volume, stored as Slicer saves one: LPS components)")
    if v1_frame(order) == "mrtrix":
        return "scanner RAS frame (MRtrix's)" if short else "scanner (RAS) coordinates, as MRtrix reads vectors"
    flipped = np.linalg.det(np.asarray(affine, float)[:3, :3]) > 0
    if short:
        return "FSL frame (dtifit's" + (", voxel x negated)" if flipped else ", voxel axes)")
    return ("FSL's image frame as dtifit writes V1 and FSLeyes reads it: the voxel axes with x negated, this grid's "
            "affine having a positive determinant" if flipped else
            "FSL's image frame as dtifit writes V1 and FSLeyes reads it: here the voxel axes")


def file_maps(tensor, order: str, nrrd: bool = False) -> dict:
    """dtifit's maps of the tensors written in `order` (`nrrd`: beside a NRRD output): V1 in the frame of that output's
    viewer (v1_frame)."""
    from ...core import tensors
    from ...core.volume import Volume
    from ...fileio.volumes import in_file_frame

    data = in_file_frame(tensor.data, v1_frame(order, nrrd), tensor.affine)  # eigenvalues (FA, MD, L1-L3) do not depend on it
    return {key: Volume(values, tensor.affine) for key, values in tensors.dtifit_maps(data).items()}


def input_shape3(path) -> tuple[int, int, int] | None:
    """The input's grid from its header alone (NIfTI: nibabel reads the data lazily; NRRD: its space axes), for the
    memory check before any work; None where the header does not say (the full read then says why)."""
    try:
        from ...fileio.nifti import is_nrrd
        from ...fileio.paths import not_a_file

        if not_a_file(path) is not None:  # a FIFO would be waited on: the full read refuses it
            return None
        if is_nrrd(path):
            import nrrd

            header = nrrd.read_header(str(path))
            kinds = header.get("kinds") or []
            sizes = [int(n) for n, k in zip(header["sizes"], kinds) if k in ("domain", "space")]
            return tuple(sizes) if len(sizes) == 3 else None
        from ...fileio.nifti import open_nifti

        shape = open_nifti(path).shape
        return tuple(int(n) for n in shape[:3]) if len(shape) >= 4 else None
    except Exception:  # noqa: BLE001 - any unreadable header: left to load_tensor's messages
        return None


def input_voxel_size(path):
    """The input's voxel size (mm, per voxel axis) from its header alone, as `input_shape3` reads its grid; None where
    the header does not say."""
    try:
        import numpy as np

        from ...fileio.nifti import is_nrrd
        from ...fileio.paths import not_a_file

        if not_a_file(path) is not None:
            return None
        if is_nrrd(path):
            import nrrd

            header = nrrd.read_header(str(path))
            rows = [r for r in header.get("space directions", []) if r is not None and not isinstance(r, str)
                    and np.all(np.isfinite(np.asarray(r, float)))]
            return np.linalg.norm(np.asarray(rows, float), axis=1) if len(rows) == 3 else None
        from ...core.volume import voxel_sizes
        from ...fileio.nifti import open_nifti

        return voxel_sizes(open_nifti(path).affine)
    except Exception:  # noqa: BLE001 - any unreadable header: the full read says why
        return None


@contextmanager
def method_progress(method):
    """The callback that `Method.predict` calls with the fraction done, drawing a progress bar of the method's run on
    stderr, only on a terminal (core.progress), as train, benchmark and batch show theirs; None elsewhere. The bar
    starts at the first call (after the input's warnings) and is gone once the run ends."""
    import sys

    from ...core.progress import progress_bar

    if not sys.stderr.isatty():
        yield None
        return
    bars = []

    def progress(fraction):
        if not bars:
            bars.append(progress_bar(total=100, desc=method.label))
        done = int(round(100 * min(max(float(fraction), 0.0), 1.0)))
        if done > bars[0].n:
            bars[0].update(done - bars[0].n)

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


def _check_samples(args, cls) -> None:
    """`--samples` means propagation draws with --propagate and Monte Carlo passes without; the propagation
    options apply only with --propagate."""
    if args.propagate:
        args.samples = 100 if args.samples is None else args.samples
        options.settle_propagation(args)
        return
    given = [f"--{k.replace('_', '-')}" for k in options.PROPAGATION_ONLY if getattr(args, k) is not None]
    given += ["--no-tracts"] if args.no_tracts else []
    if given:
        one = len(given) == 1
        raise IQTError(f"{', '.join(given)}: {'applies' if one else 'apply'} only with --propagate; add --propagate "
                       f"(and a method with uncertainty) or drop {'it' if one else 'them'}")
    if args.samples is not None:
        if not cls.takes_samples:
            raise IQTError(f"method {cls.name!r} takes no Monte Carlo samples; drop --samples (it applies to "
                           f"{', '.join(cls.sampling())}), or add --propagate to draw samples of the output "
                           "from a method with uncertainty")
        if args.mc_samples is not None:
            raise IQTError("give the Monte Carlo samples once: --samples or --mc-samples (without --propagate they are the same)")
        args.mc_samples = args.samples


def run(args):
    import time

    from ... import fileio, methods
    from ...analysis import propagation
    from ...fileio.nifti import is_nrrd
    from ...core import grid
    from ...core.orientation import Reorientation, factor_axes
    from ...fileio.records import map_record
    from ...methods.factor_choice import choose, model_hint
    from ...methods.inputs import FRAME_NOISE, check_frame, frame_checked, warn_frame_noise, warn_if_upsampled

    t0 = time.perf_counter()
    f = options.factors(args)  # None with --voxel-size (or a --model alone): the input is read first
    lr = None
    if f is None:
        lr = fileio.load_tensor(args.input, args.tensor_order, getattr(args, "order_stated", None))
        f = options.factors(args, lr.voxel_size, lr.affine)
    name = options.method_name(args, f, uncertainty=bool(args.uncertainty or args.propagate),
                               voxel_size=None if lr is None or args.voxel_size is None else lr.voxel_size)
    _check_samples(args, methods.method_class(name))
    method = methods.get(name, **options.method_settings(args))
    if args.propagate:
        options.check_propagation(method, args, f, None if lr is None or args.voxel_size is None else lr.voxel_size)
    plan = fileio.Outputs(args.input, args.mask, args.seeds, *options.model_files(args.model))
    out = plan.add(args.output, TENSOR_SUFFIXES, "tensor output")
    unc_out, unc_paths = None, {}
    if args.uncertainty:
        if not method.gives_uncertainty:
            raise IQTError(f"method {method.name!r} gives no uncertainty; " + options.uncertainty_choices(
                f, None if lr is None or args.voxel_size is None else lr.voxel_size, drop="drop --uncertainty"))
        unc_out = Path(args.uncertainty)
        s = stem(unc_out)
        for key in method.map_names():  # the total std at the given path, the other maps beside it
            path = unc_out if key == "std" else unc_out.with_name(f"{s}_{key}{unc_out.name[len(s):]}")
            # NIfTI, or NRRD for Slicer on the tensor NRRD's grid lines (fileio/nrrd.py save_scalar_nrrd)
            unc_paths[key] = plan.add(path, MAP_SUFFIXES, what=f"{key} map")
    map_paths = {key: plan.add(path, MAP_SUFFIXES, what=f"{key} map", instead=BESIDE)
                 for key, path in maps_paths(out).items()} if args.maps else {}
    _refuse_foreign(map_paths.values(), "--maps")
    _not_another_tools_file(out, "-o")
    for path in unc_paths.values():
        _not_another_tools_file(path, "--uncertainty")
    _maps_of_another_output(map_paths.values(), out)
    options.check_output_order(args, out)
    if args.propagate:
        prop_paths = propagation.output_paths(out.parent, stem(out) + "_", map_suffix(out))
        if args.no_tracts:  # no visitation map: an earlier run's is retired (retire_stale_maps), another's stays
            del prop_paths["visitation"]
        for key, path in prop_paths.items():
            plan.add(path, fileio.JSON_SUFFIXES if key == "json" else MAP_SUFFIXES, f"propagation {key}",
                     instead=BESIDE)
        # a user's own X_fa_std.nhdr had been overwritten and X_visitation.nhdr deleted (a review of the NRRD maps)
        _refuse_foreign([p for key, p in prop_paths.items() if key != "json"], "--propagate")
        refuse_foreign_summary(prop_paths["json"], "--propagate")
        # X.nrrd's maps are X_fa_mean.nrrd, X.nii.gz's X_fa_mean.nii.gz, but both runs write X_propagation.json
        _maps_of_another_output([p for suffix in MAP_SUFFIXES for key, p in propagation.output_paths(
            out.parent, stem(out) + "_", suffix).items() if key != "json"], out,
            f"whose {prop_paths['json'].name} this run would replace")
    plan.check()
    stale = retire_stale_maps(plan, out, args)
    # the memory check before the input is read, torch imported or a model loaded (refused in 1-2 s, not 4-20 s):
    # the grid from the input's header; predict checks the same again (one function, Method.check_memory)
    shape3 = lr.shape3 if lr is not None else input_shape3(args.input)
    chose = lr is not None and args.voxel_size is not None  # read for --voxel-size, which chose the factors
    if lr is None and shape3 is None:
        # a header the early check cannot read (a missing, damaged or foreign file): read it now, so that its own
        # one line comes before a model loads (a CNN's import of torch made "file not found" take 2.6 s)
        lr = fileio.load_tensor(args.input, args.tensor_order, getattr(args, "order_stated", None))
    maps = (bool(unc_out) or args.propagate) and method.gives_uncertainty
    written_to = [out, *map_paths.values(), *unc_paths.values()]
    if args.propagate:
        written_to += [p for key, p in prop_paths.items() if key != "json"]
    if shape3 is not None:
        grid.check_nifti_grid(shape3, f, written_to, nrrd_ok=True)
        method.check_memory(shape3, f, maps, propagate=args.propagate, nrrd=is_nrrd(out))
    # the engine's rule for factors without a model, as iqt batch and the Slicer module apply it
    choice = choose(None if args.method is None and not args.model else name, f, model=args.model,
                    voxel_size=lr.voxel_size if chose else None, target=args.voxel_size if chose else None,
                    uncertainty=bool(args.uncertainty or args.propagate))
    if choice.refusal:
        raise IQTError(choice.refusal)
    if method.learned:
        try:
            method.load(f)  # a missing, corrupt or foreign model fails here, before any work
        except IQTError as exc:
            if not chose:
                raise
            # the other --voxel-size is the factor rule's to name (a given model's own factors), said where the loader
            # refused the model's factors, not a damaged file
            raise IQTError(f"--voxel-size {args.voxel_size:g} chose {choice.chose}; {exc}{model_hint(exc, choice)}") \
                from None
    if lr is None:
        lr = fileio.load_tensor(args.input, args.tensor_order, getattr(args, "order_stated", None))
    warn_if_upsampled(lr)  # its header says it was upsampled already: one line, the run goes on
    written = options.output_order(args, lr, out)
    fileio.check_tensor_output(out, lr.affine)
    seeds = options.load_seeds(args) if args.propagate else None
    if chose:  # once the output order and seeds are settled: a refusal of either is the run's only line
        print(options.voxel_size_line(f, lr.voxel_size))
    if shape3 is None:  # a header the early check could not read (the file is read now): checked here, before any work
        grid.check_nifti_grid(lr.shape3, f, written_to, nrrd_ok=True)
        method.check_memory(lr.shape3, f, maps, propagate=args.propagate, nrrd=is_nrrd(out))
    with method_progress(method) as progress:  # on a terminal only, as train, benchmark and batch show theirs
        pred, mask = options.predict_with_mask(method, lr, f, args.mask, uncertainty=bool(unc_out) or args.propagate,
                                               direction=bool(unc_out), progress=progress)
    if frame_checked(lr) and not args.no_frame_check:
        # mirrored fibres had run without a word (a tool-inputs audit): one line, once the input checks have passed,
        # so that a refused input's line stays the only one
        if check_frame(lr, lr.meta["order"] if lr.meta["order"] != "nifti" else None) == FRAME_NOISE:
            warn_frame_noise(lr)  # undecided, said: silent, it read as a clean table
    res = options.propagate(pred, args, mask, f, seeds) if args.propagate else None  # before any file is written
    used = pred.tensor.meta.get("model_for")
    model = options.note_model_run(method, pred, f, args)  # which ran: the 'wrote' line and the header
    maps = file_maps(pred.tensor, written["order"], is_nrrd(out)) if map_paths else {}
    fileio.save_tensor(pred.tensor, out, **written)
    for key, vol in maps.items():
        words = f" in {v1_frame_words(written['order'], vol.affine, True, is_nrrd(out))}" if key == "V1" else ""
        text = f"iqt {method.label} {key}{words}"
        fileio.save_scalar(vol, map_paths[key], text if len(text) < 80 else f"iqt {key}{words}")
    for key, vol in pred.maps().items() if unc_out else ():
        fileio.save_scalar(vol, unc_paths[key], map_record(method.label, key))  # its kind and unit, for evaluate
    # the lines after the writes, in their order, once every output is in place (all_or_none): none names a file that
    # a failure then removes
    say(f"wrote {with_data_file(out)} {pred.tensor.shape3} ({method.label}" + (f", {_MODEL_FOR.get(used, f'its model for {used} inputs')}" if used else "")
          + (f", {model[1]} model {model[0]}" if model else "")
          + options.order_words(written, out) + ")")
    if choice.note:  # the default ran interpolation: said in iqt batch's rows and the Slicer module's notes too
        say(choice.note)
    if map_paths:
        say(f"wrote {', '.join(with_data_file(p) for p in map_paths.values())} (dtifit's maps; V1 in "
            f"{v1_frame_words(written['order'], pred.tensor.affine, nrrd=is_nrrd(out))}, 0 where the two largest "
            "eigenvalues are equal)")
    if unc_out:
        say("wrote " + ", ".join(f"{with_data_file(unc_paths[key])} ({key})" for key in pred.maps()))
    served = grid.factors(method.load(f).factor) if method.learned else None
    if served is not None and served != grid.permute(f, Reorientation.to_canonical(lr.affine).ornt):
        say(f"{method.name}: the input's {grid.describe(f)}: {factor_axes(f, lr.affine)}; its model for "
              f"{grid.describe(served)} (along {'RAS'[grid.largest_axis(served)]}) ran with the axes turned to it and back")
    if res is not None:
        say(propagation.write(res, prop_paths, method.name, *options.propagation_record(args, f, method, model),
                              time.perf_counter() - t0))
    if stale:
        def removed() -> str:  # once the outputs are in place: a map rewritten meanwhile by another program stayed
            gone = [p.name for p in stale if not os.path.lexists(p)]
            return f"removed {', '.join(gone)}: an earlier run's maps of {out.name}, which this run replaced" if gone else ""

        say(removed)
