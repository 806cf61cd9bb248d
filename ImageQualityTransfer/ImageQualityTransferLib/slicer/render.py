"""Pictures of what the Slicer module shows, rendered off-screen by Slicer's own slice views (trame-slicer, no Qt):
the compare layout, interpolation | IQT with its uncertainty overlay and colour legend, on a real subject.

    python -m ImageQualityTransferLib.slicer.render SUBJECT_DIR Screenshots/compare.png [--method biqt]
        [--factor 1,1,3 --orientation Coronal] [--tta] [--snr 5]

SUBJECT_DIR holds dwi.nii.gz/bval/bvec; it is degraded as `iqt degrade` does (factor 2 unless --factor) and upsampled by the
method (default: the one the Slicer module preselects at the factors; cubic interpolation on the left). Needs the `render` extra (trame-slicer[standalone]).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import IQTError, install_extra
from ..core.volume import Volume
from . import display, legends, mrml, processing

if TYPE_CHECKING:  # the render extra's, imported on use
    import PIL.Image

VIEW_SIZE = (440, 440)
OPACITY = 0.5
BACKGROUND = (0, 0, 0)


@dataclass
class Rendering:
    """The two views' pixels (H, W, 3 uint8, row 0 at the top) and what is needed to check them."""

    images: dict  # view name -> array
    scene: object
    nodes: dict
    views: dict  # view name -> trame-slicer SliceView
    legend_boxes: dict = field(default_factory=dict)  # view name -> (x0, y0, x1, y1) pixels, row 0 at the top
    marker_boxes: dict = field(default_factory=dict)  # view name -> the orientation marker's box, the same way
    app: object = None  # the SlicerApp whose scene this is: freed, the scene loses its colour tables

    def pixel_ras(self, view: str) -> np.ndarray:
        """(H, W, 3) RAS position of every pixel's centre on the view's slice. Only the tests use it, to check what the
        rendered pictures show where."""
        slice_node = display.slice_node(self.scene, view)
        m = slice_node.GetXYToRAS()
        xy = np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])
        h, w = self.images[view].shape[:2]
        xs, ys = np.meshgrid(np.arange(w), np.arange(h)[::-1])  # VTK's y goes up
        pts = np.stack([xs, ys, np.zeros_like(xs), np.ones_like(xs)], -1).astype(float)
        return (pts @ xy.T)[..., :3]


def quiet_vtk_warnings() -> None:
    """VTK's warnings about the off-screen window it makes (no X display; an interactor event deprecated in VTK 9.6)
    print twice each on every start, and 'bad X server connection' reads as a failure;
    VTK's errors still print."""
    from vtkmodules.vtkCommonCore import vtkLogger, vtkOutputWindow

    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    vtkOutputWindow.GetInstance().SetDisplayModeToNever()  # its second copy of each message; errors go through vtkLogger


def _app_importable() -> None:
    try:
        import trame_slicer.core  # noqa: F401
        import trame_slicer.views  # noqa: F401
    except ImportError as exc:
        raise IQTError(f"rendering needs trame-slicer ({exc}); install the render extra: "
                       f"{install_extra('render')}") from None


def _app():
    _app_importable()
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import DirectViewFactory

    app = SlicerApp()
    quiet_vtk_warnings()  # after the app: slicer-core sets VTK's output window to print everything
    app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    return app


def _grab(view) -> np.ndarray:
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    view.render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(view.render_window())
    grab.ReadFrontBufferOff()
    grab.Update()
    image = grab.GetOutput()
    w, h, _ = image.GetDimensions()
    return np.ascontiguousarray(vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3])


def legend_pixels(view, legend) -> np.ndarray | None:
    """(H, W) bool, row 0 at the top: the pixels of `view` that `legend` draws (those that change when it is hidden;
    its title reaches outside the actor's own box); None where it is not drawn."""
    dm = view._displayable_manager_group.GetDisplayableManagerByClassName("vtkMRMLColorLegendDisplayableManager")
    actor = dm.GetColorLegendActor(legend) if dm is not None else None
    if actor is None or not actor.GetVisibility():
        return None
    shown = _grab(view)
    legend.SetVisibility(False)
    try:
        bare = _grab(view)
    finally:
        legend.SetVisibility(True)
        _grab(view)
    return np.any(bare != shown, axis=-1)


def legend_box(view, legend) -> tuple[int, int, int, int] | None:
    """Pixel box (x0, y0, x1, y1), row 0 at the top, around what `legend` draws in `view` (`legend_pixels`)."""
    drawn = legend_pixels(view, legend)
    ys, xs = np.nonzero(drawn) if drawn is not None else ((), ())
    return (int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1) if len(xs) else None


