"""The module's status line after a run (ImageQualityTransfer.py runStatusText; the widget itself needs Qt): a failed
run says it failed, so the last progress message (e.g. "running espcn-hetero-var1 (x3)") is not left standing (audit
V); every phrase goes through tr()."""

from __future__ import annotations

import ast

from helpers import REPO

MODULE_PY = REPO / "ImageQualityTransfer" / "ImageQualityTransfer.py"


def _module_function(name):
    tree = ast.parse(MODULE_PY.read_text())
    fn = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == name)
    space = {"_": lambda text: "<" + text + ">", "Optional": object}
    helpers = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "factorsText"]
    exec(compile(ast.Module([fn, *helpers], []), str(MODULE_PY), "exec"), space)  # the engine's notes' texts
    return space[name], fn


def test_the_status_after_a_run():
    status, _ = _module_function("runStatusText")
    failed = status(None)
    assert failed.startswith("<") and failed.endswith(">") and "fail" in failed.lower()  # short, through tr()
    assert "running" not in failed
    assert status(None, cancelled=True) == "<Cancelled.>"
    assert status("dti_biqt", cancelled=True) == "<Cancelled.>"  # Cancel pressed as the run ended
    assert status("dti_biqt") == "<Done: dti_biqt>"
    assert status("dti_biqt", "the brain was estimated") == "<Done: dti_biqt\nNote: the brain was estimated>"
    assert status("dti_biqt", None, False, "shipped model biqt_x2.npz") == "<Done: dti_biqt (shipped model biqt_x2.npz)>"


def test_apply_always_sets_the_status_when_the_run_ends():
    """onApplyButton's finally block sets the status line from runStatusText whatever the outcome (not only when
    cancelled): after an error the last progress text would stay otherwise."""
    tree = ast.parse(MODULE_PY.read_text())
    widget = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "ImageQualityTransferWidget")
    apply = next(f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name == "onApplyButton")
    tries = [t for t in ast.walk(apply) if isinstance(t, ast.Try) and t.finalbody]
    assert tries
    final = tries[0].finalbody
    direct = [s for s in final if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "self.ui.statusLabel.text"]
    assert direct and "runStatusText(" in ast.unparse(direct[0].value)
