"""The engine's layers: every import between its subpackages goes down (parsed from the source, so
function-level imports count too), and the top level stays small."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "ImageQualityTransfer" / "ImageQualityTransferLib"
PKG = LIB.name
# Lower number = lower layer; a module may import its own subpackage and any lower layer. `apps` (command line,
# demo, report, viewers) sits above `slicer` (MRML nodes, the Slicer processing and display), which never imports it.
LAYERS = {"core": 0, "fileio": 1, "dmri": 2, "methods": 3, "analysis": 4, "slicer": 5, "apps": 6}
TOP_LEVEL = {"__init__", "__main__"}


def _imports(path: Path):
    """(imported module, line) for every intra-package import of `path`, as dotted names below PKG."""
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    here = parts[:-1]  # the package this module sits in (for __init__, the package itself)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
            targets = [base] if node.module else [base + [a.name] for a in node.names]
            for t in targets:
                yield ".".join(t), node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PKG + "."):
            yield node.module[len(PKG) + 1 :], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(PKG + "."):
                    yield a.name[len(PKG) + 1 :], node.lineno


def _layer(dotted: str):
    head = dotted.split(".")[0] if dotted else ""
    return head, LAYERS.get(head)


def test_every_module_is_in_a_layer():
    for f in LIB.rglob("*.py"):
        rel = f.relative_to(LIB)
        if len(rel.parts) == 1:
            assert rel.stem in TOP_LEVEL, f"{rel}: put it in one of the layers {sorted(LAYERS)}"
        else:
            assert rel.parts[0] in LAYERS, f"{rel}: {rel.parts[0]} is not a known layer; add it to LAYERS"


def test_imports_only_go_down():
    bad = []
    for f in LIB.rglob("*.py"):
        rel = f.relative_to(LIB)
        if len(rel.parts) == 1:
            continue  # the package faces may import anything below them
        src, src_rank = _layer(".".join(rel.with_suffix("").parts))
        for target, line in _imports(f):
            dst, dst_rank = _layer(target)
            if dst == src or dst in ("", "__init__"):
                continue
            if dst_rank is None or dst_rank >= src_rank:
                bad.append(f"{rel}:{line} imports {target} ({src} -> {dst})")
    assert not bad, "imports that do not go down:\n" + "\n".join(bad)


def test_top_level_is_small():
    assert len([f for f in LIB.glob("*.py")]) <= 8


def test_no_import_cycle_between_modules():
    """Within a layer too: importing a package runs its `__init__`, so `from .cli import options` in a module that
    the CLI's `__init__` imports is a cycle (a module may use its own package's face)."""
    mods = {".".join(p for p in f.relative_to(LIB).with_suffix("").parts if p != "__init__"): f for f in LIB.rglob("*.py")}
    graph = {}
    for m, f in mods.items():
        edges = set()
        for target, _ in _imports(f):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != m and not m.startswith(target + "."):
                edges.add(target)
        graph[m] = edges
    # strongly connected components (Tarjan): any with more than one module is a cycle
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"
