"""An `iqt batch` cohort planned before any work: its subjects (--participant-label), their inputs there and
readable, the factor set each subject's header gives it, and the method (and model) for each set, with the paths
the workers are sent (apps/cli/batch.py `run` calls them)."""

from __future__ import annotations

import os

from ...core.errors import IQTError
from ...core.words import listed
from . import options


def _method_for(args, f, group=()):
    """(name, method, note) for the subjects `group` at factors `f`, checked before any work: one with no uncertainty
    map under --uncertainty, a missing, damaged or foreign model, or none for these factors, is one line (else a missing
    --model ends in an internal error, a foreign one fails every subject). The rule for factors without a model is the
    engine's (`methods.factor_choice.choose`, as iqt upsample and the Slicer module apply it), with --voxel-size's
    choice and a coarser one that has a model said for the group's first subject; `note`: where the default runs the
    interpolation baseline for lack of a learned model, what each subject's row says ("" else)."""
    from ... import methods
    from ...core import grid
    from ...methods.factor_choice import choose, model_hint

    voxel_size = _voxel_size(group) if args.voxel_size is not None else None
    defaulted = not args.method and not getattr(args, "model", None)
    name = None if defaulted else options.method_name(args, f, uncertainty=bool(args.uncertainty))
    choice = choose(name, f, model=getattr(args, "model", None), voxel_size=voxel_size,
                    target=args.voxel_size if voxel_size is not None else None, uncertainty=bool(args.uncertainty))
    if choice.refusal:
        text = choice.refusal
        if group and voxel_size is not None:  # the subjects the choice is theirs, named where it is said
            text = text.replace(f"chose {grid.describe(f)}", f"chose {grid.describe(f)} for {_named(group)}", 1)
        elif group:
            text = f"{_chosen_by(args)} chose {grid.describe(f)} for {_named(group)}; {text}"
        raise IQTError(text)
    name = choice.method
    method = methods.get(name, **options.method_settings(args))
    if args.uncertainty and not method.gives_uncertainty:
        raise IQTError(f"method {name!r} gives no uncertainty; "
                       + options.uncertainty_choices(f, voxel_size, drop='drop --uncertainty'))
    if args.device == "cuda" and method.requires_torch and not args.scheduler:  # local workers see this machine's GPUs
        from ...methods.cnn.inference import resolve_device

        resolve_device("cuda")
    if method.learned:
        try:
            method.load(f)
        except IQTError as exc:
            text, advice = str(exc), getattr(exc, "advice", None)
            if advice and (group or args.factor is not None):
                # one --factor for the cohort is along each subject's own voxel axes: a slice-first subject's thick
                # slices left as they were (a review: '--factor 1,1,3' refined one in-plane); without --factor and
                # --voxel-size each gets the model's own along its slice axis
                given = "--voxel-size" if args.voxel_size is not None else "--factor"
                along = ", a through-plane model's along that subject's thick-slice axis" if "thick-slice" in advice else ""
                text = text.replace(advice, f"leave {given} out (with --model each subject then runs at the model's "
                                            f"own factors{along})")
            if not group or (getattr(args, "model", None) and advice is None):  # a given model that does not load
                raise IQTError(text) from None  # (checksum, pickle): said as it is, not as factors the cohort got
            # the voxel size that gives a given model's own factors, as iqt upsample names it
            raise IQTError(f"{_chosen_by(args)} chose {grid.describe(f)} for {_named(group)}; {text}"
                           f"{model_hint(exc, choice)}") from None
    return name, method, choice.note


def _voxel_size(group):
    """The voxel size (mm) the subjects of `group` whose header is read share, None where none is read or they differ:
    a coarser --voxel-size said for one had been false for another (3x3x6 mm told 2.7, which gives it 2,2,3)."""
    import numpy as np

    from ...core.volume import voxel_sizes
    from ...fileio.sizes import header_affine

    sizes = [tuple(float(v) for v in voxel_sizes(a)) for a in map(header_affine, (it.path for it in group))
             if a is not None]
    if not sizes or any(not np.allclose(v, sizes[0], rtol=1e-3) for v in sizes[1:]):
        return None
    return sizes[0]


