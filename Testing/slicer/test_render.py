"""The compare layout as Slicer's own slice views draw it, off-screen (trame-slicer): a real dev subject degraded by
`iqt degrade`'s rule and upsampled by cubic (left) and biqt (right, with its uncertainty overlay and legend).
The pictures are checked: background outside the brain, a coloured overlay, the same slice in both views, a
legend whose labels show the values; and the README's picture is small enough for the extension page."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

pytest.importorskip("trame_slicer", reason="the render extra (trame-slicer[standalone]) is not installed")

from ImageQualityTransferLib.dmri import degrade  # noqa: E402
from ImageQualityTransferLib.slicer import display, legends, offscreen, render  # noqa: E402

LEFT, RIGHT = display.COMPARE_VIEWS


def test_no_offscreen_opengl_is_one_line_before_the_fit(tmp_path, monkeypatch, capsys):
    """Without EGL/Mesa the first render segfaulted (exit 139, nothing printed): main's probe (slicer/offscreen.py),
    failing here, gives one line and exit 2 before the subject is read, and writes nothing."""
    monkeypatch.setattr(render, "_app_importable", lambda: None)  # trame's import (seconds) is not what is tested
    monkeypatch.setattr(offscreen, "probe", lambda timeout=60: (False, "exit -11: "))
    monkeypatch.setattr(render, "degraded_subject", lambda *a, **k: pytest.fail("the subject was read"))
    for name in ("dwi.nii.gz", "dwi.bval", "dwi.bvec"):  # a subject folder by its names (checked before the probe)
        (tmp_path / name).write_text("")
    out = tmp_path / "pics" / "compare.png"
    code = render.main([str(tmp_path), str(out), "--method", "cubic"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("render: no off-screen OpenGL here"), err
    assert not out.parent.exists()


@pytest.fixture(scope="module")
def rendering(axial_subject):
    ok, why = offscreen.probe()  # the commands' own probe, in a child: a crash stays there
    if not ok and why.startswith(offscreen.TOOK_OVER):  # a hung probe on a machine with GL: no quiet skip
        pytest.fail(f"the off-screen OpenGL probe did not answer ({why})")
    if not ok:
        pytest.skip(f"no off-screen OpenGL here ({why})")
    pair = degrade.degrade(axial_subject.dwi, axial_subject.mask.data, 2)
    return render.render_compare(pair.tensor, pair.mask, "biqt")


def support_at_pixels(rendering, view, dilate: int = 2) -> np.ndarray:
    """(H, W) bool: the pixel's nearest high-res voxel is inside the tensor's non-zero support dilated by `dilate`."""
    from scipy import ndimage

    from ImageQualityTransferLib.slicer import mrml

    tensor = mrml.tensor_volume_from_node(rendering.nodes["tensor"])
    support = np.any(tensor.data != 0, axis=-1)
    support = ndimage.binary_dilation(support, iterations=dilate) if dilate > 0 else \
        ndimage.binary_erosion(support, iterations=-dilate)
    return at_pixels(rendering, view, support, tensor.affine)


def at_pixels(rendering, view, data: np.ndarray, affine: np.ndarray):
    """(H, W) values of `data` (a 3D array on `affine`'s grid) at each pixel's nearest voxel; 0 outside the grid."""
    ras = rendering.pixel_ras(view)
    ijk = np.rint((np.c_[ras.reshape(-1, 3), np.ones(ras.shape[0] * ras.shape[1])] @ np.linalg.inv(affine).T)[:, :3])
    inside = np.all((ijk >= 0) & (ijk < np.array(data.shape)), axis=1)
    out = np.zeros(len(ijk), data.dtype)
    idx = ijk[inside].astype(int)
    out[inside] = data[idx[:, 0], idx[:, 1], idx[:, 2]]
    return out.reshape(ras.shape[:2])


def outside_legend(rendering, view) -> np.ndarray:
    """(H, W) bool: the pixels outside the colour legend and the orientation marker."""
    h, w = rendering.images[view].shape[:2]
    keep = np.ones((h, w), bool)
    for boxes in (rendering.legend_boxes, rendering.marker_boxes):
        if view in boxes:
            x0, y0, x1, y1 = boxes[view]
            keep[y0:y1, x0:x1] = False
    return keep


def test_the_scene_keeps_its_colour_tables_after_render_compare(rendering):
    """A caller switching a result to FA after render_compare returned got near-black stripes and 'No LookupTable
    was set' (an audit): the app that made the scene had been dropped, and with it the scene's default colour tables
    (50 colour nodes down to 2-4). The Rendering holds the app."""
    import gc

    gc.collect()
    assert type(rendering.app).__name__ == "SlicerApp" and rendering.app.scene is rendering.scene
    assert rendering.scene.GetNumberOfNodesByClass("vtkMRMLColorNode") > 10


def test_each_view_shows_its_orientation(rendering):
    """Laterality at a glance: an orientation marker (axes labelled R, A, S) in a corner of each view, small beside
    the brain."""
    for view in (LEFT, RIGHT):
        h, w = rendering.images[view].shape[:2]
        x0, y0, x1, y1 = rendering.marker_boxes[view]
        assert x0 > w / 2 and y0 > h / 2 and (x1 - x0) * (y1 - y0) < 0.1 * w * h, rendering.marker_boxes[view]


def test_background_outside_the_brain(rendering):
    for view in (LEFT, RIGHT):
        image = rendering.images[view]
        outside = ~support_at_pixels(rendering, view) & outside_legend(rendering, view)
        assert outside.mean() > 0.2  # the check covers a good part of the view
        assert np.all(image[outside] == render.BACKGROUND), f"{view}: non-background pixels outside the brain"
        inside = support_at_pixels(rendering, view, dilate=-2)
        assert (image[inside].max(axis=1) > 0).mean() > 0.9, f"{view}: the brain is not drawn"


def test_overlay_is_coloured(rendering):
    """The uncertainty overlay changes the IQT view inside the brain where the map reaches its shipped model's clean
    median (slicer/clean_levels.py), in Inferno's purple-to-yellow hues, and leaves the tensor as it is below (a
    clinician's audit: the whole brain under the map's dark low end had hidden the anatomy)."""
    from ImageQualityTransferLib.slicer import mrml
    from ImageQualityTransferLib.slicer.clean_levels import clean_level

    composite = display.composite_node(rendering.scene, RIGHT)
    with_overlay = rendering.images[RIGHT]
    composite.SetForegroundOpacity(0.0)
    try:
        bare = render._grab(rendering.views[RIGHT])
    finally:
        composite.SetForegroundOpacity(render.OPACITY)
    inside = support_at_pixels(rendering, RIGHT, dilate=-2) & outside_legend(rendering, RIGHT)
    changed = np.abs(with_overlay.astype(int) - bare.astype(int)).sum(axis=-1) > 6
    std = mrml.scalar_volume_from_node(rendering.nodes["uncertainty"])
    floor = rendering.nodes["uncertainty"].GetDisplayNode().GetLowerThreshold()
    inner = legends.input_support(std.data > 0, rendering.nodes["uncertainty"].GetAttribute(mrml.FACTORS_ATTRIBUTE))
    node = rendering.nodes["uncertainty"]
    level = clean_level(node.GetAttribute(mrml.MODEL_ATTRIBUTE), "std", node.GetAttribute(mrml.TENSOR_SCALE_ATTRIBUTE),
                        legends.noise_scale(node) is not None)
    # biqt's clean median at this input's tensor scale, or its own median over the input's brain where that is lower
    assert level is not None and floor == pytest.approx(min(level[0], np.median(std.data[inner])), rel=1e-6)
    value = at_pixels(rendering, RIGHT, std.data, std.affine)
    above, below = inside & (value > 1.2 * floor), inside & (value < 0.8 * floor)  # away from the threshold's edge
    assert above.sum() > 1000 and below.sum() > 1000, (above.sum(), below.sum())
    assert changed[above].mean() > 0.8 and changed[below].mean() < 0.2, (changed[above].mean(), changed[below].mean())
    shift = with_overlay[above].astype(float).mean(axis=0) - bare[above].astype(float).mean(axis=0)
    assert shift[0] > shift[1]  # more red than green added: inferno, not grey


def test_both_views_show_the_same_slice(rendering):
    np.testing.assert_allclose(rendering.pixel_ras(LEFT), rendering.pixel_ras(RIGHT), atol=1e-6)
    drawn = [(rendering.images[v].max(axis=-1) > 0) & outside_legend(rendering, RIGHT) for v in (LEFT, RIGHT)]
    iou = (drawn[0] & drawn[1]).sum() / (drawn[0] | drawn[1]).sum()
    assert iou > 0.9, f"the brain's outline differs between the views (IoU {iou:.2f})"


def test_legend_is_shown_and_readable(rendering):
    assert RIGHT in rendering.legend_boxes and LEFT not in rendering.legend_boxes  # only where the map is shown
    legend = legends.legend_node(rendering.scene, rendering.nodes["uncertainty"])
    dm = rendering.views[RIGHT]._displayable_manager_group.GetDisplayableManagerByClassName(
        "vtkMRMLColorLegendDisplayableManager")
    actor = dm.GetColorLegendActor(legend)
    ticks = legends.scale_ticks(legends.display_range(rendering.nodes["uncertainty"])[1])
    assert actor.GetTitle().startswith("Tensor SD\n(µm²/ms)") and actor.GetLabelFormat() == legends.label_format(*ticks)
    assert actor.GetTitle().endswith(f"top colour:\n\u2265 {(actor.GetLabelFormat() % ticks[0]).strip()}")  # rim above
    other = legends.legend_node(rendering.scene, rendering.nodes["uncertainties"]["direction"])
    assert other.GetVisibility() and not dm.GetColorLegendActor(other).GetVisibility()  # its map is not shown
    low, high = actor.GetLookupTable().GetTableRange()
    labels = [actor.GetLabelFormat() % v for v in np.linspace(low, high, legend.GetNumberOfLabels())]
    assert len(set(labels)) == len(labels) and float(labels[-1]) > 0  # distinct, non-zero values
    x0, y0, x1, y1 = rendering.legend_boxes[RIGHT]
    box = rendering.images[RIGHT][y0:y1, x0:x1]
    text = (box.min(axis=-1) > 180).sum()  # near-white label and title pixels
    assert text > 200, f"only {text} text pixels in the legend"


def test_legend_leaves_the_brain_free(rendering):
    """The legend (title and labels included) sits in the strip kept free on the right, not over the brain's edge,
    where the uncertainty is highest."""
    legend = legends.legend_node(rendering.scene, rendering.nodes["uncertainty"])
    drawn = render.legend_pixels(rendering.views[RIGHT], legend)
    brain = support_at_pixels(rendering, RIGHT)
    assert drawn.sum() > 200 and brain.sum() > 1000 and not (brain & drawn).any(), "the legend covers brain pixels"


def _legend_text_rows(rendering, legend) -> int:
    """Height in pixel rows of the tallest run of text rows in the lower half of `legend`'s box in the right view (one
    label line: the title's lines above, e.g. "top colour:" over "≥ 0.20", can touch and read as one)."""
    x0, y0, x1, y1 = render.legend_box(rendering.views[RIGHT], legend)
    rows = (rendering.images[RIGHT][(y0 + y1) // 2:y1, x0:x1].min(axis=-1) > 180).any(axis=1)
    runs, n = [], 0
    for r in rows:
        n = n + 1 if r else 0
        runs.append(n)
    return max(runs)


def test_every_map_has_a_legend_of_the_same_text_size(rendering):
    """Each uncertainty map as the overlay: its legend's text is as tall as the std's (the direction legend's title
    had covered half the view, the std's labels been 7 pixels high)."""
    maps = rendering.nodes["uncertainties"]
    heights = {}
    try:
        for key, node in maps.items():
            display.show_layers(rendering.scene, rendering.nodes["tensor"], node, render.OPACITY, views=(RIGHT,))
            legend = legends.legend_node(rendering.scene, node)
            legend.Modified()
            rendering.images[RIGHT] = render._grab(rendering.views[RIGHT])
            heights[key] = _legend_text_rows(rendering, legend)
    finally:
        display.show_layers(rendering.scene, rendering.nodes["tensor"], rendering.nodes["uncertainty"], render.OPACITY,
                            views=(RIGHT,))
        legends.legend_node(rendering.scene, rendering.nodes["uncertainty"]).Modified()
        rendering.images[RIGHT] = render._grab(rendering.views[RIGHT])
    assert heights["std"] >= 9, heights
    assert all(0.7 <= h / heights["std"] <= 1.4 for h in heights.values()), heights


@pytest.mark.slow
def test_a_short_view_keeps_its_legend_readable(rendering):
    """Views made 700 x 180 (Compare in a short window): the legend, placed again on the resize alone as a live view
    resizes, keeps labels 6 or more pixel rows tall and a 9 px title, whole, clear of the orientation marker and of the
    brain (Slicer's frame, half the view's height, left a 5 px title and labels no row of which reached white); back
    at the first size, Slicer's frame again."""
    scene, view = rendering.scene, rendering.views[RIGHT]
    legend = legends.legend_node(scene, rendering.nodes["uncertainty"])
    actor = view._displayable_manager_group.GetDisplayableManagerByClassName(
        "vtkMRMLColorLegendDisplayableManager").GetColorLegendActor(legend)
    try:
        for name in (LEFT, RIGHT):
            rendering.views[name].render_window().SetSize(700, 180)
            display.slice_node(scene, name).SetDimensions(700, 180, 1)
            s = display.slice_node(scene, name)
            display._fit_slice(s, rendering.nodes["tensor"], s.GetOrientation(), legend=True)
        rendering.images[RIGHT] = render._grab(view)
        rows, box = _legend_text_rows(rendering, legend), render.legend_box(view, legend)
        drawn = render.legend_pixels(view, legend)
        x0, y0, x1, y1 = render.marker_box(view, display.slice_node(scene, RIGHT), rendering.images[RIGHT])
        assert rows >= 6 and actor.GetTitleTextProperty().GetFontSize() >= 9, (rows, box, legend.GetSize())
        assert box[1] > 0 and not drawn[y0:y1, x0:x1].any(), (box, (x0, y0, x1, y1))  # its title whole, the marker free
        assert not (support_at_pixels(rendering, RIGHT) & drawn).any(), "the legend covers brain pixels"
    finally:
        with renders_held(rendering):
            for name in (LEFT, RIGHT):
                rendering.views[name].render_window().SetSize(*render.VIEW_SIZE)
                display.slice_node(scene, name).SetDimensions(render.VIEW_SIZE[0], render.VIEW_SIZE[1], 1)
            display.show_comparison(scene, rendering.nodes["interpolated"], rendering.nodes["tensor"],
                                    rendering.nodes["uncertainty"], render.OPACITY, marker=True)
        rendering.images[RIGHT] = render._grab(view)
    assert tuple(legend.GetSize()) == legends.SLICER_SIZE and legend.GetPosition()[1] == 0.5


@contextlib.contextmanager
def renders_held(rendering):
    """The views drawn once as the block ends, not on each of the scene's changes in it: trame-slicer's direct
    rendering (render.py's off-screen views) draws on every MRML event, 137 draws and 15 s of CPU in one layout test,
    as Slicer's own views, drawn on a timer, never do. The pictures checked are grabbed after the block."""
    with contextlib.ExitStack() as stack:
        for view in rendering.views.values():
            stack.enter_context(view.render_blocked())
        yield


@pytest.mark.parametrize("orientation", ["Coronal", "Sagittal"])
def test_results_layout_leaves_room_for_the_legend(rendering, orientation):
    """`show_results` (the module's layout after Apply) fits each view with the legend's strip free."""
    s = display.slice_node(rendering.scene, RIGHT)
    before = s.GetOrientation()
    try:
        with renders_held(rendering):
            s.SetOrientation(orientation)
            display.show_results(rendering.scene, rendering.nodes, render.OPACITY)
            legend = legends.legend_node(rendering.scene, rendering.nodes["uncertainty"])
            legend.Modified()
        rendering.images[RIGHT] = render._grab(rendering.views[RIGHT])
        drawn = render.legend_pixels(rendering.views[RIGHT], legend)
        brain = support_at_pixels(rendering, RIGHT)
        assert drawn.sum() > 200 and brain.sum() > 1000, orientation
        assert not (brain & drawn).any(), f"the legend covers brain pixels ({orientation})"
    finally:
        with renders_held(rendering):
            s.SetOrientation(before)
            display.show_comparison(rendering.scene, rendering.nodes["interpolated"], rendering.nodes["tensor"],
                                    rendering.nodes["uncertainty"], render.OPACITY, orientation=before)
        rendering.images[RIGHT] = render._grab(rendering.views[RIGHT])


def test_readme_picture(rendering, tmp_path):
    path = tmp_path / "compare.png"
    render.compose(rendering).save(path, optimize=True)
    from PIL import Image

    with Image.open(path) as im:
        assert im.size == (2 * render.VIEW_SIZE[0] + 4, render.VIEW_SIZE[1] + 28)
    assert path.stat().st_size < 300_000


def _each_legend_off_the_output(shown, nodes, where: str, dilate: int = 2) -> None:
    """Each uncertainty map of `nodes` as the right view's overlay: no pixel of its legend on the output's support
    (dilated by `dilate` voxels; `support_at_pixels`)."""
    view = shown.views[RIGHT]
    for key, node in nodes["uncertainties"].items():
        display.show_layers(shown.scene, nodes["tensor"], node, render.OPACITY, views=(RIGHT,))
        legend = legends.legend_node(shown.scene, node)
        legend.Modified()
        shown.images[RIGHT] = render._grab(view)
        drawn = render.legend_pixels(view, legend)
        output = support_at_pixels(shown, RIGHT, dilate=dilate)
        assert drawn is not None and drawn.sum() > 100 and output.sum() > 1000, (where, key)
        assert not (output & drawn).any(), f"the {key} legend covers {int((output & drawn).sum())} pixels ({where})"


@pytest.mark.slow
@pytest.mark.realdata
def test_a_tall_view_keeps_every_legend_off_the_brain(rendering):
    """Views twice as tall as wide (Compare in a narrow window), the head-turned sagittal subject (on the axial one the
    brain leaves the strip free anyway), both maps: no legend pixel on the brain (in 300 x 600 views the
    title lay on the frontal lobe). Run in the module's scene and views, without the cubic comparison."""
    from helpers import DEV, need_data

    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.dmri.subject import load_subject
    from ImageQualityTransferLib.slicer import mrml, processing

    subject = load_subject(need_data(DEV / "siemens_prisma_sag_2p7mm_hf"))
    pair = degrade.degrade(subject.dwi, subject.mask.data, 2)
    scene, view, s = rendering.scene, rendering.views[RIGHT], display.slice_node(rendering.scene, RIGHT)
    mask = Volume(np.asarray(pair.mask.data, np.uint8), pair.tensor.affine, "scalar")
    with renders_held(rendering):
        nodes = processing.run_on_nodes(scene, mrml.add_tensor_node(scene, pair.tensor, "hf"), "biqt", 2,
                                        mask_node=mrml.add_scalar_node(scene, mask, "hf_mask"))
    before = s.GetOrientation()
    tall = render.Rendering(dict(rendering.images), scene, nodes, rendering.views)
    try:
        view.render_window().SetSize(300, 600)
        s.SetDimensions(300, 600, 1)
        for orientation in ("Axial", "Coronal"):  # where it was seen: the frontal lobe, the coronal brain's top
            with renders_held(rendering):
                s.SetOrientation(orientation)
                display.show_results(scene, nodes, render.OPACITY)
            _each_legend_off_the_output(tall, nodes, f"{orientation}, 300 x 600")
    finally:
        with renders_held(rendering):
            view.render_window().SetSize(*render.VIEW_SIZE)
            s.SetDimensions(render.VIEW_SIZE[0], render.VIEW_SIZE[1], 1)
            s.SetOrientation(before)
            display.show_results(scene, rendering.nodes, render.OPACITY)
            display.show_comparison(scene, rendering.nodes["interpolated"], rendering.nodes["tensor"],
                                    rendering.nodes["uncertainty"], render.OPACITY, orientation=before, marker=True)
            legends.legend_node(scene, rendering.nodes["uncertainty"]).Modified()
        rendering.images[RIGHT] = render._grab(view)


@pytest.mark.slow
@pytest.mark.realdata
def test_an_output_over_the_whole_field_is_not_under_the_legend(rendering, axial_subject):
    """Tensors fitted without a mask and run without one fill the view with the estimated brain and its rim: the legend
    (a fifth of the width kept free, where it takes a quarter) lay on its right edge (a display audit, 20 pixels).
    Run in the module's scene and views, as the module lays them out after Apply."""
    from ImageQualityTransferLib.slicer import mrml, processing

    pair = degrade.degrade(axial_subject.dwi, axial_subject.mask.data, 2, style="unmasked")
    scene, view = rendering.scene, rendering.views[RIGHT]
    with renders_held(rendering):
        nodes = processing.run_on_nodes(scene, mrml.add_tensor_node(scene, pair.tensor, "unmasked"), "deep-hetero-var1",
                                        2, samples=2)  # its maps' extent is checked, not their values: 2 draws, not 10
    whole = render.Rendering(dict(rendering.images), scene, nodes, rendering.views)
    try:
        with renders_held(rendering):
            display.show_results(scene, nodes, render.OPACITY)
        _each_legend_off_the_output(whole, nodes, "the whole field", dilate=-1)  # its voxels but the outermost
    finally:
        with renders_held(rendering):
            display.show_results(scene, rendering.nodes, render.OPACITY)
            display.show_comparison(scene, rendering.nodes["interpolated"], rendering.nodes["tensor"],
                                    rendering.nodes["uncertainty"], render.OPACITY, marker=True)
            legends.legend_node(scene, rendering.nodes["uncertainty"]).Modified()
        rendering.images[RIGHT] = render._grab(view)


def test_render_refuses_an_output_that_is_not_a_picture_before_any_work(tmp_path, capsys):
    """A folder or a name without a picture suffix is one line and exit 2 before the run (PIL's traceback
    after the whole run)."""
    for out in (tmp_path, tmp_path / "picture"):
        assert render.main([str(tmp_path / "no-subject"), str(out)]) == 2
        assert "give a picture file ending in .png" in capsys.readouterr().err


def test_a_run_without_uncertainty_shows_no_earlier_legend(rendering):
    """After biqt's run, a run of an interpolator (no map) shown in the same views leaves no legend drawn: biqt's
    stayed over the cubic result in `iqt view`. Last in this file: it changes the shared scene."""
    from ImageQualityTransferLib.slicer import processing

    scene = rendering.scene
    legend = legends.legend_of(rendering.nodes["uncertainty"])
    manager = rendering.views[RIGHT]._displayable_manager_group.GetDisplayableManagerByClassName(
        "vtkMRMLColorLegendDisplayableManager")
    assert manager.GetColorLegendActor(legend).GetVisibility()  # shown with its map
    plain = processing.run_on_nodes(scene, scene.GetFirstNodeByName("dti"), "linear", 2, interpolate=True)
    display.show_results(scene, plain, 0.5)
    display.show_comparison(scene, plain["interpolated"], plain["tensor"], None, 0.5, marker=True)
    legends.style_results(scene, plain)
    render._grab(rendering.views[RIGHT])
    actor = manager.GetColorLegendActor(legend)
    assert actor is None or not actor.GetVisibility()


def test_a_place_the_picture_cannot_go_and_tta_of_an_interpolator_are_refused_before_any_work(tmp_path, capsys):
    """A file where the picture's folder goes had ended 11 s of work in a traceback, and `--method cubic --tta` was
    captioned 'cubic+tta' for a run that averaged nothing (a Slicer audit): one line each, exit 2, nothing read.
    The subject folder does not exist: a refusal before any work never reaches it."""
    (tmp_path / "a_file").write_text("x")
    subject = str(tmp_path / "no_subject")
    assert render.main([subject, str(tmp_path / "a_file" / "x.png"), "--method", "cubic"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("render: ") and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1, err
    assert render.main([subject, str(tmp_path / "x.png"), "--method", "cubic", "--tta"]) == 2
    err = capsys.readouterr().err
    assert "unchanged by flips and swaps" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("style, subject, said", [
    ("bogus", "", "--style bogus: choose one of own, tight, unmasked"),
    ("unmasked", "missing", "no such folder"),
    ("tight", "empty", "no dwi.nii.gz"),
])
def test_a_bad_style_or_subject_is_refused_before_the_offscreen_probe(tmp_path, monkeypatch, capsys, style, subject, said):
    """`--style` degrade does not know, and a folder without a subject, had been refused only after trame's import and
    the off-screen probe (8-13 s on a loaded 2-core machine, a Slicer-picture audit): one line, exit 2, neither run."""
    monkeypatch.setattr(render, "_app_importable", lambda: pytest.fail("trame was imported first"))
    monkeypatch.setattr(offscreen, "check_offscreen_opengl", lambda *a, **k: pytest.fail("the probe ran first"))
    folder = tmp_path / subject if subject else tmp_path
    if subject == "empty":
        folder.mkdir()
    out = tmp_path / "pics" / "x.png"
    assert render.main([str(folder), str(out), "--method", "cubic", "--style", style]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("render: ") and said in err[0], err
    assert not out.exists()


def test_snr_is_checked_before_any_work_and_noises_the_low_res_dwis(tmp_path, monkeypatch, capsys):
    """A noisy scan's picture: noise added to a subject's own DWIs is mostly averaged away by the degradation (b0 SNR 5
    on the 3 mm ortho dev scan read 0.080 by the noise index at x2, biqt's σ scaled x1.01), so `--snr` puts `iqt degrade
    --snr`'s noise on the low-res DWIs; a value that is no finite number from 0.01 up is one line, exit 2, before the
    probe (1e-40 and 5e-324 had passed and ended in a traceback)."""
    monkeypatch.setattr(render, "_app_importable", lambda: pytest.fail("trame was imported first"))
    for name in ("dwi.nii.gz", "dwi.bval", "dwi.bvec"):
        (tmp_path / name).write_text("")
    for bad in ("abc", "0", "-5", "inf", "5e-324"):
        assert render.main([str(tmp_path), str(tmp_path / "x.png"), "--method", "cubic", "--snr", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0] == f"render: --snr {bad}: give the b0 SNR of the added noise (the brain's " \
            "median b0 over the noise's standard deviation; clinical scans about 10-40), a finite number from 0.01 " \
            "up, e.g. 20", err
    monkeypatch.setattr(render, "_app_importable", lambda: None)
    monkeypatch.setattr(offscreen, "check_offscreen_opengl", lambda *a, **k: None)
    seen, real = {}, render.degraded_subject

    def degraded(folder, f, style, snr=None):
        seen["snr"] = snr
        raise render.IQTError("stop here")

    monkeypatch.setattr(render, "degraded_subject", degraded)
    assert render.main([str(tmp_path), str(tmp_path / "x.png"), "--method", "cubic", "--snr", "5"]) == 2
    assert seen == {"snr": 5.0}
    noise = {}  # and degraded_subject hands degrade that SNR's seeded Rician noise
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri import dti, subject

    monkeypatch.setattr(subject, "dwi_path", lambda p: p)
    monkeypatch.setattr(fileio, "load_dwi", lambda p: None)
    monkeypatch.setattr(dti, "brain_mask", lambda d: None)
    monkeypatch.setattr(degrade, "degrade", lambda *a, **k: noise.update(k) or pytest.fail("stop here"))
    with pytest.raises(pytest.fail.Exception):
        real(tmp_path, 2, "own", 5.0)
    lr = np.full((4, 4, 4, 3), 100.0, np.float32)
    noisy = noise["noise"](lr, np.ones((4, 4, 4), bool))
    assert 15 < noisy.std() < 25 and np.array_equal(noisy, noise["noise"](lr, np.ones((4, 4, 4), bool)))  # seeded


def test_a_very_low_snr_is_warned_of_as_iqt_degrade_warns(tmp_path, monkeypatch, capsys):
    """`iqt degrade --snr 0.01` says the fits are mostly noise below b0 SNR 5; `render --snr 0.01` had drawn its picture
    without a word (a review): the same line, before the run; none at 5."""
    from ImageQualityTransferLib.apps.cli import options
    from ImageQualityTransferLib.core.errors import IQTWarning

    def stop(*a, **k):
        raise render.IQTError("stop here")

    monkeypatch.setattr(render, "_app_importable", lambda: None)
    monkeypatch.setattr(offscreen, "check_offscreen_opengl", lambda *a, **k: None)
    monkeypatch.setattr(render, "degraded_subject", stop)
    for name in ("dwi.nii.gz", "dwi.bval", "dwi.bvec"):
        (tmp_path / name).write_text("")
    for value in ("0.01", "5"):
        assert render.main([str(tmp_path), str(tmp_path / "x.png"), "--method", "cubic", "--snr", value]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        if value == "5":
            assert err == ["render: stop here"], err
            continue
        with pytest.warns(IQTWarning) as said:
            options.snr(value)
        assert err == [f"render: warning: {said[0].message}", "render: stop here"], err
        assert "below 5 the noise is as large as most diffusion-weighted signal" in err[0], err
