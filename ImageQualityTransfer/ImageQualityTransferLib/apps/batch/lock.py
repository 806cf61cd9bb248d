"""One `iqt batch` run at a time per derivatives folder: a lock file made atomically (O_CREAT | O_EXCL) in the folder
before any work and removed when the run ends, however it ends.

Without it two runs into one folder both computed every subject, and each one's removal of the temporaries a killed run
leaves (`.iqt-*`, at its start and per subject) could delete the other's file in flight, whose rename then failed with
an internal error. The lock holds the run's pid, host, start time and command, so that a second run is refused
in one line naming the first. A lock whose run is gone (this host, its pid no longer alive: a run killed with SIGKILL or
a machine that went down) is taken over with one warning; one from another host is never taken over, since its pid
cannot be checked from here: the message says to remove the file if that run is gone.

The name does not start with `.iqt-`, so `records.remove_temporaries` leaves it alone, and it is a dot-file, which the
BIDS validator and the QC table do not count as an output."""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

from ...core.errors import IQTError, IQTWarning


LOCK_NAME = ".iqt_batch.lock"  # not TEMP_PREFIX (".iqt-"): remove_temporaries must not take it for a temporary
UNREADABLE_WAIT_S = 1.0  # a lock just made by another run is empty until it has written its record, in microseconds


def lock_path(out_root) -> Path:
    return Path(out_root) / LOCK_NAME


def _record(command: str | None) -> dict:
    return {"pid": os.getpid(), "pid_start": _start_time(os.getpid()), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "token": uuid.uuid4().hex}


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc's field 22; on Windows its creation time), None where
    the system does not say: with the pid, it names one process, not whichever took the number since (a container's
    pid 1 rerun after a kill)."""
    if _on_windows():
        return _windows_process(pid)[1]
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name, in brackets, may hold spaces
    return fields[19] if len(fields) > 19 else None


def _gone(rec: dict) -> bool:
    """Whether the process that took the lock `rec` (on this host) has ended: its pid is free, or it is another
    process's now (its start time differs from the one recorded: a reused pid, the refused run's own among
    them, would be taken for a live run and the folder refused for good). False where that cannot be told."""
    alive = _alive(rec["pid"])
    if alive is None:
        return False
    if not alive:
        return True
    then, now = rec.get("pid_start"), _start_time(rec["pid"])
    return then is not None and now is not None and then != now


def _read(path: Path) -> dict | None:
    """The lock's record, or None where it is missing, empty or not a record (being written, or damaged)."""
    try:
        rec = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("pid"), int) and isinstance(rec.get("host"), str) else None


def _on_windows() -> bool:
    return os.name == "nt"


def _alive(pid: int) -> bool | None:
    """Whether process `pid` runs; None where that cannot be told. Never os.kill(pid, 0) on Windows: signal 0 is
    CTRL_C_EVENT there, which os.kill sends to the console's processes (this run's own among them) or fails on, so a
    lock would never be taken over."""
    if pid <= 0:
        return False
    if _on_windows():
        return _windows_process(pid)[0]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return None  # cannot tell: never taken over
    return True


def _windows_process(pid: int) -> tuple[bool | None, str | None]:
    """(whether process `pid` runs, its creation time) by OpenProcess with PROCESS_QUERY_LIMITED_INFORMATION, which a
    user may ask of any process, GetExitCodeProcess and GetProcessTimes; (None, None) where they cannot say."""
    import ctypes

    query_limited, still_active, no_such_process, access_denied = 0x1000, 259, 87, 5
    try:
        kernel32 = _kernel32()
        opened = kernel32.OpenProcess(query_limited, False, pid)
        if not opened:
            error = _last_error()
            return {no_such_process: (False, None), access_denied: (True, None)}.get(error, (None, None))
        handle = ctypes.c_void_p(opened)
        try:
            code, times = ctypes.c_ulong(), [ctypes.c_ulonglong() for _ in range(4)]
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return None, None
            started = str(times[0].value) if kernel32.GetProcessTimes(handle, *map(ctypes.byref, times)) else None
            return code.value == still_active, started
        finally:
            kernel32.CloseHandle(handle)
    except (OSError, AttributeError, ValueError):  # no kernel32 to ask
        return None, None


