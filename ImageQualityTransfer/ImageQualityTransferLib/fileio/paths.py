"""Paths: the known suffixes, the checks made on outputs before any work (an `Outputs` plan per command run: never an
input, never two outputs in one file, in a folder that takes new files) and on inputs that are no regular file, a NRRD
header's data file. Writing them: `writing` (one file) and `staging` (a run's outputs all or none)."""

from __future__ import annotations

import os
import re
import shlex
import stat
import tempfile
import unicodedata
from pathlib import Path

from ..core.errors import IQTError
from .staging import current

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
MIF_SUFFIXES = (".mif", ".mif.gz")  # MRtrix's own format (fileio/mif.py)
TENSOR_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES + MIF_SUFFIXES
MASK_SUFFIXES = NIFTI_SUFFIXES + MIF_SUFFIXES  # a mask written (`iqt mask -o`, `--mask-out`): NIfTI or MRtrix
MAP_SUFFIXES = TENSOR_SUFFIXES  # `iqt upsample --uncertainty`'s maps (fileio/nrrd.py save_scalar_nrrd, fileio/mif.py)
JSON_SUFFIXES = (".json",)


def shell_word(path) -> str:
    """`path` as a shell reads it in a command to copy from a line of advice: quoted where it holds a space, a quote or
    another character a shell splits or expands at."""
    return shlex.quote(str(path))


def _models_dir() -> Path:
    """The install's shipped models: ImageQualityTransferLib/models where a regular install (`pip install .`, a wheel)
    put them (pyproject.toml maps Resources/Models there), else Resources/Models beside the package (the source tree,
    an editable install, the Slicer extension)."""
    lib = Path(__file__).resolve().parents[1]
    packaged = lib / "models"
    return packaged if packaged.is_dir() else lib.parent / "Resources" / "Models"


MODELS_DIR = _models_dir()


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
        # `iqt mask -o m.nrrd` (a newcomer's audit): why not, and the name to give
        nrrd = str(p).lower().endswith(NRRD_SUFFIXES) and set(suffixes) <= set(MASK_SUFFIXES)
        why = (f": NRRD is written for tensor outputs and 'iqt upsample --uncertainty' maps only; the {what} is NIfTI "
               f"(which Slicer loads too) or MRtrix's .mif: give {_nifti_name(p)}" if nrrd else "")
        raise IQTError(f"{p}: the {what} name must end in {' or '.join(suffixes)}{why}")
    if suffixes and p.name.lower() in tuple(suffixes):  # '-o .nii.gz' had written a hidden file with no name
        raise IQTError(f"{p}: the {what}'s name is its suffix alone, a hidden file with no name; give a name before "
                       f"it, e.g. {p.with_name('out' + p.name)}")
    check_not_a_link(p)
    kind = not_a_file(p)  # a device or FIFO is never replaced (fileio/writing.py atomic_write)
    if kind is not None:
        raise IQTError(f"{p}: is {kind}, not a regular file, and is not written; give the {what} a file's name")
    if not folder_checked:
        check_folder(p.parent, p)
    return p


def check_not_a_link(path) -> None:
    """An output path that is a symbolic link is refused: written through, a target of another suffix got the wrong
    format, a .nhdr's data file and the target's --maps were left apart; replaced, the link would be lost."""
    p = Path(path)
    try:
        linked = p.is_symlink()
    except OSError:  # a name too long or an unreadable folder: the name checks after this one say it
        return
    if linked:
        raise IQTError(f"{p}: is a symbolic link (to {os.readlink(p)}); give the file's own path, or remove the link")


def _nifti_name(p: Path) -> Path:
    """The NIfTI name for a NRRD one: 'u.nii.nrrd' gives u.nii.gz (not u.nii.nii.gz), '.nrrd' out.nii.gz (not the
    hidden '.nii.gz', itself refused); 'x.nii.gz.nrrd' x.nii.gz and '..nrrd' out.nii.gz (a dot-only stem is hidden too)."""
    stem = p.name[: -len(p.suffix)]
    for nifti in (".nii.gz", ".nii"):
        stem = stem[: -len(nifti)] if stem.lower().endswith(nifti) else stem
    return p.with_name((stem if stem.strip(".") else "out") + ".nii.gz")


