"""`iqt evaluate`: a prediction scored against its reference, per region (and its uncertainty maps' calibration)."""

from __future__ import annotations

import warnings

import numpy as np

from ...core.errors import IQTError, IQTWarning
from ...core.tensors import NEGLIGIBLE, ORDERS
from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("evaluate", help="DT-RMSE, FA/MD errors, PSNR per region (and uncertainty calibration)")
    sp.add_argument("--pred", required=True, help="high-res prediction")
    sp.add_argument("--truth", required=True, help="high-res reference tensors")
    sp.add_argument("--mask", required=True, help="high-res brain mask")
    options.add_factor(sp, recorded=True)
    sp.add_argument("--uncertainty", help="per-voxel standard deviation map of the prediction")
    sp.add_argument("--uncertainty-unit", choices=("mm2/s", "um2/ms"),
                    help="the unit of the --uncertainty map where its header does not say it: um2/ms for a map the "
                         "Slicer module showed and Slicer saved (as NRRD or NIfTI); default mm2/s, as 'iqt upsample' "
                         "writes it")
    sp.add_argument("--direction", help="the prediction's direction uncertainty map (degrees; the _direction file "
                                        "'iqt upsample --uncertainty' writes), scored against the principal-direction error")
    sp.add_argument("--dwi", help="the reference's DWI, to report its noise floor beside the errors")
    sp.add_argument("--bval", help="with --dwi: its b-values (default: the DWI's FSL sidecar beside it)")
    sp.add_argument("--bvec", help="with --dwi: its gradient directions (default: the DWI's FSL sidecar beside it)")
    options.add_tensor_order(sp)
    sp.add_argument("--truth-order", choices=list(ORDERS),
                    help="the reference's order and frame (e.g. an 'iqt upsample' 5D output scored against a dtifit "
                         "reference: --truth-order fsl); without it a 4D reference is read as --tensor-order reads the "
                         "prediction, a 5D file or a NRRD in voxel axes, as this tool's and ANTs' are (another tool's 5D "
                         "file on a grid where dipy's frame differs from them is refused until this says which)")
    sp.add_argument("--json", help="also write the metrics as JSON")
    sp.set_defaults(func=run)


def _truth_order(path, tensor_order: str) -> tuple[str, bool]:
    """The reference's order where --truth-order is not given, and whether --tensor-order says it too: a 4D six-volume
    file is read as the prediction is (one flag for two files of one tool); a 5D file and a NRRD in voxel axes, as
    their formats fix for this tool's own ('iqt fit') and for ANTs', since an 'iqt upsample' output read with
    --tensor-order dipy|fsl|mrtrix is scored against 'iqt fit''s reference (read in FSL's frame, it comes out
    mirrored and is scored 47 degrees off). Another tool's 5D file on a grid where dipy's frame and voxel axes differ
    is then refused (fileio.volumes._check_frame) until --truth-order says which: taken to be in the prediction's
    frame, an ANTs reference beside a dipy prediction, and a dipy one beside a prediction read in voxel axes, had been
    scored mirrored, 43 degrees off, without a word (a tool-inputs audit)."""
    from ...fileio.nifti import open_nifti

    try:
        shape = open_nifti(path).shape
    except Exception:  # noqa: BLE001 - a NRRD, or not a file this reads: load_tensor says which
        return "nifti", False
    if len(shape) == 4:
        return tensor_order, True
    return "nifti", False


def _not_itself(pred, truth) -> None:
    """Refuse a prediction that is the reference's own file (the same path, or another name for it: a hard or symbolic
    link, a NRRD header naming the reference's data file): scored against itself it read as a perfect score, every
    error zero, exit 0 (an audit's leftover)."""
    import os

    from ...fileio.paths import nrrd_data_file

    def same(a, b) -> bool:
        try:
            return os.path.samefile(a, b)
        except OSError:  # a missing or unreadable file: the readers say which
            return False

    data = [nrrd_data_file(p) if os.path.isfile(p) else None for p in (pred, truth)]
    if same(pred, truth) or (None not in data and same(*data)):
        raise IQTError(f"{pred}: is the reference's own file ({truth}) given as the prediction, and scored against itself "
                       "every error is zero; give as --pred the output of 'iqt upsample' and as --truth the reference "
                       "fitted from the high-res DWI ('iqt fit')")


def _not_its_copy(pred_path, truth_path, pred, truth, mask) -> None:
    """Refuse a prediction equal to the reference on every mask voxel: a byte copy or a NRRD conversion of the
    reference, not its file, had scored every error zero, exit 0 (a review; `_not_itself` tells only the same file)."""
    m = np.asarray(mask, bool)
    if m.any() and np.array_equal(pred[m], truth[m], equal_nan=True):
        raise IQTError(f"{pred_path}: holds the reference's own tensors ({truth_path}) in every mask voxel, a copy of it "
                       "given as the prediction, and scored against itself every error is zero; give as --pred the "
                       "output of 'iqt upsample' and as --truth the reference fitted from the high-res DWI ('iqt fit')")


