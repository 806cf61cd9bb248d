"""The Slicer module on a fresh install (the engine's packages not yet installed), its one list of packages, the
device choice reaching the CNN, and cancelling: the worker's whole process tree stops, an in-process run stops
between chunks, and no node is made."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
import time
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO

MODULE_DIR = REPO / "ImageQualityTransfer"
MODULE_PY = MODULE_DIR / "ImageQualityTransfer.py"
LIB = MODULE_DIR / "ImageQualityTransferLib"
SLICER_BUNDLED = {"numpy", "scipy", "vtk", "vtkmodules", "slicer"}  # shipped with Slicer's Python
NOT_IN_SLICER = {"render.py"}  # slicer/render.py: pictures with trame-slicer (the render extra), never run by the module
# threadpoolctl had been listed here as probed, but core/threads.py imports it for every forest's prediction: the
# first Apply of biqt, rf or global-linear on a fresh Slicer failed with its ModuleNotFoundError (a Slicer module audit)
OPTIONAL = {"torch": "the PyTorch extension, on request",
            "matplotlib": "guarded by ImportError (Slicer has its own Inferno)"}


def engine_packages(name: str = "ENGINE_PACKAGES") -> dict:
    """ENGINE_PACKAGES as written in the module (the one list of what Apply installs; BUNDLED_PACKAGES: those checked,
    never installed)."""
    tree = ast.parse(MODULE_PY.read_text())
    found = [n for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == name
                                                                      for t in n.targets)]
    assert len(found) == 1, f"{name} must be assigned once, at the module's top level"
    return ast.literal_eval(found[0].value)


def test_engine_packages_is_the_single_source():
    packages = engine_packages()
    src = MODULE_PY.read_text()
    # installs go through the list only: one pip call site each, fed with what missingPackages() found in it
    assert src.count("pip_install(") == 1 and src.count("pip_ensure(") == 1
    assert "(ENGINE_PACKAGES if packages is None else packages).items()" in src and "missing = self.missingPackages()" in src
    # every third-party package the engine's Slicer path imports is bundled, optional, or in the list
    roots = set()
    for sub in ("core", "fileio", "dmri", "methods", "slicer"):
        for f in (LIB / sub).rglob("*.py"):
            if sub == "slicer" and f.name in NOT_IN_SLICER:
                continue
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.Import):
                    roots |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    roots.add(node.module.split(".")[0])
    third_party = roots - set(sys.stdlib_module_names) - {"ImageQualityTransferLib"}
    unlisted = third_party - SLICER_BUNDLED - set(OPTIONAL) - set(packages)
    assert not unlisted, f"the engine imports {sorted(unlisted)}, missing from ENGINE_PACKAGES"
    # and the list is the package's own dependencies (pyproject), minimums included, but for the optional ones: the
    # module had installed unpinned packages and taken any version already there
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    bundled = engine_packages("BUNDLED_PACKAGES")
    assert set(bundled) == {"numpy", "scipy"} <= SLICER_BUNDLED and not set(bundled) & set(packages)
    assert sorted([*packages.values(), *bundled.values()]) == sorted(d for d in deps if d.split(">=")[0] not in OPTIONAL)


def _logic_functions(*names):
    tree = ast.parse(MODULE_PY.read_text())
    logic = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "ImageQualityTransferLogic")
    space = {"ENGINE_PACKAGES": engine_packages(), "BUNDLED_PACKAGES": engine_packages("BUNDLED_PACKAGES"),
             "_": lambda text: text, "Optional": None}
    for name in names:
        fn = next(f for f in logic.body if isinstance(f, ast.FunctionDef) and f.name == name)
        exec(compile(ast.Module([fn], []), str(MODULE_PY), "exec"), space)
    space["ImageQualityTransferLogic"] = types.SimpleNamespace(missingPackages=space["missingPackages"])
    return space


def test_an_old_numpy_is_refused_in_one_line_never_installed(monkeypatch):
    """numpy>=1.26 had been handed to pip in a Slicer with numpy 1.25 (pip would install numpy 2.0.2 under packages
    built against numpy 1): numpy and scipy are checked, never installed."""
    import importlib.metadata

    space = _logic_functions("missingPackages", "bundledPackagesProblem", "installDependencies")
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: {"numpy": "1.25.2"}.get(dist) or real(dist))
    installed = []
    monkeypatch.setitem(space, "slicer", types.SimpleNamespace(util=types.SimpleNamespace(
        confirmOkCancelDisplay=lambda *a: True, pip_install=installed.append)))
    logic = types.SimpleNamespace(missingPackages=lambda: ["numpy>=1.26"])
    assert "numpy>=1.26" not in space["missingPackages"](logic)
    problem = space["bundledPackagesProblem"](logic)
    assert problem.startswith("this Slicer's numpy 1.25.2 is older than the 1.26 the engine needs: use a Slicer")
    assert "\n" not in problem
    logic.bundledPackagesProblem = lambda: problem
    with pytest.raises(RuntimeError, match="numpy 1.25.2"):
        space["installDependencies"](logic, askConfirmation=False)
    assert installed == []


def test_a_package_older_than_its_minimum_counts_as_missing(monkeypatch):
    import importlib.metadata

    tree = ast.parse(MODULE_PY.read_text())
    logic = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "ImageQualityTransferLogic")
    fn = next(f for f in logic.body if isinstance(f, ast.FunctionDef) and f.name == "missingPackages")
    space = {"ENGINE_PACKAGES": engine_packages()}
    exec(compile(ast.Module([fn], []), str(MODULE_PY), "exec"), space)
    installed = {"scipy": "1.10.1", "dipy": "1.9.0rc1", "numpy": "2.0.2", "nibabel": "5.1.9", "pynrrd": "1.1.3"}
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: installed.get(dist) or real(dist))
    # 1.9.0rc1 is dipy 1.9: taken; scipy is Slicer's, checked apart (BUNDLED_PACKAGES), never installed
    assert space["missingPackages"](None) == ["nibabel>=5.2"]
    assert space["missingPackages"](None, {"scipy": "scipy>=1.11"}) == ["scipy>=1.11"]


BLOCKED_RUN = textwrap.dedent("""
    import json, sys
    for name in {blocked!r}:
        sys.modules[name] = None  # as if not installed: import fails, importlib.util.find_spec gives None
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.slicer import display, processing, upsampling
    listed = [m["name"] for m in methods.describe()]
    print(json.dumps({{"listed": listed, "default": methods.default_method(), "ready": methods.ready(),
                      "torch": processing.method_needs_torch("espcn"),
                      "factors": upsampling.factors_for("voxel-size", voxel_size_mm=2, spacing=(2, 2, 5)),
                      "through": upsampling.factors_for("through-plane", 3, spacing=(2, 2, 2), affine=[
                          [0, 0, 2.0, 0], [-2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]]),
                      "loaded": sorted(n for n in sys.modules if n.split(".")[0] in {blocked!r} and sys.modules[n])}}))