def check_folder(folder: Path, for_path=None) -> None:
    """The folder exists and a file can be created in it (a real probe: permission bits do not stop root, a
    read-only or full file system does)."""
    folder = Path(folder)
    name = for_path if for_path is not None else folder
    if not folder.is_dir():
        why = "is a file, not a folder:" if folder.exists() else "does not exist; create it or"  # a file: named so (audit)
        raise IQTError(f"{name}: the folder {folder} {why} choose another output path")
    try:
        # an unnamed file where the system has them (O_TMPFILE): a signal during the probe leaves no name behind,
        # as a named one had under SIGHUP (Testing/apps/test_bad_inputs.py, a termination signal leaves no output)
        with tempfile.TemporaryFile(prefix=".iqt-probe-", dir=str(folder)):
            pass
    except OSError as exc:
        raise IQTError(f"{name}: cannot write in {folder} ({exc.strerror or exc}); choose a folder you can write to") from None


NRRD_HEADER_BYTES = 1 << 20  # the most of a NRRD file read for its header (a header is a few hundred bytes)
NRRD_CHUNK = 4096  # a header is read in reads of this size, up to its end


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


# The 'data file' forms Teem (Slicer's NRRD reader) reads as several files: a name starting with LIST (case as Teem
# compares it), or a printf pattern: Teem takes the first '%' that is not doubled ('%%' is a plain '%'), with digits
# after it and a 'd', as a file-number pattern. slicer-core's AddArchetypeVolume returned None on LIST.nhdr,
# LISTing.nhdr, a%d.nhdr, a%%%d.nhdr; list.nhdr, 100%.nhdr, a%s%d.nhdr, a%%d.nhdr loaded
# (Testing/fileio/test_output_paths.py).
_TEEM_PATTERN = re.compile(r"(?:[^%]|%%)*%[0-9]*d")


def _teem_file_list(name: str) -> bool:
    return name.startswith("LIST") or _TEEM_PATTERN.match(name) is not None


class DataNameError(IQTError, ValueError):
    """`check_data_name`'s refusal where `fileio.nrrd` is called from Python (save_tensor, save_scalar): the commands'
    one line, a ValueError to the caller, as the writers' other refusals of their arguments."""


def check_data_name(path, data: Path, what: str) -> None:
    """A detached header's data file name, written into its 'data file' line, is printable ASCII without edge spaces:
    pynrrd reads the header as ASCII and drops other characters (another file's name), a newline ends the line; nor
    one Slicer reads as a list of files (LIST..., a '%d' pattern)."""
    name = data.name
    shown = str(path) if str(path).isprintable() else repr(str(path))  # a newline kept out of the one line
    if not (all(" " <= c <= "~" for c in name) and name == name.strip()):
        raise IQTError(f"{shown}: a detached NRRD header names its data file ({name!r}) inside it, which NRRD readers "
                       f"take as plain ASCII without line breaks or edge spaces; give the {what} such a name, or a "
                       ".nrrd (one file, no data file named)")
    if _teem_file_list(name):
        header = Path(path).name
        given = ("List" + header[4:] if header.startswith("LIST") else header).replace("%", "_")
        raise IQTError(f"{shown}: a detached NRRD header names its data file ({name!r}) inside it, and Slicer's NRRD "
                       "reader (Teem) takes a name starting with LIST, or holding a '%d' pattern, as a list of files "
                       f"and cannot load it; give the {what} another name, e.g. {Path(path).with_name(given)}, or a "
                       ".nrrd (one file, no data file named)")


def check_data_file(path: Path, data: Path, what: str) -> None:
    """Before any work: the data file a detached header output is written beside (`data`) is no folder, and no file
    this run would replace other than the data file the header at `path` names (that header is replaced too, as `-o`
    replaces any file at its name; whoever wrote it: iqt, Slicer's re-save, `fileio.save_tensor`) or the other of its two
    data file names that no header names (`_left_over`), nor the data file of another header in the folder (a copy of the header would show the new data; another program's file had been
    replaced without a word)."""
    if data.is_dir():
        raise IQTError(f"{data}: is a folder, where the {what} {path} writes its data file; give the {what} another "
                       "name (or move that folder)")
    if not os.path.lexists(data):
        return
    named = nrrd_data_file(path)
    own = named is not None and os.path.realpath(named) == os.path.realpath(data)
    other = _header_naming(data, path)
    if other is None and (own or _left_over(path, named, data)):
        return
    if own:
        raise IQTError(f"{data}: the data file of {path.name} and also of {other.name}, which the {what} {path} would "
                       f"replace with its data file, changing what {other.name} shows; give the {what} another name")
    if other is not None:
        whose = f"the data file of {other.name}"
    elif os.path.lexists(path):
        whose = f"not the data file {path.name} names"
    else:
        whose = f"with no {path.name} naming it as its data file"
    raise IQTError(f"{data}: already there, {whose}, which the {what} {path} would replace with its data file; give "
                   f"the {what} another name (or move that file)")


