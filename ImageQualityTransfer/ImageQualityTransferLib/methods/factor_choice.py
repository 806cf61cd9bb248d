"""The factors a request runs at, the method that runs, and what is said where that is not what was asked: one rule
for `iqt upsample`, `iqt batch` and the Slicer module (issue 14: a learned method asked for factors it has no model
for says so and names what it has, unless a model is given; where a voxel size chose the factors, a coarser one that
has a model). Each caller says it its own way; the words are the command line's (`slicer.processing.in_module_words`
puts them as the module's controls)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import grid
from ..core.errors import IQTError
from ..core.i18n import _, option
from . import registry


@dataclass(frozen=True)
class Choice:
    """What a request runs: `factors` (fx, fy, fz); `method` (None where `refusal` is set and no method was named);
    `chose`: what a voxel size chose ("factors 1,1,3: output voxel size ..."), else ""; `refusal`: the one line where
    the run would not be what was asked (a learned method without a model for the factors, or no method with an
    uncertainty map for them), else ""; `note`: the line where the default ran the interpolation baseline because no
    learned model ships for the factors, else ""; `hint`: the clause of either that names a coarser voxel size whose
    factors have a model ("; --voxel-size 2 gives factors 1,1,3 ..."), or with a given `model` for other factors the
    voxel size that gives its own (`model_voxel_size`, for the loader's refusal), else ""."""

    factors: tuple
    method: str | None
    chose: str = ""
    refusal: str = ""
    note: str = ""
    hint: str = ""
    said: str = ""  # `chose` as one marked line, "--voxel-size T chose ..." (`chose_said`), else ""


def choose(method: str | None = None, factor=None, *, voxel_size=None, target: float | None = None,
           model=None, uncertainty: bool = False) -> Choice:
    """The factors (`factor`, else those `grid.for_voxel_size` picks for an input of `voxel_size` mm and a wanted
    `target` mm) and the method for them: `method`, else the default for the factors (`registry.default_method`, one
    with an uncertainty map where `uncertainty`). A learned method without `model` and without a shipped model for the
    factors or a reordering of them is refused in the words `registry`'s loader uses; interpolation and a given
    `model` never are (the loader checks a given model's factors). A grid error (a `target` the input already meets)
    is raised as `grid.for_voxel_size` raises it."""
    f = grid.factors(factor) if factor is not None else grid.for_voxel_size(voxel_size, target)
    chose = voxel_size_line(f, voxel_size) if target is not None and voxel_size is not None else ""
    line = chose_said(target, f, voxel_size) if chose else ""
    said = line + "; " if chose else ""

    def hint(runs) -> str:
        return coarser_voxel_size(voxel_size, f, runs) if chose else ""

    def some_learned(names) -> bool:
        return any(registry.method_class(n).learned for n in names)

    if method is None and model is None:
        try:
            name = registry.default_method(f, uncertainty=uncertainty)
        except IQTError as exc:
            more = hint(lambda g: some_learned(registry.with_uncertainty(g)))
            return Choice(f, None, chose, said + str(exc) + more, hint=more, said=line)
        if registry.method_class(name).learned or registry.default_method() == name:
            return Choice(f, name, chose, said=line)
        more = hint(lambda g: some_learned(registry.ready(g)))
        return Choice(f, name, chose, note=f"no learned model ships for {grid.describe(f)}, so the default ran the "
                      f"interpolation baseline ({name}); for a learned one give --method and --model with a model "
                      "trained for these factors ('iqt train')" + more, hint=more, said=line)
    if model is not None:  # the loader refuses a model for other factors; the voxel size that gives its own is named
        return Choice(f, method, chose, hint=model_voxel_size(voxel_size, f, target, model) if chose else "", said=line)
    if method is None or not registry.method_class(method).learned \
            or registry.serves(registry.shipped_factors(method), f):
        return Choice(f, method, chose, said=line)
    more = hint(lambda g: method in registry.ready(g))
    return Choice(f, method, chose, said + missing_model(method, f) + more, hint=more, said=line)


def model_hint(exc, choice: Choice) -> str:
    """`choice.hint` where the loader's refusal `exc` is of a given model's factors (its `advice`: the voxel size that
    gives the model's own), "" for a damaged or foreign model: what iqt upsample, iqt batch and the Slicer module add to
    the loader's line (the module and batch had said no voxel size that runs the model)."""
    return choice.hint if getattr(exc, "advice", None) else ""


def missing_model(name: str, f) -> str:
    """The loader's own line for learned method `name` without a shipped model for factors `f`: what ships, the model
    to give or train, and the methods that have one (`fileio.model_files.shipped`)."""
    try:
        registry.get(name).load(f)
    except IQTError as exc:
        return str(exc)
    return f"{name} has a model for {grid.describe(f)}"  # registered meanwhile: said as it is


def voxel_size_line(f, voxel_size) -> str:
    """What --voxel-size chose, in one line."""
    mm = lambda v: "x".join(f"{x:.3g}" for x in v)  # noqa: E731
    out = [v / k for v, k in zip(voxel_size, f)]
    return f"{grid.describe(f)}: output voxel size {mm(out)} mm (input {mm(voxel_size)} mm)"


def chose_said(target: float, f, voxel_size) -> str:
    """"--voxel-size T chose <voxel_size_line>" as one marked line, the option in the words of the app that runs
    (core/i18n.py option: the Slicer module's Target voxel size)."""
    mm = lambda v: "x".join(f"{x:.3g}" for x in v)  # noqa: E731
    return _("{voxel_size} {target} chose {factors}: output voxel size {out} mm (input {given} mm)").format(
        voxel_size=option("--voxel-size"), target=f"{target:g}", factors=grid.described(f),
        out=mm(v / k for v, k in zip(voxel_size, f)), given=mm(voxel_size))


def model_voxel_size(voxel_size, f, target: float, model) -> str:
    """"; --voxel-size T gives g (... mm voxels), which the given model serves" for the --voxel-size T nearest `target`
    whose factors g are those of `model` (its sidecar's) or a reordering of them, where `f` are not; "" where none
    is or the sidecar names none: --model biqt_x1x1x3.npz --voxel-size 1.5 on a 2x2x6 mm scan (factors 2,2,4) had
    been refused without naming --voxel-size 2, which runs it (a review)."""
    import math

    from ..fileio.model_files import factors_named
    from .base import off_training_anisotropy

    own = factors_named(model)
    try:
        if own is None or grid.axis_order(f, [own]) is not None:
            return ""
    except IQTError:  # a sidecar's factors no --factor could be (0, or above 10,000): the loader says it is damaged
        return ""
    v = [float(x) for x in voxel_size]
    # every factor set the loader's rule gives, with a voxel size that gives it (x/k alone had missed some: a review)
    for t, g in sorted(grid.voxel_size_choices(v, max(own)), key=lambda pair: abs(math.log(pair[0] / target))):
        if grid.axis_order(g, [own]) is not None and off_training_anisotropy(v, g) is None:
            mm = "x".join(f"{x / k:.3g}" for x, k in zip(v, g))
            return "; " + _("{voxel_size} {target} gives {factors} ({out} mm voxels), which the given model "
                            "serves").format(voxel_size=option("--voxel-size"), target=f"{t:g}",
                                             factors=grid.described(g), out=mm)
    return ""


def coarser_voxel_size(voxel_size, f, runs) -> str:
    """"; --voxel-size T (factors g: output voxel size ...) has one" for the smallest --voxel-size T above the one that
    chose `f` whose factors g, none above f's, `runs(g)` accepts (a shipped model for them), or "" where none does: a
    1.8x1.8x6 mm scan asked for --voxel-size 1.8 gets factors 1,1,4, for which no model ships, and the refusal had
    only said to train one (a low-field clinic's audit), where --voxel-size 2 (factors 1,1,3) runs the shipped ones."""
    from .base import off_training_anisotropy

    v = [float(x) for x in voxel_size]
    skipped = False
    for target, g in grid.voxel_size_choices(v, max(f)):  # ascending, as the loader's rule gives each factor set
        if g != tuple(f) and all(a <= b for a, b in zip(g, f)) and runs(g):
            if off_training_anisotropy(v, g) is not None:  # 0.9x0.9x7 mm: 1,1,3 makes 0.9x0.9x2.33 mm voxels, which
                skipped = True  # the run then warned are far from the near-isotropic ones trained on (a review)
                continue
            mm = "x".join(f"{x / k:.3g}" for x, k in zip(v, g))
            return "; " + _("{voxel_size} {target} gives {factors} ({out} mm voxels), for which models ship").format(
                voxel_size=option("--voxel-size"), target=f"{target:g}", factors=grid.described(g), out=mm)
    return "; " + _("{no_coarser_voxel_size} helps (the shipped models' factors leave these voxels far from "
                    "isotropic)").format(no_coarser_voxel_size=option("no coarser --voxel-size")) if skipped else ""