def run(args):
    from ... import fileio
    from ...analysis import evaluation
    from ...core import grid, tensor_checks
    from ...dmri import degrade, fit_noise
    from ...fileio.records import along_axes, recorded_axes
    from ...fileio.sizes import check_inputs
    from ...methods.inputs import order_hint, stored_step, warn_integer_step, without_tiny_background

    f = grid.factors(args.factor) if args.factor is not None else None
    if getattr(args, "uncertainty_unit", None) and not args.uncertainty:  # it would be ignored (a review)
        raise IQTError("--uncertainty-unit goes with --uncertainty (the map whose unit it says); add the map or drop it")
    if (args.bval or args.bvec) and not args.dwi:  # they were ignored (a bad-input audit)
        raise IQTError(f"{'--bval' if args.bval else '--bvec'} goes with --dwi (the reference's DWI, for its noise "
                       "floor); add --dwi DWI.nii.gz or drop it")
    plan = fileio.Outputs(args.pred, args.truth, args.mask, args.uncertainty, args.direction, args.dwi)
    if args.dwi:
        plan.read(*fileio.bval_bvec_paths(args.dwi, args.bval, args.bvec))
    json_out = plan.add(args.json, fileio.JSON_SUFFIXES, "metrics") if args.json else None
    plan.check()
    # every image it reads, from their headers, before any data is read
    check_inputs("evaluate", [args.pred, args.truth, args.mask, args.uncertainty, args.direction, args.dwi])
    _not_itself(args.pred, args.truth)  # once the paths are known to be readable and the outputs writable
    with tensor_checks.missing_read_as(tensor_checks.MISSING_AS_PREDICTION):  # its NaN voxels' warning says what scoring does
        pred = fileio.load_tensor(args.pred, args.tensor_order, getattr(args, "order_stated", None))
    try:
        with warnings.catch_warnings(record=True) as said, tensor_checks.missing_read_as(tensor_checks.MISSING_AS_REFERENCE):
            warnings.simplefilter("always", IQTWarning)
            order, same_flag = (args.truth_order, True) if args.truth_order else _truth_order(args.truth, args.tensor_order)
            # said for the reference where --truth-order is given, or where --tensor-order reads it too (a 4D file)
            stated = args.truth_order is not None or bool(getattr(args, "order_stated", False) and same_flag
                                                          and order == args.tensor_order)
            truth = fileio.load_tensor(args.truth, order, stated)
    except IQTError as exc:  # the reference's own order is --truth-order's (--tensor-order read the prediction)
        raise IQTError(str(exc).replace("--tensor-order", "--truth-order")) from None
    # an int16 file's background (its intercept) read as the zeros it stands for, as upsample reads it: a perfect
    # prediction had scored an exterior FA RMSE of 0.46 against such a reference (a tool-inputs audit)
    held = np.any(np.isfinite(truth.data) & (truth.data != 0), axis=-1)  # before: a fit's floor is said as such below
    pred, truth = without_tiny_background(pred), without_tiny_background(truth)
    for w in said:
        if MISSING_WARNING in str(w.message):  # the reference's missing voxels: counted inside the mask below
            continue
        warnings.warn(str(w.message).replace("--tensor-order", "--truth-order"), w.category, stacklevel=2)
    # a prediction stored in another voxel order than the reference (fslreorient2std'd, say) is re-stored as the
    # reference is, its tensors with it: it had been refused as 'not the factor grid' (a thick-slice audit); the
    # factors its header records are along its own axes and turned with it
    pred, moved = _stored_like(pred, truth.affine)
    made = pred.meta.get("made_at")
    if moved is not None and made:
        made = grid.permute(made, moved.ornt)
    # --factor is along the low-res input's voxel axes, which the header records beside per-axis factors ('iqt
    # upsample' writes in its input's order): turned onto the reference's as the header's are. Read in the
    # reference's axes, a slice-first input's 2,1,1 (its header's own) had been scored along L-R (a thick-slice audit)
    given, axes = f, None
    written = recorded_axes(pred.meta.get("made_by", "")) if made else None
    if f is not None and written is not None:
        turned = along_axes(f, written[1], pred.affine)
        if turned is not None:
            f, axes = turned, written[1]
    along = f" along the low-res input's {axes} axes" if axes is not None and f != given else ""
    if f is None:
        f, source = (made, "as the prediction's header records") if made else (grid.factors(2), "the default")
    else:
        source = f"as given: {grid.text(given)}{along}" if along else "as given"
    # another factor than the header's may be right (x4 made as two x2 runs): said, or named in the grid's refusal
    other = made is not None and made != f
    recorded = f"; its header reads '{pred.meta['made_by']}': leave --factor out" if other else ""
    asked = f" (--factor {grid.text(given)}{along})" if along else ""
    # the prediction against the reference first: else a reference of another subject is blamed on the mask
    shape = pred.shape3
    start = _start(pred.affine, truth.affine)
    if start is None and all(t >= p for t, p in zip(truth.shape3, shape)):
        raise IQTError(f"{args.pred}: its affine does not put its voxels on the reference's (another voxel size, axes or "
                       f"a fraction of a voxel apart); give a prediction on the grid of {args.truth}{recorded}")
    if start is None or any(t - s < p or t - s - p >= k for t, s, p, k in zip(truth.shape3, start, shape, f)) \
            or any(n % k for n, k in zip(shape, f)):
        raise IQTError(
            f"the prediction {shape} is not the factor-{grid.text(f)}{asked} grid of the reference {truth.shape3} (nor of a "
            f"block shift of it, read from the two affines); give the output of 'iqt upsample' on 'iqt degrade' of the "
            f"same subject with the same --factor{recorded}"
        )
    mask = fileio.load_mask(args.mask, truth, reference_name="the reference's (high-res) grid")
    if other:
        scored, header = (grid.describe(given) + along, grid.text(written[0])) if axes is not None \
            else (grid.describe(f), grid.text(made))
        warnings.warn(f"{args.pred}: its header reads '{pred.meta['made_by']}', and it is scored at {scored} "
                      f"as given; leave --factor out to score it at {header}", IQTWarning, stacklevel=2)
    box = tuple(slice(s, s + n) for s, n in zip(start, shape))  # the reference's voxels under the prediction
    t = truth.data[box]
    m = mask.data[box]
    _not_its_copy(args.pred, args.truth, pred.data, t, m)
    try:
        missing, unscored = _missing_reference(args.truth, t, m, held[box])  # said once the files are known to score
    except IQTError:  # most of the mask without a reference tensor: an integer file's cast or step, where it is why
        cause = tensor_checks.integer_cause(t, m, stored_step(truth), "reference", truth.meta.get("wrapped", 0))
        if cause:
            raise IQTError(f"{args.truth}: {cause}") from None
        raise
    negative = _negative_md_line(args.truth, t, m)
    lr_mask = degrade.block_majority(m, f)
    unc = _map(args.uncertainty, "--uncertainty", pred, getattr(args, "uncertainty_unit", None), args.pred, brain=m) \
        if args.uncertainty else None
    if unc is not None and unc.shape[:3] != shape:
        raise IQTError(f"{args.uncertainty}: shape {unc.shape} differs from the prediction {shape}")
    direc = _map(args.direction, "--direction", pred, pred_path=args.pred) if args.direction else None
    if direc is not None and direc.shape != shape:
        raise IQTError(f"{args.direction}: shape {direc.shape} differs from the prediction {shape}; give the "
                       f"_direction map that 'iqt upsample --uncertainty' wrote beside this prediction")
    floor = None
    if args.dwi:
        dwi, _ = _stored_like(fileio.load_dwi(args.dwi, args.bval, args.bvec), truth.affine)
        if dwi.shape3 != truth.shape3:
            raise IQTError(f"{args.dwi}: the DWI grid {dwi.shape3} differs from the reference {truth.shape3}")
        if not grid.same_affine(dwi.affine, truth.affine):  # another scan of that shape: a floor 24x too high
            apart = float(np.abs(np.asarray(dwi.affine, float) - np.asarray(truth.affine, float))[:3].max())
            raise IQTError(f"{args.dwi}: the DWI has the reference's shape but another position or orientation (affine; "
                           f"entries up to {apart:.3g} mm apart, where {grid.affine_tolerance(truth.affine):.2g} mm, a "
                           f"header's rounding, passes); give the DWI the reference was fitted from")
        if fit_noise.no_floor_reason(dwi.bvals):  # the floor is all --dwi asks for
            raise IQTError(f"{args.dwi}: {fit_noise.no_floor_reason(dwi.bvals)}; leave --dwi out to score without it")
        floor = fit_noise.noise_floor(dwi.data[box], dwi.bvals, dwi.bvecs, t, m)
    try:  # evaluate refuses a file read in the wrong order or unit, which would be scored as nonsense
        result = evaluation.evaluate(pred.data, t, m, lr_mask, f, uncertainty=unc, floor_std=floor, direction=direc,
                                     sources={"prediction": f"{args.pred}: ", "reference": f"{args.truth}: "})
    except IQTError as exc:  # naming the file, and the order that reads it, as upsample does
        which = getattr(exc, "input", None)
        if which is None:
            raise
        vol, path = (pred, args.pred) if which == "prediction" else (truth, args.truth)
        inside = np.asarray(mask.data, bool) if which == "reference" or mask.shape3 == vol.shape3 else None
        # an integer file's step, where it is the cause, as upsample names it (methods/inputs.py check_tensor_input)
        cause = tensor_checks.integer_cause(vol.data, inside, stored_step(vol), which, vol.meta.get("wrapped", 0))
        raise IQTError(f"{path}: " + (cause or f"{exc}{order_hint(vol, inside, str(exc), evaluation.INPUT_OPTIONS[which])}")) from None
    if unscored is not None:
        raise unscored
    for vol, data, path, which in ((pred, pred.data, args.pred, "prediction"), (truth, t, args.truth, "reference")):
        warn_integer_step(data, m, stored_step(vol), f"{path}: ", which)  # a coarse step, over the brain scored
    if missing:
        warnings.warn(missing, IQTWarning, stacklevel=2)
    if negative:
        warnings.warn(negative, IQTWarning, stacklevel=2)
    result["factor"] = grid.record(f)
    if json_out:  # which code scored it: a count's definition can change between versions
        from ...fileio.model_files import software

        result.update(software())
        fileio.write_json(json_out, result)
    print(f"{grid.describe(f)} ({source}{'; the prediction re-stored in the reference voxel order' if moved else ''})")
    for region in ("interior", "exterior"):
        row = result[region]
        if not row["n_voxels"]:  # every figure undefined: said, not printed as nan (the JSON holds null)
            left = row["n_implausible"] + row["n_no_reference"]
            why = (f"{left} left out: no plausible reference tensor" if left else
                   "no brain voxel whose low-res parent has its whole 5^3 neighbourhood in the mask" if region == "interior"
                   else "the mask holds no voxel beyond the interior")
            print(f"{region}: no voxels ({why})")
            continue
        extra = "".join(f", {k} {_num(row[k], '.3f', unit)}" for k, unit in
                        (("noise_floor", " (1e-5 mm^2/s)"), ("spearman", ""), ("within_2sigma", "")) if k in row)
        print(f"{region}: DT-RMSE {_num(row['dt_rmse'], '.3f', ' (1e-5 mm^2/s)')}, FA RMSE {_num(row['fa_rmse'], '.4f')}, "
              f"MD RMSE {_num(row['md_rmse'], '.3f', ' (1e-5 mm^2/s)')}, PSNR {_psnr(row['psnr'])}, principal-direction "
              f"error {_num(row['angle_error'], '.1f', ' deg')} (median, FA >= {evaluation.TRACKED_FA}), "
              f"{row['n_voxels']} voxels{extra}")
    if "brain" in result:
        row = result["brain"]
        parts = [f"{k} {_num(row[k], '.3f')}" for k in ("spearman", "within_2sigma", "direction_spearman",
                                                         "direction_within_2") if k in row]
        print(f"whole brain: {', '.join(parts)}, {row['n_voxels']} voxels" if row["n_voxels"] else
              "whole brain: no voxels")
        if row.get("n_uncovered"):
            n = row["n_uncovered"]
            print(f"({n} of them {'has' if n == 1 else 'have'} no prediction, exactly zero (cut by the upsampling's "
                  f"--mask, or a hole in its input); the uncertainty figures leave {'it' if n == 1 else 'them'} out)")


