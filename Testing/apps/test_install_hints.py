"""A missing extra is refused with an install line that works: the package is on no index, so the line installs the
extra from the clone as the README does ('pip install imagequalitytransfer[cnn]' found no such package), with the pip
of the Python running the command (a bare 'pip' is another Python's where `.venv/bin/iqt` runs unactivated)."""

import shlex
import sys

import pytest

from ImageQualityTransferLib.core.errors import IQTError

NO_SUCH_PACKAGE = "imagequalitytransfer["


@pytest.mark.parametrize("extra, module, call", [
    ("render", "trame_slicer", lambda: __import__("ImageQualityTransferLib.slicer.render",
                                                  fromlist=["x"])._app_importable()),
    ("render", "trame_slicer.core", lambda: __import__("ImageQualityTransferLib.apps.view.page",
                                                  fromlist=["x"]).import_trame()),
    ("batch", "cryptography", lambda: __import__("ImageQualityTransferLib.apps.batch.local_cluster",
                                                 fromlist=["x"]).local_security()),
])
def test_a_missing_extra_names_an_install_that_works(monkeypatch, extra, module, call):
    """The line names this Python's pip, quoted for a shell where its path has a space, in a clause with its verb
    ('iqt view' had said "...; pip install -e '.[render]' in this project's clone": a review)."""
    monkeypatch.setattr(sys, "executable", "/opt/my env/bin/python3")
    monkeypatch.setitem(sys.modules, module, None)  # an import of it fails, as where it is not installed (a
    # submodule is named where a test before this one in the process imported it: its entry is found first)
    with pytest.raises(IQTError) as info:
        call()
    text = str(info.value)
    assert NO_SUCH_PACKAGE not in text, text
    assert f"run '/opt/my env/bin/python3' -m pip install -e '.[{extra}]' in this project's clone" in text, text
    assert shlex.split(text.rsplit("run ", 1)[1].split(" in this project's clone")[0])[:2] == ["/opt/my env/bin/python3",
                                                                                              "-m"], text


def test_the_torch_hint_names_the_pinned_cpu_torch_only(monkeypatch):
    """It had ended "or install the cnn extra: ... pip install -e '.[cnn]'", whose 'torch>=2.2' takes PyPI's newest
    torch, with CUDA packages on Linux: what the pinned CPU torch before it avoids (a review)."""
    from ImageQualityTransferLib.core import errors
    from ImageQualityTransferLib.methods.cnn import require_torch

    monkeypatch.setattr(sys, "executable", "/opt/my env/bin/python3")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(IQTError) as info:
        require_torch()
    assert str(info.value) == ("the CNN methods need PyTorch, which is not installed; install it with '/opt/my "
                               f"env/bin/python3' -m pip install {errors.pinned_torch()} and retry"), info.value


