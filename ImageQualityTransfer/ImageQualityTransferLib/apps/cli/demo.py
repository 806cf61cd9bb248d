"""`iqt demo` and `iqt methods`: the main job on the built-in phantom, and the list of methods."""

from __future__ import annotations

from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("demo", help="the main job on a built-in phantom (or --subject DIR): every method, metrics and a figure")
    sp.add_argument("--subject", help="run on this subject folder (dwi.nii.gz, dwi.bval, dwi.bvec) instead of the "
                                      "phantom")
    sp.add_argument("-o", "--output", default="iqt-demo", help="output folder (default ./iqt-demo)")
    options.add_factor(sp)
    sp.add_argument("--methods", help="comma-separated method names (default: every method ready here)")
    sp.set_defaults(func=demo)

    sp = sub.add_parser("methods", help="list the methods")
    sp.set_defaults(func=list_methods)


def demo(args):
    from ...core import grid
    from ...fileio.sizes import check_subjects
    from .. import demo as demo_app

    f = grid.factors(args.factor)
    options.out_dir(args.output)
    check_subjects("demo", [args.subject])  # its DWI from its header, before any data is read
    demo_app.run(out_dir=args.output, subject_dir=args.subject, factor=f,
                 method_names=options.method_list(args.methods))


def _listed(factor_sets, registered) -> str:
    """'x2, x3': a factor whose model 'iqt train --register' put in the install's registry is said so (else after
    --register replaced the default, 'iqt methods' would still say 'shipped for x2')."""
    from ...core import grid

    return ", ".join(f"x{grid.text(f)}" + (" (registered with 'iqt train --register')" if f in registered else "")
                     for f in factor_sets)


def list_methods(args):
    from ... import methods
    from ...core.noise_level import NOISY_MODEL

    default = methods.default_method()
    for_maps = methods.default_method(uncertainty=True)  # biqt needs no torch, so there is always one
    for m in methods.describe():
        flags = "uncertainty" if m["uncertainty"] else "no uncertainty"
        if m["learned"]:
            shipped = m["shipped"]
            mine = m.get("registered") or []
            flags += ", learned, " + (f"{'default models' if mine else 'shipped'} for {_listed(shipped, mine)}" if shipped
                                      else "no shipped model: "
                                      f"train one with 'iqt train --method {m['name']}' and pass --model")
            if m["shipped_noisy"]:
                flags += f"; for noisy inputs (noise index above {NOISY_MODEL:g}) a model trained with added noise at " \
                         f"{_listed(m['shipped_noisy'], m.get('registered_noisy') or [])}"
        star = " (default)" if m["name"] == default else " (default for an uncertainty map)" if m["name"] == for_maps else ""
        print(f"{m['name']:<18} {m['description']} [{flags}]{star}")
