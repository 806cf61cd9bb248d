"""What made an output, in its header: for a tensor the method and factors (`iqt espcn factor 2`), written by the NIfTI
and NRRD writers and read back by `iqt evaluate` so that a prediction is scored on its own factor's grid; for an
uncertainty map its kind and unit (`iqt espcn-hetero-var1 direction degrees`), so that a map given as another is
refused. Beside it, the run that wrote a file (`run_record`): the command, every option as it took effect, the version
and build, the threads and the model's checksum, so that two outputs can be told apart and one redone."""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
from pathlib import Path

import numpy as np

from ..core.errors import IQTError
from ..core.grid import describe, factors, isotropic


MADE_BY = re.compile(r"^iqt (?P<method>[a-z0-9+-]+) factors? (?P<factor>\d+(?:,\d+,\d+ (?P<axes>[RLAPSI]{3}))?)"
                     r"(?: order (?P<order>fsl|mrtrix|dipy))?"
                     r"(?: (?P<origin>shipped|registered|given) model (?P<model>[\w.+-]+))?$")
RECORDED_ORDERS = ("fsl", "mrtrix", "dipy")  # the --tensor-order names a header records (this tool's 5D needs none)


def made_by(meta: dict, affine, order: str | None = None) -> str:
    """The header description of a method's output ("iqt espcn factor 2"; per-axis factors with the voxel axes' codes
    they are along, "iqt espcn factors 1,1,3 LAS"): `iqt evaluate` reads the factors back (made_at), so that a
    prediction is not scored on another factor's grid; "" for other tensors. `order`: the --tensor-order of a file
    written in another tool's order and frame ("iqt espcn factor 2 order fsl"), which load_tensor reads back without
    --tensor-order (recorded_order). A file no method made records nothing ('iqt fit' and 'iqt degrade --style fsl'
    outputs, as before: such a 4D file is read with --tensor-order)."""
    order = order if order in RECORDED_ORDERS else None
    if not meta.get("method") or meta.get("factor") is None:
        return ""
    text = f"iqt {meta['method']}{'+tta' if meta.get('averaged_over') else ''} {describe(meta['factor'])}"
    if isotropic(meta["factor"]) is None:
        axes = _axis_codes(affine)
        if axes is None:
            return ""
        text += " " + axes
    if order:
        text += f" order {order}"
    model = meta.get("model_name")  # the model that ran, as far as 80 bytes hold it
    if model and meta.get("model_origin"):
        longer = f"{text} {meta['model_origin']} model {Path(str(model)).name}"
        if len(longer) < 80 and MADE_BY.match(longer):
            text = longer
    return text if len(text) < 80 and MADE_BY.match(text) else ""


def recorded_order(text) -> str | None:
    """The --tensor-order a header description records (made_by's "order fsl"); None where it records none."""
    m = MADE_BY.match(str(text).strip())
    return m["order"] if m is not None else None


def _axis_codes(affine) -> str | None:
    """The voxel axes' orientation codes ("LAS"); None for an affine that has none (degenerate)."""
    from nibabel import aff2axcodes

    try:
        codes = aff2axcodes(np.asarray(affine, float))
    except (ValueError, TypeError, np.linalg.LinAlgError):
        return None
    return "".join(codes) if all(isinstance(c, str) for c in codes) else None


def read_made_by(text, affine) -> tuple[str, tuple[int, int, int]] | None:
    """(the description, its factors along the file's voxel axes) from a `made_by` text (a NIfTI `descrip`, a NRRD
    `iqt_made_by` field); None for any other text. A file whose voxel axes another tool has since reordered or flipped
    (fslreorient2std, mrconvert -strides) has its factors moved with its axes (dropped, the prediction would be scored
    at another factor); None where its axes no longer match the recorded ones."""
    m = MADE_BY.match(str(text).strip())
    if m is None:
        return None
    try:
        f = factors(m["factor"].split(" ")[0])
    except IQTError:  # a record this project did not write
        return None
    if m["axes"]:
        f = along_axes(f, m["axes"], affine)
        if f is None:
            return None
    return m.group(0), f


