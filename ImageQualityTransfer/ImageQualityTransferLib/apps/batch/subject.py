"""One subject of a cohort: fitted if a DWI, upsampled, its QC measured and every output written with its sidecar;
the same function whatever runs it (this process, a LocalCluster or a remote scheduler)."""

from __future__ import annotations

import datetime
import errno
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from ...core.errors import IQTError, IQTWarning
from ...core.version import __version__
from ...fileio.model_files import build
from ...fileio.paths import Outputs
from ...fileio.staging import all_or_none, make_folder
from ...fileio.writing import write_json
from ...methods.base import warning_lines
from .items import Item
from .lock import holds
from ...fileio.records import map_record
from .records import (DESCRIPTIONS, PIPELINE, UNITS, Settings, add_file_records, check_same_input, expected_maps,
                      figure_path, file_record, finished, identity, input_hashes, method_label, other_build, output_names,
                      output_order, remove_earlier_copies, res_label, sidecar, sources, stale_maps)


_METHODS: dict = {}
_METHODS_LOCK = threading.Lock()  # a worker's threads share the cache


def _method(s: Settings):
    """The method object, made once per worker process (learned models load once) for each model file's contents: a
    model retrained at the same path is loaded anew (a code-health review: the old weights ran while the sidecars
    recorded the new file's SHA256, which the main process hashes: apps/cli/batch.py)."""
    from ... import methods

    key = (s.method, s.model, s.mc_samples, s.device, s.tta, s.model_sha256 or _file_state(s.model),
           s.noisy_model_sha256)
    with _METHODS_LOCK:
        if key not in _METHODS:
            for old in [k for k in _METHODS if k[:5] == key[:5]]:  # the replaced file's weights are not kept in memory
                del _METHODS[old]
            method = methods.get(s.method, model=s.model, samples=s.mc_samples, device=s.device, tta=s.tta)
            if method.learned and s.model_file:
                _pin(method, s)
            _METHODS[key] = method
        return _METHODS[key]


def _pin(method, s: Settings) -> None:
    """The models the run recorded (s.model_file, s.noisy_model_file) loaded by path, their SHA256 checked against the
    run's: a worker had looked the shipped model up in the registry as it is now, and a model registered mid-run ran
    under the first one's SHA256 and build (apps/cli/batch.py records them; the sidecars stamp them)."""
    from ...core import grid
    from ...fileio.model_files import NOISY

    f = grid.factors(s.factor)
    shipped = method.model_path is None
    model, path = _recorded(method, s.model_file, s.model_sha256, f, None if shipped else "given")
    own = grid.factors(model.factor)
    method._loaded[own] = model
    if shipped:  # the shipped one: the registry is not read again for it
        method.model_file = lambda factor, _p=path: _p  # the header's name (methods/learned.py _model_named)
        method.factor_sets = lambda: [own]
        twin = None
        if s.noisy_model_file:
            noisy, path = _recorded(method, s.noisy_model_file, s.noisy_model_sha256, f, NOISY)
            twin = type(method)(model=path, samples=method.samples, seed=method.seed, device=method.device,
                                tta=method.tta)
            twin.model_for = NOISY
            twin._loaded[grid.factors(noisy.factor)] = noisy
        method._twins[f] = twin  # None: none was recorded, none registered since runs


def _recorded(method, path: str, sha: str | None, f: tuple, kind: str | None):
    """(model, its file): the model at `path`, verified by its sidecar's SHA256 (the family's model_io), which must be
    the run's `sha`. Where `path` is not on this worker (a cluster's worker installs the same build at another path: a
    review's every subject had failed 'gone or changed', which no rerun fixes), the worker's own registry entry for
    the method, factors `f` and input `kind` (None: the default model, NOISY: the noisy-input one; "given": a --model,
    which has none) serves if its SHA256 is the run's."""
    if not os.path.exists(path):
        return _own_copy(method, path, sha, f, kind)
    try:
        model = method._read(path)
    except IQTError as exc:
        raise IQTError(f"the model file {path} is gone or changed since the run started (a registration or a "
                       f"retraining?): {' '.join(str(exc).split())}; rerun the same command") from None
    got = (getattr(model, "meta", None) or {}).get("sha256")
    if sha and got != sha:
        raise IQTError(f"the model file {path} changed since the run started (a registration or a retraining? SHA256 "
                       f"{str(got)[:12]}..., the run's {sha[:12]}...); rerun the same command")
    return model, path


