"""Which nodes a run fills, on real slicer-core scenes: a run refills the outputs an earlier run made from the same
input (test_display.py: node counts over repeated runs), never those of another input once a saved scene has been
imported next to it."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from ImageQualityTransferLib.slicer import mrml, processing, results  # noqa: E402


@pytest.fixture(scope="module")
def lowres():
    from ImageQualityTransferLib.dmri import degrade, dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(24, 28, 20), voxel_mm=2.0, n_dirs=12)
    return degrade.degrade(dwi, dti.brain_mask(dwi).data, 2).tensor


def tensors_of(node) -> np.ndarray:
    return mrml.tensor_volume_from_node(node).data.copy()


def volume_names(scene) -> list[str]:
    return sorted(scene.GetNthNodeByClass(i, "vtkMRMLVolumeNode").GetName()
                  for i in range(scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode")))


def save_scene(scene, folder) -> str:
    """`scene` saved as Slicer's File > Save writes it (a data bundle directory); the .mrml file's path."""
    folder.mkdir()
    app = slicer.vtkMRMLApplicationLogic()
    app.SetMRMLScene(scene)
    assert app.SaveSceneToSlicerDataBundleDirectory(str(folder), None)
    return str(folder / f"{folder.name}.mrml")


def test_an_imported_scenes_results_are_not_refilled_by_another_inputs_run(tmp_path, lowres):
    """Patient A's saved scene imported into a scene holding patient B: MRML gives A's input another ID (B's has
    its old one), which a text attribute holding the input's ID did not follow, so B's run refilled A's results
    (audit: A's tensors changed by up to 1.6e-3 mm²/s). B's run makes B's nodes; A's run refills A's. The folders
    too: A's, found by that ID, had taken B's nodes and B's name (a Slicer-module audit)."""
    scene_a = slicer.vtkMRMLScene()
    a = mrml.add_tensor_node(scene_a, lowres, "patientA_dti")
    processing.run_on_nodes(scene_a, a, "linear", 2, interpolate=True)
    saved = save_scene(scene_a, tmp_path / "patientA")

    scene = slicer.vtkMRMLScene()
    b = mrml.add_tensor_node(scene, lowres.replace(data=lowres.data * 1.5), "patientB_dti")
    assert b.GetID() == a.GetID()  # the clash the import resolves
    scene.SetURL(saved)
    scene.Import()
    a = scene.GetFirstNodeByName("patientA_dti")
    a_results = [scene.GetFirstNodeByName(n) for n in ("patientA_dti_linear", "patientA_dti_cubic")]
    assert a.GetID() != b.GetID() and None not in a_results
    kept = [tensors_of(n) for n in a_results]

    nodes_b = processing.run_on_nodes(scene, b, "linear", 2, interpolate=True)
    assert [nodes_b[k].GetName() for k in ("tensor", "interpolated")] == ["patientB_dti_linear", "patientB_dti_cubic"]
    for node, before in zip(a_results, kept):
        np.testing.assert_array_equal(tensors_of(node), before, err_msg=f"{node.GetName()} was refilled by B's run")

    assert _folders(scene) == {"patientA_dti: linear": ["patientA_dti_linear"],
                               "patientA_dti: cubic": ["patientA_dti_cubic"],
                               "patientB_dti: linear": ["patientB_dti_linear"],
                               "patientB_dti: cubic": ["patientB_dti_cubic"]}, _folders(scene)

    names = volume_names(scene)
    nodes_a = processing.run_on_nodes(scene, a, "linear", 2, interpolate=True)
    assert [nodes_a["tensor"], nodes_a["interpolated"]] == a_results and volume_names(scene) == names
    assert len(_folders(scene)) == 4  # A's run refills A's folders
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    folder = sh.GetItemParent(sh.GetItemByDataNode(nodes_a["tensor"]))
    assert sh.GetItemAttribute(folder, results.INPUT_NODE_ATTRIBUTE) == a.GetID()  # the input's ID now, not as saved


def test_a_result_of_a_scene_saved_before_is_left_as_it_is(lowres):
    """A node that names its input only in the former text attribute (scenes saved before) is not refilled: a run
    makes new nodes beside it (its ID may be another input's since an import)."""
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, lowres, "dti")
    old = mrml.add_tensor_node(scene, lowres, "dti_linear")
    old.SetAttribute("ImageQualityTransfer.Result", f"{node.GetID()}/linear/tensor")
    before = tensors_of(old)
    nodes = processing.run_on_nodes(scene, node, "linear", 2)
    assert nodes["tensor"] is not old and nodes["tensor"].GetName() == "dti_linear_1"
    np.testing.assert_array_equal(tensors_of(old), before)