def _num(x, fmt: str, unit: str = "") -> str:
    """A figure as printed: "–" where it is undefined (NaN, as the JSON's null; the benchmark's tables print the same)."""
    return f"{x:{fmt}}{unit}" if x is not None and np.isfinite(x) else "–"


def _psnr(x) -> str:
    """PSNR in dB; a prediction equal to the reference has no error to set it (infinite: null in the JSON)."""
    if x is not None and np.isinf(x) and x > 0:
        return "– (no error)"
    return _num(x, ".2f", " dB")


MISSING_WARNING = "NaN in every element"  # core.tensor_checks.nan_as_empty's warning (its first half, whatever it says of
# their fate): such voxels are read as zero
MOSTLY_MISSING = 0.5  # share of the mask's voxels without a reference tensor from which the mask is not the reference's


def _missing_reference(path, truth, mask, held=None) -> tuple[str | None, IQTError | None]:
    """Mask voxels where the reference holds no tensor (zero: outside the mask it was fitted in; a fit's floor; or NaN
    in every element) are left out of every figure (evaluation.no_reference): the line that says so (None where there
    are none); where they are most of the mask, the mask is not the reference's: refused, or, where most of them hold
    tensors below NEGLIGIBLE, the refusal returned to raise once the scoring's unit check has not named a reference in
    another unit (m^2/s reads as a floor everywhere). Scored, they counted as a truth of zero (audit: interior DT-RMSE
    20.9 against 15.8 for a reference fitted in the 3D-filled mask scored in the slice-filled one)."""
    from ...analysis.evaluation import no_reference

    m = np.asarray(mask, bool)
    absent = m & no_reference(truth)
    n, total = int(absent.sum()), int(m.sum())
    if not n:
        return None, None
    share = n / total
    # `held`: the voxels holding a tensor before the negligible ones were read as zero (`without_tiny_background`):
    # in the fit's own mask, those are its floor where a voxel has no diffusion signal or its fit failed (the WLS fit's
    # eigenvalues clipped to 1e-9 where the diffusion-weighted signal is at or above the b0), not a mask of another fit
    tiny = 0 if held is None else int((absent & np.asarray(held, bool)).sum())
    if share > MOSTLY_MISSING:
        refusal = IQTError(f"{path}: {n} of the mask's {total} voxels ({100 * share:.0f} %) hold no reference tensor "
                           f"(zero, a fit's floor, or NaN in every element), so the mask is mostly outside the brain the "
                           f"reference was fitted in; give the mask the reference was fitted in ('iqt fit --mask-out'), "
                           f"or fit the reference in this mask")
        if 2 * tiny <= n:
            raise refusal
        return None, refusal
    shown = f"{100 * share:.2g}" if share < 0.01 else f"{100 * share:.1f}"  # 21 of 47,669 had read "0.0 %"
    # pieces (split at "; ") of at most PIECE_LIMIT characters, as a long warning is said over several lines
    # (methods/base.py warning_lines): as one line it had run to 323 characters after the file's name
    zero = "zero, or NaN in every element: outside the mask the reference was fitted in, or failed fits"
    what = ([f"{tiny} of those voxels {'holds' if tiny == 1 else 'hold'} only tensors below {NEGLIGIBLE:g} mm^2/s, "
             "read as none", "such tensors may be a fit's floor where a voxel has no diffusion signal (its b0 at or near 0)",
             "such tensors may be a fit's floor where a voxel's fit failed (diffusion-weighted signal at or above the b0)",
             "such tensors may be a stored background"]
            + ([] if tiny == n else [f"the others are {zero}"]) if tiny else [f"those voxels are {zero}"])
    return "; ".join([f"{path}: {n} of the mask's {total} voxels ({shown} %) hold no reference tensor and are left out "
                      "of every figure", *what]), None


