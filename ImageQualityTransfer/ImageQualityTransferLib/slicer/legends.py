"""The uncertainty maps' colours and legends, Qt-free: the Inferno table, each map's range and round ticks, its legend's
title, unit and clipped-top note, and one colour scale per map across runs. Works on any vtkMRMLScene (display.py
puts the maps in the slice views)."""

from __future__ import annotations

import numpy as np

from ..core.direction import SHOWN_TOP_DEGREES
from ..dmri.dti import ESTIMATED_SUPPORT, SCALE_MIN_VOXELS, inside_rim, unflagged
from . import mrml
from .clean_levels import clean_level

COLORMAP = "Inferno"
LEGEND_CLASS = "vtkMRMLColorLegendDisplayNode"

# Legend title per uncertainty map, two lines each (the bar's length follows the title's), with the unit
# its node holds (`mrml.NODE_UNITS`): diffusivities in µm²/ms (= 10⁻³ mm²/s, how clinicians read them; Slicer's fonts
# lack the superscript minus that "×10⁻³" needs), FA's spread unitless, the direction's in degrees. Labels are
# round ticks (`scale_ticks`), fixed-point and at most 5 characters: the legend's text is fitted to its box, so equal
# widths give every map the same text size.
LEGENDS = {
    "std": "Tensor SD (µm²/ms)",
    "std_intrinsic": "Intrinsic SD (µm²/ms)",
    "std_parameter": "Parameter SD (µm²/ms)",
    "md_std": "MD SD (µm²/ms)",
    "fa_std": "FA SD (unitless)",
    "direction": "Direction SD (degrees)",
}
DEFAULT_LEGEND = "Uncertainty"
SHARED_NOTE = "shared scale"  # the legend's last line while "Same colour scale" is on
TITLE_ATTRIBUTE = "ImageQualityTransfer.Title"  # a legend's own title, kept to add or drop SHARED_NOTE
CLIPPED_NOTE = "top colour: \u2265 {top}"  # the legend's last line where the map reaches above its scale's top
CLIPPED_ATTRIBUTE = "ImageQualityTransfer.Clipped"  # that line as set_scale found it for the map's top, or ""
# Colours only from the map's median over the input's brain up (the more uncertain half of it; below it the tensor
# shows through): at 50 % opacity the map's dark low end had hidden the anatomy everywhere (a clinician's audit), and
# Slicer's slice views ignore a colour table's alpha, so a fading Inferno cannot do this. Read inside the brain only
# (where `display_range` reads the scale), the floor coloured 67-83 % of the brain (a README audit); over the whole
# result, the margin beyond the brain included, 35 % (a display audit): `input_support`. The legend says from where;
# with the shared scale one floor per map, the lowest of the runs' (one colour, one value, coloured or not).
MEDIAN_ATTRIBUTE = mrml.MEDIAN_ATTRIBUTE  # on the map node: its median over its input's brain (`_median`)
FROM_MEDIAN_ATTRIBUTE = "ImageQualityTransfer.FromMedian"  # on the map node: "1" while coloured from its median only
# A shipped model's map is coloured from that model's clean level where it is the lower (slicer/clean_levels.py: its
# map's median on clean training inputs; `_floor_of`): from its own median, a noisy scan's map (×2 espcn-hetero at b0
# SNR 5: median 1.87 times the clean one's) had coloured the same half of the brain as a clean one's and left its
# interior uncoloured, as confident as a clean scan (docs/measurements.md, "Slicer: a clean level").
# A user's model has no clean level: its map keeps its own median, and the legend's line says which. One line each:
# a second line had made the legend taller and its text smaller (Testing/slicer/test_render.py).
# The direction map keeps its own median: the noise-trained twin's reads low ("may read low"), and from the lower of
# the two a noisy scan's direction map had coloured less of the brain than the clean one's (biqt ×3 on the 3 mm yaw dev
# scan: 0.567 clean, 0.500 at b0 SNR 5; Testing/slicer/test_clean_levels.py).
FLOOR_NOTE = "\u2265 median {floor}"  # the legend's line while coloured from its own median
# ... from its model's clean level, worded as the threshold it is ("≥ clean 0.12" could be read as a verdict on the
# scan, "from clean-scan level" under "noisy input" as one phrase); on two lines, as one the legend's title had widened
# over a whole-field output (Testing/slicer/test_render.py)
CLEAN_NOTE = "\u2265 clean-scan\nlevel {floor}"
# ... from neither: a noisy input's scaled map from its median over its noise factor, or a shared scale's floor taken
# from another run's map; "≥ median 0.12" had stood under a map whose median was 0.189 (`floor_word`)
SHOWN_NOTE = "shown \u2265 {floor}"
FLOOR_ATTRIBUTE = "ImageQualityTransfer.Floor"  # that line as set_scale wrote it, or ""
# A noisy input's maps (mrml.NOISE_ATTRIBUTE: sigma scaled by g for the noise, methods/base.py NOISY_STD_SCALE): coloured
# from the median over g, the median the map had before that scaling, and the legend says it under its title. From the
# map's own median and to its own top, a map scaled by g had looked exactly like the unscaled one, only the ticks
# relabelled: a clinician saw nothing of the whole scan being less certain (docs/measurements.md, "Slicer: a noisy
# input": on the 3 mm ortho dev scan at b0 SNR 5 biqt's map coloured 39 % of its voxels, the clean scan's 61 %).
NOISE_NOTE = "noisy input"  # the legend's line for a noisy input whose map was not scaled (g = 1)
# and the direction map's (drawn from the scaled SD, never scaled itself): at b0 SNR 5 it holds the direction error within
# twice its value in fewer voxels than the 98 % a calibrated map does (docs/accuracy.md, "Direction map on noisy
# inputs"), while "noisy input" alone under a title reading "SD" had let it pass for calibrated (a review)
DIRECTION_NOISE_NOTE = "noisy input: may read low"
NOISE_SCALE_NOTE = "noisy input: SD ×{scale}"  # and for one scaled, with its factor (Slicer's legend font has no σ)
# An input above the clean threshold (NOISY_MODEL) but within the training inputs' range (up to NOISY_INPUT) is not
# called noisy (the Trio, a clean training scan at 0.080, had read "noisy input" in every style;
# mrml.NOISE_INDEX_ATTRIBUTE): its map's line says in plain words that the SD was raised for the input's noise, and only
# where the factor reads NOISE_SCALE_SHOWN or more. "SD ×1.01, index 0.080" had read as an FA or p value under the bar
# (a review), for a factor no colour shows; the index is no figure a clinician has a scale for.
NOISE_INDEX_NOTE = "SD ×{scale} for input noise"  # two title lines of at most TITLE_LINE characters
NOISE_SCALE_SHOWN = 1.05
LABEL_WIDTH = 5
# The legend's title is drawn over the bar, right-aligned to it: wrapped to short lines it stays within the strip of
# the view kept free on the right (`legend_room`) instead of reaching over the brain's edge.
TITLE_LINE = 12
LEGEND_ROOM = 0.3  # of a square view's width; a taller view needs more, as the legend's text grows with its height
LEGEND_ROOM_MAX = 0.35
# Slicer sizes a legend's frame as a share of its view (0.15 x 0.5) and fits its text into it: in a short view the text
# shrank to nothing (at 700 x 180 a 5 px title, and labels no row of which reached white). A view under 260 px tall gets
# a frame LEGEND_MIN_PX tall, as far as it fits between LEGEND_BOTTOM of the view's height (above the orientation
# marker, whose top is at 0.21 of it) and LEGEND_TOP (the title reaches above the frame, further the taller its labels:
# with 4 labels, 6 % of the height; measured at 160-250 px on the dev subject), `legend_frame`.
SLICER_SIZE = (0.15, 0.5)  # vtkMRMLColorLegendDisplayNode's default Size
LEGEND_MIN_PX = 130
LEGEND_BOTTOM = 0.22
LEGEND_TOP = {4: 0.80, 5: 0.835, 6: 0.87}  # by the number of labels (`set_scale`: 4 to 6)
NICE_STEPS = (1.0, 2.0, 5.0)  # tick steps, times a power of ten
TICK_INTERVALS = (3, 4, 5)


