"""Helpers shared by the test modules (import as `from helpers import ...`; pyproject.toml puts Testing/ on the path).

Test modules import from here, never from each other or from conftest.py (which holds the fixtures and hooks).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.volume import Volume

# ---------------------------------------------------------------- the repository and the real subjects

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data" / "dmri").resolve()
DEV = DATA / "dev"
TRAIN = DATA / "train"
SAGITTAL = DEV / "siemens_prisma_sag_2p7mm_ap"
AXIAL = DEV / "siemens_prisma_3mm_ortho"
ZEROED_BACKGROUND = TRAIN / "philips_elition_2mm"
NOISY_BACKGROUND = TRAIN / "philips_achieva_1p75x2p5mm"

# Set by conftest.py for the running test: whether it carries the `realdata` marker. None outside a test.
_running_test_is_realdata: bool | None = None


def need_data(folder: Path) -> Path:
    """The real subject folder, or skip with a reason where the shared data is absent. Every read of the real
    data goes through here: a test without the `realdata` marker that gets this far fails (so `-m "not realdata"`
    can never read the real data)."""
    if not (folder / "dwi.nii.gz").exists():
        pytest.skip(f"real DWI data not found at {folder} (the shared data folder ../shared/data/dmri is absent)")
    if _running_test_is_realdata is False:
        pytest.fail(f"this test reads the real data in {folder} but is not marked realdata: request the "
                    "sagittal_subject/axial_subject fixtures, or add @pytest.mark.realdata", pytrace=False)
    return folder


def low_res_case(subject, r, style: str):
    """make_case(subject, r, style=style)'s low-res input and mask (.lr, .lr_mask) for a style without a file order
    (degrade.FILE_ORDER): the same degrade, without the crop of the subject's reference fit that make_case adds, which
    the tests of unmasked fits never read (so their subjects' fits need not be made: conftest, fit on use)."""
    from types import SimpleNamespace

    from ImageQualityTransferLib.dmri import degrade as deg

    assert style not in deg.FILE_ORDER, style
    pair = deg.degrade(subject.dwi, subject.mask.data, r, style=style)
    return SimpleNamespace(lr=pair.tensor, lr_mask=pair.mask)


# ---------------------------------------------------------------- small synthetic tensor fields


@contextlib.contextmanager
def vowels_translated():
    """The engine's lines under a translator that upper-cases vowels outside placeholders (a stand-in language whose
    words still show where each came from), the English again after."""
    import re

    from ImageQualityTransferLib.core import i18n

    i18n.install(lambda context, text: re.sub(r"(\{[^{}]*\})|([aeiou])", lambda m: m[1] or m[2].upper(), text))
    try:
        yield
    finally:
        i18n.install(None)


def masked_phantom_fit(folder: Path, name: str) -> Volume:
    """Write one masked phantom fit as float32 `folder/name` and its mask as `folder/mask.nii.gz` (the integer-file
    tests store it again in other types); returns the mask."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=2.0, n_dirs=12)
    mask = brain_mask(dwi)
    fileio.save_tensor(fit_dti(dwi, mask), folder / name)
    fileio.save_mask(mask, folder / "mask.nii.gz")
    return mask


def changed_copy(src: Path, dst: Path, mask: Path) -> Path:
    """A copy of the reference `src` as a prediction, its first mask voxel holding a tensor (on the brain's edge: the exterior) scaled
    by 1.01: `iqt evaluate` refuses a prediction equal to the reference on every mask voxel, and the interior here
    keeps no error (its PSNR and Spearman undefined)."""
    import nibabel as nib

    img = nib.load(src)
    data = np.asarray(img.dataobj, np.float64).copy()
    held = np.asarray(nib.load(mask).dataobj) > 0
    held &= np.any(data.reshape(*held.shape, -1) != 0, axis=-1)
    edge = tuple(np.argwhere(held)[0])
    data[edge] *= 1.01
    img.header.set_data_dtype(np.float32)
    nib.save(nib.Nifti1Image(data.astype(np.float32), img.affine, img.header), dst)
    return dst


def random_spd(n, seed=0):
    m = np.random.default_rng(seed).normal(size=(n, 3, 3)) * 5e-4
    return tensors.from_matrix(m @ np.swapaxes(m, 1, 2) + 1e-4 * np.eye(3))


BUNDLE = tensors.from_matrix(np.diag([1.7e-3, 0.3e-3, 0.3e-3]))
ISO = tensors.from_matrix(np.eye(3) * 0.7e-3)


def bundle_volume(affine=None, axis=0, shape=(40, 16, 16)):
    """Isotropic background with a straight 4x4-voxel bundle along voxel axis `axis` (components in voxel axes)."""
    t = np.broadcast_to(ISO, shape + (6,)).copy()
    perm = np.roll(np.eye(3), axis, axis=0)  # e_x -> e_axis
    sel = [slice(6, 10)] * 3
    sel[axis] = slice(None)
    t[tuple(sel)] = tensors.rotate(BUNDLE, perm)
    aff = np.diag([-2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    return Volume(t.astype(np.float32), aff, "tensor")


def bundle_file(path: Path, shape=(14, 10, 10)) -> Path:
    """A small bundle_volume written at `path`: the low-res input of the CLI's upsample and propagation tests."""
    from ImageQualityTransferLib import fileio

    fileio.save_tensor(bundle_volume(shape=shape), path)
    return path


# ---------------------------------------------------------------- oblique and sagittal grids (NRRD and MRML tests)

SHAPE = (5, 4, 3)


def rot(ax, ay, az):
    """Rotation from Euler angles in degrees (x, then y, then z)."""
    a, b, c = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(direction, spacing, origin):
    a = np.eye(4)
    a[:3, :3] = np.asarray(direction, float) * np.asarray(spacing, float)
    a[:3, 3] = origin
    return a


LAS = np.diag([-1.0, 1.0, 1.0])
# sagittal storage: i -> posterior, j -> superior, k -> right
PSR = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
AFFINES = {
    "las_oblique_aniso": make_affine(rot(12, -20, 33) @ LAS, (1.25, 2.0, 3.5), (-40.0, 12.5, 7.0)),
    "psr": make_affine(PSR, (3.0, 1.5, 2.0), (10.0, -20.0, 30.0)),
    "psr_oblique": make_affine(rot(-8, 15, 5) @ PSR, (2.5, 2.5, 1.0), (0.5, 60.0, -22.0)),
}


def random_tensors(shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=shape + (3, 3))
    spd = np.einsum("...ij,...kj->...ik", m, m) * 1e-3 + 1e-4 * np.eye(3)
    return tensors.from_matrix(spd).astype(np.float32)


def tensor_volume(key, seed=0):
    return Volume(random_tensors(seed=seed), AFFINES[key], "tensor")


def assert_same(a: Volume, b: Volume, atol=0.0):
    assert a.kind == b.kind == "tensor"
    assert a.shape3 == b.shape3
    np.testing.assert_allclose(a.affine, b.affine, rtol=0, atol=1e-12)
    if atol == 0.0:
        np.testing.assert_array_equal(a.data, b.data)
    else:
        np.testing.assert_allclose(a.data, b.data, rtol=0, atol=atol)


def on_grid_of(b: Volume, a: Volume) -> Volume:
    """b resampled onto a's grid when the two grids differ only by flips/permutations of the voxel axes
    (components re-expressed in a's voxel axes): a storage-order change, not a physical one."""
    m = np.linalg.solve(b.affine, a.affine)
    p, t = np.round(m[:3, :3]), np.round(m[:3, 3])
    np.testing.assert_allclose(m[:3], np.column_stack([p, t]), atol=1e-9)
    assert sorted(np.abs(p).sum(axis=0)) == [1, 1, 1], "not a signed permutation"
    idx = p.astype(int) @ np.indices(a.shape3).reshape(3, -1) + t.astype(int)[:, None]
    data = b.data[idx[0], idx[1], idx[2]].reshape(a.shape3 + (6,))
    return Volume(tensors.rotate(data.astype(np.float64), p.T), b.affine @ m, "tensor", meta=b.meta)


# ---------------------------------------------------------------- CNN training data


CNN_NORM = {"kind": "residual-over-cubic", "in_mean": [1e-3, 0, 1e-3, 0, 0, 1e-3],
            "in_scale": [5e-4, 1e-4, 5e-4, 1e-4, 1e-4, 5e-4], "out_scale": [2.5e-4, 8e-5, 2.5e-4, 8e-5, 8e-5, 2.5e-4],
            "units": "mm^2/s"}


def random_cnn_model(method="espcn", seed=0, factor=2):
    """(network, meta) of an untrained CNN of `method`, seeded: for tests of inference and model files."""
    import torch

    from ImageQualityTransferLib.methods.cnn import networks

    torch.manual_seed(seed)
    arch = {"name": method, "factor": factor, "widths": list(networks.default_widths(method))}
    net = networks.build(arch).eval()
    meta = {"method": method, "factor": factor, "arch": arch, "normalisation": CNN_NORM, "version": "test"}
    return net, meta


def smooth_tensors(shape, seed=0):
    """A plausible, smooth low-res tensor field inside an ellipsoid, and its mask."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), -1)
    mask = (g**2).sum(-1) < 0.8
    v = ndimage.gaussian_filter(rng.normal(size=tuple(shape) + (3,)), (1.5, 1.5, 1.5, 0))
    v /= np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12
    m = 0.6e-3 * np.eye(3) + 1e-3 * rng.random(tuple(shape))[..., None, None] * v[..., :, None] * v[..., None, :]
    t = tensors.from_matrix(m).astype(np.float32)
    t[~mask] = 0
    return t, mask


def synthetic_items(n=3, shape=(14, 14, 14), r=2, patch=6, halo=2):
    """Training items whose residual target is a fixed local function of the input (learnable); `r` an integer
    or per-axis factors; inputs padded for a network's `halo`."""
    from ImageQualityTransferLib.core import grid
    from ImageQualityTransferLib.methods.cnn import training_data
    from ImageQualityTransferLib.methods.interpolation import upsample_separable

    f = grid.factors(r)
    items = []
    for s in range(n):
        lr, mask = smooth_tensors(shape, seed=s)
        nn_up = grid.repeat_blocks(lr, f)
        res = 0.3 * (nn_up - upsample_separable(lr, f, 3))
        w = grid.repeat_blocks(mask, f)
        res[~w] = 0
        in_val = np.zeros(f[1] * shape[1], bool)
        in_val[f[1] * 4 : f[1] * (4 + patch)] = True
        in_val = in_val[None, :, None]
        corners = np.unique(np.clip(np.argwhere(mask) - patch // 2, 0, np.array(shape) - patch), axis=0)
        val = corners[corners[:, 1] == 4]
        items.append(training_data.TrainItem(f"s{s}", (0, 0, 0), np.pad(lr, [(halo, halo)] * 3 + [(0, 0)]),
                                        res.astype(np.float32), w & ~in_val, w & in_val, corners, val, halo=halo))
    return items


def table_looks_wrong(lines) -> list[str]:
    """The gradient table's "looks wrong" warnings among `lines` (stderr's, or a run's notes), each said over several
    lines (methods/base.py warning_lines) joined into one: from its first line to the one that ends it."""
    said, open_ = [], None
    for line in lines:
        if "the gradient table looks wrong" in line:
            open_ = [line]
        elif open_ is not None:
            open_.append(line)
        if open_ is not None and line.endswith("the fit is as the table says"):
            said.append(" ".join(open_))
            open_ = None
    return said


def run_notes(node) -> list[str]:
    """The engine's notes the Slicer module keeps on a run's tensor output (mrml.NOTES_ATTRIBUTE), one per line."""
    from ImageQualityTransferLib.slicer import mrml

    return (node.GetAttribute(mrml.NOTES_ATTRIBUTE) or "").split("\n")


def dwi_node(scene, dwi: Volume):
    """A vtkMRMLDiffusionWeightedVolumeNode in `scene` holding `dwi`, its gradients stored in IJK axes (measurement
    frame = the IJK-to-RAS rotation), as the Slicer module's tests give a DWI input (slicer/mrml.py add_dwi_node, which
    the module's .mif reader uses)."""
    from ImageQualityTransferLib.slicer import mrml

    return mrml.add_dwi_node(scene, dwi)


_PHANTOM_DWI_FILES: dict = {}  # (shape, seed) -> the bytes of its .nii.gz, .bval and .bvec, as save_dwi wrote them


def save_phantom_dwi(path: Path, shape, seed: int) -> None:
    """make_phantom(shape, 4 mm, 12 directions, seed) saved as `path` (with its .bval and .bvec), made and written once
    per process: later calls write the same bytes again (the phantom is a fixed function of its seed)."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    key = (tuple(shape), seed)
    paths = (path, *fileio.bval_bvec_paths(path))
    if key not in _PHANTOM_DWI_FILES:
        fileio.save_dwi(make_phantom(shape=shape, voxel_mm=4.0, n_dirs=12, seed=seed), path)
        _PHANTOM_DWI_FILES[key] = [p.read_bytes() for p in paths]
        return
    for p, data in zip(paths, _PHANTOM_DWI_FILES[key]):
        p.write_bytes(data)


def make_bids(root: Path, subjects=("01", "02"), corrupt: str | None = None, shape=(32, 36, 28)) -> Path:
    """A BIDS dataset of phantom subjects (DWI with its sidecar) for the batch tests; `corrupt` gets a truncated DWI."""
    import json

    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "phantoms", "BIDSVersion": "1.10.0"}))
    for i, sub in enumerate(tuple(subjects) + ((corrupt,) if corrupt else ())):
        d = root / f"sub-{sub}" / "dwi"
        d.mkdir(parents=True)
        p = d / f"sub-{sub}_dwi.nii.gz"
        save_phantom_dwi(p, shape, i)
        (d / f"sub-{sub}_dwi.json").write_text(json.dumps({"PhaseEncodingDirection": "j-"}))
        if sub == corrupt:
            p.write_bytes(p.read_bytes()[:4000])
    return root


def tensor_list(folder: Path, name: str = "a_dti.nii.gz", shape=(14, 16, 12)) -> Path:
    """A batch list (`folder`/list.txt) of one phantom tensor file `name` fitted in `folder`, and the empty output folder
    `folder`/deriv, which it returns."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=shape, voxel_mm=4.0, n_dirs=12)
    fileio.save_tensor(fit_dti(dwi, brain_mask(dwi)), folder / name)
    (folder / "list.txt").write_text(name + "\n")
    out = folder / "deriv"
    out.mkdir()
    return out


def ring_of_fibres(mirrored: bool = False, slices: int = 16):
    """Fibres running round the z axis in a ring (FA 0.7) inside a cylinder of isotropic tissue, on an LAS grid as
    dtifit's inputs are; `mirrored`: their directions with x negated, as a fit with x-unflipped bvecs leaves them."""
    import numpy as np

    from ImageQualityTransferLib.core import tensors
    from ImageQualityTransferLib.core.volume import Volume

    n = 32
    x, y = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(x, y)
    e = np.stack([-y, x, np.zeros_like(x)], -1) / np.maximum(r, 1e-6)[..., None]
    if mirrored:
        e[..., 0] *= -1
    ring = (r > 5) & (r < 13)
    d = np.where(ring[..., None, None], 0.3e-3 * np.eye(3) + 1.4e-3 * e[..., :, None] * e[..., None, :],
                 0.8e-3 * np.eye(3))
    t = np.where((r < 14.5)[..., None], tensors.from_matrix(d), 0.0)
    t = np.repeat(t[:, :, None], slices, axis=2)
    return Volume(t.astype(np.float32), np.diag([-2.0, 2.0, 2.0, 1.0]), "tensor")


def engine_env() -> dict:
    """This environment with the engine of this tree first on PYTHONPATH, for the processes a test starts (`iqt`
    subprocesses, Dask workers)."""
    import os

    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "ImageQualityTransfer"), os.environ.get("PYTHONPATH", "")]))


