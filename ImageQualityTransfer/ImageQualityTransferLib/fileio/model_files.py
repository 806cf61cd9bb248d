"""Shipped-model files shared by every learned family: JSON sidecars and the registry (checksums: fileio/checksums.py).

A model is a weights file (format chosen by its family, never one that executes code on load) with a
`.json` sidecar beside it holding the method, factor, training record and the weights' SHA256; the
registry (`Resources/Models/registry.json`) lists the shipped ones. Families add their own weight I/O.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from ..core import grid
from ..core.errors import IQTError
from ..core.i18n import _, option
from ..core.version import forget_build
from . import checksums
from .paths import MODELS_DIR
from .train_options import add_arguments as add_train_arguments
from .writing import as_written, write_json

REGISTRY = "registry.json"
REGISTRY_FORMAT = "iqt-model-registry/1"


def sidecar_path(path) -> Path:
    p = Path(path)
    return p if p.suffix == ".json" else p.with_suffix(".json")


MAX_SIDECAR_BYTES = 1 << 20  # a sidecar 'iqt train' writes is a few KB


def sidecar_text(sp, what: str = "the model sidecar", usual: str = "one from 'iqt train' is a few KB",
                 fix: str = "re-download or retrain the model",
                 irregular_fix: str = "give the model's .json file from 'iqt train'") -> str:
    """The text of the JSON file `sp` (a model's sidecar, or the registry: `what` names it in messages, `usual` says
    its usual size, `fix` and `irregular_fix` what to do about one too big or no regular file), refused in one line
    where it is no regular file (a named pipe's open blocks for ever, /dev/zero's read fills memory: a provenance
    audit) or is over MAX_SIDECAR_BYTES; checked before it is opened, and on the open file (O_NONBLOCK: a pipe swapped
    in opens at once). An OSError where it is missing or unreadable, a ValueError where it is not UTF-8, as read_text
    gives them."""
    st = os.stat(sp)  # follows a link: a link to /dev/zero is judged as the device
    if not stat.S_ISREG(st.st_mode):
        raise IQTError(f"{sp}: {what} is not a regular file (a folder, a named pipe, a device, or a link to one), and is "
                       f"not read; {irregular_fix}")
    if st.st_size > MAX_SIDECAR_BYTES:
        raise IQTError(f"{sp}: {what} is {st.st_size / 2**20:,.1f} MiB, where {usual} (at most "
                       f"{MAX_SIDECAR_BYTES // 2**20} MiB read), and is not read; {fix}")
    fd = os.open(sp, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced between the stat and the open
            raise IQTError(f"{sp}: {what} is not a regular file, and is not read; {irregular_fix}")
        data = f.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise IQTError(f"{sp}: {what} is over {MAX_SIDECAR_BYTES // 2**20} MiB, where {usual}, and is not read; {fix}")
    return data.decode("utf-8")


def read_json(sp, **named):
    """json.loads(sidecar_text(sp, **named)); a ValueError for JSON nested too deeply for the parser (a RecursionError,
    which callers catching ValueError had let through as an internal error: fileio/paths._evaluate_summary)."""
    text = sidecar_text(sp, **named)
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to be read") from None


def is_image_name(path) -> bool:
    """Whether `path` is named as an image (NIfTI or NRRD), not as a model file."""
    return "".join(Path(path).suffixes[-2:]).lower() in (".nii", ".nii.gz", ".nrrd", ".nhdr")


def read_sidecar(path, fmt: str, family: str, suffix: str) -> tuple[dict, Path]:
    """(sidecar dict, weights path); an IQTError when the sidecar is missing, not JSON or of another format."""
    given = Path(path)
    if given.is_dir():
        raise IQTError(f"{path}: a folder; give the model's {suffix} file (or its .json sidecar) from 'iqt train'")
    if given.suffix != ".json" and not given.exists():
        raise IQTError(f"{path}: model file not found; give a file written by 'iqt train' (for {family} methods a {suffix} "
                       "file, its .json sidecar beside it)")
    sp = sidecar_path(path)
    if not sp.exists():
        if is_image_name(given):  # an image given as a model (audit)
            raise IQTError(f"{path}: an image, not a model; give a model file from 'iqt train' (a {family} model is a "
                           f"{suffix} file with a .json sidecar beside it)")
        raise IQTError(f"{sp}: model sidecar not found; a {family} model is a {suffix} file with a .json sidecar "
                       f"beside it (from 'iqt train')")
    try:
        meta = read_json(sp)
    except (OSError, ValueError, RecursionError) as exc:
        raise IQTError(f"{sp}: the model sidecar is not valid JSON ({exc}); re-download or retrain the model") from None
    got = meta.get("format") if isinstance(meta, dict) else None
    if got != fmt and isinstance(got, str) and got.rpartition("/")[0] == fmt.rpartition("/")[0]:
        # a format of this family from another version: 'run it with --method <its own method>' had been advised
        from ..core.version import __version__

        wrote = writer_version(meta, fmt)
        by = f", written by version {wrote}," if wrote else ","
        raise IQTError(f"{sp}: a {family} model in format {got!r}{by} which this version ({__version__}) does not read "
                       f"(it reads {fmt!r}); run it with a version that reads it, or retrain it with this one")
    if got != fmt:
        method = meta.get("method") if isinstance(meta, dict) else None
        hint = f"; it is {article(method)} {method} model: run it with --method {method}" if isinstance(method, str) else ""
        raise IQTError(f"{sp}: not an IQT {family} model sidecar (format {got!r}, expected {fmt!r}){hint}")
    return meta, weights_path(sp, meta)


def writer_version(meta: dict, fmt: str) -> str | None:
    """The iqt version that wrote a sidecar: its "engine_version" (a CNN's "version" is its sidecar format's,
    methods/cnn/training.py SIDECAR_VERSION), or a forest's "version" (methods/forest/training.py); None where absent."""
    forest = fmt.rpartition("/")[0] == FOREST_FORMAT.rpartition("/")[0]
    keys = ("engine_version", "version") if forest else ("engine_version",)
    for key in keys:
        v = meta.get(key)
        if isinstance(v, str) and 0 < len(v) <= 40 and v.isprintable():
            return v
    return None