def legend_title(key: str) -> str:
    """The English title of uncertainty map `key`'s colour legend, with its unit."""
    return LEGENDS.get(key, DEFAULT_LEGEND)


def scale_ticks(high: float) -> tuple[float, int]:
    """(top, intervals) of a colour scale reaching at least `high` with round ticks (0, 0.1, 0.2, 0.3; 0, 20, ... 80):
    the smallest top that TICK_INTERVALS steps of 1, 2 or 5 times a power of ten make; the 99th percentile's own
    quarters are not round (0.30 / 0.23 / 0.15 / 0.08 on one map)."""
    if not np.isfinite(high) or high <= 0:
        return 1.0, 4
    best = None
    for n in TICK_INTERVALS:
        raw = high / n
        power = 10.0 ** np.floor(np.log10(raw))
        step = next(m * power for m in (*NICE_STEPS, 10.0) if m * power >= raw * (1 - 1e-9))
        if best is None or n * step < best[0] * (1 - 1e-9):
            best = (n * step, n)
    return float(best[0]), int(best[1])


def label_format(top: float, intervals: int = 4) -> str:
    """printf format of the ticks of a scale from 0 to `top` in `intervals` steps: fixed-point with the step's decimals,
    at most LABEL_WIDTH characters wide (0.10, 0.005, 80)."""
    if not np.isfinite(top) or top <= 0:
        return f"%{LABEL_WIDTH}.0f"
    step = top / intervals
    decimals = int(np.clip(-np.floor(np.log10(step) + 1e-9), 0, LABEL_WIDTH - 2))
    return f"%{LABEL_WIDTH}.{decimals}f"