""")


def test_registry_lists_methods_without_the_engine_packages():
    """What the module's method list, upsampling modes and Apply button need works with nibabel, dipy, pynrrd, tqdm (and torch)
    absent, as in a fresh Slicer."""
    blocked = sorted((set(engine_packages()) - SLICER_BUNDLED) | {"torch"})
    assert {"nibabel", "dipy", "nrrd", "tqdm"} <= set(blocked)
    env = dict(os.environ, PYTHONPATH=str(MODULE_DIR))
    proc = subprocess.run([sys.executable, "-c", BLOCKED_RUN.format(blocked=blocked)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"cubic", "biqt", "rf", "espcn"} <= set(out["listed"])
    assert out["default"] == "biqt" and "espcn" not in out["ready"] and out["torch"] is True
    assert out["factors"] == [1, 1, 3]  # the panel's upsampling modes work before Apply installs the packages
    # equal voxels stored sagittally (PSR) read their axes without nibabel (orientation._closest_world_axes), and without
    # scipy's Rotation, which fails where torch is blocked: j, along S
    assert out["through"] == [1, 3, 1]
    assert out["loaded"] == []


# ---------------------------------------------------------------- with slicer-core

slicer = pytest.importorskip("slicer", reason="slicer-core (or Slicer) is needed for the MRML tests")

from ImageQualityTransferLib.core.volume import Volume  # noqa: E402
from ImageQualityTransferLib.slicer import mrml, processing  # noqa: E402


@pytest.fixture(scope="module")
def phantom_dwi():
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    return make_phantom(shape=(32, 36, 28), voxel_mm=2.0, n_dirs=12)


@pytest.fixture
def small_node(phantom_dwi):
    from ImageQualityTransferLib.dmri import degrade, dti

    scene = slicer.vtkMRMLScene()
    lr = degrade.degrade(phantom_dwi, dti.brain_mask(phantom_dwi).data, 2).tensor
    return scene, mrml.add_tensor_node(scene, lr, "small"), lr


def test_gpu_choice_reaches_the_cnn(small_node):
    """"Use GPU" is device="cuda" through run_on_nodes -> Request -> the method; without CUDA it is one clear line."""
    torch = pytest.importorskip("torch")
    scene, node, _ = small_node
    request = processing.Request("espcn", 2, device="cuda")
    assert request.worker_args()[request.worker_args().index("--device") + 1] == "cuda"
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here: the refusal cannot be seen")
    n_before = scene.GetNumberOfNodes()
    with pytest.raises(processing.IQTError) as err:
        processing.run_on_nodes(scene, node, "espcn", 2, device="cuda")
    assert "no CUDA device" in str(err.value) and "\n" not in str(err.value)
    assert scene.GetNumberOfNodes() == n_before


def test_average_over_flips_reaches_the_worker_and_names_the_nodes(small_node):
    """"Average over flips" is tta=True through run_on_nodes -> Request -> the worker process -> the method; the
    result nodes are named METHOD+tta, beside (not over) a plain run's, and equal the engine's own averaged output.
    The plain run is in this process: the worker's start (a Python importing torch) is paid by the run under test."""
    import sys

    pytest.importorskip("torch")
    from ImageQualityTransferLib import methods

    if "espcn" not in methods.ready(2):
        pytest.skip("no espcn model for x2 here")
    scene, node, lr = small_node
    request = processing.Request("espcn", 2, tta=True)
    assert "--tta" in request.worker_args() and "--tta" not in processing.Request("espcn", 2).worker_args()
    plain = processing.run_on_nodes(scene, node, "espcn", 2)
    avg = processing.run_on_nodes(scene, node, "espcn", 2, tta=True, python_executable=sys.executable)
    assert avg["tensor"].GetName() == "small_espcn+tta" and plain["tensor"].GetName() == "small_espcn"
    want = methods.get("espcn", tta=True).predict(lr, 2).tensor.data
    got = mrml.tensor_volume_from_node(avg["tensor"]).data
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert np.abs(got - mrml.tensor_volume_from_node(plain["tensor"]).data).max() > 0


