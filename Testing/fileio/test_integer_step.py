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


def test_an_unmasked_field_cast_from_um2_per_ms_is_told_its_unit_not_a_positive_definite_share(tmp_path):
    """a whole field in um^2/ms truncated to int16 (its air to 0, its scalp's noise fits tens of steps) read without a
    mask: its brain is the median tensor, not a stored zero; read off it, the noise fits alone had been judged and the
    file told 'only 5 % ... positive definite' (the Achieva's and dStream's unmasked x2 inputs: docs/measurements.md)."""
    rng = np.random.default_rng(1)
    data = np.zeros((40, 44, 24, 6))
    data[10:30, 11:33, 6:18] = _brain() * 1.6  # MD about 1.2e-3: most diagonal elements truncate to 1, not 0
    shell = np.zeros(data.shape[:3], bool)
    shell[6:34, 7:37, 3:21] = True
    shell[10:30, 11:33, 6:18] = False
    noise = shell & (rng.random(shell.shape) < 0.08)  # 795 noise fits beside 3,696 brain voxels
    data[noise] = rng.normal(scale=20e-3, size=(int(noise.sum()), 6))
    path = tmp_path / "t.nii.gz"
    with np.errstate(invalid="ignore"):
        nib.save(nib.Nifti1Image((data * 1e3).astype(np.int16), AFFINE), path)
    said = _refusal(path)
    assert "not in mm^2/s but um^2/ms cast to whole numbers" in said and "positive definite" not in said, said


@pytest.mark.realdata
@pytest.mark.slow
def test_a_scaled_unmasked_field_whose_air_is_a_minority_is_told_its_unit():
    """the dStream's unmasked x1,1,2 input (its zeroed air a fifth of the field) in um^2/ms as int16 and in um^2/s as
    uint16, nibabel's scaling: its air, the stored zero, reads within half a step of 0 and is read as its float copy's
    empty air; it had been told 'only 0 % ... positive definite' and 'multiply them by 1e-4'."""
    import tempfile
    from pathlib import Path

    from helpers import TRAIN, need_data

    from ImageQualityTransferLib.dmri import degrade as deg
    from ImageQualityTransferLib.dmri.dti import brain_mask
    from ImageQualityTransferLib.dmri.subject import dwi_path

    dwi = fileio.load_dwi(dwi_path(need_data(TRAIN / "philips_achieva_dstream_3mm")))
    pair = deg.degrade(dwi, brain_mask(dwi, fill_slices=False).data, (1, 1, 2), (1, 0, 1), "unmasked")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.nii.gz"
        fileio.save_tensor(pair.tensor, path, order="dipy")
        img = nib.load(path)
        for scale, dtype, told in ((1e3, np.int16, "multiply them by 1e-3 to get mm^2/s"),
                                   (1e6, np.uint16, "multiply them by 1e-6 to get mm^2/s")):
            scaled = nib.Nifti1Image(img.get_fdata() * scale, img.affine, img.header)
            scaled.set_data_dtype(dtype)
            nib.save(scaled, Path(tmp) / "i.nii.gz")
            said = _refusal(Path(tmp) / "i.nii.gz")
            assert told in said and "not a power of ten" not in said, said


def _wrapped(tmp_path, fmt, layout="4d"):
    """A brain in um^2/s rounded and cast to uint16 with numpy: its negative off-diagonals (-1 to about -400) stored
    as 65,535 down to about 65,100."""
    x = np.round(_brain() * 1e6)
    assert (x < 0).any()
    with np.errstate(invalid="ignore"):
        if fmt == "nrrd":
            return _integer_nrrd(tmp_path, _brain(), lambda v: np.round(v * 1e6), np.uint16)
        raw = x.astype(np.uint16)
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(raw[..., None, :] if layout == "5d" else raw, AFFINE), path)
    return path