def _negative_md_line(path, truth, mask) -> str | None:
    """The line saying how many mask voxels hold a reference tensor with MD <= 0 (evaluation.negative_md: an OLS fit's
    failed voxels, which a WLS fit clips to its floor), left out as implausible; None where there are none."""
    from ...analysis.evaluation import negative_md

    m = np.asarray(mask, bool)
    n = int((m & negative_md(truth)).sum())
    if not n:
        return None
    return (f"{path}: {n} of the mask's {int(m.sum())} voxels hold a reference tensor with MD <= 0 (no tissue has it: "
            "a failed fit that OLS leaves unclipped); they are left out of every figure and counted as implausible "
            "(n_implausible)")


def _same_unit(path, recorded: str | None, given: str | None) -> None:
    """Refuse an --uncertainty-unit that contradicts the unit the map's header records (a review: given beside the map
    'iqt upsample' wrote in mm^2/s, it had divided that map by 1000, scored, exit 0)."""
    if recorded is not None and given is not None and recorded != given:
        raise IQTError(f"{path}: its header says its values are in {recorded}, and --uncertainty-unit says {given}; "
                       "leave --uncertainty-unit out (it is for a map whose header names no unit)")


# a sigma map's brain median over the prediction's brain median MD, where no header records the map's unit: the maps
# 'iqt upsample --uncertainty' writes read 0.0027-0.0040 (deep-hetero-var1's std_parameter) to 0.91 (rf's std at SNR 3)
# on the dev scans, and the same maps in um^2/ms (as Slicer's Save writes the module's nodes) 1000 times that (from
# 2.7); the cap holds in either unit: a _direction map in degrees read in um^2/ms still reads about 60 times the MD
SIGMA_MD_RATIO = (1e-3, 1.5)
# the refusals that offer --uncertainty-unit um2/ms say first which maps are not sigma: the unit would not make them so
NOT_SIGMA = ("a direction, FA-SD or MD-SD map is not a tensor's sigma map (--uncertainty takes the std, std_intrinsic "
             "or std_parameter map 'iqt upsample --uncertainty' writes, --direction its _direction map)")