def weights_path(sp: Path, meta: dict) -> Path:
    """The weights file a sidecar names: a plain file name, beside the sidecar (what 'iqt train' writes); a path, a
    folder's name or anything else is refused in one line (e.g. '../../../etc/passwd', which would otherwise end 'iqt
    upsample' and 'iqt seal' in an internal error)."""
    name = meta.get("weights")
    if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise IQTError(f"{sp}: its 'weights' {name!r} is not the name of a file beside the sidecar (a plain file name, "
                       "as 'iqt train' writes it): the sidecar was edited or damaged; re-download or retrain the model, "
                       "or set 'weights' to the weights file's name")
    return sp.with_name(name)


# The sidecar's own checksum: over every field but itself and "weights" (the file name, which a copy under a new name
# changes; the weights' content is checked by "sha256", which this covers). Edited settings (the CNN's output scale,
# a forest's input unit, the method) would change results silently or end in internal errors.
SEAL = "sidecar_sha256"


def settings_digest(meta: dict) -> str:
    fields = {k: v for k, v in meta.items() if k not in (SEAL, "weights")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_sidecar(path, side: dict) -> None:
    """A model's sidecar, sealed with `settings_digest` over what is written (a NaN or an infinity, e.g. `--minutes
    inf`'s budget, is written as null: sealed as given, a fresh model would be refused as edited)."""
    side = as_written(side)
    write_json(path, {**side, SEAL: settings_digest(side)})


def write_model(weights: Path, write_weights, side: dict) -> Path:
    """The weights through `write_weights(tmp)` and their sidecar with their name, SHA256 and size, put in place together
    (`staging.all_or_none`: a trained model's save holds a stage of its own, methods/learned.py `save`); returns the
    sidecar path. A failure or signal leaves the model that was at that path, weights and sidecar, as it was (a
    retraining into the same -o had lost it), and no new weights without their sidecar."""
    from .staging import all_or_none
    from .writing import atomic_write

    sp = sidecar_path(weights)
    with all_or_none() as stage:
        stage.declare(weights, sp)
        atomic_write(weights, write_weights)
        held = stage.where(weights)  # the new weights, in their temporary file until both are put in place
        if held.stat().st_size > MAX_WEIGHTS_BYTES:  # no model written that every load refuses (_read_weights)
            raise IQTError(f"{weights}: the trained model's weights are {held.stat().st_size:,} bytes, over the "
                           f"{MAX_WEIGHTS_BYTES:,} (2 GiB) a model is read up to, so it would not load, and it is not "
                           "written; train it smaller (a forest: fewer --n-trees, a smaller --max-depth or a larger --min-leaf)")
        write_sidecar(sp, {**side, "weights": weights.name, "sha256": checksums.sha256(held), "size_bytes": held.stat().st_size})
    return sp


_UNSEALED_SAID: set = set()  # once per sidecar and process: a benchmark loads a model per subject


def _say_unsealed(meta: dict, sp: Path) -> None:
    """One warning for a sidecar written before sidecars were sealed, once the model has passed every other check (said
    first, its advice to seal it came before a refusal that 'iqt seal' repeats: a bad-input audit)."""
    if SEAL not in meta and str(Path(sp).resolve()) not in _UNSEALED_SAID:
        _UNSEALED_SAID.add(str(Path(sp).resolve()))
        import warnings

        from ..core.errors import IQTWarning

        warnings.warn(_("{sidecar}: a model sidecar from before this version (no {seal}), so its settings cannot be "
                        "verified; if you trust the file as it is, seal it with {seal_command} (or retrain the "
                        "model)").format(sidecar=sp, seal=SEAL, seal_command=f"'iqt seal {sp}'"),
                      IQTWarning, stacklevel=4)


_UNSEALED_NOTE = ": a model sidecar from before this version (no "


def unsealed_said_here(note: str) -> bool:
    """Whether `note` (a batch worker's subject note) is the unsealed-sidecar warning this process has said already
    of the same sidecar: `iqt batch` loads the --model before its workers do, and had said the advice twice."""
    path, sep = str(note).partition(_UNSEALED_NOTE)[:2]
    return bool(sep) and str(Path(path).resolve()) in _UNSEALED_SAID


def _check_seal(meta: dict, sp: Path) -> None:
    if SEAL in meta and meta[SEAL] != settings_digest(meta):
        raise IQTError(f"{sp}: the sidecar's settings do not match its checksum ({SEAL}): it was edited or damaged, "
                       "and a model read with other settings gives wrong results; re-download or retrain the model "
                       "(a copy under a new name may change only 'weights')")


CNN_FORMAT, FOREST_FORMAT = "iqt-cnn-model/1", "iqt-forest-model/1"  # the sidecar tags of each family's model_io
MODEL_FORMATS = (CNN_FORMAT, FOREST_FORMAT)


def seal(path, load=None) -> tuple[Path, bool]:
    """Seal a model sidecar written before sidecars were sealed, as it is, once its weights match its SHA256 and load
    (`check_sealable`): the user vouches for its settings, so the warning stops (retraining was the only way).
    (sidecar, whether it was sealed now); an IQTError for anything else, which is left as it was."""
    sp, meta = check_sealable(path, load)
    if SEAL in meta:
        return sp, False
    write_sidecar(sp, meta)
    return sp, True


# How a forest reads its input, recorded twice, at the top and as trained; a top without the key is read with its
# default (methods/forest/model_io.py, `load`)
READ_SETTINGS = {"input_unit": "fixed", "inputs": "patch"}


def check_sealable(path, load=None) -> tuple[Path, dict]:
    """(sidecar, its fields) of a model `seal` may seal or has sealed; an IQTError naming what is wrong otherwise.
    Sealed or not, the weights must be the file the sidecar names (`check_names_given`), match its SHA256 and, with
    `load(sidecar)` (the family's own safe loader, as 'iqt upsample' reads the model: nothing executed), load with its
    settings: otherwise a sealed model whose weights were truncated or swapped would be 'already sealed, left as it
    was', and an unsealed sidecar whose SHA256 was made to match a truncated file, a pickled payload or with an
    edited factor would be sealed, all of them refused later by 'iqt upsample'."""
    sp = sidecar_path(path)
    if not sp.exists():  # a pipe or a device is refused as such by read_json (a provenance audit)
        if is_image_name(path):  # its sidecar's name had been said instead (a bad-input audit)
            raise IQTError(f"{path}: an image, not a model; give a model file from 'iqt train' (or its .json sidecar)")
        raise IQTError(f"{sp}: model sidecar not found; give a model file from 'iqt train' (or its .json sidecar)")
    try:
        meta = read_json(sp)
    except (OSError, ValueError, RecursionError) as exc:
        raise IQTError(f"{sp}: the model sidecar is not valid JSON ({exc}); re-download or retrain the model") from None
    if not isinstance(meta, dict) or meta.get("format") not in MODEL_FORMATS:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise IQTError(f"{sp}: not an IQT model sidecar (format {got!r}); give a model's .json from 'iqt train'")
    sealed = SEAL in meta
    if sealed and meta[SEAL] != settings_digest(meta):
        raise IQTError(f"{sp}: already sealed, and its settings no longer match the seal: it was edited after "
                       "'iqt train' wrote it; re-download or retrain the model rather than seal it again")
    if not sealed and registered_entry(sp) is not None:
        raise IQTError(f"{sp}: one of the install's shipped models, which ship sealed; reinstall the extension")
    trained = (meta.get("training") or {}).get("settings") if isinstance(meta.get("training"), dict) else None
    for key, default in READ_SETTINGS.items() if isinstance(trained, dict) else ():
        top = meta.get(key, default)  # a key deleted at the top is read as its default (a review): compared so too
        if key in trained and top != trained[key]:  # one edited: sealed, it ran the edit (a training audit)
            raise IQTError(f"{sp}: {key} is {top!r} at the sidecar's top and {trained[key]!r} in training.settings, "
                           "the settings it was trained with: it was edited after 'iqt train' wrote it; re-download or "
                           "retrain the model rather than seal it")
    try:
        check_trained_factor(meta, sp)
        check_trained_method(meta, sp)
    except IQTError as exc:
        raise IQTError(f"{exc} ({'its seal is left as it was' if sealed else 'so it is not sealed'})") from None
    weights = weights_path(sp, meta)
    if not weights.is_file():
        raise weights_unread(weights, sp)
    check_names_given(path, weights)
    digest = checksums.sha256(weights)
    if digest != meta.get("sha256"):
        what = "since it was sealed (its seal is left as it was)" if sealed else ", so it is not sealed"
        raise IQTError(f"{weights}: checksum mismatch (SHA256 {digest[:12]}..., the sidecar says "
                       f"{str(meta.get('sha256'))[:12]}...); the file is corrupt or was modified{' ' * sealed}{what}: "
                       "'iqt upsample' refuses it too; re-download or retrain the model")
    if load is not None:
        _load_quietly(load, sp, sealed)
    return sp, meta


class _Unread(Exception):
    """A recorded command train's parser does not read."""


@functools.lru_cache(maxsize=1)
def _train_parser():
    """The parser of 'iqt train' (train_options), quiet: an error, -h or a missing option raises _Unread."""
    class Quiet(argparse.ArgumentParser):
        def error(self, message):
            raise _Unread(message)

        def exit(self, status=0, message=None):
            raise _Unread(message)

        def _print_message(self, message, file=None):
            pass

    sp = Quiet(prog="iqt train")
    add_train_arguments(sp)
    return sp


def trained_options(meta: dict):
    """The options the sidecar's own training record's command gave 'iqt train', read by train's own options
    (train_options: prefixes such as --fa, --factor=..., the last of two, the defaults), as an argparse Namespace;
    options this version does not know (an older one's) are passed over. None where there is no such command or it
    cannot be read: the checks against it are then skipped, not failed."""
    import shlex

    command = (meta.get("training") or {}).get("command") if isinstance(meta.get("training"), dict) else None
    try:
        words = shlex.split(command) if isinstance(command, str) else []
    except ValueError:
        return None
    if "train" not in words:
        return None
    try:
        return _train_parser().parse_known_args(words[words.index("train") + 1:])[0]
    except (_Unread, argparse.ArgumentError, ValueError, TypeError):
        return None


def trained_factors(meta: dict):
    """The factors (fx, fy, fz) the sidecar's own training record's command gave 'iqt train' (`trained_options`' --factor,
    read by grid.factors as train reads it); None where there is no such command or it cannot be read."""
    options = trained_options(meta)
    try:
        return None if options is None else grid.factors(options.factor)
    except IQTError:
        return None


def check_trained_factor(meta: dict, sp: Path) -> None:
    """The sidecar's factor (and its network's) is the one its training command gave: a through-plane model's factor
    moved to another axis had been sealed and run to a wrong result, layer shapes and a forest's widths depending on
    the factors' product only (a provenance audit). Checked on sealed sidecars too: an earlier 'iqt seal' sealed such
    an edit (a review)."""
    trained = trained_factors(meta)
    if trained is None:
        return
    arch = meta.get("arch") if isinstance(meta.get("arch"), dict) else {}
    for key, value in (("factor", meta.get("factor")), ("arch.factor", arch.get("factor"))):
        if value is None:
            continue
        try:
            ok = grid.factors(value) == trained
        except IQTError:
            ok = False
        if not ok:
            raise IQTError(f"{sp}: its {key} {value} is not the factor {grid.text(trained)} its training command gave "
                           "'iqt train' (training.command): the sidecar was edited; re-download or retrain the model"
                           + ("" if SEAL in meta else f", or restore its {key}"))


def check_trained_method(meta: dict, sp: Path) -> None:
    """The sidecar's method is the --method its training command gave (train's default where none): a forest's
    relabelled (biqt's arrays run as rf, its sigma map nine times too confident; rf's as global-linear) had run and
    been sealed, the forests' arrays fitting each other's methods (a review). Checked for every family."""
    options = trained_options(meta)
    method = meta.get("method")
    if options is None or not isinstance(options.method, str) or method == options.method:
        return
    raise IQTError(f"{sp}: its method {method!r} is not the method {options.method!r} its training command gave "
                   "'iqt train' (training.command): the sidecar was edited; re-download or retrain the model"
                   + ("" if SEAL in meta else f", or restore its method ({options.method})"))


def _load_quietly(load, sp: Path, sealed: bool) -> None:
    """`load(sp)` without the 'seal it' warning (it is being sealed: marked as said for the load, not silenced with
    warnings.catch_warnings, which would change the process's filters); its refusal says that nothing was sealed."""
    key = str(Path(sp).resolve())
    said = key in _UNSEALED_SAID
    _UNSEALED_SAID.add(key)
    try:
        load(sp)
    except IQTError as exc:
        raise IQTError(f"{exc} ({'its seal is left as it was' if sealed else 'so it is not sealed'})") from None
    finally:
        if not said:
            _UNSEALED_SAID.discard(key)


def registered_entry(path, models_dir=None) -> dict | None:
    """The registry entry of the model at `path` (weights or sidecar) where it is one of the install's shipped models."""
    models_dir = Path(MODELS_DIR if models_dir is None else models_dir)
    sp = sidecar_path(path)
    if sp.resolve().parent != models_dir.resolve():
        return None
    return next((e for e in read_registry(models_dir) if e.get("sidecar") == sp.name), None)


def _check_registered(meta: dict, sp: Path, digest: str) -> None:
    """A shipped model's weights are the ones its registry entry names: one replaced in the install (e.g. by 'iqt train
    -o' into Resources/Models) would be taken as the default without a word."""
    e = registered_entry(sp)
    if e is not None and e.get("sha256") not in (None, digest):
        raise IQTError(f"{sp}: the shipped model's weights are not the ones {REGISTRY} names (SHA256 {digest[:12]}..., "
                       f"registered {str(e['sha256'])[:12]}...): it was replaced; reinstall the extension, or register "
                       "the new model with 'iqt train ... --register'")


def check_names_given(path, weights: Path) -> None:
    """A weights file given by path is the one its sidecar names: with two models' sidecars swapped (or a model's pair
    copied beside the original under a new name), the given file would never be read and the other model run, its
    output identical to that one's. A sidecar given is used with the weights it names."""
    given = Path(path)
    if given.suffix == ".json" or given.resolve() == Path(weights).resolve():
        return
    sp = sidecar_path(path)
    raise IQTError(f"{given}: its sidecar {sp.name} names {Path(weights).name} as its weights, not {given.name}, so "
                   f"{given.name} is not the model that sidecar describes (sidecars swapped, or a pair copied under a "
                   f"new name): give {Path(weights).name} to run the model {sp.name} describes, put {given.name}'s own "
                   f"sidecar beside it, or, for a pair copied under a new name, set 'weights' in {sp.name} to {given.name}")


def weights_unread(weights: Path, sp: Path, copied: str = "") -> IQTError:
    """The refusal of weights that are no regular file: missing, or there as a named pipe, a device or a folder (a
    FIFO had been called 'not found': a provenance audit)."""
    if os.path.exists(weights):
        return IQTError(f"{weights}: the model weights (named by {sp}) are not a regular file (a folder, a named pipe, "
                        "a device, or a link to one), and are not read; put the weights file from 'iqt train' there")
    return IQTError(f"{weights}: model weights not found (named by {sp}); re-download or retrain the model{copied}")


def read_verified(path, fmt: str, family: str, suffix: str) -> tuple[dict, Path, bytes]:
    """(sidecar, weights path, weights bytes): `read_sidecar`, then check that the sidecar is as written and that the
    weights exist and match its SHA256 (and, for a shipped model, the registry's). The bytes are read once, hashed and
    handed to the loader: read again by path, a file replaced after its check ran unverified weights (a provenance
    audit). A sidecar from before seals is said by `say_unsealed` once the family's loader has read the weights."""
    meta, weights = read_sidecar(path, fmt, family, suffix)
    _check_seal(meta, sidecar_path(path))
    check_trained_factor(meta, sidecar_path(path))  # sealed too: they only read the sidecar
    check_trained_method(meta, sidecar_path(path))
    # a pair copied under a new name: its sidecar still names the old weights file
    mine = sidecar_path(path).stem + suffix
    copied = (f"; {sidecar_path(path).name} names {weights.name} as its weights, not {mine} (a model copied under a "
              f"new name keeps its sidecar's 'weights': set it to {mine})"
              if sidecar_path(path).stem != weights.stem else "")
    if not weights.is_file():
        raise weights_unread(weights, sidecar_path(path), copied)
    check_names_given(path, weights)
    if not meta.get("sha256"):  # said as such, not as a mismatch with "None"
        raise IQTError(f"{sidecar_path(path)}: the sidecar gives no sha256 for {weights.name}, so the file cannot be "
                       "verified and is not read; re-download or retrain the model")
    data = _read_weights(weights)
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("sha256"):
        raise IQTError(
            f"{weights}: checksum mismatch (SHA256 {digest[:12]}..., the sidecar says {str(meta.get('sha256'))[:12]}...); "
            f"the file is corrupt or was modified: re-download or retrain the model{copied}"
        )
    _check_registered(meta, sidecar_path(path), digest)
    _check_shipped_weights(meta, sidecar_path(path), digest)
    check_unpacked(weights, data)
    return meta, weights, data


MAX_WEIGHTS_BYTES = 2 * 2**30  # read into memory whole: the largest shipped model is 4.6 MB, a forest of one's own with
# many deep trees a few hundred MB; a sparse file of many GB behind a crafted sidecar would have filled memory


def _read_weights(weights: Path) -> bytes:
    """The bytes of the regular file `weights` (opened without blocking and checked again once open: a named pipe
    swapped in after its `is_file` check would have hung the read), refused by its size, unread, over MAX_WEIGHTS_BYTES.
    Opened in binary mode where the platform has one (Windows' os.open reads text: every checksum would fail)."""
    fd = os.open(weights, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise IQTError(f"{weights}: the model weights are not a regular file (a folder, a named pipe or a device), "
                           "and are not read; re-download or retrain the model")
        if st.st_size > MAX_WEIGHTS_BYTES:
            raise IQTError(f"{weights}: {st.st_size:,} bytes of model weights, over the {MAX_WEIGHTS_BYTES:,} (2 GiB) a "
                           "model is read up to (it is held in memory whole), and not read; re-download the model, or "
                           "retrain it smaller")
        # its own size and one byte more, not the bound: read(n) sets aside n bytes first, and the bound had made every
        # load ask for 2 GiB (refused under a cluster's memory cap); a file grown since its fstat fails its checksum
        return f.read(st.st_size + 1)


MAX_UNPACKED_BYTES = 256 * 2**20  # the largest shipped model unpacks to 5.6 MB (biqt x3)
MAX_UNPACK_RATIO = 50  # counted over the members that unpack to more than this many times their packed size: a deep
# forest of one's own unpacks past 256 MiB, but its int8 leaves compress a few times at most, deflated zeros a thousandfold


def check_unpacked(weights: Path, data: bytes | None = None) -> None:
    """A model's weights (a zip archive: torch.save's and np.savez's) whose members that unpack to over MAX_UNPACK_RATIO
    times their packed size unpack to more than MAX_UNPACKED_BYTES together, or an array member whose header promises
    more than it holds, are refused before they are read: a 1.6 MB .npz of deflated zeros had taken 1.6 GB and a 0.9 MB .pt 648 MB
    before their refusal (a security audit). A file that is no zip archive, or a damaged one, is left to the family's
    loader, which says so in its own words. `data`: the file's bytes, where they are held (named `weights` in messages)."""
    import io
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(weights if data is None else io.BytesIO(data)) as z:
            members = z.infolist()
            # member by member: random bytes stored beside deflated zeros had lifted a whole-file ratio (a review)
            packed = [i for i in members if i.file_size > MAX_UNPACK_RATIO * max(i.compress_size, 1)]
            total = sum(i.file_size for i in packed)
            size = sum(i.compress_size for i in packed)
            if total > MAX_UNPACKED_BYTES:
                raise IQTError(f"{weights}: its arrays unpack to {total / 2**20:,.0f} MiB from {size / 2**20:,.1f} MiB "
                               f"({total / max(size, 1):,.0f} times), as no model this tool writes does, and it is not "
                               "read; use a model written by 'iqt train'")
            for info in (i for i in members if i.filename.endswith(".npy")):
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f)
                if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
                    raise IQTError(f"{weights}: its array {info.filename[:-4]} promises {shape} of {dtype}, more than the "
                                   "file holds: it is damaged or crafted, and is not read; use a model written by 'iqt train'")
    except IQTError:
        raise
    except Exception:  # noqa: BLE001 (damaged: an unknown compression, a bad deflate stream: the loader says so)
        return


def _check_shipped_weights(meta: dict, sp: Path, digest: str) -> None:
    """A sidecar beside a shipped model's weights holds that model's settings: with its out_scale ×10 and its seal deleted,
    a copy ran with one warning to outputs 3.9× off, and 'iqt seal' sealed it (a fresh-eyes audit); with the seal
    recomputed (it guards against accidents, not against an edit), it ran without a word (a security audit). A copy
    under a new name, which changes only 'weights', still runs."""
    if registered_entry(sp) is not None:  # sealed or not: a seal is a plain digest anyone can recompute (a security audit)
        return
    entry = next((e for e in read_registry() if e.get("sha256") == digest), None)
    if entry is None:
        return
    try:
        shipped = read_json(Path(MODELS_DIR) / entry["sidecar"])
    except (OSError, ValueError, KeyError, RecursionError):
        return  # the install's own sidecar unreadable: said when that model is used
    if settings_digest(shipped) != settings_digest(meta):
        raise IQTError(f"{sp}: its weights are the shipped model {entry['sidecar']}'s, with other settings than that "
                       "model's: the sidecar was edited; use the shipped model (or a copy of both its files), or retrain")


def read_registry(models_dir=MODELS_DIR) -> list[dict]:
    reg = Path(models_dir) / REGISTRY
    if not reg.exists():
        return []
    try:
        fix = ("reinstall the extension" if reg.parent.resolve() == Path(MODELS_DIR).resolve() else
               f"move it away: 'iqt train --register' writes a new {REGISTRY} there")
        return list(read_json(reg, what="the model registry", usual="the install's holds a few hundred bytes a model",
                              fix=fix, irregular_fix=fix).get("models", []))
    except (ValueError, RecursionError) as exc:
        raise IQTError(f"{reg}: the model registry is not valid JSON ({exc})") from None


def _entry_factors(e: dict):
    """A registry entry's factors as (fx, fy, fz) (an integer r is (r, r, r)); None for a malformed entry."""
    try:
        return grid.factors(e.get("factor", 0))
    except IQTError:
        return None


# A registry entry may be the model for one kind of input ("input": NOISY): a model trained with added noise, which
# `Method.predict` takes instead of the default one for inputs much noisier than clean scans (noise_level.NOISY_MODEL).
NOISY = "noisy"


def input_kind(meta: dict) -> str | None:
    """The kind of input a model's sidecar says it was trained for: NOISY when its training added Rician noise to a
    share of the inputs (`iqt train --noise-fraction`), else None (the default model)."""
    training = meta.get("training") or {}
    settings = training.get("settings") or training.get("options") or {}
    try:
        return NOISY if float(settings.get("noise_fraction") or 0.0) > 0 else None
    except (TypeError, ValueError):
        return None


def shipped_factor_sets(method: str, models_dir=MODELS_DIR, kind: str | None = None) -> list[tuple[int, int, int]]:
    """The factors (fx, fy, fz) of every shipped model of `method` for inputs of `kind` (None: the default models),
    in the registry's order."""
    return [f for e in read_registry(models_dir) if e.get("method") == method and e.get("input") == kind
            for f in [_entry_factors(e)] if f is not None]


def registered_here(sidecar) -> bool:
    """Whether a model of the install's registry was put there by 'iqt train --register' (its sidecar's recorded command
    has --register), not shipped, so that every output and 'iqt methods' do not call a user's model that replaced
    the default the shipped one. The shipped models' commands have no --register."""
    try:
        command = str(((read_json(Path(sidecar)).get("training") or {}).get("command")) or "")
    except (OSError, ValueError, AttributeError, RecursionError):
        return False
    return "--register" in command.split()


def registered_factor_sets(method: str, models_dir=MODELS_DIR, kind: str | None = None) -> list[tuple[int, int, int]]:
    """The factors of the registry's models of `method` for inputs of `kind` that 'iqt train --register' put there."""
    return [f for e in read_registry(models_dir) if e.get("method") == method and e.get("input") == kind
            for f in [_entry_factors(e)] if f is not None and registered_here(Path(models_dir) / str(e.get("sidecar")))]


def model_origin(path, given: bool) -> tuple[str, str]:
    """(its weights file's name, or the path as given; 'given', 'registered' or 'shipped') of the model at `path` (a
    weights file or a sidecar): what an output says ran."""
    if given:
        return str(path), "given"
    sp = sidecar_path(path)
    try:
        name = str(read_json(sp).get("weights") or Path(path).name)
    except (OSError, ValueError, AttributeError, RecursionError):
        name = Path(path).name
    return name, "registered" if registered_here(sp) else "shipped"


def build() -> str:
    """The build as `iqt --version` prints it and outputs record it beside the version: the first 12 hex digits of
    core.version.build_digest over the engine's code and the install's model registry (one version number, other code
    or other shipped models: another build). Here, not in core, because the registry is the install's (MODELS_DIR)."""
    from ..core.version import build_digest

    return build_digest(str(MODELS_DIR / "registry.json"))[:12]


def software() -> dict:
    """What made an output, as its JSON summaries record it: {"software", "version", "build"} (`build`), so that a file
    read after an upgrade says which code's figures it holds."""
    from ..core.version import __version__

    return {"software": "ImageQualityTransfer", "version": __version__, "build": build()}


def method_named(path) -> str | None:
    """The method a model's sidecar names, so that a model given without a method runs its own (None where the sidecar
    cannot be read: the model's load then says what is wrong)."""
    try:
        named = read_json(sidecar_path(path)).get("method")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return named if isinstance(named, str) else None


def factors_named(path) -> tuple | None:
    """The factors a model's sidecar names (its "factor": r or [fx, fy, fz]), so that a model given without --factor
    runs at its own (None where the sidecar cannot be read or names none: the load then says what is wrong)."""
    try:
        named = read_json(sidecar_path(path)).get("factor")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    if isinstance(named, int) and not isinstance(named, bool):
        return (named,) * 3
    ok = isinstance(named, list) and len(named) == 3 and all(isinstance(k, int) and not isinstance(k, bool) for k in named)
    return tuple(named) if ok else None


def model_sha256(path) -> str | None:
    """The SHA256 of the weights of the model at `path` (a weights file or a sidecar) as its sidecar records it, checked
    when the model was loaded; None where the sidecar cannot be read."""
    try:
        return read_json(sidecar_path(path)).get("sha256")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None


def shipped_for(method: str, factor, kind: str, models_dir=MODELS_DIR) -> Path | None:
    """Sidecar path of the shipped model of `method` for exactly `factor` and inputs of `kind`, or None."""
    f = grid.factors(factor)
    for e in read_registry(models_dir):
        if e.get("method") == method and e.get("input") == kind and _entry_factors(e) == f:
            return Path(models_dir) / e["sidecar"]
    return None


def shipped_only(text: str, tool: str) -> str:
    """`shipped`'s message for a tool that runs the shipped models only (iqt view, slicer.render): its advice to give
    a model file, an option `tool` does not have (a Slicer audit), put as choosing one of the factors they have."""
    import re

    # with no model shipped at all there are no factors to choose among (a viewer audit: "choose one of those factors")
    choose = "choose one of those factors, or use" if " has shipped models for " in text else "use"
    return re.sub(r"(give --model|choose an Advanced > Model file) for [^;]*? or use",
                  f"{tool} runs the shipped models only: {choose}", text)


def shipped(method: str, factor, suffix: str, models_dir=MODELS_DIR) -> Path:
    """Sidecar path of the shipped (default) model for (method, factor), or an IQTError saying what exists and what
    to do. `factor` is an integer r or per-axis factors (fx, fy, fz), exactly as the model was trained (the methods
    permute axes to serve a reordering: grid.axis_order)."""
    found = shipped_for(method, factor, None, models_dir)
    if found is not None:
        return found
    f = grid.factors(factor)
    have = [grid.described(h) for h in shipped_factor_sets(method, models_dir)]
    what = (_("{method} has shipped models for {factors} only").format(method=method, factors=", ".join(have)) if have
            else _("no {method} model is shipped").format(method=method))
    train = f"'iqt train --method {method} --subjects DIR... --factor {grid.text(f)} -o MODEL{suffix}'"
    others = [m for m in dict.fromkeys(e.get("method") for e in read_registry(models_dir)) if m and m != method
              and grid.axis_order(f, shipped_factor_sets(m, models_dir)) is not None]
    use = _("another method ({methods}, or cubic)").format(methods=", ".join(others)) if others else \
        _("an interpolation method (cubic)")
    # the option in the words of the app that runs (core/i18n.py option: the Slicer module's Model file)
    raise IQTError(what + "; " + _("{give_model} for {factors} (train one with {command}) or use {use}").format(
        give_model=option("give --model"), factors=grid.described(f), command=train, use=use))


def register(meta: dict, sidecar, models_dir=MODELS_DIR) -> None:
    """Add or replace the entry for (method, factors, input kind: `input_kind`); the registry is re-read right before
    it is written."""
    from .staging import current

    reg = Path(models_dir) / REGISTRY
    f = grid.factors(meta["factor"])
    kind = input_kind(meta)
    if current() is not None:  # put in place with the model it names (`registering`)
        current().declare(reg)
    with _registry_lock(reg):  # two trainings registering at once had lost each other's entries (a training audit)
        entries = [e for e in read_registry(models_dir)
                   if not (e.get("method") == meta["method"] and _entry_factors(e) == f and e.get("input") == kind)]
        entries.append({"method": meta["method"], "factor": grid.record(f), **({"input": kind} if kind else {}),
                        "sidecar": sidecar_path(sidecar).name, "version": meta.get("version"), "sha256": meta["sha256"]})
        # isotropic first, each default model before its variants
        entries.sort(key=lambda e: (e["method"], not isinstance(e["factor"], int), str(e["factor"]), e.get("input") or ""))
        write_json(reg, {"format": REGISTRY_FORMAT, "models": entries})
    forget_build()  # this process's build holds the new entry (staged: again as `registering` ends)


@contextlib.contextmanager
def registering(models_dir):
    """The registry of `models_dir` locked while a model and its entry are written and put in place together
    (methods/learned.py `save`): a registry write that failed after the model had landed left the new weights with the
    old entry's SHA256, and the model at that path refused as replaced."""
    try:
        with _registry_lock(Path(models_dir) / REGISTRY):
            yield
    finally:  # the staged registry is in place now (methods/learned.py save)
        forget_build()


_LOCKED = threading.local()  # the registries this thread holds locked: `registering` and then `register` lock once


@contextlib.contextmanager
def _registry_lock(reg: Path):
    """An exclusive lock on `reg`'s read-modify-write (an advisory lock on a hidden file beside it, kept: removing it
    would let a third training lock a new file while the second holds the old; where the system has no fcntl, none)."""
    try:
        import fcntl
    except ImportError:  # Windows: one registering training at a time, as before
        yield
        return
    held = _LOCKED.__dict__.setdefault("paths", set())
    key = os.path.realpath(reg)
    if key in held:  # a second flock on its own handle would wait for this thread's first one for ever
        yield
        return
    with open(reg.with_name(f".{reg.name}.lock"), "a") as handle:  # hidden, as a checkpoint's lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Family:
    """One learned family's model files: its sidecar format tag, its name in messages and its weights suffix."""

    format: str
    name: str
    suffix: str

    def read_sidecar(self, path) -> tuple[dict, Path]:
        return read_sidecar(path, self.format, self.name, self.suffix)

    def read_verified(self, path) -> tuple[dict, Path, bytes]:
        return read_verified(path, self.format, self.name, self.suffix)

    @staticmethod
    def say_unsealed(meta: dict, path) -> None:
        """The unsealed sidecar's warning, for a loader to say once the weights have loaded: said before the loader's
        own refusal (a plain pickle behind an unsealed sidecar), its advice to seal came before a refusal (a review)."""
        _say_unsealed(meta, sidecar_path(path))

    def shipped(self, method: str, factor, models_dir=MODELS_DIR) -> Path:
        return shipped(method, factor, self.suffix, models_dir)

    def shipped_factor_sets(self, method: str, models_dir=MODELS_DIR, kind: str | None = None) -> list[tuple[int, int, int]]:
        return shipped_factor_sets(method, models_dir, kind)

    def shipped_for(self, method: str, factor, kind: str, models_dir=MODELS_DIR) -> Path | None:
        return shipped_for(method, factor, kind, models_dir)

    def register(self, sidecar, models_dir=MODELS_DIR) -> None:
        from .staging import current

        written = current().where(sidecar_path(sidecar)) if current() is not None else sidecar  # not yet in place
        register(self.read_sidecar(written)[0], sidecar, models_dir)


def article(method: str) -> str:
    """"an" before a method name said with a vowel sound (espcn, rf: "an R-F"), else "a" (biqt, deep)."""
    return "an" if method[:1] in "aeiou" or method.startswith("rf") else "a"