def _left_over(path: Path, named: Path | None, data: Path) -> bool:
    """`data` is the other of the header's two data file names (X.raw.gz where X.nhdr names X.raw, or back), which no
    header names: an earlier write's data left behind when Slicer re-saved X.nhdr with or without compression, so a
    rerun replaces it (Testing/fileio/test_output_paths.py, a leftover)."""
    pair = [os.path.realpath(q) for q in nhdr_data_files(path)]
    return named is not None and os.path.realpath(named) in pair and os.path.realpath(data) in pair


def _header_naming(data: Path, besides: Path) -> Path | None:
    """A NRRD header in `data`'s folder, other than the one at the name `besides` (a link or hard link to it at another
    name counts: it shows what is written there), that names `data` as its data file. Every .nhdr and .nrrd is looked
    at, each read up to the end of its header only (`nrrd_data_file`)."""
    real = os.path.realpath(data)
    try:
        with os.scandir(data.parent) as entries:
            for entry in entries:
                name = entry.name
                if not name.lower().endswith(NRRD_SUFFIXES) or name == besides.name:
                    continue
                q = Path(entry.path)
                if name.lower() == besides.name.lower() and _same_file(q, besides):
                    continue  # the output itself on a disk that ignores case
                named = nrrd_data_file(q)
                if named is not None and os.path.realpath(named) == real:
                    return q
    except OSError:
        pass
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def nrrd_data_file(path) -> Path | None:
    """The detached data file a NRRD header (`.nhdr`, or a `.nrrd` with a 'data file' field) names, relative to the
    header's folder as the NRRD format reads it; None for any other file, one not starting with 'NRRD', or a header that
    names none. Only a regular file is opened (a FIFO would hang), and only its header is read, in small chunks up to
    the blank line that ends it (a folder's scan in `_header_naming` reads every .nrrd there)."""
    p = Path(path)
    if not str(p).lower().endswith(NRRD_SUFFIXES) or not os.path.isfile(p):
        return None
    try:
        with open(p, "rb", buffering=NRRD_CHUNK) as f:
            if f.read(4) != b"NRRD":
                return None  # no NRRD file (the reader says why, where it is an input)
            left = NRRD_HEADER_BYTES - 4
            left -= len(f.readline(left))  # the rest of the magic line
            while left > 0:
                raw = f.readline(left)
                left -= len(raw)
                line = raw.decode("latin-1").rstrip()
                if not line:
                    break  # the end of the header (or of the file)
                field, sep, value = line.partition(":")
                if sep and not value.startswith("=") and field.strip().lower() in ("data file", "datafile"):
                    name = value.strip()
                    return Path(name) if os.path.isabs(name) else p.parent / name
    except OSError:
        return None  # the reader says why it cannot be read
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


def json_sidecar(path: Path) -> Path | None:
    """The JSON sidecar beside an image file (dwi.nii.gz -> dwi.json, as BIDS and `iqt batch` keep them) where one is
    there and holds metadata; None for another file, or where the JSON is `iqt evaluate`'s own summary of that image
    (`iqt evaluate --pred up.nii.gz --json up.json` is this tool's habit, and its rerun writes it again)."""
    name = path.name
    for suffix in (*NIFTI_SUFFIXES, *NRRD_SUFFIXES):
        if name.lower().endswith(suffix):
            sidecar = path.with_name(name[: -len(suffix)] + ".json")
            return sidecar if sidecar.is_file() and not _evaluate_summary(sidecar) else None
    return None


def _evaluate_summary(path: Path) -> bool:
    """Whether a JSON file is `iqt evaluate --json`'s summary (its regions' figures and the build that scored them)."""
    import json

    try:
        if path.stat().st_size > 1 << 20:
            return False
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # a sidecar nested too deeply is no summary (as fileio/slices.py)
        return False
    return isinstance(data, dict) and {"interior", "exterior", "build"} <= set(data)