def clone_in_subject_hierarchy(scene, node):
    """The node Slicer's Data module > Clone makes of `node` (vtkSlicerSubjectHierarchyModuleLogic), found by its name:
    slicer-core has no plugin that gives the clone a subject hierarchy item, so the call's returned item is invalid."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    item = hierarchy.GetItemByDataNode(node) or hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    slicer.vtkSlicerSubjectHierarchyModuleLogic.CloneSubjectHierarchyItem(hierarchy, item, "cloned")
    return scene.GetFirstNodeByName("cloned")


def test_a_copy_of_a_result_is_never_refilled(lowres):
    """A result the user keeps as a copy (scene.CopyNode copies its attributes and node references; the Data module's
    Clone) stays as it is: the next run refills the original, or makes a new node once the original is deleted. The
    copy was refilled (audit: a copy of an unmasked result changed by up to 2.9e-3 on a masked rerun)."""
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, lowres, "dti")
    original = processing.run_on_nodes(scene, node, "linear", 2)["tensor"]
    copied = scene.CopyNode(original)
    copied.SetName("kept")
    assert copied.GetAttribute(results.OUTPUT_ATTRIBUTE) == original.GetAttribute(results.OUTPUT_ATTRIBUTE)
    assert copied.GetNodeReferenceID(results.INPUT_REFERENCE) == node.GetID()  # CopyNode copies references
    cloned = clone_in_subject_hierarchy(scene, original)
    assert cloned.GetAttribute(results.OUTPUT_ATTRIBUTE) == original.GetAttribute(results.OUTPUT_ATTRIBUTE)
    kept = {n.GetName(): tensors_of(n) for n in (copied, cloned)}

    mrml.set_tensor_node(node, lowres.replace(data=lowres.data * 1.5))  # the input changed: another result
    assert processing.run_on_nodes(scene, node, "linear", 2)["tensor"] is original
    scene.RemoveNode(original)
    again = processing.run_on_nodes(scene, node, "linear", 2)["tensor"]
    assert again not in (copied, cloned) and again.GetName().startswith("dti_linear")
    assert processing.run_on_nodes(scene, node, "linear", 2)["tensor"] is again  # the new node is refilled in turn
    for n in (copied, cloned):
        np.testing.assert_array_equal(tensors_of(n), kept[n.GetName()], err_msg=f"the copy {n.GetName()} was refilled")


def test_a_runs_outputs_follow_the_inputs_name(lowres):
    """After the input is renamed, a rerun renames the outputs it refills after the new name, so they match an output
    it makes anew (they kept the old name: 'dti_biqt_uncertainty_std' beside 'patientA_dti_biqt', audit); an output
    the user renamed keeps the user's name, and a deleted one comes back under its own name, not '…_1'."""
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, lowres, "dti")
    processing.run_on_nodes(scene, node, "biqt", 2, interpolate=True)
    node.SetName("patientA_dti")
    nodes = processing.run_on_nodes(scene, node, "biqt", 2, interpolate=True)
    expected = {"tensor": "patientA_dti_biqt", "interpolated": "patientA_dti_cubic",
                "std": "patientA_dti_biqt_uncertainty_std", "direction": "patientA_dti_biqt_uncertainty_direction"}

    def names(nodes):
        return {k: nodes[k].GetName() for k in ("tensor", "interpolated")} | {
            k: n.GetName() for k, n in nodes["uncertainties"].items()}

    assert names(nodes) == expected
    nodes["interpolated"].SetName("my cubic")
    scene.RemoveNode(nodes["tensor"])
    again = processing.run_on_nodes(scene, node, "biqt", 2, interpolate=True)
    assert again["tensor"] is not nodes["tensor"] and names(again) == expected | {"interpolated": "my cubic"}
    assert volume_names(scene) == sorted(["patientA_dti", "my cubic", *(expected[k] for k in ("tensor", "std", "direction"))])


