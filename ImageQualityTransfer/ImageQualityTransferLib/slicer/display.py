"""What the Slicer module shows in its slice views, Qt-free: the results' layers, the side-by-side comparison and the
tractography seeding hand-off (the maps' colours and legends: legends.py). Works on any vtkMRMLScene, the
application's or a bare `slicer-core` one, so that all of it is tested headless; the module's Logic adds only what
needs the application (layout manager, dialogs).
"""

from __future__ import annotations

import numpy as np

from ..core.errors import IQTError
from . import mrml
from .legends import (CLEAN_NOTE, CLIPPED_NOTE, DIRECTION_NOISE_NOTE, FLOOR_NOTE, NOISE_INDEX_NOTE, NOISE_NOTE, NOISE_SCALE_NOTE,
                      SHARED_NOTE, SHOWN_NOTE, legend_of, legend_room, refresh_legends, share_scales, style_results)

SEEDING_CLASS = "vtkMRMLTractographyInteractiveSeedingNode"  # from SlicerDMRI, registered only where it is installed
COMPARE_VIEWS = ("Red", "Yellow")  # the side-by-side layout's two slice views: interpolation | IQT


# ---------------------------------------------------------------- slice views


def _view_node(scene, view: str, cls: str):
    """The node of class `cls` that belongs to slice view `view` ("Red", "Yellow", ...), or None."""
    for i in range(scene.GetNumberOfNodesByClass(cls)):
        node = scene.GetNthNodeByClass(i, cls)
        if node.GetLayoutName() == view:
            return node
    return None


def composite_node(scene, view: str):
    return _view_node(scene, view, "vtkMRMLSliceCompositeNode")


def slice_node(scene, view: str):
    return _view_node(scene, view, "vtkMRMLSliceNode")


def _id(node):
    return node.GetID() if node is not None else None


def show_layers(scene, background, foreground=None, opacity: float = 0.5, views=None) -> list:
    """Background and foreground volumes of the slice views `views` (all of them by default); returns the
    composite nodes set."""
    disp = background.GetDisplayNode() if background is not None and background.IsA("vtkMRMLTensorVolumeNode") else None
    if disp is not None and not disp.GetColorNodeID():  # a DTI Slicer's reader loaded in trame-slicer: its FA had no table
        disp.SetAndObserveColorNodeID(mrml._grey_id(scene))
    out = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        c = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        if views is not None and c.GetLayoutName() not in views:
            continue
        c.SetBackgroundVolumeID(_id(background))
        c.SetForegroundVolumeID(_id(foreground))
        c.SetForegroundOpacity(float(opacity) if foreground is not None else 0.0)
        out.append(c)
    return out


def show_results(scene, nodes: dict, opacity: float = 0.5, titles: dict | None = None, shared: bool = False,
                 shared_note: str = SHARED_NOTE, clipped_note: str = CLIPPED_NOTE, from_median: bool = True,
                 floor_note: str = FLOOR_NOTE, shown_map: str | None = None, marker: bool = False,
                 noise_notes: tuple[str, ...] = (NOISE_NOTE, NOISE_SCALE_NOTE, NOISE_INDEX_NOTE,
                                                 DIRECTION_NOISE_NOTE), clean_note: str = CLEAN_NOTE,
                 shown_note: str = SHOWN_NOTE) -> None:
    """A run's results in every slice view: the IQT tensor as background, its main uncertainty map on top; each
    axial, coronal or sagittal view is fitted to the tensor with a strip on the right kept free for the legend (a
    plain fit puts the legend over the brain). `shared`: one colour scale per map across the scene's runs
    (`share_scales`, its legends ending in `shared_note`); `from_median`: each map coloured from its median up;
    `clipped_note`, `floor_note`, `clean_note`, `shown_note`: as `set_scale`, `noise_notes`: as `style_uncertainty`, translated; `shown_map`: the map on top (`overlay_of`); `marker`:
    `show_marker` in each view."""
    style_results(scene, nodes, titles, clipped_note, from_median, floor_note, noise_notes, clean_note, shown_note)
    if shared:
        share_scales(scene, note=shared_note, clipped_note=clipped_note, floor_note=floor_note, clean_note=clean_note,
                     shown_note=shown_note)
    tensor, overlay, interpolated = nodes.get("tensor"), overlay_of(nodes, shown_map), nodes.get("interpolated")
    legend_follows_opacity(overlay, opacity)
    if _comparing(scene):  # a run made in the side-by-side layout: both sides showed it, as if IQT were cubic
        if interpolated is not None and tensor is not None and interpolated is not tensor:
            show_comparison(scene, interpolated, tensor, overlay, opacity, marker=marker)
            return
        _leave_comparison(scene)
    kept = {view: _kept_view(scene, view, tensor) for view in _slice_views(scene)}
    offsets = {view: _readers_offset(scene, view) for view in _slice_views(scene)}
    for c in show_layers(scene, tensor, overlay, opacity):
        s = slice_node(scene, c.GetLayoutName())
        if tensor is not None and s is not None and s.GetOrientation() in PLANE_AXES and not kept.get(c.GetLayoutName()):
            _fit_slice(s, tensor, s.GetOrientation(), legend=overlay is not None)
            _keep_offset(s, tensor, offsets.get(c.GetLayoutName()))
        elif tensor is not None and s is not None and kept.get(c.GetLayoutName()):
            snap_to_voxel_plane(s, tensor)  # the reader's slice, on this run's grid (x2 and x3 outputs share an extent)
        if marker and s is not None:
            show_marker(s)
    refresh_legends(scene)


