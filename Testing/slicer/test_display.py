"""What the Slicer module shows, on a real slicer-core scene with the application's three slice views: node and
display-node counts over repeated runs, results named after their method, the legends' titles and label formats,
the compare layout's composite and slice nodes, and the tractography hand-off."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from ImageQualityTransferLib.core import grid  # noqa: E402
from ImageQualityTransferLib.core.volume import Volume  # noqa: E402
from ImageQualityTransferLib.dmri.dti import inside_rim  # noqa: E402
from ImageQualityTransferLib.slicer import display, legends, mrml, processing  # noqa: E402

from helpers import REPO  # noqa: E402

VIEWS = ("Red", "Yellow", "Green")


def views_scene():
    """A scene with slice views Red, Yellow, Green and their composite nodes, as the application makes them."""
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    layout_logic = slicer.vtkMRMLLayoutLogic()
    layout_logic.SetMRMLScene(scene)
    logics = []
    for name in VIEWS:
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        logic.AddSliceNode(name)
        logics.append(logic)
    scene._keep = (layout_logic, logics)  # the logics live as long as the scene
    return scene


def counts(scene) -> Counter:
    return Counter(scene.GetNthNode(i).GetClassName() for i in range(scene.GetNumberOfNodes()))


@pytest.fixture(scope="module")
def lowres():
    from ImageQualityTransferLib.dmri import degrade, dti
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=2.0, n_dirs=12)
    pair = degrade.degrade(dwi, dti.brain_mask(dwi).data, 2)
    return pair.tensor, pair.mask


def run(scene, node, method, mask_node=None):
    nodes = processing.run_on_nodes(scene, node, method, 2, mask_node=mask_node, interpolate=True, samples=2)
    display.show_results(scene, nodes, opacity=0.5)
    return nodes


def test_repeated_runs_reuse_their_nodes(lowres):
    """5 Applies with 3 methods: the first run of each method adds its nodes, every later run adds none (no
    display node either), and each method's results keep their own nodes and names."""
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    first = {}
    for method in ("cubic", "biqt", "linear"):
        first[method] = run(scene, node, method)
    after_three = counts(scene)
    linear_data = mrml.tensor_volume_from_node(first["linear"]["tensor"]).data.copy()
    for method in ("biqt", "cubic", "biqt"):
        again = run(scene, node, method)
        assert again["tensor"] is first[method]["tensor"]
        assert again["uncertainties"] == first[method]["uncertainties"]
        assert counts(scene) == after_three, f"a repeated {method} run changed the node counts"
    # names after the method; the comparison is cubic's own node, shared by every run
    assert first["biqt"]["tensor"].GetName() == "dti_biqt" and first["linear"]["tensor"].GetName() == "dti_linear"
    assert first["cubic"]["tensor"].GetName() == "dti_cubic"
    assert first["biqt"]["interpolated"] is first["cubic"]["tensor"] is first["linear"]["interpolated"]
    assert {k: n.GetName() for k, n in first["biqt"]["uncertainties"].items()} == {
        "std": "dti_biqt_uncertainty_std", "direction": "dti_biqt_uncertainty_direction"}
    # the later biqt and cubic runs left linear's result as it was
    np.testing.assert_array_equal(mrml.tensor_volume_from_node(first["linear"]["tensor"]).data, linear_data)
    # per volume: the DTI node keeps 1 display node + 3 slice glyph nodes, each map 1 display node + 1 legend
    c = counts(scene)
    assert c["vtkMRMLDiffusionTensorVolumeNode"] == 1 + 3  # input + cubic, biqt, linear
    assert c["vtkMRMLScalarVolumeNode"] == 2 and c["vtkMRMLColorLegendDisplayNode"] == 2
    assert c["vtkMRMLDiffusionTensorVolumeDisplayNode"] == 4 and c["vtkMRMLDiffusionTensorDisplayPropertiesNode"] == 4
    assert c["vtkMRMLDiffusionTensorVolumeSliceDisplayNode"] == 12
    assert c["vtkMRMLColorTableNode"] == 2  # Inferno and grey, each made once in a scene without colour files
    # another input gets its own nodes, named after it
    other = mrml.add_tensor_node(scene, lr, "other")
    assert run(scene, other, "biqt")["tensor"].GetName() == "other_biqt"


def test_runs_at_other_factors_keep_their_own_nodes(lowres):
    """A ×3 and a through-plane run after a ×2 one get their own nodes, the cubic comparison included, so the ×2
    result stays as it was and a method's node never sits beside a cubic of another factor."""
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    x2 = processing.run_on_nodes(scene, node, "linear", 2, interpolate=True)
    x2_data = mrml.tensor_volume_from_node(x2["tensor"]).data.copy()
    x3 = processing.run_on_nodes(scene, node, "linear", 3, interpolate=True)
    thick = processing.run_on_nodes(scene, node, "linear", (1, 1, 2), interpolate=True)
    assert [r["tensor"].GetName() for r in (x2, x3, thick)] == ["dti_linear", "dti_linear_x3", "dti_linear_x1x1x2"]
    assert [r["interpolated"].GetName() for r in (x2, x3, thick)] == ["dti_cubic", "dti_cubic_x3", "dti_cubic_x1x1x2"]
    for r, f in ((x2, 2), (x3, 3), (thick, (1, 1, 2))):
        shape = np.array(lr.data.shape[:3]) * np.broadcast_to(f, 3)
        assert r["tensor"].GetImageData().GetDimensions() == tuple(shape)
        assert r["interpolated"].GetImageData().GetDimensions() == tuple(shape)
    np.testing.assert_array_equal(mrml.tensor_volume_from_node(x2["tensor"]).data, x2_data)
    before = counts(scene)
    again = processing.run_on_nodes(scene, node, "linear", 3, interpolate=True)
    assert again["tensor"] is x3["tensor"] and again["interpolated"] is x3["interpolated"]
    assert counts(scene) == before


def test_user_target_is_filled_in_place(lowres):
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    target = mrml.add_tensor_node(scene, lr, "mine")
    before = counts(scene)
    for method in ("cubic", "linear"):
        nodes = processing.run_on_nodes(scene, node, method, 2, targets={"tensor": target})
        assert nodes["tensor"] is target and target.GetName() == "mine"
    assert counts(scene) == before  # no temporary node, no display node left behind
    assert target.GetImageData().GetDimensions() == tuple(2 * n for n in lr.shape3)


def unpadded(legend) -> str:
    """A legend's title without the blank lines that give a run's or the scene's legends one line count."""
    return legend.GetTitleText().replace("\n\u00a0", "")


def support_median(node) -> float:
    """A map's median over its input's brain: its support without the margin one low-res voxel wide beyond it."""
    data = mrml.scalar_volume_from_node(node).data
    present = np.isfinite(data) & (data > 0)
    return float(np.median(data[legends.input_support(present, node.GetAttribute(mrml.FACTORS_ATTRIBUTE))]))


def table_level(node):
    """(median, top) of the map's shipped model on clean training inputs, read from the table itself, a map in mm²/s
    (fileio.records.MAP_UNITS) times its input's tensor scale over the training inputs' (mrml.TENSOR_SCALE_ATTRIBUTE; not
    above 1 for a noisy input's); None for another's."""
    import json

    from ImageQualityTransferLib.fileio.records import MAP_UNITS
    from ImageQualityTransferLib.slicer.clean_levels import LEVELS_FILE, model_key

    key = model_key(node.GetAttribute(mrml.MODEL_ATTRIBUTE))
    entry = json.loads(LEVELS_FILE.read_text())["models"].get(key or "", {}).get(node.GetAttribute(mrml.MAP_ATTRIBUTE))
    if not entry:
        return None
    scale = node.GetAttribute(mrml.TENSOR_SCALE_ATTRIBUTE)
    ratio = float(scale) / entry["scale"] if scale and MAP_UNITS.get(node.GetAttribute(mrml.MAP_ATTRIBUTE)) == "mm2/s" \
        else 1.0
    if node.GetAttribute(mrml.NOISE_ATTRIBUTE):
        ratio = min(ratio, 1.0)
    return entry["median"] * ratio, entry["top"] * ratio


def expected_floor(node) -> tuple[float, bool]:
    """(the value a map is shown from, whether it is its model's clean level): the lower of that level and its own
    median; the direction map's own median (legends._floor_of)."""
    level, own = table_level(node), support_median(node)
    if node.GetAttribute(mrml.MAP_ATTRIBUTE) == "direction":
        level = None
    return (level[0], True) if level and level[0] <= own else (own, False)


def expected_note(node, floor: float) -> str:
    """The note true of `floor` on this map: its clean level's, its median's, or the neutral one."""
    level, own = table_level(node), support_median(node)
    if level and floor == pytest.approx(level[0], rel=1e-6):
        return legends.CLEAN_NOTE
    return legends.FLOOR_NOTE if floor == pytest.approx(own, rel=1e-6) else legends.SHOWN_NOTE


def tail(node, shared=()) -> str:
    """The lines a map's legend ends in: from which value it is shown (its median over its support, where it is
    coloured from there up), then the clipped top ("" where no value lies above its scale's top)."""
    top = node.GetDisplayNode().GetWindowLevelMax()
    legend = legends.legend_node(node.GetScene(), node)
    data = mrml.scalar_volume_from_node(node).data
    out = ""
    if node.GetAttribute(legends.FROM_MEDIAN_ATTRIBUTE) == "1":
        floor = min(map(expected_floor, shared))[0] if shared else expected_floor(node)[0]  # shared: the lowest
        out += "\n" + expected_note(node, floor).format(floor=legends.floor_label(floor))
    if np.nanmax(data) > top:
        out += "\n" + legends.wrap_title(legends.CLIPPED_NOTE.format(top=(legend.GetLabelFormat() % top).strip()))
    return out


