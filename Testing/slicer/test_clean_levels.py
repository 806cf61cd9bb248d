"""The overlay's floor and top from a shipped model's clean level (slicer/clean_levels.py), on real slicer-core nodes: a
noisy scan's map, higher all over, colours more of the brain than a clean scan's (from its own median, the same half:
×2 espcn-hetero at b0 SNR 5), and a map of a model with no clean level keeps its own median, its legend saying which."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from ImageQualityTransferLib.core.volume import Volume  # noqa: E402
from ImageQualityTransferLib.slicer import clean_levels, legends, mrml  # noqa: E402

SHIPPED = "shipped model espcn-hetero_x2.pt"


def _map(scene, data, model: str | None, key: str = "std"):
    node = mrml.add_scalar_node(scene, Volume(data, np.eye(4), "scalar"), f"u{scene.GetNumberOfNodes()}")
    node.SetAttribute(mrml.MAP_ATTRIBUTE, key)
    if model:
        node.SetAttribute(mrml.MODEL_ATTRIBUTE, model)
    return node


def _brain_map(median: float, scale: float = 1.0) -> np.ndarray:
    """A map over a 20³ brain whose values run evenly around `median` (half to 1.5 times it), times `scale`."""
    data = np.zeros((30, 30, 30), np.float32)
    data[5:25, 5:25, 5:25] = scale * median * np.linspace(0.5, 1.5, 20 ** 3).reshape(20, 20, 20)
    return data


def _coloured(node) -> float:
    data = mrml.scalar_volume_from_node(node).data
    return float((data[data > 0] >= node.GetDisplayNode().GetLowerThreshold()).mean())


def test_a_noisy_scans_map_colours_more_of_the_brain_than_a_clean_scans():
    """×2 espcn-hetero at b0 SNR 5: a map whose median is 1.87 times the clean scan's. From its own median it coloured
    the same half of the brain as the clean one (0.50 and 0.50), its interior left uncoloured, as confident as a clean
    scan; from the model's clean median the clean map still colours about half, the noisy one nearly all of it."""
    scene = slicer.vtkMRMLScene()
    median = clean_levels.clean_level(SHIPPED, "std")[0]
    clean, noisy = (_map(scene, _brain_map(median, g), SHIPPED) for g in (1.02, 1.87))
    for node in (clean, noisy):
        legends.style_uncertainty(scene, node, "std")
    assert 0.4 < _coloured(clean) < 0.6 and _coloured(noisy) > 0.95, (_coloured(clean), _coloured(noisy))
    assert legends.legend_of(noisy).GetTitleText().endswith(
        legends.CLEAN_NOTE.format(floor=legends.floor_label(median)))
    # one scale across runs keeps the clean floor and its note
    legends.share_scales(scene, shared=True)
    assert noisy.GetDisplayNode().GetLowerThreshold() == pytest.approx(median)
    assert legends.legend_of(noisy).GetTitleText().endswith(
        legends.CLEAN_NOTE.format(floor=legends.floor_label(median)))


@pytest.mark.parametrize("model, clean", [(SHIPPED, True), ("shipped model espcn-hetero_x2_noisy.pt", True),
                                          ("given model /data/espcn-hetero_x2.pt", False),
                                          ("registered model espcn-hetero_x2.pt", False),
                                          ("shipped model espcn-hetero-var2_x2.pt", False), (None, False)])
def test_shipped_models_use_the_table_and_others_their_own_median(model, clean):
    """A shipped model's map (its noise-trained twin's too) is shown from the table's clean median; a model the user
    trained or gave, or one the table lacks, from its own median as before, the legend's line saying which. A map whose
    own median lies below the clean level is shown from that median (test_a_map_below_its_clean_level_...)."""
    scene = slicer.vtkMRMLScene()
    level = clean_levels.clean_level(SHIPPED, "std")[0]
    node = _map(scene, _brain_map(0.3), model)  # own median 0.3, well above the clean level
    legend = legends.style_uncertainty(scene, node, "std")
    floor = node.GetDisplayNode().GetLowerThreshold()
    assert floor == pytest.approx(level if clean else 0.3, rel=1e-5)
    note = legends.CLEAN_NOTE if clean else legends.FLOOR_NOTE
    assert f"\n{note.format(floor=legends.floor_label(floor))}\n" in legend.GetTitleText() + "\n"  # above "top colour"