def spy_filters(monkeypatch, owner, name: str) -> list:
    """`owner.name` wrapped to record the process's warning filters at each call (library code that silenced
    warnings with warnings.catch_warnings replaced them for every thread): the list of what each call saw."""
    seen, real = [], getattr(owner, name)

    def spy(*args, **kwargs):
        seen.append(list(warnings.filters))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return seen


def cube_case(lo: int, hi: int, r: int = 2, n: int = 10):
    """(low-res mask, high-res mask, high-res truth) of a cube [lo, hi)^3 of one anisotropic tensor in an n^3 low-res
    grid at factor r: the smallest case the evaluation's regions read."""
    lr = np.zeros((n, n, n), bool)
    lr[lo:hi, lo:hi, lo:hi] = True
    hr = lr.repeat(r, 0).repeat(r, 1).repeat(r, 2)
    truth = np.zeros(hr.shape + (6,))
    truth[hr] = [1e-3, 0.0, 0.7e-3, 0.0, 0.0, 0.5e-3]
    return lr, hr, truth


# ---------------------------------------------------------------- crafted files (Testing/fileio/test_crafted_*.py)

NRRD_TENSOR_HEADER = """NRRD0005
type: float
dimension: 4
space: right-anterior-superior
sizes: 9 4 4 4
space directions: none (-2.0,0.0,0.0) (0.0,2.0,0.0) (0.0,0.0,2.0)
kinds: 3D-matrix domain domain domain
endian: little
encoding: {encoding}
space origin: (0,0,0)
"""  # a 4x4x4 tensor NRRD's header; its data follow it, or a "data file:" line names them


