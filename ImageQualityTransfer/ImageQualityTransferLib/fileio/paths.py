"""Output paths: known suffixes, checks made before any work (an `Outputs` plan per command run), and atomic
writes (a temporary file renamed into place, so a failure or a signal never leaves a partial output); within
`all_or_none` (one command's run) the outputs its plan declared are renamed into place together once it succeeds."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from ..core.errors import IQTError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
TENSOR_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES
JSON_SUFFIXES = (".json",)
MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"  # the install's shipped models


NAME_MAX_BYTES = 255  # the longest file name ext4, APFS, NTFS (in UTF-16 units) and most others take


def check_output(path, suffixes=NIFTI_SUFFIXES, what="output", folder_checked: bool = False) -> Path:
    """An output path whose name ends in one of `suffixes`, that is not a folder, in a folder that exists and
    takes new files (`folder_checked`: a folder the run creates, its parent already checked); before any work."""
    p = Path(path)
    size = len(os.fsencode(p.name))
    if size > NAME_MAX_BYTES:  # the file system refuses it
        raise IQTError(f"{p.name[:40]}...: the {what}'s file name is {size} bytes long, more than a file name may be "
                       f"({NAME_MAX_BYTES} bytes); give a shorter name")
    try:
        is_dir = p.is_dir()
    except OSError as exc:  # a whole path too long for the system (ENAMETOOLONG), or one it cannot look at
        raise IQTError(f"{p}: cannot be used as the {what} ({exc.strerror or exc}); give a shorter path") from None
    if is_dir or str(path).endswith(("/", os.sep)):  # said first: "must end in .nii" would misdescribe a folder
        example = f" such as {p / ('out' + suffixes[0])}" if suffixes else ""
        raise IQTError(f"{p}: is a folder; give a file name in it for the {what}{example}")
    if suffixes and not str(p).lower().endswith(tuple(suffixes)):
        raise IQTError(f"{p}: the {what} name must end in {' or '.join(suffixes)}")
    if not folder_checked:
        check_folder(p.parent, p)
    return p


def check_folder(folder: Path, for_path=None) -> None:
    """The folder exists and a file can be created in it (a real probe: permission bits do not stop root, a
    read-only or full file system does)."""
    folder = Path(folder)
    name = for_path if for_path is not None else folder
    if not folder.is_dir():
        raise IQTError(f"{name}: the folder {folder} does not exist; create it or choose another output path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".iqt-probe-", dir=str(folder))
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise IQTError(f"{name}: cannot write in {folder} ({exc.strerror or exc}); choose a folder you can write to") from None


NRRD_HEADER_BYTES = 1 << 20  # the most of a NRRD file read for its header (a header is a few hundred bytes)


def nhdr_data_files(path) -> list[Path]:
    """The data files `fileio.nrrd.save_tensor_nrrd` writes beside a detached NRRD header output (`<name>.raw.gz`;
    `<name>.raw` uncompressed)."""
    p = Path(path)
    if not p.name.lower().endswith(".nhdr"):
        return []
    return [p.with_name(p.name[: -len(".nhdr")] + ext) for ext in (".raw.gz", ".raw")]


def with_data_file(path) -> str:
    """An output as a 'wrote' line names it: a detached NRRD header with the data file written beside it."""
    data = nhdr_data_files(path)
    return f"{path} with its data file {data[0].name}" if data else str(path)


def nrrd_data_file(path) -> Path | None:
    """The detached data file a NRRD header (`.nhdr`, or a `.nrrd` with a 'data file' field) names, relative to the
    header's folder as the NRRD format reads it; None for any other file or a header that names none. Only a regular
    file is opened (a FIFO would hang)."""
    p = Path(path)
    if not str(p).lower().endswith(NRRD_SUFFIXES) or not os.path.isfile(p):
        return None
    try:
        with open(p, "rb") as f:
            head = f.read(NRRD_HEADER_BYTES)
    except OSError:
        return None  # the reader says why it cannot be read
    for raw in head.split(b"\n")[1:]:
        line = raw.decode("latin-1").rstrip()
        if not line:
            break  # the end of the header
        field, sep, value = line.partition(":")
        if sep and not value.startswith("=") and field.strip().lower() in ("data file", "datafile"):
            name = value.strip()
            return Path(name) if os.path.isabs(name) else p.parent / name
    return None


def not_a_file(path) -> str | None:
    """What the input at `path` is where it exists and is no regular file ('a named pipe (FIFO)', 'a device', ...), so
    that it is refused before it is opened: a read from a FIFO waits for a writer that never comes (a NRRD header whose
    data file is a FIFO hangs until killed); None for a regular file or nothing there (the reader says)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