def test_a_legend_says_where_its_top_colour_stands_for_more():
    """Radiologist's audit: the legend topped "0.4" while 13 % of the brain shown lay above it, its rim at 1.5-4.4
    µm²/ms, all in the top colour. A map reaching above its scale's top now ends its legend's title in
    "top colour: ≥ 0.4" (the top's own label); one that does not, in nothing more."""
    from ImageQualityTransferLib.core.volume import Volume

    scene = views_scene()
    data = np.zeros((30, 30, 30), np.float32)
    data[5:25, 5:25, 5:25] = 0.2  # µm²/ms, as the map nodes hold it
    flat = mrml.add_scalar_node(scene, Volume(data.copy(), np.eye(4), "scalar"), "flat")
    assert legends.style_uncertainty(scene, flat, "std", from_median=False).GetTitleText() == "Tensor SD\n(µm²/ms)"
    data[15, 15, 15] = 4.4  # one voxel far above the rest
    high = mrml.add_scalar_node(scene, Volume(data, np.eye(4), "scalar"), "high")
    legend = legends.style_uncertainty(scene, high, "std", from_median=False)
    top = high.GetDisplayNode().GetWindowLevelMax()
    label = (legend.GetLabelFormat() % top).strip()
    assert top < 4.4 and legend.GetTitleText() == f"Tensor SD\n(µm²/ms)\ntop colour:\n\u2265 {label}", legend.GetTitleText()


def test_a_map_is_coloured_from_its_median_up_and_its_legend_says_so():
    """A clinician's audit: at the default 50 % the map's dark low end had covered the whole brain, the anatomy under
    it hidden (Slicer's slice views ignore a colour table's alpha: a fading Inferno showed no difference). Each map is
    now coloured only from its median over its support up, the legend's line saying from where; off, from 0 again."""
    from ImageQualityTransferLib.core.volume import Volume

    scene = views_scene()
    data = np.zeros((30, 30, 30), np.float32)
    data[5:25, 5:25, 5:25] = np.linspace(0.05, 0.25, 20)[:, None, None]  # µm²/ms, median 0.15
    node = mrml.add_scalar_node(scene, Volume(data, np.eye(4), "scalar"), "u")
    node.SetAttribute(mrml.MAP_ATTRIBUTE, "std")  # a run's map, as share_scales finds them
    legend = legends.style_uncertainty(scene, node, "std")
    disp = node.GetDisplayNode()
    median = float(np.median(data[data > 0]))
    assert disp.GetApplyThreshold() and disp.GetLowerThreshold() == pytest.approx(median, rel=1e-6)
    assert (disp.GetWindowLevelMin(), disp.GetWindowLevelMax()) == (0.0, pytest.approx(0.25))  # colours as before
    assert legend.GetTitleText() == "Tensor SD\n(µm²/ms)\n\u2265 median 0.15"
    # off (the module's "Above clean level or median only" unticked): every voxel of the support coloured, the line gone
    legends.share_scales(scene, shared=False, from_median=False)
    assert 0 < disp.GetLowerThreshold() < 0.05 and legend.GetTitleText() == "Tensor SD\n(µm²/ms)"
    legends.share_scales(scene, shared=False, from_median=True)
    assert disp.GetLowerThreshold() == pytest.approx(median, rel=1e-6) and legend.GetTitleText().endswith("\u2265 median 0.15")
    # a map styled by an earlier version (no attribute) reads as coloured from 0: the module restyles it on opening
    assert not legends.from_median_differs(scene, True) and legends.from_median_differs(scene, False)
    node.RemoveAttribute(legends.FROM_MEDIAN_ATTRIBUTE)
    assert legends.from_median_differs(scene, True) and not legends.from_median_differs(scene, False)
    node.SetAttribute(legends.FROM_MEDIAN_ATTRIBUTE, "1")
    # a rerun refilling the node reads its new median
    mrml.set_scalar_node(node, Volume(data * 2, np.eye(4), "scalar"))
    legends.style_uncertainty(scene, node, "std")
    assert disp.GetLowerThreshold() == pytest.approx(2 * median, rel=1e-6)
    assert legends.legend_node(scene, node).GetTitleText().endswith("\u2265 median 0.3")
    # two significant digits, not the ticks' rounding: a floor of 0.14 read "0.1" on a 0-1.5 scale
    assert [legends.floor_label(v) for v in (0.1432, 0.0876, 35.4)] == ["0.14", "0.088", "35"]


def _run_map(scene, data, name: str, estimated: bool = False):
    """A ×2 run's tensor SD map node holding `data`, its support a brain estimated from unmasked tensors if `estimated`."""
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.dmri.dti import ESTIMATED_SUPPORT

    node = mrml.add_scalar_node(scene, Volume(data, np.eye(4), "scalar"), name)
    node.SetAttribute(mrml.MAP_ATTRIBUTE, "std")
    node.SetAttribute(mrml.FACTORS_ATTRIBUTE, "2")
    if estimated:
        node.SetAttribute(mrml.SUPPORT_ATTRIBUTE, ESTIMATED_SUPPORT)
    return node


def test_a_maps_floor_is_its_median_over_the_input_s_brain_not_the_margin_beyond_it():
    """The methods fill one low-res voxel beyond the input's brain, where the maps run high: read over that margin too (a
    third of the 3 mm ortho dev scan's result), the median coloured 35 % of the brain, half the coloured voxels
    outside it (a display audit). A run's map (its factors on the node) is read without it; a map of no run, whole."""

    scene = views_scene()
    data = np.zeros((40, 40, 40), np.float32)
    data[8:32, 8:32, 8:32] = 2.0  # the margin, two high-res voxels deep at x2
    data[10:30, 10:30, 10:30] = np.linspace(0.1, 0.3, 20)[:, None, None]  # the brain, median 0.2
    node = _run_map(scene, data, "u")
    legends.style_uncertainty(scene, node, "std")
    assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.2, rel=1e-5)
    cut = np.zeros((40, 40, 40), np.float32)  # a brain the field of view cuts: no margin beyond that border
    cut[:30, 8:32, 8:32] = 2.0
    cut[:28, 10:30, 10:30] = np.linspace(0.1, 0.3, 28)[:, None, None]
    kept = legends.input_support(cut > 0, "2")
    assert kept[0].sum() == 20 * 20 and kept.sum() == 28 * 20 * 20  # its planes at the border kept (a review)
    node.RemoveAttribute(mrml.FACTORS_ATTRIBUTE)
    legends.style_uncertainty(scene, node, "std")
    whole = float(np.median(data[data > 0]))
    assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(whole, rel=1e-5) and whole > 0.25


def test_a_maps_floor_over_an_estimated_brain_is_read_inside_its_rim():
    """An input fitted without a mask and run without one keeps a brain estimated from the tensors, with a rim of scalp
    and background fits whose σ runs high: read over it, the floor coloured mostly that rim (3 mm yaw dev scan fitted
    unmasked). A run kept to such a brain (mrml.SUPPORT_ATTRIBUTE) reads its median where its scale is read, inside
    the rim (`dmri.dti.inside_rim`); the same map of a masked input, over its input's brain."""
    from ImageQualityTransferLib.dmri import dti

    scene = views_scene()
    data = np.zeros((70, 70, 70), np.float32)
    data[3:67, 3:67, 3:67] = 2.0  # the rim: scalp and background fits, 24 mm deep
    data[27:43, 27:43, 27:43] = np.linspace(0.1, 0.3, 16)[:, None, None]  # the brain inside it, median 0.2
    for estimated, floor in ((True, 0.2), (False, 2.0)):
        node = _run_map(scene, data, "u", estimated)
        legends.style_uncertainty(scene, node, "std")
        assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(floor, rel=1e-5), estimated
        maps = {"uncertainties": {"std": node}}
        node.RemoveAttribute(legends.MEDIAN_ATTRIBUTE)  # read again, as a run's maps are styled together
        legends.style_results(scene, maps)
        assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(floor, rel=1e-5), estimated
    # a brain thinner than the rim (a slab) has no inside: read as a masked one's, without the margin (a review: the
    # whole support, margin included, had been read)
    slab = np.zeros((40, 40, 20), np.float32)
    slab[8:32, 8:32, 2:18] = 2.0  # the margin, two high-res voxels deep at x2
    slab[10:30, 10:30, 4:16] = np.linspace(0.1, 0.3, 20)[:, None, None]  # the brain, median 0.2
    node = _run_map(scene, slab, "slab", estimated=True)
    assert not (dti.inside_rim(slab > 0, (1, 1, 1)) & (slab > 0)).any()
    legends.style_results(scene, {"uncertainties": {"std": node}})
    assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.2, rel=1e-5)


