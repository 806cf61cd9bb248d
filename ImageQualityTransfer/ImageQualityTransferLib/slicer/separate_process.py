"""The module's methods in a separate Python process (`slicer.worker`, e.g. PythonSlicer; every method with a main
window, the torch methods only in batch mode: ImageQualityTransfer.py `process`): the input and outputs go through
files in a temporary folder of this run, progress comes back as JSON lines on stdout, and a cancel stops the whole
process tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from queue import Empty, Queue

import numpy as np

from ..core import grid
from ..core.errors import IQTError
from ..core.volume import Volume
from . import mrml
from .progress import Cancelled, report_progress

LIB_DIR = Path(__file__).resolve().parents[1]


def predict_in_subprocess(lr: Volume, request, mask: Volume | None = None, progress=None, cancel=None,
                          python_executable: str | None = None, workdir=None) -> dict[str, Volume]:
    """`predict_volumes` in a separate Python process running `slicer.worker`: inputs and outputs go through
    files in a temporary folder, progress comes back as JSON lines on stdout. `lr` may be a DWI (kind "dwi",
    `input_volumes(fit=False)`): the worker fits it first (`fit_dwi`)."""
    from .. import fileio
    from ..core import i18n

    exe = python_executable or sys.executable
    if workdir is None:
        remove_orphaned_folders()
    tmp_ctx = tempfile.TemporaryDirectory(prefix=work_prefix()) if workdir is None else None
    folder = Path(workdir if workdir is not None else tmp_ctx.name)
    try:
        if lr.kind == "dwi":
            source = folder / "input.nii"  # uncompressed: written on the GUI thread
            fileio.save_dwi(lr, source)
        else:  # the node's array and grid as they are, as the method gets them in this process: a gzipped NRRD had
            # held the GUI thread 4.3 s on an HCP-size input
            source = folder / "input.npz"
            np.savez(source, data=np.asarray(lr.data), affine=np.asarray(lr.affine, float))
        args = [exe, "-m", "ImageQualityTransferLib.slicer.worker", "--input", str(source),
                *(["--dwi"] if lr.kind == "dwi" else []), "--outdir", str(folder / "out"), *request.worker_args()]
        said = i18n.translations()
        if said:  # the lines the worker marks, in the user's language (core/i18n.py)
            (folder / "translations.json").write_text(json.dumps(said), encoding="utf-8")
            args += ["--translations", str(folder / "translations.json")]
        if mask is not None:
            fileio.save_scalar(Volume(mask.data.astype(np.uint8), mask.affine, "scalar"), folder / "mask.nii")
            args += ["--mask", str(folder / "mask.nii")]
        try:
            summary = _run_worker(args, progress, cancel)
        except IQTError as exc:
            if str(folder) not in str(exc):
                raise
            raise _with_advice(IQTError(_without_paths(str(exc), folder)), getattr(exc, "advice", None)) from None
        results = {}
        for key, entry in summary["outputs"].items():
            results[key] = Volume(np.load(entry["path"], allow_pickle=False), np.array(entry["affine"], float),
                                  entry["kind"])  # this run's own worker's arrays (slicer/worker.py)
            if entry["kind"] == "tensor":  # the files do not carry the run's factors; the comparison view needs them
                results[key].meta["factor"] = grid.record(request.factor)
            if entry.get("support"):  # nor an estimated support, which the uncertainty legend is scaled by
                results[key].meta["support"] = entry["support"]
            results[key].meta.update({k: entry[k] for k in ("model_name", "model_origin", mrml.NOISE_KEY, mrml.NOISE_INDEX_KEY,
                                                            mrml.TENSOR_SCALE_KEY)
                                      if entry.get(k)})
        results["tensor"].meta["notes"] = list(lr.meta.get("input_notes", [])) + [
            _without_paths(n, folder) for n in summary.get("notes", [])]
        expected = grid.hr_affine(lr.affine, request.factor)
        for key, vol in results.items():  # a NIfTI input's float32 affine moved the grid by ~1e-6 mm: the exact one
            if np.allclose(vol.affine, expected, atol=1e-4):
                results[key] = vol.replace(affine=expected)
        return results
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


WORK_PREFIX = "iqt-slicer-"  # + the host and the owning process's id: a run's folder of the patient's input and outputs


def _host() -> str:
    """This machine's name as a run folder holds it: letters and digits only."""
    import re
    import socket

    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"