def legend_room(width: float, height: float) -> float:
    """The share of a view's width kept free on the right for the legend: LEGEND_ROOM in a square view, more in a tall
    one, whose legend text is larger (a 300 x 600 view's legend is 73-88 px wide, against a 60 px strip), less in one
    over 1.5 times as wide as tall, where the legend, sized by the height, takes a smaller share (a 1000 x 220 view's
    is 66 px wide). The legend takes 25-27 % of a square or 3:2 view's width: 20 % had let it cover the edge of an
    output over the whole field (a display audit)."""
    aspect = height / width if width > 0 and height > 0 else 1.0
    return float(min(LEGEND_ROOM_MAX, LEGEND_ROOM * max(1.0, aspect) ** 0.5 * min(1.0, 1.5 * aspect)))


def legend_frame(height: float, labels: int = 6) -> tuple[float, float]:
    """(height share, vertical position) of the legend node's frame in a view `height` px tall, with `labels` labels, as
    vtkMRMLColorLegendDisplayNode's Size[1] and Position[1]: Slicer's (0.5, 0.5) from 260 px tall up."""
    if not height > 0 or LEGEND_MIN_PX / height <= SLICER_SIZE[1]:
        return SLICER_SIZE[1], 0.5
    top = LEGEND_TOP[min(max(labels, min(LEGEND_TOP)), max(LEGEND_TOP))]
    share = max(SLICER_SIZE[1], min(top - LEGEND_BOTTOM, LEGEND_MIN_PX / height))
    bottom = min(top - share, max(LEGEND_BOTTOM, 0.5 * (1 - share)))  # centred where that is clear of both
    return share, bottom / (1 - share)


# ---------------------------------------------------------------- colours and legends


def colormap_id(scene, name: str = COLORMAP) -> str | None:
    """Id of the colour node `name`; where the scene lacks it (a bare slicer-core scene has no colour files) an
    equivalent table is made once from matplotlib when that is installed, else Slicer's grey or nothing."""
    node = scene.GetFirstNodeByName(name)
    if node is not None and node.IsA("vtkMRMLColorNode"):
        return node.GetID()
    try:
        from matplotlib import colormaps
    except ImportError:
        return mrml._find_color_node_id(scene, None)
    import slicer

    cmap = colormaps[name.lower()]
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(name)
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    table.SetHideFromEditors(False)
    for i, (r, g, b, a) in enumerate(cmap(np.linspace(0.0, 1.0, 256))):
        table.SetColor(i, f"{i}", float(r), float(g), float(b), float(a))
    scene.AddNode(table)
    return table.GetID()


def display_range(node, region: np.ndarray | None = None) -> tuple[float, float]:
    """Colour range of an uncertainty map: 0 to the 99th percentile of its non-zero values in `region` (default:
    `dmri.dti.inside_rim` of the map, for every support), so that the brain's edge does not set the scale, its flagged
    voxels left out (`dmri.dti.unflagged`)."""
    vol = mrml.scalar_volume_from_node(node)
    data = vol.data
    present = np.isfinite(data) & (data > 0)
    if region is None:
        region = inside_rim(present, vol.voxel_size)
    if (present & region).sum() >= SCALE_MIN_VOXELS:
        present &= region
    values = unflagged(data[present])
    return (0.0, float(np.percentile(values, 99))) if values.size else (0.0, 1.0)


def wrap_title(text: str) -> str:
    """A legend title on lines of at most TITLE_LINE characters (longer words, and method names such as
    deep-hetero-var1, stay whole)."""
    import textwrap

    return "\n".join(textwrap.wrap(" ".join(text.split()), TITLE_LINE, break_long_words=False,
                                   break_on_hyphens=False)) or text


def legend_of(volume_node):
    """The colour legend display node of `volume_node`, or None."""
    for i in range(volume_node.GetNumberOfDisplayNodes()):
        d = volume_node.GetNthDisplayNode(i)
        if d is not None and d.IsA(LEGEND_CLASS):
            return d
    return None


