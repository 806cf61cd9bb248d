"""The subjects of a cohort: a BIDS dataset's DWIs or the lines of a text list, each named by its BIDS entities."""

from __future__ import annotations

import os
import re
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import IQTError, IQTWarning


@dataclass(frozen=True)
class Item:
    """One input: `prefix` is its BIDS entity chain (sub-X[_ses-Y][_acq-..][_run-..]), `subdir` its derivatives
    folder, `kind` "dwi" (fitted first) or "dti" (upsampled directly)."""

    prefix: str
    subdir: str
    path: str
    kind: str
    source: str = ""  # the path relative to `root`, for the sidecars' Sources (a BIDS URI bids:raw:<source>)
    root: str = ""  # the input dataset's folder (or the list's), linked as "raw" in dataset_description.json
    tensor_order: str = ""  # a list line's own --tensor-order (empty: the run's)
    mask: str = ""  # a list line's --mask: a brain mask on the input's grid or on the output's
    bval: str = ""  # a BIDS DWI's b-values and b-vectors where they are inherited from a folder above (`gradients`)
    bvec: str = ""
    scheme: bool = False  # an MRtrix DWI whose gradient table is its header's dw_scheme (`gradients` gives no files)
    typed: tuple = ()  # (absolute path, as typed) of the paths made absolute for the workers: messages give them as typed
    line: str = ""  # where a list names it, for messages: "list.txt line 3 ('P01 --mask m.nii.gz')"

    def as_typed(self, text: str) -> str:
        """`text` with the paths made absolute for the workers put back as the user typed them (reasons and
        notes would name /home/.../data/sub-02_dwi.nii.gz for data/sub-02_dwi.nii.gz)."""
        for absolute, typed in self.typed:
            text = text.replace(absolute, typed)
        return text

    def gradients(self) -> tuple[Path, ...]:
        """A DWI's .bval and .bvec: beside it, or the inherited ones `bids_items` found; none for an MRtrix DWI whose
        table is in its own header (its file's SHA256 covers it)."""
        from ...fileio import bval_bvec_paths

        return () if self.scheme else bval_bvec_paths(self.path, self.bval or None, self.bvec or None)


def label(text: str) -> str:
    """A BIDS label: letters and digits only. Accented letters give their base letter, from either Unicode form of a
    name (NFKD, then the combining marks dropped: Pé01 and Müller give Pe01 and Muller whether typed on Linux or Windows
    (NFC) or named by macOS (NFD), so that one folder has one name whichever machine made the
    list); letters without an ASCII base (Ø, ß, CJK) are dropped, as before. ASCII names are unchanged."""
    base = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    out = re.sub(r"[^A-Za-z0-9]", "", base)
    if not out:
        raise IQTError(f"{text!r}: cannot make a BIDS label (letters and digits) from this name; rename it")
    return out


def bids_items(root) -> list[Item]:
    """Every `sub-*/[ses-*/]dwi/*_dwi.nii[.gz]` of a BIDS dataset, by a glob over the layout the BIDS specification
    fixes. On the 3-subject phantom dataset of Testing/apps/test_batch.py, pybids 0.22 took 0.07-0.09 s to index it
    (BIDSLayout, validate=False) after 0.3-0.4 s to import, this glob under 1 ms; pybids also brings SQLAlchemy,
    pandas and formulaic (docs/cohorts.md)."""
    root = Path(root)
    found = []
    for pattern in ("sub-*/dwi/*_dwi.nii.gz", "sub-*/dwi/*_dwi.nii", "sub-*/ses-*/dwi/*_dwi.nii.gz", "sub-*/ses-*/dwi/*_dwi.nii"):
        found += root.glob(pattern)
    items, left = [], []
    for p in sorted(set(found)):
        prefix = p.name[: p.name.rindex("_dwi.nii")]
        folders = p.parts[-3:-1] if p.parts[-3].startswith("sub-") else p.parts[-4:-2]  # sub-X, or sub-X and ses-Y
        entities = "_".join(f for f in folders if f.startswith(("sub-", "ses-")))
        if prefix != entities and not prefix.startswith(entities + "_"):
            left.append(p.relative_to(root).as_posix())  # not named for its folders' sub-/ses- labels: not BIDS
            continue
        rel = p.relative_to(root)
        bval, bvec = (_inherited(p, prefix, root, suffix) for suffix in (".bval", ".bvec"))
        items.append(Item(prefix, str(rel.parent), str(p), "dwi", rel.as_posix(), os.path.normpath(root.absolute()),
                          bval=bval, bvec=bvec))
    if left:  # said, not dropped unseen
        warnings.warn(f"{len(left)} file{'s' if len(left) > 1 else ''} not named for {'their' if len(left) > 1 else 'its'} "
                      f"folders' sub- and ses- labels left out: {', '.join(left[:3])}{' ...' if len(left) > 3 else ''}; "
                      "rename them as BIDS names them (sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz)", IQTWarning, stacklevel=2)
    return items


