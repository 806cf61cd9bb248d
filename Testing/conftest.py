"""Shared fixtures: the real subjects in ../shared/data/dmri (skipped with a reason where absent); the `realdata`
marker for every test that uses them. Helpers and constants for the test modules are in helpers.py."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

# Before any test module loads torch: OpenMP threads wait without spinning, as in the `iqt` process
# (core/threads.py wait_passively); with `-n 2` on two cores the spinning workers took turns with each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

pytest.register_assert_rewrite("helpers")

import helpers  # noqa: E402
from helpers import AXIAL, NOISY_BACKGROUND, SAGITTAL, ZEROED_BACKGROUND, need_data  # noqa: E402

# Tests whose fixtures (directly or through other fixtures) include one of these read the real data.
REALDATA_FIXTURES = {"sagittal_subject", "axial_subject", "zeroed_background_subject", "noisy_background_subject"}


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Every test module on one BLAS thread, the pools restored after, as `iqt train` and the forests' prediction run
    (core/threads.small_solves): with `-n 2` on CI's two cores a second OpenBLAS thread doubled the CPU time of many
    small dense solves and gained no wall time (fit_dti and find_outliers on the 3 mm dev scan: 2.4 s of CPU -> 1.3 s,
    tensors bit-identical; test_forest 74 -> 26 CPU s; test_report, test_failed_fits and test_benchmark together
    76 -> 64 CPU s), and the two workers' spare threads took CPU from each other. A test that checks thread counts sets
    its own (threadpool_limits inside it); a child process keeps its own."""
    from ImageQualityTransferLib.core.threads import small_solves

    with small_solves():
        yield


def _real_subject(folder):
    """load_subject(folder), its reference fit on one BLAS thread as the test modules run (one_blas_thread: a session
    fixture is made before a module's)."""
    from ImageQualityTransferLib.core.threads import small_solves
    from ImageQualityTransferLib.dmri.subject import load_subject

    with small_solves():
        return load_subject(need_data(folder))


def _real_subject_fit_on_use(folder):
    """load_subject(folder) with its reference tensor fit made when first read, for the subjects whose tests read only
    the DWI and the mask (the fit of the whole 2 mm scan: 3 s, of the Achieva one: 5 s)."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.dti import brain_mask
    from ImageQualityTransferLib.dmri.subject import Subject, dwi_path, subject_name

    class FitOnUse(Subject):
        @property
        def tensor(self):
            if self._tensor is None:
                self._tensor = Subject.from_dwi(self.name, self.dwi, self.mask).tensor
            return self._tensor

        @tensor.setter
        def tensor(self, value):
            self._tensor = value

    folder = need_data(folder)
    dwi = fileio.load_dwi(dwi_path(folder))
    return FitOnUse(subject_name(folder), dwi, brain_mask(dwi, fill_slices=False), None)  # Subject.from_dwi's mask


@pytest.fixture(scope="session")
def sagittal_subject():
    return _real_subject(SAGITTAL)


@pytest.fixture(scope="session")
def axial_subject():
    return _real_subject(AXIAL)


@pytest.fixture(scope="session")
def zeroed_background_subject():
    """A training subject whose scanner wrote zeros outside the head (Philips Elition, 2 mm)."""
    return _real_subject_fit_on_use(ZEROED_BACKGROUND)


@pytest.fixture(scope="session")
def noisy_background_subject():
    """A training subject with a noisy background whose fits, clipped, pile up at one MD (Philips Achieva)."""
    return _real_subject_fit_on_use(NOISY_BACKGROUND)


@pytest.fixture(scope="session")
def small_subject(tmp_path_factory):
    """A coarse phantom subject folder (32x36x28 voxels of 4 mm, 12 directions): real files, seconds to process."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    folder = tmp_path_factory.mktemp("phantom_subject")
    fileio.save_dwi(make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12), folder / "dwi.nii.gz")
    return folder


