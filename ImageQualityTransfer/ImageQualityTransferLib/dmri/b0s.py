"""Whether a fit's b0 volumes agree with each other and give the tensors an in-vivo brain's scale (`check_b0_levels`).

Every tensor's scale comes from the ratio of the diffusion-weighted signal to the b0: a b0 from another series, or one
the scanner scaled differently, moves MD and FA in every voxel alike and leaves no residual for the outlier check
(dmri/outliers.py) to read (copies of the 3 mm ortho dev scan: its b0 at half its brightness gave MD -47 %, FA +73 %; at
a fifth, MD -93 %; a second b0 at 40 % beside it, MD -31 %, FA +40 %; docs/measurements.md, Fit checks). Two things are
read: the b0s' brain medians against each other, and the brain's median MD against an in-vivo brain's. Before the fit,
`check_b0_order` reads whether the volumes the bval file calls b0s are the bright ones (`volume_levels`)."""

from __future__ import annotations

import warnings

import numpy as np

from ..core import tensors
from ..core.errors import IQTError, IQTWarning
from ..core.i18n import _, option
from ..core.volume import Volume
from .dti import B0_THRESHOLD, SHELL_STEP, file_volumes

B0_RATIO = 1.25  # a b0 brighter or darker than the others' median by more than this factor in the brain is said
FAILED_MD = 1e-5  # mm^2/s: a brain median MD below this is no tissue's (ex vivo 0.1-0.3e-3): the fit failed
MD_RANGE = (0.4e-3, 1.6e-3)  # mm^2/s: the brain's median MD of an in-vivo brain; the 8 shared subjects 0.69-0.89e-3
# the commands a marked line names to leave a b0 out: placeholders, so a translation cannot change them
LEAVE_OUT_TOOLS = {"fslroi": "fslroi", "mrconvert": "mrconvert -coord 3"}
# (b = 1000 and 2000), a neonate's about 1.2-1.5e-3; the audit's b0 at half brightness 0.39e-3


def volume_levels(dwi: Volume, mask, volumes=slice(None)) -> np.ndarray:
    """Each volume's median over the brain (those `volumes` picks, all by default)."""
    m = np.asarray(getattr(mask, "data", mask), bool)
    return np.median(np.asarray(dwi.data)[..., volumes][m].astype(np.float64), axis=0)


def b0_ratios(dwi: Volume, mask) -> np.ndarray:
    """(number of b0s,): each b0's median over the brain of its ratio to the voxel's median b0 (with two b0s, their
    ratios to the brighter over the brain, that one 1: to the first, a blank first b0 left no voxel to judge and
    read as agreeing)."""
    is_b0 = np.asarray(dwi.bvals) <= B0_THRESHOLD
    b0 = np.asarray(dwi.data)[..., is_b0].astype(np.float64)
    m = np.asarray(getattr(mask, "data", mask), bool)
    if b0.shape[-1] < 2 or not m.any():
        return np.ones(b0.shape[-1])
    v = b0[m]
    brighter = int(np.argmax(volume_levels(dwi, m, is_b0))) if b0.shape[-1] == 2 else 0
    ref = v[:, brighter:brighter + 1] if b0.shape[-1] == 2 else np.median(v, axis=1, keepdims=True)
    ok = ref[:, 0] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.median(v[ok] / ref[ok], axis=0) if ok.any() else np.ones(b0.shape[-1])


def brain_md(tensor, mask) -> float:
    """Median MD (mm^2/s) over the mask's voxels that hold a tensor."""
    t = np.asarray(getattr(tensor, "data", tensor), np.float64)
    m = np.asarray(getattr(mask, "data", mask), bool) & np.any(t != 0, axis=-1)
    return float(np.median(tensors.md(t[m]))) if m.any() else float("nan")


