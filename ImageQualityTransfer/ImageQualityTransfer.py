import logging
import os
import pathlib
import shutil
import sys
from typing import Annotated, Optional, Union

import vtk

import slicer
from slicer import (
    vtkMRMLDiffusionTensorVolumeNode,
    vtkMRMLDiffusionWeightedVolumeNode,
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLScalarVolumeNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The engine (ImageQualityTransferLib, numpy, dipy, torch) is imported inside functions only: the module
# must load in a fresh Slicer before the engine's Python packages are installed.

README_URL = "https://github.com/ImageQualityTransfer/SlicerImageQualityTransfer#use-it-in-3d-slicer"
ENGINE_PACKAGES = {  # import name -> pip requirement, installed with Slicer's pip helper on request
    "scipy": "scipy",
    "nibabel": "nibabel",
    "dipy": "dipy",
    "nrrd": "pynrrd",
    "tqdm": "tqdm",
}
TRACTOGRAPHY_MODULE = "TractographyInteractiveSeeding"  # SlicerDMRI


#
# ImageQualityTransfer
#


class ImageQualityTransfer(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Image Quality Transfer")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Diffusion")]
        self.parent.dependencies = []
        self.parent.contributors = ["ImageQualityTransfer contributors"]
        self.parent.helpText = _(
            """
<p>Image Quality Transfer (IQT) super-resolves a low-resolution diffusion tensor image (DTI): it predicts the
high-resolution tensors with a mapping learned from high-quality data, gives a voxel-wise <b>uncertainty</b>
map where the method has one, and the <b>cubic interpolation</b> it must beat for side-by-side comparison.</p>
<p><b>Input</b>: a DTI volume, or a diffusion-weighted (DWI) volume that is fitted to tensors first
(weighted least squares). An optional brain label map restricts the work to the brain.</p>
<p><b>Which method</b>: the learned methods (3D-ESPCN CNNs, random forests IQT-RF / BIQT-RF) beat
interpolation; pick one that gives an uncertainty to read the overlay; <i>cubic</i> is the baseline.
CNN methods need PyTorch (installed on request through the PyTorch extension) and run in a separate process.</p>
<p><b>Reading the uncertainty</b>: the overlay is the standard deviation of the predicted tensor (mm²/s). Beside it
comes a <b>fibre direction uncertainty</b> map (degrees): how far the principal direction, which tractography
follows, may be from the one shown. It is high where anisotropy is low, in grey matter and in lesions that
destroy fibre organisation: do not trust tracts through such regions.</p>
<p><b>Tensor conventions</b>: outputs keep Slicer's DTI conventions (components in IJK axes, measurement frame =
IJK to RAS rotation), so SlicerDMRI tractography seeds on them unchanged. The output grid has the voxel size
divided by the factor, with its first voxel centred inside the first input voxel.</p>
<p>See the <a href="{url}">README</a> for details and batch use.</p>
"""
        ).replace("{url}", README_URL)
        self.parent.acknowledgementText = _(
            """
Methods from: D.C. Alexander et al., "Image quality transfer via random forest regression: applications in
diffusion MRI", MICCAI 2014; D.C. Alexander et al., "Image quality transfer and applications in diffusion MRI",
NeuroImage 2017; R. Tanno et al., "Bayesian image quality transfer", MICCAI 2016; R. Tanno et al.,
"Bayesian image quality transfer with CNNs: exploring uncertainty in dMRI super-resolution", MICCAI 2017.
The implementation in this extension is independent of the authors' code.
"""
        )


#
# ImageQualityTransferParameterNode
#


@parameterNodeWrapper
class ImageQualityTransferParameterNode:
    """
    The parameters needed by the module.

    inputVolume - low-resolution DTI (or DWI, fitted first).
    maskVolume - optional brain label map on the input's grid.
    method - method name from the engine's registry (ImageQualityTransferLib.methods.describe()).
    modelPath - optional model file for learned methods (empty: the shipped model).
    factor - upsampling factor.
    samples - Monte Carlo samples for methods with parameter uncertainty.
    useGPU - run torch methods on the GPU when one is available.
    uncertaintyOpacity - opacity of the uncertainty overlay.
    outputVolume - high-resolution tensor output (created when empty).
    uncertaintyVolume - uncertainty map output (created when the method gives one).
    interpolatedVolume - cubic interpolation of the input, for comparison.
    """

    inputVolume: Union[vtkMRMLDiffusionTensorVolumeNode, vtkMRMLDiffusionWeightedVolumeNode, None]
    maskVolume: vtkMRMLLabelMapVolumeNode
    method: str = ""  # empty: the engine's default (the best shipped method that can run here)
    modelPath: pathlib.Path
    factor: Annotated[int, WithinRange(2, 4)] = 2
    samples: Annotated[int, WithinRange(1, 200)] = 20
    useGPU: bool = False
    uncertaintyOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    outputVolume: vtkMRMLDiffusionTensorVolumeNode
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    interpolatedVolume: vtkMRMLDiffusionTensorVolumeNode


