"""The module's results as MRML nodes: named after the method, filled again by the next run with the same input and
method (found by node references that survive a scene's import), or put in the nodes the user chose."""

from __future__ import annotations

from . import mrml
from ..core import grid
from ..core.errors import IQTError
from ..core.i18n import _, translated
from ..core.volume import Volume
from ..fileio.records import SUPPORT_KEY, support_json

COMPARISON_METHOD = "cubic"  # the interpolation shown beside every result

# the panel's class in Resources/UI/ImageQualityTransfer.ui: Qt translates the panel's texts in this context
UI_CONTEXT = "ImageQualityTransfer"
# each output selector's label on the panel (Resources/UI/ImageQualityTransfer.ui), so a refusal names the selector
# that offers its choice in the panel's own words, translated once, as the panel shows them
SELECTOR_UI_LABEL = {"tensor": "High-resolution DTI:", "uncertainty": "Uncertainty:",
                     "interpolated": "Cubic interpolation (comparison):"}


def automatic_output() -> str:
    """The output selectors' empty choice, as the panel names it (its noneDisplay), in the user's language (a
    refusal's placeholder: marked whole, so a translator sees it)."""
    return _("'Named after the method'")


def automatic_comparison() -> str:
    """The comparison selector's empty choice: its node is the cubic interpolation whatever method runs
    (`<input>_cubic`), and a radiologist had read "Named after the method" there as the method chosen."""
    return _("'Named <input>_{method}'").format(method=COMPARISON_METHOD)


def selector_label(key: str | None) -> str:
    """The panel's label of the output selector `key`, quoted, in the user's language (the panel's own translation);
    the words for an output selector the panel does not label (`key` None or another) too."""
    label = SELECTOR_UI_LABEL.get(key)
    return "'" + translated(UI_CONTEXT, label).rstrip().rstrip(":").rstrip() + "'" if label else _("output")


# A run's outputs are found again by a node reference to their input, which MRML remaps when a saved scene is imported
# next to clashing node IDs (a text attribute holding the input's ID kept patient A's ID, so patient B's run refilled
# A's results), and by which output of which run they are. Nodes of scenes saved before (an attribute
# "ImageQualityTransfer.Result" only) are left as they are: a run makes new nodes beside them.
INPUT_REFERENCE = "ImageQualityTransfer.Input"  # node reference role: the input a run's output was made from
OUTPUT_ATTRIBUTE = "ImageQualityTransfer.Output"  # "<method>[_x<factors>]/<role>", e.g. "biqt_x3/uncertainty/std"
# A reference from each node the module made to itself, remapped on import as the input's: a user's copy carries the
# attributes (scene.CopyNode, Slicer's Clone) and may carry the references (CopyNode does), but its own reference points
# at the original, or at nothing once the original is deleted, so a copy the user kept is never refilled.
OWN_REFERENCE = "ImageQualityTransfer.Own"
NAME_ATTRIBUTE = "ImageQualityTransfer.Name"  # the name a run gave its output ("_1" … may follow it in the node's name)


def find_result_node(scene, input_node, output: str, class_name: str):
    """The node an earlier run made from `input_node` for `output` (method, factors, role); None where there is none,
    or more than one (neither is overwritten: the run makes a new node)."""
    found = []
    for i in range(scene.GetNumberOfNodesByClass(class_name)):
        node = scene.GetNthNodeByClass(i, class_name)
        if (node.GetAttribute(OUTPUT_ATTRIBUTE) == output and node.GetNodeReferenceID(OWN_REFERENCE) == node.GetID()
                and node.GetNodeReferenceID(INPUT_REFERENCE) == input_node.GetID()):
            found.append(node)
    return found[0] if len(found) == 1 else None