def overlay_of(nodes: dict, key: str | None = None):
    """A run's map `key` ("std", "direction", ...: the Display's Uncertainty map choice), else its main map."""
    return (nodes.get("uncertainties") or {}).get(key) or nodes.get("uncertainty")


def show_map(scene, nodes: dict, key: str, opacity: float):
    """A run's map `key` on top wherever one of its maps is shown, at `opacity`, with its own legend; returns that node
    (None where the run has no such map: nothing changes). Every map had been a step away, through the slice
    controller: the direction map, the one to read before tractography, too (a Slicer-module audit)."""
    maps = nodes.get("uncertainties") or {}
    node = maps.get(key)
    if node is None:
        return None
    ids = {n.GetID() for n in maps.values() if n is not None}
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        c = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        if c.GetForegroundVolumeID() in ids:
            c.SetForegroundVolumeID(node.GetID())
            c.SetForegroundOpacity(float(opacity))
    legend_follows_opacity(node, opacity)
    refresh_legends(scene)
    return node


COMPARE_ATTRIBUTE = "ImageQualityTransfer.LayoutBeforeComparison"  # on the layout node: the arrangement to go back to


def remember_layout(scene) -> None:
    """The reader's layout noted before the comparison replaces it (`show_comparison`, or the module's Logic before it
    asks the layout manager), for a later run that has nothing to compare (`_leave_comparison`)."""
    import slicer

    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layout is None:
        return
    if layout.GetViewArrangement() != slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView:
        layout.SetAttribute(COMPARE_ATTRIBUTE, str(layout.GetViewArrangement()))
    elif layout.GetAttribute(COMPARE_ATTRIBUTE) is None:
        layout.SetAttribute(COMPARE_ATTRIBUTE, "")


def _comparing(scene) -> bool:
    """Whether the side-by-side layout `show_comparison` set is still the one shown; a reader who has left it forgets
    the comparison (a side-by-side they set later is theirs)."""
    import slicer

    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layout is None or layout.GetAttribute(COMPARE_ATTRIBUTE) is None:
        return False
    if layout.GetViewArrangement() != slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView:
        layout.RemoveAttribute(COMPARE_ATTRIBUTE)
        return False
    return True


def _leave_comparison(scene) -> None:
    """The layout the reader had before the comparison, for a run that has no interpolation beside it."""
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    before = layout.GetAttribute(COMPARE_ATTRIBUTE)
    layout.RemoveAttribute(COMPARE_ATTRIBUTE)
    if before:
        layout.SetViewArrangement(int(before))


def _slice_views(scene) -> list[str]:
    return [scene.GetNthNodeByClass(i, "vtkMRMLSliceNode").GetLayoutName()
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))]


