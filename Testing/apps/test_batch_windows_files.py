"""`iqt batch` with the files and systems of Windows and macOS users (audit AA): its own tables read back as the UTF-8
they are written in, not in the locale's encoding; list files from Windows tools (a byte-order mark, UTF-16, paths in
quotes); subject names the same from NFC and NFD folder names, and never two that differ only in case (one folder on
a macOS or Windows disk); the lock's process check without os.kill(pid, 0), which on Windows sends Ctrl+C."""

from __future__ import annotations

import pathlib
import unicodedata
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.batch import qc  # noqa: E402
from ImageQualityTransferLib.core.errors import IQTError  # noqa: E402


@pytest.fixture
def windows_text(monkeypatch):
    """Path.read_text without an encoding reads cp1252, as Python 3.11 does on a Western Windows machine (explicit
    encodings are kept)."""
    given = pathlib.Path.read_text

    def read_text(self, encoding=None, errors=None):
        return given(self, encoding=encoding or "cp1252", errors=errors)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)


def test_qc_tsv_is_read_back_as_utf8_and_kept_byte_for_byte(tmp_path, windows_text):
    """A reason naming Pé09 stayed Pé09 through later runs into the folder (it came back as PÃ©09, then PÃƒÂ©09)."""
    row = ["sub-P09", "cubic", "2x", "failed"] + ["-"] * (len(qc.QC_COLUMNS) - 5) + ["c/Pé09/dti.nii.gz: file not found"]
    (tmp_path / "qc.tsv").write_text("\t".join(qc.QC_COLUMNS) + "\n" + "\t".join(row) + "\n", encoding="utf-8")
    before = (tmp_path / "qc.tsv").read_bytes()
    assert qc._read_qc(tmp_path / "qc.tsv") == [row]
    qc.write_qc(tmp_path, [])
    qc.write_qc(tmp_path, [])
    assert (tmp_path / "qc.tsv").read_bytes() == before
    assert "Pé09" in (tmp_path / "qc.html").read_text(encoding="utf-8")


def test_a_dataset_description_from_another_tool_is_read_as_utf8(tmp_path, windows_text):
    """The derivatives folder's dataset_description.json (BIDS: UTF-8) is named as it is, not as cp1252 reads it."""
    from ImageQualityTransferLib.apps.batch.records import check_source

    (tmp_path / "dataset_description.json").write_text('{"Name": "Müller lab"}', encoding="utf-8")
    with pytest.raises(IQTError, match="'Müller lab'"):
        check_source(tmp_path, [])


LINES = ["P01/dti.nii.gz", "P02/dti.nii.gz"]


def listed(path: Path) -> list[tuple[str, str]]:
    return [(it.prefix, it.path) for it in batch.find_items(path)]


