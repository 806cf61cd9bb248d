"""`iqt fit`, `iqt mask`, `iqt degrade`: from DWIs to tensors, brain masks and synthetic low-res inputs."""

from __future__ import annotations

from ...core.errors import IQTError
from ...fileio.mif import is_mif
from ...fileio.nifti import is_nrrd
from ...fileio.paths import MASK_SUFFIXES, with_data_file
from ...fileio.staging import say  # 'wrote' lines: printed once the run's outputs are in place
from ...dmri.degrade import STYLES
from ...fileio.sizes import check_inputs
from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("fit", help="fit DTI (dipy WLS) to a DWI series")
    options.add_dwi(sp)
    sp.add_argument("--mask", help="brain mask (default: median Otsu on the b0)")
    sp.add_argument("--mask-out", help="also write the brain mask used")
    sp.add_argument("--exclude-outliers", action="store_true",
                    help="fit without the slices and volumes the tensor model does not explain (signal dropout, a dead "
                         "or moved volume; without it they are named in one warning): such a volume is left out of "
                         "every slice, such a slice of a volume out of that slice's fit, where at least half the "
                         "directions, determining a tensor, are left")
    sp.add_argument("-o", "--output", required=True, help="tensor output (.nii.gz SYMMATRIX, .nrrd, or MRtrix .mif/.mif.gz in dwi2tensor's order)")
    sp.set_defaults(func=fit)

    sp = sub.add_parser("mask", help="brain mask from the b0 (median Otsu)")
    # mask fits no DTI (its help had said "fit DTI to ..."): --bmax selects the volumes read, as `iqt fit --bmax` does
    options.add_dwi(sp, bmax_help="read only the b0s and the volumes with b up to B s/mm^2, as 'iqt fit --bmax B' "
                                  "does, so that the mask is the one that fit estimates (it is made from the b0s; "
                                  "default: every volume)")
    _add_as_benchmark(sp)
    sp.add_argument("-o", "--output", required=True, help="brain mask output (.nii.gz or .mif; 1 inside, 0 outside)")
    sp.set_defaults(func=mask)

    sp = sub.add_parser("degrade", help="synthetic low quality: block-average DWIs by the factor, then fit DTI")
    options.add_dwi(sp)
    sp.add_argument("--mask", help="high-res brain mask (default: median Otsu)")
    _add_as_benchmark(sp)
    sp.add_argument("--factor", default="2",
                    help="block size: one integer for all three axes, or three along the DWI's voxel axes i,j,k, e.g. "
                         "1,1,3 for thick slices made of 3 planes (default 2)")
    sp.add_argument("--shift", default="0,0,0", help="block shift i,j,k, each in [0, factor-1] along its axis (default 0,0,0)")
    sp.add_argument("--slice-gap", type=int, default=0, metavar="N",
                    help="slices with a gap: drop N high-res planes after each block along the axes whose factor is above "
                         "1, so the low-res spacing there is factor+N planes and the slice thickness factor planes "
                         "(default 0; the result is then not on the factor grid of the input, so 'iqt evaluate' cannot "
                         "score its upsampling against it)")
    sp.add_argument("--style", default="own", choices=list(STYLES),
                    help="how the low-res tensors are made: " + "; ".join(f"{k}: {v}" for k, v in STYLES.items()))
    sp.add_argument("--snr", help=options.SNR_HELP)
    options.add_noise_seed(sp)
    sp.add_argument("--mask-out", help="also write the low-res mask (block majority)")
    sp.add_argument("-o", "--output", required=True, help="low-res tensor output")
    sp.set_defaults(func=degrade)


AS_BENCHMARK_HELP = (
    "make the brain mask 'iqt benchmark' scores in (its regions and its reference fit, dmri.subject.Subject.from_dwi): "
    "median Otsu with only the holes enclosed in 3D filled, so the in-slice holes by the ventricles and under the corpus "
    "callosum stay outside it, as on every figure docs/accuracy.md publishes; without it those holes are filled "
    "(docs/measurements.md, 'Holes in the estimated brain mask')")


def _add_as_benchmark(sp) -> None:
    sp.add_argument("--as-benchmark", action="store_true", help=AS_BENCHMARK_HELP)


