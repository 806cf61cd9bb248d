"""The Slicer module's upsampling modes (slicer/upsampling.py): factors per mode and input spacing, the output
voxel size, the methods offered at those factors, and a through-plane run on a real node (slicer-core)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ImageQualityTransferLib import fileio, methods
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.slicer import upsampling

from helpers import AFFINES, random_tensors


@pytest.mark.parametrize("f", [2, 3, 4])
def test_isotropic_mode_needs_no_spacing(f):
    assert upsampling.factors_for("isotropic", f) == (f, f, f)
    assert upsampling.factors_for("isotropic", f, spacing=(2, 2, 5)) == (f, f, f)


@pytest.mark.parametrize("spacing, expect", [((2, 2, 5), (1, 1, 3)), ((5, 2, 2), (3, 1, 1)), ((2, 5, 2), (1, 3, 1)),
                                             ((2, 2, 2), (1, 1, 3)), ((2.5, 2.5, 2.5000001), (1, 1, 3))])
def test_through_plane_refines_the_thick_slice_axis(spacing, expect):
    assert upsampling.factors_for("through-plane", 3, spacing=spacing) == expect


@pytest.mark.parametrize("spacing, mm, expect", [((2, 2, 5), 2, (1, 1, 3)), ((2, 2, 5), 1, (2, 2, 5)),
                                                 ((5, 2, 2), 2.5, (2, 1, 1)), ((2, 2, 2), 1.5, (2, 2, 2))])
def test_voxel_size_mode(spacing, mm, expect):
    f = upsampling.factors_for("voxel-size", voxel_size_mm=mm, spacing=spacing)
    assert f == expect
    assert max(upsampling.output_spacing(spacing, f)) <= mm + 1e-9


def test_output_spacing():
    np.testing.assert_allclose(upsampling.output_spacing((2, 2, 5), (1, 1, 3)), (2, 2, 5 / 3))
    np.testing.assert_allclose(upsampling.output_spacing((2, 2, 5), 2), (1, 1, 2.5))


@pytest.mark.parametrize("spacing, mm", [((2, 2, 5), 5), ((2, 2, 5), 6.5), ((2, 2, 2), 2)])
def test_a_voxel_size_that_needs_no_upsampling_says_so(spacing, mm):
    with pytest.raises(IQTError) as err:
        upsampling.factors_for("voxel-size", voxel_size_mm=mm, spacing=spacing)
    msg = str(err.value)
    assert "already at most" in msg and "smaller voxel size" in msg and "\n" not in msg
    assert "--" not in msg  # the module's wording, not the command line's


@pytest.mark.parametrize("mode, kwargs, match", [
    ("through-plane", {"spacing": None}, "select an input volume"),
    ("voxel-size", {"voxel_size_mm": 1.0, "spacing": None}, "select an input volume"),
    ("voxel-size", {"voxel_size_mm": 1.0, "spacing": (2, 0, 2)}, "select an input volume"),
    ("voxel-size", {"voxel_size_mm": 0.0, "spacing": (2, 2, 2)}, "positive number"),
    ("sideways", {}, "isotropic, through-plane, voxel-size"),
    ("isotropic", {"factor": 1}, "nothing to upsample"),
])
def test_bad_controls_say_what_to_change(mode, kwargs, match):
    with pytest.raises(IQTError, match=match):
        upsampling.factors_for(mode, **kwargs)


def _listed():
    """The module's method list (Logic.availableMethods): learned methods with a shipped model, and interpolation."""
    return [e for e in methods.describe() if not e["learned"] or e["shipped"]]


@pytest.mark.parametrize("f", [2, 3, (1, 1, 2), (2, 2, 1)])
def test_offered_methods_are_the_ready_ones(f):
    """What the module offers at `f` is `methods.ready(f)`, plus the CNNs while PyTorch is not installed yet."""
    entries = _listed()
    offered = [e["name"] for e in upsampling.offered(entries, f)]
    assert [n for n in offered if methods.runs_here(n)] == methods.ready(f)
    assert all(e["learned"] for e in entries if e["name"] not in offered)
    assert "cubic" in offered
    for e in entries:  # a learned method is offered exactly where one of its models serves f (a reordering too)
        if e["learned"]:
            assert (e["name"] in offered) == methods.serves(e["shipped"], f), (e["name"], f)
    if f == (2, 2, 1):  # no model for a thin-slab factor: interpolation only
        assert all(not methods.method_class(n).learned for n in offered)


# ---------------------------------------------------------------- with slicer-core

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from ImageQualityTransferLib.slicer import mrml, processing  # noqa: E402


