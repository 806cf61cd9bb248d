"""`iqt track`: deterministic DTI tractography from a seed ROI."""

from __future__ import annotations

import warnings

from ...core.errors import IQTWarning
from ...core.i18n import _
from ...core.words import counted
from ...fileio.staging import say  # 'wrote' lines: printed once the run's outputs are in place
from . import options


SCALING_HELP = ("The lengths not given (--step, --min-length, --max-length) are their human defaults on a brain at least "
                "120 mm long (the largest extent of the voxels holding a tensor), and scaled by its length over 120 mm on a "
                "smaller one (a rodent's), said in one line.")


def add_parsers(sub) -> None:
    sp = sub.add_parser("track", help="deterministic DTI tractography (principal direction, FA stop) from a seed ROI")
    sp.add_argument("input", help="tensor volume (NIfTI SYMMATRIX, 4D with --tensor-order, Slicer .nrrd, or MRtrix .mif)")
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
    from ...fileio import tracts
    from ...fileio.sizes import check_inputs
    from ...methods.inputs import check_tensor_input, whole_field, without_tiny_background

    plan = fileio.Outputs(args.input, args.seeds, args.mask)
    out = plan.add(args.output, tracts.TRACT_SUFFIXES, "tractogram")
    extra = [plan.add(p, tracts.TRACT_SUFFIXES, "tractogram") for p in (args.also or [])]
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
    # an int16 file's background (its intercept) read as the zeros it stands for, as upsample reads it: its tiny
    # tensors have any FA, and streamlines ran up to 30 mm into it (a tool-inputs audit)
    whole = whole_field(dti)
    dti = without_tiny_background(dti, whole)
    mask = fileio.load_mask_refined(args.mask, dti, "the tensor grid") if args.mask else None
    # the file named, and the order that reads it where another one does; judged inside --mask, as upsample judges it
    # (checked before the mask was read, its advice 'give --mask' could not be followed: a review)
    check_tensor_input(dti, mask)
    if mask is None:  # a fit over the whole field, or upsample's output of one as its header records it
        warn_whole_field(dti, args.input, whole)
    check_seed_grid(args.seeds, seeds, dti, args.input)
    s = s.resolved(tractography.tensor_support(dti), dti.affine).check()  # lengths not given scaled to the brain
    line = tractography.scaling_line(s)
    if line:
        print(line)
    tractography.warn_long_step(s, dti.voxel_size)
    points = tractography.seeds_inside(tractography.seeds_from_mask(seeds, s.density), dti.shape3, dti.affine)
    lines = tractography.track(dti, points, s, mask=None if mask is None else mask.data)
    outside = 0 if mask is None else tractography.points_outside(points, mask)
    if not lines and len(points):  # an empty tractogram, exit 0 and no word why (a first-contact audit)
        why = tractography.no_streamline_reason(s, outside, len(points), mask is not None)
        warnings.warn(f"no streamline was tracked from the {counted(len(points), 'seed')}: {why}", IQTWarning, stacklevel=2)
    for p in [out, *extra]:
        tracts.save_tracts(lines, dti, p)
    said = f" ({outside} of them outside the tracking mask, where no streamline starts)" if outside else ""
    say(f"wrote {', '.join(map(str, [out, *extra]))}: {counted(len(lines), 'streamline')} from {counted(len(points), 'seed')}{said}")


def warn_whole_field(dti, input_path, whole: bool) -> None:
    """One warning where no --mask is given and the tensors reach beyond the brain: fitted without a brain mask (`iqt
    degrade --style unmasked`, dtifit without -m; `whole`: methods.inputs.whole_field) or upsampled from such a fit
    (its header records the brain estimated from the tensors' MD that iqt upsample kept it to, with the fits around it:
    records.recorded_support). Seeds in the scalp and the background's noise fits, whose FA is anything, seeded and
    carried streamlines there, 37 % of their points outside the brain on the 3 mm ortho dev scan's unmasked fit,
    without a word (a tractography audit). A whole field is said where more than BEYOND_BRAIN of its filled voxels lie
    outside the brain told from its MD (methods.inputs.brain_within_box); an output is not judged by that share, which
    read 15-47 % on upsampled masked fits of real scans at SNR 5-10 and on a clean one (docs/command-line.md, iqt
    track), nor is a masked fit: its CSF layer reads outside the brain told from MD."""
    from ...core.errors import IQTWarning
    from ...dmri.dti import ESTIMATED_SUPPORT

    if dti.meta.get("support") == ESTIMATED_SUPPORT:
        # pieces (split at "; ") of at most PIECE_LIMIT characters, as a long warning is said over several lines
        # (methods/base.py warning_lines): as one line it had run to 439 characters after the file's name
        warnings.warn(f"{input_path}: " + _("the tensors reach beyond the brain and no --mask was given; {iqt_upsample} "
                                            "made them from a fit without a brain mask (as the file's header records); "
                                            "{iqt_upsample} kept them to the brain estimated from the tensors' MD with "
                                            "the scalp and background fits around it; streamlines seeded or passing "
                                            "there, beyond the brain, are tracked through the scalp and the "
                                            "background's noise fits; give "
                                            "--mask with a brain mask (on this grid or the low-res one) to keep them in "
                                            "the brain").format(iqt_upsample="iqt upsample"), IQTWarning, stacklevel=2)
        return
    if not whole:
        return
    from ...methods.inputs import brain_within_box

    brain = brain_within_box(dti)
    if brain is None:
        return
    import numpy as np

    filled = np.any(np.asarray(dti.data) != 0, axis=-1)
    outside = int((filled & ~brain.data).sum())
    if outside <= BEYOND_BRAIN * int(filled.sum()):
        return
    warnings.warn(f"{input_path}: the tensors reach well beyond the brain (fitted without a brain mask: {outside} of "
                  f"{int(filled.sum())} voxels lie outside the brain told from the tensors' MD) and no --mask was given: "
                  f"streamlines seeded or passing there are tracked through the scalp and the background's noise fits; "
                  f"give --mask with a brain mask to keep them in the brain", IQTWarning, stacklevel=2)


BEYOND_BRAIN = 0.10  # of a whole-field fit's filled voxels outside the brain told from its MD (warn_whole_field)


def check_seed_grid(path, seeds, dti, input_path) -> None:
    """A seed ROI whose header places it nowhere (a NIfTI with qform and sform codes 0) is refused unless it is on the
    tensor grid already: read on nibabel's default grid, its seeds had landed about 22 mm from where they were drawn,
    under a warning about left and right only (a tractography audit)."""
    from ...core.errors import IQTError
    from ...core.grid import same_affine
    from ...fileio.nifti import holds_orientation

    if holds_orientation(path) or (seeds.shape3 == dti.shape3 and same_affine(seeds.affine, dti.affine)):
        return
    raise IQTError(f"{path}: the seed ROI's header holds no orientation (qform and sform codes 0), so where its seeds lie "
                   f"in the tensors' space is unknown; give it the grid it was drawn on (e.g. 'fslcpgeom {input_path} "
                   f"{path}' where that is the tensors' grid)")