def _plan(args):
    """The run's inputs (the DWI, its bval/bvec and the mask) for the output checks; --as-benchmark with --mask refused
    before any work."""
    from ... import fileio

    if getattr(args, "as_benchmark", False) and getattr(args, "mask", None):
        raise IQTError(f"--as-benchmark makes the brain mask from the b0, and --mask {args.mask} gives one: give one of "
                       "the two")
    return fileio.Outputs(args.dwi, *fileio.bval_bvec_paths(args.dwi, args.bval, args.bvec), getattr(args, "mask", None))


def _bmax_share(args) -> float | None:
    """The share of the DWI's volumes --bmax keeps (its b0s and the volumes with b up to it, as dmri.dti.keep_bmax
    keeps them), from its bval file, for the memory check; None without --bmax or where the file cannot be read (the
    fit's own reading says why)."""
    if getattr(args, "bmax", None) is None:
        return None
    from ...dmri.dti import SHELL_STEP
    from ...fileio import bval_bvec_paths
    from ...fileio.gradients import read_gradient_table

    try:
        b = read_gradient_table(bval_bvec_paths(args.dwi, args.bval, args.bvec)[0], "bval").ravel()
    except Exception:  # noqa: BLE001
        return None
    return float((b <= float(args.bmax) + SHELL_STEP / 2).mean()) if len(b) else None


def _dwi_and_mask(args):
    from ... import fileio
    from ...dmri.dti import brain_mask

    whole = dwi = fileio.load_dwi(args.dwi, args.bval, args.bvec)
    if getattr(args, "bmax", None) is not None:
        from ...dmri.dti import keep_bmax

        dwi = keep_bmax(dwi, args.bmax)
    if getattr(args, "mask", None):
        from ...dmri.degrade import FIT_DILATION, WHOLE_FIELD
        from ...dmri.mask_cut import warn_if_cut

        mask = fileio.load_mask(args.mask, dwi)
        style = getattr(args, "style", None)
        if style not in WHOLE_FIELD:  # fit and degrade: the tensors are zero beyond it
            left = (f"where the low-res tensors are fitted only within {FIT_DILATION} low-res voxels of it and left "
                    "zero farther out" if style == "own" else None)
            warn_if_cut(dwi, mask, f"--mask {args.mask}", left=left)
    else:
        mask = brain_mask(dwi, fill_slices=not getattr(args, "as_benchmark", False))
    if whole is not dwi:  # read on every volume: a shell --bmax drops may hold the b0s moved
        from ...dmri.b0s import check_b0_order

        check_b0_order(whole, mask)
    return dwi, mask


def fit(args):
    from ... import fileio
    from ...fileio import slices
    from ...fileio.records import note_run
    from ...dmri.fit_checks import fit_with_checks

    plan = _plan(args)
    out = plan.add(args.output, fileio.TENSOR_SUFFIXES, "tensor output")
    mask_out = plan.add(args.mask_out, MASK_SUFFIXES, "mask output") if args.mask_out else None
    plan.check()
    check_inputs("fit", [args.dwi, args.mask], kept=_bmax_share(args))  # from their headers, before any data is read
    fileio.check_tensor_output(out, args.dwi)
    dwi, brain = _dwi_and_mask(args)
    gaps = slices.record(slices.from_sidecar(args.dwi, dwi.affine), dwi.affine)
    if gaps:  # kept in the tensors' header: upsample says it (fileio/slices.py), the DWI's sidecar not being beside them
        note_run(slices=gaps)
    bvec = str(fileio.bval_bvec_paths(args.dwi, args.bval, args.bvec)[1])
    tensor = fit_with_checks(dwi, brain, args.exclude_outliers, bvec).tensor
    fileio.save_tensor(tensor, out)
    if mask_out:
        fileio.save_mask(brain, mask_out)
    say(f"wrote {with_data_file(out)}" + (f", {mask_out} (its brain mask)" if mask_out else ""))


def mask(args):
    from ... import fileio

    plan = _plan(args)
    out = plan.add(args.output, MASK_SUFFIXES, "mask output")
    plan.check()
    check_inputs("mask", [args.dwi], kept=_bmax_share(args))
    _, brain = _dwi_and_mask(args)
    fileio.save_mask(brain, out)
    say(f"wrote {out} ({int(brain.data.sum())} voxels" + (", the benchmark's mask: in-slice holes left open)"
                                                              if args.as_benchmark else ")"))