def _inherited(p: Path, prefix: str, root: Path, suffix: str) -> str:
    """A BIDS DWI's `suffix` file by the inheritance principle: beside it under its own name (""), else the nearest
    folder up to the dataset's root holding `[entities_]dwi<suffix>` whose entities are all the DWI's, the most
    specific first (a dataset's top-level dwi.bval included); "" where there is none (said on reading)."""
    own = p.with_name(prefix + "_dwi" + suffix)
    if own.exists():
        return ""
    entities = dict(e.split("-", 1) for e in prefix.split("_") if "-" in e)
    folder = p.parent
    while True:
        found = []
        for cand in folder.glob("*dwi" + suffix):
            parts = cand.name[: -len(suffix)].split("_")
            if parts[-1] != "dwi" or any("-" not in e for e in parts[:-1]):
                continue
            have = dict(e.split("-", 1) for e in parts[:-1])
            if all(entities.get(k) == v for k, v in have.items()):
                found.append((len(have), str(cand)))
        if found:
            found.sort(reverse=True)
            if len(found) > 1 and found[1][0] == found[0][0]:  # BIDS allows one per level: the dataset is ambiguous
                warnings.warn(f"{p.name}: {found[0][1]} and {found[1][1]} both apply to it (BIDS allows one "
                              f"{suffix} per folder level); {Path(found[0][1]).name} is used: remove the other",
                              IQTWarning, stacklevel=4)
            return found[0][1]
        if folder == root or root not in folder.parents:
            return ""
        folder = folder.parent


LINE_OPTIONS = ("--tensor-order", "--mask")  # what a list line may end with, for its own subject


def _no_value(option: str, line: str, listfile: Path) -> None:
    example = "fsl" if option == "--tensor-order" else "mask.nii.gz"
    raise IQTError(f"{listfile}: the line {line.strip()!r} gives {option} without its value; give it after the option "
                   f"({option} {example}) or drop {option}")


def _line_options(line: str, listfile: Path) -> tuple[str, dict]:
    """A list line's path and the options at its end (`--tensor-order ORDER`, `--mask MASK`, in either order)."""
    from ...core.tensors import ORDERS

    opts, whole = {}, line
    while True:
        m = re.search(r"""\s(--[a-z-]+)\s+("[^"]*"|'[^']*'|\S+)\s*$""", line)  # a quoted value may hold spaces
        if m is None or m.group(1) not in LINE_OPTIONS:
            bad = re.search(r"\s(--[a-z-]+)(\s+\S+)?\s*$", line)
            if bad is not None and bad.group(1) not in LINE_OPTIONS:
                raise IQTError(f"{listfile}: the line {line.strip()!r} ends in {bad.group(1)}, which a list line cannot "
                               f"give; a line may end in {' and/or '.join(o + ' ...' for o in LINE_OPTIONS)}")
            if bad is not None:  # a bare '--mask' had been read as part of the path, failing the subject at its run
                _no_value(bad.group(1), whole, listfile)
            break
        if m.group(2) in LINE_OPTIONS:  # '--mask --tensor-order': the other option taken as the mask's path
            _no_value(m.group(1), whole, listfile)
        if m.group(1) in opts:
            raise IQTError(f"{listfile}: the line {line.strip()!r} gives {m.group(1)} twice; give it once")
        value = m.group(2)
        value = value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else value
        if not value.strip():  # '--mask ""': an empty path, else read as the list's folder or a file named '""'
            _no_value(m.group(1), whole, listfile)
        opts[m.group(1)] = value
        line = line[: m.start()]
    order = opts.get("--tensor-order", "")
    if order and order not in ORDERS:
        raise IQTError(f"{listfile}: --tensor-order {order} on the line of {line.strip()}: unknown order; choose one of "
                       f"{', '.join(ORDERS)}")
    mask = opts.get("--mask", "")
    if mask and not Path(mask).is_absolute():
        mask = str(listfile.parent / mask)
    return line.strip(), {"tensor_order": order, "mask": mask}