def _check_sigma_unit(path, data, pred, brain, unit_given: str | None) -> None:
    """Refuse a sigma map whose header does not record its unit where its values, read in the unit assumed (mm^2/s) or
    given (--uncertainty-unit), are not a tensor's standard deviation beside the prediction's own brain MD: a map in
    um^2/ms whose values all lay below 0.1 (the old test) had been read as mm^2/s, 1000 times too wide, and scored
    'within 2 sigma: 1.000' (an audit's leftover: espcn-hetero-var1's std_parameter as Slicer saves it)."""
    from ...core import tensor_checks, tensors

    inside = np.asarray(brain, bool)
    s = np.asarray(data, np.float64)
    s = s.mean(axis=-1) if s.ndim == 4 else s
    if s.shape != inside.shape:  # said by the shape checks after
        return
    s = s[inside]
    s = s[np.isfinite(s) & (s > 0)]
    md = tensors.md(np.asarray(pred.data, np.float64)[inside])
    md = md[np.isfinite(md) & (md > NEGLIGIBLE)]
    if not s.size or not md.size:
        return
    sigma, scale = float(np.median(s)), float(np.median(md))
    if not tensor_checks.MIN_MEDIAN_MD <= scale <= tensor_checks.MAX_MEDIAN_MD:  # the prediction is in another unit:
        return  # its own refusal (tensor_checks.check_scale, in the evaluation) says so, not the map's
    ratio = sigma / scale
    unit = unit_given or "mm2/s"
    read = f"read in {unit} ({'as --uncertainty-unit says' if unit_given else 'its header names no unit'})"
    if ratio >= SIGMA_MD_RATIO[1]:
        head = (f"{path}: {read}, its brain median {sigma:.3g} mm^2/s is {ratio:.3g} times the prediction's brain median "
                f"MD ({scale:.3g} mm^2/s), no tensor's standard deviation: {NOT_SIGMA}")
        if unit == "um2/ms":  # a map in degrees or of FA stays too wide in either unit (a review: a _direction map
            # given with --uncertainty-unit um2/ms had scored 'within 2 sigma: 1.000')
            raise IQTError(f"{head}; give the std map as --uncertainty")
        raise IQTError(f"{head}. A sigma map in um^2/ms (1000 times mm^2/s, as the Slicer module shows sigma and Slicer's "
                       "Save writes it)? say so with --uncertainty-unit um2/ms, or give the std map 'iqt upsample "
                       "--uncertainty' wrote")
    if ratio < SIGMA_MD_RATIO[0] and unit == "um2/ms":
        raise IQTError(f"{path}: {read}, its brain median {sigma:.3g} mm^2/s is {ratio:.2g} times the prediction's brain "
                       f"median MD ({scale:.3g} mm^2/s), too narrow for any method's sigma: already in mm^2/s? leave "
                       "--uncertainty-unit out")