def test_the_direction_maps_colours_span_its_floor_to_its_top():
    """The direction map was coloured from its median (44° on a clean dev scan) on a 0-60° bar: every coloured voxel in
    the bar's top quarter, about one colour. Its colours now start at the round ten under its floor."""
    scene = slicer.vtkMRMLScene()
    median = clean_levels.clean_level(SHIPPED, "direction")[0]
    node = _map(scene, _brain_map(median), SHIPPED, "direction")
    legends.style_uncertainty(scene, node, "direction")
    display = node.GetDisplayNode()
    assert display.GetLowerThreshold() == pytest.approx(median)
    assert display.GetWindowLevelMin() == median // 10 * 10 and display.GetWindowLevelMax() == 60.0
    assert legends.scale_low(None, 60.0) == 0.0 and legends.scale_low(58.0, 60.0) == 50.0


def test_a_map_below_its_clean_level_is_shown_from_its_own_median():
    """A noise-trained model's map can run below the clean model's (biqt ×3 on the dev scans at b0 SNR 5): from the
    clean level it coloured 28-42 % of the brain, from its median over its noise factor 94-97 %. The lower floor is
    used, and the legend names it."""
    scene = slicer.vtkMRMLScene()
    median = clean_levels.clean_level(SHIPPED, "std")[0]
    node = _map(scene, _brain_map(median, 0.8), SHIPPED)
    legend = legends.style_uncertainty(scene, node, "std")
    assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.8 * median, rel=1e-4)
    assert 0.45 < _coloured(node) < 0.55 and "\n\u2265 median " in legend.GetTitleText()


def test_every_shipped_uncertainty_model_has_a_clean_level():
    """Each shipped model of a method with an uncertainty map (registry.json; a noise-trained twin is read against its
    clean model's level) has a clean level for its tensor SD and direction maps, each map's median under its 99th
    percentile: 11 of the 18 (espcn-hetero ×1,1,3, biqt and rf through-plane, rf ×3, the var1 models but ×2) had none,
    and were coloured from their own median, half of a noisy scan's brain as of a clean one's."""
    import json

    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.fileio.paths import MODELS_DIR

    registry = json.loads((MODELS_DIR / "registry.json").read_text())["models"]
    shipped = {e["sidecar"].removesuffix(".json").removesuffix("_noisy") for e in registry
               if e["method"] in methods.with_uncertainty()}
    written = json.loads(clean_levels.LEVELS_FILE.read_text())
    table = written["models"]
    assert len(shipped) == 18, sorted(shipped)
    # one recorded run measured them all (benchmarks/clean_levels.py)
    run = written["command"].split("--models ")[1].split(",")
    assert sorted(run) == sorted(":".join(m.rsplit("_x", 1)) for m in shipped), run
    missing = sorted(m for m in shipped if not {"std", "direction"} <= set(table.get(m, {})))
    assert not missing, f"shipped uncertainty models with no clean level: {missing}"
    bad = {f"{m} {k}": v for m, maps in table.items() for k, v in maps.items()
           if clean_levels.clean_level(f"shipped model {m}.pt", k) is None}
    assert not bad, bad


def test_a_noisy_scans_direction_map_colours_no_less_of_the_brain_than_a_clean_scans():
    """The noise-trained twin's direction map may read low: on the 3 mm ortho dev scan biqt ×2's clean map has its
    median above the clean level (49 against 45), the SNR-10 map its median below it. From the lower of the two the
    clean map coloured more of the brain than the noisy one (0.585 and 0.570), noise looking more confident; each
    direction map is coloured from its own median, the same half."""
    scene = slicer.vtkMRMLScene()
    level = clean_levels.clean_level("shipped model biqt_x2.npz", "direction")[0]
    clean = _map(scene, _brain_map(1.08 * level), "shipped model biqt_x2.npz", "direction")
    noisy = _map(scene, _brain_map(0.97 * level), "shipped model biqt_x2_noisy.npz", "direction")
    noisy.SetAttribute(mrml.NOISE_ATTRIBUTE, "1.0")  # the direction map is drawn from the SD, never scaled itself
    for node in (clean, noisy):
        legends.style_uncertainty(scene, node, "direction")
    assert _coloured(noisy) >= _coloured(clean) - 1e-3, (_coloured(clean), _coloured(noisy))
    for node in (clean, noisy):
        note = "\n\u2265 median " + legends.floor_label(legends._median(node)) + "\n"
        assert note in legends.legend_of(node).GetTitleText() + "\n"