def test_in_process_cancel_stops_inside_the_method(small_node):
    """Cancel pressed during the forest's prediction stops it at the next chunk, not after the whole run."""
    scene, node, _ = small_node
    seen = []
    n_before = scene.GetNumberOfNodes()

    def progress(fraction, message):
        seen.append((fraction, message))

    def cancel():  # true once the method itself has reported progress
        return any(m == "running biqt (x2)" and f > 0.1 for f, m in seen)

    with pytest.raises(processing.Cancelled):
        processing.run_on_nodes(scene, node, "biqt", 2, interpolate=True, progress=progress, cancel=cancel)
    assert scene.GetNumberOfNodes() == n_before
    assert not any(m and "interpolation" in m for _, m in seen)  # stopped before the comparison step


def test_dwi_fit_reports_progress(phantom_dwi):
    from helpers import dwi_node

    scene = slicer.vtkMRMLScene()
    node = dwi_node(scene, phantom_dwi)
    steps = []
    processing.input_volumes(node, progress=lambda f, m: steps.append(f))
    fit = [f for f in steps if f is not None and f < 0.1]
    assert len(fit) >= 4 and fit == sorted(fit)
    with pytest.raises(processing.Cancelled):
        processing.input_volumes(node, cancel=lambda: True)


LAUNCHER = """#!/bin/sh
# Like PythonSlicer: a launcher that starts the real Python as its child and waits for it.
"{python}" "$@" &
echo $! > "{pidfile}"
wait
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(os.name != "posix" or not Path("/proc").is_dir(), reason="reads /proc to see the worker")
def test_cancel_stops_the_worker_behind_a_launcher(tmp_path, small_node):
    """Cancel stops the whole worker tree (launcher and the Python it started), not the launcher alone."""
    _, _, lr = small_node
    pidfile = tmp_path / "worker.pid"
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text(LAUNCHER.format(python=sys.executable, pidfile=pidfile))
    launcher.chmod(0o755)
    big = Volume(np.tile(lr.data, (3, 3, 3, 1)), lr.affine, "tensor")  # several seconds of work in the worker
    cancelled_at = []

    def progress(fraction, message):
        if fraction is not None and fraction > 0.1 and not cancelled_at:  # the worker is inside the method
            cancelled_at.append(time.monotonic())

    request = processing.Request("biqt", 2, interpolate=True)
    with pytest.raises(processing.Cancelled):
        processing.predict_in_subprocess(big, request, python_executable=str(launcher), progress=progress,
                                         cancel=lambda: bool(cancelled_at))
    worker = int(pidfile.read_text())
    while _alive(worker) and time.monotonic() < cancelled_at[0] + 1.0:  # a SIGTERM to the group ends it at once
        time.sleep(0.05)
    assert not _alive(worker), "the worker Python outlived the cancelled launcher"