def _folders(scene) -> dict:
    """{folder name: [names of the nodes in it]} of the scene's subject hierarchy."""
    import vtk

    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    ids = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), ids, True)
    out = {}
    for i in range(ids.GetNumberOfIds()):
        item = ids.GetId(i)
        if sh.GetItemAttribute(item, results.FOLDER_ATTRIBUTE):
            kids = vtk.vtkIdList()
            sh.GetItemChildren(item, kids)
            out[sh.GetItemName(item)] = sorted(sh.GetItemName(kids.GetId(k)) for k in range(kids.GetNumberOfIds()))
    return out


def test_a_runs_tensor_and_maps_are_one_folder_per_method_and_factors(lowres):
    """The Data module shows each run's tensor and uncertainty maps in one folder beside the input (a Slicer reviewer's
    audit: every run's maps lay loose there), reused by the next run of the same method and factors, the cubic comparison
    in its own (a clinician's audit: it lay loose); a node the user chose as an output stays where it is."""
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, lowres, "dti")
    for factor in (2, 2, 3):
        processing.run_on_nodes(scene, node, "biqt", factor, interpolate=True)
    folders = _folders(scene)
    assert folders == {"dti: biqt": ["dti_biqt", "dti_biqt_uncertainty_direction", "dti_biqt_uncertainty_std"],
                       "dti: biqt ×3": ["dti_biqt_x3", "dti_biqt_x3_uncertainty_direction", "dti_biqt_x3_uncertainty_std"],
                       "dti: cubic": ["dti_cubic"], "dti: cubic ×3": ["dti_cubic_x3"]}  # the comparison too (it lay loose)
    processing.run_on_nodes(scene, node, "cubic", 2)  # a cubic run refills the comparison's node, in its folder
    assert _folders(scene)["dti: cubic"] == ["dti_cubic"]
    mine = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my overlay")
    processing.run_on_nodes(scene, node, "biqt", 2, targets={"uncertainty": mine})
    assert "my overlay" not in _folders(scene)["dti: biqt"]
    assert "dti_biqt_uncertainty_direction" in _folders(scene)["dti: biqt"]


def test_each_input_gets_its_own_folders_under_its_own_parent(lowres):
    """Two inputs never share a folder, whether or not they have a subject hierarchy item (Slicer gives every node one,
    under its patient and study: the folders go there, beside the input)."""
    scene = slicer.vtkMRMLScene()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    a, b = mrml.add_tensor_node(scene, lowres, "a"), mrml.add_tensor_node(scene, lowres, "b")
    study = sh.CreateFolderItem(sh.GetSceneItemID(), "study")
    sh.CreateItem(study, a)  # a under its study, as Slicer's DICOM browser leaves a loaded series
    for node in (a, b):
        processing.run_on_nodes(scene, node, "cubic", 2)
    assert _folders(scene) == {"a: cubic": ["a_cubic"], "b: cubic": ["b_cubic"]}
    folder = sh.GetItemParent(sh.GetItemByDataNode(scene.GetFirstNodeByName("a_cubic")))
    assert sh.GetItemParent(folder) == study


def test_a_runs_folder_follows_its_renamed_input_unless_the_user_renamed_it(lowres):
    """After the input is renamed, a rerun's folder takes the new name as its nodes do (it kept 'dti: biqt' beside
    'patientA_dti_biqt'); a folder the user renamed keeps the user's name."""
    scene = slicer.vtkMRMLScene()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    node = mrml.add_tensor_node(scene, lowres, "dti")
    for method in ("biqt", "cubic"):
        processing.run_on_nodes(scene, node, method, 2)
    node.SetName("patientA_dti")
    processing.run_on_nodes(scene, node, "biqt", 2)
    assert set(_folders(scene)) == {"patientA_dti: biqt", "dti: cubic"}
    folder = sh.GetItemParent(sh.GetItemByDataNode(scene.GetFirstNodeByName("patientA_dti_biqt")))
    sh.SetItemName(folder, "before surgery")
    node.SetName("patientB_dti")
    processing.run_on_nodes(scene, node, "biqt", 2)
    processing.run_on_nodes(scene, node, "cubic", 2)
    assert set(_folders(scene)) == {"before surgery", "patientB_dti: cubic"}