def _noisy_scaled(scene, median: float = 0.189, g: float = 1.5477):
    """biqt ×2's map of the 3 mm ortho dev scan at b0 SNR 5: median 0.189, scaled by its noise factor 1.55."""
    node = _map(scene, _brain_map(median), "shipped model biqt_x2_noisy.npz")
    node.SetAttribute(mrml.NOISE_ATTRIBUTE, repr(g))
    node.SetAttribute(mrml.NOISE_INDEX_ATTRIBUTE, "0.3")
    return node


def test_a_noisy_inputs_scaled_map_is_not_said_to_be_shown_from_its_median():
    """Coloured from its median over its noise factor (0.122, below biqt's clean level 0.15), the map's legend had read
    "≥ median 0.12" while its median was 0.189: its line names no median it does not have."""
    scene = slicer.vtkMRMLScene()
    node = _noisy_scaled(scene)
    title = legends.style_uncertainty(scene, node, "std").GetTitleText()
    assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.189 / 1.5477, rel=1e-4)
    assert "\nshown \u2265 0.12\n" in title + "\n" and "median" not in title and "clean" not in title, title


def test_under_a_shared_scale_each_maps_note_is_true_of_it():
    """One floor per map across runs, the lowest: espcn-hetero's clean level (0.12) under a biqt map whose own clean
    level is 0.15, a user's model's map and a noisy scaled one. Each legend had taken the lowest floor's word ("≥ clean
    0.12" on all four); only the map whose clean level it is says "clean", the others "shown"."""
    scene = slicer.vtkMRMLScene()
    level = clean_levels.clean_level(SHIPPED, "std")[0]
    espcn = _map(scene, _brain_map(1.02 * level), SHIPPED)
    biqt = _map(scene, _brain_map(0.3), "shipped model biqt_x2.npz")
    user = _map(scene, _brain_map(0.4), "given model /data/mine.pt")
    noisy = _noisy_scaled(scene, median=0.3)
    for node in (espcn, biqt, user, noisy):
        legends.style_uncertainty(scene, node, "std")
    legends.share_scales(scene, shared=True)
    label = legends.floor_label(level)
    for node in (espcn, biqt, user, noisy):
        assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(level)
    assert f"\n{legends.CLEAN_NOTE.format(floor=label)}\n" in legends.legend_of(espcn).GetTitleText() + "\n"
    for node in (biqt, user, noisy):  # (above the clipped-top line, where there is one)
        assert f"\nshown \u2265 {label}\n" in legends.legend_of(node).GetTitleText() + "\n", node.GetName()


@pytest.mark.parametrize("tensor", [1.3, 0.8])
def test_a_clean_scans_map_is_read_against_the_level_at_its_own_tensor_scale(tensor):
    """The SD follows the tensor: a clean scan whose tensors run 1.3 times the training inputs' (a child's MD of about
    1.0 µm²/ms, another b-value) has its whole map 1.3 times higher. Against the absolute level it had coloured 0.69 of
    the Elition scan's brain, as a noisy scan does; the level times the scan's tensor scale over the training inputs'
    (mrml.TENSOR_SCALE_ATTRIBUTE, the level's "scale") colours about half, and a noisy map at that scale nearly all."""
    scene = slicer.vtkMRMLScene()
    level = clean_levels.clean_level(SHIPPED, "std")[0]
    trained = clean_levels._table()["espcn-hetero_x2"]["std"]["scale"]
    clean, noisy = (_map(scene, _brain_map(level, tensor * g), SHIPPED) for g in (1.02, 1.87))
    for node in (clean, noisy):
        node.SetAttribute(mrml.TENSOR_SCALE_ATTRIBUTE, repr(tensor * trained))
        legends.style_uncertainty(scene, node, "std")
    assert 0.45 < _coloured(clean) < 0.55 and _coloured(noisy) > 0.95, (_coloured(clean), _coloured(noisy))
    assert clean.GetDisplayNode().GetLowerThreshold() == pytest.approx(tensor * level, rel=1e-4)
    assert legends.legend_of(clean).GetTitleText().endswith(
        legends.CLEAN_NOTE.format(floor=legends.floor_label(tensor * level)))
    # the direction map, in degrees, is no diffusivity: its level is not scaled
    assert clean_levels.clean_level(SHIPPED, "direction", tensor * trained) == clean_levels.clean_level(
        SHIPPED, "direction")