def refresh_legends(scene) -> None:
    """Every colour legend looked at again by the legend manager, which trame-slicer's views otherwise check only when a
    legend node changes: a legend whose map is no longer a layer is hidden (else biqt's stays over a cubic run that has
    no map). Each is sized to the views that show its map, and again whenever one of them changes size
    (`place_legends`, `follow_view_sizes`)."""
    follow_view_sizes(scene)
    place_legends(scene)
    for i in range(scene.GetNumberOfNodesByClass(LEGEND_CLASS)):
        scene.GetNthNodeByClass(i, LEGEND_CLASS).Modified()


def _heights_showing(scene, node_id: str) -> list[float]:
    """The heights in pixels of the slice views with `node_id` as a layer, those shown in the layout where there are
    any (a view out of the layout keeps the size it last had)."""
    shown, hidden = [], []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        c = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        if node_id not in (c.GetBackgroundVolumeID(), c.GetForegroundVolumeID(), c.GetLabelVolumeID()):
            continue
        for j in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
            s = scene.GetNthNodeByClass(j, "vtkMRMLSliceNode")
            if s.GetLayoutName() == c.GetLayoutName() and s.GetDimensions()[1] > 0:
                (shown if s.IsViewVisibleInLayout() else hidden).append(float(s.GetDimensions()[1]))
    return shown or hidden


def place_legends(scene) -> None:
    """Each legend's frame as `legend_frame` gives for the shortest view that shows its map (one legend node serves
    every view); a node already so placed is left unmodified."""
    for i in range(scene.GetNumberOfNodesByClass(LEGEND_CLASS)):
        legend = scene.GetNthNodeByClass(i, LEGEND_CLASS)
        node = legend.GetDisplayableNode()
        heights = _heights_showing(scene, node.GetID()) if node is not None and node.GetID() else []
        if not heights:
            continue
        share, position = legend_frame(min(heights), legend.GetNumberOfLabels())
        size, place = legend.GetSize(), legend.GetPosition()
        if (size[1], place[1]) != (share, position):
            legend.SetSize(size[0], share)
            legend.SetPosition(place[0], position)


_sized: dict = {}  # slice node (its address: IDs repeat across scenes) -> (the node, observer tag, its dimensions)


def follow_view_sizes(scene) -> None:
    """`place_legends` again whenever a slice view changes size (a window resized, a layout changed, a banner come or
    gone; in Slicer and in trame-slicer the slice node takes the view's size), for the views of `scene`, and every
    legend redrawn: the legend's frame is a share of the view's height, fitted once, so a view made short kept a frame
    too small for its text. Keyed by node, not ID:
    every scene's Red view is "vtkMRMLSliceNodeRed", and a second scene's had taken the first one's observer."""
    for key in [k for k, (node, _, _) in _sized.items() if node.GetScene() is None]:  # a scene let go: so are its views
        node, tag, _ = _sized.pop(key)
        node.RemoveObserver(tag)
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        s = scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
        if s.__this__ not in _sized:
            _sized[s.__this__] = (s, s.AddObserver("ModifiedEvent", _view_resized), tuple(s.GetDimensions()))


def _view_resized(s, _event) -> None:
    known = _sized.get(s.__this__)
    if known is None or known[2] == tuple(s.GetDimensions()):
        return
    _sized[s.__this__] = (known[0], known[1], tuple(s.GetDimensions()))
    scene = s.GetScene()
    if scene is not None:
        place_legends(scene)
        # Slicer's legend actor fits its text afresh only when its node changes: a view resized without that (a banner
        # come in `iqt view`) kept text fitted to the old size, a few pixels high (Testing/apps/test_view.py)
        for i in range(scene.GetNumberOfNodesByClass(LEGEND_CLASS)):
            scene.GetNthNodeByClass(i, LEGEND_CLASS).Modified()


def legend_node(scene, volume_node):
    """The colour legend of `volume_node`, created once and reused (one per volume, whatever the number of runs)."""
    found = legend_of(volume_node)
    if found is not None:
        return found
    if not scene.IsNodeClassRegistered(LEGEND_CLASS):
        import slicer

        scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
    legend = scene.AddNewNodeByClass(LEGEND_CLASS, f"{volume_node.GetName()} legend")
    legend.SetAndObservePrimaryDisplayNode(volume_node.GetDisplayNode())
    volume_node.AddAndObserveDisplayNodeID(legend.GetID())
    return legend