def run_maps(scene, tensor_node, shown=None) -> dict:
    """{map: node} of the uncertainty maps the run that made `tensor_node` made with it, found by their run records
    (a saved scene opened again keeps them): the panel's map list after a reload, when no run of this session holds
    them. `shown`: the run's overlay as the parameter node kept it, which wins for its map: a node the user chose as
    the uncertainty output carries no run record, and an earlier run's node of that map still does (a review: the
    list had offered that stale map as this run's). {} for a node no run of the module made, `shown` aside."""
    maps = {}
    key = shown.GetAttribute(mrml.MAP_ATTRIBUTE) if shown is not None else None
    out = tensor_node.GetAttribute(OUTPUT_ATTRIBUTE) if tensor_node is not None else None
    source = tensor_node.GetNodeReferenceID(INPUT_REFERENCE) if out else None
    if not out or not out.endswith("/tensor") or source is None:
        return {key: shown} if key else {}
    prefix = out[: -len("tensor")] + "uncertainty/"
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        role = node.GetAttribute(OUTPUT_ATTRIBUTE) or ""
        if (role.startswith(prefix) and node.GetNodeReferenceID(OWN_REFERENCE) == node.GetID()
                and node.GetNodeReferenceID(INPUT_REFERENCE) == source):
            maps[role[len(prefix):]] = node
    if key:
        maps[key] = shown
    return maps


def model_words(meta: dict) -> str:
    """The model a learned method ran, in words ("shipped model espcn_x2.pt"; "given" for one chosen by path): from
    the prediction's meta (Method.predict) or, from the worker process, the header that recorded it (records.made_by);
    "" for interpolation."""
    if meta.get("model_name") and meta.get("model_origin"):
        return f"{meta['model_origin']} model {meta['model_name']}"
    from ..fileio.records import MADE_BY

    m = MADE_BY.match(str(meta.get("made_by") or ""))
    return f"{m['origin']} model {m['model']}" if m is not None and m["model"] else ""


def _put(scene, vol: Volume, name: str, input_node, output: str, target=None):
    """`vol` into `target` (a node the user chose), else into the node an earlier run made from `input_node` for
    `output` (`find_result_node`), else into a new node named `name`; a tensor's factors go on the node
    (`mrml.FACTORS_ATTRIBUTE`, for the comparison view), and the run's notes (`mrml.NOTES_ATTRIBUTE`, for the module's
    status line)."""
    node = _put_volume(scene, vol, name, input_node, output, target)
    node.RemoveAttribute(mrml.MEDIAN_ATTRIBUTE)  # a refilled map's median is read again from its new values
    if vol.meta.get("factor") is not None:
        node.SetAttribute(mrml.FACTORS_ATTRIBUTE, grid.text(vol.meta["factor"]))
    if vol.meta.get("support"):
        node.SetAttribute(mrml.SUPPORT_ATTRIBUTE, vol.meta["support"])
    else:
        node.RemoveAttribute(mrml.SUPPORT_ATTRIBUTE)
    record = support_json(vol.meta, vol.data) if vol.kind == "tensor" else None  # Slicer saves a node's attributes as
    if record is not None:  # NRRD fields: a saved output carries the record `iqt track` reads (fileio/nrrd.py)
        node.SetAttribute(SUPPORT_KEY, record)
    else:
        node.RemoveAttribute(SUPPORT_KEY)
    if vol.meta.get(mrml.NOISE_KEY) is not None:  # a noisy input's map: its legend says so (slicer/legends.py)
        node.SetAttribute(mrml.NOISE_ATTRIBUTE, repr(float(vol.meta[mrml.NOISE_KEY])))
    else:  # a refilled node keeps no noise of an earlier run
        node.RemoveAttribute(mrml.NOISE_ATTRIBUTE)
    if vol.meta.get(mrml.NOISE_INDEX_KEY) is not None:
        node.SetAttribute(mrml.NOISE_INDEX_ATTRIBUTE, repr(float(vol.meta[mrml.NOISE_INDEX_KEY])))
    else:
        node.RemoveAttribute(mrml.NOISE_INDEX_ATTRIBUTE)
    if vol.meta.get(mrml.TENSOR_SCALE_KEY) is not None:  # the input's tensor scale, for the clean level (legends._clean)
        node.SetAttribute(mrml.TENSOR_SCALE_ATTRIBUTE, repr(float(vol.meta[mrml.TENSOR_SCALE_KEY])))
    else:
        node.RemoveAttribute(mrml.TENSOR_SCALE_ATTRIBUTE)
    model = model_words(vol.meta)
    if model:
        node.SetAttribute(mrml.MODEL_ATTRIBUTE, model)
    else:  # a refilled node keeps no model of an earlier run
        node.RemoveAttribute(mrml.MODEL_ATTRIBUTE)
    if "notes" in vol.meta:  # a refilled node keeps no note of an earlier run
        if vol.meta["notes"]:
            node.SetAttribute(mrml.NOTES_ATTRIBUTE, mrml.header_text("\n".join(vol.meta["notes"])))
        else:
            node.RemoveAttribute(mrml.NOTES_ATTRIBUTE)
    return node


