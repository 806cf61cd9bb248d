"""`iqt view`: a browser page (trame-slicer) comparing cubic interpolation with IQT, its uncertainty and FA."""

from __future__ import annotations

from pathlib import Path

from ...core.errors import IQTError
from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("view", help="serve a browser viewer: cubic | IQT slice views, uncertainty overlay, method "
                                     "picker, FA / colour FA (needs the render extra)")
    sp.add_argument("input", help="low-res tensor volume (NIfTI SYMMATRIX, 4D with --tensor-order, Slicer .nrrd, or "
                                  "MRtrix .mif)")
    sp.add_argument("--method", help="method shown first (default: the Slicer module's, the best shipped method with "
                                     "an uncertainty map at the factors, deep-hetero-var1 at x2; cubic where the output "
                                     "voxels are more than 2:1; the page offers every ready one)")
    options.add_factor(sp, voxel_size=True)
    sp.add_argument("--mask", help="brain mask on the input grid (or on the high-res grid)")
    sp.add_argument("--port", type=int, default=8080, help="port to serve on (default 8080; 0: any free port)")
    sp.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for the network)")
    options.add_tensor_order(sp)
    sp.set_defaults(func=run)


def run(args):
    from ... import fileio, methods
    from ...core import grid
    from ...fileio.model_files import shipped_only
    from ...dmri.degrade import lowres_mask
    from ...methods.inputs import check_tensor_input
    from ...slicer.offscreen import check_offscreen_opengl
    from ...slicer.processing import COMPARISON_METHOD
    from .. import view
    from .upsample import input_shape3, input_voxel_size

    if not 0 <= args.port <= 65535:  # else the socket's OverflowError, an internal error
        raise IQTError(f"--port {args.port}: a port is 0-65535 (0: any free one)")
    options.check_host(args.host, f"--host {args.host}")
    if Path(args.input).is_dir():  # "no such file" would mislead for a folder that exists
        raise IQTError(f"{args.input}: a folder; give one low-resolution DTI volume in it (.nii.gz, .nrrd or .mif), e.g. "
                       f"{Path(args.input) / 'dti.nii.gz'}")
    if not Path(args.input).is_file():
        raise IQTError(f"{args.input}: no such file; give a low-resolution DTI volume (.nii.gz, .nrrd or .mif)")
    if args.mask and Path(args.mask).is_dir():
        raise IQTError(f"--mask {args.mask}: a folder; give the brain mask file in it (.nii.gz or .mif)")
    if args.mask and not Path(args.mask).is_file():
        raise IQTError(f"--mask {args.mask}: no such file")
    view.check_port(args.port, args.host)  # before the input is read and the model loaded (a viewer audit)
    # checked as `iqt upsample` checks, before anything is served: bad input gets one line and exit 2 here, not a
    # page that only says so in the browser while the server runs on
    lr = None
    f = options.factors(args)
    if f is None:  # --voxel-size: the factors follow from the input's voxel size
        lr = fileio.load_tensor(args.input, args.tensor_order, getattr(args, "order_stated", None))
        f = options.factors(args, lr.voxel_size)
        print(options.voxel_size_line(f, lr.voxel_size))
    if args.method is not None:
        methods.method_class(args.method)  # an unknown name fails here, naming the valid ones
        if args.method not in methods.ready(f):
            if not methods.runs_here(args.method):
                raise IQTError(f"method {args.method!r} needs PyTorch, which is not installed here; install the cnn "
                               f"extra, or choose one of: {', '.join(methods.ready(f))}")
            try:  # names the factors it has models for, as 'iqt upsample' does, less the --model view does not take
                methods.get(args.method).load(f)
            except IQTError as exc:
                raise IQTError(shipped_only(str(exc), "iqt view")) from None
            raise IQTError(f"method {args.method!r} cannot run here at {grid.describe(f)}; choose one of: "
                           f"{', '.join(methods.ready(f))}")
    # the first run's memory from the input's header and its model, as upsample.run checks them: --factor 1000 had
    # been refused only after 'serving', the server left running
    shape3 = lr.shape3 if lr is not None else input_shape3(args.input)
    if shape3 is None:  # a header the early check cannot read: the full read says why
        lr = fileio.load_tensor(args.input, args.tensor_order, getattr(args, "order_stated", None))
        shape3 = lr.shape3
    # the voxel size too, or the page started on deep-hetero-var1 where the module preselects cubic (registry.py
    # viewer_default)
    voxel = lr.voxel_size if lr is not None else input_voxel_size(args.input)
    first = methods.get(view.first_method(args.method, f, voxel))
    for m in (first, methods.get(COMPARISON_METHOD)):  # the page runs cubic beside it (processing.predict_volumes)
        m.check_memory(shape3, f, maps=m.gives_uncertainty)
    if lr is None:
        lr = fileio.load_tensor(args.input, args.tensor_order, getattr(args, "order_stated", None))
    mask = fileio.load_mask(args.mask, lr, f) if args.mask else None  # on either grid
    check_tensor_input(lr, lowres_mask(mask, lr, f))
    # the input checked, the long work not begun: without EGL/Mesa the page's first render segfaulted (exit 139,
    # nothing said); trame-slicer's import first, for its own install line
    view.import_trame()
    check_offscreen_opengl()
    if first.learned:  # last: the model's load (torch's import) is the longest check
        first.load(f)  # a damaged shipped model fails here, not in the page
    with view.signals_held():  # a signal inside the build's VTK observers exited 1 (apps/view/stopping.py signals_held)
        viewer = view.Viewer(args.input, args.method, f, args.mask, tensor_order=args.tensor_order, loaded=(lr, mask))
    viewer.serve(args.port, args.host)
    return 0