def five_d_tensor(path: Path) -> Path:
    """An 8x8x8 5D NIfTI tensor file (one plausible tensor everywhere): an input the crafted-file tests run on."""
    import nibabel as nib

    t = np.zeros((8, 8, 8, 1, 6), np.float32)
    t[..., :] = [1.2e-3, 1e-4, 0.8e-3, 0, 0, 0.6e-3]
    img = nib.Nifti1Image(t, np.diag([-2.0, 2, 2, 1]))
    img.header.set_intent("symmetric matrix")
    nib.save(img, path)
    return path


def refused_line(capsys, argv, *said) -> str:
    """Run `iqt argv`: exit 2 with one line on stderr (warnings aside) holding every one of `said`, no internal error."""
    from ImageQualityTransferLib.apps.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "warning" not in ln]
    assert rc == 2, err
    assert len(lines) == 1 and "internal error" not in err and all(s in lines[0] for s in said), err
    return lines[0]


def run_cli(capsys, *args):
    """Run `iqt args` in this process: (exit code, stdout, stderr), the captured output read and cleared."""
    from ImageQualityTransferLib.apps import cli

    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def process_start_refused() -> OSError:
    """The OSError a real process start raises when fork meets ulimit -u or a pids.max (BlockingIOError EAGAIN from
    subprocess.Popen's _execute_child, as CPython 3.11 raised it under `ulimit -u 1`), its traceback through Popen."""
    import errno
    import subprocess
    from unittest import mock

    def refused(*args, **kwargs):
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    with mock.patch.object(subprocess, "_fork_exec", refused), mock.patch.object(subprocess, "_USE_POSIX_SPAWN", False):
        try:
            subprocess.Popen(["true"])
        except BlockingIOError as exc:
            return exc
    raise AssertionError("subprocess.Popen started a process with fork refused")