def style_uncertainty(scene, node, key: str = "std", title: str | None = None, visible: bool = True,
                      region: np.ndarray | None = None, clipped_note: str = CLIPPED_NOTE, from_median: bool = True,
                      floor_note: str = FLOOR_NOTE, inner: np.ndarray | None = None,
                      noise_notes: tuple[str, ...] = (NOISE_NOTE, NOISE_SCALE_NOTE, NOISE_INDEX_NOTE,
                                                      DIRECTION_NOISE_NOTE), clean_note: str = CLEAN_NOTE,
                      shown_note: str = SHOWN_NOTE):
    """Inferno colours from 0 to the map's own top (`own_top`), shown only from the map's median over its input's brain
    up with `from_median` (`_floor`), and a legend titled with the map's meaning and unit (`title` overrides the English default,
    for the module's translations; `region`: as `display_range`; `inner`: as `_median`), then a noisy input's line
    (`noise_notes`: unscaled, scaled, within, and the direction map's unscaled; `noise_line`), ending in `floor_note`
    (`clean_note` for a shipped model's map, `clean_floor`; `shown_note` for neither, `floor_word`) and `clipped_note`
    where they apply
    (`set_scale`); returns the legend node."""
    if node is None:
        return None
    display = node.GetDisplayNode()
    if display is None:
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
    color_id = colormap_id(scene)
    if color_id:
        display.SetAndObserveColorNodeID(color_id)
    legend = legend_node(scene, node)
    unscaled = noise_notes[3] if key == "direction" and len(noise_notes) > 3 else noise_notes[0]
    noisy = noise_line(node, unscaled, *noise_notes[1:3])
    legend.SetAttribute(TITLE_ATTRIBUTE, "\n".join([wrap_title(title or legend_title(key)), *([noisy] if noisy else [])]))
    legend.SetVisibility(bool(visible))
    node.RemoveAttribute(MEDIAN_ATTRIBUTE)  # a rerun refills the node: its median is read again (`_median`)
    _median(node, inner)
    node.SetAttribute(FROM_MEDIAN_ATTRIBUTE, "1" if from_median else "0")
    set_scale(node, own_top(node, key, region), clipped_note, floor_note, clean_note=clean_note, shown_note=shown_note)
    legend.SetTitleText(title_text(legend))
    return legend


def noise_scale(node) -> float | None:
    """The factor a noisy input's map was scaled by (mrml.NOISE_ATTRIBUTE; 1.0 where not scaled), or None for a clean
    input's (or a map of no run)."""
    try:
        value = float(node.GetAttribute(mrml.NOISE_ATTRIBUTE) or "nan")
    except ValueError:
        return None
    return value if np.isfinite(value) and value > 0 else None


def noise_line(node, unscaled: str = NOISE_NOTE, scaled: str = NOISE_SCALE_NOTE,
               within: str = NOISE_INDEX_NOTE) -> str:
    """The legend's line saying a map's input was noisy (`unscaled`), with the factor its sigma was scaled by
    (`scaled`, "noisy input: SD ×1.55"), wrapped as a title; "" for a clean input's map. An input whose noise index
    (mrml.NOISE_INDEX_ATTRIBUTE) is within the training inputs' (NOISY_INPUT) is not called noisy: `within` names its
    factor where it reads NOISE_SCALE_SHOWN or more, else no line."""
    from ..core.noise_level import NOISY_INPUT

    g = noise_scale(node)
    if g is None:
        return ""
    try:
        index = float(node.GetAttribute(mrml.NOISE_INDEX_ATTRIBUTE) or "nan")
    except ValueError:
        index = float("nan")
    shown = f"{g:.2f}"
    if index <= NOISY_INPUT:  # (a node without the index, of an older run, keeps the words)
        return "" if float(shown) < NOISE_SCALE_SHOWN else wrap_title(within.format(scale=shown, index=f"{index:.3f}"))
    return wrap_title(unscaled if shown == "1.00" else scaled.format(scale=shown))


def title_text(legend, lines=()) -> str:
    """A legend's title: its own (TITLE_ATTRIBUTE), then `lines` (a run's name, the shared-scale note), then the
    lines `set_scale` left (`title_tail`), right above the bar's top label."""
    tail = title_tail(legend)
    return "\n".join([legend.GetAttribute(TITLE_ATTRIBUTE) or "", *lines, *([tail] if tail else [])])


def title_tail(legend) -> str:
    """The last lines of a legend's title, as `set_scale` left them: from where the map is shown (FLOOR_ATTRIBUTE), then
    the clipped top (CLIPPED_ATTRIBUTE)."""
    return "\n".join(x for x in (legend.GetAttribute(FLOOR_ATTRIBUTE), legend.GetAttribute(CLIPPED_ATTRIBUTE)) if x)


def own_top(node, key: str, region: np.ndarray | None = None) -> float:
    """The top of map `key`'s own colour scale: the direction map's is fixed (core.direction.SHOWN_TOP_DEGREES, a
    random axis at the top), every other's is read from its values (`display_range`). Not the clean level's top
    (clean_levels.json "top"): biqt's clean 99th percentile, 1.15 µm²/ms, rounded to a 1.5 top, had put a noisy
    dev scan's map, coloured all over, in the bar's dark third (its own top: 0.8)."""
    return SHOWN_TOP_DEGREES if key == "direction" else display_range(node, region)[1]