def test_a_noisy_input_s_map_scaled_up_looks_less_certain_and_its_legend_says_so():
    """A Slicer-picture audit: on a noisy input biqt's and deep-hetero-var1's σ are multiplied by g (methods/base.py
    NOISY_STD_SCALE), but the overlay, coloured from the map's own median to its own top, looked exactly as the map
    unscaled (the 3 mm ortho dev scan at b0 SNR 5: 39 % of biqt's map coloured, 61 % of the clean scan's), and nothing
    in the views said the input was noisy. A noisy input's map is coloured from its median over g, its legend saying
    "noisy input: SD ×g"; one of a noisy input not scaled (g = 1, or the direction map), "noisy input"."""
    scene = views_scene()
    data = np.zeros((30, 30, 30), np.float32)
    data[5:25, 5:25, 5:25] = np.linspace(0.05, 0.25, 20)[:, None, None]  # µm²/ms, median 0.15
    clean, noisy, unscaled = (_run_map(scene, data * g, name) for g, name in ((1, "clean"), (1.5, "noisy"), (1, "one")))
    noisy.SetAttribute(mrml.NOISE_ATTRIBUTE, "1.5")
    unscaled.SetAttribute(mrml.NOISE_ATTRIBUTE, "1.0")
    titles = [unpadded(legends.style_uncertainty(scene, n, "std")) for n in (clean, noisy, unscaled)]
    floors = [n.GetDisplayNode().GetLowerThreshold() for n in (clean, noisy, unscaled)]
    shown = [(mrml.scalar_volume_from_node(n).data >= f).sum() for n, f in zip((clean, noisy, unscaled), floors)]
    assert floors == [pytest.approx(0.15, rel=1e-5)] * 3  # the noisy map from the median it had before its scaling
    assert shown[1] > 1.4 * shown[0] and shown[2] == shown[0]
    own = "\u2265 median 0.15"  # a map of no shipped model: from its own median (CLEAN_NOTE otherwise)
    # the scaled map's median is 0.225: its floor is said neither its median nor a clean level (SHOWN_NOTE)
    assert titles == [f"Tensor SD\n(µm²/ms)\n{own}", "Tensor SD\n(µm²/ms)\nnoisy input:\nSD \u00d71.50\nshown \u2265 0.15",
                      f"Tensor SD\n(µm²/ms)\nnoisy input\n{own}"], titles
    legends.share_scales(scene, shared=True)  # one floor for the kind: the lowest, over g
    assert noisy.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.15, rel=1e-5)
    assert "noisy input:\nSD \u00d71.50" in legends.legend_node(scene, noisy).GetTitleText()


@pytest.mark.parametrize("g, index, line", [(1.0087, 0.080, None), (1.0455, 0.0999, "SD \u00d71.05 for\ninput noise"),
                                             (1.0, 0.080, None), (1.0, 0.167, "noisy input"),
                                             (1.55, 0.167, "noisy input:\nSD \u00d71.55")])
def test_a_legend_calls_an_input_noisy_only_above_the_training_inputs_noise(g, index, line):
    """The Trio, a clean training scan (noise index 0.080, above the clean threshold 0.075 but within the training
    inputs' 0.055-0.080), had read "noisy input: SD ×1.01" under biqt's legend in all 5 styles and "noisy input" under
    its direction map's (a review): "noisy input" only above core.noise_level.NOISY_INPUT; below, the factor in plain
    words where it reads ×1.05 or more, else no line ("SD ×1.01, index 0.080" had read as an FA or p value, a review).
    The index reaches the node from the run's Volume."""
    from ImageQualityTransferLib.slicer import results

    scene = views_scene()
    data = np.zeros((30, 30, 30), np.float32)
    data[5:25, 5:25, 5:25] = np.linspace(0.05, 0.25, 20)[:, None, None]
    vol = Volume(data, np.eye(4), "scalar", meta={mrml.NOISE_KEY: g, mrml.NOISE_INDEX_KEY: index})
    node = results._put(scene, vol, "u", None, "biqt/uncertainty/std")
    node.SetAttribute(mrml.MAP_ATTRIBUTE, "std")
    node.SetAttribute(mrml.FACTORS_ATTRIBUTE, "2")
    title = unpadded(legends.style_uncertainty(scene, node, "std"))
    body, note = title.rsplit("\n", 1)  # the floor's line: "shown" where the map was scaled (its median is not it)
    assert body == "\n".join(["Tensor SD\n(µm²/ms)", *([line] if line else [])]), title
    assert note.startswith("\u2265 median " if g == 1.0 else "shown \u2265 "), title



@pytest.mark.parametrize("index, line", [(0.167, "noisy input:\nmay read low"), (0.080, None)])
def test_a_noisy_inputs_direction_legend_says_it_may_read_low(index, line):
    """A review: at b0 SNR 5 biqt's direction map held the direction error within twice it in 0.915 of the 3 mm ortho
    dev scan's tracked voxels, not the 98 % of a calibrated map, while its legend said only "Direction SD" and "noisy
    input", which let it pass for calibrated. A noisy input's direction map (never scaled: g = 1) says it may read low;
    the SD map of the same run keeps its own line, and a clean scan's direction map none."""
    from ImageQualityTransferLib.slicer import results

    scene = views_scene()
    data = np.zeros((30, 30, 30), np.float32)
    data[5:25, 5:25, 5:25] = np.linspace(10.0, 60.0, 20)[:, None, None]  # degrees
    titles = {}
    for key, g in (("direction", 1.0), ("std", 1.0)):
        vol = Volume(data, np.eye(4), "scalar", meta={mrml.NOISE_KEY: g, mrml.NOISE_INDEX_KEY: index})
        node = results._put(scene, vol, key, None, f"biqt/uncertainty/{key}")
        node.SetAttribute(mrml.MAP_ATTRIBUTE, key)
        node.SetAttribute(mrml.FACTORS_ATTRIBUTE, "2")
        titles[key] = unpadded(legends.style_uncertainty(scene, node, key)).split("\n\u2265 median ")[0]
    assert titles["direction"] == "\n".join(["Direction SD\n(degrees)", *([line] if line else [])]), titles
    assert titles["std"] == "\n".join(["Tensor SD\n(µm²/ms)", *(["noisy input"] if line else [])]), titles


def test_a_noisy_input_s_run_marks_its_maps_with_their_factor():
    """The factor a noisy input's maps were scaled by reaches their nodes (mrml.NOISE_ATTRIBUTE) as the run recorded it
    (the tensor's meta noise_std_scale), the direction map, not scaled, as 1.0; a clean input's maps carry none."""
    meta = {"noise_index": 0.167, "noise_std_scale": 1.55}
    assert processing.noisy_scale(meta) == 1.55 and processing.noisy_scale({"noise_index": 0.09}) == 1.0
    assert processing.noisy_scale({"noise_index": 0.05}) is None and processing.noisy_scale({}) is None
    from ImageQualityTransferLib.slicer import results

    scene = views_scene()
    for value, want in ((1.55, "1.55"), (None, None)):
        vol = Volume(np.ones((4, 4, 4), np.float32), np.eye(4), "scalar",
                     meta={} if value is None else {mrml.NOISE_KEY: value})
        node = results._put(scene, vol, "u", None, "biqt/uncertainty/std")
        assert node.GetAttribute(mrml.NOISE_ATTRIBUTE) == want


def test_a_noisy_input_s_factor_and_index_come_back_from_the_worker_process(monkeypatch):
    """The module runs torch methods in a worker process (slicer/worker.py, separate_process.py): a noisy run's factor
    and noise index reach the maps through its summary; without the keys in either handoff nothing had failed (a
    review). The worker's own main runs here, its stdout read back as the module reads the process's (one run in a
    process costs seconds); the prediction is stubbed with a noisy run's meta."""
    import contextlib
    import io

    from ImageQualityTransferLib.methods import base
    from ImageQualityTransferLib.slicer import separate_process, worker

    def predicted(method, lr, factor, mask=None, **kw):
        hr = grid.hr_affine(lr.affine, factor)
        shape = tuple(n * 2 for n in lr.shape3)
        maps = {k: Volume(np.ones(shape, np.float32), hr, "scalar") for k in ("std", "direction")}
        return base.Prediction(Volume(np.zeros((*shape, 6), np.float32), hr, "tensor",
                                      meta={"noise_index": 0.167, "noise_std_scale": 1.55}), **maps), mask

    def in_process(args, progress, cancel):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert worker.main(args[args.index("ImageQualityTransferLib.slicer.worker") + 1:]) == 0
        return next(m for m in map(separate_process._parse, out.getvalue().splitlines()) if m and m.get("done"))

    monkeypatch.setattr(base, "predict_within", predicted)
    monkeypatch.setattr(separate_process, "_run_worker", in_process)
    lr = Volume(np.zeros((4, 4, 4, 6), np.float32), np.eye(4), "tensor")
    got = processing.predict_in_subprocess(lr, processing.Request("biqt", 2))
    assert {k: (v.meta.get(mrml.NOISE_KEY), v.meta.get(mrml.NOISE_INDEX_KEY)) for k, v in got.items()} == {
        "tensor": (None, 0.167), "uncertainty/std": (1.55, 0.167), "uncertainty/direction": (1.0, 0.167)}