def check_target_kind(node, tensor: bool, choice: str | None = None, selector: str | None = None) -> None:
    """An output node chosen by the user is a DTI node for a tensor result, else a plain scalar volume: a label map, a
    DTI, DWI or vector volume (all vtkMRMLScalarVolumeNode subclasses) would have its data replaced by a map (a module
    audit: another patient's DTI node given as the uncertainty output became a scalar image without a word)."""
    class_name = "vtkMRMLDiffusionTensorVolumeNode" if tensor else "vtkMRMLScalarVolumeNode"
    if node.GetClassName() != class_name:
        raise IQTError(_("output node '{node}' is a {kind}, expected a {expected}; choose {choice} in the {selector} "
                         "selector").format(node=node.GetName(), kind=node.GetClassName(), expected=class_name,
                                            choice=automatic_output() if choice is None else choice,
                                            selector=selector_label(None) if selector is None else selector))


def _put_volume(scene, vol: Volume, name: str, input_node, output: str, target=None):
    """`_put` without the factors. Nodes are filled in place, so repeated runs add no node and no display node."""
    tensor = vol.kind == "tensor"
    class_name = "vtkMRMLDiffusionTensorVolumeNode" if tensor else "vtkMRMLScalarVolumeNode"
    fill = mrml.set_tensor_node if tensor else mrml.set_scalar_node
    if target is not None:
        check_target_kind(target, tensor)
        target.RemoveAttribute(OUTPUT_ATTRIBUTE)  # the user's node, never reused for another run by itself
        target.RemoveNodeReferenceIDs(INPUT_REFERENCE)
        target.RemoveNodeReferenceIDs(OWN_REFERENCE)
        return fill(target, vol)
    node = find_result_node(scene, input_node, output, class_name) if input_node is not None else None
    if node is not None:
        _follow_input_name(scene, node, name)
        return fill(node, vol)
    node = (mrml.add_tensor_node if tensor else mrml.add_scalar_node)(scene, vol, name)
    if input_node is not None:
        node.SetAttribute(NAME_ATTRIBUTE, name)
        node.SetAttribute(OUTPUT_ATTRIBUTE, output)
        node.SetNodeReferenceID(INPUT_REFERENCE, input_node.GetID())
        node.SetNodeReferenceID(OWN_REFERENCE, node.GetID())
    return node


def _follow_input_name(scene, node, name: str) -> None:
    """A refilled node renamed `name` (after its input's name now) where it was named after another and the user has not
    renamed it, so that one run's outputs share one name (after a renamed input they kept the old one, and an output
    made anew took the new one)."""
    import re

    given = node.GetAttribute(NAME_ATTRIBUTE)
    if given is None or given == name or not re.fullmatch(re.escape(given) + r"(_\d+)?", node.GetName() or ""):
        return
    node.SetName(mrml.free_name(scene, name))
    node.SetAttribute(NAME_ATTRIBUTE, name)


def factor_suffix(factor) -> str:
    """"" at the module's default factor 2, else "_x3" or "_x1x1x3": result names and keys tell factors apart."""
    if factor is None or grid.isotropic(factor) == 2:
        return ""
    return "_x" + grid.text(factor).replace(",", "x")


