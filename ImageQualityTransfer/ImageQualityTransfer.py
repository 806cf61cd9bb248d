import logging
import os
import shlex
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
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
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
# The engine's Python packages: import name -> pip requirement with pyproject.toml's minimum (Testing/slicer/
# test_fresh_install.py holds the two lists together equal to it; matplotlib, optional here, aside). The one list: the
# first Apply installs what is missing from it or older than its minimum (after asking), the self-test without asking.
ENGINE_PACKAGES = {
    "nibabel": "nibabel>=5.2",
    "dipy": "dipy>=1.9",
    "nrrd": "pynrrd>=1.0",
    "tqdm": "tqdm>=4.66",
    "threadpoolctl": "threadpoolctl>=3.1",  # the forests' thread limits (core/threads.py); installed where missing, as the others
}
# Slicer ships these: checked, never installed (pip would put numpy 2 under Slicer's packages built against numpy 1);
# one older than its minimum is refused in one line (bundledPackagesProblem)
BUNDLED_PACKAGES = {
    "numpy": "numpy>=1.26",
    "scipy": "scipy>=1.11",
}
TRACTOGRAPHY_MODULE = "TractographyInteractiveSeeding"  # SlicerDMRI
# The upsampling modes, in the order of the panel's combo box: the engine's slicer.upsampling.MODES, written out
# because the parameter class is made before the engine is importable.
UPSAMPLING_MODES = ("isotropic", "through-plane", "voxel-size")


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
        # one tr() text per paragraph, so that an edit leaves the other paragraphs' translations as they are
        paragraphs = [
            _("<p>Image Quality Transfer (IQT) super-resolves a low-resolution diffusion tensor image (DTI): it "
              "predicts the\n"
              "high-resolution tensors with a mapping learned from high-quality data, gives a voxel-wise "
              "<b>uncertainty</b>\n"
              "map where the method has one, and the <b>cubic interpolation</b> it must beat for side-by-side "
              "comparison.</p>"),
            _("<p><b>Input</b>: a DTI volume, or a diffusion-weighted (DWI) volume that is fitted to tensors first\n"
              "(weighted least squares). An optional brain label map restricts the work to the brain. A DWI's "
              "slices and volumes\n"
              "the tensor model does not fit (signal dropout, a dead or moved volume) are named in a note; tick "
              "<b>Exclude\n"
              "outliers</b> to fit without them.</p>"),
            _("<p><b>Which method</b>: the learned methods (3D-ESPCN CNNs, random forests IQT-RF / BIQT-RF) beat\n"
              "interpolation; pick one that gives an uncertainty to read the overlay; <i>cubic</i> is the "
              "baseline.\n"
              "CNN methods need PyTorch (installed on request through the PyTorch extension). Every method runs in "
              "a separate\n"
              "process (a DWI input's tensor fit too), so that Slicer stays responsive and Cancel stops it.</p>"),
            _("<p><b>Reading the uncertainty</b>: the overlay is the standard deviation of the predicted tensor, "
              "the mean over its\n"
              "6 elements, in µm²/ms (1 µm²/ms = 10⁻³ mm²/s: white matter's mean diffusivity is about 0.7). Beside "
              "it\n"
              "comes a <b>fibre direction uncertainty</b> map (degrees): how far the principal direction, which "
              "tractography\n"
              "follows, may be from the one shown (an RMS angle; on a noisy input it may read low). It is high "
              "where anisotropy is low, in grey matter and in "
              "lesions that\n"
              "destroy fibre organisation: do not trust tracts through such regions; pick it in <b>Display &gt; "
              "Uncertainty map</b>. Each map's colours run from 0 to its own\n"
              "99th percentile (the direction map up to 60°: a direction left to chance sits at its top), and "
              "only values from the model's median on clean scans (at this scan's diffusivity scale), or the map's "
              "own median over the input's brain where lower, are coloured (the legend says which), so that the anatomy shows through below it and a noisy "
              "scan shows more colour; untick <b>Display &gt; Above clean level or median only</b> to colour "
              "every voxel. Tick\n"
              "<b>Display &gt; Same colour scale</b> to put every run's maps of one kind on one scale, so that\n"
              "one colour means one value when comparing methods or scans.</p>"),
            _("<p><b>Tensor conventions</b>: outputs keep Slicer's DTI conventions (components in IJK axes, "
              "measurement frame =\n"
              "IJK to RAS rotation), so SlicerDMRI tractography seeds on them unchanged. The output grid has the "
              "voxel size\n"
              "divided by the factor, with its first voxel centred inside the first input voxel.</p>"),
            _("<p><b>Upsampling</b>: <i>isotropic</i> divides the voxel size by the factor along every axis; "
              "<i>through-plane</i>\n"
              "along the slice axis only (the input's thick axis, one at least 1.2 times each of the other two; "
              "else the\n"
              "axis along superior, as the models were trained); <i>target voxel size</i> takes the\n"
              "smallest factor per axis that reaches it. The learned methods have models for isotropic factors 2 "
              "and 3 and\n"
              "through-plane factors 2 and 3, not every method for every one: the method list shows those that run "
              "at the chosen\n"
              "factors. Interpolation takes any factors.</p>"),
            _("<p>See the <a href=\"{url}\">README</a> for details and batch use.</p>"),
        ]
        self.parent.helpText = ("\n" + "\n".join(paragraphs) + "\n").replace("{url}", README_URL)
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
# ImageQualityTransferFileReader
#


class ImageQualityTransferFileReader:
    """Slicer's reader of MRtrix images (.mif, .mif.gz, .mih), which Slicer has none for: a DWI, DTI or single-volume
    node by what the file holds (ImageQualityTransferLib/slicer/mif_nodes.py, where the work is, tested headless)."""

    def __init__(self, parent):
        self.parent = parent

    def description(self):
        return _("MRtrix image")

    def fileType(self):
        return "MRtrixImage"

    def extensions(self):
        from ImageQualityTransferLib.fileio.mif import READ_SUFFIXES  # numpy only: loads before any install

        return [_("MRtrix image") + " (" + " ".join("*" + s for s in READ_SUFFIXES) + ")"]

    def canLoadFile(self, filePath):
        from ImageQualityTransferLib.fileio.mif import is_mif

        return is_mif(filePath)

    def load(self, properties):
        filePath = properties["fileName"]
        try:
            from ImageQualityTransferLib.core.errors import IQTError
            from ImageQualityTransferLib.slicer import mif_nodes
        except ImportError as exc:  # the engine's packages not installed yet: the module's panel offers them
            self.parent.userMessages().AddMessage(vtk.vtkCommand.ErrorEvent, _(
                "Cannot read {path}: open the Image Quality Transfer module once to install what it needs ({error})"
            ).format(path=filePath, error=exc))
            return False
        import warnings

        try:
            with warnings.catch_warnings(record=True) as caught:  # the engine's notes on the file, shown to the user
                warnings.simplefilter("always")
                node = mif_nodes.load_mif(slicer.mrmlScene, filePath, properties.get("name"))
        except (IQTError, OSError) as exc:
            self.parent.userMessages().AddMessage(vtk.vtkCommand.ErrorEvent, str(exc))
            return False
        for note in dict.fromkeys(str(w.message) for w in caught):
            self.parent.userMessages().AddMessage(vtk.vtkCommand.WarningEvent, note)
        self.parent.loadedNodes = [node.GetID()]
        return True


#
# ImageQualityTransferParameterNode
#


