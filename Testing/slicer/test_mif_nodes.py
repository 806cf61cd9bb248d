"""MRtrix images loaded into real slicer-core MRML nodes (slicer/mif_nodes.py, the Slicer module's file reader): what
the engine reads from the file is what the node gives back to the module's run (mrml/processing readers). The
fixtures were written by the real mrconvert and dwi2tensor (Testing/fileio/mif_fixtures/make_fixtures.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.errors import IQTError

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from ImageQualityTransferLib.slicer import mif_nodes, mrml  # noqa: E402
from ImageQualityTransferLib.slicer.processing import dwi_volume_from_node  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "fileio" / "mif_fixtures"


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.mark.parametrize("name", ["dt.mif", "dt_strides321_f64.mif.gz", "dt_int16.mih"])
def test_a_tensor_mif_becomes_a_dti_node_holding_what_the_engine_reads(scene, name):
    node = mif_nodes.load_mif(scene, FIXTURES / name)
    assert node.IsA("vtkMRMLDiffusionTensorVolumeNode") and node.GetName() == name.split(".")[0]
    got, want = mrml.tensor_volume_from_node(node), fileio.load_tensor(FIXTURES / name)
    assert np.allclose(got.affine, want.affine) and np.allclose(got.data, want.data, rtol=1e-6, atol=1e-12)


def test_a_dwi_mif_becomes_a_dwi_node_with_its_gradients(scene):
    node = mif_nodes.load_mif(scene, FIXTURES / "dwi.mif.gz")
    assert node.IsA("vtkMRMLDiffusionWeightedVolumeNode") and node.GetName() == "dwi"
    got, want = dwi_volume_from_node(node), fileio.load_dwi(FIXTURES / "dwi.mif.gz")
    assert np.array_equal(got.data, want.data) and np.allclose(got.affine, want.affine)
    assert np.allclose(got.bvals, want.bvals) and np.allclose(got.bvecs, want.bvecs, atol=1e-6)


def test_a_mask_mif_becomes_a_label_map_a_map_a_scalar_node_and_a_five_volume_one_is_refused(scene, tmp_path):
    node = mif_nodes.load_mif(scene, FIXTURES / "mask.mif")  # dwi2mask's bit mask: the module's brain mask input
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    mask = fileio.load_scalar(FIXTURES / "mask.mif")
    got = mrml.mask_from_node(node)
    assert np.array_equal(got.data, mask.data > 0) and np.allclose(got.affine, mask.affine)
    from ImageQualityTransferLib.fileio.mif import read_mif, write_mif

    data, affine, _ = read_mif(FIXTURES / "dt.mif")
    write_mif(tmp_path / "md.mif", data[..., 0].astype(np.float32), affine)  # a float map, as iqt writes one
    node = mif_nodes.load_mif(scene, tmp_path / "md.mif")
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
    assert np.array_equal(mrml.scalar_volume_from_node(node).data, data[..., 0].astype(np.float32))
    write_mif(tmp_path / "five.mif", data[..., :5], affine)
    before = scene.GetNumberOfNodes()
    with pytest.raises(IQTError, match="5 volumes with no gradient table"):
        mif_nodes.load_mif(scene, tmp_path / "five.mif")
    assert scene.GetNumberOfNodes() == before


def test_an_amp2sh_image_is_refused_saying_what_it_is(scene, tmp_path):
    """Spherical-harmonic coefficients (15 volumes, the DWI's table kept as prior_dw_scheme, as amp2sh writes them) had
    been told to add their gradients."""
    from ImageQualityTransferLib.fileio.mif import read_mif, write_mif

    data, affine, _ = read_mif(FIXTURES / "dt.mif")
    write_mif(tmp_path / "sh.mif", np.concatenate([data] * 3, axis=-1)[..., :15], affine,
              {"command_history": ["amp2sh dwi.mif sh.mif"], "prior_dw_scheme": ["0,0,0,0", "1,0,0,1000"]})
    before = scene.GetNumberOfNodes()
    with pytest.raises(IQTError, match="spherical-harmonic coefficients of lmax 4, written by amp2sh.*load the DWI"):
        mif_nodes.load_mif(scene, tmp_path / "sh.mif")
    assert scene.GetNumberOfNodes() == before


def test_an_integer_mask_of_0_and_1_becomes_a_label_map_and_other_integers_a_scalar_node(scene, tmp_path):
    """iqt's own masks (--mask-out, batch's desc-brain_mask.mif) are uint8 of 0 and 1, not dwi2mask's bits: a label map
    too, which the module's brain mask selector takes; an integer image of more values (a parcellation) stays scalar."""
    from ImageQualityTransferLib.fileio.mif import write_mif

    mask = fileio.load_scalar(FIXTURES / "mask.nii")  # mrconvert's uint8 copy of dwi2mask's mask
    write_mif(tmp_path / "own.mif", (np.asarray(mask.data) > 0).astype(np.uint8), mask.affine)
    node = mif_nodes.load_mif(scene, tmp_path / "own.mif")
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    assert np.array_equal(mrml.mask_from_node(node).data, np.asarray(mask.data) > 0)
    write_mif(tmp_path / "labels.mif", (np.asarray(mask.data) > 0).astype(np.uint8) * 2, mask.affine)
    node = mif_nodes.load_mif(scene, tmp_path / "labels.mif")
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")