@pytest.mark.filterwarnings("ignore:the input holds tensors over the whole field of view")
def test_through_plane_run_on_a_node():
    """Through-plane on an oblique sagittal grid (spacing 3 x 1.5 x 2 mm): the node's IJK spacing picks axis i, and
    the run refines that axis alone."""
    scene = slicer.vtkMRMLScene()
    lr = Volume(random_tensors((6, 8, 5), seed=3), AFFINES["psr"], "tensor")
    node = mrml.add_tensor_node(scene, lr, "thick")
    spacing = node.GetSpacing()
    f = upsampling.factors_for("through-plane", 2, spacing=spacing)
    assert f == (2, 1, 1)
    out = processing.run_on_nodes(scene, node, "linear", f)["tensor"]
    assert out.GetImageData().GetDimensions() == (12, 8, 5)
    from ImageQualityTransferLib.slicer import display

    assert out.GetAttribute(mrml.FACTORS_ATTRIBUTE) == "2,1,1"
    assert display.view_for_node(out) == "Axial"  # PSR: axis i runs along A, so the axial view shows the refinement
    axial = mrml.add_tensor_node(scene, Volume(random_tensors((6, 8, 5), seed=4), np.diag([-2.0, 2.0, 4.0, 1.0]), "tensor"), "axial")
    thick_s = processing.run_on_nodes(scene, axial, "linear", (1, 1, 2))["tensor"]
    assert display.view_for_node(thick_s) == "Coronal"  # thick axial slices: the coronal view shows them refined
    np.testing.assert_allclose(out.GetSpacing(), upsampling.output_spacing(spacing, f), rtol=1e-9)
    if methods.serves(methods.shipped_factors("biqt"), f):  # the axial through-plane model, axes permuted
        learned = processing.run_on_nodes(scene, node, "biqt", f)["tensor"]
        assert learned.GetImageData().GetDimensions() == (12, 8, 5)
    f4 = upsampling.factors_for("through-plane", 4, spacing=spacing)
    with pytest.raises(IQTError, match="factors 4,1,1") as info:  # a learned method names the factors it has a model for
        processing.run_on_nodes(scene, node, "biqt", f4)
    said = str(info.value)  # the module's controls, the command that trains a model as it is
    assert "give --model" not in said and "Advanced > Model file" in said and "'iqt train --method biqt" in said


@pytest.fixture(scope="module")
def loaded_phantom(small_subject):
    """small_subject loaded (its DWI, mask and fit), once for the tests that degrade it."""
    from ImageQualityTransferLib.dmri.subject import load_subject

    return load_subject(small_subject)


def test_a_run_on_unmasked_tensors_keeps_to_the_estimated_brain_and_notes_it(loaded_phantom, tmp_path):
    """Tensors fitted over the whole field of view (Slicer's DWI to DTI estimation) and no mask node: the output is
    zero outside the brain estimated from the tensors, and the run's note says so on the output node (the module
    shows it in its status line); a second run with a mask clears the note."""
    from ImageQualityTransferLib.dmri.subject import make_case

    case = make_case(loaded_phantom, 2, style="unmasked")
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, case.lr, "unmasked")
    out = processing.run_on_nodes(scene, node, "cubic", 2, interpolate=True)["tensor"]
    notes = out.GetAttribute(mrml.NOTES_ATTRIBUTE)
    assert notes and notes.count("estimated from the tensors") == 1, notes  # once, not once per method
    assert notes.split("\n")[-1].endswith("; choose a Brain mask to leave out scalp and background"), notes  # over lines
    # of whole pieces, as iqt upsample prints it (methods/base.py warning_lines)
    assert "--mask" not in notes and "choose a Brain mask" in notes  # the module's control, not the command line's
    data = mrml.tensor_volume_from_node(out).data
    assert 0.2 < np.any(data != 0, axis=-1).mean() < 0.8
    assert out.GetAttribute(mrml.SUPPORT_ATTRIBUTE) == "estimated"  # the uncertainty legend scales to the brain by it
    storage = slicer.vtkMRMLNRRDStorageNode()  # saved from Slicer, the output carries the record `iqt track` reads
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "saved.nrrd"))
    assert storage.WriteData(out) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert fileio.load_tensor(tmp_path / "saved.nrrd").meta.get("support") == "estimated"
    # and each map's floor (legends.brain_of_map): the maps rescaled to the node's unit (µm²/ms) had lost the mark
    maps = processing.run_on_nodes(scene, node, "rf", 2)["uncertainties"]
    assert {k: m.GetAttribute(mrml.SUPPORT_ATTRIBUTE) for k, m in maps.items()} == {k: "estimated" for k in maps}
    mask_node = mrml.add_scalar_node(scene, Volume(case.lr_mask.data.astype(np.float32), case.lr.affine, "scalar"), "brain")
    again = processing.run_on_nodes(scene, node, "cubic", 2, mask_node=mask_node)["tensor"]
    assert again is out and out.GetAttribute(mrml.NOTES_ATTRIBUTE) is None
    assert out.GetAttribute(mrml.SUPPORT_ATTRIBUTE) is None
    # the module runs torch methods in a separate process (slicer.worker): the notes come back from it too
    far = processing.predict_in_subprocess(case.lr, processing.Request("cubic", 2))["tensor"]
    assert len(far.meta["notes"]) == 1 and "estimated from the tensors" in far.meta["notes"][0]
    assert far.meta["support"] == "estimated"  # and the mark the legend is scaled by