@pytest.fixture(scope="module")
def phantom_subject(small_subject):
    """small_subject loaded as a Subject (its DWI, mask and reference fit), once per test module."""
    from ImageQualityTransferLib.dmri.subject import load_subject

    return load_subject(small_subject)


@pytest.fixture(scope="session")
def builtin_phantom_subject():
    """dmri.subject.phantom_subject() (the built-in 64x72x56 phantom and its fit: seconds), made once per process for
    the tests that only read it."""
    import numpy as np

    from ImageQualityTransferLib.dmri.subject import phantom_subject

    subject = phantom_subject()
    for vol in (subject.dwi, subject.mask, subject.tensor):  # shared by the tests of other files: none may change it
        if isinstance(vol.data, np.ndarray):
            vol.data.flags.writeable = False
    return subject


@pytest.fixture(scope="module")
def coarse_phantom():
    """A coarse phantom DWI (32x36x28 voxels of 4 mm, two b0s and 12 directions, Rician noise at SNR 30), made once
    per test module."""
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    return make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if REALDATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realdata)


# SIGINT, SIGTERM, SIGHUP as a terminal's foreground run has them in every process a test starts, whoever started the
# suite: a shell script's background job (`pytest ... &`) or `nohup` starts it with SIGINT or SIGHUP ignored, every
# `iqt` a test starts inherits that, and `iqt` keeps a signal it was started ignoring (apps/signals.py handle_signals):
# the tests that send one had failed or waited their timeout (4 in test_view.py, run from a background job). A test of
# that keeping sets it in its own child (test_bad_inputs.py). SIGTERM or SIGHUP started ignored gets a do-nothing
# handler here, not the default: this process still outlives them (`nohup pytest` had died at a hangup, 129), and a
# handler, unlike SIG_IGN, is the default again in a child exec'd or forked (_defaults_in_a_forked_child). SIGINT gets
# Python's own, as in-process tests of Ctrl-C expect (KeyboardInterrupt).
def _outlived(signum, frame) -> None:
    """SIGTERM or SIGHUP, which this process was started ignoring: outlived, as it would have been."""


for _name, _default in (("SIGINT", signal.default_int_handler), ("SIGTERM", _outlived), ("SIGHUP", _outlived)):
    if hasattr(signal, _name) and signal.getsignal(getattr(signal, _name)) == signal.SIG_IGN:
        signal.signal(getattr(signal, _name), _default)


def _defaults_in_a_forked_child() -> None:
    """A child forked without exec (multiprocessing's fork) takes SIGTERM and SIGHUP by default, as an exec'd one does."""
    for sig in (getattr(signal, n, None) for n in ("SIGTERM", "SIGHUP")):
        if sig is not None and signal.getsignal(sig) is _outlived:
            with contextlib.suppress(ValueError):  # forked from a thread that is not the main one
                signal.signal(sig, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_defaults_in_a_forked_child)
STOP_SIGNALS = {sig: signal.getsignal(sig)
                for sig in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if sig is not None}


def _signals_as_started() -> None:
    """Each test starts with the stop signals this process has at its start (STOP_SIGNALS) where an earlier test left
    one ignored: `cli.main()` run as the command (argv None, Testing/apps/test_cli.py, test_view.py) ignores SIGTERM
    and SIGHUP to the process's exit (apps/cli/__init__.py), and every process started after inherits that, so that
    torch's spawn waited out 30 s before it killed a training process its SIGTERM could not stop
    (test_distributed.py)."""
    for sig, handler in STOP_SIGNALS.items():
        if signal.getsignal(sig) == signal.SIG_IGN and handler != signal.SIG_IGN:
            signal.signal(sig, handler)
            signals = sys.modules.get("ImageQualityTransferLib.apps.signals")
            if signals is not None:  # as in a process no `cli.main()` has run in
                signals.ignored_by_the_command.discard(sig)


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures are set up
def pytest_runtest_setup(item):
    helpers._running_test_is_realdata = item.get_closest_marker("realdata") is not None
    _signals_as_started()


def pytest_runtest_teardown(item):
    helpers._running_test_is_realdata = None