def _clean(node) -> tuple[float, float] | None:
    """(median, top) of the map's shipped model on clean training inputs (`clean_levels.clean_level`) at its input's
    tensor scale, never raised for an input read noisy (`noise_scale`), or None."""
    return clean_level(node.GetAttribute(mrml.MODEL_ATTRIBUTE), node.GetAttribute(mrml.MAP_ATTRIBUTE) or "",
                       node.GetAttribute(mrml.TENSOR_SCALE_ATTRIBUTE), noise_scale(node) is not None)


def clean_floor(node) -> float | None:
    """The clean level of a shipped model's map (CLEAN_NOTE; `_floor_of`), or None for a map of no such model."""
    clean = _clean(node)
    return None if clean is None else clean[0]


def set_scale(node, high: float, clipped_note: str = CLIPPED_NOTE, floor_note: str = FLOOR_NOTE,
              floor: float | None = None, clean_note: str = CLEAN_NOTE, shown_note: str = SHOWN_NOTE) -> None:
    """Colours of an uncertainty map from 0 to the round top above `high` (`scale_ticks`), its legend's ticks to
    match; zero (outside the brain, where no method answers) is left transparent so that the tensor shows through, and
    so is every value below the map's floor (`_floor_of`; or `floor`, a shared one) where FROM_MEDIAN_ATTRIBUTE says
    so, the legend's `clean_note`, `floor_note` or `shown_note` saying it, whichever is true of this map (`floor_word`).
    The direction map's colours start at a round value under its floor (`scale_low`), not at 0.
    Where the map reaches above the top, its legend keeps `clipped_note` with the top's label (CLIPPED_ATTRIBUTE, for
    `title_text`): the top colour also stands for values several times higher (a radiologist's audit: the brain's rim
    at 1.5-4.4 µm²/ms under a legend topped "0.4")."""
    shown = node.GetAttribute(FROM_MEDIAN_ATTRIBUTE) == "1"
    floor = (_floor_of(node) if floor is None else floor) if shown else None
    low = scale_low(floor, high) if node.GetAttribute(mrml.MAP_ATTRIBUTE) == "direction" else 0.0
    span, intervals = scale_ticks(high - low)
    high = low + span
    display = node.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(low, high)
    display.AutoThresholdOff()
    lowest = high * 1e-6 if high > 0 else 1e-12
    display.SetLowerThreshold(max(lowest, floor) if floor is not None else lowest)
    display.SetUpperThreshold(np.finfo(np.float32).max)
    display.ApplyThresholdOn()
    legend = legend_of(node)
    if legend is not None:
        # one line, unwrapped: "shown ≥ 0.088" wrapped to two lengthened the title, and a tall view's legend then
        # reached the brain (Testing/slicer/test_render.py)
        note = None if floor is None else {"clean": clean_note, "median": floor_note}.get(floor_word(node, floor),
                                                                                           shown_note)
        legend.SetAttribute(FLOOR_ATTRIBUTE, "" if note is None else note.format(floor=floor_label(floor)))
        legend.SetLabelFormat(label_format(span, intervals))
        legend.SetNumberOfLabels(intervals + 1)
        if node.GetScene() is not None:
            place_legends(node.GetScene())  # the frame's top follows the number of labels (`legend_frame`)
        top = (label_format(span, intervals) % high).strip()
        image = node.GetImageData()  # VTK keeps the scalars' range: no second read of the map (display_range read it)
        above = image is not None and float(image.GetScalarRange()[1]) > high
        legend.SetAttribute(CLIPPED_ATTRIBUTE, wrap_title(clipped_note.format(top=top)) if above else "")


def floor_label(value: float) -> str:
    """The value a map is shown from, to two significant digits (0.12, 0.088, 35): a tick's format rounds 0.14 to 0.1,
    below values the map leaves uncoloured."""
    return np.format_float_positional(float(value), precision=2, unique=True, fractional=False, trim="-")


def scale_low(floor: float | None, high: float) -> float:
    """Where the direction map's colours start: the round ten (degrees) at or under its floor, so that the colours
    span the floor to the top (from 0, a floor at 44° of a 60° top left every coloured voxel in the bar's top quarter,
    about one colour); 0 without a floor."""
    if floor is None or not np.isfinite(floor) or not 0 < floor < high:
        return 0.0
    return float(min(np.floor(floor / 10.0) * 10.0, high - 10.0)) if high > 10.0 else 0.0