def render_compare(lr: Volume, mask: Volume | None, method: str = "biqt", factor=2,
                   size=VIEW_SIZE, opacity: float = OPACITY, orientation: str | None = None, tta: bool = False) -> Rendering:
    """Run `method` on `lr` in a trame-slicer scene and render the compare layout's two slice views
    (`orientation`: Axial, Coronal or Sagittal; by default the one that shows the factors, as in the module;
    `tta`: the panel's "Average over flips")."""
    from trame_slicer.views import ViewLayoutDefinition

    app = _app()
    scene = app.scene
    views = {name: app.view_manager.create_view(ViewLayoutDefinition.slice_view(orientation or "Axial", label=name))
             for name in display.COMPARE_VIEWS}
    for name, view in views.items():
        view.render_window().SetSize(*size)
        display.slice_node(scene, name).SetDimensions(size[0], size[1], 1)
    in_node = mrml.add_tensor_node(scene, lr, "dti")
    mask_node = None
    if mask is not None:
        mask_node = mrml.add_scalar_node(scene, Volume(np.asarray(mask.data, np.uint8), lr.affine, "scalar"), "mask")
    nodes = processing.run_on_nodes(scene, in_node, method, factor, mask_node=mask_node, interpolate=True, tta=tta)
    display.show_results(scene, nodes, opacity)
    display.show_comparison(scene, nodes["interpolated"], nodes["tensor"], nodes["uncertainty"], opacity,
                            orientation=orientation, marker=True)
    styled = legends.style_results(scene, nodes)
    display.legend_follows_opacity(nodes["uncertainty"], opacity)
    for legend in styled.values():
        legend.Modified()  # trame-slicer makes the slice logics after the legend manager: let it look again
    images = {name: _grab(view) for name, view in views.items()}
    out = Rendering(images, scene, nodes, views, app=app)
    shown = styled.get("std") or next(iter(styled.values()), None)
    for name, view in views.items():
        box = legend_box(view, shown) if shown is not None else None
        if box is not None:
            out.legend_boxes[name] = box
        box = marker_box(view, display.slice_node(scene, name), out.images[name])
        if box is not None:
            out.marker_boxes[name] = box
    return out


