"""`iqt track`: deterministic DTI tractography from a seed ROI."""

from __future__ import annotations

from ...fileio.staging import say  # 'wrote' lines: printed once the run's outputs are in place
from . import options


SCALING_HELP = ("The lengths not given (--step, --min-length, --max-length) are their human defaults on a brain at least "
                "120 mm long (the largest extent of the voxels holding a tensor), and scaled by its length over 120 mm on a "
                "smaller one (a rodent's), said in one line.")


def add_parsers(sub) -> None:
    sp = sub.add_parser("track", help="deterministic DTI tractography (principal direction, FA stop) from a seed ROI")
    sp.add_argument("input", help="tensor volume (NIfTI SYMMATRIX, 4D with --tensor-order, or Slicer .nrrd)")
    sp.add_argument("--seeds", required=True, help="seed ROI (NIfTI mask, any grid in the same world space)")
    sp.add_argument("-o", "--output", required=True, help="tractogram: .trk, or VTK polydata .vtk/.vtp (Slicer loads both)")
    sp.add_argument("--also", action="append", help="also write the same streamlines here (.trk/.vtk/.vtp; repeatable)")
    sp.add_argument("--mask", help="tracking mask on the tensor grid, or on the low-res grid an upsampled input was made "
                                   "from (tracking stops outside it)")
    options.add_tensor_order(sp)
    sp.add_argument("--fa-threshold", type=float, default=0.2, help="stop where FA falls below this (default 0.2)")
    sp.add_argument("--step", type=float, help="step length in mm (default 0.5 on a human brain, scaled to a smaller one)")
    sp.add_argument("--angle", type=float, default=45.0, help="largest turn per step in degrees (default 45)")
    sp.add_argument("--density", type=int, default=1, help="seeds per voxel axis in each seed voxel (default 1)")
    sp.add_argument("--min-length", type=float, help="drop streamlines shorter than this, mm (default 10 on a human brain, "
                                                     "scaled to a smaller one)")
    sp.add_argument("--max-length", type=float, help="drop streamlines longer than this, mm (default 250 on a human brain, "
                                                     "scaled to a smaller one): they are left out, not cut short, which "
                                                     "would end them inside the tract")
    sp.epilog = SCALING_HELP
    sp.set_defaults(func=run)


def run(args):
    from ... import fileio
    from ...analysis import tractography
    from ...core import tensor_checks
    from ...fileio.sizes import check_inputs
    from ...methods.inputs import check_tensor_input

    plan = fileio.Outputs(args.input, args.seeds, args.mask)
    out = plan.add(args.output, tractography.TRACT_SUFFIXES, "tractogram")
    extra = [plan.add(p, tractography.TRACT_SUFFIXES, "tractogram") for p in (args.also or [])]
    plan.check()
    s = tractography.TrackingSettings(fa_threshold=args.fa_threshold, step=args.step, angle=args.angle,
                                      density=args.density, min_length=args.min_length,
                                      max_length=args.max_length).check()
    check_inputs("track", [args.input, args.seeds, args.mask])  # from their headers, before any data is read
    seeds = fileio.load_mask(args.seeds, seeds=True)
    if (s.step is None) == (s.max_length is None):  # points per streamline known before the brain is (scaling keeps them)
        tractography.check_memory(int(seeds.data.sum()) * s.density**3, s.human())
    with tensor_checks.missing_read_as(tensor_checks.MISSING_AS_TRACKED):  # its NaN voxels' warning says what tracking does
        dti = fileio.load_tensor(args.input, args.tensor_order, getattr(args, "order_stated", None))
    check_tensor_input(dti)  # the file named, and the order that reads it where another one does
    mask = fileio.load_mask_refined(args.mask, dti, "the tensor grid") if args.mask else None
    s = s.resolved(tractography.tensor_support(dti), dti.affine).check()  # lengths not given scaled to the brain
    line = tractography.scaling_line(s)
    if line:
        print(line)
    points = tractography.seeds_inside(tractography.seeds_from_mask(seeds, s.density), dti.shape3, dti.affine)
    lines = tractography.track(dti, points, s, mask=None if mask is None else mask.data)
    for p in [out, *extra]:
        tractography.save_tracts(lines, dti, p)
    say(f"wrote {', '.join(map(str, [out, *extra]))}: {len(lines)} streamlines from {len(points)} seeds")