def _listing(folder: str) -> set[str]:
    """The names `folder` lists (as stored: a disk that ignores case lists one name where a path may spell it two ways);
    empty where it cannot be read."""
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def _listed_apart(a: str, b: str) -> bool:
    """Whether two real paths that `_folded` makes one are two directory entries: at a part where they differ, their
    folder lists both names (a disk that keeps case), where on a disk that ignores case it lists one."""
    pa, pb = Path(a).parts, Path(b).parts
    return len(pa) == len(pb) and any(x != y and {x, y} <= _listing(os.path.join(*pa[:i]))
                                      for i, (x, y) in enumerate(zip(pa, pb)) if i)


def _folded(name: str) -> str:
    """A path as macOS's disks compare names (Windows's too for case): upper and lower case alike, Ä and A+U+0308 one
    name; not str.casefold(), whose ß -> ss made straße and strasse one (they are two files there)."""
    return unicodedata.normalize("NFD", name).lower()


def _how(a, b) -> str:
    """How two names `_folded` makes one differ, and on which systems' disks they are one file, as said: a case-only
    difference on macOS's and Windows's; an accent's encoding (NFC or NFD) on macOS's only (NTFS keeps both forms)."""
    if str(a).lower() == str(b).lower():
        return "upper and lower case, and on macOS and Windows"
    return ("how an accented letter is encoded (one character or a letter and a combining accent) or in case, and on "
            "macOS")