def _not_named_another_kind(path) -> None:
    """Refuse as --uncertainty a map whose header records no kind but whose name ends in another map's kind, as the
    Slicer module names its nodes and Slicer's Save names their files (X_fa_std.nii.gz): an FA-SD or MD-SD map read in
    um^2/ms is as narrow as a sigma, so its values cannot tell it (a review: an FA-SD map scored within 2 sigma 0.853);
    with MRML's unique-name number too (X_fa_std_1.nii.gz: slicer/mrml.py free_name names a second node so)."""
    import re
    from pathlib import Path

    from ...fileio.records import MAP_UNITS
    from .upsample import stem

    name, number = re.fullmatch(r"(.*?)(_\d+)?", stem(Path(path)).lower(), re.S).groups()
    for kind in sorted(set(MAP_UNITS) - set(SIGMA_KEYS), key=len, reverse=True):
        if name == kind or name.endswith(f"_{kind}"):
            ends = f"'_{kind}{number}' ('_{kind}' and a node's number)" if number else f"'_{kind}'"
            raise IQTError(f"{path}: its name ends in {ends}, another map's kind (as the module names its maps), and "
                           f"{NOT_SIGMA}; give the std map as --uncertainty (a sigma map under this name: rename it)")


def _start(pred_affine, truth_affine) -> tuple | None:
    """The reference voxel under the prediction's first one ('iqt degrade --shift' moves it), where the prediction's
    voxels are the reference's own; None where they are not (another voxel size, axes or a fractional offset)."""
    import numpy as np

    a, b = np.asarray(pred_affine, float), np.asarray(truth_affine, float)
    if not np.allclose(a[:3, :3], b[:3, :3], rtol=0, atol=1e-3 * np.abs(b[:3, :3]).max()):
        return None
    at = np.linalg.solve(b, a[:, 3])[:3]
    start = np.round(at)
    if np.abs(at - start).max() > 1e-2 or (start < 0).any():
        return None
    return tuple(int(v) for v in start)


SIGMA_KEYS = ("std", "std_intrinsic", "std_parameter")  # maps of the tensor elements' standard deviation (mm^2/s)


def _stored_like(vol, ref_affine):
    """(`vol` re-stored in the voxel order of a grid with `ref_affine`, its tensor components or gradient directions
    turned with it; the Reorientation, None where it already is)."""
    from ...core.orientation import Reorientation, _nio, io_orientation

    ro = Reorientation(_nio().ornt_transform(io_orientation(vol.affine), io_orientation(ref_affine)))
    return (vol, None) if ro.is_identity else (ro.apply(vol), ro)


def _run_of(path) -> dict | None:
    """The record of the `iqt` run that wrote the file (fileio/records.py `run_json`: a NIfTI extension, a NRRD field);
    None where it carries none (--no-record, another tool, a map Slicer saved)."""
    from ...fileio.nifti import is_nrrd, run_record_of
    from ...fileio.records import RUN_KEY, read_run

    try:
        if is_nrrd(path):
            import nrrd

            return read_run(nrrd.read_header(str(path)).get(RUN_KEY))
        return run_record_of(path)
    except Exception:  # noqa: BLE001 - not readable as such: the map's own reading says why
        return None