def test_legends_titles_and_label_formats(lowres):
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    nodes = run(scene, node, "biqt")
    shown = {}
    for key, vol in nodes["uncertainties"].items():
        found = [vol.GetNthDisplayNode(i) for i in range(vol.GetNumberOfDisplayNodes())
                 if vol.GetNthDisplayNode(i).IsA("vtkMRMLColorLegendDisplayNode")]
        assert len(found) == 1
        shown[key] = found[0]
        assert vol.GetDisplayNode().GetColorNode().GetName() == "Inferno"
    assert unpadded(shown["std"]) == "Tensor SD\n(µm²/ms)" + tail(nodes["uncertainties"]["std"])
    assert unpadded(shown["direction"]) == "Direction SD\n(degrees)" + tail(nodes["uncertainties"]["direction"])
    assert shown["std"].GetTitleText().count("\n") == shown["direction"].GetTitleText().count("\n")  # one size
    # diffusivities in µm²/ms (10⁻³ mm²/s), recorded on the node; labels fixed-point, equally wide for every map,
    # with two significant digits at the top (0.30 and 65, not 3.00e-04 and 65)
    std = mrml.scalar_volume_from_node(nodes["uncertainty"]).data
    typical = float(np.percentile(std[std > 0], 50))
    assert 0.01 < typical < 10, "the std node is not in µm²/ms"
    assert nodes["uncertainty"].GetAttribute(mrml.UNIT_ATTRIBUTE) == "um2/ms"
    assert nodes["uncertainty"].GetVoxelValueUnits().GetCodeValue() == "um2/ms"
    assert nodes["uncertainties"]["direction"].GetAttribute(mrml.UNIT_ATTRIBUTE) == "deg"
    assert shown["std"].GetLabelFormat() in ("%5.1f", "%5.2f", "%5.3f")
    assert shown["direction"].GetLabelFormat() == "%5.0f"
    # the direction map up to a fixed 60 degrees whatever its values (a random axis, 61 degrees, is the top), from the
    # round ten under its floor: from 0, a floor at 44 degrees left every coloured voxel in the bar's top quarter
    direction_display = nodes["uncertainties"]["direction"].GetDisplayNode()
    floor = direction_display.GetLowerThreshold()
    assert direction_display.GetWindowLevelMax() == 60.0 and direction_display.GetWindowLevelMin() == floor // 10 * 10
    # 40, 45, ... 60; 30, 40, 50, 60; or 50, 52, ... 60 (a floor from 50 up: its own median, not its clean level)
    assert 20 < floor < 60 and shown["direction"].GetNumberOfLabels() in (4, 5, 6)
    # round ticks (the 99th percentile's quarters printed 0.30 / 0.23 / 0.15 / 0.08), at most 5 characters
    for high, top, n, fmt in ((0.30, 0.3, 3, "%5.1f"), (0.0122, 0.015, 3, "%5.3f"), (64.7, 80.0, 4, "%5.0f"),
                              (0.19, 0.2, 4, "%5.2f"), (0.92, 1.0, 5, "%5.1f"), (0.0095, 0.01, 5, "%5.3f")):
        assert legends.scale_ticks(high) == (pytest.approx(top), n), high
        assert legends.label_format(top, n) == fmt, high
        labels = [fmt % (top * k / n) for k in range(n + 1)]
        assert len(set(labels)) == n + 1 and all(len(x) <= legends.LABEL_WIDTH for x in labels), labels
        assert all(abs(float(x) - top * k / n) < 1e-9 for k, x in enumerate(labels)), labels  # exact, not rounded
    assert legends.label_format(0.0) == "%5.0f"
    assert all(legends.wrap_title(t).count("\n") == 1 for t in legends.LEGENDS.values())  # one bar length for all
    for key, legend in shown.items():  # every legend's top label reads non-zero
        high = nodes["uncertainties"][key].GetDisplayNode().GetWindowLevelMax()
        assert float(legend.GetLabelFormat() % high) > 0, key
    assert shown["std"].GetVisibility() and shown["direction"].GetVisibility()  # drawn where the map is shown
    # colours from 0 to the 99th percentile of the map; zero (outside the brain) transparent over the tensor, and below
    # the shipped model's clean median too (slicer/clean_levels.py), so that the tensor shows through there (a map of
    # a model with no clean level, from its own median: test_a_maps_floor_is_its_median_over_the_input_s_brain_...)
    disp = nodes["uncertainty"].GetDisplayNode()
    level = table_level(nodes["uncertainty"])
    assert level is not None and disp.GetWindowLevelMin() == 0.0
    assert disp.GetWindowLevelMax() == pytest.approx(legends.scale_ticks(np.percentile(std[std > 0], 99))[0], rel=1e-5)
    assert disp.GetApplyThreshold() and disp.GetLowerThreshold() == pytest.approx(expected_floor(nodes["uncertainty"])[0])
    assert 0 < disp.GetLowerThreshold() < disp.GetWindowLevelMax()
    # translated titles from the module override the English default
    legends.style_uncertainty(scene, nodes["uncertainties"]["direction"], "direction", title="Richtung (Grad)")
    assert shown["direction"].GetTitleText() == "Richtung\n(Grad)" + tail(nodes["uncertainties"]["direction"])
    # every slice view: IQT tensor behind, its std map in front
    for view in VIEWS:
        c = display.composite_node(scene, view)
        assert c.GetBackgroundVolumeID() == nodes["tensor"].GetID()
        assert c.GetForegroundVolumeID() == nodes["uncertainty"].GetID() and c.GetForegroundOpacity() == 0.5
    display.set_overlay_opacity(scene, 0.3)
    assert display.composite_node(scene, "Red").GetForegroundOpacity() == pytest.approx(0.3)
    # the run's maps only: a layer the reader put in front elsewhere keeps its opacity; at 0 the legend hides
    other = mrml.add_scalar_node(scene, Volume(np.ones((4, 4, 4), np.float32), np.eye(4), "scalar"), "other")
    display.composite_node(scene, "Green").SetForegroundVolumeID(other.GetID())
    display.composite_node(scene, "Green").SetForegroundOpacity(0.8)
    run_maps = [nodes["uncertainty"], *nodes["uncertainties"].values()]
    display.set_overlay_opacity(scene, 0.0, run_maps)
    assert display.composite_node(scene, "Red").GetForegroundOpacity() == 0
    assert display.composite_node(scene, "Green").GetForegroundOpacity() == pytest.approx(0.8)
    assert not legends.legend_node(scene, nodes["uncertainty"]).GetVisibility()
    display.set_overlay_opacity(scene, 0.5, run_maps)
    assert legends.legend_node(scene, nodes["uncertainty"]).GetVisibility()


def _map_node(scene, run="biqt \u00d71,1,3"):
    sigma = Volume(np.linspace(1e-5, 3e-4, 6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4), np.diag([2.0, 2.0, 2.0, 1.0]),
                   "scalar")
    held, unit = mrml.map_in_node_unit(sigma, "std")
    node = mrml.add_scalar_node(scene, held, "dti_biqt_uncertainty_std")
    mrml.set_map(node, "std", unit, run=run)
    return sigma, node


@pytest.mark.parametrize("name", ["sigma.nii.gz", "sigma.nrrd"])
def test_save_map_writes_iqt_s_map(tmp_path, name):
    """results.save_map (logic.saveUncertaintyMap) writes the node's µm²/ms back in mm²/s, with the kind and unit
    `iqt evaluate` reads and a run record, as NIfTI or NRRD by the suffix."""
    from ImageQualityTransferLib.fileio import load_scalar
    from ImageQualityTransferLib.fileio.nifti import run_record_of
    from ImageQualityTransferLib.fileio.records import read_map_record
    from ImageQualityTransferLib.slicer import results

    sigma, node = _map_node(views_scene())
    path = tmp_path / name
    assert results.save_map(node, path) == str(path)
    head = path.read_bytes()[:4]
    assert (head == b"NRRD") == name.endswith(".nrrd")
    saved = load_scalar(path)
    assert np.allclose(np.sort(saved.data, None), np.sort(sigma.data, None), rtol=1e-6)
    assert read_map_record(saved.meta["descrip"]) == "std" and saved.meta["descrip"] == "iqt biqt std mm2/s"
    if name.endswith(".nii.gz"):
        record = run_record_of(path)
        assert record["method"] == "biqt" and record["unit"] == "mm2/s" and "x1,1,3" in record["command"]
    else:
        raw = path.read_bytes()
        assert b"iqt_run" in raw[: raw.index(b"\n\n")]
    with pytest.raises(Exception, match="no uncertainty map"):
        node.SetAttribute(mrml.MAP_ATTRIBUTE, "")
        results.save_map(node, tmp_path / "other.nii.gz")


def test_a_map_node_saved_by_slicer_as_nifti_is_nifti(tmp_path):
    """A map node keeps Slicer's default storage node: a .nii.gz (or .nii) name gets a NIfTI file (a NRRD storage
    node had written NRRD bytes under it, reporting success)."""
    import gzip

    _, node = _map_node(views_scene())
    node.AddDefaultStorageNode()
    storage = node.GetStorageNode()
    assert not storage.IsA("vtkMRMLNRRDStorageNode")
    for name in ("sigma.nii.gz", "sigma.nii"):
        storage.SetFileName(str(tmp_path / name))
        assert storage.WriteData(node)
        raw = (tmp_path / name).read_bytes()
        raw = gzip.decompress(raw) if name.endswith(".gz") else raw
        assert raw[344:348] == b"n+1\x00" and not raw.startswith(b"NRRD")