def _kept_view(scene, view: str, volume) -> bool:
    """Whether slice view `view` already shows a run's result (`mrml.FACTORS_ATTRIBUTE`) with `volume`'s extent, so
    that the slice and zoom the reader chose stay for the next run: a new fit each run took the reader from a finding
    back to the central slice (a clinician's audit). A view of the input, or one turned to another orientation since
    its fit, is fitted, its legend's strip kept free."""
    c, s = composite_node(scene, view), slice_node(scene, view)
    shown = scene.GetNodeByID(c.GetBackgroundVolumeID()) if c is not None and c.GetBackgroundVolumeID() else None
    if shown is None or volume is None or s is None or s.GetOrientation() not in PLANE_AXES \
            or not shown.GetAttribute(mrml.FACTORS_ATTRIBUTE) or s.GetAttribute(FITTED_ATTRIBUTE) != s.GetOrientation():
        return False
    a, b = data_bounds(shown), data_bounds(volume)  # an unmasked output after a masked one is fitted anew
    from ..core import grid

    # grids of other factors over one input: their data's edges a voxel of that input apart at most
    tolerance = max(max(np.multiply(n.GetSpacing(), grid.factors(n.GetAttribute(mrml.FACTORS_ATTRIBUTE) or 1,
                                                                 identity_ok=True))) for n in (shown, volume))
    return bool(np.all(np.abs(np.subtract(a, b)) <= tolerance))


def _readers_offset(scene, view: str):
    """The slice offset of view `view` where it shows a run's result in the orientation fitted there (the reader's
    slice, which a refit for another extent keeps: `_keep_offset`), else None."""
    c, s = composite_node(scene, view), slice_node(scene, view)
    shown = scene.GetNodeByID(c.GetBackgroundVolumeID()) if c is not None and c.GetBackgroundVolumeID() else None
    if shown is None or s is None or s.GetOrientation() not in PLANE_AXES \
            or not shown.GetAttribute(mrml.FACTORS_ATTRIBUTE) or s.GetAttribute(FITTED_ATTRIBUTE) != s.GetOrientation():
        return None
    return s.GetSliceOffset()


def _keep_offset(slice_node_, volume, offset) -> None:
    """The view, just fitted to `volume`, back on slice `offset` (None: left as fitted), moved inside `volume`'s data
    and onto its voxel planes: a masked run after an unmasked one, or the reverse, had been fitted anew and the
    reader's slice lost (a review's drv.py bounds2: 10.6 -> -4.4)."""
    if offset is None:
        return
    m = slice_node_.GetSliceToRAS()
    normal = np.array([m.GetElement(i, 2) for i in range(3)])
    origin = np.array([m.GetElement(i, 3) for i in range(3)])
    b = data_bounds(volume)
    corners = np.array([[x, y, z] for x in b[0:2] for y in b[2:4] for z in b[4:6]])
    along = corners @ normal - normal @ origin + slice_node_.GetSliceOffset()  # the data's extent in offsets
    half = np.abs(normal @ mrml.node_affine(volume)[:3, :3]).sum() / 2  # its outer voxels' centres: half a voxel in
    slice_node_.SetSliceOffset(float(np.clip(offset, along.min() + half, max(along.max() - half, along.min() + half))))
    snap_to_voxel_plane(slice_node_, volume)


def set_overlay_opacity(scene, opacity: float, overlays=None) -> None:
    """The overlay's opacity in each slice view whose foreground is one of `overlays` (a run's uncertainty map nodes;
    None: any foreground), leaving layers the reader set in other views alone. At 0 those maps' legends hide too, or a
    legend would stay on screen for a map no longer seen."""
    ids = None if overlays is None else {n.GetID() for n in overlays if n is not None}
    shown = set()
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        c = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        fg = c.GetForegroundVolumeID()
        if fg and (ids is None or fg in ids):
            c.SetForegroundOpacity(float(opacity))
            shown.add(fg)
    for node in filter(None, map(scene.GetNodeByID, shown)):
        legend_follows_opacity(node, opacity)


PLANE_AXES = {"Axial": (0, 1), "Coronal": (0, 2), "Sagittal": (1, 2)}  # RAS axes across and up each view


def compare_orientation(thick: str | None) -> str:
    """The slice orientation that shows a refinement along world axis `thick` ("R", "A", "S" or None for
    isotropic factors, `orientation.slice_axis`): coronal for thick axial slices, axial otherwise."""
    return "Coronal" if thick == "S" else "Axial"