def test_batch_without_dask_names_an_install_that_works(tmp_path, capsys, monkeypatch):
    from ImageQualityTransferLib.apps import cli

    (tmp_path / "a_dti.nii.gz").write_bytes(b"")  # refused before any input is read: no need for a real one
    (tmp_path / "list.txt").write_text("a_dti.nii.gz\n")
    monkeypatch.setitem(sys.modules, "distributed", None)
    code = cli.main(["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o"), "--method", "cubic"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert NO_SUCH_PACKAGE not in err, err
    assert f"{shlex.quote(sys.executable)} -m pip install -e '.[batch]' in this project's clone" in err, err


def test_install_hints_on_windows_use_double_quotes_and_torch_the_readme_pin(monkeypatch):
    """On Windows the interpreter's path was given in POSIX single quotes ('C:\\Program Files\\...'), as was '.[cnn]',
    which cmd.exe does not read; the torch hint installed torch unpinned, where README.md pins it (a review), and without
    README.md's CPU index, from which PyPI's torch pulls CUDA packages on Linux and Windows: the line is checked
    against README.md's pin and index, on Linux, macOS and Windows."""
    import os
    import re
    import subprocess
    from pathlib import Path

    from ImageQualityTransferLib.core import errors

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    pin = re.search(r"pip install (torch==\S+)", readme).group(1)
    assert pin == errors.TORCH_PIN, (pin, errors.TORCH_PIN)
    index = re.search(r"--index-url (\S+?)`", readme).group(1)  # without it PyPI's torch pulls CUDA (README.md)
    assert index == errors.TORCH_CPU_INDEX, (index, errors.TORCH_CPU_INDEX)
    monkeypatch.setattr(sys, "platform", "linux")
    assert errors.pip_install("torch").endswith(f" -m pip install {pin} --index-url {index}")
    assert errors.pinned_torch("darwin") == pin  # macOS's PyPI torch is the CPU build
    exe = r"C:\Program Files\Slicer 5.8.1\bin\PythonSlicer.exe"
    monkeypatch.setattr(sys, "executable", exe)
    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.setattr(sys, "platform", "win32")
    assert errors.pip_install("torch") == f'"{exe}" -m pip install {pin} --index-url {index}'
    said = errors.install_extra("cnn")
    assert said == f'run "{exe}" -m pip install -e .[cnn] in this project\'s clone (README.md, Two commands)', said
    assert subprocess.list2cmdline([exe, "-m"]) in said and "'" not in said.split(" in this project")[0], said


def test_install_md_quotes_an_install_line_the_commands_print(monkeypatch):
    """docs/install.md quoted the refusal's line as "... pip install -e '.[cnn]' ...", which no command prints (the cnn
    extra's refusal names torch alone; a review): its POSIX and Windows quotes are install_extra's for an extra the
    engine passes it."""
    import os
    import re
    from pathlib import Path

    from ImageQualityTransferLib.core import errors

    repo = Path(__file__).parents[2]
    engine = repo / "ImageQualityTransfer" / "ImageQualityTransferLib"
    printed = {m for p in engine.rglob("*.py") for m in re.findall(r"install_extra\('(\w+)'\)", p.read_text("utf-8"))}
    page = " ".join((repo / "docs" / "install.md").read_text(encoding="utf-8").split())
    posix = re.search(r"`run /path/to/\.venv/bin/python -m pip install -e '\.\[(\w+)\]' in this project's clone`", page)
    windows = re.search(r'`"C:\\Program Files\\\.\.\.\\python\.exe" -m pip install -e \.\[(\w+)\]`', page)
    assert posix and windows, "docs/install.md no longer quotes the refusal's line on Linux and Windows"
    assert {posix.group(1), windows.group(1)} <= printed, (posix.group(1), windows.group(1), printed)
    monkeypatch.setattr(sys, "executable", "/path/to/.venv/bin/python")
    assert posix.group(0).strip("`") == errors.install_extra(posix.group(1)).split(" (README.md")[0]
    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(sys, "executable", r"C:\Program Files\...\python.exe")
    assert "run " + windows.group(0).strip("`") + " in this project's clone" == errors.install_extra(
        windows.group(1)).split(" (README.md")[0]


def test_the_demo_without_torch_says_how_to_install_it(monkeypatch):
    """`iqt demo` without PyTorch skipped the CNNs with "PyTorch is not installed" and no word of how to add it, where
    every other line without it names the install (a new user's audit)."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps.demo import chosen_methods
    from ImageQualityTransferLib.core import errors

    monkeypatch.setattr(sys, "executable", "/opt/my env/bin/python3")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(methods, "runs_here", lambda name: not methods.method_class(name).learned or name in ("rf", "biqt"))
    monkeypatch.setattr(methods, "ready", lambda factor: ["cubic", "biqt"])
    said = []
    chosen_methods(factor=2, say=said.append)
    line = next(s for s in said if "PyTorch" in s)
    assert line.endswith(f"PyTorch is not installed (install it with '/opt/my env/bin/python3' -m pip install "
                         f"{errors.pinned_torch()})"), line