#
# ImageQualityTransferWidget
#


class ImageQualityTransferWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._methods = []
        self._running = False
        self._cancelRequested = False
        self._lastResult = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ImageQualityTransfer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = ImageQualityTransferLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.tractographyButton.connect("clicked(bool)", self.onTractographyButton)
        self.ui.installTorchButton.connect("clicked(bool)", self.onInstallTorchButton)
        self.ui.opacitySliderWidget.connect("valueChanged(double)", self.onOpacityChanged)

        self.ui.progressBar.setVisible(False)
        self.ui.statusLabel.text = ""
        self.populateMethods()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.populateMethods()  # methods added to the engine since the last visit appear here
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLDiffusionTensorVolumeNode")
            if first is None:
                first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLDiffusionWeightedVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode: Optional[ImageQualityTransferParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # ui elements with a SlicerParameterName property are kept in sync with the parameter node
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    # ---------------------------------------------------------------- methods combo (filled from the engine)

    def populateMethods(self) -> None:
        try:
            self._methods = self.logic.availableMethods()
        except Exception as exc:  # engine dependencies missing: say so, keep the GUI usable
            logging.warning(f"ImageQualityTransfer: cannot list methods: {exc}")
            self._methods = []
            self.ui.methodDescriptionLabel.text = _("The processing engine is not ready: {error}").format(error=exc)
        combo = self.ui.methodComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for m in self._methods:
            combo.addItem(m["name"], m["name"])
        combo.blockSignals(wasBlocked)
        self._updateMethodGui()

    def onMethodChanged(self, index: int) -> None:
        if self._parameterNode and 0 <= index < len(self._methods):
            self._parameterNode.method = self._methods[index]["name"]
        self._updateMethodGui()

    def _updateMethodGui(self) -> None:
        if not self._methods:
            return
        names = [m["name"] for m in self._methods]
        name = self._parameterNode.method if self._parameterNode else ""
        if name not in names:
            name = self.logic.defaultMethod()
            if self._parameterNode and name in names:
                self._parameterNode.method = name
        index = names.index(name) if name in names else 0
        combo = self.ui.methodComboBox
        if combo.currentIndex != index:
            wasBlocked = combo.blockSignals(True)
            combo.currentIndex = index
            combo.blockSignals(wasBlocked)
        info = self._methods[index]
        extra = []
        if info.get("uncertainty"):
            extra.append(_("gives an uncertainty map"))
        if info.get("learned"):
            extra.append(_("learned"))
        if info.get("needs_torch"):
            extra.append(_("needs PyTorch"))
        self.ui.methodDescriptionLabel.text = info["description"] + (f" ({', '.join(extra)})" if extra else "")
        self.ui.installTorchButton.enabled = bool(info.get("needs_torch")) and not self.logic.torchAvailable()

    def _checkCanApply(self, caller=None, event=None) -> None:
        self._updateMethodGui()
        if self._running:
            return
        if self._parameterNode and self._parameterNode.inputVolume and self._methods:
            self.ui.applyButton.toolTip = _("Super-resolve the input volume")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.toolTip = _("Select a DTI or DWI input volume")
            self.ui.applyButton.enabled = False
        result = self._lastResult or {}
        self.ui.compareButton.enabled = bool(result.get("tensor") and result.get("interpolated"))
        self.ui.tractographyButton.enabled = bool(result.get("tensor")) and self.logic.tractographyAvailable()
        if not self.logic.tractographyAvailable():
            self.ui.tractographyButton.toolTip = _("Install the SlicerDMRI extension to seed tractography")

    # ---------------------------------------------------------------- apply / cancel

    def onApplyButton(self) -> None:
        if self._running:
            self._cancelRequested = True
            self.ui.statusLabel.text = _("Cancelling...")
            return
        p = self._parameterNode
        model = str(p.modelPath) if p.modelPath and str(p.modelPath) not in ("", ".") else None
        self._running = True
        self._cancelRequested = False
        self.ui.applyButton.text = _("Cancel")
        self.ui.applyButton.toolTip = _("Stop the processing")
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.value = 0
        try:
            with slicer.util.tryWithErrorDisplay(_("Image Quality Transfer failed."), waitCursor=True):
                nodes = self.logic.process(
                    p.inputVolume,
                    outputNode=p.outputVolume,
                    method=p.method,
                    factor=p.factor,
                    maskNode=p.maskVolume,
                    uncertaintyNode=p.uncertaintyVolume,
                    interpolatedNode=p.interpolatedVolume if p.interpolatedVolume else True,
                    samples=p.samples,
                    useGPU=p.useGPU,
                    modelPath=model,
                    progressCallback=self._onProgress,
                )
                self._lastResult = nodes
                p.outputVolume = nodes["tensor"]
                if nodes.get("uncertainty"):
                    p.uncertaintyVolume = nodes["uncertainty"]
                if nodes.get("interpolated"):
                    p.interpolatedVolume = nodes["interpolated"]
                self.logic.showResults(nodes, opacity=p.uncertaintyOpacity)
                self.ui.statusLabel.text = _("Done: {name}").format(name=nodes["tensor"].GetName())
        finally:
            self._running = False
            self.ui.applyButton.text = _("Apply")
            self.ui.progressBar.setVisible(False)
            if self._cancelRequested:
                self.ui.statusLabel.text = _("Cancelled.")
            self._checkCanApply()

    def _onProgress(self, fraction, message) -> bool:
        """Progress from the Logic; returns False to ask it to stop (Cancel pressed)."""
        if fraction is not None:
            self.ui.progressBar.value = int(round(100 * fraction))
        if message:
            self.ui.statusLabel.text = message
        slicer.app.processEvents()
        return not self._cancelRequested

    # ---------------------------------------------------------------- display

    def onOpacityChanged(self, value: float) -> None:
        self.logic.setUncertaintyOpacity(value)

    def onCompareButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot show the comparison."), waitCursor=True):
            result = self._lastResult or {}
            self.logic.showComparison(result.get("interpolated"), result.get("tensor"), result.get("uncertainty"),
                                      opacity=self._parameterNode.uncertaintyOpacity)

    def onTractographyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot start tractography seeding."), waitCursor=True):
            self.logic.sendToTractography((self._lastResult or {}).get("tensor"))

    def onInstallTorchButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("PyTorch installation failed."), waitCursor=True):
            self.logic.installTorch(askConfirmation=True)
            self._updateMethodGui()