def test_a_float_mask_of_0_and_1_becomes_a_label_map_and_other_floats_a_scalar_node(scene, tmp_path):
    """mrcalc writes its masks as float32 (mrcalc dwi_b0.mif 100 -gt mask.mif): exactly 0 and 1, both present, is a
    label map the module's brain mask selector offers; a float image of 0 only, 1 only, 0 and 0.5 or 0 and 2 stays a
    scalar volume."""
    from ImageQualityTransferLib.fileio.mif import write_mif

    mask = fileio.load_scalar(FIXTURES / "mask.nii")
    inside = np.asarray(mask.data) > 0
    write_mif(tmp_path / "mrcalc.mif", inside.astype(np.float32), mask.affine)
    node = mif_nodes.load_mif(scene, tmp_path / "mrcalc.mif")
    assert node.IsA("vtkMRMLLabelMapVolumeNode"), node.GetClassName()
    assert np.array_equal(mrml.mask_from_node(node).data, inside)
    for label, data in (("zeros", np.zeros(inside.shape)), ("ones", np.ones(inside.shape)),
                        ("half", inside * 0.5), ("two", inside * 2.0)):
        write_mif(tmp_path / f"{label}.mif", data.astype(np.float32), mask.affine)
        node = mif_nodes.load_mif(scene, tmp_path / f"{label}.mif")
        assert not node.IsA("vtkMRMLLabelMapVolumeNode"), label


def test_a_single_volume_that_kept_its_dwis_dw_scheme_is_a_mask_or_map_not_a_dwi(scene, tmp_path):
    """A b0 taken with 'mrconvert dwi.mif -coord 3 0 b0.mif' keeps a one-row dw_scheme and a fourth axis of one volume,
    and 'mrcalc b0.mif 100 -gt mask.mif' keeps both: the mask is a label map, the b0 a scalar volume (both had been
    refused as a DWI of fewer than 7 volumes)."""
    from ImageQualityTransferLib.fileio.mif import write_mif

    mask = fileio.load_scalar(FIXTURES / "mask.nii")
    inside = np.asarray(mask.data) > 0
    kept = {"dw_scheme": ["0,0,0,0"]}
    write_mif(tmp_path / "mask.mif", inside.astype(np.float32)[..., None], mask.affine, kept)
    node = mif_nodes.load_mif(scene, tmp_path / "mask.mif")
    assert node.IsA("vtkMRMLLabelMapVolumeNode"), node.GetClassName()
    assert np.array_equal(mrml.mask_from_node(node).data, inside)
    write_mif(tmp_path / "b0.mif", (inside * 900.0 + 50).astype(np.float32)[..., None], mask.affine, kept)
    node = mif_nodes.load_mif(scene, tmp_path / "b0.mif")
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")


@pytest.mark.skipif(shutil.which("mrconvert") is None, reason="MRtrix3's mrconvert is not on PATH (apt-get install "
                    "mrtrix3)")