def test_compare_layout(lowres):
    lr, _ = lowres
    scene = views_scene()
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    node = mrml.add_tensor_node(scene, lr, "dti")
    nodes = run(scene, node, "biqt")
    left, right = display.show_comparison(scene, nodes["interpolated"], nodes["tensor"], nodes["uncertainty"], 0.4)
    assert layout.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert (left.GetLayoutName(), right.GetLayoutName()) == ("Red", "Yellow")
    assert left.GetBackgroundVolumeID() == nodes["interpolated"].GetID() and left.GetForegroundVolumeID() is None
    assert right.GetBackgroundVolumeID() == nodes["tensor"].GetID()
    assert right.GetForegroundVolumeID() == nodes["uncertainty"].GetID()
    assert right.GetForegroundOpacity() == pytest.approx(0.4) and left.GetForegroundOpacity() == 0.0
    assert left.GetLinkedControl() and right.GetLinkedControl()
    red, yellow = display.slice_node(scene, "Red"), display.slice_node(scene, "Yellow")
    assert red.GetOrientation() == yellow.GetOrientation() == "Axial"
    m_red, m_yellow = red.GetSliceToRAS(), yellow.GetSliceToRAS()
    np.testing.assert_allclose([[m_red.GetElement(i, j) for j in range(4)] for i in range(4)],
                               [[m_yellow.GetElement(i, j) for j in range(4)] for i in range(4)], atol=1e-9)
    np.testing.assert_allclose(red.GetFieldOfView(), yellow.GetFieldOfView())
    bounds = [0.0] * 6
    nodes["tensor"].GetRASBounds(bounds)  # the slice goes through the volume's centre, on its nearest voxel plane
    assert abs(m_red.GetElement(2, 3) - (bounds[4] + bounds[5]) / 2) <= 0.5 * nodes["tensor"].GetSpacing()[2] + 1e-6
    assert_on_voxel_centres(scene, nodes["tensor"], ("Red", "Yellow"))
    with pytest.raises(display.IQTError, match="interpolated output first"):
        display.show_comparison(scene, None, nodes["tensor"])


def assert_on_voxel_centres(scene, volume, views):
    """Each view's plane passes through voxel centres of `volume` along the voxel axis nearest its normal."""
    m = mrml.node_affine(volume)
    for name in views:
        s = display.slice_node(scene, name).GetSliceToRAS()
        origin = np.array([s.GetElement(i, 3) for i in range(3)])
        normal = np.array([s.GetElement(i, 2) for i in range(3)])
        ijk = np.linalg.solve(m[:3, :3], origin - m[:3, 3])
        axis = int(np.argmax(np.abs((m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)).T @ normal)))
        assert ijk[axis] == pytest.approx(round(ijk[axis]), abs=1e-6), (name, ijk)


def test_the_first_view_of_an_even_number_of_slices_shows_one_of_them_not_a_blend(lowres):
    """A x2 output has an even number of slices on every axis: its centre lies between two, and the first picture
    was the two blended (a display audit: k = 17.5 on the 3 mm dev scan). Each view now starts on a voxel plane,
    the results' three views and the comparison's two, on a grid stored obliquely too."""
    lr, _ = lowres
    turn = np.eye(4)
    c, s = np.cos(np.radians(12)), np.sin(np.radians(12))
    turn[:2, :2] = [[c, -s], [s, c]]  # 12 degrees of yaw: each view still nearest one voxel axis
    for affine in (lr.affine, turn @ lr.affine):
        scene = views_scene()
        for view, orientation in zip(VIEWS, ("Axial", "Sagittal", "Coronal")):  # as the application's views start
            display.slice_node(scene, view).SetOrientation(orientation)
        nodes = run(scene, mrml.add_tensor_node(scene, Volume(lr.data, affine, "tensor"), "dti"), "cubic")
        assert all(n % 2 == 0 for n in nodes["tensor"].GetImageData().GetDimensions())
        assert all(display.slice_node(scene, v).GetAttribute(display.FITTED_ATTRIBUTE) for v in VIEWS)
        assert_on_voxel_centres(scene, nodes["tensor"], VIEWS)
        display.show_comparison(scene, nodes["interpolated"], nodes["tensor"])
        assert_on_voxel_centres(scene, nodes["tensor"], ("Red", "Yellow"))


def test_a_view_kept_from_a_run_at_other_factors_moves_onto_the_new_grid(lowres):
    """x2 and x3 outputs of one input share their extent, so Apply at x3 keeps the x2 run's slice, which lies between
    two x3 slices (a review: ijk 21.25); it is moved onto the nearest, in the results' views and the comparison."""
    lr, _ = lowres
    scene = views_scene()
    for view, orientation in zip(VIEWS, ("Axial", "Sagittal", "Coronal")):
        display.slice_node(scene, view).SetOrientation(orientation)
    node = mrml.add_tensor_node(scene, lr, "dti")
    for f in (2, 3):
        nodes = processing.run_on_nodes(scene, node, "cubic", f, interpolate=True)
        display.show_results(scene, nodes)
        assert_on_voxel_centres(scene, nodes["tensor"], VIEWS)
    x2 = processing.run_on_nodes(scene, node, "cubic", 2, interpolate=True)
    display.show_comparison(scene, x2["interpolated"], x2["tensor"])
    x3 = processing.run_on_nodes(scene, node, "cubic", 3, interpolate=True)
    display.show_comparison(scene, x3["interpolated"], x3["tensor"])
    assert_on_voxel_centres(scene, x3["tensor"], ("Red", "Yellow"))


def test_compare_shows_one_value_in_one_grey_on_both_sides(lowres):
    """The interpolation's scalar display follows the IQT output's in the comparison: FA (and the other 0..1
    measures) on 0..1 in both (automatic windows had given cubic 0-0.64 and IQT 0-0.74), any other
    invariant on the IQT side's window, and Slicer's automatic window back on the IQT side off FA."""
    from slicer import vtkMRMLDiffusionTensorDisplayPropertiesNode as Props

    lr, _ = lowres
    scene = views_scene()
    nodes = run(scene, mrml.add_tensor_node(scene, lr, "dti"), "biqt")
    left, right = nodes["interpolated"].GetDisplayNode(), nodes["tensor"].GetDisplayNode()
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"], nodes["uncertainty"], 0.4)
    right.SetScalarInvariant(Props.FractionalAnisotropy)  # the reader picks FA in the Volumes module
    for d in (left, right):
        assert d.GetScalarInvariant() == Props.FractionalAnisotropy and not d.GetAutoWindowLevel()
        assert (d.GetWindowLevelMin(), d.GetWindowLevelMax()) == (0.0, 1.0)
    right.SetWindowLevelMinMax(0.0, 0.8)  # the reader's own FA window is kept, and followed
    assert (right.GetWindowLevelMin(), right.GetWindowLevelMax()) == (0.0, 0.8)
    assert (left.GetWindowLevelMin(), left.GetWindowLevelMax()) == (0.0, 0.8)
    right.SetScalarInvariant(Props.Trace)
    assert left.GetScalarInvariant() == Props.Trace and right.GetAutoWindowLevel()
    right.AutoWindowLevelOff()
    right.SetWindowLevelMinMax(0.0, 2.5e-3)  # the reader's own window on the IQT side
    assert (left.GetWindowLevelMin(), left.GetWindowLevelMax()) == (0.0, 2.5e-3) and not left.GetAutoWindowLevel()
    first = display._followers[right.GetID()][1]
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"])  # again: one observer, not two
    assert right.GetCommand(first) is None and right.GetCommand(display._followers[right.GetID()][1]) is not None


def test_a_scalar_chosen_for_the_cubic_side_shows_on_both_sides(lowres):
    """FA chosen for the interpolation's node (the left view) had been left on the window copied from the IQT side's
    colour orientation (0..254), its picture black (a clinician's audit: mean pixel 0.0); now either side's choice
    is followed by the other, on one window that shows it."""
    from slicer import vtkMRMLDiffusionTensorDisplayPropertiesNode as Props

    lr, _ = lowres
    scene = views_scene()
    nodes = processing.run_on_nodes(scene, mrml.add_tensor_node(scene, lr, "dti"), "linear", 2, interpolate=True)
    left, right = nodes["interpolated"].GetDisplayNode(), nodes["tensor"].GetDisplayNode()
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"])
    left.SetScalarInvariant(Props.FractionalAnisotropy)
    for d in (left, right):
        assert d.GetScalarInvariant() == Props.FractionalAnisotropy
        assert (d.GetWindowLevelMin(), d.GetWindowLevelMax()) == (0.0, 1.0)
    left.SetScalarInvariant(Props.Trace)  # Slicer's automatic window for Trace on the cubic side, followed
    assert right.GetScalarInvariant() == Props.Trace and left.GetAutoWindowLevel()
    # one window, up to the last bit VTK's min/max -> window/level round trip may change (4e-19 of 1.3e-3 in a CI run)
    assert (right.GetWindowLevelMin(), right.GetWindowLevelMax()) == pytest.approx(
        (left.GetWindowLevelMin(), left.GetWindowLevelMax()), rel=1e-12, abs=0)
    assert 0 < left.GetWindowLevelMax() < 0.1  # mm^2/s, not the colour window


def test_a_node_compared_with_itself_keeps_its_own_window(lowres):
    """Method cubic compared: the output is its own comparison, and it had followed itself, its automatic window
    switched off at the colour orientation's 0..254, FA and Trace black on both sides (a clinician's audit)."""
    from slicer import vtkMRMLDiffusionTensorDisplayPropertiesNode as Props

    lr, _ = lowres
    scene = views_scene()
    nodes = processing.run_on_nodes(scene, mrml.add_tensor_node(scene, lr, "dti"), "cubic", 2, interpolate=True)
    assert nodes["interpolated"] is nodes["tensor"]
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"])
    d = nodes["tensor"].GetDisplayNode()
    assert d.GetAutoWindowLevel() and d.GetID() not in display._followers
    for invariant in (Props.FractionalAnisotropy, Props.Trace):
        d.SetScalarInvariant(invariant)
        assert d.GetAutoWindowLevel() and 0 < d.GetWindowLevelMax() < 1, (invariant, d.GetWindowLevelMax())


