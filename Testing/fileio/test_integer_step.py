"""A tensor file stored as integers: a step (scl_slope) over tensor_checks.COARSE_STEP of the brain's median MD is said
in one line against the brain's MD (not the whole field's); a file whose brain rounds to a few steps is refused for
its step, not for a unit or an element order; a file clipped at its type's ends is said; a clean fit's file is not."""

from __future__ import annotations

import re
import warnings

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.errors import IQTError, IQTWarning
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.methods.inputs import check_tensor_input

AFFINE = np.diag([-3.0, 3.0, 3.0, 1.0])


def _brain(seed: int = 0) -> np.ndarray:
    """A masked fit's tensors in dipy's order: varied white-matter-like tensors (MD about 0.73e-3 mm^2/s), zero outside."""
    rng = np.random.default_rng(seed)
    shape = (20, 22, 12)
    v = rng.normal(size=shape + (3,))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    t = tensors.from_matrix(0.45e-3 * np.eye(3) + 0.85e-3 * v[..., :, None] * v[..., None, :])
    t[:3], t[-3:] = 0, 0
    return t.astype(np.float64)


def _read(tmp_path, img, mask=None):
    path = tmp_path / "t.nii.gz"
    nib.save(img, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = fileio.load_tensor(path, "dipy")
        check_tensor_input(vol, mask)
    return [str(w.message) for w in caught if issubclass(w.category, IQTWarning)], vol.meta


def _auto(data, dtype=np.int16):
    img = nib.Nifti1Image(data, AFFINE)
    img.set_data_dtype(dtype)  # nibabel scales a float array into the type's range on saving
    return img


def test_a_step_a_failed_fit_stretched_is_said_against_the_brains_md(tmp_path):
    data = _brain()
    data[:10] = tensors.from_matrix(2.5e-3 * np.eye(3))  # fits beyond the brain, more of them than the brain's voxels
    data[12, 11, 6] = [5.5, 0.0, 1e-5, 0.0, 0.0, 1e-5]  # one blown-up fit, as dipy's WLS leaves in a low-signal voxel
    brain = np.zeros(data.shape[:3], bool)
    brain[10:-3] = True
    said, meta = _read(tmp_path, _auto(data), Volume(brain, AFFINE, "mask"))
    lines = [s for s in said if "stored as integers" in s]
    assert len(lines) == 1, said
    brain_md = float(np.median(tensors.md(data[brain])))
    said_md = float(re.search(r"of the brain's median MD \(([0-9.e-]+) mm\^2/s\)", lines[0]).group(1))
    assert abs(said_md - brain_md) < 0.05 * brain_md, (said_md, brain_md)
    assert lines[0].endswith("save the tensors as float32")


def test_a_file_whose_brain_rounds_to_a_few_steps_is_refused_for_its_step(tmp_path):
    data = _brain()
    data[10, 11, 6] = [1.14e3, 0.0, 1e-5, 0.0, 0.0, 1e-5]  # the Elition masked fit's failed fit
    path = tmp_path / "t.nii.gz"
    nib.save(_auto(data), path)
    vol = fileio.load_tensor(path, "dipy")
    with pytest.raises(IQTError, match=r"stores integers with a step of 0\.0\d+ \(its scl_slope\).*float32$"):
        check_tensor_input(vol)


def test_an_integer_file_in_other_units_keeps_its_unit_line(tmp_path):
    data = np.round(_brain() * 1e6).astype(np.int16)  # an ITK-like cast of um^2/s: slope 1, MD about 730
    with pytest.raises(IQTError, match=r"multiply them by 1e-6 to get mm\^2/s"):
        _read(tmp_path, nib.Nifti1Image(data, AFFINE))


def test_a_file_clipped_at_its_types_ends_is_said(tmp_path):
    data = _brain()
    data[..., [0, 2, 5]] *= 4  # diagonal elements up to about 5e-3 mm^2/s, past int16's 3.3e-3 at a step of 1e-7
    raw = np.clip(np.round(data / 1e-7), -32768, 32767).astype(np.int16)
    img = nib.Nifti1Image(raw, AFFINE)
    img.header.set_slope_inter(1e-7, 0.0)
    said, _ = _read(tmp_path, img)
    assert len([s for s in said if "clipped when stored" in s]) == 1, said


def test_a_clean_fits_integer_file_and_a_float_file_are_read_without_a_line(tmp_path):
    data = _brain()
    mask = Volume(np.any(data != 0, axis=-1), AFFINE, "mask")
    for dtype in (np.int16, np.uint16, np.int32, np.float32, np.float64):
        for m in (None, mask):
            said, meta = _read(tmp_path, _auto(data, dtype), m)
            assert not [s for s in said if "integer" in s], (dtype, said)
            assert ("step" in meta) == (np.dtype(dtype).kind in "iu")


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
@pytest.mark.parametrize("misread", ["order", "sign"])
def test_a_tight_fit_read_wrong_is_told_its_order_or_sign_not_its_step(tmp_path, dtype, misread):
    """A tight fit in a wide field stored with nibabel's scaling and read in a wrong order or sign is taken for a whole
    field, its stored-zero background for brain: refused for a step its brain is thousands of (a review: the 3 mm
    ortho dev scan's tight x2 input), where its order or sign is what to fix."""
    data = np.zeros((40, 44, 24, 6))
    data[10:30, 11:33, 6:18] = _brain()
    path = tmp_path / "t.nii.gz"
    nib.save(_auto(-data if misread == "sign" else data, dtype), path)
    with pytest.raises(IQTError) as refused:
        check_tensor_input(fileio.load_tensor(path, "fsl" if misread == "order" else "dipy"))
    assert "stores integers" not in str(refused.value)
    assert ("positive definite" if misread == "order" else "sign is inverted") in str(refused.value), str(refused.value)


def _integer_nrrd(tmp_path, data, values, dtype):
    """`data` (dipy's order) as a Slicer NRRD whose elements are `values(x)` cast to `dtype` (a NRRD has no scale)."""
    import nrrd

    fileio.save_tensor(Volume(data.astype(np.float32), AFFINE, "tensor"), tmp_path / "f.nrrd")
    x, header = nrrd.read(str(tmp_path / "f.nrrd"))
    header.pop("type", None)
    with np.errstate(invalid="ignore"):
        nrrd.write(str(tmp_path / "i.nrrd"), values(np.asarray(x, np.float64)).astype(dtype), header)
    return tmp_path / "i.nrrd"


def _refusal(path, mask=None) -> str:
    with pytest.raises(IQTError) as refused:
        check_tensor_input(fileio.load_tensor(path, "nifti" if path.suffix == ".nrrd" else "dipy"), mask)
    return str(refused.value)


@pytest.mark.parametrize("fmt", ["nifti", "nrrd"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
@pytest.mark.parametrize("unit", [1.0, 1e-6])
def test_a_plain_integer_cast_that_left_every_value_zero_is_named(tmp_path, fmt, dtype, unit):
    """tensors in mm^2/s (or m^2/s) cast to integers: every value truncates to 0; had been told 'holds no tensor'."""
    data = _brain()
    if fmt == "nrrd":
        path = _integer_nrrd(tmp_path, data, lambda x: x * unit, dtype)
    else:
        path = tmp_path / "t.nii.gz"
        with np.errstate(invalid="ignore"):
            nib.save(nib.Nifti1Image((data * unit).astype(dtype), AFFINE), path)
    mask = Volume(np.any(data != 0, axis=-1), AFFINE, "mask")
    for m in (None, mask):
        said = _refusal(path, m)
        assert "stores integers without a scl_slope and every voxel is 0" in said, said
        assert said.endswith("saved after img.set_data_dtype(np.int16))") and "save the tensors as float32" in said, said


@pytest.mark.parametrize("fmt", ["nifti", "nrrd"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_um2_per_ms_cast_to_whole_numbers_is_told_its_unit_not_a_step(tmp_path, fmt, dtype):
    """an ITK-like file in um^2/ms (MD about 0.7) stored as integers without a scale: its float copy is told to
    multiply by 1e-3, and so is it (a NIfTI had been told its step of 1 was the problem)."""
    data = _brain()
    if fmt == "nrrd":
        path = _integer_nrrd(tmp_path, data, lambda x: np.round(x * 1e3), dtype)
    else:
        path = tmp_path / "t.nii.gz"
        with np.errstate(invalid="ignore"):
            nib.save(nib.Nifti1Image(np.round(data * 1e3).astype(dtype), AFFINE), path)
    said = _refusal(path)
    assert "not in mm^2/s but um^2/ms cast to whole numbers" in said and "multiply them by 1e-3 to get mm^2/s" in said, said
    assert "step of" not in said, said


@pytest.mark.parametrize("fmt", ["nifti", "nrrd"])
def test_um2_per_s_integers_keep_their_unit_line(tmp_path, fmt):
    """values about 700 in a plain integer file (1e-6 mm^2/s): thousands of steps each, told their unit alone."""
    data = _brain()
    if fmt == "nrrd":
        path = _integer_nrrd(tmp_path, data, lambda x: np.round(x * 1e6), np.int16)
    else:
        path = tmp_path / "t.nii.gz"
        nib.save(nib.Nifti1Image(np.round(data * 1e6).astype(np.int16), AFFINE), path)
    said = _refusal(path)
    assert "multiply them by 1e-6 to get mm^2/s" in said and "stores integers" not in said, said


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_a_scaled_integer_file_in_um2_per_ms_is_told_its_unit(tmp_path, dtype):
    """a tight fit in a wide field, in um^2/ms, stored with nibabel's scaling (a real scl_slope, an intercept for
    uint16): its stored zeros read as the background its float copy has, and it is told to multiply by 1e-3 (the
    Elition's, dStream's and Trio's x2 inputs had been told 'multiply them by 1e1' or 'only 18 % ... positive
    definite'); in mm^2/s the same file is read without a line."""
    data = np.zeros((40, 44, 24, 6))
    data[10:30, 11:33, 6:18] = _brain()
    data[20, 22, 12] = tensors.from_matrix(4e-3 * np.eye(3))  # a fit at the input clip's ceiling: an int16 intercept
    path = tmp_path / "t.nii.gz"
    nib.save(_auto(data * 1e3, dtype), path)
    assert nib.load(path).dataobj.inter != 0
    said = _refusal(path)
    assert "multiply them by 1e-3 to get mm^2/s" in said and "not a power of ten" not in said, said
    assert not _read(tmp_path, _auto(data, dtype))[0]


@pytest.mark.parametrize("fmt", ["nifti", "nrrd"])
@pytest.mark.parametrize("scale, told", [(1e6, "multiply them by 1e-6 to get mm^2/s"),
                                         (1e3, "um^2/ms cast to whole numbers")])
def test_a_tiny_roi_in_another_unit_is_told_its_unit_not_a_cast_to_zero(tmp_path, fmt, scale, told):
    """a 6x6x3 ROI kept in its whole field (0.1 % of the voxels, as Slicer's ROI-masked fit) stored in um^2/s or
    um^2/ms as integers without a scale, read without a mask: its values are hundreds or ones, mostly positive
    definite, not a cast's zeros and failed fits (docs/measurements.md, Integer files without a scale)."""
    data = np.zeros((60, 60, 30, 6))
    data[27:33, 27:33, 14:17] = _brain()[10:16, 10:16, 5:8]
    if fmt == "nrrd":
        path = _integer_nrrd(tmp_path, data, lambda x: np.round(x * scale), np.int16)
    else:
        path = tmp_path / "t.nii.gz"
        nib.save(nib.Nifti1Image(np.round(data * scale).astype(np.int16), AFFINE), path)
    said = _refusal(path)
    assert told in said and "truncates every value to 0" not in said, said