def view_for_node(node) -> str:
    """The comparison orientation for a run's output node: from its factors (`mrml.FACTORS_ATTRIBUTE`) and its
    IJK-to-RAS axes; axial where it has none or they are isotropic."""
    from ..core import grid
    from ..core.orientation import slice_axis

    text = node.GetAttribute(mrml.FACTORS_ATTRIBUTE) if hasattr(node, "GetAttribute") else None
    if not text:
        return "Axial"
    return compare_orientation(slice_axis(mrml.node_affine(node), grid.factors(text)))


def _fit_slice(slice_node_, volume, orientation: str = "Axial", legend: bool = False, bottom_px: float = 0) -> None:
    """A slice in `orientation` through the centre of `volume`, field of view fitted to its extent (the view's
    aspect kept); with `legend`, a strip on the right kept free for the colour legend (`legend_room`); `bottom_px`
    pixels at the bottom kept free (the browser page's slice slider lies over them: apps/view/viewer.py)."""
    slice_node_.SetOrientation(orientation)
    fov_x, fov_y, centre = fitted_view(slice_node_, volume, slice_node_.GetDimensions(), legend, bottom_px)
    slice_node_.SetFieldOfView(fov_x, fov_y, slice_node_.GetFieldOfView()[2])
    slice_node_.JumpSliceByCentering(*centre)
    slice_node_.SetAttribute(FITTED_ATTRIBUTE, orientation)


def fitted_view(slice_node_, volume, dims, legend: bool = False, bottom_px: float = 0) -> tuple[float, float, np.ndarray]:
    """(field of view across, up, the view's centre in RAS) that `_fit_slice` gives `slice_node_` in its orientation
    at `dims` pixels, without changing the node (apps/view/viewer.py keeps a reader's zoom relative to it on a resize)."""
    bounds = data_bounds(volume)
    centre = np.array([(bounds[2 * k] + bounds[2 * k + 1]) / 2 for k in range(3)])
    across, up = PLANE_AXES[slice_node_.GetOrientation()] if slice_node_.GetOrientation() in PLANE_AXES else (0, 1)
    width, height = bounds[2 * across + 1] - bounds[2 * across], bounds[2 * up + 1] - bounds[2 * up]
    aspect = dims[0] / dims[1] if dims[1] else 1.0
    room = legend_room(dims[0], dims[1]) if legend else 0.0
    low = min(bottom_px / dims[1], 0.5) if dims[1] else 0.0
    fov_y = max(height / (1.0 - low), width / ((1.0 - room) * aspect)) * 1.02
    fov_x = fov_y * aspect
    m = slice_node_.GetSliceToRAS()
    screen_right = np.array([m.GetElement(i, 0) for i in range(3)])
    screen_up = np.array([m.GetElement(i, 1) for i in range(3)])
    normal = np.array([m.GetElement(i, 2) for i in range(3)])
    return fov_x, fov_y, (on_voxel_plane(centre, volume, normal) + screen_right * room * fov_x / 2
                          - screen_up * low * fov_y / 2)


_bounds_read: dict = {}  # volume node's address -> (its image's modified time and IJKToRAS, data_bounds)


def data_bounds(volume) -> list[float]:
    """RAS bounds (as GetRASBounds gives them) of `volume`'s voxels that hold data (any non-zero component), half a
    voxel out; the whole grid's where none does or the data cannot be read. A grid turned in the scanner had its
    corners' box fitted: on the 3 mm yaw scan the brain filled a third of the view's width (a clinician's audit)."""
    whole = [0.0] * 6
    volume.GetRASBounds(whole)
    image = volume.GetImageData() if hasattr(volume, "GetImageData") else None
    point_data = image.GetPointData() if image is not None else None
    array = point_data.GetTensors() or point_data.GetScalars() if point_data is not None else None
    if array is None:
        return whole
    m = mrml.node_affine(volume)
    key, stamp = volume.GetID() or str(id(volume)), (image.GetMTime(), array.GetMTime(), m.tobytes())
    if key in _bounds_read and _bounds_read[key][0] == stamp:
        return list(_bounds_read[key][1])
    from vtk.util.numpy_support import vtk_to_numpy

    dims = image.GetDimensions()
    values = vtk_to_numpy(array).reshape(dims[2], dims[1], dims[0], -1)
    k, j, i = np.nonzero(np.any(values != 0, axis=-1))
    if not len(i):
        return whole
    ras = m[:3, :3] @ np.stack([i, j, k]).astype(float) + m[:3, 3:4]
    half = np.abs(m[:3, :3]).sum(axis=1) / 2  # a voxel's half extent along R, A, S
    low, high = ras.min(axis=1) - half, ras.max(axis=1) + half
    bounds = [float(v) for pair in zip(np.maximum(low, whole[0::2]), np.minimum(high, whole[1::2])) for v in pair]
    _bounds_read[key] = (stamp, bounds)
    return bounds