def test_a_node_that_followed_gets_its_own_window_back_when_the_comparison_ends(lowres):
    """The cubic node compared beside linear with FA chosen, then compared with itself (method cubic), or left behind
    by a comparison of another method: following stopped with 0..1 fixed and no observer, so Trace stayed on 0..1,
    black (a review's self_after_follow.py, orphan.py). Each gets Slicer's automatic window back."""
    from slicer import vtkMRMLDiffusionTensorDisplayPropertiesNode as Props

    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    lin = processing.run_on_nodes(scene, node, "linear", 2, interpolate=True)
    display.show_comparison(scene, lin["interpolated"], lin["tensor"])
    lin["interpolated"].GetDisplayNode().SetScalarInvariant(Props.FractionalAnisotropy)
    near = processing.run_on_nodes(scene, node, "nearest", 2, interpolate=True)
    display.show_comparison(scene, near["interpolated"], near["tensor"])  # the linear output left behind
    cubic = processing.run_on_nodes(scene, node, "cubic", 2, interpolate=True)
    assert cubic["tensor"] is lin["interpolated"]
    display.show_comparison(scene, cubic["interpolated"], cubic["tensor"])  # compared with itself
    for d in (lin["tensor"].GetDisplayNode(), cubic["tensor"].GetDisplayNode()):
        assert d.GetID() not in display._followers
        d.SetScalarInvariant(Props.Trace)
        assert d.GetAutoWindowLevel() and 0 < d.GetWindowLevelMax() < 0.1, d.GetWindowLevelMax()


