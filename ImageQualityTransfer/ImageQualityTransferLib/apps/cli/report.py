"""`iqt report`: one self-contained HTML page of views, uncertainty overlays, errors, metrics and tracts."""

from __future__ import annotations

from . import options


def add_parsers(sub) -> None:
    sp = sub.add_parser("report", help="one self-contained HTML page: FA/colour-FA views, uncertainty, errors, metrics, tracts")
    sp.add_argument("-o", "--output", required=True, help="report file (.html)")
    sp.add_argument("--subject", help="subject folder (default: the built-in phantom)")
    sp.add_argument("--methods", help="comma-separated methods (default: cubic and every shipped learned method that runs here)")
    options.add_factor(sp)
    sp.add_argument("--no-tracts", action="store_true", help="leave out tractography")
    sp.add_argument("--n-seeds", type=int, default=2000, help="tractography seeds (default 2000)")
    sp.set_defaults(func=run)


def run(args):
    from ... import fileio
    from ...core import grid
    from .. import report

    f = grid.factors(args.factor)
    plan = fileio.Outputs(args.subject)
    out = plan.add(args.output, (".html", ".htm"), "report")
    plan.check()
    path = report.run(out, subject_dir=args.subject, factor=f, method_names=options.method_list(args.methods),
                      tracts=not args.no_tracts, n_seeds=args.n_seeds)
    print(f"wrote {path}")