def on_voxel_plane(point, volume, normal) -> np.ndarray:
    """`point` moved along `normal` onto the nearest plane of voxel centres of `volume` (along its voxel axis nearest
    the normal), as Slicer's SnapSliceOffsetToIJK does: an even number of slices puts the centre between two, and
    the view then blends them (a display audit)."""
    m = mrml.node_affine(volume)
    point, normal = np.asarray(point, float), np.asarray(normal, float)
    ijk = np.linalg.solve(m[:3, :3], point - m[:3, 3])
    columns = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    axis = int(np.argmax(np.abs(columns.T @ normal)))
    per_mm = np.linalg.solve(m[:3, :3], normal)[axis]  # voxels along that axis per mm along the normal
    if abs(per_mm) < 1e-9:
        return point
    return point + normal * (np.round(ijk[axis]) - ijk[axis]) / per_mm


def snap_to_voxel_plane(slice_node_, volume) -> None:
    """The slice moved along its normal onto the nearest plane of `volume`'s voxel centres (`on_voxel_plane`): an offset
    kept from another grid (the input's, shown before its run; a run at other factors) lies between two slices."""
    m = slice_node_.GetSliceToRAS()
    origin = np.array([m.GetElement(i, 3) for i in range(3)])
    normal = np.array([m.GetElement(i, 2) for i in range(3)])
    snapped = on_voxel_plane(origin, volume, normal)
    if not np.allclose(snapped, origin, atol=1e-9):
        slice_node_.SetSliceOffset(slice_node_.GetSliceOffset() + float(normal @ (snapped - origin)))


FITTED_ATTRIBUTE = "ImageQualityTransfer.FittedOrientation"  # on a slice node: the orientation _fit_slice framed


UNIT_RANGE_INVARIANTS = ("FractionalAnisotropy", "LinearMeasure", "PlanarMeasure", "SphericalMeasure", "RelativeAnisotropy")
# on a tensor display node: the invariant whose window was set here (0..1, or the other side's), not by Slicer or the
# reader; another invariant since then gets its own window again
FIXED_WINDOW_ATTRIBUTE = "ImageQualityTransfer.FixedWindow"
_followers: dict = {}  # display node id -> (display, observer tag, the display it keeps in step with)
_in_step: set = set()  # display ids being changed here: their own Modified events are not followed back


def _fix_window(display_, low: float, high: float) -> None:
    display_.AutoWindowLevelOff()
    display_.SetWindowLevelMinMax(low, high)
    display_.SetAttribute(FIXED_WINDOW_ATTRIBUTE, display_.GetScalarInvariantAsString())


def _own_window(display_) -> None:
    """`display_`'s window for its invariant: 0..1 for one with values in 0..1 (FA and the shape measures, as
    radiologists read FA) where Slicer would choose it; Slicer's automatic window again for another invariant chosen
    since this module fixed one (a window copied from the colour-orientation display, 0..254, left FA black: a
    clinician's audit); a window the reader set on this invariant is kept."""
    invariant = display_.GetScalarInvariantAsString()
    fixed = display_.GetAttribute(FIXED_WINDOW_ATTRIBUTE)
    if invariant in UNIT_RANGE_INVARIANTS and (display_.GetAutoWindowLevel() or (fixed and fixed != invariant)):
        _fix_window(display_, 0.0, 1.0)
    elif fixed and fixed != invariant:
        display_.SetAttribute(FIXED_WINDOW_ATTRIBUTE, "")
        display_.AutoWindowLevelOn()