@pytest.mark.parametrize("fmt, layout", [("nifti", "4d"), ("nifti", "5d"), ("nrrd", "4d")])
def test_a_uint16_cast_whose_negative_elements_wrapped_is_told_so(tmp_path, fmt, layout):
    """numpy's cast of signed tensors to uint16 wraps -1 to 65535: a 4D file of them had been told it was a DWI series
    (its 'brain' the wrapped values, median 65534; 6-10 of 80 real inputs: docs/measurements.md)."""
    path = _wrapped(tmp_path, fmt, layout)
    with pytest.raises(IQTError) as refused:
        fileio.load_tensor(path, "nifti" if fmt == "nrrd" else "dipy")
    said = str(refused.value)
    assert "negative elements (its off-diagonals) wrap there" in said and "uint16, largest 65535" in said, said
    assert "DWI series" not in said and said.count("\n") == 0, said


def test_a_uint16_dwi_with_saturated_voxels_is_still_told_a_dwi_series(tmp_path):
    """six volumes of DWI-like intensities (brain 200, a background of noise about 10) with 3 % of the values clipped
    at 65535: not wrapped tensors (the 3 mm ortho and Trio scans' first six volumes clipped so had been read as wrapped
    by a first rule without WRAPPED_AT_TOP: docs/measurements.md)."""
    rng = np.random.default_rng(2)
    raw = rng.normal(200, 50, size=(20, 22, 12, 6)).clip(1, None)
    raw[:, :15] = rng.normal(10, 3, size=raw[:, :15].shape).clip(1, None)  # most of the field: its background
    raw[rng.random(raw.shape) < 0.03] = 65535
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(raw.astype(np.uint16), AFFINE), path)
    with pytest.raises(IQTError) as refused:
        fileio.load_tensor(path, "dipy")
    assert "is a DWI series" in str(refused.value) and "wrap" not in str(refused.value), str(refused.value)


def test_a_cast_to_zero_read_in_a_mask_counts_the_voxels_inside_it(tmp_path):
    """a plain int16 cast in mm^2/s leaves only failed fits (a few mm^2/s: 3 voxels); read with the brain mask, the line
    says it counts the mask's voxels (it had said 'of its N voxels', N the mask's, not the file's)."""
    data = _brain()
    data[5:8, 5, 5] = tensors.from_matrix(np.diag([-2.0, 3.0, 3.0]))  # failed fits that outlive the cast
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.int16), AFFINE), path)
    inside = np.any(data != 0, axis=-1)
    said = _refusal(path, Volume(inside, AFFINE, "mask"))
    assert f"all but 3 of the {int(inside.sum())} voxels inside the mask are 0" in said, said
    said = _refusal(path)
    assert f"all but 3 of its {inside.size} voxels are 0" in said, said


@pytest.mark.parametrize("fmt", ["nifti", "nrrd"])
def test_a_uint16_cast_to_zero_whose_failed_fits_wrapped_is_told_the_cast(tmp_path, fmt):
    """mm^2/s cast to uint16: every brain value truncates to 0, and 5 failed fits' negative elements wrap to 65534;
    the cast is what to fix, and is named (the Achieva's unmasked x1,1,2 NRRD had been told 16 wrapped values)."""
    data = _brain()
    data[5:10, 5, 5] = [3.0, -2.0, 3.0, -2.0, -2.0, 3.0]  # dipy's order: the off-diagonals negative
    if fmt == "nrrd":
        path = _integer_nrrd(tmp_path, data, lambda x: x, np.uint16)
    else:
        path = tmp_path / "t.nii.gz"
        with np.errstate(invalid="ignore"):
            nib.save(nib.Nifti1Image(data.astype(np.uint16), AFFINE), path)
    said = _refusal(path)
    assert "stores integers without a scl_slope and all but 5 of its" in said and "wrap" not in said, said


def _told_a_clipped_dwi_series(tmp_path, top: int, clip: int, dtype) -> None:
    """The dStream's DWIs 1-6, their 99.9th percentile rescaled to 3 x `top` and clipped at `clip`, saved as `dtype`
    and given as a tensor file, are told a DWI series, with no word of a wrap."""
    from helpers import TRAIN, need_data

    from ImageQualityTransferLib.dmri.subject import dwi_path

    img = nib.load(dwi_path(need_data(TRAIN / "philips_achieva_dstream_3mm")))
    v = np.asarray(img.dataobj[..., 1:7], np.float64)
    raw = np.clip(np.round(v / np.percentile(v[v > 0], 99.9) * 3 * top), 0, clip).astype(dtype)
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(raw, img.affine), path)
    with pytest.raises(IQTError) as refused:
        fileio.load_tensor(path, "dipy")
    assert "is a DWI series" in str(refused.value) and "wrap" not in str(refused.value), str(refused.value)


