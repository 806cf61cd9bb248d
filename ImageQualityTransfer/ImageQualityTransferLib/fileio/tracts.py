"""Tractogram files: streamlines in world RAS millimetres written as `.trk` (dipy `save_tractogram`, a
`StatefulTractogram` in RASMM referenced to the tensor image) or VTK polydata (`.vtk` legacy, `.vtp` XML), which
3D Slicer loads as a model (SlicerDMRI as a fiber bundle). The VTK files are tagged RAS as Slicer tags its own:
Slicer >= 4.11 (vtkMRMLModelStorageNode) reads an untagged file as LPS, which mirrors the tracts in x and y.
Each is written atomically, a full disk or file-size limit said in one line (fileio/writing.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.errors import IQTError
from ..core.volume import Volume
from .paths import check_output
from .writing import atomic_write, full_or_too_large

TRACT_SUFFIXES = (".trk", ".vtk", ".vtp")


def check_tract_output(path) -> Path:
    return check_output(path, TRACT_SUFFIXES, "tractogram")


def save_tracts(streamlines, reference: Volume, path) -> Path:
    """Write streamlines (world RAS mm): .trk (TrackVis, referenced to `reference`) or .vtk/.vtp polydata."""
    p = check_tract_output(path)
    suffix = p.suffix.lower()
    if suffix == ".trk":
        import nibabel as nib
        from dipy.io.stateful_tractogram import Space, StatefulTractogram
        from dipy.io.streamline import save_tractogram

        ref = nib.Nifti1Image(np.zeros(reference.shape3, np.uint8), reference.affine)

        def write(tmp):
            sft = StatefulTractogram(list(streamlines), ref, Space.RASMM)
            save_tractogram(sft, tmp, bbox_valid_check=False)

        atomic_write(p, write)
    else:
        atomic_write(p, lambda tmp: _write_vtk(streamlines, tmp, xml=suffix == ".vtp", name=p))
    return p


def polydata(streamlines):
    """vtkPolyData with one polyline per streamline (points in RAS mm)."""
    import vtk
    from vtk.util import numpy_support

    pts = np.concatenate(streamlines).astype(np.float32) if len(streamlines) else np.zeros((0, 3), np.float32)
    points = vtk.vtkPoints()
    points.SetData(numpy_support.numpy_to_vtk(pts, deep=True))
    lines = vtk.vtkCellArray()
    start = 0
    for sl in streamlines:
        n = len(sl)
        lines.InsertNextCell(n)
        for i in range(start, start + n):
            lines.InsertCellPoint(i)
        start += n
    pd = vtk.vtkPolyData()
    pd.SetPoints(points)
    pd.SetLines(lines)
    return pd


VTK_SPACE = "SPACE=RAS"  # the tag vtkMRMLModelStorageNode looks for in a legacy header (it writes "3D Slicer output. SPACE=RAS")


def _write_vtk(streamlines, path, xml: bool, name=None):
    """Legacy .vtk (header tagged SPACE=RAS, file version 4.2 as Slicer writes it, for readers before VTK 9) or
    XML .vtp (a field-data string array "SPACE" holding "RAS", where Slicer keeps the tag). `name`: the output the
    file at `path` becomes, for messages. A write VTK could not finish raises (its XML writer returns success on a full
    disk and leaves a truncated file), a full disk or file-size limit as the OSError
    `writing.atomic_write` says in one line; VTK's own messages are kept off stderr."""
    import errno

    import vtk

    pd = polydata(streamlines)
    if xml:
        writer = vtk.vtkXMLPolyDataWriter()
        space = vtk.vtkStringArray()
        space.SetName("SPACE")
        space.InsertNextValue("RAS")
        pd.GetFieldData().AddArray(space)
    else:
        writer = vtk.vtkPolyDataWriter()
        writer.SetHeader(f"iqt track {VTK_SPACE}")
        writer.SetFileVersion(42)
    writer.SetFileName(str(path))
    writer.SetInputData(pd)
    shown = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        ok = writer.Write()
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(shown)
    code = writer.GetErrorCode()
    if ok and not code:
        return
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # the XML writer keeps the errno
        raise OSError(code, os.strerror(code), str(path))
    if code == vtk.vtkErrorCode.OutOfDiskSpaceError:  # the legacy writer's word for a full disk or a file-size limit
        raise OSError(full_or_too_large(path), "VTK ran out of room", str(path))
    raise IQTError(f"{name or path}: VTK could not write the tractogram "
                   f"({vtk.vtkErrorCode.GetStringFromErrorCode(code) if code else 'no reason given'})")


def load_tracts(path) -> list:
    """Streamlines (world RAS mm) from .trk, .vtk or .vtp. Only the tests use it, to read back what `save_tracts`
    wrote (no command reads a tractogram)."""
    p = Path(path)
    if not p.exists():
        raise IQTError(f"{p}: file not found")
    if p.suffix.lower() == ".trk":
        from dipy.io.streamline import load_tractogram

        sft = load_tractogram(str(p), "same", bbox_valid_check=False)
        sft.to_rasmm()
        return [np.asarray(s) for s in sft.streamlines]
    import vtk
    from vtk.util import numpy_support

    reader = vtk.vtkXMLPolyDataReader() if p.suffix.lower() == ".vtp" else vtk.vtkPolyDataReader()
    reader.SetFileName(str(p))
    reader.Update()
    pd = reader.GetOutput()
    pts = numpy_support.vtk_to_numpy(pd.GetPoints().GetData()) if pd.GetNumberOfPoints() else np.zeros((0, 3))
    out, ids = [], vtk.vtkIdList()
    lines = pd.GetLines()
    lines.InitTraversal()
    while lines.GetNextCell(ids):
        out.append(pts[[ids.GetId(i) for i in range(ids.GetNumberOfIds())]])
    return out