def recorded_axes(text) -> tuple[tuple[int, int, int], str] | None:
    """(the factors, the voxel axes' codes they are along: "SLA") as a `made_by` text records them, in the voxel order
    the file was written in: the low-res input's, as 'iqt upsample' writes its output in its input's order; None where
    it records no axes (isotropic factors, another text)."""
    m = MADE_BY.match(str(text).strip())
    if m is None or not m["axes"]:
        return None
    try:
        return factors(m["factor"].split(" ")[0]), m["axes"]
    except IQTError:  # a record this project did not write
        return None


def along_axes(f, axes: str, affine) -> tuple[int, int, int] | None:
    """Factors `f` along the voxel axes with codes `axes` ("SLA"), moved onto the voxel axes of a grid with `affine`;
    None where its axes are not those ones reordered or flipped."""
    now = _axis_codes(affine)
    if now is None:
        return None
    axis = {c: i for i, code in enumerate(axes) for c in (code, _OPPOSITE[code])}
    moved = [axis.get(c) for c in now]
    if sorted(k for k in moved if k is not None) != [0, 1, 2]:
        return None
    f = factors(f, identity_ok=True)
    return tuple(f[k] for k in moved)


_OPPOSITE = dict(zip("LRAPSI", "RLPAIS"))


MAP_UNITS = {"std": "mm2/s", "std_intrinsic": "mm2/s", "std_parameter": "mm2/s", "md_std": "mm2/s", "fa_std": "unitless",
             "direction": "degrees",
             # uncertainty propagation's maps (analysis/propagation.py): FA and MD mean over the samples, and the share
             # of the samples whose tracts visit each voxel (a fraction, 0 to 1)
             "fa_mean": "unitless", "md_mean": "mm2/s", "visitation": "unitless"}
MAP_RECORD = re.compile(r"^iqt (?P<method>[a-z0-9+-]+) (?P<key>[a-z_]+) (?P<unit>mm2/s|unitless|degrees)$")


def map_record(method: str, key: str) -> str:
    """The header description of uncertainty map `key` of `method`'s run ("iqt biqt std mm2/s"); "" for another key."""
    text = f"iqt {method} {key} {MAP_UNITS[key]}" if key in MAP_UNITS else ""
    return text if len(text) < 80 and MAP_RECORD.match(text) else ""


def read_map_record(text) -> str | None:
    """The map's key ("std", "direction", ...) from a `map_record` text; None for any other text."""
    m = MAP_RECORD.match(str(text).strip())
    return m["key"] if m is not None and m["key"] in MAP_UNITS else None


SUPPORT_KEY = "iqt_support"  # a NIfTI comment extension {"iqt_support": ...} and a NRRD field of that name
SUPPORTS = ("estimated",)  # the meta["support"] values recorded (dmri.dti.ESTIMATED_SUPPORT)


def recorded_support(meta: dict) -> str | None:
    """The support an output records: "estimated" where it was kept to a brain estimated from a whole-field fit's
    tensors (meta["support"], set by Method.predict); `iqt track` reads it to say that the output reaches beyond the
    brain, which the brain told from the MD alone had said of masked fits' outputs too (docs/command-line.md, iqt
    track); None for any other tensor."""
    support = meta.get("support")
    return support if support in SUPPORTS else None


def filled_voxels(data) -> int:
    """The voxels holding any non-zero tensor element: what a support record counts, so that a file masked again
    after it was written (its header kept) no longer reads as the output the record describes."""
    return int(np.any(np.asarray(data) != 0, axis=-1).sum())


def support_json(meta: dict, data) -> str | None:
    """`recorded_support` as a record's text ({"iqt_support": "estimated", "filled": n}, n the output's
    `filled_voxels`), for a NIfTI comment extension and a NRRD field; None where none."""
    support = recorded_support(meta)
    return None if support is None else json.dumps({SUPPORT_KEY: support, "filled": filled_voxels(data)},
                                                    separators=(",", ":"))