#
# ImageQualityTransferLogic
#


class ImageQualityTransferLogic(ScriptedLoadableModuleLogic):
    """Thin: node -> engine -> nodes, then display. The processing itself is
    `ImageQualityTransferLib.slicer.processing.run_on_nodes` (Qt-free, tested headless with slicer-core).

    Batch / Python console use::

        logic = slicer.util.getModuleLogic("ImageQualityTransfer")
        nodes = logic.process(dtiNode, method="cubic", factor=2)
        nodes["tensor"], nodes["uncertainty"], nodes["interpolated"]
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return ImageQualityTransferParameterNode(super().getParameterNode())

    # ---------------------------------------------------------------- engine and its dependencies

    @staticmethod
    def moduleDir() -> str:
        return os.path.dirname(os.path.abspath(__file__))

    def missingPackages(self) -> list:
        import importlib.util

        return [req for name, req in ENGINE_PACKAGES.items() if importlib.util.find_spec(name) is None]

    def installDependencies(self, askConfirmation: bool = True) -> bool:
        """Install the engine's Python packages with Slicer's pip helper (never at import time)."""
        missing = self.missingPackages()
        if not missing:
            return True
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            _("Image Quality Transfer needs these Python packages: {packages}. Install them now?").format(
                packages=", ".join(missing))):
            return False
        slicer.util.pip_install(" ".join(missing))
        return not self.missingPackages()

    def engine(self):
        """The engine's Slicer processing module, installing missing packages on request."""
        if self.missingPackages() and not self.installDependencies(askConfirmation=not self._batch()):
            raise RuntimeError(_("Missing Python packages: {packages}").format(packages=", ".join(self.missingPackages())))
        if self.moduleDir() not in sys.path:
            sys.path.insert(0, self.moduleDir())
        from ImageQualityTransferLib.slicer import processing as slicer_processing

        return slicer_processing

    def availableMethods(self) -> list:
        """[{name, description, uncertainty, learned, needs_torch}] from the engine's registry."""
        if self.missingPackages():
            raise RuntimeError(_("missing Python packages {packages}; press Apply to install them").format(
                packages=", ".join(self.missingPackages())))
        sp = self.engine()
        from ImageQualityTransferLib import methods

        out = []
        for entry in methods.describe():
            if entry["learned"] and not entry["shipped"]:
                continue  # trainable with 'iqt train', but nothing to run without a model file
            entry = dict(entry)
            entry["needs_torch"] = sp.method_needs_torch(entry["name"])
            out.append(entry)
        return out

    @staticmethod
    def torchAvailable() -> bool:
        import importlib.util

        return importlib.util.find_spec("torch") is not None

    def installTorch(self, askConfirmation: bool = True) -> bool:
        """Install PyTorch through the PyTorch extension's PyTorchUtils (only when the user asks)."""
        if self.torchAvailable():
            return True
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError(_("Install the 'PyTorch' extension from the Extension Manager, restart Slicer and retry."))
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation)
        return torch is not None

    @staticmethod
    def _batch() -> bool:
        """True without a main window (Slicer --no-main-window): never ask questions then."""
        try:
            return bool(slicer.app.commandOptions().noMainWindow)
        except AttributeError:
            return True

    @staticmethod
    def pythonSlicerExecutable() -> str:
        exe = shutil.which("PythonSlicer")
        if exe:
            return exe
        candidate = os.path.join(os.path.dirname(sys.executable), "PythonSlicer" + (".exe" if os.name == "nt" else ""))
        return candidate if os.path.exists(candidate) else sys.executable

    # ---------------------------------------------------------------- processing

    def defaultMethod(self) -> str:
        """The engine's default: the best shipped method that can run in this Python (see `iqt methods`)."""
        from ImageQualityTransferLib import methods

        return methods.default_method()

    def process(self, inputNode, outputNode=None, method: Optional[str] = None, factor: int = 2, maskNode=None,
                uncertaintyNode=None, interpolatedNode=None, samples: int = 20, useGPU: bool = False,
                modelPath: Optional[str] = None, progressCallback=None, separateProcess: Optional[bool] = None) -> dict:
        """Super-resolve `inputNode` (DTI, or DWI fitted first) and return the nodes:
        {"tensor", "uncertainty" (or None), "uncertainties" {key: node}, "interpolated" (or None)}.

        outputNode / uncertaintyNode / interpolatedNode: existing nodes to fill, or None to create new ones;
        interpolatedNode=True creates the cubic comparison without a target node. The input is never modified.
        progressCallback(fraction, message) may return False to cancel. Torch methods run in a separate
        PythonSlicer process unless separateProcess=False.
        """
        import time

        if not inputNode:
            raise ValueError(_("Input volume is invalid"))
        sp = self.engine()
        method = method or self.defaultMethod()
        needsTorch = sp.method_needs_torch(method)
        if separateProcess is None:
            separateProcess = needsTorch
        if needsTorch and not self.torchAvailable():
            if self._batch() or not self.installTorch(askConfirmation=True):
                raise RuntimeError(_("The method '{method}' needs PyTorch: install the PyTorch extension and press "
                                     "'Install PyTorch' in the Advanced section").format(method=method))
        cancelled = [False]

        def progress(fraction, message):
            if progressCallback is not None and progressCallback(fraction, message) is False:
                cancelled[0] = True
            if message:
                logging.info(f"ImageQualityTransfer: {message}")

        targets = {"tensor": outputNode, "uncertainty": uncertaintyNode,
                   "interpolated": interpolatedNode if interpolatedNode not in (True, False) else None}
        startTime = time.time()
        logging.info("Processing started")
        nodes = sp.run_on_nodes(
            slicer.mrmlScene, inputNode, method, factor=factor, mask_node=maskNode, model=modelPath,
            samples=samples, device="cuda" if useGPU else "cpu", interpolate=bool(interpolatedNode),
            targets=targets, progress=progress, cancel=lambda: cancelled[0],
            python_executable=self.pythonSlicerExecutable() if separateProcess else None,
        )
        logging.info(f"Processing completed in {time.time() - startTime:.2f} seconds")
        return nodes

    # ---------------------------------------------------------------- display

    @staticmethod
    def _colorNodeID(name: str) -> Optional[str]:
        node = slicer.mrmlScene.GetFirstNodeByName(name)
        return node.GetID() if node is not None and node.IsA("vtkMRMLColorNode") else None

    @staticmethod
    def legendTitle(key: str) -> str:
        """Colour-legend title of an uncertainty map, with its unit."""
        titles = {
            "fa_std": _("FA standard deviation"),
            "direction": _("Fibre direction uncertainty (degrees)"),
            "md_std": _("MD standard deviation (mm²/s)"),
        }
        return titles.get(key, _("Uncertainty (mm²/s)"))

    def showUncertainty(self, uncertaintyNode, opacity: float = 0.5, key: str = "std") -> None:
        """Perceptual colour map (Inferno), colour legend titled with the map's meaning and unit."""
        if uncertaintyNode is None:
            return
        display = uncertaintyNode.GetDisplayNode()
        if display is None:
            uncertaintyNode.CreateDefaultDisplayNodes()
            display = uncertaintyNode.GetDisplayNode()
        colorID = self._colorNodeID("Inferno") or self._colorNodeID("Viridis")
        if colorID:
            display.SetAndObserveColorNodeID(colorID)
        display.AutoWindowLevelOn()
        colorsLogic = slicer.modules.colors.logic() if hasattr(slicer.modules, "colors") else None
        if colorsLogic is not None and hasattr(colorsLogic, "AddDefaultColorLegendDisplayNode"):
            legend = colorsLogic.AddDefaultColorLegendDisplayNode(uncertaintyNode)
            if legend is not None:
                legend.SetTitleText(self.legendTitle(key))

    def showResults(self, nodes: dict, opacity: float = 0.5) -> None:
        """IQT tensor as background, uncertainty as a foreground overlay."""
        tensor, unc = nodes.get("tensor"), nodes.get("uncertainty")
        for key, node in (nodes.get("uncertainties") or {}).items():  # each map ready to pick as foreground
            if node is not unc:
                self.showUncertainty(node, opacity, key)
        self.showUncertainty(unc, opacity)
        slicer.util.setSliceViewerLayers(background=tensor, foreground=unc, foregroundOpacity=opacity if unc else 0.0,
                                         fit=True)

    def setUncertaintyOpacity(self, opacity: float) -> None:
        for i in range(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
            slicer.mrmlScene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode").SetForegroundOpacity(opacity)

    def showComparison(self, interpolatedNode, iqtNode, uncertaintyNode=None, opacity: float = 0.0) -> None:
        """Side-by-side linked slice views: interpolation (left, Red) and IQT (right, Yellow)."""
        if not interpolatedNode or not iqtNode:
            raise ValueError(_("Run Image Quality Transfer with the interpolated output first"))
        lm = slicer.app.layoutManager()
        if lm is not None:
            lm.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
        self.showUncertainty(uncertaintyNode, opacity)
        for viewName, volume, fg in (("Red", interpolatedNode, None), ("Yellow", iqtNode, uncertaintyNode)):
            composite = slicer.mrmlScene.GetNodeByID(f"vtkMRMLSliceCompositeNode{viewName}")
            sliceNode = slicer.mrmlScene.GetNodeByID(f"vtkMRMLSliceNode{viewName}")
            if composite is None:
                continue
            composite.SetBackgroundVolumeID(volume.GetID())
            composite.SetForegroundVolumeID(fg.GetID() if fg is not None else None)
            composite.SetForegroundOpacity(opacity if fg is not None else 0.0)
            composite.SetLinkedControl(True)
            if hasattr(composite, "SetHotLinkedControl"):
                composite.SetHotLinkedControl(True)
            if sliceNode is not None:
                sliceNode.SetOrientation("Axial")
        if lm is not None:
            for viewName in ("Red", "Yellow"):
                widget = lm.sliceWidget(viewName)
                if widget is not None:
                    widget.sliceLogic().FitSliceToAll()

    @staticmethod
    def tractographyAvailable() -> bool:
        return hasattr(slicer.modules, TRACTOGRAPHY_MODULE.lower())

    def sendToTractography(self, tensorNode) -> None:
        """Open SlicerDMRI's interactive seeding with the IQT output as its DTI volume."""
        if tensorNode is None:
            raise ValueError(_("Run Image Quality Transfer first"))
        if not self.tractographyAvailable():
            raise RuntimeError(_("Install the SlicerDMRI extension to seed tractography"))
        slicer.util.selectModule(TRACTOGRAPHY_MODULE)
        widget = getattr(slicer.modules, TRACTOGRAPHY_MODULE.lower()).widgetRepresentation()
        for combo in slicer.util.findChildren(widget, className="qMRMLNodeComboBox"):
            if "vtkMRMLDiffusionTensorVolumeNode" in list(combo.nodeTypes):
                combo.setCurrentNode(tensorNode)
                return
        seeding = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLTractographyInteractiveSeedingNode")
        if seeding is not None:
            seeding.SetInputVolumeRef(tensorNode.GetID())


#
# ImageQualityTransferTest
#


class ImageQualityTransferTest(ScriptedLoadableModuleTest):
    """Self-test in the Slicer application: a synthetic phantom and the DTIBrain sample through every method."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_Phantom()
        self.setUp()
        self.test_DTIBrain()

    def _methods(self):
        logic = ImageQualityTransferLogic()
        torch = logic.torchAvailable()
        return logic, [m["name"] for m in logic.availableMethods() if torch or not m["needs_torch"]]

    def _phantomNode(self):
        logic = ImageQualityTransferLogic()
        logic.engine()
        from ImageQualityTransferLib.dmri import degrade, dti, phantom
        from ImageQualityTransferLib.slicer import mrml

        dwi = phantom.make_phantom(shape=(32, 36, 28), voxel_mm=2.0)  # a DWI Volume
        vol = degrade.degrade(dwi, dti.brain_mask(dwi).data, 2).tensor  # the low-res DTI
        return mrml.add_tensor_node(slicer.mrmlScene, vol, "IQTPhantom")

    def _checkOutputs(self, inputNode, nodes, factor):
        import numpy as np

        tensor = nodes["tensor"]
        self.assertTrue(tensor.IsA("vtkMRMLDiffusionTensorVolumeNode"))
        dimsIn = inputNode.GetImageData().GetDimensions()
        dimsOut = tensor.GetImageData().GetDimensions()
        self.assertEqual(tuple(dimsOut), tuple(factor * d for d in dimsIn))
        np.testing.assert_allclose(np.array(tensor.GetSpacing()), np.array(inputNode.GetSpacing()) / factor, rtol=1e-6)
        if nodes.get("uncertainty") is not None:
            self.assertTrue(nodes["uncertainty"].IsA("vtkMRMLScalarVolumeNode"))
        self.assertTrue(nodes["interpolated"].IsA("vtkMRMLDiffusionTensorVolumeNode"))

    def test_Phantom(self):
        self.delayDisplay("Phantom through every method")
        logic, names = self._methods()
        inputNode = self._phantomNode()
        before = inputNode.GetImageData().GetMTime()
        for name in names:
            nodes = logic.process(inputNode, method=name, factor=2, interpolatedNode=True, samples=2)
            self._checkOutputs(inputNode, nodes, 2)
            logic.showResults(nodes)
        self.assertEqual(inputNode.GetImageData().GetMTime(), before)
        if nodes.get("interpolated"):
            logic.showComparison(nodes["interpolated"], nodes["tensor"], nodes.get("uncertainty"), 0.4)
        self.delayDisplay("Phantom test passed")

    def test_DTIBrain(self):
        import SampleData

        self.delayDisplay("DTIBrain sample through every method")
        inputNode = SampleData.downloadSample("DTIBrain")
        self.assertTrue(inputNode.IsA("vtkMRMLDiffusionTensorVolumeNode"))
        logic, names = self._methods()
        for name in names:
            nodes = logic.process(inputNode, method=name, factor=2, interpolatedNode=True, samples=2)
            self._checkOutputs(inputNode, nodes, 2)
        logic.showResults(nodes)
        self.delayDisplay("DTIBrain test passed")