def marker_box(view, slice_node_, image: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel box (x0, y0, x1, y1), row 0 at the top, of the orientation marker in `image` (the view as grabbed):
    the pixels that change when the marker is hidden."""
    kind = slice_node_.GetOrientationMarkerType()
    if kind == slice_node_.OrientationMarkerTypeNone:
        return None
    slice_node_.SetOrientationMarkerType(slice_node_.OrientationMarkerTypeNone)
    try:
        bare = _grab(view)
    finally:
        slice_node_.SetOrientationMarkerType(kind)
    ys, xs = np.nonzero(np.any(bare != image, axis=-1))
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else None


def compose(rendering: Rendering, titles=("cubic interpolation", "IQT + uncertainty")) -> "PIL.Image.Image":
    """The two views side by side under one-line captions: the picture for the README and the extension page."""
    from PIL import Image, ImageDraw, ImageFont

    left, right = (rendering.images[v] for v in display.COMPARE_VIEWS)
    h, w = left.shape[:2]
    bar = 28
    canvas = Image.new("RGB", (2 * w + 4, h + bar), BACKGROUND)
    canvas.paste(Image.fromarray(left), (0, bar))
    canvas.paste(Image.fromarray(right), (w + 4, bar))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=18)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for i, text in enumerate(titles):
        draw.text((i * (w + 4) + 10, 4), text, fill=(235, 235, 235), font=font)
    return canvas


def degraded_subject(folder, factor=2, style: str = "own", snr: float | None = None) -> tuple[Volume, Volume]:
    """(low-res tensor, low-res mask) of a subject folder, degraded as `iqt degrade --style` does (shift 0), from
    the brain mask `iqt mask` makes (the benchmark's, holes filled in 3D only, left low-res blocks of a temporal
    lobe empty: black squares inside the brain); `snr`: with `iqt degrade --snr`'s noise on the low-res DWIs (seed 0)."""
    from .. import fileio
    from ..dmri import degrade, randomise
    from ..dmri.dti import brain_mask
    from ..dmri.subject import dwi_path

    dwi = fileio.load_dwi(dwi_path(Path(folder)))
    pair = degrade.degrade(dwi, brain_mask(dwi), factor, style=style, noise=randomise.added_noise(snr))
    return pair.tensor, pair.mask


def methods_with_uncertainty(name: str) -> bool:
    from .. import methods

    return name in methods.with_uncertainty()


def _snr(value: str | None) -> float | None:
    """--snr's value: a b0 SNR in dmri/randomise.snr_value's range, or None; its one line otherwise (said before the
    run)."""
    from ..dmri.randomise import checked_snr

    # a low one said as `iqt degrade --snr` says it (a picture at --snr 0.01 had been drawn without a word)
    return checked_snr(value, lambda note: print(f"render: warning: {note}", file=sys.stderr))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ImageQualityTransferLib.slicer.render",
                                description=" ".join(__doc__.split("\n\n")[0].split()))  # the docstring's first paragraph
    p.add_argument("subject", help="subject folder (dwi.nii.gz, dwi.bval, dwi.bvec)")
    p.add_argument("output", help="PNG to write")
    p.add_argument("--method", help="the method on the right (default: the Slicer module's at the factors and the "
                                    "low-res voxel size, methods.viewer_default)")
    p.add_argument("--factor", default="2", help="2, 3 or per axis, e.g. 1,1,3 (default 2)")
    p.add_argument("--orientation", choices=["Axial", "Coronal", "Sagittal"],
                   help="slice orientation (default: the one that shows the factors, display.view_for_node)")
    p.add_argument("--tta", action="store_true", help="the learned method averaged over flips (Average over flips)")
    p.add_argument("--style", default="own", help="how the low-res tensors are made, as `iqt degrade --style` "
                                                  "(default own; fsl and mrtrix are tight here)")
    p.add_argument("--no-mask", action="store_true", help="run without the brain mask, as a user who loads no mask")
    p.add_argument("--snr", help="add Rician noise to the low-res DWIs at this b0 SNR, as `iqt degrade --snr` (seed 0): "
                                 "a noisy scan's picture (noise added to the subject's own DWIs is mostly averaged away "
                                 "by the degradation); from 0.01 up, clinical scans about 10-40; default: none")
    args = p.parse_args(argv)
    try:
        from ..core import grid

        f = grid.factors(args.factor)
        out = Path(args.output)
        if out.suffix.lower() not in (".png", ".jpg", ".jpeg") or out.is_dir():  # said before the run
            raise IQTError(f"{args.output}: give a picture file ending in .png (or .jpg)")
        from .. import methods
        from ..fileio.paths import check_folder

        # before any work: the picture's folder, made if missing (a file in its way, or a folder that takes no file,
        # had ended 11 s of work in a traceback: a Slicer audit), and --tta of a method that flips cannot change
        # (captioned '+tta' for a run that averaged nothing), refused as upsample refuses it
        there = next(d for d in (out.parent, *out.parent.parents) if d.exists())
        check_folder(there, out)
        methods.get(args.method or methods.viewer_default(f), tta=args.tta)
        # a style degrade does not know and a folder with no subject in it, said before the off-screen probe and
        # trame's import: refused only after them, 8-13 s on a loaded 2-core machine (a Slicer-picture audit)
        from ..dmri.degrade import STYLES
        from ..dmri.subject import dwi_path

        if args.style not in STYLES:
            raise IQTError(f"--style {args.style}: choose one of {', '.join(STYLES)}")
        snr = _snr(args.snr)
        dwi_path(Path(args.subject))
        # before the subject's fit: without EGL/Mesa the first render segfaulted (exit 139, nothing said)
        _app_importable()
        from .offscreen import check_offscreen_opengl

        check_offscreen_opengl()
        lr, mask = degraded_subject(args.subject, f, args.style, snr)
        # the low-res input's voxel size, as the module's default takes it: cubic where the output is over 2:1
        method = args.method or methods.viewer_default(f, lr.voxel_size)
        methods.get(method, tta=args.tta)
        label = f"{method}{'+tta' if args.tta else ''}, {grid.describe(f)}"  # each caption says the factors
        shown = f"{label} + uncertainty" if methods_with_uncertainty(method) else label
        picture = compose(render_compare(lr, None if args.no_mask else mask, method, f, orientation=args.orientation, tta=args.tta),
                          (f"cubic, {grid.describe(f)}", shown))
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            picture.save(out, optimize=True)
        except OSError as exc:
            out.unlink(missing_ok=True)
            raise IQTError(f"{out}: the picture cannot be written ({exc.strerror or exc}); choose another path") from None
    except IQTError as exc:
        from ..fileio.model_files import shipped_only

        print(f"render: {shipped_only(str(exc), 'render')}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