def _own_copy(method, path: str, sha: str | None, f: tuple, kind: str | None):
    """(model, its file) from this worker's registry where the run's model file `path` is not here and the worker's
    entry for the same method, factors and input kind has the run's SHA256; else the IQTError that says which."""
    import socket

    from ...core import grid

    own, got = None, None
    if kind != "given" and sha:
        io = method._model_io()
        try:
            order = grid.axis_order(f, io.shipped_factor_sets(method.name, kind=kind))
            own = None if order is None else io.shipped_for(method.name, tuple(f[i] for i in order), kind)
            model = None if own is None else method._read(own)
        except (IQTError, OSError):
            own = model = None
        got = (getattr(model, "meta", None) or {}).get("sha256") if model is not None else None
        if got == sha:
            return model, str(own)
    theirs = (f"; its own {method.name} model there ({own}) is another (SHA256 {str(got)[:12]}..., the run's "
              f"{sha[:12]}...)" if own is not None and got else "")
    fix = ("pass --model with a path every worker sees" if kind == "given"
           else "install the same build's models on every worker (or pass --model with a path every worker sees)")
    raise IQTError(f"the model file {path} is not at that path on the worker that ran this subject "
                   f"({socket.gethostname()}){theirs}: {fix}, or put the file back if it was removed since the run "
                   "started; then rerun the same command")