class Outputs:
    """Every file one run will read and write, checked together before any work: an output is never one of the
    inputs (by real path, so `out/../a.nii.gz` and symlinks count) nor another output of the same run."""

    def __init__(self, *inputs):
        self.inputs: list[Path] = []
        self.outputs: list[tuple[Path, str]] = []
        self.data_of: dict[str, Path] = {}  # real path of a data file an input NRRD header names -> that header
        self.read(*inputs)

    def read(self, *paths) -> "Outputs":
        """Add inputs (None is skipped; a folder stands for every file in it)."""
        for p in paths:
            if p is None:
                continue
            p = Path(p)
            files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
            for q in files:
                self.inputs.append(q)
                data = nrrd_data_file(q)  # a detached NRRD header's data file is read too (an .nhdr output
                if data is not None:  # named after it would replace it, and the input be lost)
                    self.inputs.append(data)
                    self.data_of[os.path.realpath(data)] = q
        return self

    def _named(self, q: Path) -> str:
        """An input as said: a data file as the data file of its header."""
        header = self.data_of.get(os.path.realpath(q))
        return f"{q}, the data file of {header}" if header is not None else str(q)

    def add(self, path, suffixes=NIFTI_SUFFIXES, what="output", folder_checked: bool = False,
            shipped_ok: bool = False) -> Path:
        """`shipped_ok`: the output may lie in the install's model folder (a model 'iqt train' writes there, which
        checks it further); any other output there would replace a shipped model's file (e.g. benchmark --json
        onto global-linear_x2.json)."""
        data = nhdr_data_files(path)  # the data file a detached NRRD header output is written beside
        for each, of in [(path, ""), *((d, f" (the data file of the {what} {path})") for d in data)]:
            real = os.path.realpath(each)
            for q in self.inputs:  # an input named as an output is said as such, before its file type is judged
                if real == os.path.realpath(q):
                    raise IQTError(f"{each}{of}: is an input of this run ({self._named(q)}); write the {what} to another "
                                   f"file (inputs are never overwritten)")
        if not shipped_ok and Path(real).parent == Path(os.path.realpath(MODELS_DIR)):
            raise IQTError(f"{path}: is in the install's model folder ({MODELS_DIR}), whose files are the shipped "
                           f"models; write the {what} elsewhere")
        p = check_output(path, suffixes, what, folder_checked)
        self.outputs.append((p, what))
        self.outputs.extend((d, f"data file of the {what} {p}") for d in data)
        stage = _STAGE.get()
        if stage is not None:
            stage.declare(p)
        return p

    def retire(self, path, still=None) -> bool:
        """A file this run's outputs make stale (an earlier run's map named after the output it replaces), removed
        when the outputs are put in place (`all_or_none`: kept if the run fails; outside one, left as it is). Not an
        input of the run, nor one of its outputs; `still(path)`, asked again at the commit, must hold then too (another
        program may have written the path meanwhile). True where it will be removed."""
        p = Path(path)
        real = os.path.realpath(p)
        stage = _STAGE.get()
        if stage is None or not p.is_file() or any(real == os.path.realpath(q) for q in self.inputs) \
                or any(real == os.path.realpath(q) for q, _ in self.outputs):
            return False
        with stage.lock:
            stage.retired.append((p, still))
        return True

    def check(self) -> None:
        seen, folded = {}, {}
        ins = {os.path.realpath(p): p for p in self.inputs}
        for p, what in self.outputs:
            real = os.path.realpath(p)
            src = ins.get(real) or next((q for q in self.inputs if p.exists() and q.exists() and os.path.samefile(p, q)),
                                        None)  # a hard link to an input: the input it is, not the output's own name
            if src is not None:
                raise IQTError(f"{p}: is an input of this run ({self._named(src)}); write the {what} to another file "
                               f"(inputs are never overwritten)")
            if real in seen:
                raise IQTError(f"{p}: would be written twice in this run (as the {seen[real]} and the {what}); "
                               f"give them different names")
            other = folded.get(real.casefold())
            if other is not None:  # one file on macOS's and Windows's disks: the later would replace the earlier
                raise IQTError(f"{p}: differs from {other[0]} (the {other[1]}) only in upper and lower case, and on "
                               f"macOS and Windows the two are one file; give the {what} another name")
            seen[real] = what
            folded[real.casefold()] = (p, what)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