def _list_text(listfile: Path) -> str:
    """A list file's text: UTF-8 with or without a byte-order mark (Notepad, Excel's "CSV UTF-8"), or UTF-16 with one
    (PowerShell 5's Out-File), as the bval/bvec reader takes them; never the locale's encoding, so that a list reads
    the same on every machine (a BOM would become part of the first path, and Windows would read Pé05 as PÃ©05)."""
    try:
        raw = listfile.read_bytes()
    except OSError as exc:
        raise IQTError(f"{listfile}: cannot be read as a text list of subjects ({exc.strerror or exc}); give a BIDS "
                       "folder or a text file with one subject folder or DTI file per line") from None
    utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
    try:
        return raw.decode("utf-16") if utf16 else raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if utf16:
            raise IQTError(f"{listfile}: not UTF-16 text, though it starts with UTF-16's byte-order mark: save it as "
                           "UTF-8") from None
        raise IQTError(f"{listfile}: not UTF-8 text: save it as UTF-8 (its byte {exc.start + 1}, "
                       f"0x{raw[exc.start]:02x}, is not UTF-8: the list was saved in another encoding, e.g. Windows' "
                       "ANSI code page)") from None


def list_items(listfile) -> list[Item]:
    """A text file with one subject folder (dwi.nii.gz, dwi.bval, dwi.bvec inside) or DTI file per line; relative
    paths are read from the list's folder, blank lines and "#" comments are skipped; a line may end in its subject's
    own `--tensor-order ORDER` and `--mask MASK`, so that one list (one run, one derivatives folder) takes a cohort made
    by several tools. Each subject is named after its folder (`_list_names`; a "sub-" it already has is not doubled)."""
    from ...fileio import TENSOR_SUFFIXES
    from ...fileio.mif import READ_SUFFIXES

    files = (*TENSOR_SUFFIXES, *READ_SUFFIXES)  # a tensor file read, an MRtrix .mih header with its data file too
    listfile = Path(listfile)
    lines = _list_text(listfile).splitlines()
    entries = []  # (the folders naming the subject, a file's stem or None, kind, input path, the line's path, options)
    for number, line in enumerate(lines, 1):
        quoted = re.match(r"""\s*(["'])(.*?)\1(?=\s|$)""", line)  # "P 03/dti.nii.gz": Explorer's "Copy as path"
        rest = line[quoted.end():] if quoted else line
        rest = re.split(r"(?:^|\s)#", rest, maxsplit=1)[0].strip()  # "#" starts a comment, also after a path
        if not rest and not quoted:
            continue
        shown = f"{quoted.group(0).strip()} {rest}".strip() if quoted else rest
        opts = {"line": f"{listfile} line {number} ({shown!r})"}
        left, more = _line_options(" " + rest, listfile)
        if quoted and left:
            raise IQTError(f"{opts['line']}: {left!r} follows the quoted path; a line may end in "
                           f"{' and/or '.join(o + ' ...' for o in LINE_OPTIONS)}")
        line = quoted.group(2) if quoted else left
        opts.update(more)
        p = Path(line) if Path(line).is_absolute() else listfile.parent / line
        # named after the path's own folders once '..' is taken with the folder before it (P01/extra/.. is P01, and
        # P01/extra/../.. names no subject)
        parts = [x for x in Path(os.path.normpath(line)).parts if x not in ("/", "..", ".")]
        if str(p).lower().endswith(files):
            suffix = next(suf for suf in sorted(files, key=len, reverse=True) if p.name.lower().endswith(suf))
            scheme = _mif_dwi(p)  # an MRtrix DWI is fitted as a folder's dwi.nii.gz is
            if scheme is not None:
                opts["scheme"] = scheme
            entries.append((_subject_folders(parts[:-1]), p.name[: -len(suffix)], "dti" if scheme is None else "dwi",
                            str(p), line, opts))
        else:
            name = _folder_dwi(p)
            if name.endswith(READ_SUFFIXES):
                opts["scheme"] = _mif_dwi(p / name) is not False  # without a table its reader says what to add
            entries.append((_subject_folders(parts) or parts, None, "dwi", str(p / name), line, opts))  # as train reads
    for folders, stem, kind, _, line, opts in entries:
        if kind == "dwi" and opts.get("tensor_order"):  # else said by the subject's worker, after the run had begun
            raise IQTError(f"{opts['line']}: --tensor-order {opts['tensor_order']} is for a line naming a tensor file; "
                           "this line names a DWI subject's folder, fitted here: drop it from the line")
        if not folders and not stem:  # '..', '/', '.': no folder or file of its own to name the subject after
            raise IQTError(f"{opts['line']}: names no subject's folder or file of its own, so the subject cannot be named "
                           f"after it; give the subject's folder itself (e.g. {os.path.join(line, 'P01')})")
    names = _list_names([(e[0], e[1]) for e in entries], [e[5]["line"] for e in entries])
    return [Item(sub, f"{sub}/dwi", path, kind, line if not Path(line).is_absolute() else "",
                 os.path.normpath(listfile.parent.absolute()) if not Path(line).is_absolute() else "", **opts)
            for sub, (_, _, kind, path, line, opts) in zip(names, entries)]