def check_b0_levels(dwi: Volume, mask, tensor) -> str:
    """One warning line where the b0s disagree in brightness (naming them) or the fit's brain median MD is not an
    in-vivo brain's; nothing otherwise. Returns it in a few words for a record (iqt batch's QC): "ok", or e.g.
    "b0 21 0.40x; MD 0.38e-3"."""
    said, short = [], []
    r = b0_ratios(dwi, mask)
    index = file_volumes(dwi)[np.asarray(dwi.bvals) <= B0_THRESHOLD]
    dim = int(np.argmin(r)) if len(r) == 2 else 1
    if len(r) == 2 and not 1 / B0_RATIO <= r[dim] <= B0_RATIO:
        said.append((_("the two b0 volumes ({first} and {second}) differ in brightness: the second is {ratio}x the "
                       "first in the brain") if dim else
                     _("the two b0 volumes ({first} and {second}) differ in brightness: the first is {ratio}x the "
                       "second in the brain")).format(first=index[0], second=index[1], ratio=f"{r[dim]:.2f}"))
        short.append(f"b0 {index[dim]} {r[dim]:.2f}x")
    elif len(r) > 2:
        odd = [i for i, x in enumerate(r) if not 1 / B0_RATIO <= x <= B0_RATIO]
        if odd:
            line = _("b0 volumes {volumes} are {ratios} the other b0s' median brightness in the brain") \
                if len(odd) > 1 else _("b0 volume {volumes} is {ratios} the other b0s' median brightness in the brain")
            said.append(line.format(volumes=", ".join(str(index[i]) for i in odd),
                                    ratios=", ".join(f"{r[i]:.2f}x" for i in odd)))
            short.extend(f"b0 {index[i]} {r[i]:.2f}x" for i in odd)
    md = brain_md(tensor, mask)
    if np.isfinite(md) and md < FAILED_MD:  # no tissue's: the fit's eigenvalue floor, written as if it were tensors
        line = _("the fit failed: the brain's median MD is {md} mm^2/s, no brain's (in vivo about 0.7e-3, ex vivo "
                 "0.1-0.3e-3); {found}: check the b0 volumes (a blank one, or one of another series: leave it out, "
                 "e.g. with {fslroi} or {mrconvert}, and its line from the bval and bvec files) and that the "
                 "b-values are in s/mm^2") if said else \
            _("the fit failed: the brain's median MD is {md} mm^2/s, no brain's (in vivo about 0.7e-3, ex vivo "
              "0.1-0.3e-3): check the b0 volumes (a blank one, or one of another series: leave it out, e.g. with "
              "{fslroi} or {mrconvert}, and its line from the bval and bvec files) and that the b-values are in "
              "s/mm^2")
        raise IQTError(dwi.source + line.format(md=f"{md:.2g}", found="; ".join(said), **LEAVE_OUT_TOOLS))
    if np.isfinite(md) and not MD_RANGE[0] <= md <= MD_RANGE[1]:
        said.append(_("the brain's median MD is {md}e-3 mm^2/s, outside the {low}e-3 to {high}e-3 of an in-vivo "
                      "brain").format(md=f"{md * 1e3:.2g}", low=f"{MD_RANGE[0] * 1e3:g}", high=f"{MD_RANGE[1] * 1e3:g}"))
        short.append(f"MD {md * 1e3:.2g}e-3")
    if said and len(said) == 1 and short[0].startswith("MD ") and md < MD_RANGE[0]:  # the b0s agree: not the b0
        warnings.warn(dwi.source + _("{found}: right for an ex-vivo brain (about 0.1-0.3e-3) or a preterm neonate's, "
                                     "whose tensors are then as measured (the learned methods were trained on adult "
                                     "in-vivo brains); otherwise MD and FA are off in every voxel: check that the b0s "
                                     "are this series' (leave out one of another series or scaling) and that the "
                                     "b-values are this series' in s/mm^2").format(found=said[0]),
                      IQTWarning, stacklevel=3)
    elif said:
        source = dwi.source
        warnings.warn(source + _("{found}: the tensors' scale comes from the b0, so MD and FA are off in every voxel "
                                 "if a b0 is another series' or scaled differently (check the series; leave such a b0 "
                                 "out, e.g. with {fslroi} or {mrconvert}, and its line from the bval and bvec "
                                 "files)").format(found="; ".join(said), **LEAVE_OUT_TOOLS),
                      IQTWarning, stacklevel=3)
    return "; ".join(short) or "ok"


AS_BRIGHT_AS_B0 = 1.5  # a diffusion-weighted volume this many times its shell's median in the brain, and at least as
# bright as a b0, reads like a b0: the 8 shared scans' brightest read 1.01-1.04x, their b0s 2.3-4.8x
LIKE_DW = (0.4, 1.1)  # a b0 between these shares of its series' darkest and brightest shell medians reads like a
# diffusion-weighted volume: the brightest one reads 1.04x its shell, one of a shell --bmax dropped 0.48-0.65x the
# kept shell's; a b0 at half its level 1.16x or more on the 8 scans, one with a dropout over half its slices 0.33x or
# less (docs/measurements.md, Volumes out of the bval/bvec order)