def test_a_level_measured_on_another_model_file_is_not_used(monkeypatch):
    """A retrained model of a shipped name had kept the old file's level: each level records the SHA256 of the model
    file it was measured on (benchmarks/clean_levels.py) and is used only while the installed model's sidecar records
    the same; otherwise the map is coloured from its own median, as a user's model's, the legend saying so."""
    import copy

    from ImageQualityTransferLib.fileio.model_files import model_sha256
    from ImageQualityTransferLib.fileio.paths import MODELS_DIR

    table = copy.deepcopy(clean_levels._table())
    assert table["espcn-hetero_x2"]["std"]["sha256"] == model_sha256(MODELS_DIR / "espcn-hetero_x2.json")
    table["espcn-hetero_x2"]["std"]["sha256"] = "0" * 64
    monkeypatch.setattr(clean_levels, "_table", lambda: table)
    assert clean_levels.clean_level(SHIPPED, "std") is None
    scene = slicer.vtkMRMLScene()
    node = _map(scene, _brain_map(0.3), SHIPPED)
    legend = legends.style_uncertainty(scene, node, "std")
    assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.3, rel=1e-5)
    assert f"\n{legends.FLOOR_NOTE.format(floor='0.3')}\n" in legend.GetTitleText() + "\n"


def test_the_clean_levels_line_reads_as_a_threshold_in_the_module_and_the_view():
    """"≥ clean 0.12" could be read as a verdict on the scan ("clean from 0.12"), and "from clean-scan level 0.12" under
    "noisy input" as one phrase: the line is the threshold on the clean-scan level, and the module translates that same text (tr()) that `iqt view` shows."""
    import ast
    import re

    from helpers import REPO

    line = legends.CLEAN_NOTE.format(floor="0.12")
    assert line.split() == ["≥", "clean-scan", "level", "0.12"], line
    source = (REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py").read_text(encoding="utf-8")
    notes = [ast.literal_eval(n) for n in re.findall(r'clean_note=_\(("[^"]*")\)', source)]
    assert notes and set(notes) == {legends.CLEAN_NOTE}, notes


def test_a_noisy_inputs_level_is_not_raised_by_its_tensor_scale():
    """Noise raises the input's MD mode (the Achieva training scan's by 4 % at b0 SNR 20, 20 % at SNR 5): the level
    raised with it had coloured biqt ×2's SNR-20 map of that scan no more than its clean one's (0.555 and 0.556). An
    input read noisy (mrml.NOISE_ATTRIBUTE) keeps the training inputs' level where its scale is higher, and takes
    the lower one where its scale is lower."""
    trained = clean_levels._table()["espcn-hetero_x2"]["std"]["scale"]
    level = clean_levels.clean_level(SHIPPED, "std")[0]
    scene = slicer.vtkMRMLScene()
    for tensor, floor in ((1.2, level), (0.8, 0.8 * level)):
        node = _map(scene, _brain_map(level, 1.5), SHIPPED)  # own median 1.5 times the level: the level is the floor
        node.SetAttribute(mrml.TENSOR_SCALE_ATTRIBUTE, repr(tensor * trained))
        node.SetAttribute(mrml.NOISE_ATTRIBUTE, "1.0")
        node.SetAttribute(mrml.NOISE_INDEX_ATTRIBUTE, "0.09")
        legends.style_uncertainty(scene, node, "std")
        assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(floor, rel=1e-4), tensor


@pytest.mark.parametrize("given", [True, False], ids=["mask", "no-mask"])
def test_a_whole_field_fits_tensor_scale_is_its_brains_not_its_backgrounds(given):
    """A whole-field fit whose background's MD peak (0.45) outnumbers its brain's (0.72), as the 3 mm Prisma scans
    fitted unmasked at ×3 leave it: the tensor scale a map carries is the brain's MD mode, the unit its noise index is
    read in (methods/inputs.py brain_md_unit), with its brain mask or the brain estimated without; the field's had
    scaled the clean level to 0.63 of its value and coloured a clean scan's map as a noisy one's."""
    import helpers
    from ImageQualityTransferLib.core import tensors
    from ImageQualityTransferLib.slicer import processing

    lr, brain = helpers.brain_outnumbered_by_its_background()
    in_brain = tensors.md_mode(np.where(brain[..., None], lr.data, 0)) * tensors.SHOWN_UNIT
    assert tensors.md_mode(lr.data) * tensors.SHOWN_UNIT < 0.7 * in_brain
    mask = lr.replace(data=brain.astype(np.uint8), kind="mask") if given else None
    out = processing.predict_volumes(lr, processing.Request("biqt", 2), mask)
    scales = [v.meta[mrml.TENSOR_SCALE_KEY] for k, v in out.items() if k.startswith("uncertainty/")]
    assert scales and all(s == pytest.approx(in_brain, rel=0.02) for s in scales), (scales, in_brain)