@pytest.mark.realdata
def test_a_real_dwi_clipped_under_the_uint16_top_is_told_a_dwi_series(tmp_path):
    """the dStream's DWIs after its b0 rescaled (their 99.9th percentile to 3 x 65,535) and clipped at 65,000, saved as
    uint16 and given as a tensor file: its clipped voxels pile at 65,000, not at the top where a wrap stores -1; it had
    been told its negative elements wrapped (6 of the 8 subjects' scans clipped so, tensor_checks.WRAPPED_AT_CLIP)."""
    _told_a_clipped_dwi_series(tmp_path, 65535, 65000, np.uint16)


def _um_ms(x, wrapped=None):
    """Tensors `x` (mm^2/s) doubled, in um^2/ms rounded to whole numbers, a signed array; with `wrapped`, every negative
    element made 0 but `wrapped` of the brain's values spread over it, made -1 (an own or tight fit: few wrap)."""
    y = np.round(x * 2e3)  # twice the brain's tensors: off-diagonals to -0.85 um^2/ms, rounding to -1
    if wrapped is not None:
        y[y < 0] = 0
        flat = y.ravel()  # a copy where `x` is not C-ordered (a NRRD's array)
        filled = np.flatnonzero(flat)
        flat[filled[::len(filled) // wrapped][:wrapped]] = -1  # spread: one in each of `wrapped` voxels
        y = flat.reshape(y.shape)
    return y


def _uint16(tmp_path, fmt, values):
    """`_brain()`'s tensors as `values(x)` cast to uint16 with numpy (its -1 stored as 65535), NIfTI or NRRD."""
    if fmt == "nrrd":
        return _integer_nrrd(tmp_path, _brain(), values, np.uint16)
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(values(_brain()).astype(np.int64).astype(np.uint16), AFFINE), path)
    return path


@pytest.mark.parametrize("fmt", ["nifti", "nrrd"])
def test_a_um_ms_uint16_cast_whose_negatives_are_all_minus_one_is_told_its_unit_and_its_wrap(tmp_path, fmt):
    """um^2/ms rounded: every negative element is -1, stored at 65535, as nearly all a noisy unmasked cast's are (the
    Elition's at SNR 5: 99.97 %); read as a DWI clipped at the top (tensor_checks.WRAPPED_AT_TOP), it had been told
    a DWI series; then refused for its wrap alone, its unit unsaid (both are to fix)."""
    path = _uint16(tmp_path, fmt, _um_ms)
    with pytest.raises(IQTError) as refused:
        fileio.load_tensor(path, "nifti" if fmt == "nrrd" else "dipy")
    said = str(refused.value)
    wrapped = int(np.count_nonzero(_um_ms(_brain()) == -1)) * (2 if fmt == "nrrd" else 1)  # a NRRD's 3x3 matrix
    # stores each off-diagonal twice
    assert "um^2/ms cast to whole numbers" in said and "multiply them by 1e-3" in said, said
    assert f"; {wrapped} of its stored values lie just under the top" in said and "DWI series" not in said, said


@pytest.mark.parametrize("fmt", ["nifti", "nrrd"])
def test_a_um_ms_uint16_cast_with_a_few_wrapped_values_is_told_its_unit_and_the_wrap(tmp_path, fmt):
    """60 wrapped values, under 1 % of the file's non-zero ones (too few to refuse the file for its wrap) but in 1.1 %
    of its voxels: the line names the um^2/ms cast and the wrap (own and tight fits' casts had been told the unit
    alone), and the wrapped values do not make the file a DWI series."""
    said = _refusal(_uint16(tmp_path, fmt, lambda x: _um_ms(x, wrapped=60)))
    assert "um^2/ms cast to whole numbers" in said, said
    assert "60 of its stored values lie just under the top of its unsigned integer type" in said, said


@pytest.mark.realdata
def test_a_real_unmasked_dwi_clipped_at_the_uint8_top_is_told_a_dwi_series(tmp_path):
    """the dStream's DWIs after its b0 rescaled (their 99.9th percentile to 3 x 255) and clipped at 255, unmasked, saved
    as uint8 and given as a tensor file: its pile at 255 has its bright voxels' ramp under it and a dark background
    beside it, and had been refused as a tensor's wrapped negative elements (19 of 64 such clean uint8 scans,
    tensor_checks.WRAPPED_SPREAD)."""
    _told_a_clipped_dwi_series(tmp_path, 255, 255, np.uint8)


def _dwi_with_intercept(tmp_path, zeroed: float):
    """Six DWI-like volumes (brain 200 to 400, a background of 0) stored as uint16 with a scl_inter of -50, a share
    `zeroed` of the brain's voxels storing 0 (read as -50) in one volume."""
    rng = np.random.default_rng(3)
    raw = np.zeros((20, 22, 12, 6))
    raw[4:16, 4:18, 2:10] = rng.uniform(200, 400, size=(12, 14, 8, 6))
    if zeroed:
        raw[4:16, 4:18, 2:10][rng.random((12, 14, 8)) < zeroed, 3] = 0
    img = nib.Nifti1Image(raw.astype(np.uint16), AFFINE)
    img.header.set_slope_inter(1.0, -50.0)
    path = tmp_path / "t.nii.gz"
    nib.save(img, path)
    return path


def test_a_dwi_stored_with_a_negative_scl_inter_is_told_a_dwi_series(tmp_path):
    """six DWI-like volumes (brain 200 to 400, a background of 0) stored as uint16 with a scl_inter of -50: its
    background reads -50, and those negatives had let it through as tensors, told a positive-definite share; a tensor
    file nibabel scaled into uint16 with an intercept is still not a DWI series."""
    path = _dwi_with_intercept(tmp_path, zeroed=0.0)
    with pytest.raises(IQTError) as refused:
        fileio.load_tensor(path, "dipy")
    assert "is a DWI series (no negative value in its brain (its scl_inter -50" in str(refused.value), str(refused.value)
    nib.save(_auto(_brain() * 1e6, np.uint16), path)
    assert nib.load(path).dataobj.inter < 0
    assert "DWI series" not in _refusal(path)


def test_a_dwi_whose_intercept_turns_a_few_brain_voxels_negative_is_told_their_share(tmp_path):
    """As above, with 2 % of the brain's voxels storing a 0 in one volume (read as -50): it is a DWI series, and the
    line says how many of its brain voxels hold a negative value, where it had said they held none."""
    path = _dwi_with_intercept(tmp_path, zeroed=0.02)
    with pytest.raises(IQTError) as refused:
        fileio.load_tensor(path, "dipy")
    said = str(refused.value)
    assert "is a DWI series (a negative value in only 2." in said and " % of its brain voxels" in said, said
    assert "no negative value" not in said, said


def test_a_dwi_with_one_negative_brain_voxel_is_told_its_share_in_two_figures(tmp_path):
    """One brain voxel of 1,344 storing 0 in one volume: the share is said as 0.074 %, where one decimal of a percent
    had rounded such shares (0.02 % in a real file) to 0.0 %, read as none."""
    path = _dwi_with_intercept(tmp_path, zeroed=0.0)
    img = nib.load(path)
    raw = np.asarray(img.dataobj.get_unscaled()).copy()
    raw[6, 7, 5, 3] = 0
    out = nib.Nifti1Image(raw, AFFINE)
    out.header.set_slope_inter(1.0, -50.0)
    nib.save(out, path)
    with pytest.raises(IQTError) as refused:
        fileio.load_tensor(path, "dipy")
    assert "a negative value in only 0.074 % of its brain voxels" in str(refused.value), str(refused.value)


@pytest.mark.realdata
def test_a_real_dwi_whose_intercept_turns_much_of_its_brain_negative_is_told_a_dwi_series(tmp_path):
    """the dStream's DWIs after its b0 stored as uint16 with a scl_inter of -0.3 x their brain's median: most of its
    brain voxels hold a negative value, and it had been read as tensors and told a positive-definite share (33 of 64
    such real files); its volumes' brain medians are of a size, where a tensor's three off-diagonals centre on 0, and
    a tensor file nibabel scaled into uint16 with an intercept is still not a DWI series."""
    from helpers import TRAIN, need_data

    from ImageQualityTransferLib.dmri.subject import dwi_path

    img = nib.load(dwi_path(need_data(TRAIN / "philips_achieva_dstream_3mm")))
    v = np.asarray(img.dataobj[..., 1:7], np.float64)
    out = nib.Nifti1Image(np.clip(np.round(v), 0, 65535).astype(np.uint16), img.affine)
    out.header.set_slope_inter(1.0, -0.3 * float(np.median(v[v > 0.1 * np.percentile(v[v > 0], 99.9)])))
    path = tmp_path / "t.nii.gz"
    nib.save(out, path)
    with pytest.raises(IQTError) as refused:
        check_tensor_input(fileio.load_tensor(path, "dipy"))
    said = str(refused.value)
    assert "is a DWI series (a negative value in " in said and "brain medians are of a size" in said, said
    nib.save(_auto(_brain() * 1e6, np.uint16), path)
    assert nib.load(path).dataobj.inter < 0 and "DWI series" not in _refusal(path)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_dwi_clipped_at_the_top_in_nearly_all_its_brain_is_still_told_a_dwi_series(tmp_path, dtype):
    """Six volumes of a masked DWI scaled so far that nearly all its brain is clipped at the type's top, its few other
    values spread: the values at the top are no wrapped tensor elements (the rest is no tensor's few steps), and had
    been left out of the DWI check, the file read as tensors and told a unit."""
    top = np.iinfo(dtype).max
    rng = np.random.default_rng(4)
    raw = np.zeros((20, 22, 12, 6))
    raw[4:16, 4:18, 2:10] = top
    edge = rng.random((12, 14, 8)) < 0.005
    raw[4:16, 4:18, 2:10][edge] = rng.uniform(top * 0.05, top * 0.9, size=(int(edge.sum()), 6))
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(raw.astype(dtype), AFFINE), path)
    with pytest.raises(IQTError) as refused:
        fileio.load_tensor(path, "dipy")
    assert "is a DWI series" in str(refused.value), str(refused.value)


