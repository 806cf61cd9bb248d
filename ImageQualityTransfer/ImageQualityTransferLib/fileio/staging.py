"""A run's outputs written all or none: each output a run's `Outputs` plan declares is held in its temporary file beside
it and renamed into place together with the others once the run succeeds (`all_or_none`), its 'wrote' lines said then
(`say`), the folders it made removed again if it fails (`make_folder`)."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from ..core.errors import IQTError


def current():
    """The stage of the run in progress in this context (`all_or_none`), None outside one."""
    return _STAGE.get()


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

    def declare(self, *paths: Path) -> None:
        """Hold these outputs (an output and the data file a detached NRRD header is written beside) until the commit."""
        with self.lock:
            self.declared.update(os.path.realpath(p) for p in paths)

    def holds(self, path: Path) -> bool:
        return os.path.realpath(path) in self.declared

    def where(self, path: Path) -> Path:
        """Where the output at `path` lies until the commit: the temporary file holding it, else `path` itself."""
        with self.lock:
            held = self.held.get(os.path.realpath(path))
        return Path(held[0]) if held else Path(path)

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
        """The lines the run said of its outputs, now that they are in place, one by one: those a signal cut off stay
        for the command's closing lines (apps/cli `_run`)."""
        while self.lines:
            with self.lock:
                line = self.lines.pop(0)
            text = line() if callable(line) else line  # a line made once the outputs are in place (what was removed)
            if text:
                print(text, flush=True)

    def discard(self) -> None:
        with self.lock:
            held, self.held = list(self.held.values()), {}
        for tmp, _ in held:
            if os.path.exists(tmp):
                os.remove(tmp)
        # only while empty: nothing of anyone else's goes with it; deepest first (made in the order sub-X/dwi, sub-X,
        # sub-X/figures, sub-X had still held figures/ when its turn came)
        for folder in sorted(self.folders, key=lambda f: len(Path(f).parts), reverse=True):
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
# (another thread, an in-process caller) neither writes into the first one's stage nor loses its outputs with it; a thread a run starts gets a fresh context (threading.Thread, concurrent.futures), so one that writes an output
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
    its own, and a resumed run relies on it); not `iqt train` (a checkpoint lands when it is written; the model's weights
    and sidecar, with its registry entry, are one stage of their own: `own_stage`, methods/learned.py `save`). Nested, the outermost commits. The stage is this
    context's (`_STAGE`): runs in other threads of the process have their own."""
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


@contextmanager
def own_stage():
    """An `all_or_none` of its own, put in place at the block's end even inside a run's stage (a model, its sidecar and
    its registry entry under the registry's lock: joined to an outer stage, they had landed after the lock was let go,
    and a second registration in that stage had lost the first). A signal taken once its outputs were in place is
    marked with them (`in_place`), for the command's closing line (apps/cli `_what_is_kept`)."""
    token = _STAGE.set(None)
    stage = None
    try:
        with all_or_none() as stage:
            yield stage
    except BaseException as exc:
        if stage is not None and stage.committed and stage.declared:
            exc.in_place = sorted(str(p) for p in stage.declared)
        raise
    finally:
        _STAGE.reset(token)


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