def _same_scalar_display(source, other) -> None:
    """`other` (a tensor display node) shows what `source`, the one just changed, shows: the same scalar invariant on
    the same window (`_own_window`'s for `source`); a window the reader sets on either side is followed."""
    _in_step.update((source.GetID(), other.GetID()))
    try:
        if source.GetScalarInvariant() != other.GetScalarInvariant():
            other.SetScalarInvariant(source.GetScalarInvariant())
        _own_window(source)
        window = (source.GetWindowLevelMin(), source.GetWindowLevelMax())
        if other.GetAutoWindowLevel() or (other.GetWindowLevelMin(), other.GetWindowLevelMax()) != window \
                or other.GetAttribute(FIXED_WINDOW_ATTRIBUTE) != other.GetScalarInvariantAsString():
            _fix_window(other, *window)
    finally:
        _in_step.difference_update((source.GetID(), other.GetID()))


def _on_modified(caller, event) -> None:
    entry = _followers.get(caller.GetID())
    if entry is not None and caller.GetID() not in _in_step:
        _same_scalar_display(caller, entry[2])


def _stop_following(display_) -> None:
    """`display_` and the display it kept in step with no longer follow each other; each has Slicer's automatic
    window again, as a node never followed: with no observer left, a window fixed here (0..1 for FA) stayed on every
    invariant chosen later, Trace and colour black or washed out on a cubic node compared with itself after a
    comparison (a review's self_after_follow.py)."""
    entry = _followers.pop(display_.GetID(), None)
    if entry is None:
        return
    entry[0].RemoveObserver(entry[1])
    partner = entry[2]
    if partner is not display_:
        _stop_following(partner)
    display_.SetAttribute(FIXED_WINDOW_ATTRIBUTE, "")
    display_.AutoWindowLevelOn()


def follow_display(leader_node, follower_node) -> None:
    """Keep the two nodes' scalar displays (a tensor volume's: FA, MD, colour by orientation...) the same, the
    follower's as the leader's now and either as the other's whenever the reader changes one (FA chosen for the
    cubic side had left it black on the IQT side's colour window), so that one value is one grey in both views of a
    comparison (with automatic windows cubic's FA was on 0-0.64 and IQT's on 0-0.74). A node never follows itself:
    cubic compared with itself had its own automatic window switched off at 0..254 (a clinician's audit)."""
    import vtk

    leader, follower = leader_node.GetDisplayNode(), follower_node.GetDisplayNode()
    if leader is None or follower is None or not leader.IsA("vtkMRMLDiffusionTensorVolumeDisplayNode") \
            or not follower.IsA("vtkMRMLDiffusionTensorVolumeDisplayNode"):
        return
    for one in (leader, follower):
        entry = _followers.get(one.GetID())
        if entry is not None and entry[2] is (follower if one is leader else leader):  # the same pair again
            one.RemoveObserver(_followers.pop(one.GetID())[1])
        else:
            _stop_following(one)
    if leader is follower:
        return
    for one, other in ((leader, follower), (follower, leader)):
        _followers[one.GetID()] = (one, one.AddObserver(vtk.vtkCommand.ModifiedEvent, _on_modified), other)
    _same_scalar_display(leader, follower)


def show_comparison(scene, interpolated, iqt, uncertainty=None, opacity: float = 0.0, views=COMPARE_VIEWS,
                    orientation: str | None = None, marker: bool = False, bottom_px: float = 0) -> tuple:
    """Side-by-side layout: interpolation in the left view, IQT (with its uncertainty overlay) in the right one,
    the same slice and field of view in both (with an overlay, a strip on the right kept free for its legend),
    linked so that scrolling one moves the other. `orientation`
    (Axial, Coronal or Sagittal) defaults to the one that shows the run's factors (`view_for_node`).
    `marker`: `show_marker` in each view (the module's, the page's and the rendered pictures'). `bottom_px`: as
    `_fit_slice`'s. The interpolation's scalar display follows the IQT output's (`follow_display`). Returns the (left,
    right) composite nodes."""
    if interpolated is None or iqt is None:
        raise IQTError("run Image Quality Transfer with the interpolated output first; there is nothing to compare")
    orientation = orientation or view_for_node(iqt)
    follow_display(iqt, interpolated)
    kept = next((v for v in views if _kept_view(scene, v, iqt) and slice_node(scene, v).GetOrientation() == orientation),
                None)
    if kept is not None:  # the reader's slice, on this run's grid (x2 and x3 outputs of one input share their extent)
        snap_to_voxel_plane(slice_node(scene, kept), iqt)
    offset = None if kept is not None else next(
        (o for v in views if slice_node(scene, v) is not None and slice_node(scene, v).GetOrientation() == orientation
         and (o := _readers_offset(scene, v)) is not None), None)
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layout is not None:
        import slicer

        remember_layout(scene)
        layout.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    composites = []
    for view, volume, fg in ((views[0], interpolated, None), (views[1], iqt, uncertainty)):
        c = composite_node(scene, view)
        s = slice_node(scene, view)
        if c is None or s is None:
            raise IQTError(f"no slice view named {view!r} in the scene; switch to a layout with the {view} view")
        show_layers(scene, volume, fg, opacity, views=(view,))
        c.SetLinkedControl(True)
        if hasattr(c, "SetHotLinkedControl"):
            c.SetHotLinkedControl(True)
        if kept is None:
            _fit_slice(s, iqt, orientation, legend=uncertainty is not None, bottom_px=bottom_px)
            _keep_offset(s, iqt, offset)  # a comparison over other data bounds: the reader's slice
        elif view != kept:  # the slice and zoom the reader chose, on both sides
            _same_slice(slice_node(scene, kept), s)
        if marker:
            show_marker(s)
        composites.append(c)
    legend_follows_opacity(uncertainty, opacity)
    refresh_legends(scene)  # an earlier run's legend whose map is no longer a layer: hidden
    return tuple(composites)