def test_a_wrapped_nrrd_is_told_what_a_nrrd_can_store(tmp_path):
    """A NRRD stores no scale: its wrap refusal had said to save it as int16 with a scl_slope, which it cannot hold."""
    with pytest.raises(IQTError) as refused:
        fileio.load_tensor(_wrapped(tmp_path, "nrrd"), "nifti")
    said = str(refused.value)
    assert "scl_slope" not in said and "a NRRD stores no scale" in said and "float32" in said, said


@pytest.mark.realdata
@pytest.mark.parametrize("label, dtype", [(1, np.uint8), (255, np.uint8), (65535, np.uint16)])
def test_a_real_brain_mask_copied_into_six_volumes_is_told_so(tmp_path, label, dtype):
    """A brain mask of the dStream's b0 (0 and `label`) copied into six volumes and given as a tensor file: its six
    values are equal in every voxel, as no fit's tensor's are; a 0/1 one had been told a um^2/ms cast, a 0/255 or
    0/65535 one a DWI series."""
    from helpers import TRAIN, need_data

    from ImageQualityTransferLib.dmri.subject import dwi_path

    img = nib.load(dwi_path(need_data(TRAIN / "philips_achieva_dstream_3mm")))
    b0 = np.asarray(img.dataobj[..., 0], np.float64)
    mask = (b0 > 0.2 * np.percentile(b0, 99)).astype(dtype) * dtype(label)
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(np.repeat(mask[..., None], 6, axis=-1), img.affine), path)
    said = _refusal(path)
    assert "holds one volume six times" in said and "um^2/ms" not in said and "DWI series" not in said, said