def test_the_modules_views_show_laterality(lowres):
    """The module's results and comparison had no orientation marker (its Logic passed marker=False), so nothing in its
    views said which side is the patient's right (a clinician's audit): each view gets Slicer's axes marker once, and a
    view whose marker the reader hides keeps it hidden over later runs."""
    import ast

    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    nodes = processing.run_on_nodes(scene, node, "linear", 2, interpolate=True)
    display.show_results(scene, nodes, marker=True)
    for view in VIEWS:
        s = display.slice_node(scene, view)
        assert s.GetOrientationMarkerType() == s.OrientationMarkerTypeAxes, view
    red = display.slice_node(scene, "Red")
    red.SetOrientationMarkerType(red.OrientationMarkerTypeNone)  # the reader's choice
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"], marker=True)
    display.show_results(scene, nodes, marker=True)
    assert red.GetOrientationMarkerType() == red.OrientationMarkerTypeNone
    module = ast.parse((REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py").read_text())
    calls = [c for c in ast.walk(module) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
             and c.func.attr in ("show_results", "show_comparison")]
    assert len(calls) == 2 and all(any(k.arg == "marker" and getattr(k.value, "value", None) is True
                                       for k in c.keywords) for c in calls)

def test_a_turned_grid_is_fitted_to_its_data_not_its_corners():
    """A grid turned in the scanner (30 degrees of yaw) had its corners' box fitted, twice the data's width here: on the
    3 mm yaw scan the brain filled a third of the view (a clinician's audit). The view fits the non-zero voxels."""
    data = np.zeros((40, 40, 10, 6), np.float32)
    data[10:30, 10:30, :, 0] = 1.0  # 60 mm of data in a 120 mm grid
    turn = np.eye(4)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    turn[:2, :2] = [[c, -s], [s, c]]
    scene = views_scene()
    node = mrml.add_tensor_node(scene, Volume(data, turn @ np.diag([3.0, 3.0, 3.0, 1.0]), "tensor"), "turned")
    red = display.slice_node(scene, "Red")
    red.SetOrientation("Axial")
    red.SetDimensions(400, 400, 1)
    display.show_results(scene, {"tensor": node})
    corners = 120 * (c + s)  # the grid's box along R and A
    data_width = 60 * (c + s)
    assert data_width <= red.GetFieldOfView()[1] <= 1.1 * data_width < corners, red.GetFieldOfView()

def test_a_moved_node_is_fitted_where_it_now_lies():
    """The data's bounds are kept per node until its image changes: a node moved (its origin set, as the Volumes
    module does) kept its old bounds and view, 50 mm off (a review)."""
    data = np.zeros((20, 20, 10, 6), np.float32)
    data[5:15, 5:15, 2:8, 0] = 1.0
    scene = views_scene()
    node = mrml.add_tensor_node(scene, Volume(data, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor"), "moved")
    red = display.slice_node(scene, "Red")
    red.SetOrientation("Axial")
    bounds = display.data_bounds(node)
    origin = node.GetOrigin()
    node.SetOrigin(origin[0], origin[1], origin[2] + 50.0)
    moved = display.data_bounds(node)
    assert moved[4:] == pytest.approx([bounds[4] + 50.0, bounds[5] + 50.0])


def test_tractography_hand_off_needs_slicerdmri(lowres):
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    assert not display.seeding_available(scene)  # slicer-core has no SlicerDMRI
    with pytest.raises(display.IQTError, match="SlicerDMRI extension"):
        display.send_to_seeding(scene, node)
    scalar = mrml.add_scalar_node(scene, Volume(np.ones((4, 4, 4), np.float32), np.eye(4), "scalar"), "s")
    with pytest.raises(display.IQTError, match="diffusion tensor volume"):
        display.send_to_seeding(scene, scalar)



def test_flagged_voxels_do_not_set_a_maps_scale():
    """methods/flags.py raises the voxels it flags (noise fits, non-physical outputs) to one value, the top of the
    map; 3 % of the brain so flagged had made that value the legend's top, and the brain's own uncertainty rendered
    near-black (the 3 mm ortho dev scan fitted unmasked: 9.87 um^2/ms against a median of 0.089). The scale is read
    from the unflagged voxels."""
    vox, shape = np.array([2.0, 2.0, 2.0]), (30, 30, 30)
    rng = np.random.default_rng(0)
    std = rng.uniform(0.5e-4, 1.5e-4, shape).astype(np.float32)
    std[rng.random(shape) < 0.03] = np.float32(9.87e-3)
    node = mrml.add_scalar_node(slicer.vtkMRMLScene(), Volume(std, np.diag([*vox, 1.0]), "scalar"), "u")
    assert np.percentile(std, 99) > 9e-3  # with them
    assert 1.4e-4 < legends.display_range(node)[1] < 1.5e-4

def test_a_map_is_scaled_to_the_brain_not_its_rim():
    """An output kept to a brain estimated from unmasked tensors holds a rim of scalp and background fits, most of
    the map and far more uncertain than the brain: the legend's scale is read more than 24 mm (in mm, per axis)
    inside the rim, the field's border counted as an edge (a slab cuts the head: its top and bottom planes hold rim
    too), so the brain does not sit in the bottom twentieth of the colours. A map with a mask is read there too (the
    audit: over all of it, 93 % of white matter sat in the bottom fifth of the colours)."""
    vox, shape = np.array([3.0, 3.0, 6.0]), (40, 40, 14)
    centre = (np.array(shape) - 1) / 2
    r = np.linalg.norm((np.indices(shape) - centre[:, None, None, None]) * vox[:, None, None, None], axis=0)
    rng = np.random.default_rng(0)
    std = np.where(r < 40, rng.uniform(0.5e-4, 1.5e-4, shape), np.where(r < 58, rng.uniform(1e-3, 1e-2, shape), 0))
    scene = slicer.vtkMRMLScene()
    node = mrml.add_scalar_node(scene, Volume(std.astype(np.float32), np.diag([*vox, 1.0]), "scalar"), "u")
    assert np.percentile(std[std > 0], 99) > 5e-3  # the whole map's scale
    assert 1.4e-4 < legends.display_range(node)[1] < 1.5e-4  # a mask's support (no attribute): inside the rim
    node.SetAttribute(mrml.SUPPORT_ATTRIBUTE, "estimated")
    assert 1.4e-4 < legends.display_range(node)[1] < 1.5e-4  # read in voxels, or without the border: above 8e-3
    # a run's maps share their support: the region is found once and given to each (style_results)
    region = inside_rim(std > 0, vox)
    assert legends.display_range(node, region) == legends.display_range(node)


def test_shared_colour_scale_across_runs(lowres):
    """Two methods' maps: each on its own range, then, shared, every map of a kind on the highest of them (one colour,
    one value), with its legend's labels; unshared again, each back on its own."""
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    a, b = run(scene, node, "biqt"), run(scene, node, "rf")
    std_nodes = [a["uncertainties"]["std"], b["uncertainties"]["std"]]
    assert legends.map_nodes(scene)["std"] == std_nodes
    own = [legends.display_range(n)[1] for n in std_nodes]  # each map's own 99th percentile
    assert [n.GetDisplayNode().GetWindowLevelMax() for n in std_nodes] == [
        pytest.approx(legends.scale_ticks(v)[0]) for v in own]  # each on its own round top
    assert own[0] != pytest.approx(own[1], rel=1e-3)
    tops = legends.share_scales(scene)
    assert tops["std"] == pytest.approx(max(own)) and set(tops) == {"std", "direction"}
    shared, intervals = legends.scale_ticks(max(own))
    for n, label in zip(std_nodes, ("biqt", "rf")):
        assert n.GetDisplayNode().GetWindowLevelMax() == pytest.approx(shared)
        assert legends.legend_node(scene, n).GetLabelFormat() == legends.label_format(shared, intervals)
        assert legends.legend_node(scene, n).GetNumberOfLabels() == intervals + 1
        # said so, and which run's map it is (two runs' legends had read alike)
        assert unpadded(legends.legend_node(scene, n)) == f"Tensor SD\n(µm²/ms)\n{label}\nshared scale" + \
            tail(n, std_nodes)
        # one floor for the kind, the lowest: a value coloured in one run's map is coloured in the other's
        assert n.GetDisplayNode().GetLowerThreshold() == pytest.approx(min(map(expected_floor, std_nodes))[0], rel=1e-6)
    directions = legends.map_nodes(scene)["direction"]
    assert [n.GetDisplayNode().GetWindowLevelMax() for n in directions] == \
        [pytest.approx(legends.scale_ticks(tops["direction"])[0])] * 2
    assert tops["direction"] == 60.0  # fixed, shared or not
    again = processing.run_on_nodes(scene, node, "biqt", 2, interpolate=True, samples=2)  # a new run, shared: the
    display.show_results(scene, again, shared=True)  # module's Apply with the box ticked restyles, then shares again
    assert a["uncertainties"]["std"].GetDisplayNode().GetWindowLevelMax() == pytest.approx(shared)
    assert "\nshared scale" in legends.legend_node(scene, std_nodes[0]).GetTitleText()
    legends.share_scales(scene, shared=False)
    assert [n.GetDisplayNode().GetWindowLevelMax() for n in std_nodes] == [
        pytest.approx(legends.scale_ticks(v)[0]) for v in own]
    assert [unpadded(legends.legend_node(scene, n)) for n in std_nodes] == [
        "Tensor SD\n(µm²/ms)" + tail(n) for n in std_nodes]


def test_shared_legends_keep_one_bar_length_whatever_the_run_names(lowres):
    """A run's name wrapped onto more lines shortened its legend's bar against the other's, the same scale's ticks at
    other heights (deep-hetero-var1 broke at its hyphens into two lines beside biqt's one; picture audit, stop 57):
    the titles now have one line count, and a method's name stays whole."""
    assert legends.wrap_title("deep-hetero-var1") == "deep-hetero-var1"
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    a, b = run(scene, node, "biqt"), run(scene, node, "rf")
    b["uncertainties"]["std"].SetAttribute(mrml.RUN_ATTRIBUTE, "rf at factors 1,1,3")  # two lines once wrapped
    legends.share_scales(scene)
    titles = [legends.legend_node(scene, x["uncertainties"]["std"]).GetTitleText() for x in (a, b)]
    first, second = (t.split("\n") for t in titles)
    shared = [x["uncertainties"]["std"] for x in (a, b)]
    tops = [tail(n, shared).split("\n")[1:] for n in shared]  # from where shown, where above the top
    bodies = [["Tensor SD", "(µm²/ms)", "biqt", "shared scale"],
              ["Tensor SD", "(µm²/ms)", "rf at", "factors", "1,1,3", "shared scale"]]
    n = max(len(body) + len(top) for body, top in zip(bodies, tops))
    # the padding goes above the floor and clipped-top lines, which stay right above the bar
    assert [first, second] == [body + ["\u00a0"] * (n - len(body) - len(top)) + top for body, top in zip(bodies, tops)]


def test_results_lie_under_the_inputs_transform_and_a_late_cancel_leaves_none(lowres):
    """An input under a parent transform (a registration to a T1) gives results under the same transform, so they lie
    where it lies (they came out as far from it as the transform moved it); a Cancel pressed as the method
    ends still leaves no output (the nodes had come back while the status said Cancelled)."""
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    moved = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = slicer.vtkMatrix4x4() if hasattr(slicer, "vtkMatrix4x4") else __import__("vtk").vtkMatrix4x4()
    matrix.SetElement(0, 3, 20.0)
    moved.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(moved.GetID())
    nodes = processing.run_on_nodes(scene, node, "biqt", 2, interpolate=True)
    for result in (nodes["tensor"], nodes["interpolated"], *nodes["uncertainties"].values()):
        assert result.GetTransformNodeID() == moved.GetID(), result.GetName()
    before = scene.GetNumberOfNodes()
    seen = []

    def progress(fraction, message):
        seen.append(message)

    with pytest.raises(processing.Cancelled):
        processing.run_on_nodes(scene, node, "linear", 3, progress=progress,
                                cancel=lambda: "creating output nodes" in seen)
    assert scene.GetNumberOfNodes() == before


def test_a_dti_slicer_loaded_without_a_colour_table_is_shown_on_grey(lowres):
    """A DTI node with Slicer's own default display nodes and no colour table (Slicer's reader in trame-slicer's scene):
    shown, it gets the grey table, else its FA display was drawn without a lookup table, as stripes (audit)."""
    lr, _ = lowres
    scene = views_scene()
    node = slicer.vtkMRMLDiffusionTensorVolumeNode()
    scene.AddNode(node)
    mrml.set_tensor_node(node, lr)
    node.GetDisplayNode().SetAndObserveColorNodeID("")
    display.show_layers(scene, node)
    table = scene.GetNodeByID(node.GetDisplayNode().GetColorNodeID())
    assert table is not None and table.GetName() == "Grey"


@pytest.mark.parametrize("samples", [0, 1, 201, 2.5])
def test_monte_carlo_samples_outside_the_panels_range_are_refused(lowres, samples):
    """Monte Carlo samples below 2 (or above 200, or not whole) are refused in one line, nothing created: 0 had run one
    deterministic pass without a word (audit)."""
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    before = counts(scene)
    with pytest.raises(display.IQTError, match=r"^Advanced > Monte Carlo samples is .*; give 2 to 200") as err:
        processing.run_on_nodes(scene, node, "cubic", 2, samples=samples)
    assert "\n" not in str(err.value) and counts(scene) == before


def _slice_state(scene, view):
    s = display.slice_node(scene, view)
    m = s.GetSliceToRAS()
    return np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)]), np.array(s.GetFieldOfView())


def test_a_run_in_the_comparison_refreshes_it_and_keeps_the_readers_slice_and_zoom(lowres):
    """A clinician's audit: Apply in the side-by-side layout put the new result on both sides (two identical panels
    under a layout that promises cubic | IQT), and every Apply or Compare took the reader from a finding back to the
    central slice at full view. Now the comparison shows cubic | the new result, at the slice and zoom the reader left;
    a cubic run (nothing to compare) goes back to the reader's layout."""
    lr, _ = lowres
    scene = views_scene()
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    layout.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView)
    for view, orientation in zip(VIEWS, ("Axial", "Sagittal", "Coronal")):  # as the application's views start
        display.slice_node(scene, view).SetOrientation(orientation)
    node = mrml.add_tensor_node(scene, lr, "dti")
    nodes = run(scene, node, "biqt")
    red = display.slice_node(scene, "Red")
    assert red.GetAttribute(display.FITTED_ATTRIBUTE) == "Axial"  # framed at the first run
    red.SetSliceOffset(red.GetSliceOffset() + 6.0)  # the reader scrolls to a finding and zooms in
    fov = red.GetFieldOfView()
    red.SetFieldOfView(fov[0] / 2, fov[1] / 2, fov[2])
    finding = _slice_state(scene, "Red")
    run(scene, node, "rf")  # another method at the same finding
    np.testing.assert_allclose(_slice_state(scene, "Red")[0], finding[0], atol=1e-9)
    np.testing.assert_allclose(_slice_state(scene, "Red")[1], finding[1])
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"], nodes["uncertainty"], 0.4)
    for view in ("Red", "Yellow"):
        np.testing.assert_allclose(_slice_state(scene, view)[0], finding[0], atol=1e-9)
        assert _slice_state(scene, view)[1][1] == pytest.approx(finding[1][1])
    again = run(scene, node, "global-linear")  # Apply while comparing
    left, right = display.composite_node(scene, "Red"), display.composite_node(scene, "Yellow")
    assert layout.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert left.GetBackgroundVolumeID() == again["interpolated"].GetID() != again["tensor"].GetID()
    assert right.GetBackgroundVolumeID() == again["tensor"].GetID()
    np.testing.assert_allclose(_slice_state(scene, "Yellow")[0], finding[0], atol=1e-9)
    run(scene, node, "cubic")  # nothing to compare: the reader's layout again, the cubic result in every view
    assert layout.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView
    red.SetOrientation("Coronal")  # turned by the reader: framed again at the next run
    run(scene, node, "biqt")
    assert red.GetFieldOfView()[1] != pytest.approx(finding[1][1] * 1.0) and red.GetOrientation() == "Coronal"