def b0_order(dwi: Volume, mask) -> tuple[list[int], list[int], np.ndarray]:
    """The volumes whose brightness in the brain says the bval file's lines were not moved with them, and every
    volume's level: those it calls diffusion-weighted that read like a b0 (AS_BRIGHT_AS_B0 times their shell's median,
    no darker than the darkest b0) and those it calls b0 that read like a diffusion-weighted volume (LIKE_DW). Both or
    neither: a moved b0 leaves its line pointing at a diffusion-weighted volume, while one volume scaled too bright, or
    a b0 scaled or with a dropout, is one volume's fault (dmri/outliers.py, check_b0_levels)."""
    b = np.asarray(dwi.bvals, float)
    m = np.asarray(getattr(mask, "data", mask), bool)
    b0 = b <= B0_THRESHOLD
    if not m.any() or not b0.any() or b0.all():
        return [], [], np.zeros(len(b))
    level = volume_levels(dwi, m)
    shell = np.where(b0, 0.0, SHELL_STEP * np.round(b / SHELL_STEP))
    median = {s: float(np.median(level[shell == s])) for s in np.unique(shell[~b0])}
    # a shell at 0 in the mask (a mask mostly over a zero-filled background) tells nothing: every volume is as bright
    bright = [int(i) for i in np.flatnonzero(~b0) if median[shell[i]] > 0
              and level[i] >= max(AS_BRIGHT_AS_B0 * median[shell[i]], level[b0].min())]
    low, high = LIKE_DW[0] * min(median.values()), LIKE_DW[1] * max(median.values())
    dark = [int(j) for j in np.flatnonzero(b0) if low <= level[j] <= high and high > 0]
    return (bright, dark, level) if bright and dark else ([], [], level)


def check_b0_order(dwi: Volume, mask) -> None:
    """Refuses in one line a series whose volumes are not in the bval/bvec files' order, read from the data (b0s moved
    to the end or the start by a converter or a merge, the files not): the fit would take b0s as diffusion-weighted
    and the reverse, and every tensor would be wrong."""
    bright, dark, level = b0_order(dwi, mask)
    if not bright:
        return
    dw = float(np.median(level[np.asarray(dwi.bvals, float) > B0_THRESHOLD]))
    number = file_volumes(dwi)  # the file's numbers, where --bmax kept some of its volumes
    # the files' words in the words of the app that runs (core/i18n.py option: the Slicer module's DWI volume)
    calls = option("which the bval file calls")
    bright_said = (_("volumes {volumes}, {which_calls} diffusion-weighted, are as bright in the brain as a b0 ({levels} "
                     "the diffusion-weighted volumes' median)") if len(bright) > 1 else
                   _("volume {volumes}, {which_calls} diffusion-weighted, is as bright in the brain as a b0 ({levels} "
                     "the diffusion-weighted volumes' median)")).format(
        volumes=", ".join(str(number[i]) for i in bright), which_calls=calls,
        levels=", ".join(f"{level[i] / dw:.1f}x" for i in bright))
    dark_said = (_("volumes {volumes}, which it calls b0, are as dark as a diffusion-weighted volume ({levels} their "
                   "median)") if len(dark) > 1 else
                 _("volume {volumes}, which it calls b0, is as dark as a diffusion-weighted volume ({levels} their "
                   "median)")).format(volumes=", ".join(str(number[j]) for j in dark),
                                      levels=", ".join(f"{level[j] / dw:.2f}x" for j in dark))
    raise IQTError(dwi.source + _(
        "{order_mismatch}: {bright}, and {dark} (volumes counted from 0), so b0s would be fitted as diffusion-weighted "
        "and every tensor would be wrong; the b0s were likely moved (e.g. to the end, by a converter or a merge) "
        "{reorder}").format(
        order_mismatch=option("the bval/bvec order does not match the volumes"), bright=bright_said, dark=dark_said,
        reorder=option(
            "without their lines in the bval and bvec files: reorder the bval and bvec files to the volumes (or the "
            "volumes to the files, e.g. with mrconvert -coord 3 or fslroi and fslmerge) and run again")))