@pytest.mark.realdata
def test_a_small_crop_of_a_real_fit_scaled_with_a_negative_intercept_is_told_its_unit_not_a_dwi_series(tmp_path):
    """A 4x4x2 crop of the dStream's OLS fit in um^2/s, which nibabel scales into uint16 with a negative intercept: its
    few voxels of one tract hold their off-diagonals' sign, their six medians of a size, and it had been told a DWI
    series; its volumes are read alike only over fileio.volumes.DWI_ALIKE_BRAIN brain voxels, and its unit is said."""
    import dataclasses

    from helpers import TRAIN, need_data

    from ImageQualityTransferLib.dmri.dti import fit_dti
    from ImageQualityTransferLib.dmri.subject import dwi_path

    dwi = fileio.load_dwi(dwi_path(need_data(TRAIN / "philips_achieva_dstream_3mm")))
    box = dataclasses.replace(dwi, data=dwi.data[46:50, 30:34, 18:20])
    path = tmp_path / "t.nii.gz"
    nib.save(_auto(fit_dti(box, None, method="OLS", say_shells=False).data * 1e6, np.uint16), path)
    assert nib.load(path).dataobj.inter < 0
    said = _refusal(path)
    assert "DWI series" not in said and "multiply them by 1e-6" in said, said


@pytest.mark.realdata
@pytest.mark.parametrize("scale, unit, factor", [(1e4, "1e-4 mm^2/s", "1e-4"), (1e3, "um^2/ms", "1e-3")])
def test_a_real_fit_cast_to_whole_numbers_is_told_the_unit_its_size_reads(tmp_path, scale, unit, factor):
    """The dStream's OLS fit of a central box in 1e-4 mm^2/s (0.1 um^2/ms) rounded to int16, its brain's largest |Dii|
    typically 8: told that unit and 1e-4, where it had been told um^2/ms and 1e-3 (61 of 80 such x2 files); the same
    fit in um^2/ms is still told um^2/ms and 1e-3."""
    import dataclasses

    from helpers import TRAIN, need_data

    from ImageQualityTransferLib.dmri.dti import fit_dti
    from ImageQualityTransferLib.dmri.subject import dwi_path

    dwi = fileio.load_dwi(dwi_path(need_data(TRAIN / "philips_achieva_dstream_3mm")))
    box = dataclasses.replace(dwi, data=dwi.data[30:50, 30:50, 14:26])
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(np.round(fit_dti(box, None, method="OLS", say_shells=False).data * scale)
                             .astype(np.int16), dwi.affine), path)
    said = _refusal(path)
    assert f"not in mm^2/s but {unit} cast to whole numbers" in said, said
    assert f"multiply them by {factor} to get mm^2/s" in said and said.count("multiply") == 1, said