def test_a_run_over_another_extent_is_fitted_anew_on_the_readers_slice(lowres):
    """A masked run after an unmasked one (or the reverse) has other data bounds, so its views are fitted anew; the
    refit had also put each view back on the central slice (a review's drv.py bounds2: offset 10.6 -> -4.4). The
    reader's slice stays, moved inside the new data where it lay outside."""
    lr, _ = lowres
    scene = views_scene()
    for view, orientation in zip(VIEWS, ("Axial", "Sagittal", "Coronal")):
        display.slice_node(scene, view).SetOrientation(orientation)
    cut = np.array(lr.data)
    cut[:5], cut[:, :5] = 0, 0  # as a tight mask leaves it: 20 mm less along two axes
    whole = mrml.add_tensor_node(scene, lr, "dti")
    masked = mrml.add_tensor_node(scene, Volume(cut, lr.affine, "tensor"), "dti_masked")
    display.show_results(scene, processing.run_on_nodes(scene, whole, "nearest", 2))
    red = display.slice_node(scene, "Red")
    red.SetSliceOffset(red.GetSliceOffset() + 8.0)  # the reader's finding, 8 mm above the centre
    chosen, fov = red.GetSliceOffset(), red.GetFieldOfView()
    nodes = processing.run_on_nodes(scene, masked, "nearest", 2)
    display.show_results(scene, nodes)
    assert red.GetFieldOfView() != fov  # fitted anew
    assert red.GetSliceOffset() == pytest.approx(chosen, abs=1.0)  # half an output voxel: onto its plane
    assert_on_voxel_centres(scene, nodes["tensor"], VIEWS)
    red.SetSliceOffset(red.GetSliceOffset() + 500.0)  # beyond the data: brought back inside it
    display.show_results(scene, processing.run_on_nodes(scene, whole, "nearest", 2))
    top = display.data_bounds(nodes["tensor"])[5]
    assert top - 2.0 <= red.GetSliceOffset() <= top
    red.SetSliceOffset(red.GetSliceOffset() - 10.0)  # and in the comparison
    chosen = red.GetSliceOffset()
    nodes = processing.run_on_nodes(scene, masked, "nearest", 2, interpolate=True)
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"], orientation="Axial")
    for view in ("Red", "Yellow"):
        assert display.slice_node(scene, view).GetSliceOffset() == pytest.approx(chosen, abs=1.0), view


def test_no_legend_is_drawn_for_an_overlay_at_opacity_0(lowres):
    """With the overlay's opacity at 0, Apply (and Compare) drew the 'Tensor SD' legend over the orientation colours,
    giving the corpus callosum's red a scale (a clinician's audit)."""
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    nodes = processing.run_on_nodes(scene, node, "biqt", 2, interpolate=True, samples=2)
    legend = legends.legend_node(scene, nodes["uncertainty"])
    display.show_results(scene, nodes, opacity=0.0)
    assert not legend.GetVisibility()
    display.show_results(scene, nodes, opacity=0.5)
    assert legend.GetVisibility()
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"], nodes["uncertainty"], 0.0)
    assert not legend.GetVisibility()
    display.set_overlay_opacity(scene, 0.3, [nodes["uncertainty"]])
    assert legend.GetVisibility()


def test_the_readers_layout_comes_back_after_the_modules_comparison_and_a_layout_left_by_hand_is_theirs(lowres):
    """The module's Logic switches the layout manager to side-by-side before `show_comparison`: the layout to go back
    to was then lost, and a cubic run left both sides showing cubic (a code review). And a reader who left the
    comparison by hand and later chose side-by-side themselves keeps it at the next run."""
    lr, _ = lowres
    scene = views_scene()
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    conventional, side_by_side = (slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView,
                                  slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    layout.SetViewArrangement(conventional)
    node = mrml.add_tensor_node(scene, lr, "dti")
    nodes = run(scene, node, "biqt")
    display.remember_layout(scene)  # as the Logic's showComparison, then the layout manager's setLayout
    layout.SetViewArrangement(side_by_side)
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"], nodes["uncertainty"], 0.4)
    run(scene, node, "cubic")
    assert layout.GetViewArrangement() == conventional
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"], nodes["uncertainty"], 0.4)
    layout.SetViewArrangement(conventional)  # the reader leaves the comparison by hand
    run(scene, node, "biqt")
    layout.SetViewArrangement(side_by_side)  # and later chooses side-by-side for their own views
    again = run(scene, node, "rf")
    assert layout.GetViewArrangement() == side_by_side
    assert display.composite_node(scene, "Red").GetBackgroundVolumeID() == again["tensor"].GetID()  # not cubic


def test_the_uncertainty_map_shown_is_the_one_chosen(lowres):
    """The Display's Uncertainty map: every map of a run had been a step away, through the slice controller, the
    direction map (the one to read before tractography) too (a Slicer-module audit). A run shows the one chosen, a
    choice switches every view that shows one of the run's maps, with that map's legend; a map the run lacks changes
    nothing."""
    lr, _ = lowres
    scene = views_scene()
    node = mrml.add_tensor_node(scene, lr, "dti")
    nodes = processing.run_on_nodes(scene, node, "biqt", 2, interpolate=True, samples=2)
    direction, std = nodes["uncertainties"]["direction"], nodes["uncertainties"]["std"]
    display.show_results(scene, nodes, opacity=0.4, shown_map="direction")
    assert display.overlay_of(nodes, "direction") is direction and display.overlay_of(nodes, "nothing") is std
    for view in VIEWS:
        c = display.composite_node(scene, view)
        assert c.GetForegroundVolumeID() == direction.GetID() and c.GetForegroundOpacity() == pytest.approx(0.4)
    display.composite_node(scene, "Green").SetForegroundVolumeID(None)  # a view the reader changed stays as it is
    assert display.show_map(scene, nodes, "std", 0.6) is std
    assert [display.composite_node(scene, v).GetForegroundVolumeID() for v in VIEWS] == [std.GetID(), std.GetID(), None]
    assert display.composite_node(scene, "Red").GetForegroundOpacity() == pytest.approx(0.6)
    assert legends.legend_node(scene, std).GetVisibility()
    assert display.show_map(scene, nodes, "not a map", 0.6) is None
    assert display.composite_node(scene, "Red").GetForegroundVolumeID() == std.GetID()


@pytest.mark.realdata
def test_the_rendered_subject_is_degraded_from_the_mask_iqt_mask_makes():
    """`render.degraded_subject` degraded from the benchmark's mask (holes filled in 3D only), which left low-res
    blocks inside the 3 mm ortho dev scan's temporal lobe out: black 3 mm squares inside the brain in the render's
    picture (a display audit; 345 low-res voxels enclosed within a slice). It now uses `iqt mask`'s, as `iqt degrade`
    does: none."""
    from helpers import AXIAL, need_data

    from ImageQualityTransferLib.dmri.dti import fill_slice_holes
    from ImageQualityTransferLib.slicer import render

    _, mask = render.degraded_subject(need_data(AXIAL))
    inside = np.asarray(mask.data, bool)
    assert inside.sum() > 5000 and not (fill_slice_holes(inside) & ~inside).any()


def test_each_scene_s_views_keep_their_own_resize_observer(monkeypatch):
    """Two scenes in one process (a second viewer, a test): every scene's Red view has one ID, and keyed by it the
    second scene's legends took the first one's observer, so a resize of the first scene's view no longer placed its
    legends (a review)."""
    def scene_with_views():
        scene = slicer.vtkMRMLScene()
        for name in ("Red", "Yellow"):
            s = slicer.vtkMRMLSliceNode()
            s.SetName(name), s.SetLayoutName(name), s.SetSingletonTag(name), s.SetDimensions(700, 400, 1)
            scene.AddNode(s)
        return scene

    placed = []
    monkeypatch.setattr(legends, "place_legends", placed.append)
    a, b = scene_with_views(), scene_with_views()
    legends.follow_view_sizes(a)
    legends.follow_view_sizes(b)
    legends.follow_view_sizes(a)  # again: no second observer
    a.GetFirstNodeByName("Red").SetDimensions(700, 180, 1)
    b.GetFirstNodeByName("Yellow").SetDimensions(500, 200, 1)
    assert placed == [a, b]
    a.GetFirstNodeByName("Red").SetFieldOfView(100, 100, 1)  # a zoom, not a resize
    assert placed == [a, b]


def test_a_run_s_notes_reach_a_saved_header_in_ascii(tmp_path):
    """Slicer's NRRD storage node writes the tensor node's notes into the header, where pynrrd dropped '×', 'µ' and
    '²' ('biqt ×1,1,3' read 'biqt 1,1,3'): the notes attribute is ASCII; the status line shows the panel's unit."""
    import ast

    import nrrd

    from ImageQualityTransferLib.slicer import results

    scene = views_scene()
    t = np.zeros((6, 5, 4, 6), np.float32)
    t[..., 0] = t[..., 3] = t[..., 5] = 7e-4
    note = processing.notes_in_shown_unit("biqt \u00d71,1,3: an eigenvalue outside -0.001 to 0.005 mm^2/s")
    vol = Volume(t, np.diag([2.0, 2.0, 2.0, 1.0]), "tensor", meta={"notes": [note, "d\u00e9j\u00e0 vu"]})
    node = results._put(scene, vol, "dti_biqt", None, "biqt/tensor")
    notes = node.GetAttribute(mrml.NOTES_ATTRIBUTE)
    assert notes.isascii() and notes.startswith("biqt x1,1,3: an eigenvalue outside -1 to 5 um^2/ms")
    node.AddDefaultStorageNode()
    node.GetStorageNode().SetFileName(str(tmp_path / "t.nrrd"))
    assert node.GetStorageNode().WriteData(node)
    # Slicer's writer escapes backslashes and line breaks; nothing dropped
    escaped = notes.replace("\\", "\\\\").replace("\n", "\\n")
    assert nrrd.read_header(str(tmp_path / "t.nrrd"))[mrml.NOTES_ATTRIBUTE] == escaped
    module = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"
    fn = next(f for f in ast.parse(module.read_text()).body if isinstance(f, ast.FunctionDef) and f.name == "runStatusText")
    space = {"_": lambda text: text, "Optional": None}
    exec(compile(ast.Module([fn], []), str(module), "exec"), space)
    shown = space["runStatusText"]("dti_biqt", notes)
    assert "-1 to 5 \u00b5m\u00b2/ms" in shown and shown.endswith("d\u00e9j\u00e0 vu")