@pytest.mark.parametrize("kind", ["vtkMRMLDiffusionTensorVolumeNode", "vtkMRMLDiffusionWeightedVolumeNode",
                                  "vtkMRMLVectorVolumeNode", "vtkMRMLLabelMapVolumeNode"])
def test_a_volume_of_another_kind_is_refused_as_the_uncertainty_output(lowres, kind):
    """A DTI, DWI or vector node is a vtkMRMLScalarVolumeNode too: given as the uncertainty output (the Logic's
    uncertaintyNode), another patient's DTI node had become a scalar σ map without a word (a module audit)."""
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, lowres, "dti")
    other = mrml.add_tensor_node(scene, lowres, "other patient") \
        if kind == "vtkMRMLDiffusionTensorVolumeNode" else scene.AddNewNodeByClass(kind, "other")
    before = other.GetImageData()
    dims = before.GetDimensions() if before is not None else None
    n_nodes = scene.GetNumberOfNodes()
    with pytest.raises(processing.IQTError, match=f"output node '{other.GetName()}' is a {kind}, expected a "
                                                  "vtkMRMLScalarVolumeNode"):
        processing.run_on_nodes(scene, node, "biqt", 2, targets={"uncertainty": other})
    assert scene.GetNumberOfNodes() == n_nodes and other.GetImageData() is before
    assert (before.GetDimensions() if before is not None else None) == dims


def test_a_reopened_scene_lists_each_runs_own_uncertainty_maps(tmp_path, lowres):
    """The panel's Uncertainty map list came only from this session's run, so after a saved scene was opened again
    it stayed empty (a module audit); `run_maps` finds a run's maps in the scene by their run records: this run's
    maps, not another factor's or another input's."""
    scene = slicer.vtkMRMLScene()
    a, b = mrml.add_tensor_node(scene, lowres, "a"), mrml.add_tensor_node(scene, lowres, "b")
    made = processing.run_on_nodes(scene, a, "biqt", 2)
    processing.run_on_nodes(scene, a, "biqt", 3)
    processing.run_on_nodes(scene, b, "biqt", 2)
    saved = save_scene(scene, tmp_path / "saved")

    again = slicer.vtkMRMLScene()
    again.SetURL(saved)
    again.Import()
    tensor = again.GetFirstNodeByName("a_biqt")
    found = results.run_maps(again, tensor)
    assert {k: n.GetName() for k, n in found.items()} == {k: n.GetName() for k, n in made["uncertainties"].items()}
    assert sorted(found) == ["direction", "std"]
    assert results.run_maps(again, again.GetFirstNodeByName("a")) == {}  # an input: no run made it
    assert results.run_maps(again, None) == {}


def test_a_reopened_scene_lists_the_users_own_uncertainty_node_not_an_earlier_runs(tmp_path, lowres):
    """A node the user chose as the uncertainty output carries no run record, while an earlier run's node of the same
    map still does: the overlay the parameter node kept (`shown`) is the run's map, not that stale node (a review: the
    list had offered the earlier run's SD map, 11,888 voxels against this run's 4,920)."""
    scene = slicer.vtkMRMLScene()
    node = mrml.add_tensor_node(scene, lowres, "a")
    processing.run_on_nodes(scene, node, "biqt", 2)  # the automatic a_biqt_uncertainty_std
    mine = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my sigma")
    made = processing.run_on_nodes(scene, node, "biqt", 2, targets={"uncertainty": mine})
    assert made["uncertainty"] is mine
    saved = save_scene(scene, tmp_path / "saved")

    again = slicer.vtkMRMLScene()
    again.SetURL(saved)
    again.Import()
    tensor, shown = again.GetFirstNodeByName("a_biqt"), again.GetFirstNodeByName("my sigma")
    found = results.run_maps(again, tensor, shown)
    assert found["std"] is shown and found["direction"].GetName() == "a_biqt_uncertainty_direction"
    assert results.run_maps(again, None, shown) == {"std": shown}  # the tensor output a node of the user's too
