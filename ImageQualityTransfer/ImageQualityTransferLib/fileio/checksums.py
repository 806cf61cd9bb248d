"""Checksums of input and model files, and finding one subject's file given twice under two names.

An image is hashed as read: a NRRD header (`.nhdr`) or an MRtrix `.mih` and the data file it names, one after the other
(`image_files`), so that a re-exported subject behind an unchanged header is seen as changed (`iqt batch`'s resume,
apps/batch/records.py) and two subjects behind byte-identical headers are not taken for copies (apps/batch/items.py).
"""

from __future__ import annotations

import hashlib
import os
import zlib

from ..core.errors import IQTError
from .mif import mih_data_file
from .paths import not_a_file, nrrd_data_file


def detached_data(path):
    """The data file an image header names apart from itself: a NRRD header's 'data file', a .mih's 'file' line; None
    for an image that holds its data."""
    return nrrd_data_file(path) or mih_data_file(path)


def image_files(path) -> list:
    """The files an image at `path` is read from: the file itself, then a NRRD or .mih header's detached data file where
    that is one regular file. Anything else is left out, unopened, for its reader (fileio/nrrd.py `_read`) to refuse in its
    own line: a FIFO, a device or a folder (a FIFO data file had hung `iqt batch`), a missing data file or one split
    over several ('data file: LIST', 'slice%03d.raw 1 36 1 3': these had been called 'file not found')."""
    from .nrrd import _split_data

    files = [path] if not_a_file(path) is None else []
    data = detached_data(path)
    if data is None or _split_data(data.name) is not None or not os.path.isfile(data):
        return files
    return files + [data]


def image_sha256(path) -> str:
    """SHA256 of an image as read: its file and, for a NRRD header, the detached data file (`image_files`). A header
    whose data file is left out gets a digest no record of a read image holds (its reader refuses it)."""
    files = image_files(path)
    digest = sha256(*files)
    if detached_data(path) is not None and len(files) < 2:
        digest = hashlib.sha256(b"data file unread:" + digest.encode()).hexdigest()
    return digest


def sha256(*paths) -> str:
    """SHA256 of the files' bytes, one after the other (an image's: `image_sha256`)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def first_copy(paths) -> tuple[int, int] | None:
    """(i, j), j < i, of the first file of `paths` whose image bytes are those of an earlier one; None where all
    differ. Byte-identical files of one size, and a gzipped file and a plain one holding the same bytes (a training
    audit: dwi.nii beside the same scan's dwi.nii.gz was a second subject): of those, only pairs of one uncompressed
    size (which a gzip records at its end, modulo 4 GiB; a gzip of several members, as bgzip writes, is compared by its
    last one's and missed), read side by side up to their first difference, so that a cohort of one grid, one plain
    file among its gzips, is not decompressed in full (a review). A NRRD or .mih header with a detached data file is
    compared with its data (`image_sha256`): two subjects behind byte-identical headers are no copies. An empty or
    missing file is none's copy (its reader says what is wrong)."""
    by_size: dict = {}
    detached: dict = {}
    for i, p in enumerate(paths):
        if detached_data(p) is not None:
            files = image_files(p)
            if len(files) < 2:  # its data file unread: none's copy, its reader says what is wrong
                continue
            try:
                detached.setdefault(tuple(os.path.getsize(f) for f in files), []).append(i)
            except OSError:
                pass
            continue
        size = content_size(p)
        if size:
            by_size.setdefault(size, []).append(i)
    found = []
    for group in (g for g in detached.values() if len(g) > 1):
        found += _first_repeat(group, lambda i: image_sha256(paths[i]))
    for group in (g for g in by_size.values() if len(g) > 1):
        kinds = {i: _gzipped(paths[i]) for i in group}
        for zipped in (False, True):  # of one kind: byte-identical, so of one file size too
            same = [i for i in group if kinds[i] == zipped]
            try:
                sizes = [os.path.getsize(paths[i]) for i in same]
            except OSError:
                continue
            found += _first_repeat((i for i, n in zip(same, sizes) if sizes.count(n) > 1), lambda i: sha256(paths[i]))
        found += [(max(i, j), min(i, j)) for i in group if kinds[i] for j in group if not kinds[j]
                  and _same_bytes(paths[i], paths[j])]
    return min(found) if found else None


def _first_repeat(indices, digest) -> list:
    """[(i, j)], j before i, for the first of `indices` whose digest(i) is an earlier one's; [] where none repeats. One
    that cannot be read (OSError) is skipped: its reader says what is wrong."""
    digests: dict = {}
    for i in indices:
        try:
            j = digests.setdefault(digest(i), i)
        except OSError:
            continue
        if j != i:
            return [(i, j)]
    return []


def _same_bytes(zipped, plain) -> bool:
    """Whether gzipped file `zipped` holds the bytes of `plain`, read side by side up to their first difference."""
    import gzip

    try:
        with gzip.open(zipped, "rb") as a, open(plain, "rb") as b:
            while True:
                x, y = a.read(1 << 20), b.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except (OSError, EOFError, zlib.error):  # a damaged file is none's copy: its reader says what is wrong
        return False


def _gzipped(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def content_size(path) -> int:
    """The size of `path`'s bytes once decompressed, modulo 4 GiB as a gzip file records it (a plain file's too, so
    that the two meet); 0 unread or empty."""
    try:
        size = os.path.getsize(path)
        if size > 18 and _gzipped(path):
            with open(path, "rb") as f:
                f.seek(-4, os.SEEK_END)
                return int.from_bytes(f.read(4), "little")
        return size & 0xFFFFFFFF
    except OSError:
        return 0


def content_sha256(path) -> str:
    """SHA256 of `path`'s bytes, decompressed where it is gzipped."""
    import gzip

    h = hashlib.sha256()
    opener = gzip.open if _gzipped(path) else open
    try:
        with opener(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except (EOFError, OSError, zlib.error) as exc:  # a truncated gzip ends in EOFError, not an OSError
        raise IQTError(f"{path}: cannot be read to the end ({exc}); the file may be truncated or damaged") from None
    return h.hexdigest()