def add_result_nodes(scene, results: dict[str, Volume], base_name: str, method: str, targets: dict | None = None,
                     input_node=None, factor=None) -> dict:
    """The results as nodes named after the method and, other than 2, the factors (`<input>_<method>`,
    `<input>_<method>_uncertainty_<map>`, `<input>_cubic`; `<input>_<method>_x3` …). A run reuses the nodes the last
    run with the same input, method and factors made, so results of other methods or factors are never overwritten
    and node counts stay flat. `targets` may map "tensor", "uncertainty" (the overlay map), "interpolated" to nodes
    the user chose, which receive that result instead.
    Returns {"tensor": node, "uncertainty": node or None, "uncertainties": {key: node}, "interpolated": node or None}."""
    targets = targets or {}
    factor = factor if factor is not None else results["tensor"].meta.get("factor")
    suffix = factor_suffix(factor)
    run = f"{method} ×{grid.text(factor)}" if suffix else method  # names the run on its legends (legends.share_scales)
    created = {"tensor": None, "uncertainty": None, "uncertainties": {}, "interpolated": None}
    created["tensor"] = _put(scene, results["tensor"], f"{base_name}_{method}{suffix}", input_node,
                             f"{method}{suffix}/tensor", targets.get("tensor"))
    unc_keys = [k for k in results if k.startswith("uncertainty/")]
    # the map shown as overlay: "std" when the method gives one, else the first
    main = next((k for k in unc_keys if k.endswith("/std")), unc_keys[0] if unc_keys else None)
    for k in unc_keys:
        short = k.split("/", 1)[1]
        vol, unit = mrml.map_in_node_unit(results[k], short)
        node = _put(scene, vol, f"{base_name}_{method}{suffix}_uncertainty_{short}", input_node,
                    f"{method}{suffix}/{k}", targets.get("uncertainty") if k == main else None)
        mrml.set_map(node, short, unit, run=run)
        model = created["tensor"].GetAttribute(mrml.MODEL_ATTRIBUTE)  # its model's clean level (legends.clean_floor)
        if model:
            node.SetAttribute(mrml.MODEL_ATTRIBUTE, model)
        if factor is not None:  # the margin its median leaves out (legends.input_support)
            node.SetAttribute(mrml.FACTORS_ATTRIBUTE, grid.text(factor))
        if k == main:
            created["uncertainty"] = node
        created["uncertainties"][short] = node
    if "interpolated" in results:
        if method == COMPARISON_METHOD and targets.get("interpolated") is None:
            created["interpolated"] = created["tensor"]  # the comparison is this run's own result
        else:  # the cubic run's node: shared with runs of cubic itself
            created["interpolated"] = _put(scene, results["interpolated"], f"{base_name}_{COMPARISON_METHOD}{suffix}",
                                           input_node, f"{COMPARISON_METHOD}{suffix}/tensor", targets.get("interpolated"))
    chosen = [targets.get(k) for k in ("tensor", "uncertainty", "interpolated")]  # they stay where the user put them
    _group(scene, input_node, f"{base_name}: {run}", f"{method}{suffix}",
           [n for n in (created["tensor"], *created["uncertainties"].values())
            if n is not None and all(n is not c for c in chosen)])
    if created["interpolated"] is not None and created["interpolated"] is not created["tensor"] \
            and all(created["interpolated"] is not c for c in chosen):  # it lay loose in the Data module (audit)
        cubic = f"{COMPARISON_METHOD} ×{grid.text(factor)}" if suffix else COMPARISON_METHOD
        _group(scene, input_node, f"{base_name}: {cubic}", f"{COMPARISON_METHOD}{suffix}", [created["interpolated"]])
    # the results are in the input's own coordinates: under its parent transform (a registration to a T1, say) they lie
    # where it lies (else they come out as far from it as the transform moves it)
    parent = input_node.GetTransformNodeID() if input_node is not None and hasattr(input_node, "GetTransformNodeID") else None
    for node in [created["tensor"], created["interpolated"], *created["uncertainties"].values()]:
        if node is not None and hasattr(node, "SetAndObserveTransformNodeID"):
            node.SetAndObserveTransformNodeID(parent)
    return created


FOLDER_ATTRIBUTE = "ImageQualityTransfer.Folder"  # on a subject hierarchy folder: the run ("<method>[_x<factors>]")
INPUT_NODE_ATTRIBUTE = "ImageQualityTransfer.InputNode"  # on the folder: the input node's ID when it was made
LABEL_ATTRIBUTE = "ImageQualityTransfer.Label"  # on the folder: the label a run gave it (the user may rename it)