ASIDE_NAME_BYTES = 200  # of the output's name kept in its set-aside name (a file name holds 255 bytes)


def _aside(path: Path) -> str:
    """A hidden temporary name beside `path` (`.iqt-` like every temporary file of a run, so that one left by a killed
    run is known as such), for the file at `path` while a run's outputs are put in place: `.iqt-earlier-<name>.<random>
    .tmp`, so that after a SIGKILL the file to rename back to each missing output can be told, as the README's advice to
    rename it back needs (a random name alone would not say which output it was)."""
    name = os.fsdecode(os.fsencode(path.name)[:ASIDE_NAME_BYTES])  # a longer name cut (the start says which it is)
    fd, old = tempfile.mkstemp(prefix=f".iqt-earlier-{name}.", suffix=".tmp", dir=str(path.parent or "."))
    os.close(fd)
    return old


def _remove(path) -> bool:
    """Remove the file at `path` if there is one; False where it is there and cannot be removed."""
    try:
        if os.path.lexists(path):
            os.remove(path)
    except OSError:
        return False
    return True


def _in_folders(files) -> str:
    """Files named by folder: 'in /a: .iqt-1.nii.gz, .iqt-2.nii.gz'."""
    folders: dict[str, list[str]] = {}
    for f in files:
        folders.setdefault(os.path.dirname(str(f)) or ".", []).append(os.path.basename(str(f)))
    return "; ".join(f"in {d}: {', '.join(names)}" for d, names in folders.items())


