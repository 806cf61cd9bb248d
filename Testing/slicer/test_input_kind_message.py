"""A scalar or label volume picked as the input is refused with what to pick: a DTI or DWI volume (the
message said "(estimate it from a DWI first)", although the module fits a DWI itself)."""

from __future__ import annotations

import pytest

from ImageQualityTransferLib.core.errors import IQTError

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from ImageQualityTransferLib.slicer import processing  # noqa: E402


@pytest.mark.parametrize("cls, kind", [("vtkMRMLScalarVolumeNode", "scalar volume"),
                                        ("vtkMRMLLabelMapVolumeNode", "label map")])
def test_a_scalar_input_is_told_to_pick_a_dti_or_dwi_volume(cls, kind):
    scene = slicer.vtkMRMLScene()
    node = getattr(slicer, cls)()
    node.SetName("brain")
    scene.AddNode(node)
    with pytest.raises(IQTError) as info:
        processing.run_on_nodes(scene, node, "cubic", 2)
    said = str(info.value)
    assert "estimate it from a DWI" not in said
    assert "select a diffusion tensor (DTI) or diffusion-weighted (DWI) volume" in said
    assert f"'brain', a {kind}" in said