def _group(scene, input_node, label: str, run: str, nodes: list) -> None:
    """The run's tensor and maps in one subject hierarchy folder (`label`) beside the input, one per input, method and
    factors, reused by the next such run: a run's six maps had lain loose in the Data module among every other run's.
    Nodes the user chose as outputs stay where the user put them. A folder the user has not renamed takes the input's
    name again, as the run's nodes do (`_follow_input_name`)."""
    if not nodes:
        return
    from slicer import vtkMRMLSubjectHierarchyNode
    from vtk import vtkIdList

    sh = vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if sh is None or input_node is None:
        return
    item = sh.GetItemByDataNode(input_node)
    parent = sh.GetItemParent(item) if item else sh.GetSceneItemID()
    children = vtkIdList()
    sh.GetItemChildren(parent, children)
    folder = next((children.GetId(i) for i in range(children.GetNumberOfIds())
                   if sh.GetItemAttribute(children.GetId(i), FOLDER_ATTRIBUTE) == run
                   and _folder_input(sh, children.GetId(i)) == input_node.GetID()), 0)
    if not folder:
        folder = sh.CreateFolderItem(parent, label)
        sh.SetItemAttribute(folder, FOLDER_ATTRIBUTE, run)
        sh.SetItemAttribute(folder, INPUT_NODE_ATTRIBUTE, input_node.GetID())
    elif sh.GetItemName(folder) == sh.GetItemAttribute(folder, LABEL_ATTRIBUTE):
        sh.SetItemName(folder, label)
    sh.SetItemAttribute(folder, LABEL_ATTRIBUTE, label)
    sh.SetItemAttribute(folder, INPUT_NODE_ATTRIBUTE, input_node.GetID())  # the input's ID now (an import changes it)
    for node in nodes:
        own = sh.GetItemByDataNode(node)
        if own:
            sh.SetItemParent(own, folder)
        else:
            sh.CreateItem(folder, node)


def _folder_input(sh, folder) -> str | None:
    """The ID of the input a run folder's nodes were made from, read from their input references, which a scene
    import remaps (the folder's INPUT_NODE_ATTRIBUTE is text, kept as it was: an imported scene's folder had taken
    another input's next run, renamed after it); the attribute only for a folder that holds none of them."""
    from vtk import vtkIdList

    children = vtkIdList()
    sh.GetItemChildren(folder, children)
    for i in range(children.GetNumberOfIds()):
        node = sh.GetItemDataNode(children.GetId(i))
        found = node.GetNodeReferenceID(INPUT_REFERENCE) if node is not None else None
        if found:
            return found
    return sh.GetItemAttribute(folder, INPUT_NODE_ATTRIBUTE) or None



def save_map(node, path) -> str:
    """Write uncertainty map node `node` as `iqt upsample --uncertainty` writes its map (fileio.save_scalar): back in the
    file unit (mm²/s for a diffusivity: the node holds `mrml.NODE_UNITS`' µm²/ms), its kind and unit in the header
    description (records.map_record, read by `iqt evaluate`) and a run record naming the module's run; NIfTI or NRRD by
    the suffix. Slicer's own Save writes the node's µm²/ms with no unit (docs/slicer.md). Returns the path written."""
    from .. import fileio
    from ..core.version import __version__
    from ..fileio.model_files import build
    from ..fileio.paths import MAP_SUFFIXES
    from ..fileio.records import MAP_UNITS, map_record, run_record

    key = node.GetAttribute(mrml.MAP_ATTRIBUTE) if node is not None and hasattr(node, "GetAttribute") else None
    if key not in MAP_UNITS or node.GetAttribute(mrml.UNIT_ATTRIBUTE) != mrml.NODE_UNITS[MAP_UNITS[key]][1]:
        name = node.GetName() if node is not None and hasattr(node, "GetName") else None
        raise IQTError((_("node {node} is no uncertainty map of this module's runs; select one of a run's uncertainty "
                          "map nodes") if name else
                        _("the node is no uncertainty map of this module's runs; select one of a run's uncertainty map "
                          "nodes")).format(node=repr(name)))
    out = fileio.check_output(path, MAP_SUFFIXES, what="uncertainty map")
    vol = mrml.scalar_volume_from_node(node)
    scale = mrml.NODE_UNITS[MAP_UNITS[key]][0]
    data = vol.data.astype("float32") if scale == 1.0 else (vol.data / scale).astype("float32")
    run = node.GetAttribute(mrml.RUN_ATTRIBUTE) or ""
    method = run.split()[0] if run.split() else "iqt"
    # ASCII only: a header value's '×' is dropped by pynrrd (fileio/nrrd.py)
    record = {"command": f"Slicer module ImageQualityTransfer: {run.replace('×', 'x')}".strip(), "method": method,
              "map": key, "unit": MAP_UNITS[key], "version": __version__, "build": build()}
    factors = node.GetAttribute(mrml.FACTORS_ATTRIBUTE)
    if factors:
        record["factors"] = factors
    with run_record(record):
        fileio.save_scalar(Volume(data, vol.affine, "scalar"), out, map_record(method, key))
    return str(out)