def filled_context_ratio(subject, method):
    """On a crop of `subject` degraded x2 in the tight style: the RMS of error/σ of `method` where its input was filled
    (beyond the tight mask) over that at the rest of the brain's edge. 1 where σ is as honest there as at the edge."""
    from scipy import ndimage

    from ImageQualityTransferLib.core.grid import repeat_blocks
    from ImageQualityTransferLib.dmri.subject import Subject, make_case

    box = tuple(slice(a // 4, a // 4 + a // 2) for a in subject.dwi.shape3[:2]) + (slice(None),)
    crop = Subject(subject.name, subject.dwi.replace(data=subject.dwi.data[box]),
                   subject.mask.replace(data=subject.mask.data[box]), subject.tensor.replace(data=subject.tensor.data[box]))
    case = make_case(crop, 2, style="tight")
    brain = case.hr_mask.astype(bool)
    filled = brain & repeat_blocks(~np.any(case.lr.data != 0, axis=-1), 2)
    inner = repeat_blocks(ndimage.binary_erosion(case.lr_mask.data.astype(bool), iterations=2), 2)
    edge = brain & ~filled & ~inner
    assert filled.sum() > 100 and edge.sum() > 100
    p = method.predict(case.lr, 2, case.lr_mask)
    err = np.sqrt(np.mean((p.tensor.data - case.truth) ** 2, axis=-1))
    rms = lambda sel, v: np.sqrt(np.mean(v[sel] ** 2))  # noqa: E731
    return (rms(filled, err) / rms(filled, p.std.data)) / (rms(edge, err) / rms(edge, p.std.data))


def wait_until(condition, timeout: float = 30.0, every: float = 0.05):
    """Poll `condition()` until it is true or `timeout` s have passed; returns its last value. For what a loaded
    machine takes a while to reach (processes gone, a file written), in place of a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not (got := condition()) and time.monotonic() < deadline:
        time.sleep(every)
    return got


def unblock_later(fifo, after: float, done: threading.Event | None = None,
                  opened: list | None = None) -> tuple[threading.Event, threading.Thread]:
    """After `after` s (unless `done` is set first), a reader waiting on `fifo` gets its end of file, a writer opening
    and closing it until `done` is set: a test whose code opens the FIFO fails instead of hanging. `opened` gets
    `fifo` each time a reader was there to unblock: proof that the code opened it, whatever the machine's load."""
    done = threading.Event() if done is None else done

    def run():
        if done.wait(after):
            return
        while not done.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO while nobody reads
            except OSError:
                time.sleep(0.05)
            else:
                if opened is not None:
                    opened.append(fifo)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return done, t


class _StandInClient:
    """What `iqt batch` reads of its Dask client when run_cohort is replaced: the dashboard's address and close()."""

    dashboard_link = "http://127.0.0.1:0/status"

    def close(self):
        pass


def settings_batch_runs_with(monkeypatch, batch) -> list:
    """The Settings each `iqt batch` run hands run_cohort, with a stand-in client and no cluster started: for tests that
    an option reaches the subjects' Settings."""
    seen = []
    monkeypatch.setattr(batch, "start_client", lambda *a, **k: (_StandInClient(), None))
    monkeypatch.setattr(batch, "run_cohort", lambda items, s, *a, **k: seen.append(s) or [])
    return seen


def batch_runs_in_process(monkeypatch, batch) -> list:
    """`iqt batch` with each cohort run by the real run_cohort in this process (given no client), no cluster started:
    for tests of what the command says and writes, not of the cluster (starting one took seconds of each such test).
    The Settings of each run, in order."""
    seen, real = [], batch.run_cohort
    monkeypatch.setattr(batch, "start_client", lambda *a, **k: (_StandInClient(), None))
    monkeypatch.setattr(batch, "run_cohort",
                        lambda items, s, out, client=None, **k: seen.append(s) or real(items, s, out, None, **k))
    return seen


def brain_outnumbered_by_its_background():
    """A whole-field fit as 9 mm voxels leave it (`iqt degrade --style unmasked --factor 3` of a 3 mm scan): a brain
    (MD about 0.72e-3 mm^2/s) in a scalp rim (1.1e-3), both outnumbered by background fits that averaging has made
    smooth and of one low MD (0.45e-3), which is the field's MD mode."""
    import numpy as np

    from ImageQualityTransferLib.core.volume import Volume

    rng = np.random.default_rng(0)
    shape = (24, 24, 12)
    r = np.linalg.norm((np.indices(shape) - np.array([11.5, 11.5, 5.5])[:, None, None, None])
                       / np.array([11.0, 10.0, 6.5])[:, None, None, None], axis=0)
    brain, head = r < 0.9, r < 1.0
    md = np.where(brain, 0.72e-3, np.where(head, 1.1e-3, 0.45e-3)) * np.exp(rng.normal(0, np.where(head, 0.1, 0.12)))
    t = np.zeros(shape + (6,))
    t[..., 0], t[..., 2], t[..., 5] = 1.3 * md, md, 0.7 * md  # (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz)
    return Volume(t, np.diag([9.0, 9.0, 9.0, 1.0]), "tensor"), brain


def module_functions(tr, *names) -> dict:
    """The Slicer module's top-level functions `names` (ImageQualityTransfer/ImageQualityTransfer.py, which needs Slicer
    to import) run from its source with tr() = `tr`, with the module's own text helpers they call."""
    import ast

    path = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"
    tree = ast.parse(path.read_text())
    wanted = set(names) | {"factorsText"}
    space = {"_": tr}
    exec(compile(ast.Module([f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name in wanted], []),
                 str(path), "exec"), space)
    return {name: space[name] for name in names}


def tensor_node_and_a_scalar_node(slicer, scene):
    """A small 2 mm tensor node ("dti"), an empty scalar volume node in `scene` (an input and a node of the wrong kind
    for the output selectors' refusals) and the tensors' array."""
    from ImageQualityTransferLib.slicer import mrml

    data = np.zeros((6, 6, 4, 6))
    data[..., 0] = data[..., 3] = data[..., 5] = 1e-3
    node = mrml.add_tensor_node(scene, Volume(data, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor"), "dti")
    return node, scene.AddNode(slicer.vtkMRMLScalarVolumeNode()), data