@pytest.mark.parametrize("encoded", [
    ("\ufeff" + "\n".join(LINES) + "\n").encode("utf-8"),  # Excel's "CSV UTF-8", older Notepad
    ("\ufeff" + "\r\n".join(LINES) + "\r\n").encode("utf-8"),
    ("\ufeff" + "\r\n".join(LINES) + "\r\n").encode("utf-16-le"),  # PowerShell 5's Out-File
    ("\ufeff" + "\n".join(LINES) + "\n").encode("utf-16-be"),
    ('"P01/dti.nii.gz"\r\n"P02/dti.nii.gz"\r\n').encode("utf-8"),  # Explorer's "Copy as path"
    ("'P01/dti.nii.gz'\n  'P02/dti.nii.gz'  # second\n").encode("utf-8"),
], ids=["bom", "bom-crlf", "utf16-le", "utf16-be", "double-quoted", "single-quoted"])
def test_lists_from_windows_tools_name_the_same_subjects(tmp_path, encoded):
    (tmp_path / "plain.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    (tmp_path / "list.txt").write_bytes(encoded)
    assert listed(tmp_path / "list.txt") == listed(tmp_path / "plain.txt") == \
        [("sub-P01", str(tmp_path / "P01/dti.nii.gz")), ("sub-P02", str(tmp_path / "P02/dti.nii.gz"))]


def test_a_quoted_path_keeps_its_spaces_and_hashes_and_may_end_in_options(tmp_path):
    (tmp_path / "list.txt").write_text('"Scan #2/P 03/dti.nii.gz" --mask "m.nii.gz"  # a comment\n'
                                       "'O\"Neil/dti.nii.gz' --tensor-order fsl\n", encoding="utf-8")
    items = batch.find_items(tmp_path / "list.txt")
    assert [(it.prefix, it.path, it.mask, it.tensor_order) for it in items] == [
        ("sub-P03", str(tmp_path / "Scan #2/P 03/dti.nii.gz"), str(tmp_path / "m.nii.gz"), ""),
        ("sub-ONeil", str(tmp_path / 'O"Neil/dti.nii.gz'), "", "fsl")]
    (tmp_path / "junk.txt").write_text('"P01/dti.nii.gz" extra\n', encoding="utf-8")
    with pytest.raises(IQTError, match="'extra' follows the quoted path"):
        batch.find_items(tmp_path / "junk.txt")


def test_a_list_saved_in_a_code_page_is_refused_in_one_line_saying_utf8(tmp_path, windows_text):
    (tmp_path / "list.txt").write_bytes("Pé05/dti.nii.gz\n".encode("cp1252"))
    with pytest.raises(IQTError, match=r"not UTF-8 text: save it as UTF-8 \(its byte 2, 0xe9"):
        batch.find_items(tmp_path / "list.txt")
    (tmp_path / "odd.txt").write_bytes(b"\xff\xfeP\x00\x01")  # a UTF-16 mark, then an odd number of bytes
    with pytest.raises(IQTError, match="not UTF-16 text.*save it as UTF-8"):
        batch.find_items(tmp_path / "odd.txt")


def test_a_utf8_list_reads_the_same_with_windows_default_encoding(tmp_path, windows_text):
    """Notepad's default (UTF-8 without a BOM): Pé05 was read as PÃ©05 on Windows, a folder that does not exist."""
    (tmp_path / "list.txt").write_text("Pé05/dti.nii.gz\n", encoding="utf-8")
    assert [it.path for it in batch.find_items(tmp_path / "list.txt")] == [str(tmp_path / "Pé05/dti.nii.gz")]


@pytest.mark.parametrize("name, expected", [("Pé01", "sub-Pe01"), ("Müller", "sub-Muller"), ("Čech", "sub-Cech"),
                                            ("Øst01", "sub-st01"), ("患者01", "sub-01"), ("Ｐ０１", "sub-P01")])
def test_a_subject_has_one_name_from_either_unicode_form(tmp_path, name, expected):
    """macOS names folders in NFD (e + combining acute), Linux and Windows in NFC (é): Pé01 was sub-P01 from one and
    sub-Pe01 from the other, so a cohort resumed on the other machine was redone into a second folder."""
    for form in ("NFC", "NFD"):
        (tmp_path / "list.txt").write_text(unicodedata.normalize(form, name) + "/dti.nii.gz\n", encoding="utf-8")
        assert [it.prefix for it in batch.find_items(tmp_path / "list.txt")] == [expected]


def test_ascii_names_keep_their_labels_byte_for_byte():
    """Existing ASCII lists keep their subjects' names: the label of every ASCII text is the one it had before."""
    import random
    import re

    from ImageQualityTransferLib.apps.batch.items import label

    rng = random.Random(0)
    texts = [chr(c) + "P01" for c in range(128)] + \
        ["".join(chr(rng.randrange(128)) for _ in range(rng.randrange(1, 24))) for _ in range(5000)]
    for text in texts:
        old = re.sub(r"[^A-Za-z0-9]", "", text)
        if old:
            assert label(text) == old


def test_names_differing_only_in_case_are_told_apart_as_other_colliding_names(tmp_path):
    """siteA/P01 and siteB/p01 became sub-P01 and sub-p01: one folder on a macOS or Windows disk, each subject's outputs
    replacing the other's with qc.tsv saying both done. They now take their parent folders, as sub-P01 twice does."""
    (tmp_path / "case.txt").write_text("siteA/P01/dti.nii.gz\nsiteB/p01/dti.nii.gz\n", encoding="utf-8")
    (tmp_path / "same.txt").write_text("siteA/P01/dti.nii.gz\nsiteB/P01/dti.nii.gz\n", encoding="utf-8")
    (tmp_path / "apart.txt").write_text("siteA/P01/dti.nii.gz\nsiteB/P02/dti.nii.gz\np03/dti.nii.gz\n", encoding="utf-8")
    assert [it.prefix for it in batch.find_items(tmp_path / "case.txt")] == ["sub-siteAP01", "sub-siteBp01"]
    assert [it.prefix for it in batch.find_items(tmp_path / "same.txt")] == ["sub-siteAP01", "sub-siteBP01"]
    assert [it.prefix for it in batch.find_items(tmp_path / "apart.txt")] == ["sub-P01", "sub-P02", "sub-p03"]


def test_names_that_stay_one_folder_without_case_are_refused(tmp_path):
    (tmp_path / "l.txt").write_text("P01/dti.nii.gz\np01/dti.nii.gz\n", encoding="utf-8")
    with pytest.raises(IQTError, match="one folder on a macOS or Windows disk"):
        batch.find_items(tmp_path / "l.txt")
    for sub in ("sub-P01", "sub-p01"):  # a BIDS dataset made on Linux
        (tmp_path / "bids" / sub / "dwi").mkdir(parents=True)
        (tmp_path / "bids" / sub / "dwi" / f"{sub}_dwi.nii.gz").write_bytes(b"")
    with pytest.raises(IQTError, match="sub-p01 and sub-P01, one folder on a macOS or Windows disk"):
        batch.find_items(tmp_path / "bids")


class FakeKernel32:
    """kernel32's OpenProcess, GetExitCodeProcess, GetProcessTimes and CloseHandle over `procs` (pid: (exit code,
    creation time)); `denied` pids fail to open with ERROR_ACCESS_DENIED, others not in `procs` with 87."""

    def __init__(self, procs, denied=(), error=87):
        self.procs, self.denied, self.error, self.last, self.open = procs, set(denied), error, 0, set()

    def OpenProcess(self, access, inherit, pid):
        assert access == 0x1000  # PROCESS_QUERY_LIMITED_INFORMATION: what any user may ask
        if pid in self.procs:
            self.open.add(pid)
            return 1000 + pid
        self.last = 5 if pid in self.denied else self.error
        return 0

    def GetExitCodeProcess(self, handle, code):
        code._obj.value = self.procs[handle.value - 1000][0]
        return 1

    def GetProcessTimes(self, handle, created, *_):
        created._obj.value = self.procs[handle.value - 1000][1]
        return 1

    def CloseHandle(self, handle):
        self.open.discard(handle.value - 1000)
        return 1


@pytest.fixture
def windows(monkeypatch):
    """Windows as the lock sees it: os.kill(pid, 0) raises, as CPython's does for a pid that is no console group (or it
    sends Ctrl+C); the process probe answers from a FakeKernel32 (set `.kernel32`)."""
    import os

    from ImageQualityTransferLib.apps.batch import lock

    sent = []

    def kill(pid, sig):
        sent.append((pid, sig))
        raise OSError(22, "The parameter is incorrect")

    state = type("Windows", (), {"kernel32": FakeKernel32({}), "sent": sent})()
    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(lock, "_on_windows", lambda: True, raising=False)
    monkeypatch.setattr(lock, "_kernel32", lambda: state.kernel32, raising=False)
    monkeypatch.setattr(lock, "_last_error", lambda: state.kernel32.last, raising=False)
    return state


def plant_lock(out: Path, pid: int, pid_start=None) -> Path:
    import json
    import socket

    from ImageQualityTransferLib.apps.batch import lock

    out.mkdir(parents=True, exist_ok=True)
    (out / lock.LOCK_NAME).write_text(json.dumps({"pid": pid, "pid_start": pid_start, "host": socket.gethostname(),
                                                  "started": "2026-01-02 03:04:05 +0000", "command": "iqt batch l -o o",
                                                  "token": "old"}))
    return out / lock.LOCK_NAME


def test_on_windows_the_lock_of_a_gone_run_is_taken_over_without_signal_0(tmp_path, windows):
    """After a crashed batch on Windows the folder was refused for good ('stop it (kill 999999)'), and the probe could
    send Ctrl+C to the console."""
    from ImageQualityTransferLib.apps.batch import lock

    plant_lock(tmp_path, 999999)
    with pytest.warns(Warning, match="taking over the lock of an iqt batch run that is gone"):
        rec = lock.acquire(tmp_path)
    assert (lock._read(tmp_path / lock.LOCK_NAME) or {}).get("token") == rec["token"]
    assert not [s for s in windows.sent if s[1] == 0]


def test_on_windows_a_reused_pid_is_told_by_its_creation_time(tmp_path, windows):
    from ImageQualityTransferLib.apps.batch import lock

    windows.kernel32 = FakeKernel32({4242: (259, 222)})
    plant_lock(tmp_path, 4242, pid_start="111")
    with pytest.warns(Warning, match="taking over"):
        lock.acquire(tmp_path)
    assert not windows.kernel32.open  # every handle closed


def test_on_windows_a_live_run_is_refused_with_taskkill_and_an_unknown_one_with_how_to_remove_the_lock(tmp_path, windows):
    from ImageQualityTransferLib.apps.batch import lock

    windows.kernel32 = FakeKernel32({4242: (259, 222)})
    plant_lock(tmp_path, 4242, pid_start="222")
    with pytest.raises(IQTError, match=r"stop it \(taskkill /PID 4242\)"):
        lock.acquire(tmp_path)
    windows.kernel32 = FakeKernel32({}, error=6)  # neither "no such process" nor "access denied": cannot tell
    with pytest.raises(IQTError, match=r"cannot be told here.*remove .*\.iqt_batch\.lock and rerun"):
        lock.acquire(tmp_path)
    assert not [s for s in windows.sent if s[1] == 0]


def test_the_windows_probe_reads_the_exit_code_and_errors():
    from ImageQualityTransferLib.apps.batch import lock

    fake = FakeKernel32({10: (259, 5), 11: (0, 6)}, denied={12})
    given = lock._kernel32, lock._last_error
    lock._kernel32, lock._last_error = (lambda: fake), (lambda: fake.last)
    try:
        assert [lock._windows_process(p) for p in (10, 11, 12, 13)] == \
            [(True, "5"), (False, "6"), (True, None), (False, None)]
    finally:
        lock._kernel32, lock._last_error = given
    if not hasattr(__import__("ctypes"), "WinDLL"):  # here: no kernel32, so it cannot tell
        assert lock._windows_process(10) == (None, None)


def test_a_quoted_mask_keeps_its_spaces_after_a_plain_or_a_quoted_path(tmp_path):
    """A --mask path with a space could not be given: quoted, the whole line was taken as one folder (or, after a
    quoted path, refused as following it), bare it split (researcher audit, stop 57)."""
    (tmp_path / "list.txt").write_text('P04/dti.nii.gz --mask "P04/my mask.nii.gz"\n'
                                       "\"P 03/dti.nii.gz\" --mask 'P 03/a mask.nii.gz' --tensor-order fsl\n",
                                       encoding="utf-8")
    items = batch.find_items(tmp_path / "list.txt")
    assert [(it.prefix, it.path, it.mask, it.tensor_order) for it in items] == [
        ("sub-P04", str(tmp_path / "P04/dti.nii.gz"), str(tmp_path / "P04/my mask.nii.gz"), ""),
        ("sub-P03", str(tmp_path / "P 03/dti.nii.gz"), str(tmp_path / "P 03/a mask.nii.gz"), "fsl")]
