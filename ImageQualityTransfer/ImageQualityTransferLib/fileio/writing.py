"""Writing one output file: to a temporary file beside it, renamed into place (or held by the run's stage,
`staging.all_or_none`), with the permission bits of the file it replaces; a full disk said in one line (`no_room`);
text and JSON as written."""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import tempfile
from pathlib import Path

from ..core.errors import IQTError, too_many_open_files
from .paths import check_not_a_link, not_a_file
from .staging import current


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permission bits an output at `path` is written with: those of the regular file it replaces, so that a file
    kept private (600) stays so when a run writes it again (not 644, the umask's); a new file the umask's, as is one in
    place of anything else (a device's 666 had made a world-writable output)."""
    try:
        st = os.lstat(path)
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        return stat.S_IMODE(st.st_mode) & 0o777
    return 0o666 & ~_umask()


def atomic_write(path, write_fn) -> None:
    """Call write_fn(tmp_path), give the file the permission bits of the file it replaces (a new one the user's umask),
    then move it onto path (a symbolic link there is refused); nothing is left at path or beside it on failure, on Ctrl-C or on a termination signal (the
    CLI turns SIGTERM/SIGHUP into an exception). A declared output of a run under `all_or_none` stays in its temporary
    file until the run succeeds."""
    path = Path(path)
    check_not_a_link(path)  # the CLI refused it before any work (fileio/paths.py check_output)
    kind = not_a_file(path)  # a device or FIFO is never replaced (as root, a rename would replace /dev/null itself)
    if kind is not None and kind != "a folder":  # a folder: the rename's IsADirectoryError, which callers word
        raise IQTError(f"{path}: is {kind}, not a regular file, and is not written; give the output a file's name")
    if path.parent and not path.parent.exists():
        raise IQTError(f"{path}: the folder {path.parent} does not exist; create it or choose another output path")
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".nii.gz") else path.suffix
    # in lower case: nibabel writes "x.Nii" as "x.nii", so the output would be the empty placeholder
    try:
        fd, tmp = tempfile.mkstemp(prefix=".iqt-", suffix=suffix.lower(), dir=str(path.parent or "."))
    except OSError as exc:  # nothing made yet: a full disk or ulimit -n met creating the temporary file
        room = no_room(exc, path) or too_many_open_files(exc, path=path)
        if room is not None:
            raise room from None
        raise
    os.close(fd)
    stage = current()
    try:
        write_fn(tmp)
        os.chmod(tmp, _mode_for(path))
        if stage is not None and stage.holds(path):
            stage.hold(path, tmp)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        room = no_room(exc, path)
        if room is None:
            room = too_many_open_files(exc, path=path)  # ulimit -n met by the writer (a file it opens): the output's line
        if room is not None:
            raise room from None
        raise


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def no_room(exc: BaseException, path=None) -> IQTError | None:
    """A full disk, a spent quota or a file-size limit met while writing (an OSError with ENOSPC, EDQUOT or EFBIG, here
    or as the cause of what a library raised) as the one-line error that names the output and the fix; None for any
    other failure."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_ROOM:
            break
        exc = exc.__cause__ or exc.__context__
    else:
        return None
    path = path if path is not None else exc.filename
    name = f"{path}: cannot be written" if path is not None else "a file cannot be written"
    where = f" in {Path(path).parent}" if path is not None else ""
    if exc.errno == errno.EFBIG:
        limit = file_size_limit()
        said = f"this shell's file-size limit (ulimit -f: {limit // 1024} KiB)" if limit is not None else \
            "the largest file its file system takes"
        return IQTError(f"{name}: it would pass {said}; raise the limit (ulimit -f unlimited) or write to another file "
                        f"system, then rerun (no partial file was left)")
    what = "your disk quota is spent" if exc.errno == errno.EDQUOT else "no space is left on the device"
    return IQTError(f"{name}: {what}{where}; free some space there or write to a folder on another disk, then rerun (no "
                    f"partial file was left)")


def file_size_limit() -> int | None:
    """This process's file-size limit in bytes (ulimit -f); None where there is none, or no `resource` (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else limit


def full_or_too_large(path) -> int:
    """The errno of a write to `path` that ran out of room without saying which (VTK's legacy writer): EFBIG where the
    folder still has room and this process has a file-size limit (`file_size_limit`), else ENOSPC (also where the
    system has no such limits: Windows, no os.statvfs)."""
    limit = file_size_limit()
    if limit is None:
        return errno.ENOSPC
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        free = st.f_bavail * st.f_frsize
    except OSError:
        return errno.ENOSPC
    return errno.EFBIG if free > 2 * limit else errno.ENOSPC


def write_text(path, text: str) -> None:
    """A UTF-8 text file, written atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path, obj) -> None:
    """A JSON file, written atomically (numpy numbers as plain numbers; NaN and infinities, which strict readers such as
    JavaScript's JSON.parse and the BIDS validator refuse, as null)."""
    write_text(path, json.dumps(as_written(obj), indent=2, allow_nan=False) + "\n")


def as_written(obj):
    """`obj` as `write_json` writes it and a reader gets it back (what a checksum over a file's content must see)."""
    return _finite(json.loads(json.dumps(obj, default=_plain)))


def _finite(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_finite(v) for v in o]
    return o


def _plain(o):
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):  # numpy arrays
        return o.tolist()
    return float(o)