class _Stage:
    """The outputs of one run written all or none: each declared output (`Outputs.add`) is held in its temporary file
    beside it until the run succeeds (`commit`), and removed otherwise (`discard`)."""

    def __init__(self):
        self.declared: set[str] = set()
        self.held: dict[str, tuple[str, Path]] = {}  # real path -> (temporary file, path), in the order written
        self.lines: list[str] = []  # what the run says of its outputs (`say`), printed once they are in place
        self.committed = False  # every output is in place
        self.folders: list[Path] = []  # folders the run created (`make_folder`), deepest first: removed if it fails
        self.retired: list = []  # (path, check) of files the outputs make stale (`Outputs.retire`): removed once they are in place
        self.lock = threading.Lock()

    def declare(self, path: Path) -> None:
        paths = [path, *nhdr_data_files(path)]  # a detached NRRD header's data file beside it
        with self.lock:
            self.declared.update(os.path.realpath(p) for p in paths)

    def holds(self, path: Path) -> bool:
        return os.path.realpath(path) in self.declared

    def hold(self, path: Path, tmp: str) -> None:
        with self.lock:
            earlier = self.held.pop(os.path.realpath(path), None)
            self.held[os.path.realpath(path)] = (tmp, path)
        if earlier and os.path.exists(earlier[0]):  # the same output written again: the last one counts
            os.remove(earlier[0])

    def commit(self) -> None:
        """Every held output into place, or none: the files at their paths are first moved aside (hidden temporaries
        beside them), the new ones renamed in, and the old ones removed once all are in; a rename that fails (a
        folder or a permission change at a path, a file system gone) puts every old file back, removes the new ones
        and raises one IQTError saying so, naming whatever could not be undone (else a second rename failing would
        leave the first output new, the others old)."""
        with _signals_held():  # the renames are quick; a signal now is taken once they are all done
            with self.lock:
                held = list(self.held.values())
                retired = [p for p, still in self.retired if os.path.lexists(p) and (still is None or still(p))]
            aside: list[tuple[Path, str]] = []  # (output path, where its earlier file is kept)
            placed: list[Path] = []
            left: list[str] = []  # this run's files that could not be removed
            at = None  # the output whose rename is under way
            try:
                for at in [at for _, at in held] + retired:  # a retired file goes aside as a replaced one does
                    path = at
                    if os.path.lexists(path):
                        old = _aside(path)
                        try:
                            os.replace(path, old)
                        except BaseException:
                            if not _remove(old):  # the placeholder: nothing was moved
                                left.append(old)
                            raise
                        aside.append((path, old))
                for tmp, at in held:
                    os.replace(tmp, at)
                    placed.append(at)
            except BaseException as exc:
                kept, stuck, unremoved = self._undo(held, placed, aside)
                left += unremoved
                if not isinstance(exc, OSError):
                    raise
                # what could not be undone is named: in a folder made read-only the temporaries cannot be removed
                # and stay beside the outputs, where 'nothing was changed' alone would mislead
                said = [f"the earlier {p} could not be put back and is kept as {old}" for p, old in kept]
                said += [f"this run's {p} could not be removed" for p in stuck]
                said += [f"this run's temporary files could not be removed ({_in_folders(left)})"] if left else []
                head = ("none of this run's outputs was kept" if not stuck else "not every output of this run could be "
                        "taken back") + ("" if kept or stuck else " and every file that was at their paths is as it was")
                said = f"nothing was changed: {head}" if not said else f"{head}, but " + "; ".join(said)
                then = ", delete those temporary files" if left else ""
                raise IQTError(f"{at}: cannot be put in place ({exc.strerror or exc}); {said}; fix that (the folder's "
                               f"permissions, a folder of that name){then} and rerun") from None
            with self.lock:
                self.held.clear()
            for _, old in aside:  # every output in place: the earlier files go, before a signal held meanwhile is
                _remove(old)  # taken (taken first, it would leave them all as .iqt-earlier-* copies)
            self.committed = True  # a signal taken from here on came once every output was in place (all_or_none)

    def _undo(self, held, placed, aside):
        """The commit's renames undone: the new files removed, the old ones back. Returns what could not be undone:
        [(path, where its old file is)] for the old files not put back, the new outputs not removed (and not replaced
        by their old file), and the temporary files not removed."""
        stuck = [path for path in placed if not _remove(path)]
        kept, back = [], set()
        for path, old in reversed(aside):
            try:
                os.replace(old, path)
                back.add(path)
            except OSError:
                kept.append((path, old))
        left = [tmp for tmp, _ in held if not _remove(tmp)]
        with self.lock:
            self.held.clear()
        return kept, [p for p in stuck if p not in back], left

    def say(self) -> None:
        """The lines the run said of its outputs, now that they are in place."""
        lines, self.lines = self.lines, []
        for line in lines:
            text = line() if callable(line) else line  # a line made once the outputs are in place (what was removed)
            if text:
                print(text, flush=True)

    def discard(self) -> None:
        with self.lock:
            held, self.held = list(self.held.values()), {}
        for tmp, _ in held:
            if os.path.exists(tmp):
                os.remove(tmp)
        for folder in self.folders:  # only while empty: nothing of anyone else's goes with it
            with contextlib.suppress(OSError):
                folder.rmdir()


def make_folder(path) -> Path:
    """Create an output folder (and its missing parents) once the outputs are ready to write; within `all_or_none`
    those it created are removed again if the run then fails, so a failed run leaves no empty folder."""
    p = Path(path)
    new = [q for q in (p, *p.parents) if not q.exists()]
    p.mkdir(parents=True, exist_ok=True)
    stage = _STAGE.get()
    if stage is not None:
        with stage.lock:
            stage.folders.extend(new)
    return p


# the stage of the run in progress in this context: per run, not per process, so that a second run in the same process
# (another thread, an in-process caller) neither writes into the first one's stage nor loses its outputs with it (review
# 48); a thread a run starts gets a fresh context (threading.Thread, concurrent.futures), so one that writes an output
# must run in a copy of the run's (contextvars.copy_context().run) - none does: fileio.nifti.save_nifti's threads only
# compress bytes that the run's own thread writes into the temporary file
_STAGE: ContextVar[_Stage | None] = ContextVar("iqt_all_or_none_stage", default=None)