def test_a_cast_whose_size_reads_in_two_units_names_both():
    """A whole-number cast whose brain's largest |Dii| is typically 3 reads as free water in um^2/ms or a brain in
    1e-4 mm^2/s: the line names both units and both factors, in one line."""
    from ImageQualityTransferLib.core import tensor_checks

    said = tensor_checks._um_cast_line(3.0, "input")
    assert "not in mm^2/s but um^2/ms or 1e-4 mm^2/s cast to whole numbers" in said, said
    assert "multiply them by 1e-3 to get mm^2/s if they are in um^2/ms, by 1e-4 if in 1e-4 mm^2/s" in said, said
    assert [tensor_checks.cast_powers(b) for b in (1, 2, 4, 9)] == [[-3], [-3], [-4], [-4]]


@pytest.mark.realdata
@pytest.mark.parametrize("intercept", [0.0, -50.0])
def test_a_dim_real_dwi_whose_volumes_are_alike_is_told_a_dwi_series(tmp_path, intercept):
    """The 3 mm Prisma ortho scan's volumes 1-6 as int16 (brain median 48, or 30 read with a scl_inter of -50), given
    as tensors: under the 50 a DWI's brain had to reach, they had been told a um^2/ms cast and a positive-definite
    share; their six volumes' brain medians are of a size over 1,000 brain voxels, as no tensor file's are."""
    from helpers import AXIAL, need_data

    from ImageQualityTransferLib.dmri.subject import dwi_path

    img = nib.load(dwi_path(need_data(AXIAL)))
    out = nib.Nifti1Image(np.round(np.asarray(img.dataobj[..., 1:7], np.float64)).astype(np.int16), img.affine)
    out.header.set_slope_inter(1.0, intercept)
    path = tmp_path / "t.nii.gz"
    nib.save(out, path)
    said = _refusal(path)
    assert "is a DWI series" in said and "brain medians are of a size" in said, said
