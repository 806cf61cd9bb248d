"""Each subject's picture on the cohort's QC page (a cohort audit: qc.html had no picture of any result, so a data
manager handing it to clinicians could not see a subject's output without opening it): colour FA of the input and the
output, and the uncertainty, on the axial slice through the brain's centre, in figures/ beside the subject's dwi/, named
in qc.tsv and shown small in qc.html, a link to it full size."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("distributed", reason="iqt batch needs Dask distributed")

from ImageQualityTransferLib import methods  # noqa: E402
from ImageQualityTransferLib.apps import batch, figures  # noqa: E402
from ImageQualityTransferLib.apps.batch import qc, subject  # noqa: E402
from ImageQualityTransferLib.core.orientation import Reorientation  # noqa: E402
from ImageQualityTransferLib.core.volume import Volume  # noqa: E402
from ImageQualityTransferLib.dmri.dti import brain_mask, fit_dti  # noqa: E402
from ImageQualityTransferLib.dmri.phantom import make_phantom  # noqa: E402

import helpers  # noqa: E402


@pytest.mark.slow
def test_each_subject_s_figure_is_written_named_in_qc_tsv_and_shown_in_qc_html(tmp_path):
    ds = helpers.make_bids(tmp_path / "bids", ("01", "02"), corrupt="03")
    out = tmp_path / "deriv"
    res = batch.run_cohort(batch.find_items(ds), batch.Settings(method="cubic"), out, progress=False)
    assert [r["status"] for r in res] == ["done", "done", "failed"]
    at = qc.QC_COLUMNS.index("figure")
    rows = {r[0]: r for r in qc._read_qc(out / "qc.tsv")}
    for sub in ("01", "02"):
        shown = rows[f"sub-{sub}"][at]
        assert shown == f"sub-{sub}/figures/sub-{sub}_space-orig_res-2x_model-cubic_desc-qc_dwimap.png"
        assert (out / shown).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rows["sub-03"][at] == "n/a" and not (out / "sub-03").exists()  # a failed subject leaves no folder
    page = (out / "qc.html").read_text()
    linked = re.findall(r'<a href="([^"]+)"><img src="([^"]+)"', page)
    assert sorted(a for a, b in linked if a == b) == [rows["sub-01"][at], rows["sub-02"][at]]
    again = batch.run_cohort(batch.find_items(ds), batch.Settings(method="cubic"), out, progress=False)
    assert [r["status"] for r in again][:2] == ["skipped"] * 2
    assert [r[at] for r in qc._read_qc(out / "qc.tsv")][:2] == [rows["sub-01"][at], rows["sub-02"][at]]


@pytest.mark.parametrize("estimated", [False, True])
def test_the_figure_shows_the_same_slice_however_the_subject_is_stored(monkeypatch, tmp_path, estimated):
    """A sagittal scan stored PSR and the same data stored RAS give the same panels: only the slice is put in canonical
    axes (the stored axis nearest superior found from the affine), the input by nearest on the output's grid."""
    dwi = make_phantom(shape=(24, 28, 20), voxel_mm=4.0, n_dirs=12)
    lr = fit_dti(dwi, brain_mask(dwi))
    pred = methods.get("biqt").predict(lr, 2, brain_mask(dwi), uncertainty=True)
    support = np.any(pred.tensor.data != 0, axis=-1)
    box = np.zeros_like(support)
    box[:, :, 18:22] = True  # four slices along S: their median lies between two, cut towards one (a review: flipped
    # storage had shown the other); an estimated brain is the whole support, its slice through its white matter's centre
    hr_mask = Volume(support if estimated else support & box, pred.tensor.affine, "mask")
    seen, centres = [], []
    monkeypatch.setattr(figures, "qc_strip", lambda columns, path, **kw: seen.append((columns, kw)))
    found = figures.white_matter_centre
    monkeypatch.setattr(figures, "white_matter_centre", lambda *a, **kw: centres.append(found(*a, **kw)) or centres[-1])
    s = batch.Settings(method="biqt", uncertainty=True)
    for codes in ("RAS", "PSR", "LPI"):
        import nibabel.orientations as nio

        reo = Reorientation.to_canonical(lr.affine).then(Reorientation(nio.ornt_transform(nio.axcodes2ornt("RAS"),
                                                                                          nio.axcodes2ornt(codes))))
        vols = {"tensor": reo.apply(pred.tensor), "lowres": reo.apply(lr), "mask": reo.apply(hr_mask),
                "std": reo.apply(pred.std)}
        assert "".join(nio.aff2axcodes(vols["tensor"].affine)) == codes
        subject.qc_figure(vols, s, batch.find_items(helpers.make_bids(tmp_path / codes, ("01",)))[0], tmp_path / "x.png",
                          estimated)
    assert len(centres) == (3 if estimated else 0) and all(c is not None for c in centres), centres
    (ras, kw_ras), *others = seen
    for psr, kw_psr in others:
        assert [n for n, _ in ras] == ["input (nearest)", "biqt"] == [n for n, _ in psr]
        for (_, a), (_, b) in zip(ras, psr):
            assert a.shape[2] == 1 and np.array_equal(a, b)
        assert np.array_equal(kw_ras["mask"], kw_psr["mask"]) and kw_ras["mask"].any()
        np.testing.assert_array_equal(kw_ras["uncertainty"]["biqt"], kw_psr["uncertainty"]["biqt"])
        np.testing.assert_allclose(kw_ras["frame"], kw_psr["frame"], atol=1e-12)
    # the input column is the low-res tensors repeated into their blocks, on the output's slice
    k = figures.centre_voxel(np.asarray(Reorientation.to_canonical(lr.affine).apply(hr_mask).data))[2]
    lr_ras = Reorientation.to_canonical(lr.affine).apply(lr).data
    np.testing.assert_array_equal(ras[0][1][:, :, 0], np.repeat(np.repeat(lr_ras[:, :, k // 2], 2, 0), 2, 1))


def test_a_killed_run_s_leftovers_beside_the_figure_are_cleaned_as_its_outputs_are(tmp_path):
    """A run killed while writing or putting in place a subject's figure leaves `.iqt-*.png` or `.iqt-earlier-<figure>
    .*.tmp` in figures/: they stayed, and every later run warned of them again (a review); those in dwi/ are removed."""
    import warnings

    from ImageQualityTransferLib.core.errors import IQTWarning

    ds = helpers.make_bids(tmp_path / "bids", ("01",))
    out = tmp_path / "deriv"
    s = batch.Settings(method="cubic")
    assert [r["status"] for r in batch.run_cohort(batch.find_items(ds), s, out, progress=False)] == ["done"]
    figures_dir = out / "sub-01" / "figures"
    (picture,) = list(figures_dir.iterdir())
    (figures_dir / ".iqt-k9x2abcd.png").write_bytes(b"x")  # as SIGKILL mid-write leaves it
    (figures_dir / f".iqt-earlier-{picture.name}.ab12cd34.tmp").write_bytes(picture.read_bytes())  # mid-commit
    next((out / "sub-01" / "dwi").glob("*param-fa_dwimap.nii.gz")).unlink()  # the subject is redone
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always", IQTWarning)
        assert [r["status"] for r in batch.run_cohort(batch.find_items(ds), s, out, progress=False)] == ["done"]
    assert sorted(p.name for p in figures_dir.iterdir()) == [picture.name]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", IQTWarning)
        assert [r["status"] for r in batch.run_cohort(batch.find_items(ds), s, out, progress=False)] == ["skipped"]
    assert not [w for w in said if "set aside by a killed iqt run" in str(w.message)]
    # beside a subject that is skipped, its outputs in place: superseded too (a review: they stayed, warned of each run)
    (figures_dir / f".iqt-earlier-{picture.name}.cd34ef56.tmp").write_bytes(picture.read_bytes())
    for _ in range(2):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always", IQTWarning)
            assert [r["status"] for r in batch.run_cohort(batch.find_items(ds), s, out, progress=False)] == ["skipped"]
    assert not [w for w in said if "set aside by a killed iqt run" in str(w.message)]
    assert sorted(p.name for p in figures_dir.iterdir()) == [picture.name]


def test_the_strip_wraps_a_long_title_and_keeps_a_thin_slab_s_figure_small(tmp_path):
    """A long subject label was cut off in the two-panel strip; a slab 2 voxels wide made a 410 x 40,075 px figure (a
    review)."""
    from PIL import Image

    dwi = make_phantom(shape=(24, 28, 20), voxel_mm=4.0, n_dirs=12)
    t = fit_dti(dwi, brain_mask(dwi)).data[:, :, 10:11]
    sizes = {}
    for name, title in (("short", "sub-01: cubic x2"), ("long", "sub-patient042_ses-followup_run-2: cubic x1,1,3, "
                                                                  "axial slice k = 31 (patient R on screen left)")):
        figures.qc_strip([("input (nearest)", t), ("cubic", t)], tmp_path / f"{name}.png", title=title)
        sizes[name] = Image.open(tmp_path / f"{name}.png").size
    assert sizes["long"][0] == sizes["short"][0] and sizes["long"][1] > sizes["short"][1], sizes  # on two lines
    figures.qc_strip([("cubic", np.repeat(t[:2], 1, axis=0).repeat(16, axis=1))], tmp_path / "thin.png", title="thin")
    width, height = Image.open(tmp_path / "thin.png").size
    assert height <= 5 * width, (width, height)


def test_the_white_matter_centre_of_a_large_brain_reads_a_flipped_copy_the_same():
    """Above 2 M voxels it had read every 2nd voxel from index 0: a copy stored flipped along S read other planes, its
    centre a slice apart (64.0 against 65.0: a review); every voxel is read now, slab by slab."""
    n = (131, 131, 132)
    t = np.zeros(n + (6,), np.float32)
    region = np.zeros(n, bool)
    region[10:121, 10:121, 10:121] = True
    t[30:90, 40:100, 50:80, 0] = 1.2e-3
    t[30:90, 40:100, 50:80, 2] = t[30:90, 40:100, 50:80, 5] = 0.5e-3
    here = figures.white_matter_centre(t, region, exact=True)
    flipped = figures.white_matter_centre(t[:, :, ::-1], region[:, :, ::-1], exact=True)
    assert here == (59.5, 69.5, 64.5) and flipped[2] == n[2] - 1 - here[2], (here, flipped)
    rng = np.random.default_rng(0)
    for share in (0.01, 0.3, 0.9):  # the medians from counts per plane are np.median's of the coordinates
        m = rng.random((7, 5, 9)) < share
        assert np.allclose(figures._axis_medians(m), np.median(np.argwhere(m), axis=0))


def test_a_finished_subject_skipped_where_its_leftovers_cannot_be_removed_is_still_skipped(tmp_path, monkeypatch):
    """Removing superseded set-aside copies beside a skipped subject in a folder that cannot be written had failed the
    subject ('cannot write into ...': a review); they are left, the subject skipped."""
    from pathlib import Path

    ds = helpers.make_bids(tmp_path / "bids", ("01",))
    out = tmp_path / "deriv"
    s = batch.Settings(method="cubic")
    assert [r["status"] for r in batch.run_cohort(batch.find_items(ds), s, out, progress=False)] == ["done"]
    (picture,) = list((out / "sub-01" / "figures").iterdir())
    left = picture.with_name(f".iqt-earlier-{picture.name}.ab12cd34.tmp")
    left.write_bytes(b"x")
    unlink = Path.unlink

    def read_only(self, missing_ok=False):
        if self.name.startswith(".iqt-earlier-"):
            raise PermissionError(13, "Permission denied", str(self))
        return unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only)
    res = batch.run_cohort(batch.find_items(ds), s, out, progress=False)
    assert [(r["status"], r["reason"]) for r in res] == [("skipped", "")] and left.exists()