def _without_threads(record: dict) -> dict:
    """A run record less its CPU threads: in the record (records.run_json), its options and its command text (a review:
    byte-identical maps of runs differing only in --threads had been refused)."""
    import shlex

    threads = ("threads", "command_threads", "train_threads")
    out = {k: v for k, v in record.items() if k != "threads"}
    if isinstance(out.get("options"), dict):
        out["options"] = {k: v for k, v in out["options"].items() if k not in threads}
    try:
        words = shlex.split(str(out.get("command")))
    except ValueError:
        return out
    kept, skip = [], False
    for w in words:
        if not skip and w != "--threads" and not w.startswith("--threads="):
            kept.append(w)
        skip = w == "--threads" and not skip
    out["command"] = shlex.join(kept)
    return out


def _same_run(path, option: str, pred_path) -> None:
    """Refuse a map whose run record (fileio/records.py) is another run's than the prediction's: a map of the same
    method on the same grid from another run had been scored (an audit: whole-brain Spearman 0.387 against 0.525 with
    the prediction's own). The records hold the command, options, version, build and, from 'iqt upsample' and 'iqt
    propagate', the input's SHA256 (the same command on another input had read as the same run). Either file without
    a record is not judged."""
    theirs, ours = _run_of(path), _run_of(pred_path)
    if theirs is None or ours is None:
        return
    bare_theirs, bare_ours = _without_threads(theirs), _without_threads(ours)
    if bare_theirs == bare_ours:
        return
    own = (ours.get("options") or {}).get("uncertainty")
    if own and option == "--direction":  # named as 'iqt upsample' names it (apps/cli/upsample.py)
        from pathlib import Path

        from .upsample import stem

        own = Path(own)
        own = str(own.with_name(f"{stem(own)}_direction{own.name[len(stem(own)):]}"))
    wanted = f"the one its run wrote ({own})" if own else "the one written with it"
    sums = theirs.get("input_sha256"), ours.get("input_sha256")  # None in a record from before it was kept
    if bare_theirs.get("command") == bare_ours.get("command") and None not in sums and sums[0] != sums[1]:
        raise IQTError(f"{path}: its header records the prediction's command ('{ours.get('command')}') run on another "
                       f"input (SHA256 {str(theirs.get('input_sha256'))[:12]}..., the prediction's "
                       f"{str(ours.get('input_sha256'))[:12]}...); give as {option} {wanted}")
    raise IQTError(f"{path}: its header records another run ('{theirs.get('command')}') than the prediction's "
                   f"('{ours.get('command')}'); give as {option} {wanted}")


