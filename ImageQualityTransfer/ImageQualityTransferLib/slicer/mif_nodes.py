"""MRtrix images (.mif, .mif.gz, .mih) as MRML nodes, Qt-free: Slicer has no reader for them, so the module's file
reader (ImageQualityTransfer.py ImageQualityTransferFileReader) hands them here. Read by the engine's reader
(fileio/mif.py): a DWI (its dw_scheme) becomes a DWI node, six volumes a DTI node, a mask (dwi2mask's bits, integers
of 0 and 1, mrcalc's floats of 0 and 1) a label map, another 3D image (a map iqt wrote) a scalar node."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import IQTError
from ..core.i18n import _
from ..core.volume import Volume
from ..fileio.mif import READ_SUFFIXES, sh_coefficients
from . import mrml


def node_name(path) -> str:
    """The node's name: the file's without its MRtrix suffix (dt.mif.gz -> dt), as Slicer names a loaded volume."""
    name = Path(path).name
    return next((name[: -len(s)] for s in READ_SUFFIXES if name.lower().endswith(s)), name)


def load_mif(scene, path, name: str | None = None):
    """A node of `scene` holding the MRtrix image at `path`: DWI, DTI or scalar by what the file holds (its header's
    dw_scheme, its volumes); anything else is refused in one line."""
    from .. import fileio
    from ..fileio.mif import read_header

    keys = read_header(path)
    dim = keys.get("dim", [""])[0].split(",")
    name = name or node_name(path)
    single = len(dim) != 4 or dim[3].strip() == "1"  # a b0 or mask made from a DWI may keep its one-row dw_scheme
    if keys.get("dw_scheme") and not single:
        return mrml.add_dwi_node(scene, fileio.load_dwi(path), name)
    if len(dim) == 4 and dim[3].strip() == "6":
        return mrml.add_tensor_node(scene, fileio.load_tensor(path), name)
    if single:  # the map reader's refusal for what is not 3D (fileio/mif.py)
        image = fileio.load_scalar(path)
        if is_mask(keys, image):  # the module's brain mask input takes label maps only
            return mrml.add_label_node(scene, image, name)
        return mrml.add_scalar_node(scene, image, name, colormap=None)  # grey, as Slicer loads one
    sh = sh_coefficients(keys, int(dim[3]) if len(dim) == 4 and dim[3].strip().isdigit() else 0)
    if sh is not None:  # amp2sh's or dwi2fod's output had been told to add its gradients
        raise IQTError(_("{path}: {what}; load the DWI it was computed from (its dw_scheme in its header) or that DWI's "
                         "tensors from dwi2tensor").format(path=path, what=sh))
    raise IQTError(_("{path}: an MRtrix image of {volumes} volumes with no gradient table (dw_scheme) is neither a DWI "
                     "nor a tensor volume (6 volumes); add its gradients with {command} or load a DWI, tensor or "
                     "single-volume image").format(path=path, volumes=dim[3].strip(), command="'mrconvert -fslgrad'"))


def is_mask(keys: dict, image: Volume) -> bool:
    """Whether a single-volume image is a brain mask: dwi2mask's bit image, integers holding only 0 and 1 (iqt's
    --mask-out and batch masks, a NIfTI mask through mrconvert: uint8), or floats holding exactly 0 and 1, both (mrcalc
    writes its masks as float32); a float map of other values or a parcellation is not one."""
    datatype = keys.get("datatype", [""])[0].lower()
    if datatype == "bit":
        return True
    values = np.unique(np.asarray(image.data))
    if datatype.startswith(("int", "uint")):
        return bool(np.isin(values, (0, 1)).all())
    return values.size == 2 and bool(np.array_equal(values, (0, 1)))  # a float map that is 0 or 1 throughout: not one
