"""`iqt report`'s tractography is an extra: a failure the engine raises on purpose (IQTError, MemoryError) leaves
the tracts out with a note on the page; anything else (a bug's TypeError) is not swallowed into that note."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from ImageQualityTransferLib.analysis import benchmark, tractography  # benchmark: its import (~0.7 s) at collection
from ImageQualityTransferLib.apps import report
from ImageQualityTransferLib.core.errors import IQTError, IQTWarning
from ImageQualityTransferLib.dmri import subject
from ImageQualityTransferLib.methods import base
from ImageQualityTransferLib.core.volume import Volume


def _raising(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


def _isotropic_input(shape=(14, 14, 12), voxel=2.0) -> Volume:
    """Low-res tensors of a uniform isotropic medium (FA 0): nothing for tractography to seed from."""
    data = np.zeros(shape + (6,), np.float32)
    data[..., [0, 2, 5]] = 0.8e-3  # xx, yy, zz (mm^2/s)
    return Volume(data, np.diag([voxel, voxel, voxel, 1.0]), "tensor")


@pytest.fixture(scope="module")
def phantom():
    """The built-in phantom subject `report.run` reads by default (`subject.phantom_subject`, built the same way), on a
    coarse grid (32 x 36 x 28 voxels of 4 mm, 12 directions: the default's field of view) and made once for the
    module: the tests below fail its tractography, which does not depend on the grid, not its reading."""
    from ImageQualityTransferLib.dmri import subject
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12)
    return subject.Subject.from_dwi("phantom", dwi, Volume(np.asarray(dwi.meta["brain_mask"], bool), dwi.affine,
                                                           "mask"))


@pytest.fixture()
def default_subject(phantom, monkeypatch):
    """`report.run` without a subject folder reads the module's `phantom`, not a new default-sized one (2 s of CPU to
    make, and the page's figures of it 2-3 s more, each run)."""
    from ImageQualityTransferLib.dmri import subject

    monkeypatch.setattr(subject, "phantom_subject", lambda: phantom)


@pytest.mark.parametrize("exc", [IQTError("forced tracking failure"), MemoryError("forced tracking failure")])
def test_a_refused_tractography_leaves_the_tracts_out_with_a_note(tmp_path, monkeypatch, default_subject, exc):
    monkeypatch.setattr(tractography, "compare_case", _raising(exc))
    page = report.run(tmp_path / "r.html", method_names=["cubic"], n_seeds=50)
    text = page.read_text()
    assert "Tractography left out: forced tracking failure" in text
    assert "<h2>Tractography</h2>" not in text and "<h2>FA and colour FA</h2>" in text


def test_a_bug_in_tractography_is_not_swallowed(tmp_path, monkeypatch, default_subject):
    monkeypatch.setattr(tractography, "compare_case", _raising(TypeError("a bug")))
    with pytest.raises(TypeError, match="a bug"):
        report.run(tmp_path / "r.html", method_names=["cubic"], n_seeds=50)
    assert not (tmp_path / "r.html").exists()


def test_report_input_notes_an_input_with_nothing_to_seed_from(tmp_path):
    """The page's own refusal (no voxel of cubic's output with FA >= 0.3) is a note, as before."""
    page = report.run_input(tmp_path / "r.html", _isotropic_input(), factor=2, method_names=["cubic"], n_seeds=50)
    text = page.read_text()
    assert "Tractography left out: no voxel of cubic&#x27;s output with FA &gt;= 0.3 to seed from" in text
    assert "<h2>Tractography</h2>" not in text


def test_report_input_does_not_swallow_a_bug_in_tractography(tmp_path, monkeypatch):
    monkeypatch.setattr(tractography, "random_seeds", _raising(TypeError("a bug")))
    lr = _isotropic_input()
    lr.data[4:10, 4:10, 3:9] = [1.6e-3, 0, 0.2e-3, 0, 0, 0.2e-3]  # a block of strongly anisotropic tissue to seed in
    with pytest.raises(TypeError, match="a bug"):
        report.run_input(tmp_path / "r.html", lr, factor=2, method_names=["cubic"], n_seeds=50)
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_report_input_says_the_seeds_it_drew_where_fewer_voxels_than_asked(tmp_path):
    """One seed per white-matter voxel at most: the page says the count drawn, not the --n-seeds asked (it had said
    "1000000 random seeds" of a block of a few hundred voxels). The block is 6 x 3 x 3 low-res voxels (432 at x2):
    a 6 x 6 x 6 one drew 1,728 seeds, whose tracts took the page's figure 10 s of CPU to draw, and the claim does not
    depend on the count."""
    lr = _isotropic_input()
    lr.data[4:10, 5:8, 4:7] = [1.6e-3, 0, 0.2e-3, 0, 0, 0.2e-3]
    text = report.run_input(tmp_path / "r.html", lr, factor=2, method_names=["cubic"], n_seeds=1_000_000).read_text()
    said = text.split("tracts: ", 1)[1].split(" random seeds", 1)[0]
    drawn = int(said.split(" ", 1)[0])
    assert 0 < drawn < 1_000_000 and "--n-seeds 1000000 asked for more than there are" in said


def test_a_methods_warnings_are_said_when_a_later_method_fails(tmp_path, monkeypatch):
    """A method's warning recorded before another failed is still said, as apps/demo.py says it (a review read
    report.run: its recorded warnings were said only after every method had run), --input's run too."""
    def fails(*args, **kwargs):
        warnings.warn("cubic: a line that says why", IQTWarning)
        raise TypeError("a method failed")

    monkeypatch.setattr(benchmark, "score_case", fails)
    monkeypatch.setattr(base, "predict_within", fails)
    monkeypatch.setattr(subject, "phantom_subject", lambda: SimpleNamespace(name="phantom"))  # no phantom's seconds
    monkeypatch.setattr(subject, "make_case", lambda *args: None)
    for run in (lambda: report.run(tmp_path / "r.html", method_names=["cubic"], n_seeds=50),
                lambda: report.run_input(tmp_path / "r.html", _isotropic_input(), factor=2, method_names=["cubic"])):
        with pytest.warns(IQTWarning, match="cubic: a line that says why"), pytest.raises(TypeError, match="failed"):
            run()
    assert not (tmp_path / "r.html").exists()