def _map(path, option: str, pred, unit_given: str | None = None, pred_path=None, brain=None):
    """The data of an uncertainty map given as `option`, on the grid of the prediction `pred` (as re-stored for the
    reference): the same voxels stored in another order are re-indexed, other voxels refused (a map saved from Slicer,
    which re-stores a left-handed grid, had been scored against other voxels without a word). A Slicer NRRD of the
    module's map is read with the unit its header names (um2/ms: divided by 1000). Refused when it is another kind of
    map: by the kind its header records (fileio.records.map_record), else by its values (an angle map in degrees
    reaches tens, an element SD in mm^2/s stays far below 1): a direction map scored as sigma would read 'within 2
    sigma: 1.000'. `unit_given` (--uncertainty-unit): the unit of a map whose header names none (Slicer saves the
    module's map without the node's unit: a display audit found the documented round trip refused). A map whose
    header names another method than the prediction's is refused (a bad-input audit: espcn-hetero-var1's sigma had been
    scored against a cubic prediction, exit 0). `brain`: the brain mask on the prediction's grid, where a sigma map whose
    header does not record its unit is judged against the prediction's brain MD (`_check_sigma_unit`)."""
    from ...core import grid
    from ...core.orientation import onto_grid
    from ...core.volume import Volume
    from ...fileio import load_scalar
    from ...fileio.nifti import is_nrrd
    from ...fileio.records import MADE_BY, MAP_RECORD, MAP_UNITS, map_record, read_map_record

    vol = load_scalar(path)  # one reader of maps for NIfTI and NRRD, with its checks (NaN/Inf refused)
    if np.ndim(vol.data) == 4 and np.shape(vol.data)[3] == 3:  # --maps' V1, which load_scalar reads as (X,Y,Z,3)
        what = "an uncertainty map" if option == "--uncertainty" else "the _direction map"
        raise IQTError(f"{path}: a 3-vector map (a V1?), not {what}; give the {option[2:]} map 'iqt upsample "
                       f"--uncertainty' wrote as {option}")
    fields = vol.meta.get("module_fields")
    recorded_unit = None  # the unit the map's own header records, if any
    if is_nrrd(path) and not vol.meta["descrip"]:  # the module's map as Slicer saves it: its fields (slicer/mrml.py)
        unit, kind = fields.get("ImageQualityTransfer.Unit"), fields.get("ImageQualityTransfer.Map")
        if unit is None and (unit_given is None or option != "--uncertainty"):
            raise IQTError(f"{path}: a NRRD whose header does not name its unit (no ImageQualityTransfer.Unit, as "
                           f"Slicer saves the module's map); {NOT_SIGMA}; for a sigma map say its unit with "
                           "--uncertainty-unit um2/ms (the unit the module shows sigma in) or mm2/s"
                           if option == "--uncertainty" else
                           f"{path}: a NRRD that does not say it is this tool's direction map (no ImageQualityTransfer.Unit "
                           "in its header); give the _direction map 'iqt upsample --uncertainty' wrote")
        if kind is None or kind not in MAP_UNITS or kind in SIGMA_KEYS:  # a known other kind: refused below
            _same_unit(path, unit, unit_given if option == "--uncertainty" else None)
        recorded_unit = unit
        unit = unit or unit_given
        data = np.asarray(vol.data, np.float64) / (1000.0 if unit == "um2/ms" else 1.0)
        run = fields.get("ImageQualityTransfer.Run")  # without it, the map's method is not known (a review)
        vol = Volume(data.astype(np.float32), vol.affine, "scalar",
                     meta={"descrip": map_record(str(run or "iqt").split()[0], kind) if kind is not None else "",
                           "method_known": run is not None})
    elif option == "--uncertainty" and unit_given is not None:  # its record names its unit (iqt_made_by in a NRRD)
        recorded = MAP_RECORD.match(str(vol.meta.get("descrip", "")).strip())
        recorded_unit = recorded["unit"] if recorded is not None else None
        if recorded is None or recorded["key"] not in MAP_UNITS or recorded["key"] in SIGMA_KEYS:  # ditto
            _same_unit(path, recorded["unit"] if recorded is not None else None, unit_given)
        if unit_given == "um2/ms":
            vol = vol.replace(data=np.asarray(vol.data, np.float32) / np.float32(1000.0))
    data = vol.data
    if vol.shape3 != pred.shape3 or not grid.same_affine(vol.affine, pred.affine):
        moved = onto_grid(data, vol.affine, pred.shape3, pred.affine)
        if moved is None:
            raise IQTError(f"{path}: its grid {vol.shape3} (shape, position or voxel size) differs from the prediction's "
                           f"{pred.shape3}; give the {option[2:]} map written with this prediction")
        data = moved
    key = read_map_record(vol.meta.get("descrip", ""))
    if key is None and option == "--uncertainty":  # no record of its kind: its name, as the module's node names it
        _not_named_another_kind(path)
    wanted = SIGMA_KEYS if option == "--uncertainty" else ("direction",)
    what = "the standard deviation map (mm^2/s)" if option == "--uncertainty" else "the _direction map (degrees)"
    if key is not None and key not in wanted:
        raise IQTError(f"{path}: its header reads '{vol.meta['descrip']}', not {what}; give {what} as {option}")
    theirs = MAP_RECORD.match(str(vol.meta.get("descrip", "")).strip())
    ours = MADE_BY.match(str(pred.meta.get("made_by", "")).strip())
    if theirs is not None and ours is not None and theirs["method"] != ours["method"] and vol.meta.get("method_known", True):
        raise IQTError(f"{path}: its header reads '{vol.meta['descrip']}', a map of {theirs['method']}, and the "
                       f"prediction's '{pred.meta['made_by']}'; give the {option[2:]} map written with this prediction")
    values = np.abs(data[np.isfinite(data) & (data != 0)])
    if key is None and values.size:
        top = float(np.percentile(values, 99))
        if option == "--uncertainty" and top > 0.1:
            # the Slicer module shows and saves sigma in um^2/ms, 1000 times mm^2/s (a Slicer audit: such a file was
            # asked whether it was the direction map, and only that)
            unit = (f" {NOT_SIGMA[0].upper()}{NOT_SIGMA[1:]}. A sigma map in um^2/ms (1000 times mm^2/s, as the Slicer module shows "
                    "and saves sigma)? say so with --uncertainty-unit um2/ms, or give the std map 'iqt upsample "
                    "--uncertainty' wrote." if top < 20 else "")
            raise IQTError(f"{path}: values up to {top:.3g} are not a tensor's standard deviation in mm^2/s (elements are "
                           "about 1e-3); is it the _direction map (degrees)? give it as --direction, and the std map as "
                           f"--uncertainty.{unit}")
        if option == "--direction" and top < 1:
            raise IQTError(f"{path}: values up to {top:.3g} are not angles in degrees; is it the std map (mm^2/s)? give "
                           "it as --uncertainty, and the _direction map as --direction")
    if option == "--uncertainty" and key is None and recorded_unit is None and brain is not None:
        _check_sigma_unit(path, data, pred, brain, unit_given)
    if pred_path is not None:  # once its grid and kind are known right: those refusals say more
        _same_run(path, option, pred_path)
    return data