def _floor_of(node) -> float | None:
    """The value a map is coloured from: the lower of its model's clean level (`clean_floor`) and its median
    (`_median`) over the factor a noisy input's map was scaled by (`noise_scale`; the median the map had before, so the
    scaled map colours more of the brain, NOISE_NOTE). The clean level alone had coloured less of a noisy scan than the
    median did where the noise-trained model's map runs below the clean model's (biqt ×3 on the dev scans at b0 SNR 5:
    28-42 % of the brain against 94-97 %, docs/measurements.md). The direction map: its own median (SHOWN_NOTE)."""
    median = _median(node)
    own = None if median is None else median / (noise_scale(node) or 1.0)
    clean = None if node.GetAttribute(mrml.MAP_ATTRIBUTE) == "direction" else clean_floor(node)
    return own if clean is None or (own is not None and own < clean) else clean


def floor_word(node, floor: float) -> str:
    """Which note is true of `floor` on this map: "clean" where it is the map's clean level (`clean_floor`), "median"
    where it is its own median (`_median`), else "shown" (a scaled map's median over its factor, another run's floor)."""
    def same(value):
        return value is not None and bool(np.isclose(floor, value, rtol=1e-6, atol=0.0))

    return "clean" if same(clean_floor(node)) else "median" if same(_median(node)) else "shown"


def _median(node, inner: np.ndarray | None = None) -> float | None:
    """The map's median over the brain its input held (its finite non-zero values in `brain_of_map`; `inner`, where
    the caller has it for a run's maps), read once and kept on the node (MEDIAN_ATTRIBUTE); None for an empty map."""
    if node.GetAttribute(MEDIAN_ATTRIBUTE) is None:
        vol = mrml.scalar_volume_from_node(node)
        data = vol.data
        present = np.isfinite(data) & (data > 0)
        if inner is None or inner.shape != present.shape:
            inner = brain_of_map(node, present, vol.voxel_size)
        inner = inner & present
        values = data[inner if inner.sum() >= SCALE_MIN_VOXELS else present]
        node.SetAttribute(MEDIAN_ATTRIBUTE, repr(float(np.median(values))) if values.size else "")
    try:
        value = float(node.GetAttribute(MEDIAN_ATTRIBUTE) or "nan")
    except ValueError:
        return None
    return value if np.isfinite(value) and value > 0 else None


def brain_of_map(node, present: np.ndarray, voxel_size, rim: np.ndarray | None = None) -> np.ndarray:
    """The brain a map's median is read over: `input_support`, or for a run kept to a brain estimated from unmasked
    tensors (mrml.SUPPORT_ATTRIBUTE), `inside_rim` (`rim`, where the caller has it), as its scale is read: that support
    keeps a rim of scalp and background fits, which the floor had mostly coloured (a display audit, the 3 mm yaw dev
    scan fitted unmasked)."""
    if _estimated(node):
        inner = inside_rim(present, voxel_size) if rim is None else rim
        if (inner & present).sum() >= SCALE_MIN_VOXELS:  # a brain thinner than the rim (a slab): as a masked one's
            return inner
    return input_support(present, node.GetAttribute(mrml.FACTORS_ATTRIBUTE))


def _estimated(node) -> bool:
    return node.GetAttribute(mrml.SUPPORT_ATTRIBUTE) == ESTIMATED_SUPPORT


def input_support(present: np.ndarray, factors: str | None) -> np.ndarray:
    """The voxels of a result's support `present` without the one low-res voxel (`factors`, mrml.FACTORS_ATTRIBUTE)
    the methods fill beyond the input's brain: read over that margin too, a third of the 3 mm ortho dev scan's result, the
    median had coloured 35 % of the brain and put half the coloured voxels outside it (a display audit). Without
    factors, `present` itself."""
    from scipy import ndimage

    from ..core import grid

    if not factors:
        return present
    size = tuple(2 * int(k) + 1 for k in grid.factors(factors))
    # "nearest": a brain the field of view cuts has no margin beyond that border to leave out
    return ndimage.minimum_filter(present.astype(np.uint8), size=size, mode="nearest").astype(bool)


def from_median_differs(scene, from_median: bool) -> bool:
    """Whether a map of the scene is coloured otherwise than `from_median` says (a map styled by an earlier version
    has no FROM_MEDIAN_ATTRIBUTE: coloured from 0)."""
    want = "1" if from_median else "0"
    return any((n.GetAttribute(FROM_MEDIAN_ATTRIBUTE) or "0") != want for ns in map_nodes(scene).values() for n in ns)