@contextmanager
def all_or_none():
    """One command's run: the outputs its `Outputs` plans declare are written to temporary files beside them and renamed
    into place together when the block ends without an exception; on any failure, Ctrl-C or termination signal all are
    removed and every file already at those paths stays as it was (else a disk that fills up between two outputs leaves
    the first, `iqt upsample --uncertainty` up to six of its seven). Files a run writes that it did not declare (a
    temporary input for a subprocess) are written as they come. `iqt batch` holds one per subject (each subject commits on
    its own, and a resumed run relies on it); not `iqt train` (a checkpoint lands when it is written). Nested, the outermost
    commits. The stage is this context's (`_STAGE`): runs in other threads of the process have their own."""
    outer = _STAGE.get()
    if outer is not None:
        yield outer
        return
    stage = _Stage()
    token = _STAGE.set(stage)
    try:
        yield stage
        stage.commit()
    except BaseException:
        stage.discard()
        if stage.committed:  # a signal held during the renames, taken once they were all done: the outputs are in
            stage.say()  # place, so they are said before the signal stops the run (its exit status stays 128 + signal)
        raise
    finally:
        _STAGE.reset(token)
    stage.say()


def say(line) -> None:
    """Print a line that names a run's outputs ('wrote ...'): within `all_or_none`, once every output is in place (a run
    that fails after its writes, or whose outputs cannot be put in place, announces none of them); outside, now. A
    callable is called then for its text (nothing is printed for an empty one)."""
    stage = _STAGE.get()
    if stage is None:
        text = line() if callable(line) else line
        if text:
            print(text, flush=True)
    else:
        with stage.lock:
            stage.lines.append(line)


@contextmanager
def _signals_held():
    """SIGINT, SIGTERM and SIGHUP held back for the block and taken after it, by the handlers they had. Held by Python
    handlers, which run in the main thread whichever thread the system gives the signal to: a thread mask
    (pthread_sigmask) holds it from the main thread alone, so a process with other threads (the gzip pool, torch's)
    took a SIGTERM in the middle of the renames (Testing/fileio/test_signal_in_commit.py)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    before = {}
    for sig in (getattr(signal, n) for n in names):
        handler = signal.getsignal(sig)
        if handler is not None:  # None: a handler not set from Python, left as it is
            before[sig] = signal.signal(sig, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if came:
            signal.raise_signal(came[0])  # to the handler it had, as if it came now


def _mode_for(path: Path) -> int:
    """The permission bits an output at `path` is written with: those of the file it replaces, so that a file kept
    private (600) stays so when a run writes it again (not 644, the umask's); a new file the umask's."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except OSError:
        return 0o666 & ~_umask()


def atomic_write(path, write_fn) -> None:
    """Call write_fn(tmp_path), give the file the permission bits of the file it replaces (a new one the user's umask),
    then move it onto path; nothing is left at path or beside it on failure, on Ctrl-C or on a termination signal (the
    CLI turns SIGTERM/SIGHUP into an exception). A declared output of a run under `all_or_none` stays in its temporary
    file until the run succeeds."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise IQTError(f"{path}: the folder {path.parent} does not exist; create it or choose another output path")
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".nii.gz") else path.suffix
    # in lower case: nibabel writes "x.Nii" as "x.nii", so the output would be the empty placeholder
    fd, tmp = tempfile.mkstemp(prefix=".iqt-", suffix=suffix.lower(), dir=str(path.parent or "."))
    os.close(fd)
    stage = _STAGE.get()
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
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        said = f"this shell's file-size limit (ulimit -f: {limit // 1024} KiB)" if limit != resource.RLIM_INFINITY else \
            "the largest file its file system takes"
        return IQTError(f"{name}: it would pass {said}; raise the limit (ulimit -f unlimited) or write to another file "
                        f"system, then rerun (no partial file was left)")
    what = "your disk quota is spent" if exc.errno == errno.EDQUOT else "no space is left on the device"
    return IQTError(f"{name}: {what}{where}; free some space there or write to a folder on another disk, then rerun (no "
                    f"partial file was left)")


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