def degrade(args):
    from ... import fileio
    from ...core import grid
    from ...dmri import degrade as deg, randomise

    f = grid.factors(args.factor)
    try:
        shift = tuple(int(s) for s in args.shift.split(","))
    except ValueError:
        shift = ()
    if len(shift) != 3 or any(not 0 <= s < k for s, k in zip(shift, f)):
        top = ",".join(str(k - 1) for k in f)
        raise IQTError(f"--shift {args.shift}: give three integers separated by commas, each from 0 to its axis's factor "
                       f"minus 1 (at most {top}), e.g. 0,0,0")
    if args.slice_gap < 0:
        raise IQTError(f"--slice-gap {args.slice_gap}: give the number of high-res planes dropped after each block, "
                       f"0 or more")
    snr = options.snr(args.snr)
    seed = options.noise_seed(args, snr)
    plan = _plan(args)
    out = plan.add(args.output, fileio.TENSOR_SUFFIXES, "tensor output")
    mask_out = plan.add(args.mask_out, MASK_SUFFIXES, "mask output") if args.mask_out else None
    if deg.FILE_ORDER.get(args.style) and is_nrrd(out):  # a NRRD holds its own order: the style was dropped
        raise IQTError(f"--style {args.style} writes {deg.FILE_ORDER[args.style]}'s 4D NIfTI file; give -o a .nii.gz "
                       "name (a Slicer NRRD holds its own element order and frame)")
    if deg.FILE_ORDER.get(args.style) not in (None, "mrtrix") and is_mif(out):  # written in dwi2tensor's order
        raise IQTError(f"--style {args.style} writes {deg.FILE_ORDER[args.style]}'s 4D NIfTI file; give -o a .nii.gz "
                       "name (an MRtrix image holds dwi2tensor's order, whatever the style)")
    plan.check()
    check_inputs("degrade", [args.dwi, args.mask], kept=_bmax_share(args))
    fileio.check_tensor_output(out, args.dwi)  # the low-res grid's axes are the DWI's
    dwi, brain = _dwi_and_mask(args)
    from ...dmri.fit_checks import check_before_degrade, check_degraded_table

    check_before_degrade(dwi, brain)
    pair = deg.degrade(dwi, brain.data, f, shift, args.style, slice_gap=args.slice_gap,
                       noise=randomise.added_noise(snr, seed))
    # noise raises FA: a noisy x3 fit of a clean scan scored other tables above the bar (dmri/fit_checks.py), so the
    # table is judged on the same blocks fitted without it (low-res: a small second fit)
    judged = pair if snr is None else deg.degrade(dwi, brain.data, f, shift, args.style, slice_gap=args.slice_gap)
    check_degraded_table(dwi, brain, judged.tensor, judged.mask,
                         str(fileio.bval_bvec_paths(args.dwi, args.bval, args.bvec)[1]))
    from ...fileio.slices import from_sidecar, record_of_degrade

    gaps = record_of_degrade(pair.tensor.affine, f, args.slice_gap, from_sidecar(args.dwi, dwi.affine))
    if gaps:  # upsample reads it back and says the slices are not contiguous (fileio/slices.py)
        from ...fileio.records import note_run

        note_run(slices=gaps)
    if snr is not None:  # beside the factor, shift and style that degrade keeps, and in the run's header record
        from ...fileio.records import note_run

        pair.tensor.meta.update(snr=snr, noise_seed=seed)
        note_run(noise={"snr": snr, "seed": seed})  # the seed that drew it (its option reads null where not given)
    fileio.save_tensor(pair.tensor, out, order=deg.FILE_ORDER.get(args.style, "nifti"))
    if mask_out:
        fileio.save_mask(pair.mask, mask_out)
    order = deg.FILE_ORDER.get(args.style) if not is_mif(out) else None  # a .mif is read in its order without it
    say(f"wrote {with_data_file(out)} {pair.tensor.shape3}" + (f" (read it with --tensor-order {order})" if order else "")
          + (f", {mask_out} (its low-res mask" + (", from the benchmark's brain mask)" if args.as_benchmark else ")")
             if mask_out else ""))