def _kernel32():
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = ctypes.c_void_p  # a HANDLE: pointer-sized, not ctypes' default int
    kernel32.OpenProcess.argtypes = (ctypes.c_ulong, ctypes.c_int, ctypes.c_ulong)
    return kernel32


def _last_error() -> int:
    import ctypes

    return ctypes.get_last_error()


def _who(rec: dict) -> str:
    cmd = " ".join(str(rec.get("command", "?")).split())
    return f"pid {rec['pid']} on {rec['host']}, since {rec.get('started', '?')}: {cmd}"


def _try_create(path: Path, rec: dict) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, (json.dumps(rec) + "\n").encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return True


def _take_over(path: Path, stale: dict) -> bool:
    """Remove the stale lock `stale`, unless another run has replaced it meanwhile (two runs taking over one stale lock
    at once: the second would remove the first's new lock). True where it was removed (or is gone)."""
    aside = path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True
    if _read(aside) == stale:
        aside.unlink(missing_ok=True)
        return True
    try:  # another run's live lock, moved aside by mistake: put back (link does not replace a lock made since)
        os.link(aside, path)
    except OSError:
        pass
    aside.unlink(missing_ok=True)
    return False


def acquire(out_root, command: str | None = None) -> dict:
    """Take the lock of the (existing) folder `out_root` for this process: its record, for `release`. An IQTError (exit
    2, nothing written) where another run holds it."""
    path = lock_path(out_root)
    rec = _record(command)
    here = socket.gethostname()
    unreadable_since = None
    while True:
        try:
            if _try_create(path, rec):
                return rec
        except OSError as exc:
            raise IQTError(f"{out_root}: cannot create the lock file {LOCK_NAME} ({exc.strerror}); choose an output folder "
                           "you can write to") from None
        other = _read(path)
        if other is None:
            if not path.exists():
                continue  # removed meanwhile: try again
            if unreadable_since is None:
                unreadable_since = time.monotonic()
            if time.monotonic() - unreadable_since < UNREADABLE_WAIT_S:
                time.sleep(0.05)
                continue
            raise IQTError(f"{out_root}: another iqt batch run may be writing here ({path} exists but does not say which "
                           f"run made it); if no run is writing into this folder, remove {path} and rerun")
        if other["host"] == here and _gone(other):
            if _take_over(path, other):
                warnings.warn(f"{out_root}: taking over the lock of an iqt batch run that is gone ({_who(other)})",
                              IQTWarning, stacklevel=2)
            continue
        if other["host"] == here and _alive(other["pid"]) is None:
            how = (f"whether that run is still going cannot be told here: wait for it to end; if no iqt batch run is "
                   f"writing into this folder, remove {path} and rerun")
        elif other["host"] == here:
            stop = f"taskkill /PID {other['pid']}" if _on_windows() else f"kill {other['pid']}"
            how = f"wait for it to end, or stop it ({stop}), then rerun: the subjects it has done are skipped"
        else:
            how = (f"wait for it to end; if that run is gone (its machine stopped), remove {path} and rerun, since a "
                   "lock from another host is never taken over")
        raise IQTError(f"{out_root}: another iqt batch run is writing into this folder ({_who(other)}); {how}")


def holds(out_root, token: str) -> bool:
    """Whether the folder's lock is still the run's of `token`: a subject a remote worker ends after its run has ended
    (interrupted, its scheduler lost) must not put its files over those of a run that came since."""
    return (_read(lock_path(out_root)) or {}).get("token") == token


def release(out_root, rec: dict) -> None:
    """Remove the lock if it is still this run's (never a lock another run has taken over since)."""
    path = lock_path(out_root)
    if (_read(path) or {}).get("token") == rec.get("token"):
        path.unlink(missing_ok=True)


@contextmanager
def held(out_root, command: str | None = None):
    """The folder's lock held for the block, released however it ends (an error, Ctrl-C, a termination signal)."""
    rec = acquire(out_root, command)
    try:
        yield rec
    finally:
        release(out_root, rec)