def _noisy_biqt_notes(subject, snr):
    """biqt's notes on the output node of a real scan's tight ×2 tensors with Rician noise at b0 SNR `snr`, given as a
    DTI node with its mask."""
    from ImageQualityTransferLib.dmri import degrade as deg, randomise

    pair = deg.degrade(subject.dwi, subject.mask.data, 2, style="tight", noise=randomise.rician(snr, 0))
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, pair.tensor, "noisy")
    mask_node = mrml.add_scalar_node(scene, Volume(pair.mask.data.astype(np.float32), pair.tensor.affine, "scalar"),
                                     "brain")
    return processing.run_on_nodes(scene, node, "biqt", 2, mask_node=mask_node)["tensor"].GetAttribute(
        mrml.NOTES_ATTRIBUTE)


@pytest.mark.slow
def test_a_noisy_scan_runs_the_noise_trained_model_and_the_module_says_so(axial_subject):
    """A real dev scan's tight ×2 tensors with Rician noise (b0 SNR 15) as a DTI node: biqt runs its model trained
    with added noise, and the run's note on the output node says so in the module's words."""
    notes = _noisy_biqt_notes(axial_subject, 15)
    assert notes and "biqt uses its noise-trained model" in notes and "--" not in notes


@pytest.mark.slow
def test_a_noisier_scan_s_long_note_is_said_in_short_lines(axial_subject):
    """At b0 SNR 5 biqt's note on the output node (noise index about 0.17: the edge of its training and its raised
    map) had been one line of more than 200 characters; it is said in lines of at most 200 (methods/base.py
    warning_lines), the later one naming biqt's map, as iqt upsample prints it."""
    lines = _noisy_biqt_notes(axial_subject, 5).split("\n")
    noise = [n for n in lines if "noise" in n or "uncertainty map" in n]
    assert len(noise) >= 2 and max(map(len, lines)) <= 200, lines
    assert "biqt uses its noise-trained model" in noise[0] and "biqt's uncertainty map" in noise[-1], noise


def test_a_mask_on_the_output_grid_keeps_the_view_to_it(small_subject):
    """`iqt view --mask` with a high-res mask: the method's outputs and the cubic comparison are zero outside it, and
    inside it they are the run with the mask reduced to the input's grid."""
    from ImageQualityTransferLib.core.grid import repeat_blocks
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case

    case = make_case(load_subject(small_subject), 2, style="tight")
    hr = case.lr_mask.replace(data=repeat_blocks(case.lr_mask.data, 2) & case.hr_mask)
    request = processing.Request("biqt", 2, interpolate=True)
    cut = processing.predict_volumes(case.lr, request, hr)
    full = processing.predict_volumes(case.lr, request, case.lr_mask)
    for key in ("tensor", "uncertainty/std", "interpolated"):
        assert not cut[key].data[~hr.data].any(), key
        assert np.array_equal(cut[key].data[hr.data], full[key].data[hr.data]), key
    assert np.any(full["tensor"].data[~hr.data] != 0)


def test_failed_fits_written_as_nan_are_one_of_the_run_s_notes(small_subject):
    """A DTI node with NaN in every element of some brain voxels (failed fits): the line that says they are filled
    reached only the Python console, the status line's note said nothing (a display audit)."""
    from ImageQualityTransferLib.dmri.subject import load_subject, make_case

    case = make_case(load_subject(small_subject), 2)
    data = np.array(case.lr.data)
    inside = np.argwhere(case.lr_mask.data)[len(np.argwhere(case.lr_mask.data)) // 2]
    data[tuple(inside)] = np.nan
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, case.lr.replace(data=data), "holed")
    out = processing.run_on_nodes(scene, node, "cubic", 2)["tensor"]
    notes = out.GetAttribute(mrml.NOTES_ATTRIBUTE)
    assert notes and "1 voxel inside the tensors holds NaN in every element" in notes, notes


@pytest.mark.parametrize("snr", [None, 5])
def test_a_mask_beyond_the_head_is_said_in_the_module_s_words(loaded_phantom, snr):
    """The note of a Brain mask lying beyond the head of a whole-field input had told the module's user to "give this
    scan's own" mask, the command line's verb (a Slicer audit of the noisy-scan wording): the panel's Brain mask is
    chosen, on a clean scan and on a noisy one, whose note keeps its own advice."""
    import warnings

    from ImageQualityTransferLib.dmri.subject import make_case

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        case = make_case(loaded_phantom, 2, style="unmasked", snr=snr)
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, case.lr, "whole_field")
    moved = np.roll(np.asarray(case.lr_mask.data, np.uint8), 4, 0)
    mask_node = mrml.add_scalar_node(scene, Volume(moved, case.lr.affine, "scalar"), "moved_mask")
    nodes = processing.run_on_nodes(scene, node, "cubic", 2, mask_node=mask_node)
    said = [n for n in (nodes["tensor"].GetAttribute(mrml.NOTES_ATTRIBUTE) or "").split("\n") if "beyond the head" in n]
    assert len(said) == 1, said
    assert "give this scan's own" not in said[0].lower(), said[0]
    assert said[0].endswith("hoose this scan's own Brain mask ('iqt mask', 'iqt degrade --mask-out'), or none"), said[0]
    assert ("if it is this scan's own brain mask, keep it; if not, choose" in said[0]) == (snr is not None), said[0]