def read_support(text, data) -> str | None:
    """The support a `support_json` text records, while `data` still fills the voxels it counted; None for any other
    text, and where the tensors were masked or edited since (a header kept by nibabel over new data). A record without
    the count, as 0.24.0's first build wrote it ({"iqt_support": "estimated"}), is trusted as it was then: it was
    written by `iqt upsample` (a review: track had ignored it, and not said that such an output reaches beyond the
    brain)."""
    try:
        found = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(found, dict) or found.get(SUPPORT_KEY) not in SUPPORTS:
        return None
    if "filled" not in found:
        return found[SUPPORT_KEY]
    filled = found.get("filled")
    if not isinstance(filled, int) or isinstance(filled, bool) or filled != filled_voxels(data):
        return None
    return found[SUPPORT_KEY]


# ---------------------------------------------------------------- the run that wrote a file

# the record of the `iqt` command under way (apps/cli `_run`), per run as the all-or-none stage is (fileio/paths.py);
# None outside a command (the Python API, batch workers, the Slicer module: their own records, or none)
_RUN: contextvars.ContextVar[dict | None] = contextvars.ContextVar("iqt_run_record", default=None)
RUN_KEY = "iqt_run"  # the JSON object's one key, in a NIfTI header extension (comment) and a NRRD field of that name


# what a run under `iqt --no-record` still records: facts of the data that name no path, which a later command reads
# back to warn (a slice gap that `iqt fit` took from its DWI's sidecar, `iqt degrade --slice-gap`: fileio/slices.py)
PATH_FREE = ("slices", "input_slices")  # input_slices: the gap an upsampled output was made across
_KEEP: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("iqt_run_keep", default=None)
# the main input of a run that keeps no command (iqt batch's .mif outputs): an MRtrix output carries its own history
_SOURCE: contextvars.ContextVar[str | None] = contextvars.ContextVar("iqt_run_source", default=None)


@contextlib.contextmanager
def run_record(record: dict, keep: tuple | None = None, source: str | None = None):
    """Every file written inside carries `record` (a JSON-able dict) in its header: `run_json`. With `keep` (a
    `--no-record` run's), only the fields `note_run` adds under those names are kept, and a file is written with a
    record only where one of them was added; `source`: its main input (`run_input`), which no record holds."""
    token, kept, given = _RUN.set(dict(record)), _KEEP.set(keep), _SOURCE.set(source)
    try:
        yield
    finally:
        _RUN.reset(token)
        _KEEP.reset(kept)
        _SOURCE.reset(given)


def note_run(**fields) -> None:
    """Add to the record of the run under way (e.g. the model that ran, once loaded); nothing outside a run."""
    record, keep = _RUN.get(), _KEEP.get()
    if record is not None:
        record.update(fields if keep is None else {k: v for k, v in fields.items() if k in keep})


def run_command() -> str | None:
    """The command line of the run under way as its record holds it; None outside a command (an in-process caller)."""
    record = _RUN.get()
    return None if record is None else record.get("command")


def run_input() -> str | None:
    """The main input of the run under way (its `input` or `dwi` argument, as given, or run_record's `source`); None
    outside a command and under `--no-record`."""
    if _SOURCE.get() is not None:
        return _SOURCE.get()
    record = _RUN.get()
    options = (record or {}).get("options") or {}
    found = options.get("input") or options.get("dwi")
    return found if isinstance(found, str) else None


def run_json() -> str | None:
    """The run's record as one line of ASCII JSON ({"iqt_run": {...}}, keys sorted: a rerun writes the same bytes);
    None outside a command."""
    from ..core.threads import in_use

    record, keep = _RUN.get(), _KEEP.get()
    if record is None or (keep is not None and not any(k in record for k in keep)):
        return None
    record = {**record, "threads": in_use()}  # at the write: torch is loaded by then where a CNN ran
    return json.dumps({RUN_KEY: record}, sort_keys=True, separators=(",", ":"), default=str)


def read_run(text) -> dict | None:
    """The record `run_json` wrote (from a header extension's or a NRRD field's text); None for any other text."""
    try:
        found = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    return found.get(RUN_KEY) if isinstance(found, dict) and isinstance(found.get(RUN_KEY), dict) else None