@pytest.mark.parametrize("datatype", ["uint8", "int16"])
def test_a_nifti_mask_through_mrconvert_becomes_a_label_map(scene, tmp_path, datatype):
    subprocess.run(["mrconvert", "-quiet", str(FIXTURES / "mask.nii"), "-datatype", datatype,
                    str(tmp_path / "mask.mif")], check=True)
    node = mif_nodes.load_mif(scene, tmp_path / "mask.mif")
    assert node.IsA("vtkMRMLLabelMapVolumeNode"), node.GetClassName()
    assert mrml.mask_from_node(node).data.sum() == (np.asarray(fileio.load_scalar(FIXTURES / "mask.nii").data) > 0).sum()


def test_the_node_builders_are_mrmls_and_the_suffixes_are_fileio_mifs(scene):
    """The DWI and label map builders are slicer/mrml.py's, beside add_tensor_node (the tests' helpers.dwi_node is
    the same code); a node is named without any suffix fileio/mif.py reads."""
    from ImageQualityTransferLib.fileio.mif import READ_SUFFIXES

    dwi = fileio.load_dwi(FIXTURES / "dwi.mif.gz")
    got = dwi_volume_from_node(mrml.add_dwi_node(scene, dwi, "d"))
    assert np.array_equal(got.data, dwi.data) and np.allclose(got.bvecs, dwi.bvecs, atol=1e-6)
    mask = fileio.load_scalar(FIXTURES / "mask.nii")
    assert np.array_equal(mrml.mask_from_node(mrml.add_label_node(scene, mask, "m")).data, np.asarray(mask.data) > 0)
    assert {mif_nodes.node_name(f"dt{s.upper()}") for s in READ_SUFFIXES} == {"dt"}


READER = r"""
import sys, types
sys.path[:0] = [{testing!r}, {helpers!r}]
import self_test_in_batch as shell
shell.application_shell()
import slicer
sys.path.insert(0, str(shell.MODULE_DIR))
import ImageQualityTransfer as module

messages = slicer.vtkMRMLMessageCollection()
parent = types.SimpleNamespace(loadedNodes=[], userMessages=lambda: messages)  # what Slicer's reader parent gives
reader = module.ImageQualityTransferFileReader(parent)
print("can", reader.canLoadFile({dt!r}), reader.canLoadFile("x.nii.gz"))
print("load", reader.load({{"fileName": {dt!r}}}), slicer.mrmlScene.GetNodeByID(parent.loadedNodes[0]).GetClassName())
print("notes", messages.GetNumberOfMessages())
print("renamed", reader.load({{"fileName": {renamed!r}}}), messages.GetNumberOfMessages(), messages.GetNthMessageText(0))
messages.ClearMessages()
print("bad", reader.load({{"fileName": {bad!r}}}), messages.GetNumberOfMessages(), messages.GetNthMessageText(0))
"""


@pytest.mark.slow
def test_the_module_reader_loads_a_mif_and_says_why_it_cannot(tmp_path):
    """The module file's ImageQualityTransferFileReader in the batch application shell: a .mif is loaded as a DTI node
    and its id given to Slicer; a file it cannot read is one message to the user and no node."""
    import sys

    driver = Path(__file__).parent / "self_test_in_batch.py"
    bad = tmp_path / "bad.mif"
    bad.write_bytes(b"mrtrix image\ndim: 2,2\nEND\n")
    renamed = tmp_path / "renamed.mif.gz"  # a plain .mif named .gz: read, with a warning to rename it
    renamed.write_bytes((FIXTURES / "dt.mif").read_bytes())
    code = READER.format(testing=str(driver.parent), helpers=str(driver.parent.parent), dt=str(FIXTURES / "dt.mif"),
                         bad=str(bad), renamed=str(renamed))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout.splitlines()
    assert "can True False" in out and "load True vtkMRMLDiffusionTensorVolumeNode" in out, run.stdout
    assert "notes 0" in out, run.stdout
    said = next(line for line in out if line.startswith("renamed "))
    assert said.startswith("renamed True 1 ") and "rename it to renamed.mif" in said, run.stdout
    bad_line = next(line for line in out if line.startswith("bad "))
    assert bad_line.startswith("bad False 1 ") and "bad.mif" in bad_line, run.stdout
