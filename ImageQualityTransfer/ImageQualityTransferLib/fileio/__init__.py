"""Files: NIfTI and Slicer NRRD volumes, FSL bval/bvec, model files, output paths.

The volume readers and writers are re-exported here (`fileio.load_tensor`, `fileio.save_scalar`, ...).
"""

from .gradients import bval_bvec_paths
from .nifti import reads_fully
from .paths import JSON_SUFFIXES, NIFTI_SUFFIXES, NRRD_SUFFIXES, TENSOR_SUFFIXES, Outputs, check_output
from .writing import atomic_write, write_json, write_text
from .volumes import (
    as_read,
    write_order,
    check_tensor_output,
    layout_words,
    check_dwi,
    load_dwi,
    load_mask,
    load_mask_refined,
    load_scalar,
    load_tensor,
    recorded_file_order,
    save_dwi,
    save_mask,
    save_scalar,
    save_tensor,
    voxel_size,
)

__all__ = [
    "JSON_SUFFIXES", "NIFTI_SUFFIXES", "NRRD_SUFFIXES", "TENSOR_SUFFIXES", "Outputs", "atomic_write", "check_output",
    "write_json", "write_text", "as_read", "write_order", "check_tensor_output", "layout_words", "bval_bvec_paths",
    "check_dwi", "load_dwi", "load_mask", "load_mask_refined", "load_scalar", "load_tensor", "recorded_file_order", "reads_fully", "save_dwi", "save_mask", "save_scalar", "save_tensor", "voxel_size",
]