@parameterNodeWrapper
class ImageQualityTransferParameterNode:
    """
    The parameters needed by the module.

    inputVolume - low-resolution DTI (or DWI, fitted first).
    maskVolume - optional brain label map on the input's grid.
    excludeOutliers - a DWI input is fitted without the slices and volumes the tensor model does not fit (signal
        dropout, a dead or moved volume), as `iqt fit --exclude-outliers`; nothing for a DTI input.
    method - method name from the engine's registry (ImageQualityTransferLib.methods.describe()).
    methodChosenBy - "user" for a method picked in the list (or by a model file), "module" for the module's default
        (preselected again as the factors change), "" for a scene saved before it was recorded (kept as a pick).
    modelPath - optional model file for learned methods (empty: the shipped model).
    upsamplingMode - "isotropic" (factor on every axis), "through-plane" (factor along the input's thick-slice
        axis only) or "voxel-size" (the smallest factor per axis reaching voxelSize).
    factor - upsampling factor of the isotropic and through-plane modes.
    voxelSize - wanted output voxel size (mm) of the voxel-size mode.
    samples - Monte Carlo samples for methods with parameter uncertainty.
    useGPU - run torch methods on the GPU (CUDA); refused with a message where PyTorch sees none.
    averageFlips - learned methods: average over the input's axis flips and in-plane swap (16 runs, lower error).
    uncertaintyMap - the uncertainty map shown over the result ("std", "direction", ...; a run without it shows "std").
    uncertaintyOpacity - opacity of the uncertainty overlay.
    uncertaintyFromMedian - each uncertainty map coloured only from its model's clean level or its median over the
        input's brain, whichever is lower, the DTI seen below (the name kept from before the clean level: saved scenes).
    sharedColourScale - every run's uncertainty maps on one colour scale per map, so that colours compare across runs.
    outputVolume - high-resolution tensor output (created when empty).
    uncertaintyVolume - uncertainty map output (created when the method gives one).
    interpolatedVolume - cubic interpolation of the input, for comparison.
    resultVolume, resultUncertainty, resultInterpolated - the last run's tensor, uncertainty and interpolated nodes,
        which Compare, Send to tractography and the opacity act on: kept here, so that they are saved with the scene,
        and dropped when their node leaves it (never another scene's node that took the same ID).
    """

    inputVolume: Union[vtkMRMLDiffusionTensorVolumeNode, vtkMRMLDiffusionWeightedVolumeNode, None]
    maskVolume: vtkMRMLLabelMapVolumeNode
    excludeOutliers: bool = False  # off: every volume fitted, as before the option
    method: str = ""  # empty: the Logic's default (the best shipped method with an uncertainty map that runs here)
    methodChosenBy: str = ""  # "user", "module" or "" (a scene of an earlier version): setParameterNode
    modelPath: str = ""  # bound by hand: the path widget's Path binding shows "." for an empty path
    upsamplingMode: Annotated[str, Choice(list(UPSAMPLING_MODES))] = "isotropic"  # bound by hand: translated labels
    factor: Annotated[int, WithinRange(2, 4)] = 2
    voxelSize: Annotated[float, WithinRange(0.1, 10.0)] = 1.0
    samples: Annotated[int, WithinRange(2, 200)] = 10  # 1 would give no parameter part  # the engine's default (cnn/inference.py, DEFAULT_SAMPLES)
    useGPU: bool = False
    averageFlips: bool = False
    uncertaintyMap: str = "std"  # bound by hand: the combo lists the last run's maps
    uncertaintyOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    uncertaintyFromMedian: bool = True
    sharedColourScale: bool = False
    outputVolume: vtkMRMLDiffusionTensorVolumeNode
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    interpolatedVolume: vtkMRMLDiffusionTensorVolumeNode
    resultVolume: vtkMRMLDiffusionTensorVolumeNode
    resultUncertainty: vtkMRMLScalarVolumeNode
    resultInterpolated: vtkMRMLDiffusionTensorVolumeNode


#
# ImageQualityTransferWidget
#


def progressText(message: str) -> str:
    """The engine's progress message (ImageQualityTransferLib/slicer/processing.py) in the user's language: its fixed
    phrases go through tr(); method names stay as they are."""
    import re

    fixed = {
        "reading the input volume": _("reading the input volume"),
        "fitting tensors to the diffusion-weighted volume": _("fitting tensors to the diffusion-weighted volume"),
        "checking the chosen mask against the brain the b0 shows": _("checking the chosen mask against the brain the b0 "
                                                                     "shows"),
        "creating output nodes": _("creating output nodes"),
        "done": _("done"),
    }
    if message in fixed:
        return fixed[message]
    m = re.fullmatch(r"running (\S+) \(x([\d,]+)\)", message)
    if m:
        return _("running {method} (x{factor})").format(method=m[1], factor=m[2])
    m = re.fullmatch(r"(\S+) interpolation for comparison", message)
    if m:
        return _("{method} interpolation for comparison").format(method=m[1])
    return message


def factorsText(factor) -> str:
    """"factor 2" or "factors 1,1,3" in the user's language (the engine's grid.describe in English) for an integer r,
    per-axis factors (fx, fy, fz) or their text ("2", "1,1,3")."""
    parts = factor.split(",") if isinstance(factor, str) else factor
    try:
        factors = [int(f) for f in parts]
    except TypeError:  # an integer r
        factors = [int(parts)]
    if len(factors) == 1:
        factors *= 3
    if factors[0] == factors[1] == factors[2]:
        return _("factor {factor}").format(factor=factors[0])
    return _("factors {factors}").format(factors=",".join(str(f) for f in factors))


def methodDescriptionText(name: str, english: str) -> str:
    """A method's description for the panel, in the user's language and plain words (the engine's describe() is
    English and speaks to the command line, e.g. "--init"); a method the table does not know keeps `english`."""
    texts = {
        "nearest": _("Nearest neighbour: each low-resolution voxel is copied into the high-resolution voxels it covers"),
        "linear": _("Trilinear interpolation of the six tensor elements"),
        "cubic": _("Cubic B-spline interpolation of the six tensor elements: the baseline the learned methods are "
                   "compared with"),
        "logeuclid-cubic": _("Cubic B-spline interpolation of the tensors' logarithms, which keeps every tensor "
                             "positive definite"),
        "global-linear": _("IQT global linear map: one learned linear map from each low-resolution neighbourhood to "
                           "the high-resolution voxels it covers"),
        "rf": _("IQT random forest: learned regression trees; the uncertainty map is how much the trees disagree"),
        "biqt": _("Bayesian IQT random forest: learned regression trees that also give an uncertainty, a predictive "
                  "standard deviation, one value for each low-resolution voxel's block"),
        "espcn": _("3D-ESPCN: a convolutional network trained on high-quality scans that corrects cubic "
                   "interpolation"),
        "espcn-hetero": _("3D-ESPCN that also estimates each voxel's uncertainty, a predictive standard deviation"),
        "espcn-hetero-var1": _("3D-ESPCN that also estimates each voxel's uncertainty: the average of several randomised "
                               "passes, its uncertainty split into the data's (intrinsic) and the network's (parameter) "
                               "parts"),
        "espcn-hetero-var2": _("3D-ESPCN that also estimates each voxel's uncertainty, as the one above with its "
                               "randomness drawn per feature map: intrinsic and parameter parts"),
        "deep": _("Deeper 3D-ESPCN: sees 9×9×9 low-resolution voxels around each voxel it refines"),
        "deep-hetero": _("Deeper 3D-ESPCN (9×9×9 voxels of context) that also estimates each voxel's uncertainty"),
        "deep-hetero-var1": _("Deeper 3D-ESPCN (9×9×9 voxels of context) that also estimates each voxel's "
                              "uncertainty: the average of several randomised passes, its uncertainty split into the "
                              "data's (intrinsic) and the network's (parameter) parts"),
    }
    return texts.get(name, english)