def _folder_dwi(folder: Path) -> str:
    """The DWI a listed subject folder holds: dwi.nii.gz (named, there or not, where it holds none), else dwi.nii,
    else an MRtrix dwi.mif, dwi.mif.gz or dwi.mih."""
    from ...fileio.mif import READ_SUFFIXES

    for name in ("dwi.nii.gz", "dwi.nii", *("dwi" + suffix for suffix in READ_SUFFIXES)):
        if (folder / name).is_file():
            return name
    return "dwi.nii.gz"


def _mif_dwi(p: Path) -> bool | None:
    """For a listed MRtrix image: True where it is a DWI (4D, at least 7 volumes) whose header holds a dw_scheme,
    False one without but with a .bval and .bvec beside it (as `iqt fit` reads it), None otherwise: tensors, or a file
    its reader refuses in the subject's row (a header that cannot be read included)."""
    from ...fileio import bval_bvec_paths
    from ...fileio.mif import is_mif, read_header

    if not is_mif(p) or not p.is_file():
        return None
    try:
        keys = read_header(p)
        dim = [int(n) for n in keys["dim"][0].split(",")]
    except (IQTError, KeyError, IndexError, ValueError):
        return None
    if len(dim) != 4 or dim[3] < 7:
        return None
    if keys.get("dw_scheme"):
        return True
    return False if all(g.is_file() for g in bval_bvec_paths(p)) else None


BIDS_DATATYPES = ("dwi", "anat", "func", "fmap", "perf")  # folders under a subject that do not name it


def _subject_folders(folders: list[str]) -> list[str]:
    """The folders that name a subject: without trailing BIDS datatype folders (sub-01/dwi: sub-01)."""
    folders = list(folders)
    while folders and folders[-1].lower() in BIDS_DATATYPES:
        folders.pop()
    return folders


def _list_names(entries: list[tuple[list[str], str | None]], lines=None) -> list[str]:
    """Each subject's name from its folders and, for a file, its stem (`lines` name the entries' list
    lines in an error): a file in a folder is named
    after the folder (P05/dti_tensor.nii.gz: sub-P05; sub-01/dwi/x.nii.gz: sub-01; sub-01/ses-1/dwi/x: sub-01ses1), so
    that a subject keeps its name when other lines are added; one without a folder after the file. Where names collide,
    two files in one folder take their file names (P05/a, P05/b: sub-P05a, sub-P05b), and the others parent folders
    (siteA/P01, siteB/P01: sub-siteAP01, sub-siteBP01), then their file names, until they differ. Names are compared
    without case, on every system (sub-P01 and sub-p01 would be one folder on a macOS or Windows disk, where each
    subject's files replaced the other's): siteA/P01, siteB/p01 give sub-siteAP01, sub-siteBp01, on Linux too, so that a
    list names its subjects the same everywhere."""
    folders = [f for f, _ in entries]
    depth = [2 if len(f) > 1 and f[-1].lower().startswith("ses-") else min(len(f), 1) for f in folders]
    with_stem = [not f for f in folders]
    while True:
        names = [_list_label(f[len(f) - d:] + ([stem] if w and stem else []), lines[i] if lines else None)
                 for i, ((f, stem), d, w) in enumerate(zip(entries, depth, with_stem))]
        changed = False
        for i, name in enumerate(names):
            others = [j for j, n in enumerate(names) if n.lower() == name.lower() and j != i]
            if not others:
                continue
            stem = entries[i][1]
            if stem and not with_stem[i] and any(folders[j] == folders[i] for j in others):
                with_stem[i] = changed = True  # two files in one folder
            elif depth[i] < len(folders[i]):
                depth[i] += 1
                changed = True
            elif stem and not with_stem[i]:
                with_stem[i] = changed = True
        if not changed:
            return names


