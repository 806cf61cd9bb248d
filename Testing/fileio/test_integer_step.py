"""A tensor file stored as integers with a scale (nibabel's automatic int16 scaling spans the data's whole range, so one
failed fit at 1.72 mm^2/s sets a step of 2.6e-5 mm^2/s, 3.6 % of a brain's MD) is read with one warning naming that
step and what to do; the same file without the failed fit, and every float file, are read without one."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core import tensor_checks, tensors
from ImageQualityTransferLib.core.errors import IQTWarning


def _brain(seed: int = 0) -> np.ndarray:
    """A masked fit's tensors in dipy's order: varied white-matter-like tensors (MD about 0.73e-3 mm^2/s), zero outside."""
    rng = np.random.default_rng(seed)
    shape = (20, 22, 12)
    v = rng.normal(size=shape + (3,))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    t = tensors.from_matrix(0.45e-3 * np.eye(3) + 0.85e-3 * v[..., :, None] * v[..., None, :])
    t[:3], t[-3:] = 0, 0
    return t.astype(np.float64)


def _step_lines(tmp_path, data, dtype) -> tuple[list[str], dict]:
    img = nib.Nifti1Image(data, np.diag([-3.0, 3.0, 3.0, 1.0]))
    img.set_data_dtype(dtype)  # nibabel scales a float array into the type's range on saving
    path = tmp_path / f"t_{np.dtype(dtype).name}.nii.gz"
    nib.save(img, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = fileio.load_tensor(path, "dipy")
    return [str(w.message) for w in caught if issubclass(w.category, IQTWarning)], vol.meta


def test_an_integer_file_whose_step_a_failed_fit_stretched_is_said_once(tmp_path):
    data = _brain()
    data[10, 11, 6] = [1.72, 0.0, 1e-5, 0.0, 0.0, 1e-5]  # one blown-up fit, as dipy's WLS leaves in a low-signal voxel
    said, meta = _step_lines(tmp_path, data, np.int16)
    lines = [s for s in said if "stored as integers" in s]
    assert len(lines) == 1, said
    assert f"in steps of {meta['step']:.3g} mm^2/s" in lines[0] and lines[0].endswith("save the tensors as float32")
    assert meta["step"] > tensor_checks.COARSE_STEP * 0.73e-3


def test_an_integer_file_of_a_clean_fit_and_a_float_file_are_read_without_it(tmp_path):
    data = _brain()
    for dtype in (np.int16, np.uint16, np.int32, np.float32, np.float64):
        said, meta = _step_lines(tmp_path, data, dtype)
        assert not [s for s in said if "stored as integers" in s], (dtype, said)
        assert ("step" in meta) == (np.dtype(dtype).kind in "iu")