def factor_groups(args, items) -> list[tuple[tuple, list]]:
    """The cohort split by the factors each subject gets from its own header (--voxel-size, or a --model's own
    factors along the voxel axes its slice axis is stored in), in the order the factor sets first appear. A subject
    whose header cannot be read joins the first set (its run then fails with the reader's own line); one already at
    the voxel size is refused before any work, named."""
    import numpy as np

    from ...core import grid
    from ...core.volume import voxel_sizes
    from ...fileio.sizes import header_affine

    groups: dict[tuple, list] = {}
    unread, refused = [], []
    for it in items:
        affine = header_affine(it.path)
        if affine is None:
            unread.append(it)
            continue
        try:
            f = options.factors(args, voxel_sizes(affine), affine)
        except IQTError as exc:  # every such subject named, not the first only (a cohort audit)
            refused.append((it, exc, voxel_sizes(affine)))
            continue
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):  # a grid no orientation is read from: its reader
            unread.append(it)  # says what is wrong, in its subject's row (a review: an internal error for the cohort)
            continue
        groups.setdefault(tuple(int(x) for x in f), []).append(it)
    if refused:  # the others with their voxel sizes, each refused for its own reason (a review: "so are" claimed one)
        (it, exc, _), more = refused[0], [f"{o.prefix} ({'x'.join(f'{v:.3g}' for v in vs)} mm)" for o, _, vs in refused[1:]]
        also = f"; also refused at {_chosen_by(args)}: {listed(more, most=4)}" if more else ""
        them = "those subjects" if more else "that subject"
        raise IQTError(f"{it.prefix} ({it.as_typed(it.path)}): {exc}{also}; or leave {them} out of the cohort")
    if not groups:  # no header read: every subject fails with its reader's line, under a model's own factors or 2
        from ...fileio.model_files import factors_named

        own = factors_named(args.model) if getattr(args, "model", None) and args.voxel_size is None else None
        groups[tuple(own) if own is not None else grid.factors("2")] = []
    first = next(iter(groups))
    joined = {id(it) for it in groups[first] + unread}
    groups[first] = [it for it in items if id(it) in joined]
    args.unread = {it.prefix for it in unread}  # not chosen by their header: left out of the line naming the chosen
    return list(groups.items())


def _participants(args):
    """The subjects of the input, or with --participant-label those participants of the BIDS dataset (a list names its
    own), chosen before the subjects are compared (a participant left out had been refused as another's copy)."""
    from pathlib import Path

    from .. import batch

    if args.participant_label and Path(args.input).exists() and not Path(args.input).is_dir():
        raise IQTError(f"--participant-label selects participants of a BIDS dataset; {args.input} is a list, which names "
                       "its subjects itself: list only those")
    return batch.find_items(args.input, args.participant_label)


def _unusable(path) -> str | None:
    """Why the input file at `path` cannot be read (missing, no regular file, no read permission), None if it can."""
    from ...fileio.paths import not_a_file

    if not os.path.exists(path):
        return "a symbolic link that leads to no file" if os.path.islink(path) else "not found"
    kind = not_a_file(path)
    if kind is not None:
        return f"is {kind}, not a file"
    return None if os.access(path, os.R_OK) else "cannot be read (permission denied)"


def check_inputs_there(items) -> None:
    """Every subject's input file (and a list line's --mask) is there and readable, before the output folder is made
    and the cluster starts: a missing one had failed its subject only after the cluster's start (10-16 s), the run
    ending with exit 1 and a partial derivatives folder. A DWI's .bval and .bvec too (its JSON sidecar is optional:
    fileio/gradients.py sidecar_slices)."""
    bad = []
    for it in items:
        files = [(it.path, ""), (it.mask, "")]
        if it.kind == "dwi":
            files += [(str(g), f" (the {what} of {it.path})") for g, what in zip(it.gradients(), ("b-values", "b-vectors"))]
        why = next(((p + of, w) for p, of in files if p and (w := _unusable(p)) is not None), None)
        if why is not None:
            bad.append((it, *why))
    if not bad:
        return
    it, path, why = bad[0]
    where = f"{it.line}: " if it.line else ""
    fix = "the list (a relative path is read from the list's folder)" if it.line else "the dataset"
    raise IQTError(f"{where}{it.as_typed(str(path))}: {why}; {len(bad)} of the {len(items)} subjects "
                   f"{'have an input' if len(bad) > 1 else 'has its input'} missing or unreadable: fix {fix} and rerun "
                   "(nothing was started or written)")


def _chosen_by(args) -> str:
    return f"--voxel-size {args.voxel_size:g}" if args.voxel_size is not None else f"--model {args.model}'s own factors"


def _named(group, most: int = 4, unread=()) -> str:
    """The subjects of `group` by name, the first `most` of them and how many more; those in `unread` (no header read,
    so no factors chosen for them) said apart."""
    names = [it.prefix for it in group if it.prefix not in unread]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    left = len(group) - len(names)
    return (", ".join(names[:most]) + more or "none") + (f"; {left} whose header could not be read, run at these to say why"
                                                          if left else "")


def _absolute(path):
    """A path the workers can open: a --scheduler's workers need not share this shell's folder (a relative --model
    fails every subject with "model file not found"; so do a relative list's inputs)."""
    return None if path is None else os.path.abspath(path)


def _absolute_item(item):
    """`item` with its files as absolute paths, for the workers (see `_absolute`: a relative list, mask or output folder
    failed every subject, 'file not found', on a --scheduler's workers started elsewhere)."""
    import dataclasses

    moved = {k: _absolute(getattr(item, k)) for k in ("path", "mask", "bval", "bvec") if getattr(item, k)}
    typed = tuple((moved[k], getattr(item, k)) for k in moved if moved[k] != getattr(item, k))
    return dataclasses.replace(item, typed=typed, **moved)
