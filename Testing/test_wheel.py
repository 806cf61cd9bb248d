"""A regular install (`pip install .`, a wheel) ships the models: the wheel holds every file of Resources/Models as
ImageQualityTransferLib/models, and the engine installed from it finds them there; the source tree keeps reading
Resources/Models."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from helpers import REPO

SRC = REPO / "ImageQualityTransfer"
MODELS = SRC / "Resources" / "Models"
PACKAGED = "ImageQualityTransferLib/models/"


def shipped_files() -> list[str]:
    """The files a wheel must carry from Resources/Models (setuptools' "*" leaves out hidden ones such as locks)."""
    return sorted(p.name for p in MODELS.iterdir() if p.is_file() and not p.name.startswith("."))


def test_packages_are_those_of_the_tree():
    """pyproject.toml lists the packages (find cannot see the models' mapped folder): every one of the tree, and the
    models' package mapped onto Resources/Models."""
    from setuptools import find_packages

    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = find_packages(str(SRC), include=["ImageQualityTransferLib", "ImageQualityTransferLib.*"])
    assert sorted(tool["packages"]) == sorted([*found, "ImageQualityTransferLib.models"])
    assert tool["package-dir"]["ImageQualityTransferLib.models"] == "ImageQualityTransfer/Resources/Models"
    assert tool["package-data"]["ImageQualityTransferLib.models"] == ["*"]


def test_source_tree_reads_resources_models():
    from ImageQualityTransferLib.fileio import paths

    if Path(paths.__file__).resolve().is_relative_to(SRC.resolve()):
        assert paths.MODELS_DIR == MODELS.resolve()
        assert not (SRC / PACKAGED).exists()


FIND_MODELS = """
import json, sys
import ImageQualityTransferLib
from ImageQualityTransferLib.fileio import model_files, paths
from ImageQualityTransferLib.methods.forest import model_io
sidecar = model_files.shipped("rf", 2, ".npz")
model_io.load(sidecar)  # its weights' SHA256 checked against the sidecar and the registry
print(json.dumps({"lib": ImageQualityTransferLib.__file__, "models": str(paths.MODELS_DIR), "rf": str(sidecar),
                  "modules": [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]}))
"""


@pytest.mark.slow
def test_wheel_ships_the_models(tmp_path):
    pytest.importorskip("pip", reason="building the wheel needs pip")
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (pyproject's build backend)")
    # A copy of the checkout, built offline: no build/ or egg-info left in the tree, none of theirs reused. A stand-in
    # virtual environment in it must not be shipped.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                              "__pycache__", ".pytest_cache", "iqt-demo", "bench-out"))
    (src / ".venv" / "lib").mkdir(parents=True)
    (src / ".venv" / "lib" / "venv_marker.py").write_text("")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path / "dist"), str(src)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("imagequalitytransfer-*.whl")
    shutil.rmtree(src)

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert sorted(n[len(PACKAGED):] for n in names if n.startswith(PACKAGED)) == shipped_files()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"ImageQualityTransferLib"}
    assert not [n for n in names if "Testing" in n or ".venv" in n or "venv_marker" in n or "__pycache__" in n]
    engine = sorted(p.relative_to(SRC).as_posix() for p in (SRC / "ImageQualityTransferLib").rglob("*.py"))
    assert not set(engine) - set(names), "a module of the engine is missing from the wheel (pyproject's packages)"

    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(unpacked)
    models = unpacked / PACKAGED
    _, differ, missing = filecmp.cmpfiles(MODELS, models, shipped_files(), shallow=False)
    assert differ == missing == []

    # Python without its site (no editable install's path): the unpacked wheel, then the libraries numpy etc.
    lib_paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    run_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(unpacked), *lib_paths]))
    run_env.pop("PYTHONHOME", None)
    found = subprocess.run([sys.executable, "-S", "-c", FIND_MODELS], capture_output=True, text=True, env=run_env,
                           timeout=120, cwd=tmp_path)
    assert found.returncode == 0, found.stderr[-2000:]
    out = json.loads(found.stdout.strip().splitlines()[-1])
    assert Path(out["lib"]).is_relative_to(unpacked)
    assert Path(out["models"]) == models.resolve() and Path(out["rf"]) == models.resolve() / "rf_x2.json"
    assert not [m for m in out["modules"] if m and Path(m).resolve().is_relative_to(SRC.resolve())]

    listed = subprocess.run([sys.executable, "-S", "-m", "ImageQualityTransferLib", "methods"], capture_output=True,
                            text=True, env=run_env, timeout=120, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
    for method in ("global-linear", "rf", "biqt", "espcn", "deep"):
        assert "shipped for x2" in lines[method] and "no shipped model" not in lines[method], lines[method]