def runStatusText(name: Optional[str] = None, notes: Optional[str] = None, cancelled: bool = False,
                  model: Optional[str] = None, reason: Optional[str] = None) -> str:
    """The status line after a run: cancelled; done, with the output's name, the model a learned method ran and the
    run's notes (e.g. the brain estimated for an input fitted without a mask); or failed (no output `name`: the error
    dialog says why), so that no progress message of the run stays in it."""
    if cancelled and reason:  # stopped without Cancel: why (processing.py _check_still_in)
        return _("Stopped: {reason}").format(reason=reason)
    if cancelled:
        return _("Cancelled.")
    if not name:
        return _("Failed: see the error message.")
    if notes:  # the notes attribute is ASCII (slicer/mrml.py header_text): its escapes and the panel's unit shown
        import re

        notes = re.sub(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8}))",
                       lambda m: chr(int(m[1] or m[2] or m[3], 16)), notes).replace("um^2/ms", "\u00b5m\u00b2/ms")
    if model and notes:
        return _("Done: {name} ({model})\nNote: {notes}").format(name=name, model=model, notes=notes)
    if model:
        return _("Done: {name} ({model})").format(name=name, model=model)
    if notes:
        return _("Done: {name}\nNote: {notes}").format(name=name, notes=notes)
    return _("Done: {name}").format(name=name)


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
        self._allMethods = []  # every method the engine lists
        self._methods = []  # those offered at the current factors, as in the combo box
        self._factors = None  # per-axis factors of the current settings and input, None when they give none
        self._methodPreselected = False  # the method is the module's default, not the reader's choice: follows the factors
        self._pickedMethod = ""  # the reader's last choice: back in the list (factors again that it has a model for), it is selected
        self._factorsError = ""
        self._running = False
        self._cancelRequested = False
        self._cancelPressed = False  # Cancel itself, not a scene closed: the status line says why otherwise
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
        self.ui.upsamplingModeComboBox.connect("currentIndexChanged(int)", self.onUpsamplingModeChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.tractographyButton.connect("clicked(bool)", self.onTractographyButton)
        self.ui.installTorchButton.connect("clicked(bool)", self.onInstallTorchButton)
        self.ui.opacitySliderWidget.connect("valueChanged(double)", self.onOpacityChanged)
        self.ui.sharedScaleCheckBox.connect("toggled(bool)", self.onSharedScaleToggled)
        self.ui.fromMedianCheckBox.connect("toggled(bool)", self.onFromMedianToggled)
        self.ui.uncertaintyMapComboBox.connect("currentIndexChanged(int)", self.onUncertaintyMapChanged)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)

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
        if self._running:  # the run's input is closing with its scene: stop the run (the engine adds no output to
            self._cancelRequested = True  # a scene its input has left, slicer/processing.py)
        self._lastResult = None
        self._fillMapCombo({})
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
        # enter() comes here on every visit: the module's own default stays a default (it had become the pick, kept
        # at factors where another is preselected); a pick, or a method of an earlier version's scene, is kept
        byModule = bool(self._parameterNode) and self._parameterNode.methodChosenBy == "module"
        self._methodPreselected = byModule
        self._pickedMethod = self._parameterNode.method if self._parameterNode and not byModule else ""
        if self._parameterNode:
            # ui elements with a SlicerParameterName property are kept in sync with the parameter node
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            # maps of a scene saved by an earlier version (coloured from 0) follow the box as it shows
            self.logic.followFromMedian(self._parameterNode.uncertaintyFromMedian, self._parameterNode.sharedColourScale)
            self.ui.modelPathLineEdit.currentPath = self._parameterNode.modelPath
            self._fillMapCombo(self._result())  # a saved scene opened again: its run's maps, not an empty list
            self._checkCanApply()

    # ---------------------------------------------------------------- methods combo (filled from the engine)

    def onModelPathChanged(self, path: str) -> None:
        """A model file chosen selects the method it was trained for, where the Method list offers it (Apply says so
        otherwise), as `iqt upsample --model` runs a model's own method."""
        if self._parameterNode is None or self._parameterNode.modelPath == path:
            return
        self._parameterNode.modelPath = path
        try:
            named = self.logic.modelMethod(path) if str(path).strip() else None
        except Exception as exc:  # a sidecar refused (a named pipe, a device: model_files.sidecar_text) said, not raised
            self.ui.statusLabel.text = str(exc)
            return
        if named and named in [m["name"] for m in self._methods or []] and named != self._parameterNode.method:
            self._parameterNode.method = named
            self._parameterNode.methodChosenBy = "user"
            self._methodPreselected = False
            self._pickedMethod = named
            self._updateMethodGui()

    def populateMethods(self) -> None:
        try:  # the registry imports without the engine's packages, so this works on a fresh install
            self._allMethods = self.logic.availableMethods()
        except Exception as exc:
            logging.warning(f"ImageQualityTransfer: cannot list methods: {exc}")
            self._allMethods = []
            self.ui.methodDescriptionLabel.text = _("The processing engine is not ready: {error}").format(error=exc)
        self._methods = None  # refilled for the current factors
        self._updateUpsampling()
        self._updateMethodGui()

    def _fillMethodCombo(self, methods: list) -> None:
        """The combo box lists `methods` (refilled only when the list changes, so the selection stays)."""
        if self._methods is not None and [m["name"] for m in methods] == [m["name"] for m in self._methods]:
            return
        self._methods = methods
        combo = self.ui.methodComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for m in self._methods:
            combo.addItem(m["name"], m["name"])
        combo.blockSignals(wasBlocked)

    def onMethodChanged(self, index: int) -> None:
        if self._parameterNode and 0 <= index < len(self._methods):
            self._parameterNode.method = self._methods[index]["name"]
            self._parameterNode.methodChosenBy = "user"
            self._methodPreselected = False
            self._pickedMethod = self._parameterNode.method
        self._updateMethodGui()

    def _updateMethodGui(self) -> None:
        if not self._methods:
            return
        names = [m["name"] for m in self._methods]
        name = self._parameterNode.method if self._parameterNode else ""
        picked = getattr(self, "_pickedMethod", "")
        if picked and self._parameterNode and picked in names and name != picked:  # docs/slicer.md: a method picked in the list is kept
            name = picked
            self._parameterNode.method = picked
            self._parameterNode.methodChosenBy = "user"
            self._methodPreselected = False
        # a default kept over new factors stayed deep-hetero-var1 at Through-plane 3 on the 2.7 mm scans, where the
        # default is cubic (a review's panel_sticky.py); a reader's choice is kept, the note below saying why not
        if name not in names or getattr(self, "_methodPreselected", False):
            default = self.logic.defaultMethod(self._factors, getattr(self._parameterNode, "inputVolume", None))
            if default in names:
                name = default
                if self._parameterNode:
                    self._parameterNode.method = name
                    self._parameterNode.methodChosenBy = "module"
                    self._methodPreselected = True
        index = names.index(name) if name in names else 0
        combo = self.ui.methodComboBox
        if combo.currentIndex != index:
            wasBlocked = combo.blockSignals(True)
            combo.currentIndex = index
            combo.blockSignals(wasBlocked)
        info = self._methods[index]
        extra = []
        extra.append(_("gives an uncertainty map") if info.get("uncertainty") else _("no uncertainty map"))
        if info.get("learned"):
            extra.append(_("learned"))
        if info.get("needs_torch"):
            extra.append(_("needs PyTorch"))
        description = methodDescriptionText(info["name"], info["description"])
        self.ui.methodDescriptionLabel.text = (
            _("{description} ({properties})").format(description=description, properties=", ".join(extra))
            if extra else description)
        inputNode = getattr(self._parameterNode, "inputVolume", None)
        if info.get("learned") and inputNode is not None:  # said before Apply, not only in the run's note after it
            note = self.logic.anisotropicOutputNote(inputNode, self._factors)
            if note:
                self.ui.methodDescriptionLabel.text += " " + note
        self.ui.installTorchButton.enabled = bool(info.get("needs_torch")) and not self.logic.torchAvailable()
        self.ui.averageFlipsCheckBox.enabled = bool(info.get("learned"))  # interpolation: nothing to average

    # ---------------------------------------------------------------- upsampling (factors from the engine)

    def onUpsamplingModeChanged(self, index: int) -> None:
        if self._parameterNode and 0 <= index < len(UPSAMPLING_MODES):
            self._parameterNode.upsamplingMode = UPSAMPLING_MODES[index]

    def _updateUpsampling(self) -> None:
        """The mode's controls, the factors and output voxel size for the input, and the methods offered at those
        factors (learned methods only where they have a shipped model), with a line saying what is left out."""
        p = self._parameterNode
        mode = p.upsamplingMode if p and p.upsamplingMode in UPSAMPLING_MODES else UPSAMPLING_MODES[0]
        combo = self.ui.upsamplingModeComboBox
        if combo.currentIndex != UPSAMPLING_MODES.index(mode):
            wasBlocked = combo.blockSignals(True)
            combo.currentIndex = UPSAMPLING_MODES.index(mode)
            combo.blockSignals(wasBlocked)
        bySize = mode == "voxel-size"
        for name in ("factorSpinBox", "factorSpinBoxLabel"):
            getattr(self.ui, name).setVisible(not bySize)
        for name in ("voxelSizeSpinBox", "voxelSizeSpinBoxLabel"):
            getattr(self.ui, name).setVisible(bySize)

        self._factors, self._factorsError = None, ""
        inputNode = p.inputVolume if p else None
        if p:
            try:
                self._factors = self.logic.upsamplingFactors(inputNode, mode, p.factor, p.voxelSize)
            except self.logic.engineError() as exc:  # nothing to upsample, or no input to take the spacing from
                self._factorsError = str(exc)
        if self._factors is None:
            self.ui.factorsLabel.text = ""
        elif inputNode:
            size = self.logic.outputSpacing(inputNode, self._factors)
            self.ui.factorsLabel.text = _("{factors} → {size} mm").format(
                factors=factorsText(self._factors), size=" × ".join(f"{x:.2f}" for x in size))
        else:
            self.ui.factorsLabel.text = factorsText(self._factors)

        if self._factors:
            offered = self.logic.offeredMethods(self._allMethods, self._factors)
        else:  # no factors yet: the list stays as it was (every method at first)
            offered = self._allMethods if self._methods is None else self._methods
        self._fillMethodCombo(offered)
        names = [m["name"] for m in offered]
        left = [m for m in self._allMethods if m["name"] not in names]
        if self._factorsError:
            self.ui.upsamplingNoteLabel.text = self._factorsError
        elif left and self._factors:
            self.ui.upsamplingNoteLabel.text = _(
                "Not offered at {factors}, which they have no model for: {methods}. Interpolation takes any "
                "factors.").format(factors=factorsText(self._factors), methods=", ".join(m["name"] for m in left))
        else:
            self.ui.upsamplingNoteLabel.text = ""

    def _updateExcludeOutliers(self) -> None:
        """Exclude outliers is for a DWI input, whose tensors the module fits: disabled, saying so, for a DTI input."""
        inputNode = self._parameterNode.inputVolume if self._parameterNode else None
        dwi = bool(inputNode and inputNode.IsA("vtkMRMLDiffusionWeightedVolumeNode"))
        self.ui.excludeOutliersCheckBox.enabled = dwi
        if dwi:
            self.ui.excludeOutliersCheckBox.toolTip = _(
                "Fit the tensors without the slices and volumes the tensor model does not fit (signal dropout, a dead "
                "or moved volume), as 'iqt fit --exclude-outliers' does; the note under the status line says what "
                "was left out. Off: every volume is fitted and those found are named in a note.")
        else:
            self.ui.excludeOutliersCheckBox.toolTip = _(
                "Only for a diffusion-weighted (DWI) input volume, whose tensors are fitted here: a DTI input's "
                "tensors are already fitted. Fit the DWI with 'iqt fit --exclude-outliers' to make them without the "
                "slices and volumes the tensor model does not fit.")

    def _checkCanApply(self, caller=None, event=None) -> None:
        self._updateUpsampling()
        self._updateMethodGui()
        self._updateExcludeOutliers()
        if self._running:
            return
        if not (self._parameterNode and self._parameterNode.inputVolume and self._methods):
            self.ui.applyButton.toolTip = _("Select a DTI or DWI input volume")
            self.ui.applyButton.enabled = False
        elif self._factors is None:
            self.ui.applyButton.toolTip = _("Change the upsampling: {reason}").format(reason=self._factorsError)
            self.ui.applyButton.enabled = False
        else:
            self.ui.applyButton.toolTip = _("Super-resolve the input volume ({factors})").format(
                factors=factorsText(self._factors))
            self.ui.applyButton.enabled = True
        result = self._result()
        self.ui.compareButton.enabled = bool(result.get("tensor") and result.get("interpolated")
                                             and result["tensor"].GetID() != result["interpolated"].GetID())
        self.ui.compareButton.toolTip = (
            _("Cubic interpolation | the result, side by side, linked") if self.ui.compareButton.enabled
            # linear or nearest compare too: the comparison is cubic whatever method runs (results.COMPARISON_METHOD)
            else _("Run a method other than cubic to compare its result with the cubic interpolation"))
        dmri = self.logic.tractographyAvailable()
        self.ui.tractographyButton.enabled = bool(result.get("tensor")) and dmri
        # set in both cases: the install hint is not left standing once SlicerDMRI is there (the .ui's text)
        self.ui.tractographyButton.toolTip = (
            _("Open SlicerDMRI tractography seeding on the high-resolution DTI") if dmri
            else _("Install the SlicerDMRI extension to seed tractography"))

    # ---------------------------------------------------------------- apply / cancel

    def _setInputsEnabled(self, enabled: bool) -> None:
        """Every control but Apply/Cancel, disabled while a run is in progress."""
        for name in ("inputsCollapsibleButton", "methodCollapsibleButton", "outputsCollapsibleButton",
                     "displayCollapsibleButton", "advancedCollapsibleButton"):
            getattr(self.ui, name).enabled = enabled

    def onApplyButton(self) -> None:
        if self._running:
            self._cancelRequested = self._cancelPressed = True
            self.ui.statusLabel.text = _("Cancelling...")
            return
        problem = self.logic.bundledPackagesProblem()  # before any install is offered
        if problem:
            self.ui.statusLabel.text = problem
            return
        if self.logic.missingPackages():
            with slicer.util.tryWithErrorDisplay(_("Installing the Python packages failed."), waitCursor=True):
                if not self.logic.installDependencies(askConfirmation=True):
                    self.ui.statusLabel.text = _("Image Quality Transfer needs these Python packages: {packages}").format(
                        packages=", ".join(self.logic.missingPackages()))
                    return
        p = self._parameterNode
        self._updateUpsampling()  # the factors for the input as it is now (its spacing may have changed)
        if self._factors is None:
            self.ui.statusLabel.text = self._factorsError
            return
        model = str(p.modelPath).strip() or None
        try:
            modelMethod = self.logic.modelMethod(model) if model else None
        except Exception as exc:  # the sidecar refused (model_files.sidecar_text)
            self.ui.statusLabel.text = str(exc)
            return
        if modelMethod and modelMethod != p.method:
            self.ui.statusLabel.text = _("The model file is a {modelMethod} model: choose {modelMethod} as the Method to "
                                         "run it, or clear Advanced > Model file").format(modelMethod=modelMethod)
            return
        self._running = True
        self._cancelRequested = self._cancelPressed = False
        self._setInputsEnabled(False)
        self.ui.applyButton.text = _("Cancel")
        self.ui.applyButton.toolTip = _("Stop the processing")
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.value = 0
        cancelled = False
        name = notes = madeBy = reason = None  # the output's, once the run has made it and shown it
        try:
            with slicer.util.tryWithErrorDisplay(_("Image Quality Transfer failed.")):  # no busy cursor: Cancel stays live
                try:
                    nodes = self.logic.process(
                        p.inputVolume,
                        outputNode=p.outputVolume,
                        method=p.method,
                        factor=self._factors,
                        voxelSize=p.voxelSize if p.upsamplingMode == "voxel-size" else None,
                        maskNode=p.maskVolume,
                        uncertaintyNode=p.uncertaintyVolume,
                        interpolatedNode=p.interpolatedVolume if p.interpolatedVolume else True,
                        samples=p.samples,
                        useGPU=p.useGPU,
                        # left checked but greyed out for interpolation (_updateMethodGui), which the Logic refuses
                        averageFlips=bool(p.averageFlips) and any(
                            m["name"] == p.method and m.get("learned") for m in getattr(self, "_methods", None) or []),
                        excludeOutliers=p.excludeOutliers,
                        modelPath=model,
                        progressCallback=self._onProgress,
                    )
                except self.logic.cancelledError() as exc:
                    cancelled = True
                    reason = None if getattr(self, "_cancelPressed", False) else str(exc)
                else:
                    # the scene closed as the run ended (in its last progress call): its nodes left with it
                    cancelled = not slicer.mrmlScene.IsNodePresent(nodes["tensor"])
                if not cancelled:
                    # the output selectors are left as they are: results are named after the method, so the next
                    # run with another method makes (or reuses) that method's nodes instead of overwriting these
                    self._lastResult = nodes
                    p.resultVolume = nodes["tensor"]
                    p.resultInterpolated = nodes.get("interpolated")
                    p.resultUncertainty = nodes.get("uncertainty")  # the map shown, once shown (below)
                    self._fillMapCombo(nodes)
                    p.resultUncertainty = self.logic.showResults(nodes, opacity=p.uncertaintyOpacity,
                                                                 shared=p.sharedColourScale,
                                                                 fromMedian=p.uncertaintyFromMedian,
                                                                 shownMap=p.uncertaintyMap)
                    name = nodes["tensor"].GetName()
                    notes = nodes["tensor"].GetAttribute(self.logic.notesAttribute())
                    madeBy = nodes["tensor"].GetAttribute(self.logic.modelAttribute())
        finally:
            self._running = False
            self._setInputsEnabled(True)
            self.ui.applyButton.text = _("Apply")
            self.ui.progressBar.setVisible(False)
            self.ui.statusLabel.text = runStatusText(name, notes, cancelled or self._cancelRequested, madeBy, reason)
            self._checkCanApply()

    def _onProgress(self, fraction, message) -> bool:
        """Progress from the Logic; returns False to ask it to stop (Cancel pressed)."""
        if fraction is not None:
            self.ui.progressBar.value = int(round(100 * fraction))
        if message:
            self.ui.statusLabel.text = progressText(message)
        slicer.app.processEvents()
        return not self._cancelRequested

    def _result(self) -> dict:
        """The last run's nodes: this session's run (with every uncertainty map) while its output is the parameter
        node's, else those the parameter node keeps (a saved scene opened again); none once its output left the scene."""
        p = self._parameterNode
        tensor = p.resultVolume if p else None
        if not tensor:
            return {}
        if self._lastResult and self._lastResult.get("tensor") is tensor:
            return self._lastResult
        return {"tensor": tensor, "uncertainty": p.resultUncertainty, "interpolated": p.resultInterpolated,
                "uncertainties": self.logic.runMaps(tensor, p.resultUncertainty)}

    # ---------------------------------------------------------------- display

    def onOpacityChanged(self, value: float) -> None:
        self.logic.setUncertaintyOpacity(value, self._result())

    def onSharedScaleToggled(self, shared: bool) -> None:
        if self._parameterNode is not None:
            self.logic.setSharedColourScale(bool(shared), fromMedian=self._parameterNode.uncertaintyFromMedian)

    def _fillMapCombo(self, nodes: dict) -> None:
        """The Uncertainty map list: the run's maps by their legends' titles, the chosen one selected (else the main)."""
        combo = self.ui.uncertaintyMapComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        maps = nodes.get("uncertainties") or {}
        for key in maps:
            combo.addItem(self.logic.legendTitle(key), key)
        keys = list(maps)
        chosen = self._parameterNode.uncertaintyMap if self._parameterNode else None
        main = next((k for k, n in maps.items() if n is nodes.get("uncertainty")), None)
        shown = chosen if chosen in keys else main
        if shown in keys:
            combo.currentIndex = keys.index(shown)
        combo.enabled = bool(keys)
        combo.blockSignals(wasBlocked)

    def onUncertaintyMapChanged(self, index: int) -> None:
        key = self.ui.uncertaintyMapComboBox.itemData(index)
        p = self._parameterNode
        if not key or p is None:
            return
        p.uncertaintyMap = key
        shown = self.logic.showUncertaintyMap(self._result(), key, opacity=p.uncertaintyOpacity)
        if shown is not None:
            p.resultUncertainty = shown  # what Compare and the opacity act on

    def onFromMedianToggled(self, fromMedian: bool) -> None:
        if self._parameterNode is not None:
            self.logic.setSharedColourScale(self._parameterNode.sharedColourScale, fromMedian=bool(fromMedian))

    def onCompareButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot show the comparison."), waitCursor=True):
            result = self._result()
            self.logic.showComparison(result.get("interpolated"), result.get("tensor"),
                                      self._parameterNode.resultUncertainty,  # the map shown (Uncertainty map)
                                      opacity=self._parameterNode.uncertaintyOpacity)

    def onTractographyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot start tractography seeding."), waitCursor=True):
            self.logic.sendToTractography(self._result().get("tensor"))

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

    def bundledPackagesProblem(self) -> str:
        """One line for a BUNDLED_PACKAGES package this Slicer lacks or has older than the engine's minimum; "" where
        all are there. The module never installs them."""
        for name, req in BUNDLED_PACKAGES.items():
            if ImageQualityTransferLogic.missingPackages(self, {name: req}):  # not an instance stub (tests)
                dist, _sep, minimum = req.partition(">=")
                try:
                    import importlib.metadata

                    have = importlib.metadata.version(dist)
                except Exception:
                    have = None
                what = (_("this Slicer's {package} {have} is older than the {minimum} the engine needs").format(
                    package=dist, have=have, minimum=minimum) if have else
                    _("this Slicer has no {package}, which the engine needs ({minimum} or later)").format(
                    package=dist, minimum=minimum))
                return _("{what}: use a Slicer that ships {package} {minimum} or later (the module does not install "
                         "{package} into Slicer: packages built against its {package} would break)").format(
                    what=what, package=dist, minimum=minimum)
        return ""

    def missingPackages(self, packages: Optional[dict] = None) -> list:
        """The pip requirements of `packages` (ENGINE_PACKAGES) whose module is not importable here, or whose installed
        version is older than the requirement's minimum (an old scipy or dipy had been taken, to fail inside a run)."""
        import importlib
        import importlib.metadata
        import importlib.util
        import re

        def release(text):  # "1.26.4", "2.0.0rc1" -> (1, 26, 4), (2, 0, 0)
            return tuple(int(part) for part in re.findall(r"\d+", re.match(r"[\d.]*", text).group()))

        importlib.invalidate_caches()  # packages installed a moment ago are seen
        missing = []
        for name, req in (ENGINE_PACKAGES if packages is None else packages).items():
            if importlib.util.find_spec(name) is None:
                missing.append(req)
                continue
            dist, _sep, minimum = req.partition(">=")
            try:
                have = release(importlib.metadata.version(dist))
            except importlib.metadata.PackageNotFoundError:  # importable, with no version to read: taken
                continue
            want = release(minimum)
            width = max(len(have), len(want))
            if have + (0,) * (width - len(have)) < want + (0,) * (width - len(want)):
                missing.append(req)
        return missing

    def installDependencies(self, askConfirmation: bool = True) -> bool:
        """Install the missing engine packages with Slicer's pip (slicer.packaging where this Slicer has it, else
        slicer.util.pip_install), after asking unless askConfirmation is False; True when none is missing after, False
        when the user declines (Cancel in either route's dialog)."""
        bundled = self.bundledPackagesProblem()
        if bundled:
            raise RuntimeError(bundled)
        missing = self.missingPackages()
        if not missing:
            return True
        try:
            import slicer.packaging as packaging
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            try:
                packaging.pip_ensure(missing, prompt_install=askConfirmation, requester=_("Image Quality Transfer"),
                                     skip_in_testing=False)
            except RuntimeError as exc:  # Cancel in its dialog: RuntimeError("User declined package installation")
                if "declined" not in str(exc).lower():
                    raise
                return False
        else:
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                _("Image Quality Transfer needs these Python packages: {packages}. Install them now?").format(
                    packages=", ".join(missing))):
                return False
            slicer.util.pip_install(" ".join(missing))
        return not self.missingPackages()

    def _engineOnPath(self) -> None:
        """The engine importable, its marked lines (core/i18n.py) translated by Slicer's translate, in the contexts
        Slicer's string extraction gives them."""
        if self.moduleDir() not in sys.path:
            sys.path.insert(0, self.moduleDir())
        from ImageQualityTransferLib.core import i18n

        if i18n.installed() is None:
            i18n.install(translate)

    def engine(self):
        """The engine's Slicer processing module, installing missing packages first after asking. Without a main
        window there is no one to ask, so nothing is installed: the error says how."""
        bundled = self.bundledPackagesProblem()
        if bundled:  # said before any install or run
            raise RuntimeError(bundled)
        missing = self.missingPackages()
        if missing and self._batch():
            raise RuntimeError(_("Missing Python packages: {packages}. Without a main window nothing is installed "
                                 "unasked: install them with Slicer's Python (PythonSlicer -m pip install {args}) or "
                                 "call logic.installDependencies(askConfirmation=False) first").format(
                packages=", ".join(missing), args=" ".join(shlex.quote(m) for m in missing)))
        if missing and not self.installDependencies(askConfirmation=True):
            raise RuntimeError(_("Missing Python packages: {packages}").format(packages=", ".join(self.missingPackages())))
        self._engineOnPath()
        from ImageQualityTransferLib.slicer import processing as slicer_processing

        return slicer_processing

    def display(self):
        """The engine's Qt-free display functions (slice layers, comparison, seeding)."""
        self._engineOnPath()
        from ImageQualityTransferLib.slicer import display

        return display

    def runMaps(self, tensorNode, shownNode=None) -> dict:
        """{map: node} of the uncertainty maps made with `tensorNode` by the module's run (found in the scene, so a
        saved scene opened again lists them too), `shownNode` (the overlay the parameter node kept) for its own map."""
        self._engineOnPath()
        from ImageQualityTransferLib.slicer import results

        return results.run_maps(slicer.mrmlScene, tensorNode, shownNode)

    def saveUncertaintyMap(self, mapNode, path: str) -> str:
        """Write a run's uncertainty map node to `path` (.nii.gz, .nii, .nrrd, .nhdr) as `iqt upsample --uncertainty`
        writes it: mm²/s (the node holds µm²/ms), its kind and unit in the header `iqt evaluate` reads, a run record.
        Slicer's own Save writes the node's µm²/ms with no unit (docs/slicer.md). Returns the path written."""
        self._engineOnPath()
        from ImageQualityTransferLib.slicer import results

        return results.save_map(mapNode, path)

    def legends(self):
        """The engine's Qt-free colours and legends of the uncertainty maps."""
        self._engineOnPath()
        from ImageQualityTransferLib.slicer import legends

        return legends

    def engineError(self):
        """The exception the engine raises for a request it cannot do (the message says what to change)."""
        self._engineOnPath()
        from ImageQualityTransferLib.core.errors import IQTError

        return IQTError

    def cancelledError(self):
        """The exception a cancelled run raises."""
        self._engineOnPath()
        from ImageQualityTransferLib.slicer.processing import Cancelled

        return Cancelled

    def modelAttribute(self) -> str:
        """The attribute that names the model a learned method ran on its tensor output node."""
        self._engineOnPath()
        from ImageQualityTransferLib.slicer.mrml import MODEL_ATTRIBUTE

        return MODEL_ATTRIBUTE

    def notesAttribute(self) -> str:
        """The attribute that holds a run's notes on its tensor output node."""
        self._engineOnPath()
        from ImageQualityTransferLib.slicer.mrml import NOTES_ATTRIBUTE

        return NOTES_ATTRIBUTE

    def availableMethods(self, factor=None) -> list:
        """[{name, description, uncertainty, learned, needs_torch}] from the engine's registry; needs none of the
        packages that Apply installs, so the list is filled on a fresh install. With `factor` (r or (fx, fy, fz)),
        only the methods that run at it (see offeredMethods)."""
        self._engineOnPath()
        from ImageQualityTransferLib import methods

        out = []
        for entry in methods.describe():
            if entry["learned"] and not entry["shipped"]:
                continue  # trainable with 'iqt train', but nothing to run without a model file
            entry = dict(entry)
            entry["needs_torch"] = bool(entry["torch"])
            out.append(entry)
        return out if factor is None else self.offeredMethods(out, factor)

    def offeredMethods(self, methods: list, factor) -> list:
        """The entries of `methods` (availableMethods) that run at `factor`: interpolation at any factors, a learned
        method only at the factors of its shipped models (a CNN is kept before PyTorch is installed)."""
        self._engineOnPath()
        from ImageQualityTransferLib.slicer import upsampling

        return upsampling.offered(methods, factor)

    def upsamplingFactors(self, inputNode, mode: str = "isotropic", factor: int = 2,
                          voxelSize: Optional[float] = None) -> tuple:
        """Per-axis factors (fx, fy, fz) in the input's IJK axes for an upsampling mode (UPSAMPLING_MODES): factor on
        every axis, factor along the thick axis (else the axis along S, as the CLI's through-plane --model:
        orientation.through_plane_axis), or the smallest factors reaching voxelSize
        mm. Raises the engine's IQTError (engineError) saying what to change."""
        self._engineOnPath()
        from ImageQualityTransferLib.slicer import upsampling

        affine = None
        if inputNode is not None and hasattr(inputNode, "GetIJKToRASMatrix"):
            m = vtk.vtkMatrix4x4()
            inputNode.GetIJKToRASMatrix(m)
            affine = [[m.GetElement(i, j) for j in range(4)] for i in range(4)]
        return upsampling.factors_for(mode, factor, voxelSize, inputNode.GetSpacing() if inputNode else None, affine)

    def outputSpacing(self, inputNode, factor) -> tuple:
        """The output's voxel size (mm) per IJK axis: the input's divided by the factors."""
        self._engineOnPath()
        from ImageQualityTransferLib.slicer import upsampling

        return upsampling.output_spacing(inputNode.GetSpacing(), factor)

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
        """Slicer's Python launcher for the worker process: on PATH, else in the application's bin folder (where
        Slicer keeps it; sys.executable there can be the application itself), else beside sys.executable."""
        exe = shutil.which("PythonSlicer")
        if exe:
            return exe
        name = "PythonSlicer" + (".exe" if os.name == "nt" else "")
        home = getattr(getattr(slicer, "app", None), "slicerHome", None)
        for folder in ([os.path.join(home, "bin")] if home else []) + [os.path.dirname(sys.executable)]:
            candidate = os.path.join(folder, name)
            if os.path.exists(candidate):
                return candidate
        return sys.executable

    # ---------------------------------------------------------------- processing

    def defaultMethod(self, factor=None, inputNode=None) -> str:
        """The module's default: the best shipped method with an uncertainty map that runs in this Python at `factor`
        (deep-hetero-var1, as accurate as the command line's default deep: the overlay is what the module shows
        after Apply), else the engine's default there (`iqt methods`; cubic where no learned method has a model);
        cubic where `factor` makes `inputNode`'s voxels far from near-isotropic, which the learned methods' run
        would warn against (`anisotropicOutputNote`)."""
        self._engineOnPath()
        from ImageQualityTransferLib import methods

        spacing = inputNode.GetSpacing() if inputNode is not None and hasattr(inputNode, "GetSpacing") else None
        return methods.viewer_default(factor, spacing)

    def _outputAnisotropy(self, inputNode, factor) -> Optional[tuple]:
        """(output voxel size text, longest over shortest side) where `factor` makes `inputNode`'s voxels far from the
        near-isotropic ones the learned methods were trained on (methods/base.py off_training_anisotropy), else None."""
        if inputNode is None or not factor or not hasattr(inputNode, "GetSpacing"):
            return None
        self._engineOnPath()
        from ImageQualityTransferLib.methods.base import off_training_anisotropy

        ratio = off_training_anisotropy(inputNode.GetSpacing(), factor)
        if ratio is None:
            return None
        return " × ".join(f"{x:.2f}" for x in self.outputSpacing(inputNode, factor)), f"{ratio:.1f}"

    def anisotropicOutputNote(self, inputNode, factor) -> str:
        """The panel's line, before Apply, where a learned method's run would warn that its output voxels are far from
        near-isotropic (Through-plane 3 on a 2.7 mm isotropic scan: 2.71 × 0.90 × 2.70 mm), naming cubic; "" else."""
        found = self._outputAnisotropy(inputNode, factor)
        if found is None:
            return ""
        return _("At {factors} the output voxels are {size} mm ({ratio}:1), far from the near-isotropic voxels the "
                 "learned methods were trained on: choose cubic, or factors that make them near-isotropic (Target "
                 "voxel size picks them).").format(factors=factorsText(factor), size=found[0], ratio=found[1])

    def modelMethod(self, modelPath: str) -> Optional[str]:
        """The method a model file's sidecar names (None where it cannot be read: the run then says what is wrong); an
        IQTError in one line for a sidecar that is no regular file or is too large, before it is opened."""
        self._engineOnPath()
        from ImageQualityTransferLib.fileio import model_files

        return model_files.method_named(modelPath)

    def process(self, inputNode, outputNode=None, method: Optional[str] = None, factor=2, maskNode=None,
                uncertaintyNode=None, interpolatedNode=None, samples: int = 10, useGPU: bool = False,
                modelPath: Optional[str] = None, progressCallback=None, separateProcess: Optional[bool] = None,
                averageFlips: bool = False, excludeOutliers: bool = False, voxelSize: Optional[float] = None) -> dict:
        """Super-resolve `inputNode` (DTI, or DWI fitted first) and return the nodes:
        {"tensor", "uncertainty" (or None), "uncertainties" {key: node}, "interpolated" (or None)}.

        factor: an integer r (r along each axis) or per-axis factors (fx, fy, fz) in the input's IJK axes, e.g. from
        upsamplingFactors; learned methods run at the factors they have models for (`iqt methods`, methods.ready),
        interpolation at any; a learned method named without a model for them is refused before any node is made,
        as `iqt upsample` and `iqt batch` refuse it (the engine's `choose_factors`).
        voxelSize: the Target voxel size mode's wanted voxel size (mm): the factors are chosen from it and the input's
        spacing (upsamplingFactors), in place of `factor`, and a refusal or note then names a coarser voxel size whose
        factors have a model.

        outputNode / uncertaintyNode / interpolatedNode: existing nodes to fill, or None to create new ones;
        interpolatedNode=True creates the cubic comparison without a target node. The input is never modified.
        method: None runs `defaultMethod(factor)`, the best with an uncertainty map that has a model for the factors.
        modelPath: a model file for the learned method (None: the shipped one); without `method`, the method its sidecar
        names runs, as `iqt upsample --model` does.
        averageFlips: learned methods averaged over the input's axis flips and in-plane swap (engine `--tta`).
        excludeOutliers: a DWI input is fitted without the slices and volumes the tensor model does not fit (engine
        `iqt fit --exclude-outliers`), and its note says what was left out; nothing for a DTI input.
        progressCallback(fraction, message): fraction in [0, 1]; while a separate process works it is also called about
        ten times a second with the last fraction and message None, so that a GUI can process its events; it may
        return False to cancel. With a main window every method runs in a
        separate PythonSlicer process, so that the GUI stays live (a forest run in-process held it up to 2 s between
        progress calls on a 3 mm scan), and Cancel kills it; in batch mode (no main window) only the torch
        methods do. separateProcess overrides either.
        """
        import time

        if not inputNode:
            raise self.engineError()(_("no input volume: select a diffusion tensor (DTI) or diffusion-weighted (DWI) "
                                       "volume"))
        sp = self.engine()
        if voxelSize is not None:
            factor = self.upsamplingFactors(inputNode, "voxel-size", voxelSize=voxelSize)
        defaulted = not method and not modelPath
        method = method or (self.modelMethod(modelPath) if modelPath else None) or self.defaultMethod(factor, inputNode)
        # the engine's rule for factors without a model, as the command line applies it: said before any node is made
        choice = sp.choose_factors(None if defaulted else method, factor, inputNode.GetSpacing() if voxelSize else None,
                                   voxelSize, modelPath or None)
        if choice.refusal:
            raise self.engineError()(choice.refusal)
        # the Logic's own interpolation fallback with flips asked for: dropped with a note, where a caller who named
        # cubic is refused (slicer/processing.py, as `iqt upsample --method cubic --tta`)
        flipsDropped = bool(averageFlips) and defaulted and not sp.method_info(method)["learned"]
        if flipsDropped:
            averageFlips = False
        needsTorch = sp.method_needs_torch(method)
        if separateProcess is None:
            separateProcess = needsTorch or not self._batch()
        if needsTorch and not self.torchAvailable():
            if self._batch() or not self.installTorch(askConfirmation=True):
                raise RuntimeError(_("The method '{method}' needs PyTorch: install the PyTorch extension and press "
                                     "'Install PyTorch' in the Advanced section").format(method=method))
        cancelled = [False]
        last = [0.0]

        def progress(fraction, message):
            if fraction is not None:  # None: the engine's heartbeat, which keeps the bar where it is
                last[0] = fraction
            if progressCallback is not None and progressCallback(last[0], message) is False:
                cancelled[0] = True
            if message:
                logging.info(f"ImageQualityTransfer: {message}")

        targets = {"tensor": outputNode, "uncertainty": uncertaintyNode,
                   "interpolated": interpolatedNode if interpolatedNode not in (True, False) else None}
        startTime = time.time()
        logging.info("Processing started")
        try:
            nodes = sp.run_on_nodes(
                slicer.mrmlScene, inputNode, method, factor=factor, mask_node=maskNode, model=modelPath,
                samples=samples, device="cuda" if useGPU else "cpu", interpolate=bool(interpolatedNode),
                tta=bool(averageFlips), targets=targets, progress=progress, cancel=lambda: cancelled[0],
                python_executable=self.pythonSlicerExecutable() if separateProcess else None,
                exclude_outliers=bool(excludeOutliers),
            )
        except self.engineError() as exc:  # a refusal the panel knows (a NRRD header's) in the user's language
            # a model file for other factors than the Target voxel size chose: the size that gives its own named
            said = sp.model_refusal(exc, choice, voxelSize) if type(exc) is self.engineError() else str(exc)
            if type(exc) is not self.engineError() or said == str(exc):
                raise
            raise self.engineError()(said) from None
        logging.info(f"Processing completed in {time.time() - startTime:.2f} seconds")
        anisotropic = self._outputAnisotropy(inputNode, factor) if defaulted else None
        if anisotropic and not sp.method_info(method)["learned"]:  # defaultMethod chose cubic for these voxels
            self._addNote(nodes["tensor"], _("at {factors} the output voxels are {size} mm ({ratio}:1), far from the "
                                             "near-isotropic voxels the learned methods were trained on, so the "
                                             "interpolation baseline ({method}) ran; choose factors that make them "
                                             "near-isotropic (Target voxel size picks them) for a learned one").format(
                factors=factorsText(factor), size=anisotropic[0], ratio=anisotropic[1], method=method))
        elif defaulted and not sp.method_info(method)["learned"]:  # methods.default_method fell back to interpolation
            self._addNote(nodes["tensor"], _("no learned model ships for {factors}, so the interpolation baseline "
                                             "({method}) ran; choose a Method and an Advanced > Model file trained for "
                                             "these factors for a learned one").format(
                factors=factorsText(factor), method=method) + choice.hint)
        if flipsDropped:
            self._addNote(nodes["tensor"], _("Average over flips was left out: the interpolation baseline ({method}) "
                                             "that ran is unchanged by flips and swaps").format(method=method))
        return nodes

    def _addNote(self, node, note: str) -> None:
        """`note` added to the run's notes on its tensor output (shown with the result)."""
        from ImageQualityTransferLib.slicer.mrml import header_text

        notes = node.GetAttribute(self.notesAttribute())
        node.SetAttribute(self.notesAttribute(), header_text("\n".join([*([notes] if notes else []), note])))

    # ---------------------------------------------------------------- display (the Qt-free part is the engine's)

    @staticmethod
    def legendTitle(key: str) -> str:
        """Colour-legend title of an uncertainty map, with its unit (label formats are the engine's)."""
        titles = {
            "std": _("Tensor SD (µm²/ms)"),
            "std_intrinsic": _("Intrinsic SD (µm²/ms)"),
            "std_parameter": _("Parameter SD (µm²/ms)"),
            "md_std": _("MD SD (µm²/ms)"),
            "fa_std": _("FA SD (unitless)"),
            "direction": _("Direction SD (degrees)"),
        }
        return titles.get(key, _("Uncertainty"))

    def _titles(self, nodes: dict) -> dict:
        return {key: self.legendTitle(key) for key in (nodes.get("uncertainties") or {})}

    def showResults(self, nodes: dict, opacity: float = 0.5, shared: bool = False, fromMedian: bool = True,
                    shownMap: Optional[str] = None):
        """IQT tensor as background, its uncertainty as foreground overlay with a colour legend, in every view;
        `shared`: every run's maps on one colour scale per map; `fromMedian`: each coloured from its median up;
        `shownMap`: the map on top ("std", "direction", ...; else the main one). Returns the map node on top."""
        display = self.display()
        display.show_results(slicer.mrmlScene, nodes, opacity, self._titles(nodes), shared=shared,
                             shared_note=_("shared scale"), clipped_note=_("top colour: ≥ {top}"),
                             from_median=fromMedian, floor_note=_("≥ median {floor}"),
                             clean_note=_("≥ clean-scan\nlevel {floor}"), shown_note=_("shown ≥ {floor}"),
                             shown_map=shownMap,
                             marker=True,  # fits the views; the orientation marker shows laterality
                             noise_notes=(_("noisy input"), _("noisy input: SD ×{scale}"),
                                          _("SD ×{scale} for input noise"), _("noisy input: may read low")))
        return display.overlay_of(nodes, shownMap)

    def followFromMedian(self, fromMedian: bool, shared: bool = False) -> None:
        """Every map of the scene coloured from its median up (`fromMedian`) or from 0, where one is not yet: a scene
        saved by an earlier version, opened with the box ticked."""
        if self.legends().from_median_differs(slicer.mrmlScene, fromMedian):
            self.setSharedColourScale(shared, fromMedian=fromMedian)

    def showUncertaintyMap(self, nodes: dict, key: str, opacity: float = 0.5):
        """The run's map `key` on top wherever one of its maps is shown; returns its node (None: the run has none)."""
        return self.display().show_map(slicer.mrmlScene, nodes, key, opacity)

    def setSharedColourScale(self, shared: bool, fromMedian: Optional[bool] = None) -> dict:
        """Every uncertainty map in the scene on one colour scale per map (`shared`), or each on its own range again;
        `fromMedian` (unless None): each coloured only from its median up, or from 0 again. Returns {map: shared top}."""
        return self.legends().share_scales(slicer.mrmlScene, shared, note=_("shared scale"),
                                           clipped_note=_("top colour: ≥ {top}"),
                                           floor_note=_("≥ median {floor}"),
                                           clean_note=_("≥ clean-scan\nlevel {floor}"), shown_note=_("shown ≥ {floor}"),
                                           from_median=fromMedian)

    def setUncertaintyOpacity(self, opacity: float, nodes: Optional[dict] = None) -> None:
        """The uncertainty overlay's opacity where one of the run's maps (`nodes`, process's result) is shown; with
        none given, wherever a foreground is shown. At 0 their legends hide."""
        overlays = None if not nodes else [nodes.get("uncertainty"), *(nodes.get("uncertainties") or {}).values()]
        self.display().set_overlay_opacity(slicer.mrmlScene, opacity, overlays)

    def showComparison(self, interpolatedNode, iqtNode, uncertaintyNode=None, opacity: float = 0.0) -> None:
        """Side-by-side linked slice views: interpolation (left, Red) and IQT (right, Yellow)."""
        display = self.display()
        lm = slicer.app.layoutManager() if hasattr(slicer.app, "layoutManager") else None
        if lm is not None:
            display.remember_layout(slicer.mrmlScene)  # before the layout manager replaces it
            lm.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
        display.show_comparison(slicer.mrmlScene, interpolatedNode, iqtNode, uncertaintyNode, opacity, marker=True)

    def tractographyAvailable(self) -> bool:
        """SlicerDMRI is optional: seeding is offered where its module and node are present."""
        return hasattr(slicer.modules, TRACTOGRAPHY_MODULE.lower()) and self.display().seeding_available(slicer.mrmlScene)

    def sendToTractography(self, tensorNode) -> None:
        """Open SlicerDMRI's interactive seeding with the IQT output as its DTI volume."""
        if not hasattr(slicer.modules, TRACTOGRAPHY_MODULE.lower()):
            raise RuntimeError(_("Tractography seeding needs the SlicerDMRI extension: install it from the Extensions "
                                 "Manager and restart Slicer."))
        self.display().send_to_seeding(slicer.mrmlScene, tensorNode)
        slicer.util.selectModule(TRACTOGRAPHY_MODULE)
        widget = getattr(slicer.modules, TRACTOGRAPHY_MODULE.lower()).widgetRepresentation()
        for combo in slicer.util.findChildren(widget, className="qMRMLNodeComboBox"):
            if "vtkMRMLDiffusionTensorVolumeNode" in list(combo.nodeTypes):
                combo.setCurrentNode(tensorNode)


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
        self.assertTrue(logic.installDependencies(askConfirmation=False))  # a fresh install: no question in a test
        torch = logic.torchAvailable()
        return logic, [m["name"] for m in logic.availableMethods() if torch or not m["needs_torch"]]

    def _phantomNode(self):
        logic = ImageQualityTransferLogic()
        logic.installDependencies(askConfirmation=False)
        logic.engine()
        from ImageQualityTransferLib.dmri import degrade, dti, phantom
        from ImageQualityTransferLib.slicer import mrml

        # a DWI Volume, small: every method runs on it (each of the CNNs in its own worker process), and the checks are
        # of the outputs' grids and node types, not of accuracy
        dwi = phantom.make_phantom(shape=(24, 24, 20), voxel_mm=2.0, n_dirs=12)
        vol = degrade.degrade(dwi, dti.brain_mask(dwi).data, 2).tensor  # the low-res DTI
        return mrml.add_tensor_node(slicer.mrmlScene, vol, "IQTPhantom")

    def _checkOutputs(self, inputNode, nodes, factor):
        import numpy as np

        factors = np.broadcast_to(np.asarray(factor), (3,))  # r or (fx, fy, fz)
        tensor = nodes["tensor"]
        self.assertTrue(tensor.IsA("vtkMRMLDiffusionTensorVolumeNode"))
        dimsIn = inputNode.GetImageData().GetDimensions()
        dimsOut = tensor.GetImageData().GetDimensions()
        self.assertEqual(tuple(dimsOut), tuple(int(f * d) for f, d in zip(factors, dimsIn)))
        np.testing.assert_allclose(np.array(tensor.GetSpacing()), np.array(inputNode.GetSpacing()) / factors, rtol=1e-6)
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
        # per-axis factors (the panel's through-plane mode): the learned methods whose x1,1,3 models ship are offered
        factors = logic.upsamplingFactors(inputNode, "through-plane", 3)
        self.assertEqual(factors, (1, 1, 3))  # isotropic voxels stored axially: k, the axis along S
        offered = [m["name"] for m in logic.availableMethods(factors)]
        self.assertIn("cubic", offered)
        self.assertIn("biqt", [m["name"] for m in logic.availableMethods(factors) if m["learned"]])
        for name in ("cubic", "biqt"):
            nodes = logic.process(inputNode, method=name, factor=factors, interpolatedNode=True)
            self._checkOutputs(inputNode, nodes, factors)
        # where no model ships (through-plane x4): interpolation only
        self.assertFalse([m for m in logic.availableMethods(logic.upsamplingFactors(inputNode, "through-plane", 4))
                          if m["learned"]])
        with self.assertRaises(logic.engineError()):  # a target voxel size the input already has
            logic.upsamplingFactors(inputNode, "voxel-size", voxelSize=max(inputNode.GetSpacing()))
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