def _list_label(parts: list[str], line: str | None = None) -> str:
    """The subject label of a list line from its name parts; an IQTError naming `line` (where the list says it) when
    they hold no letter or digit ("'': cannot make a BIDS label" would name no line)."""
    text = "".join(parts)
    try:
        return "sub-" + label(text[4:] if text.lower().startswith("sub-") else text)
    except IQTError as exc:
        if line is None:
            raise
        raise IQTError(f"{line}: {exc}") from None


def find_items(path, labels=None) -> list[Item]:
    """The subjects of INPUT: a BIDS folder or a text list; an IQTError when there are none or two share a name.
    `labels`: the participants of a BIDS dataset to keep (--participant-label, `select_participants`), chosen before
    the subjects are compared, so that one left out is neither read nor refused as another's copy."""
    p = Path(path)
    if not p.exists():
        raise IQTError(f"{p}: not found; give a BIDS dataset folder or a text file listing subject folders or DTI files")
    items = bids_items(p) if p.is_dir() else list_items(p)
    if not items:
        raise IQTError(f"{p}: no subjects found; a BIDS dataset holds sub-*/[ses-*/]dwi/*_dwi.nii.gz, a list names one "
                       "subject folder or DTI file per line")
    if labels:
        items = select_participants(items, labels, path)
    seen = {}  # by the name without case: sub-P01 and sub-p01 are one folder on a macOS or Windows disk
    files = {}  # by the file itself: a folder listed again through a link to it is the same subject
    for it in items:
        real = os.path.realpath(it.path)
        if real in files and files[real] != it.path:
            raise IQTError(f"{it.path} and {files[real]} are the same file ({real}): one subject given twice; give "
                           "each subject once")
        files.setdefault(real, it.path)
        key = it.prefix.lower()
        if key in seen and Path(seen[key][1]).resolve() == Path(it.path).resolve():
            raise IQTError(f"{it.path} is listed twice; list each subject once")
        if key in seen and seen[key][0] != it.prefix:
            raise IQTError(f"{it.path} and {seen[key][1]} become {it.prefix} and {seen[key][0]}, one folder on a macOS or "
                           "Windows disk (names differing only in case); rename one of them")
        if key in seen:
            raise IQTError(f"{it.path} and {seen[key][1]} both become {it.prefix}; rename one of them")
        seen[key] = (it.prefix, it.path)
    _refuse_copies(items)
    return items


def select_participants(items: list[Item], labels, where) -> list[Item]:
    """The items of BIDS dataset `where` whose participant is one of `labels` (with or without "sub-", as BIDS apps take
    --participant-label; a cohort audit: a BIDS input had no way to leave a subject out); an IQTError naming any label
    the dataset does not hold."""
    def label_of(it: Item) -> str:
        return Path(it.subdir).parts[0][len("sub-"):]

    want = list(dict.fromkeys(x[len("sub-"):] if x.startswith("sub-") else x for x in labels))
    have = sorted({label_of(it) for it in items})
    missing = [x for x in want if x not in have]
    if missing:
        shown = ", ".join(have[:6]) + (f" and {len(have) - 6} more" if len(have) > 6 else "")
        raise IQTError(f"--participant-label {' '.join(missing)}: no such participant in {where} (it holds {shown}); "
                       "give the labels of its sub-* folders")
    return [it for it in items if label_of(it) in want]


def _refuse_copies(items) -> None:
    """Two subjects whose input images are byte-identical (a subject copied under another name) are one subject computed
    twice, as `iqt train`, `benchmark` and `lesion-check` refuse it (a cohort audit)."""
    from ...fileio.checksums import first_copy, image_sha256

    pair = first_copy([it.path for it in items])
    if pair is not None:
        it, first = items[pair[0]], items[pair[1]]
        same = "is byte-identical to" if image_sha256(it.path) == image_sha256(first.path) else \
            "holds the bytes, decompressed, of"
        raise IQTError(f"{it.path} {same} {first.path}: one subject copied under another name "
                       f"({it.prefix} and {first.prefix}); give each subject once")