def map_nodes(scene) -> dict[str, list]:
    """Every uncertainty map node of the scene (`mrml.MAP_ATTRIBUTE`), by map: {"std": [node, ...], ...}."""
    out: dict[str, list] = {}
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        key = node.GetAttribute(mrml.MAP_ATTRIBUTE)
        if key and node.GetDisplayNode() is not None:
            out.setdefault(key, []).append(node)
    return out


def share_scales(scene, shared: bool = True, note: str = SHARED_NOTE, clipped_note: str = CLIPPED_NOTE,
                 floor_note: str = FLOOR_NOTE, from_median: bool | None = None,
                 clean_note: str = CLEAN_NOTE, shown_note: str = SHOWN_NOTE) -> dict[str, float]:
    """With `shared`, every uncertainty map of the scene coloured on one scale per map (0 to the highest of their own
    `display_range`s), so that one colour means one SD across runs and methods (each on its own range, two
    runs' different SDs can be the same yellow), each legend's title ending in its run (`mrml.RUN_ATTRIBUTE`: else
    two runs' legends read alike) and `note` (a map gone dark on another run's scale would look certain);
    without, each on its own range and title again. `from_median` (unless None): every map coloured only from its
    floor up, or from 0 again (`set_scale`); shared, from the lowest of its kind's maps' floors (`_floor_of`).
    Returns {map: the shared top} (empty without `shared`)."""
    tops = {}
    titled = []
    for key, nodes in map_nodes(scene).items():
        if from_median is not None:
            for node in nodes:
                node.SetAttribute(FROM_MEDIAN_ATTRIBUTE, "1" if from_median else "0")
        own = [own_top(node, key) for node in nodes]
        floor = None
        if shared:
            tops[key] = max(own)
            shown = [n for n in nodes if n.GetAttribute(FROM_MEDIAN_ATTRIBUTE) == "1"]  # floors only where used
            floors = [f for f in map(_floor_of, shown) if f is not None]
            floor = min(floors) if floors else None
        for node, high in zip(nodes, own):
            set_scale(node, tops.get(key, high), clipped_note, floor_note, floor, clean_note, shown_note)
            legend = legend_of(node)
            title = legend.GetAttribute(TITLE_ATTRIBUTE) if legend is not None else None
            if title:
                run = node.GetAttribute(mrml.RUN_ATTRIBUTE)
                titled.append((legend, title_text(legend, [*([wrap_title(run)] if run else []), note] if shared else [])))
    pad_titles(titled)
    return tops


def pad_titles(titled: list) -> None:
    """Each (legend, title) set with as many lines as the longest: the title's lines come out of the legend's height
    and set its text size, so equal line counts keep every bar as long and every label as large (a run's name on two
    lines had shortened its bar against another's, the same scale's top at another height; docs/slicer.md, Read the
    uncertainty overlay). The padding goes above the lines `set_scale` left (`title_tail`), which stay right above the
    bar."""
    lines = max((text.count("\n") for _, text in titled), default=0)
    for legend, text in titled:
        tail = title_tail(legend)
        body = text[: len(text) - len(tail) - 1] if tail and text.endswith("\n" + tail) else text
        pad = "\n\u00a0" * (lines - text.count("\n"))
        legend.SetTitleText(body + pad + ("\n" + tail if body != text else ""))


def style_results(scene, nodes: dict, titles: dict | None = None, clipped_note: str = CLIPPED_NOTE,
                  from_median: bool = True, floor_note: str = FLOOR_NOTE,
                  noise_notes: tuple[str, ...] = (NOISE_NOTE, NOISE_SCALE_NOTE, NOISE_INDEX_NOTE,
                                                  DIRECTION_NOISE_NOTE), clean_note: str = CLEAN_NOTE,
                  shown_note: str = SHOWN_NOTE) -> dict:
    """Every uncertainty map of a run styled (`style_uncertainty`), each with its legend; Slicer draws a legend only in
    the views that show its map, so picking another map as foreground brings its own legend. Returns {key: legend}."""
    titles = titles or {}
    maps = nodes.get("uncertainties") or {}
    region = inner = None  # the maps of a run share their support: its inner region and its input's brain found once
    first = next(iter(maps.values()), None)
    if first is not None:
        vol = mrml.scalar_volume_from_node(first)
        present = np.isfinite(vol.data) & (vol.data > 0)
        region = inside_rim(present, vol.voxel_size)
        inner = brain_of_map(first, present, vol.voxel_size, rim=region)
    legends = {key: style_uncertainty(scene, node, key, titles.get(key), region=region, clipped_note=clipped_note,
                                      from_median=from_median, floor_note=floor_note, inner=inner,
                                      noise_notes=noise_notes, clean_note=clean_note, shown_note=shown_note)
               for key, node in maps.items()}
    pad_titles([(legend, legend.GetTitleText()) for legend in legends.values() if legend is not None])
    return legends