def _file_state(path) -> tuple | None:
    """A model file's (inode, size, modification time) where no SHA256 was given: a file replaced there differs."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def snr_estimate(dwi, mask: np.ndarray) -> float:
    """Mean of the first b0 in the brain over its standard deviation in the background (outside the mask dilated
    by three voxels, zero-filled voxels left out); NaN when there is no usable background."""
    from scipy import ndimage

    from ...dmri.dti import B0_THRESHOLD

    b0 = np.asarray(dwi.data[..., int(np.flatnonzero(dwi.bvals <= B0_THRESHOLD)[0])], dtype=np.float64)
    bg = ~ndimage.binary_dilation(mask, iterations=3) & (b0 != 0)
    if bg.sum() < 100:
        return float("nan")
    sd = float(b0[bg].std())
    return float(b0[mask].mean() / sd) if sd > 0 else float("nan")


def _device(s: Settings) -> dict:
    """{"Device": "cpu" or "cuda"} where a network ran (--device auto resolved on the worker that ran it, as `iqt
    upsample`'s run record says it); {} for the other methods. Not part of the identity: a subject is not redone on
    another device."""
    from ... import methods

    if not methods.method_class(s.method).requires_torch:
        return {}
    from ...methods.cnn.inference import resolve_device

    return {"Device": resolve_device(s.device).type}


def compute(item: Item, s: Settings) -> tuple[dict, dict]:
    """(volumes by output key, QC metrics) for one subject: fit if a DWI, upsample, uncertainty, FA and MD; and under
    "lowres" the low-res tensors upsampled (for the QC figure)."""
    from ... import fileio
    from ...core import grid, tensors
    from ...core.volume import Volume
    from ...dmri.dti import brain_mask
    from ...dmri.fit_checks import fit_with_checks
    from ...dmri.outliers import blind_count
    from ...methods.base import predict_within
    from ...methods.inputs import input_noise_index, whole_field, without_tiny_background

    snr, whole, given, checks = float("nan"), None, None, {}
    if item.kind == "dwi":
        if item.tensor_order:
            raise IQTError(f"--tensor-order {item.tensor_order} on the line of a DWI subject ({item.path}): a DWI is "
                           "fitted here; leave it out")
        dwi = fileio.load_dwi(item.path, *item.gradients())
        from ...fileio import slices

        # a BIDS sidecar's slice gap, as iqt fit keeps it for iqt upsample: one of the subject's notes
        slices.warn_if_gapped(item.path, dwi.affine, slices.from_sidecar(item.path, dwi.affine))
        whole = dwi
        if s.bmax is not None:
            from ...dmri.dti import keep_bmax

            dwi = keep_bmax(dwi, s.bmax)
        mask = fileio.load_mask(item.mask, dwi, s.factor) if item.mask else brain_mask(dwi)
        if mask.shape3 != dwi.shape3:  # the line's mask on the output's grid (as a tensor subject's may be, and as the
            # README says; it had been refused): fitted in every block it touches, the output then kept to it
            from ...dmri.degrade import block_average

            given = mask
            mask = Volume(block_average(np.asarray(given.data, np.float32), s.factor) > 0, dwi.affine, "mask")
        if whole is not dwi:  # read on every volume: a shell --bmax drops may hold the moved b0s
            from ...dmri.b0s import check_b0_order

            check_b0_order(whole, mask)
        del whole
        if item.mask:
            from ...dmri.mask_cut import warn_if_cut

            warn_if_cut(dwi, mask, f"the mask {item.mask}", "give the subject a mask that covers the whole brain (e.g. "
                        "from 'iqt mask'), or none to fit in that estimate")
        # iqt fit's checks, said in the subject's notes and counted in its QC row
        bvec = fileio.bval_bvec_paths(item.path, item.bval or None, item.bvec or None)[1]  # named as iqt fit names it
        done = fit_with_checks(dwi, mask, s.exclude_outliers, str(bvec))
        lr, found, table = done.tensor, done.outliers, done.gradients
        # with 6 DW directions the fit check sees nothing (dmri/outliers.py blind_count): n/a, not a clean 0
        blind = blind_count(dwi.bvals, dwi.bvecs)
        checks = {"fit_outlier_pairs": None if blind else found.pair_count,
                  "fit_outlier_volumes": None if blind else len(found.volumes),
                  # every other volume disagrees, none named (dmri/outliers.py ALTERNATE_Z): not a clean 0 either
                  "fit_halves_disagree": bool(found.halves_disagree),
                  "b0_shift_vox": round(float(np.linalg.norm(done.b0_shift)), 3), "b0_check": found.b0_levels,
                  # ok, n/a (too little white matter) or the correction the fibres favour; its score over the table's
                  "bvec_check": table.record, "bvec_ratio": round(table.ratio, 3)}
        snr = snr_estimate(dwi, mask.data)
        del dwi
    else:
        try:
            lr = fileio.load_tensor(item.path, item.tensor_order or s.tensor_order,
                                    True if item.tensor_order else s.order_stated)  # a list line's own order is said
        except IQTError as exc:
            raise IQTError(_order_in_batch_words(str(exc), item, s)) from None
        whole = whole_field(lr)
        lr = without_tiny_background(lr, whole)
        inside = np.any(lr.data != 0, axis=-1)  # the rule `iqt upsample` reads a tensor file's support by
        mask = None if whole or not inside.any() else Volume(inside, lr.affine, "mask")
        if item.mask:  # the line's own mask, on the input's grid or the output's (as iqt upsample --mask)
            given = fileio.load_mask(item.mask, lr, s.factor)
    method = _method(s)
    brain_from = "mask" if item.mask else "dwi" if item.kind == "dwi" else "tensor"
    if given is not None:
        pred, mask = predict_within(method, lr, s.factor, given, uncertainty=s.uncertainty, direction=s.uncertainty)
    else:
        if mask is None:  # tensors over the whole field of view: the brain estimated from them (said in one warning)
            mask = method.support(lr, whole)
            brain_from = "estimated"
        pred = method.predict(lr, s.factor, mask, uncertainty=s.uncertainty, direction=s.uncertainty)
    if item.kind == "dti":
        checks = {"bvec_check": frame_record(lr, s)}
    t = pred.tensor
    brain = np.ones(t.shape3, bool) if mask is None else grid.repeat_blocks(np.asarray(mask.data, bool), s.factor)
    if given is not None and given.shape3 == t.shape3:
        brain = np.asarray(given.data, bool)
    vols = {"tensor": t, "fa": t.replace(data=tensors.fa(t.data).astype(np.float32), kind="scalar"),
            "md": t.replace(data=tensors.md(np.asarray(t.data, np.float64)).astype(np.float32), kind="scalar"),
            "mask": t.replace(data=brain, kind="mask")}
    if s.uncertainty:
        vols.update(pred.maps())
    written = fileio.write_order(fileio.as_read(lr), output_order(item, s))  # dipy: 4D or 5D as the file came in
    vols["tensor"] = t.replace(meta={**t.meta, "written": written})
    vols["lowres"] = lr
    inside = np.ones(lr.shape3, bool) if mask is None else np.asarray(mask.data, bool)
    vox = lr.voxel_size
    # the brain's volume from the mask as given: one on the output's grid had been read as the low-res blocks it
    # touches (the run's mask, cover=True), 15 % more (a cohort audit: 1,402.7 ml for a 1,215.3 ml mask)
    ml = (float(np.count_nonzero(given.data) * np.prod(t.voxel_size) / 1000.0) if given is not None
          and given.shape3 == t.shape3 else float(inside.sum() * np.prod(vox) / 1000.0))
    qc = {"voxel_mm": "x".join(f"{v:.2f}" for v in vox), "voxel_mm3": float(np.prod(vox)), "snr": snr,
          "brain_ml": ml, "brain_from": brain_from,
          "median_std": float(np.median(pred.std.data[brain])) if s.uncertainty and pred.std is not None else float("nan"),
          # a negative eigenvalue: MD or FA there is not a measurement (the FA map's 1.0 can hide it)
          "nonphysical_pct": float(100 * np.mean(tensors.distance_to_physical(t.data[brain]) > 0)) if brain.any() else 0.0,
          **checks}
    # a learned method read it to choose its model (methods/base.py, _for_noise); interpolation did not
    index = t.meta.get("noise_index")
    if index is None and not (mask is None and brain_from == "estimated"):  # no brain found: background fits only
        # in the unit the brain was estimated in (its meta's md_unit), as the learned methods read it: in the field's
        # background unit a clean 9 mm unmasked input's row read 0.097, espcn's 0.060 (a review)
        index = input_noise_index(lr, inside, brain_from == "estimated",
                                  mask.meta.get("md_unit") if brain_from == "estimated" and mask is not None else None)
    qc["noise_index"] = float("nan") if index is None else index
    if s.uncertainty:  # the factor its sigma maps took for that noise, as iqt upsample's run record holds it (a review:
        # qc.tsv's median_std_mm2s had read the scaled sigma with no word of the factor)
        qc["noise_std_scale"] = round(float(t.meta.get("noise_std_scale", 1.0)), 4)
    # the failed fits the subject's warning names (a cavity's), every uncertainty map raised there, as iqt upsample's
    # run record counts them: a cohort's table had said it only in notes, its row white (a cohort audit)
    qc["failed_fits_flagged"] = int(t.meta.get("failed_fits_flagged", 0))
    qc["holes_flagged"] = int(t.meta.get("holes_flagged", 0))  # the enclosed holes filled, every map raised there
    return vols, qc


def frame_record(lr, s: Settings) -> str:
    """`iqt upsample`'s frame check of a tensor file read in another tool's order (methods/inputs.py check_frame, its
    warning one of the subject's notes), after the input's checks have passed, as upsample runs it (a cohort audit:
    batch ran dtifit files with mirrored directions without a word): the suspected correction's key, "ok", "not
    checked" (--no-frame-check), "not judged (noise)" (methods.inputs.FRAME_NOISE), or "n/a" where it is not judged (a file in this tool's order, a slab or too little
    white matter)."""
    from ...methods.inputs import check_frame, frame_checked

    if not frame_checked(lr):  # the files iqt upsample checks: another tool's 4D order, a 5D file it did not upsample
        return "n/a"
    if not s.frame_check:  # told apart from "not judged": a rerun without the option does not check it again
        return "not checked"
    order = lr.meta.get("order")
    return check_frame(lr, order if order != "nifti" else None) or "n/a"


FRAME_NOTE_END = "--no-frame-check skips this check"  # how the frame check's warning ends (methods/inputs.py)
FRAME_NOTE_OPENING = "the tensors' directions look mirrored or turned on this grid"  # and how it opens


def _without_frame_warning(notes: list) -> list:
    """`notes` without the frame check's warning: every note from the one that opens it to the one that ends it, as it
    is said over several (methods/base.py warning_lines); a note of an earlier run holding all of it, that one."""
    out, inside = [], False
    for note in notes:
        inside = inside or FRAME_NOTE_OPENING in str(note)
        if not inside:
            out.append(note)
        inside = inside and not str(note).endswith(FRAME_NOTE_END)
    return out


def _frame_on_skip(item: Item, s: Settings, qc: dict, notes: list) -> tuple[dict, list]:
    """A skipped subject's QC row and notes as this run's frame check option has them (the option is not part of what
    a rerun compares): under --no-frame-check its stored frame warning is not said again (the row keeps its verdict,
    as the sidecar does); without it, a tensor subject done under --no-frame-check ("not checked") is checked now on
    its input, which is the one its outputs came from (the skip compared its hashes), without redoing it: the row and
    notes of this run say the verdict, its sidecar keeps what its own run recorded."""
    if not s.frame_check:
        return qc, _without_frame_warning(notes)
    if item.kind != "dti" or qc.get("bvec_check") != "not checked":
        return qc, notes
    from ... import fileio
    from ...methods.inputs import whole_field, without_tiny_background

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IQTWarning)
        try:  # read as when it ran; a skipped subject does not fail for its check: it stays "not checked"
            lr = fileio.load_tensor(item.path, item.tensor_order or s.tensor_order,
                                    True if item.tensor_order else s.order_stated)
            verdict = frame_record(without_tiny_background(lr, whole_field(lr)), s)
        except (IQTError, OSError):
            return qc, notes
    said = [item.as_typed(_in_batch_words(" ".join(str(w.message).split()))) for w in caught
            if issubclass(w.category, IQTWarning)]  # the input's other notes were stored when it ran
    return {**qc, "bvec_check": verdict}, notes + [line for n in said if n.endswith(FRAME_NOTE_END)
                                                   for line in warning_lines(n)]  # as its run says it (run_subject)


def qc_figure(vols: dict, s: Settings, item: Item, path: Path, estimated: bool = False) -> None:
    """The subject's picture on the cohort's QC page (qc.html): colour FA of its input (shown by nearest) and output,
    and the output's uncertainty, on the axial slice through the brain's centre (figures.qc_strip). Only that slice is put in
    canonical axes: a whole volume's copy would cost a worker hundreds of MB. `estimated`: the brain mask was estimated
    from unmasked tensors, with scalp and background fits: the slice goes through its white matter's centre."""
    from ...core import grid
    from ...core.orientation import Reorientation
    from .. import figures

    t, lr = vols["tensor"], vols["lowres"]
    ornt = Reorientation.to_canonical(t.affine).ornt
    a = int(np.flatnonzero(ornt[:, 0] == 2)[0])  # the stored axis nearest S
    brain = np.asarray(vols["mask"].data, bool)
    wm = None
    if estimated:
        from ...dmri.dti import inside_rim

        wm = figures.white_matter_centre(t.data, inside_rim(brain, t.voxel_size), exact=True)
    middle = (float(np.median(np.nonzero(brain)[a])) if brain.any() else (brain.shape[a] - 1) / 2) if wm is None \
        else wm[a]
    n = brain.shape[a]
    # cut to a voxel as the canonical array would be (centre_voxel): a flipped axis had shown the next slice (a review)
    k = int(middle) if ornt[a, 1] > 0 else n - 1 - int(n - 1 - middle)
    f = grid.factors(s.factor)
    across = tuple(1 if i == a else f[i] for i in range(3))
    shift = np.eye(4)
    shift[a, 3] = k

    def slab(arr, i):
        return np.take(np.asarray(arr), [i], axis=a)

    columns = [("input (nearest)", grid.repeat_blocks(slab(lr.data, k // f[a]), across)),
               (method_label(s), slab(t.data, k))]
    std = vols.get("std")
    figures.stored_panels(columns, t.affine @ shift, path, slab(vols["mask"].data, k),
                          {method_label(s): slab(std.data, k)} if std is not None else None, draw=figures.qc_strip,
                          title=f"{item.prefix}: {method_label(s)} x{grid.text(s.factor)}, axial slice {'ijk'[a]} = {k} "
                          "(patient R on screen left)")


def _in_batch_words(note: str) -> str:
    """An engine warning with `iqt upsample`'s --mask put as a list line's (batch has no --mask of its own), and `iqt
    fit`'s --exclude-outliers as batch's own."""
    return note.replace("give --mask with a brain mask", "end the subject's line in the list with --mask and a brain mask") \
        .replace("rerun 'iqt fit' with --exclude-outliers", "rerun this 'iqt batch' with --exclude-outliers (which redoes "
                 "every DWI subject)") \
        .replace("(iqt upsample's --voxel-size MM picks them)", "(iqt batch --voxel-size MM picks them for each subject)") \
        .replace("--no-frame-check skips this check", "iqt batch --no-frame-check skips this check")


def _order_in_batch_words(reason: str, item: Item, s: Settings) -> str:
    """A tensor file's refusal of the command line's --tensor-order ("leave it out": a 5D or NRRD file) with how to
    keep it for the list's other files: the subject's own line's order comes first (a cohort audit: leaving it out, as
    said, would have refused every dtifit file of the list)."""
    if item.tensor_order or s.tensor_order == "nifti" or "leave" not in reason or " out" not in reason:
        return reason
    own = "--tensor-order nifti" if item.path.lower().endswith((".nrrd", ".nhdr")) else \
        "its own order: --tensor-order dipy for dipy_fit_dti's file, nifti for a file iqt or ANTs wrote"
    return (f"{reason}; the command line's --tensor-order {s.tensor_order} applies to every tensor file of the list "
            f"whose line names no order: to keep it for the others, end this subject's line with {own}")


def _remove_superseded(folder: Path, names: dict) -> None:
    """The set-aside copies (records.remove_earlier_copies) of the subject's outputs, and of its figure where the figure
    is in place (beside the dwi/ folder: figure_path)."""
    remove_earlier_copies(folder, names)
    picture = figure_path(folder, names)
    if picture.is_file():
        remove_earlier_copies(picture.parent, {"figure": picture.name})


def _shown(out_root, picture: Path) -> str:
    """The QC figure's path from the QC page (`out_root`), "" where the subject has none."""
    return picture.relative_to(out_root).as_posix() if picture.is_file() else ""


KEPT = "; none of the subject's outputs was written: its folder is as it was before this run"


# re-entrant: a subject started from within another one's run, in its thread, does not wait for itself
_ONE_SUBJECT = threading.RLock()


def process(item: Item, s: Settings, out_root: str, run_token: str | None = None, workers: int | None = None) -> dict:
    """Run one subject into `out_root` (skipped when its outputs are there and match); never raises for bad input:
    returns {"subject", "status": done|skipped|failed, "reason", "qc", "seconds", "build"}: "build" is the build of the
    code that ran it (stamped in its sidecars), which the run compares with its own (`results.other_builds`): a worker
    started again after the code on disk changed runs the new code. One subject at a time in a process: its notes are
    the warnings caught while it runs, and Python's warnings are the process's, so on a worker of several threads
    (`dask worker`'s default) one subject's notes went into another's sidecar (fresh-eyes audit). `run_token`: the
    token of the run's lock (batch/lock.py); the subject's files are put in place only while the lock is still that
    run's (a remote worker goes on with a task after its run ended, and had put an interrupted run's subject over
    the outputs of the run that came after it). On a cluster it runs within tasks.py's `_guard`, which checks first
    that the worker's build is the run's. `workers`: the local cluster's count (None: a --scheduler's, or this
    process), for its memory reasons (memory_reasons.py)."""
    with _ONE_SUBJECT:
        return _process(item, s, out_root, run_token, workers)


def _input_history(item: Item, s: Settings, name: str):
    """While a subject's .mif output `name` is written: its .mif input's command_history carried into it, and one line
    naming iqt batch and the output's sidecar (the run's record; no path), as MRtrix appends each command. Under
    `iqt --no-record` none, as `iqt upsample` writes none. NIfTI outputs are written as before, outside any run record."""
    import contextlib

    if s.output_format == "nifti":
        return contextlib.nullcontext()
    from ...fileio.records import PATH_FREE, run_record

    if not s.record:
        return run_record({}, keep=PATH_FREE)
    return run_record({"command": f"iqt batch (run record: {sidecar(Path(name)).name})"}, keep=PATH_FREE,
                      source=str(Path(item.path).absolute()))


def _process(item: Item, s: Settings, out_root: str, run_token: str | None = None, workers: int | None = None) -> dict:
    from ... import fileio
    from ...core import grid
    from ...methods.base import NOISY_STD_MAPS

    t0 = time.perf_counter()
    writing = False  # within the subject's writes (before their commit)
    ran_by = build()
    res = {"subject": item.prefix, "input": item.path, "status": "failed", "reason": "", "qc": {}, "build": ran_by}
    folder = Path(out_root) / item.subdir
    try:
        ident = identity(item, s, input_hashes(item))
        maps = expected_maps(s)
        names = output_names(item, s, maps)
        done = finished(folder, names, ident)
        if done is not None:
            add_file_records(folder, names)
            # its outputs are in place and match: a killed run's set-aside copies of them are superseded here too (a
            # review: beside a skipped subject they stayed, warned of on every run)
            _remove_superseded(folder, names)
            notes = done.get("Notes", [])  # said again on a rerun, as when it ran
            qc, notes = _frame_on_skip(item, s, done.get("QC", {}), notes if isinstance(notes, list) else [])
            res.update(status="skipped", qc=qc, notes=notes,
                       figure=_shown(out_root, figure_path(folder, names)))  # "" where it was removed since
            return res
        check_same_input(folder, names, item, ident)
        res["redone_from"] = other_build(folder, names, ident)
        with warnings.catch_warnings(record=True) as caught:  # the engine's warnings: this subject's notes
            warnings.simplefilter("always", IQTWarning)
            vols, qc = compute(item, s)
            if s.note:  # what the default ran and why, in the subject's row and sidecars as its other notes
                warnings.warn(s.note, IQTWarning, stacklevel=2)
        # each once: batch and the method may both say the same (e.g. a whole-field input with no background)
        # a long warning line as several, as iqt upsample prints it (methods/base.py warning_lines)
        notes = list(dict.fromkeys(line for w in caught if issubclass(w.category, IQTWarning)
                                   for line in warning_lines(item.as_typed(_in_batch_words(" ".join(str(w.message).split()))))))
        for w in caught:
            if not issubclass(w.category, IQTWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        with all_or_none() as stage:  # the subject's files put in place together once all are written, or none
            writing = True
            make_folder(folder)  # removed again (when empty) if the subject fails
            # no removal of the folder's temporaries here: run_cohort removed a killed run's before any subject
            # started, and another series of this folder (run-1, run-2) may be holding its own until its commit
            for name in names.values():
                stage.declare(folder / name)
                stage.declare(sidecar(folder / name))
            for path in stale_maps(folder, names):  # removed with the commit: kept if the subject fails
                Outputs().retire(path)
            for key, name in names.items():  # data first, every sidecar after, the tensor's last
                with _input_history(item, s, name):
                    if key == "tensor":
                        fileio.save_tensor(vols[key], folder / name, **vols[key].meta["written"])
                    else:  # an uncertainty map's kind and unit in its header, as iqt upsample writes them
                        fileio.save_scalar(vols[key], folder / name, map_record(method_label(s), key))
            picture = figure_path(folder, names)
            stage.declare(picture)
            qc_figure(vols, s, item, make_folder(picture.parent) / picture.name, qc["brain_from"] == "estimated")
            stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            qc["seconds"] = round(time.perf_counter() - t0, 3)  # kept in the sidecar: a later skip still reports it
            used = vols["tensor"].meta
            # an input noisier than clean scans ran the method's model trained with added noise (methods/base.py)
            noisy_model = {}
            if used.get("model_for"):
                noisy_model = {"ModelUsed": used["model_file"], "ModelUsedSHA256": used["model_sha256"],
                               "ModelUsedFor": f"{used['model_for']} inputs"}
                qc["model_used"] = used["model_for"]
            elif s.model:  # one's own model (--model): the shipped one's subjects in the same folder read "default"
                qc["model_used"] = "given"
            if notes:
                noisy_model["Notes"] = notes
            ran_on = _device(s)
            # what the res- entity means (BIDS derivatives: REQUIRED where res is present; a cohort audit)
            out_mm = "x".join(f"{v:.3g}" for v in vols["tensor"].voxel_size)
            resolution = {res_label(s): f"upsampled by {grid.describe(s.factor)} along the input's voxel axes: "
                                        f"{out_mm} mm voxels"}
            for key in [k for k in names if k != "tensor"] + ["tensor"]:
                about = DESCRIPTIONS.get(key, key)
                if key == "tensor":  # as the input was read (a dtifit file's, not voxel-axis SYMMATRIX)
                    about += f" ({fileio.layout_words(vols[key].meta['written'])})"
                # a unitless map (FA) or the mask has no Units (it had ""), and the mask its BIDS Type (a cohort audit)
                unit = {"Units": UNITS[key]} if UNITS.get(key) else {"Type": "Brain"} if key == "mask" else {}
                meta = {"Description": about, **unit, "Resolution": resolution,
                        "Sources": sources(item),
                        "InputFile": str(Path(item.path).absolute()), **ident, "Model": s.model_file, **ran_on,
                        **noisy_model, "SoftwareName": PIPELINE, "SoftwareVersion": __version__,
                        "SoftwareBuild": ran_by, "Time": stamp,
                        **file_record(stage.where(folder / names[key]))}
                if key == "tensor":
                    meta["QC"] = qc
                elif key in NOISY_STD_MAPS and "noise_std_scale" in qc:  # the factor that map took (not direction's)
                    meta["NoiseStdScale"] = qc["noise_std_scale"]
                if key in maps:  # the input's voxels (failed fits warned of) where every map was raised to its top
                    meta["FailedFitsFlagged"] = qc["failed_fits_flagged"]
                    meta["HolesFlagged"] = qc["holes_flagged"]
                write_json(sidecar(folder / names[key]), meta)
            if run_token is not None and not holds(out_root, run_token):  # the stage's files removed, none put
                raise IQTError("not put in place: the run that started it had ended (interrupted, or its scheduler "
                               "lost) when it was done")
            writing = False  # what fails from here is the commit, which says itself what it left
        _remove_superseded(folder, names)
        res.update(status="done", qc=qc, notes=notes, figure=_shown(out_root, figure_path(folder, names)))
    except IQTError as exc:
        res["reason"] = " ".join(str(exc).split())
        if writing:  # a write failed (a full disk): the stage's files removed, the earlier ones untouched
            res["reason"] += KEPT
    except Exception as exc:
        from ...core.errors import out_of_memory, too_many_open_files
        from .memory_reasons import memory_reason  # as a task that never returned says it

        many = too_many_open_files(exc)  # the worker's ulimit -n: its file had been named, as an internal error
        if out_of_memory(exc):
            res["reason"] = memory_reason(exc, local=None, workers=workers)
        elif many is not None:
            res["reason"] = " ".join(str(many).split()) + (KEPT if writing else "")
        elif isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            # a read-only or foreign subject folder: the user's to mend, not a bug
            res["reason"] = (f"cannot write into {folder} ({exc.strerror}); make it writable for the workers, or give "
                             "another output folder") + (KEPT if writing else "")
        else:  # a bug, not bad input: recorded, the others go on
            res["reason"] = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"
    finally:
        res["seconds"] = round(time.perf_counter() - t0, 3)
        res["reason"] = item.as_typed(res["reason"])
        res["input"] = item.as_typed(res["input"])
    return res