MARKER_ATTRIBUTE = "ImageQualityTransfer.MarkerShown"  # on a slice node: `show_marker` put the marker there


def show_marker(slice_node_) -> None:
    """An orientation marker (axes labelled R, A, S) in a view that has none, once: laterality at a glance, which the
    module's views had never shown (a clinician's audit; Slicer's axial and coronal views put the patient's right on
    the screen's left, the radiological convention). A reader who hides it afterwards keeps it hidden."""
    if slice_node_.GetAttribute(MARKER_ATTRIBUTE) or \
            slice_node_.GetOrientationMarkerType() != slice_node_.OrientationMarkerTypeNone:
        return
    slice_node_.SetOrientationMarkerType(slice_node_.OrientationMarkerTypeAxes)
    slice_node_.SetOrientationMarkerSize(slice_node_.OrientationMarkerSizeMedium)
    slice_node_.SetAttribute(MARKER_ATTRIBUTE, "1")


def legend_follows_opacity(overlay, opacity: float) -> None:
    """The overlay's legend hidden while it is shown at opacity 0 (`set_overlay_opacity` shows it again): drawn over a
    map that is not seen, it gave the orientation colours a scale (a clinician's audit)."""
    legend = legend_of(overlay) if overlay is not None else None
    if legend is not None:
        legend.SetVisibility(opacity > 0)


def _same_slice(source, target) -> None:
    """`target` shows `source`'s slice at its zoom (its own aspect kept)."""
    target.GetSliceToRAS().DeepCopy(source.GetSliceToRAS())
    target.UpdateMatrices()
    fov = source.GetFieldOfView()
    dims = target.GetDimensions()
    aspect = dims[0] / dims[1] if dims[1] else 1.0
    target.SetFieldOfView(fov[1] * aspect, fov[1], target.GetFieldOfView()[2])
    target.SetAttribute(FITTED_ATTRIBUTE, source.GetAttribute(FITTED_ATTRIBUTE) or "")


# ---------------------------------------------------------------- tractography


def seeding_available(scene) -> bool:
    """True where SlicerDMRI's interactive seeding node exists (SlicerDMRI installed)."""
    return bool(scene.IsNodeClassRegistered(SEEDING_CLASS))


def send_to_seeding(scene, tensor):
    """SlicerDMRI's interactive seeding node with `tensor` (the IQT output) as its DTI volume; returns it."""
    if tensor is None or not tensor.IsA("vtkMRMLDiffusionTensorVolumeNode"):
        got = "nothing" if tensor is None else tensor.GetClassName()
        raise IQTError(f"tractography seeds on a diffusion tensor volume, got {got}; run Image Quality Transfer first")
    if not seeding_available(scene):
        raise IQTError("tractography seeding needs the SlicerDMRI extension; install it from the Extensions Manager "
                       "and restart Slicer")
    seeding = scene.GetFirstNodeByClass(SEEDING_CLASS) or scene.AddNewNodeByClass(SEEDING_CLASS)
    seeding.SetInputVolumeRef(tensor.GetID())
    return seeding
