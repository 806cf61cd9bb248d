"""Runs the module's own self-test (ImageQualityTransfer.py, ImageQualityTransferTest) outside the Slicer
application, as Testing/slicer/test_self_test.py's child process: `python self_test_in_batch.py TEST_NAME...`.

The module file, its Logic and its test run unmodified on a real vtkMRMLScene (slicer-core). slicer-core has no
application, so the application's shell is made here: the ScriptedLoadableModule bases (the test's is
unittest.TestCase, as in Slicer), parameterNodeWrapper and its annotations (used only by the GUI), tr() that returns
its text, a slicer.app that says it has no main window and no layout manager (batch mode), and a scene with the
three slice views the application makes. Exit status: 0 when every named test passed.
"""

from __future__ import annotations

import sys
import types
import unittest
from pathlib import Path

import slicer  # slicer-core

MODULE_DIR = Path(__file__).resolve().parents[2] / "ImageQualityTransfer"


def application_shell() -> None:
    bases = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            pass

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            pass

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=0):
            print(message, flush=True)

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget,
                ScriptedLoadableModuleTest):
        setattr(bases, cls.__name__, cls)
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = lambda *a, **k: None
    wrapper.WithinRange = lambda *a, **k: None
    for name, module in (("ScriptedLoadableModule", bases), ("i18n", i18n), ("parameterNodeWrapper", wrapper)):
        sys.modules[f"slicer.{name}"] = module
        setattr(slicer, name, module)
    import slicer.util as util

    if not hasattr(util, "VTKObservationMixin"):
        util.VTKObservationMixin = type("VTKObservationMixin", (), {})

    class BatchApplication:
        def commandOptions(self):
            return types.SimpleNamespace(noMainWindow=True)

        def processEvents(self):
            pass

    slicer.app = BatchApplication()
    slicer.modules = types.SimpleNamespace()
    slicer.mrmlScene = views_scene()


def views_scene():
    """A scene with the slice views Red, Yellow and Green, their composite nodes and a layout node, as the application
    makes them (Testing/slicer/test_display.py); the logics live as long as the scene."""
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    layout = slicer.vtkMRMLLayoutLogic()
    layout.SetMRMLScene(scene)
    logics = []
    for name in ("Red", "Yellow", "Green"):
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        logic.AddSliceNode(name)
        logics.append(logic)
    scene._keep = (layout, logics)
    return scene


if __name__ == "__main__":
    application_shell()
    sys.path.insert(0, str(MODULE_DIR))
    import ImageQualityTransfer as module

    suite = unittest.TestSuite(module.ImageQualityTransferTest(name) for name in sys.argv[1:])
    sys.exit(0 if unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful() else 1)
