"""`iqt evaluate`: a prediction scored against its reference, per region (and its uncertainty maps' calibration)."""

from __future__ import annotations

from ...core.errors import IQTError
from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("evaluate", help="DT-RMSE, FA/MD errors, PSNR per region (and uncertainty calibration)")
    sp.add_argument("--pred", required=True, help="high-res prediction")
    sp.add_argument("--truth", required=True, help="high-res reference tensors")
    sp.add_argument("--mask", required=True, help="high-res brain mask")
    options.add_factor(sp)
    sp.add_argument("--uncertainty", help="per-voxel standard deviation map of the prediction")
    sp.add_argument("--direction", help="the prediction's direction uncertainty map (degrees; the _direction file "
                                        "'iqt upsample --uncertainty' writes), scored against the principal-direction error")
    sp.add_argument("--dwi", help="the reference's DWI, to report its noise floor beside the errors")
    sp.add_argument("--bval")
    sp.add_argument("--bvec")
    options.add_tensor_order(sp)
    sp.add_argument("--json", help="also write the metrics as JSON")
    sp.set_defaults(func=run)


def run(args):
    from ... import fileio
    from ...analysis import evaluation
    from ...core import grid
    from ...dmri import degrade, fit_noise

    f = grid.factors(args.factor)
    plan = fileio.Outputs(args.pred, args.truth, args.mask, args.uncertainty, args.direction, args.dwi)
    if args.dwi:
        plan.read(*fileio.bval_bvec_paths(args.dwi, args.bval, args.bvec))
    json_out = plan.add(args.json, fileio.JSON_SUFFIXES, "metrics") if args.json else None
    plan.check()
    pred = fileio.load_tensor(args.pred, args.tensor_order)
    truth = fileio.load_tensor(args.truth, args.tensor_order)
    mask = fileio.load_mask(args.mask, truth)
    shape = pred.shape3
    if any(t < p or t - p >= k for t, p, k in zip(truth.shape3, shape, f)) or any(s % k for s, k in zip(shape, f)):
        raise IQTError(
            f"the prediction {shape} is not the factor-{grid.text(f)} grid of the reference {truth.shape3}; "
            f"give the output of 'iqt upsample' on 'iqt degrade' of the same subject with the same --factor"
        )
    t = degrade.hr_crop(truth.data, f)
    m = degrade.hr_crop(mask.data, f)
    lr_mask = degrade.block_majority(m, f)
    unc = fileio.load_scalar(args.uncertainty).data if args.uncertainty else None
    if unc is not None and unc.shape[:3] != shape:
        raise IQTError(f"{args.uncertainty}: shape {unc.shape} differs from the prediction {shape}")
    direc = fileio.load_scalar(args.direction).data if args.direction else None
    if direc is not None and direc.shape != shape:
        raise IQTError(f"{args.direction}: shape {direc.shape} differs from the prediction {shape}; give the "
                       f"_direction map that 'iqt upsample --uncertainty' wrote beside this prediction")
    floor = None
    if args.dwi:
        dwi = fileio.load_dwi(args.dwi, args.bval, args.bvec)
        if dwi.shape3 != truth.shape3:
            raise IQTError(f"{args.dwi}: the DWI grid {dwi.shape3} differs from the reference {truth.shape3}")
        floor = fit_noise.noise_floor(degrade.hr_crop(dwi.data, f), dwi.bvals, dwi.bvecs, t, m)
    result = evaluation.evaluate(pred.data, t, m, lr_mask, f, uncertainty=unc, floor_std=floor, direction=direc)
    if json_out:
        fileio.write_json(json_out, result)
    for region in ("interior", "exterior"):
        row = result[region]
        extra = "".join(f", {k} {row[k]:.3f}" for k in ("noise_floor", "spearman", "within_2sigma") if row.get(k) is not None)
        print(f"{region}: DT-RMSE {row['dt_rmse']:.3f} (1e-5 mm^2/s), FA RMSE {row['fa_rmse']:.4f}, "
              f"MD RMSE {row['md_rmse']:.3f}, PSNR {row['psnr']:.2f} dB, principal-direction error "
              f"{row['angle_error']:.1f} deg (median, FA >= {evaluation.TRACKED_FA}), {row['n_voxels']} voxels{extra}")
    if "brain" in result:
        row = result["brain"]
        parts = [f"{k} {row[k]:.3f}" for k in ("spearman", "within_2sigma", "direction_spearman", "direction_within_2")
                 if k in row]
        print(f"whole brain: {', '.join(parts)}, {row['n_voxels']} voxels")