def work_prefix(pid: int | None = None) -> str:
    """The start of a run folder's name: WORK_PREFIX, this host, the owning process's id ("iqt-slicer-node7-4242-"),
    so that a temporary folder shared by several machines (a cluster's or a container's) is swept only of this host's."""
    return f"{WORK_PREFIX}{_host()}-{os.getpid() if pid is None else pid}-"


def remove_orphaned_folders(root=None) -> list[Path]:
    """Remove this user's run folders of this host (`work_prefix`, in the temporary folder) whose owning process no
    longer runs, and return them: a Slicer killed mid-run (kill -9, a crash, a power cut) never ran its cleanup, and the
    patient's input stayed in /tmp. A folder of a running process is left alone. POSIX only (on
    Windows a process id cannot be probed without opening the process; the folders stay there as before)."""
    import re
    import shutil

    if os.name != "posix":
        return []
    gone = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{WORK_PREFIX}{_host()}-*-*"):
        m = re.fullmatch(re.escape(f"{WORK_PREFIX}{_host()}-") + r"(\d+)-\w+", path.name)
        try:
            if not m or path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:  # its owner has ended
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path)
        except (OSError, OverflowError):  # running under another user, or not ours to judge
            continue
    return gone


def _without_paths(text: str, folder: Path) -> str:
    """`text` without the worker's temporary file names ("/tmp/iqt-x/input.nii: ..."): the user knows the input as
    the node."""
    import re

    return re.sub(re.escape(str(folder)) + r"[^\s:]*(: )?", "", text)


def _run_worker(args, progress, cancel) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(LIB_DIR.parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **_own_group())
    lines: Queue = Queue()
    errors: list[str] = []

    def pump(stream, sink):
        for line in stream:
            sink(line)
        stream.close()

    t_out = threading.Thread(target=pump, args=(proc.stdout, lines.put), daemon=True)
    t_err = threading.Thread(target=pump, args=(proc.stderr, errors.append), daemon=True)
    t_out.start()
    t_err.start()
    summary = None
    error, advice = None, None
    try:
        while True:
            if cancel is not None and cancel():
                stop_process_tree(proc)
                raise Cancelled("processing cancelled; no output was created")
            try:
                line = lines.get(timeout=0.1)
            except Empty:
                if proc.poll() is not None and not t_out.is_alive() and lines.empty():
                    break
                if progress is not None:
                    report_progress(progress, None, None)  # keeps a GUI responsive (the callback may process events)
                continue
            msg = _parse(line)
            if msg is None:
                continue
            if "progress" in msg:
                report_progress(progress, msg["progress"], msg.get("message"))
            if "error" in msg:
                error, advice = msg["error"], msg.get("advice")
            if msg.get("done"):
                summary = msg
    finally:
        if proc.poll() is None:  # left early (Ctrl-C, a progress callback that raised): the worker must not run on
            stop_process_tree(proc)
        t_err.join(timeout=5)
    if error:
        raise _with_advice(IQTError(error), advice)
    if proc.returncode != 0 or summary is None:
        tail = "".join(errors)[-2000:].strip()
        raise IQTError(f"the processing process failed ({exit_words(proc.returncode)}): {tail or 'no message'}")
    return summary


def exit_words(code: int | None) -> str:
    """A worker's exit status in words: a negative one is the signal that stopped it, and SIGKILL unasked is, on Linux,
    most often the out-of-memory killer ("exit status -9", alone, had said nothing a user could act on)."""
    if code == 128 + 9:  # a shell's or launcher's way to pass on a child's SIGKILL
        code = -9
    if code is None or code >= 0:
        return f"exit status {code}"
    import signal

    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"stopped by signal {-code}"
    if name == "SIGKILL":
        return ("killed by the system (SIGKILL), most often for want of memory: close other programs, or run with a "
                "smaller factor, fewer Monte Carlo samples or without Average over flips")
    return f"stopped by {name}"


def _own_group() -> dict:
    """Popen arguments that start the worker in its own process group (session), so that cancelling stops the
    whole tree: PythonSlicer is a launcher whose child is the Python that does the work."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def stop_process_tree(proc, timeout: float = 5.0) -> None:
    """Terminate `proc` and every process it started (its process group), killing what outlives `timeout`."""
    if proc.poll() is not None:
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(proc.pid)], capture_output=True)
    else:
        import signal

        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # members of the group that outlived the launcher
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def _parse(line: str):
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _with_advice(exc: IQTError, advice) -> IQTError:
    """`exc` carrying the worker's `advice` (a model refused for its factors: methods/learned.py), which the module's
    Logic reads to name the voxel size that gives the model's own (methods/factor_choice.py model_hint)."""
    if advice:
        exc.advice = advice
    return exc