class Outputs:
    """Every file one run will read and write, checked together before any work: an output is never one of the
    inputs (by real path, so `out/../a.nii.gz` and symlinks count) nor another output of the same run."""

    def __init__(self, *inputs):
        self.inputs: list[Path] = []
        self.outputs: list[tuple[Path, str]] = []
        self.data_of: dict[str, Path] = {}  # real path of a data file an input NRRD header names -> that header
        self.sidecar_of: dict[str, Path] = {}  # real path of an input image's JSON sidecar name -> that image
        self.instead: dict[Path, str] = {}  # an output -> what to do where it is an input (`add`)
        self._real: list[tuple[Path, str]] = []  # (input, its real path), as `_input_of` last read them
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
                sidecar = json_sidecar(q)  # an image's JSON sidecar (dcm2niix's, iqt batch's) goes with it: `iqt
                if sidecar is not None:  # evaluate --json` onto one had replaced a DWI's metadata (an audit)
                    self.sidecar_of[os.path.realpath(sidecar)] = q
        return self

    def _named(self, q: Path) -> str:
        """An input as said: a data file as the data file of its header."""
        header = self.data_of.get(os.path.realpath(q))
        return f"{q}, the data file of {header}" if header is not None else str(q)

    def add(self, path, suffixes=NIFTI_SUFFIXES, what="output", folder_checked: bool = False,
            shipped_ok: bool = False, instead: str | None = None) -> Path:
        """`shipped_ok`: the output may lie in the install's model folder (a model 'iqt train' writes there, which
        checks it further); any other output there would replace a shipped model's file (e.g. benchmark --json
        onto global-linear_x2.json). `instead`: what to do where the output is an input, for a name the user did not
        give (a map in the -o folder: "write the propagation visitation to another file" could not be done)."""
        instead = instead or f"write the {what} to another file"
        data = nhdr_data_files(path)  # the data file a detached NRRD header output is written beside
        if data:
            check_data_name(path, data[0], what)
        for each, of in [(path, ""), *((d, f" (the data file of the {what} {path})") for d in data)]:
            real = os.path.realpath(each)
            for q in self.inputs:  # an input named as an output is said as such, before its file type is judged
                if real == os.path.realpath(q):
                    raise IQTError(f"{each}{of}: is an input of this run ({self._named(q)}); {instead} (inputs are "
                                   f"never overwritten)")
            image = self.sidecar_of.get(real)
            if image is not None:
                raise IQTError(f"{each}{of}: is the JSON sidecar of the input {image} (its metadata, e.g. BIDS or iqt "
                               f"batch's, goes with it); write the {what} to another file")
        for each in (path, *data):  # before the rules below, which would judge the link's target
            check_not_a_link(each)
        if not shipped_ok and Path(real).parent == Path(os.path.realpath(MODELS_DIR)):
            raise IQTError(f"{path}: is in the install's model folder ({MODELS_DIR}), whose files are the shipped "
                           f"models; write the {what} elsewhere")
        p = check_output(path, suffixes, what, folder_checked)
        if data:
            check_data_file(p, data[0], what)
        self.outputs.append((p, what))
        self.outputs.extend((d, f"data file of the {what} {p}") for d in data)
        self.instead.update({p: instead, **dict.fromkeys(data, instead)})
        stage = current()
        if stage is not None:
            stage.declare(p, *data)
        return p

    def retire(self, path, still=None) -> bool:
        """A file this run's outputs make stale (an earlier run's map named after the output it replaces), removed
        when the outputs are put in place (`all_or_none`: kept if the run fails; outside one, left as it is). Not an
        input of the run, nor one of its outputs; `still(path)`, asked again at the commit, must hold then too (another
        program may have written the path meanwhile). True where it will be removed. Such a stale file that is an
        input's own name (`iqt propagate --mask DIR/visitation.nii.gz --no-tracts`; or, where names ignore case,
        DIR/Visitation.nii.gz, the same file) is refused: it would stay beside this run's outputs and pass for one of
        them, or be the input removed. A hard link to it under another name (on a disk that keeps case, one differing in
        case only too), or another file differing in case only, is another entry: removing the stale name leaves that
        input as it was."""
        p = Path(path)
        real = os.path.realpath(p)
        src = self._entry_of(p)
        if src is not None and still is not None and p.is_file() and still(p):
            named = "" if os.path.realpath(src) == real else f" (as {self._named(src)})"
            raise IQTError(f"{p}: an earlier run's output, which this run does not write again, is one of this "
                           f"run's inputs{named}: left beside this run's outputs it would pass for one of them; give a "
                           "copy of it from another folder, or write this run's outputs to another place")
        stage = current()
        if stage is None or not p.is_file() or src is not None \
                or any(real == os.path.realpath(q) for q, _ in self.outputs):
            return False
        with stage.lock:
            stage.retired.append((p, still))
        return True

    def _entry_of(self, p: Path) -> Path | None:
        """The input whose own directory entry the file `p` is: the same real path, or the same file under a name
        differing in case only that its folder does not list apart (one entry on a disk that ignores case; on one that
        keeps case, a hard link P/Visitation.nii.gz to P/visitation.nii.gz is listed beside it: another entry). None
        where none."""
        real = os.path.realpath(p)
        return next((q for q, r in self._reals() if r == real
                     or (_folded(r) == _folded(real) and _same_file(p, q) and not _listed_apart(r, real))), None)

    def _reals(self) -> list[tuple[Path, str]]:
        """(input, its real path) for each input, read once, again where inputs were read since."""
        if len(self._real) != len(self.inputs):
            self._real = [(q, os.path.realpath(q)) for q in self.inputs]
        return self._real

    def _input_of(self, p: Path) -> tuple[Path | None, bool]:
        """The input that the file `p` is, and whether only as names compare on macOS's and Windows's disks (`_folded`):
        by real path, as a hard link to it (the input it is, not its own name), or by a name differing in case only
        (on a disk that ignores case, one file). None where none."""
        real = os.path.realpath(p)
        src = next((q for q, r in self._reals() if r == real), None)
        if src is None and p.exists():
            src = next((q for q in self.inputs if _same_file(p, q)), None)
        if src is not None:
            return src, False
        return next((q for q, r in self._real if _folded(r) == _folded(real)), None), True

    def check(self) -> None:
        seen, folded = {}, {}
        for p, what in self.outputs:
            check_not_a_link(p)  # a .nhdr output's data file too (check_output sees the header only)
            real = os.path.realpath(p)
            src, case_only = self._input_of(p)
            instead = self.instead.get(p) or f"write the {what} to another file"
            if src is not None and not case_only:
                raise IQTError(f"{p}: is an input of this run ({self._named(src)}); {instead} (inputs are never "
                               f"overwritten)")
            if src is not None:  # on a disk that ignores case the output would replace the input
                raise IQTError(f"{p}: differs from the input {self._named(src)} only in {_how(p, src)} the two "
                               f"are one file; {instead} (inputs are never overwritten)")
            if real in seen:
                twice = f"as the {seen[real]} and the {what}" if seen[real] != what else f"as two {what}s"
                raise IQTError(f"{p}: would be written twice in this run ({twice}); give them different names")
            other = folded.get(_folded(real))
            if other is not None:  # one file on macOS's (and, for case, Windows's) disks: the later replaces the earlier
                raise IQTError(f"{p}: differs from {other[0]} (the {other[1]}) only in {_how(p, other[0])} the "
                               f"two are one file; give the {what} another name")
            seen[real] = what
            folded[_folded(real)] = (p, what)
