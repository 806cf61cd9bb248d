"""Tractography, tract comparison, uncertainty propagation and the lesion check: small synthetic volumes."""

from __future__ import annotations

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.analysis import lesion, propagation, tractography as tr
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.fileio import tracts
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.methods import Prediction
from ImageQualityTransferLib.core.volume import Volume

from helpers import BUNDLE, bundle_volume


def seed_roi(vol, axis=0):
    m = np.zeros(vol.shape3, bool)
    sel = [slice(7, 9)] * 3
    sel[axis] = slice(vol.shape3[axis] // 2, vol.shape3[axis] // 2 + 1)
    m[tuple(sel)] = True
    return Volume(m, vol.affine, "mask")


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_straight_bundle_is_recovered_along_its_axis(axis):
    shape = [16, 16, 16]
    shape[axis] = 40
    vol = bundle_volume(axis=axis, shape=tuple(shape))
    lines = tr.track(vol, seed_roi(vol, axis), tr.TrackingSettings(density=2))
    assert len(lines) == 4 * 8
    vox = tr.density_map(lines, vol.affine, vol.shape3) > 0
    idx = np.argwhere(vox)
    # every streamline runs the whole bundle (FA stop at its ends) and stays inside it
    assert idx[:, axis].min() == 0 and idx[:, axis].max() == shape[axis] - 1
    for other in {0, 1, 2} - {axis}:
        assert 6 <= idx[:, other].min() and idx[:, other].max() <= 9
    lengths = [np.linalg.norm(np.diff(sl, axis=0), axis=1).sum() for sl in lines]
    assert min(lengths) > 0.9 * (shape[axis] - 1) * 2.0


def test_oblique_affine_streamlines_follow_world_direction():
    """Tensors in voxel axes + a rotated affine: the streamlines run along the rotated voxel axis in world mm."""
    c, s = np.cos(0.5), np.sin(0.5)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot * 2.0
    aff[:3, 3] = [5, -7, 3]
    vol = bundle_volume(aff)
    lines = tr.track(vol, seed_roi(vol), tr.TrackingSettings())
    assert lines
    for sl in lines:
        d = sl[-1] - sl[0]
        cos = abs(d @ rot[:, 0]) / np.linalg.norm(d)
        assert cos > 0.999


def test_fa_threshold_stops_and_settings_are_checked():
    vol = bundle_volume()
    assert tr.track(vol, seed_roi(vol), tr.TrackingSettings(fa_threshold=0.95)) == []
    with pytest.raises(Exception, match="angle"):
        tr.TrackingSettings(angle=0).check()


def _track_with(tmp_path, capsys, option, value):
    """`iqt track` of the test bundle from its seed ROI with one option set: (exit status, stderr)."""
    vol = bundle_volume()
    fileio.save_tensor(vol, tmp_path / "dti.nii.gz")
    fileio.save_mask(seed_roi(vol), tmp_path / "roi.nii.gz")
    rc = main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "roi.nii.gz"), "-o", str(tmp_path / "t.trk"),
               option, value])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--max-length", "inf"), ("--min-length", "nan"), ("--step", "inf"),
                                           ("--max-length", "nan"), ("--min-length", "-1"), ("--max-length", "5")])
def test_cli_track_refuses_lengths_that_are_not_finite_or_in_range(tmp_path, capsys, option, value):
    """--max-length inf ended in an internal OverflowError; --min-length nan was taken, giving 0 streamlines, exit 0."""
    rc, err = _track_with(tmp_path, capsys, option, value)
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"iqt: error: {option} ") and value in err, err
    assert not (tmp_path / "t.trk").exists()


@pytest.mark.parametrize("option, value", [("--density", "1000"), ("--step", "1e-9"), ("--max-length", "1e9")])
def test_cli_track_refuses_settings_whose_streamlines_cannot_fit_in_memory(tmp_path, capsys, option, value):
    """--density 1000, --step 1e-9 and --max-length 1e9 ended out of memory (exit 1, or killed); refused up front."""
    rc, err = _track_with(tmp_path, capsys, option, value)
    assert rc == 2 and err.count("\n") == 1 and "more than this process's" in err and f"{option} {float(value):g}" in err, err
    assert not (tmp_path / "t.trk").exists()
    with pytest.raises(Exception, match="more than this process's"):
        vol = bundle_volume()
        tr.track(vol, seed_roi(vol), tr.TrackingSettings(step=1e-9))


def test_cli_track_max_length_drops_longer_streamlines_as_its_help_says(tmp_path, capsys):
    """The help said "longest streamline, mm", but longer streamlines are dropped, not cut to it: it says so."""
    vol = bundle_volume()  # the bundle runs 78 mm along x
    fileio.save_tensor(vol, tmp_path / "dti.nii.gz")
    fileio.save_mask(seed_roi(vol), tmp_path / "roi.nii.gz")
    run = ["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "roi.nii.gz"), "-o", str(tmp_path / "t.trk")]
    assert main(run + ["--max-length", "60"]) == 0
    said = capsys.readouterr()  # an empty tractogram says why (a first-contact audit: --fa-threshold 0.99, no word)
    assert "0 streamlines" in said.out and "no streamline was tracked from the" in said.err
    assert "to 60 mm long" in said.err, said.err
    assert main(run + ["--fa-threshold", "0.99"]) == 0 and "below 0.99 (--fa-threshold)" in capsys.readouterr().err
    assert main(run + ["--max-length", "100"]) == 0 and "4 streamlines" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["track", "--help"])
    assert "drop streamlines longer than this" in " ".join(capsys.readouterr().out.split())


def test_principal_vector_matches_eigh():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 3, 3))
    t = tensors.from_matrix(a @ a.transpose(0, 2, 1)) * 1e-3
    v = tensors.principal_vector(t)
    e = tensors.eig(t)[1][..., :, 0]
    assert np.abs(np.abs((v * e).sum(-1)) - 1).max() < 1e-9
    assert np.allclose(tensors.fa(t), tensors.fa_from_evals(tensors.eig(t)[0]), atol=1e-12)


def test_files_round_trip(tmp_path):
    vol = bundle_volume()
    lines = tr.track(vol, seed_roi(vol), tr.TrackingSettings())
    for suffix in (".trk", ".vtk", ".vtp"):
        p = tracts.save_tracts(lines, vol, tmp_path / f"t{suffix}")
        back = tracts.load_tracts(p)
        assert len(back) == len(lines)
        assert np.abs(back[0] - lines[0]).max() < 1e-3


@pytest.mark.parametrize("suffix", [".vtk", ".vtp"])
def test_vtk_files_are_tagged_ras_and_slicer_reads_them_unmirrored(tmp_path, suffix):
    """Slicer >= 4.11 reads an untagged .vtk/.vtp as LPS, mirroring the tracts in x and y: the files carry the tag its
    vtkMRMLModelStorageNode reads (a header with SPACE=RAS; a field-data string array SPACE = RAS), and where slicer-core
    is installed the storage node itself gives the RAS points back unchanged."""
    import vtk

    vol = bundle_volume()
    lines = tr.track(vol, seed_roi(vol), tr.TrackingSettings())
    p = tracts.save_tracts(lines, vol, tmp_path / f"t{suffix}")
    if suffix == ".vtk":
        reader = vtk.vtkPolyDataReader()
        reader.SetFileName(str(p))
        reader.Update()
        assert "SPACE=RAS" in reader.GetHeader()
        assert p.read_bytes().startswith(b"# vtk DataFile Version 4.2")  # as Slicer writes it: readers before VTK 9 too
    else:
        reader = vtk.vtkXMLPolyDataReader()
        reader.SetFileName(str(p))
        reader.Update()
        space = reader.GetOutput().GetFieldData().GetAbstractArray("SPACE")
        assert space is not None and space.GetValue(0) == "RAS"
    slicer = pytest.importorskip("slicer", reason="slicer-core reads the file as Slicer does")
    from vtk.util import numpy_support

    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLModelNode")
    storage = scene.AddNewNodeByClass("vtkMRMLModelStorageNode")
    storage.SetFileName(str(p))
    assert storage.ReadData(node)
    assert storage.GetCoordinateSystem() == slicer.vtkMRMLStorageNode.CoordinateSystemRAS
    points = numpy_support.vtk_to_numpy(node.GetPolyData().GetPoints().GetData())
    assert np.abs(points - np.concatenate(lines)).max() < 1e-4


def test_cli_track_says_when_every_seed_lies_outside_its_mask(tmp_path, capsys):
    """Seeds wholly outside --mask had got the empty tractogram's line blaming the FA threshold (a review)."""
    vol = bundle_volume()
    fileio.save_tensor(vol, tmp_path / "dti.nii.gz")
    fileio.save_mask(seed_roi(vol), tmp_path / "roi.nii.gz")
    elsewhere = np.zeros(vol.shape3, bool)
    elsewhere[:4] = True
    fileio.save_mask(Volume(elsewhere, vol.affine, "mask"), tmp_path / "m.nii.gz")
    assert main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "roi.nii.gz"), "--mask",
                 str(tmp_path / "m.nii.gz"), "-o", str(tmp_path / "t.trk")]) == 0
    err = capsys.readouterr().err
    assert "every one lies outside --mask" in err and "--fa-threshold" not in err, err


def test_cli_track(tmp_path, capsys):
    vol = bundle_volume()
    fileio.save_tensor(vol, tmp_path / "dti.nii.gz")
    fileio.save_mask(seed_roi(vol), tmp_path / "roi.nii.gz")
    rc = main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "roi.nii.gz"), "-o", str(tmp_path / "t.trk"),
               "--also", str(tmp_path / "t.vtk"), "--step", "1", "--angle", "30"])
    assert rc == 0 and "4 streamlines" in capsys.readouterr().out
    assert len(tracts.load_tracts(tmp_path / "t.vtk")) == 4
    assert main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "roi.nii.gz"), "-o", str(tmp_path / "t.txt")]) == 2


def test_seeds_outside_the_volume_are_left_out_or_refused(tmp_path, capsys):
    """A seed ROI partly beyond the tensor's field of view tracks from the seeds inside, saying how many were left out;
    one wholly outside is one line and exit 2 (dipy stopped with "point outside data", an internal error),
    for `iqt track` and for propagation's tracking."""
    vol = bundle_volume()  # 40x16x16 voxels of 2 mm
    fileio.save_tensor(vol, tmp_path / "dti.nii.gz")
    part = np.zeros(vol.shape3, bool)
    part[20, 7:9, 14:16] = True  # with the grid moved one voxel up: z 15 inside, z 16 beyond the last plane
    fileio.save_mask(Volume(part, _shifted(vol.affine, 2.0), "mask"), tmp_path / "part.nii.gz")
    fileio.save_mask(Volume(seed_roi(vol).data, _shifted(vol.affine, 1000.0), "mask"), tmp_path / "far.nii.gz")
    rc = main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "part.nii.gz"), "-o", str(tmp_path / "p.trk")])
    said = capsys.readouterr()
    assert rc == 0 and "2 of 4 seed points lie outside the tensor volume's field of view" in said.err, said
    assert "from 2 seeds" in said.out, said  # the seeds tracked from, not those of the ROI (said 4)
    rc = main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "far.nii.gz"), "-o", str(tmp_path / "f.trk")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "none of the 4 seed points lies in the tensor volume" in err, err
    assert not (tmp_path / "f.trk").exists()
    fileio.save_mask(Volume(np.zeros(vol.shape3, np.uint8), vol.affine, "mask"), tmp_path / "empty.nii.gz")
    rc = main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "empty.nii.gz"), "-o", str(tmp_path / "e.trk")])
    err = capsys.readouterr().err
    assert rc == 2 and "the seed ROI is empty" in err and "brain mask" not in err, err  # not a brain mask's advice
    far = tr.seeds_from_mask(Volume(seed_roi(vol).data, _shifted(vol.affine, 1000.0), "mask"))
    zero = Prediction(vol, std=Volume(np.zeros(vol.shape3, np.float32), vol.affine, "scalar"))
    with pytest.raises(Exception, match="none of the 4 seed points"):
        propagation.propagate(zero, 2, seeds=far)


def _shifted(affine, mm):
    """The affine moved `mm` along z."""
    out = np.array(affine, float)
    out[2, 3] += mm
    return out


def test_dice_and_false_positives():
    a = np.zeros((5, 5, 5))
    a[1:3] = 2
    assert tr.dice(a, a) == 1.0
    assert tr.false_positive_fraction(a, a) == 0.0
    b = np.zeros_like(a)
    b[2:4] = 1
    assert tr.dice(a, b) == pytest.approx(0.5)
    assert tr.false_positive_fraction(b, a) == pytest.approx(0.5)


def test_propagation_zero_std_reproduces_the_mean_and_noise_spreads_tracts():
    vol = bundle_volume()
    seeds = tr.seeds_from_mask(seed_roi(vol))
    zero = Prediction(vol, std=Volume(np.zeros(vol.shape3, np.float32), vol.affine, "scalar"))
    res = propagation.propagate(zero, 3, seeds=seeds)
    assert np.allclose(res.fa_std.data, 0, atol=1e-6)
    assert np.allclose(res.fa_mean.data, tensors.fa(vol.data), atol=1e-5)
    assert res.dice_between_samples == [1.0, 1.0] and set(res.visitation.data.ravel()) <= {0.0, 1.0}
    noisy = Prediction(vol, std=Volume(np.full(vol.shape3, 2e-4, np.float32), vol.affine, "scalar"))
    res = propagation.propagate(noisy, 4, seeds=seeds)
    assert res.fa_std.data.mean() > 0.01
    assert 0 < np.mean(res.dice_between_samples) < 1
    assert 0 < res.visitation.data.max() <= 1
    inside = np.zeros(vol.shape3, bool)
    inside[10:30, 6:10, 6:10] = True  # the bundle's middle: streamlines end a step beyond the mask
    res = propagation.propagate(noisy, 4, seeds=seeds, mask=inside)
    assert res.visitation.data.max() > 0 and np.all(res.visitation.data[~inside] == 0)


def test_propagation_visitation_stays_inside_the_prediction_a_high_res_mask_cut():
    """A high-res --mask zeroes the prediction outside it, but propagation got the low-res mask's blocks, a larger
    region, and its visitation map was non-zero outside the high-res mask (14 voxels in the audit)."""
    vol = bundle_volume()
    inside = np.zeros(vol.shape3, bool)
    inside[10:30, 6:10, 6:10] = True
    cut = Prediction(vol.replace(data=np.where(inside[..., None], vol.data, 0).astype(vol.data.dtype)),
                     std=Volume(np.where(inside, 2e-4, 0).astype(np.float32), vol.affine, "scalar"))
    blocks = np.zeros(vol.shape3, bool)
    blocks[8:32, 4:12, 4:12] = True  # as repeat_blocks of the reduced low-res mask covers it
    res = propagation.propagate(cut, 3, seeds=tr.seeds_from_mask(seed_roi(vol)), mask=blocks)
    assert res.visitation.data.max() > 0 and np.all(res.visitation.data[~inside] == 0)
    assert np.all(res.fa_mean.data[~inside] == 0)


def test_propagation_without_streamlines_reports_no_tract_dice(tmp_path):
    """No streamline in any sample gave a tract Dice of 1.000 +- 0.000 (two empty maps "agree"): it is null, said in a
    warning, and the line says it is undefined."""
    from ImageQualityTransferLib.core.errors import IQTWarning

    vol = bundle_volume()
    zero = Prediction(vol, std=Volume(np.zeros(vol.shape3, np.float32), vol.affine, "scalar"))
    with pytest.warns(IQTWarning, match="no streamline was tracked in any of the 2 samples"):
        res = propagation.propagate(zero, 2, seeds=tr.seeds_from_mask(seed_roi(vol)),
                                    settings=tr.TrackingSettings(fa_threshold=0.95))
    summary = res.summary()
    assert summary["tract_dice_between_samples"] is None and summary["tract_dice_to_mean_prediction"] is None
    line = propagation.write(res, propagation.output_paths(tmp_path), "biqt", "lr.nii.gz")
    assert "tract Dice undefined" in line and "visitation" in line and "1.000" not in line
    with pytest.warns(IQTWarning, match="in any of the 2 samples from the 1 seed, so"):  # not 'the 1 seeds'
        propagation.propagate(zero, 2, seeds=tr.seeds_from_mask(seed_roi(vol))[:1],
                              settings=tr.TrackingSettings(fa_threshold=0.95))


def test_auc():
    assert lesion.auc([3, 4, 5], [0, 1, 2]) == 1.0
    assert lesion.auc([0, 1], [2, 3]) == 0.0
    assert lesion.auc([1, 1], [1, 1]) == 0.5


def test_lesion_modification_changes_md_and_fa_as_intended():
    t = np.asarray(BUNDLE, np.float64)[None]
    edema = lesion.modify_tensor(t, "edema")
    assert tensors.md(edema)[0] == pytest.approx(tensors.md(t)[0] + 1e-3)
    assert tensors.fa(edema)[0] < tensors.fa(t)[0]
    tumour = lesion.modify_tensor(t, "tumour")
    assert tensors.md(tumour)[0] == pytest.approx(tensors.md(t)[0])
    assert tensors.fa(tumour)[0] < 0.5 * tensors.fa(t)[0]


def test_the_lesion_site_does_not_depend_on_the_voxel_order(builtin_phantom_subject):
    """Of the voxels scoring alike the first in stored order had won: the phantom stored LAS, SLA or PSR had its 4 mm
    lesion in three places (the sagittal HF dev scan stored LAS 28 mm from where it lies stored PSR; a thick-slice audit's
    check of the engine's draws). The site is chosen in canonical order, and put back on the stored grid."""
    from ImageQualityTransferLib.core.orientation import reorient
    from ImageQualityTransferLib.dmri.subject import Subject

    subject = builtin_phantom_subject
    sites = {}
    for codes in ("LAS", "RAS", "SLA", "PSR"):
        stored = Subject(subject.name, subject.dwi, reorient(subject.mask, codes), reorient(subject.tensor, codes))
        site = lesion.choose_site(stored, 4.0)
        assert site.lesion.shape == stored.mask.shape3 and site.lesion.any() and site.control.any()
        back = [reorient(Volume(m, stored.tensor.affine, "mask"), "LAS").data for m in (site.lesion, site.control)]
        sites[codes] = (site.centre_mm, *back)
    for codes in ("RAS", "SLA", "PSR"):
        assert np.allclose(sites[codes][0], sites["LAS"][0], atol=1e-6), (codes, sites[codes][0], sites["LAS"][0])
        assert all(np.array_equal(a, b) for a, b in zip(sites[codes][1:], sites["LAS"][1:])), codes


def test_inject_changes_the_signal_through_the_tensor_model():
    from ImageQualityTransferLib.dmri.dti import fit_dti
    from ImageQualityTransferLib.dmri.fit_noise import design_matrix
    from ImageQualityTransferLib.dmri.subject import Subject

    rng = np.random.default_rng(0)
    g = rng.normal(size=(20, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    bvals = np.r_[0.0, np.full(20, 1000.0)]
    bvecs = np.r_[np.zeros((1, 3)), g]
    vol = bundle_volume(shape=(12, 16, 16))
    X = design_matrix(bvals, bvecs)[:, :6]
    dwi = Volume((1000.0 * np.exp(vol.data.astype(np.float64) @ X.T)).astype(np.float32), vol.affine, "dwi", bvals=bvals, bvecs=bvecs)
    mask = Volume(np.ones(vol.shape3, bool), vol.affine, "mask")
    subject = Subject("s", dwi, mask, fit_dti(dwi, mask))
    ball = np.zeros(vol.shape3, bool)
    ball[4:8, 6:10, 6:10] = True
    site = lesion.LesionSite(ball, np.zeros_like(ball), np.zeros(3))
    sick = lesion.inject(subject, site, "edema")
    want = lesion.modify_tensor(subject.tensor.data[ball], "edema")
    assert np.allclose(sick.tensor.data[ball], want, atol=2e-6)
    assert np.allclose(sick.tensor.data[~ball], subject.tensor.data[~ball], atol=1e-9)


def test_cli_propagate_writes_maps_and_summary(tmp_path, capsys):
    import json

    lr = bundle_volume(shape=(14, 10, 10))
    fileio.save_tensor(lr, tmp_path / "lr.nii.gz")
    out = tmp_path / "prop"
    rc = main(["propagate", str(tmp_path / "lr.nii.gz"), "--method", "biqt", "--samples", "3", "--n-seeds", "50", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "propagation.json").read_text())
    assert summary["n_samples"] == 3 and "diagonal" in summary["approximation"]
    fa_std = fileio.load_scalar(out / "fa_std.nii.gz")
    assert fa_std.shape3 == (28, 20, 20) and fa_std.data.max() > 0
    assert main(["propagate", str(tmp_path / "lr.nii.gz"), "--method", "cubic", "-o", str(out)]) == 2
    assert "gives no uncertainty" in capsys.readouterr().err


def test_cli_propagate_rerun_without_tracts_removes_the_earlier_visitation(tmp_path, capsys):
    """A rerun with --no-tracts left the first run's visitation.nii.gz beside the new maps and propagation.json."""
    lr = bundle_volume(shape=(14, 10, 10))
    fileio.save_tensor(lr, tmp_path / "lr.nii.gz")
    out = tmp_path / "prop"
    run = ["propagate", str(tmp_path / "lr.nii.gz"), "--method", "biqt", "--samples", "2", "--n-seeds", "20", "-o", str(out)]
    assert main(run) == 0 and (out / "visitation.nii.gz").exists()
    capsys.readouterr()
    assert main([a for a in run if a not in ("--n-seeds", "20")] + ["--no-tracts"]) == 0  # (--n-seeds: refused there)
    assert "removed visitation.nii.gz: an earlier run" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["fa_mean.nii.gz", "fa_std.nii.gz", "md_mean.nii.gz", "md_std.nii.gz",
                                                     "propagation.json"]


def test_cli_propagate_refuses_a_bad_fa_threshold_before_the_prediction(tmp_path, capsys, monkeypatch):
    """--fa-threshold 1.5 was refused only after the prediction had run (12 s on a 3 mm subject)."""
    from ImageQualityTransferLib.apps.cli import options

    def no_prediction(*a, **k):
        raise AssertionError("the prediction ran")

    monkeypatch.setattr(options, "predict_with_mask", no_prediction)
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), tmp_path / "lr.nii.gz")
    rc = main(["propagate", str(tmp_path / "lr.nii.gz"), "--method", "biqt", "--samples", "2", "--fa-threshold", "1.5",
               "-o", str(tmp_path / "prop")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--fa-threshold 1.5" in err, err
    assert not (tmp_path / "prop").exists()


@pytest.mark.parametrize("extra", [["--step", "300"], ["--step", "250"], ["--step", "300", "--min-length", "0"],
                                   ["--step", "20", "--max-length", "20", "--min-length", "0"]])
def test_a_step_at_or_above_the_longest_streamline_is_refused_before_any_work(tmp_path, capsys, monkeypatch, extra):
    """Under two points a streamline: dipy's "maxlen must be greater than or equal to minlen" had been an internal
    error, under --propagate only after the network had run."""
    from ImageQualityTransferLib.apps.cli import options

    def no_prediction(*a, **k):
        raise AssertionError("the prediction ran")

    monkeypatch.setattr(options, "predict_with_mask", no_prediction)
    vol = bundle_volume()
    fileio.save_tensor(vol, tmp_path / "dti.nii.gz")
    fileio.save_mask(seed_roi(vol), tmp_path / "roi.nii.gz")
    lr = str(tmp_path / "dti.nii.gz")
    for argv in (["track", lr, "--seeds", str(tmp_path / "roi.nii.gz"), "-o", str(tmp_path / "t.trk")],
                 ["propagate", lr, "--method", "biqt", "--samples", "2", "-o", str(tmp_path / "prop")],
                 ["upsample", lr, "--method", "biqt", "--propagate", "--samples", "2", "-o", str(tmp_path / "u.nii.gz")]):
        rc = main(argv + extra)
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and f"--step {extra[1]}: at or above" in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dti.nii.gz", "roi.nii.gz"]
    tr.TrackingSettings(step=200.0).check()  # two points within 250 mm: taken


def test_cli_propagate_records_its_settings_and_times_the_whole_run(tmp_path, capsys):
    """propagation.json held neither --seed, the seed ROI, the factor, --fa-threshold nor --n-seeds, and its time (the
    printed one too) left the prediction out: the settings are recorded, the time of the whole run and of the sampling."""
    import json

    lr = bundle_volume(shape=(14, 10, 10))
    fileio.save_tensor(lr, tmp_path / "lr.nii.gz")
    roi = np.zeros(lr.shape3, bool)
    roi[7, 4:6, 4:6] = True
    fileio.save_mask(Volume(roi, lr.affine, "mask"), tmp_path / "roi.nii.gz")
    out = tmp_path / "prop"
    rc = main(["propagate", str(tmp_path / "lr.nii.gz"), "--method", "biqt", "--samples", "2", "--seed", "7", "--factor",
               "1,1,2", "--fa-threshold", "0.25", "--seeds", str(tmp_path / "roi.nii.gz"), "-o", str(out)])
    said = capsys.readouterr().out
    assert rc == 0 and " s in all, " in said and " s of it sampling" in said, said
    summary = json.loads((out / "propagation.json").read_text())
    got = summary["settings"]
    assert got["seed"] == 7 and got["factor"] == [1, 1, 2] and got["fa_threshold"] == 0.25
    assert got["seeds"] == str(tmp_path / "roi.nii.gz") and got["tracking"]["fa_threshold"] == 0.25
    assert summary["seconds"] >= summary["sampling_seconds"] > 0
    rc = main(["propagate", str(tmp_path / "lr.nii.gz"), "--method", "biqt", "--samples", "2", "--n-seeds", "30",
               "-o", str(out)])
    assert rc == 0 and json.loads((out / "propagation.json").read_text())["settings"]["n_seeds"] == 30


def test_cli_lesion_check_rejects_bad_arguments(tmp_path, capsys):
    assert main(["lesion-check", str(tmp_path), "--kinds", "stroke"]) == 2
    assert "lesion kinds" in capsys.readouterr().err
    assert main(["lesion-check", str(tmp_path), "--methods", "cubic"]) == 2


def test_cli_lesion_check_refuses_a_subject_given_twice(tmp_path, capsys):
    """`lesion-check DIR DIR/` scored the same subject twice (its rows twice, the mean AUC over '2 subjects'); it is
    refused before any work, as iqt benchmark refuses it, and so are two folders of one name."""
    (tmp_path / "subj").mkdir()
    (tmp_path / "other" / "subj").mkdir(parents=True)
    for second in (tmp_path / "subj", f"{tmp_path / 'subj'}/", tmp_path / "other" / "subj"):
        rc = main(["lesion-check", str(tmp_path / "subj"), str(second), "--methods", "biqt", "--kinds", "edema"])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and ("given twice" in err or "has the name of" in err), err


def test_tracking_leaves_the_process_warning_filters_alone(monkeypatch):
    """track_fields silenced dipy's EuDX deprecation by warnings.catch_warnings + simplefilter('ignore'),
    which replaces the process's filters while it runs: warnings other threads gave meanwhile were lost."""
    import warnings

    from dipy.tracking import local_tracking

    seen, real = [], local_tracking.LocalTracking

    def spy(*args, **kwargs):
        seen.append(list(warnings.filters))
        return real(*args, **kwargs)

    monkeypatch.setattr(local_tracking, "LocalTracking", spy)
    vol = bundle_volume(axis=0, shape=(20, 16, 16))
    before = list(warnings.filters)
    assert tr.track(vol, seed_roi(vol, 0), tr.TrackingSettings(density=1))
    assert seen == [before]


def test_one_image_stored_in_any_voxel_order_gives_the_same_tracts(builtin_phantom_subject):
    """The same world image stored LAS, RAS, PSR or ASL: tracts from the same world seeds agree (EuDX's sphere snapping
    in voxel axes had moved streamlines up to 14 mm on a dev scan stored otherwise; a tractography audit)."""
    from ImageQualityTransferLib.core.orientation import reorient
    from ImageQualityTransferLib.dmri.subject import make_case

    case = make_case(builtin_phantom_subject, 2)
    vol = Volume(case.truth, case.hr_affine, "tensor")
    seeds = tr.random_seeds(case.hr_mask & (tensors.fa(case.truth) > 0.3), vol.affine, 300, 0)
    settings = tr.TrackingSettings(step=0.5, min_length=2.0)
    runs = {codes: tr.track(reorient(vol, codes), seeds, settings) for codes in ("LAS", "RAS", "PSR", "ASL")}
    first = runs.pop("LAS")
    assert len(first) > 100
    for codes, lines in runs.items():
        assert len(lines) == len(first), codes
        worst = max(float(np.abs(a - b).max()) for a, b in zip(first, lines) if len(a) == len(b))
        assert all(len(a) == len(b) for a, b in zip(first, lines)) and worst < 1e-3, (codes, worst)


def test_an_upsampled_result_is_tracked_within_its_low_res_mask(tmp_path, capsys):
    """`iqt track HR --mask LR_MASK`: the mask of the low-res input an upsampled result was made from is taken, its
    blocks repeated (upsample writes no high-res mask; it had been refused); one on an unrelated grid is still one
    line, exit 2."""
    from ImageQualityTransferLib.core import grid

    vol = bundle_volume(shape=(40, 16, 16))
    lr_aff = grid.lr_affine(vol.affine, 2)
    lr_mask = np.zeros((20, 8, 8), np.uint8)
    lr_mask[:12] = 1  # the bundle's first 24 high-res planes, the seeds' (plane 20) among them
    fileio.save_tensor(vol, tmp_path / "hr.nii.gz")
    fileio.save_mask(Volume(lr_mask, lr_aff, "mask"), tmp_path / "lrmask.nii.gz")
    fileio.save_mask(seed_roi(vol, 0), tmp_path / "seeds.nii.gz")
    args = ["track", str(tmp_path / "hr.nii.gz"), "--seeds", str(tmp_path / "seeds.nii.gz"), "--min-length", "1"]
    reach = {}
    for name, extra in (("masked", ["--mask", str(tmp_path / "lrmask.nii.gz")]), ("whole", [])):
        assert main(args + ["-o", str(tmp_path / f"{name}.trk"), *extra]) == 0
        lines = [sl[:-1] for sl in tracts.load_tracts(tmp_path / f"{name}.trk")]  # the last point is where it stopped
        reach[name] = np.argwhere(tr.density_map(lines, vol.affine, vol.shape3) > 0)[:, 0]
    assert reach["masked"].min() == 0 and reach["masked"].max() == 23, reach["masked"].max()
    assert reach["whole"].max() == 39
    fileio.save_mask(Volume(lr_mask[:, :7], lr_aff, "mask"), tmp_path / "other.nii.gz")
    capsys.readouterr()
    assert main(args + ["-o", str(tmp_path / "u.trk"), "--mask", str(tmp_path / "other.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "or on the low-res grid it was upsampled from" in err and not (tmp_path / "u.trk").exists()


def test_seeds_whose_header_places_them_nowhere_are_refused(tmp_path, capsys):
    """A seed ROI with qform and sform codes 0 had been read on nibabel's default grid, its seeds far from where they
    were drawn, under a warning about left and right; now one line, exit 2, unless it is the tensors' own grid. A
    tracking mask that leaves seeds outside says how many in the 'wrote' line."""
    import nibabel as nib

    vol = bundle_volume(shape=(40, 16, 16), affine=np.array([[-2.0, 0, 0, 40], [0, 2, 0, -10], [0, 0, 2, 5], [0, 0, 0, 1]]))
    fileio.save_tensor(vol, tmp_path / "dti.nii.gz")
    roi = seed_roi(vol, 0)
    img = nib.Nifti1Image(roi.data.astype(np.uint8), roi.affine)
    img.set_qform(None, code=0)
    img.set_sform(None, code=0)
    nib.save(img, tmp_path / "nowhere.nii.gz")
    capsys.readouterr()
    assert main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "nowhere.nii.gz"), "-o",
                 str(tmp_path / "t.trk")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "warning" not in ln]
    assert len(err) == 1 and "holds no orientation" in err[0] and "fslcpgeom" in err[0], err
    assert not (tmp_path / "t.trk").exists()
    fileio.save_mask(roi, tmp_path / "seeds.nii.gz")
    half = np.zeros(vol.shape3, np.uint8)
    half[:, :8] = 1  # the seed ROI's rows 7 and 8: one in, one out
    fileio.save_mask(Volume(half, vol.affine, "mask"), tmp_path / "half.nii.gz")
    assert main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "seeds.nii.gz"), "--mask",
                 str(tmp_path / "half.nii.gz"), "-o", str(tmp_path / "t.trk")]) == 0
    assert "from 4 seeds (2 of them outside the tracking mask, where no streamline starts)" in capsys.readouterr().out
    assert main(["track", str(tmp_path / "dti.nii.gz"), "--seeds", str(tmp_path / "seeds.nii.gz"), "--step", "5", "-o",
                 str(tmp_path / "t.trk")]) == 0  # a step longer than the 2 mm voxels: warned of
    assert "--step 5 mm is longer than the voxels (2 mm)" in capsys.readouterr().err


def test_propagation_says_seeds_outside_its_mask_and_a_long_step_as_track_does():
    """Seeds all outside the tracked region: counted as tracked (24,800 of them), and the run told to seek white matter;
    a --step longer than the voxels: said by `iqt track` only (a tractography audit)."""
    import warnings

    from ImageQualityTransferLib.core.errors import IQTWarning

    vol = bundle_volume()
    pred = Prediction(vol, std=Volume(np.full(vol.shape3, 1e-5, np.float32), vol.affine, "scalar"))
    roi = seed_roi(vol)
    elsewhere = np.ones(vol.shape3, bool)
    elsewhere[np.asarray(roi.data, bool)] = False  # tracked everywhere but where the seeds are
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", IQTWarning)
        res = propagation.propagate(pred, 2, seeds=tr.seeds_from_mask(roi), track_mask=elsewhere)
    lines = [str(w.message) for w in said if "no streamline was tracked" in str(w.message)]
    assert len(lines) == 1 and "every one lies outside --mask" in lines[0], lines
    n = res.settings["seeds_outside_tracked_region"]
    assert n > 0 and res.settings["seeds_tracked"] == 0
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", IQTWarning)
        propagation.propagate(pred, 2, seeds=tr.seeds_from_mask(roi), settings=tr.TrackingSettings(step=5.0))
    assert [w for w in said if "longer than the voxels" in str(w.message)]


def test_a_low_res_mask_stored_in_another_voxel_order_serves_the_tracking(tmp_path):
    """`iqt track --mask` refused the low-res mask the output was upsampled from when it was stored in another voxel
    order ("not on the low-res grid", which it was), though `iqt upsample` takes it (a tractography audit)."""
    import nibabel.orientations as nio

    from ImageQualityTransferLib.core import grid
    from ImageQualityTransferLib.core.orientation import Reorientation

    lr_affine = np.diag([-3.0, 3.0, 3.0, 1.0])
    lr_affine[:3, 3] = (40.0, -50.0, -30.0)
    blob = np.zeros((10, 12, 8), bool)
    blob[2:8, 3:9, 2:6] = True
    blob[2, 3, 2] = False  # not symmetric: a wrong turn would show
    hr = Volume(np.zeros((20, 24, 16, 6), np.float32), grid.hr_affine(lr_affine, 2), "tensor")
    las = Volume(blob, lr_affine, "mask")
    psr = Reorientation.to_canonical(lr_affine).then(Reorientation(nio.ornt_transform(nio.axcodes2ornt("RAS"),
                                                                                      nio.axcodes2ornt("PSR")))).apply(las)
    fileio.save_mask(las, tmp_path / "las.nii.gz")
    fileio.save_mask(psr, tmp_path / "psr.nii.gz")
    want = fileio.load_mask_refined(tmp_path / "las.nii.gz", hr, "the tensor grid").data
    assert np.array_equal(fileio.load_mask_refined(tmp_path / "psr.nii.gz", hr, "the tensor grid").data, want)
    assert np.array_equal(want, grid.repeat_blocks(blob, 2))


def test_a_nifti_and_a_nrrd_of_one_output_give_the_same_streamlines_from_a_low_res_roi(tmp_path):
    """At factor 2 a low-res ROI's seed points fall on high-res voxel corners, where the start voxel was left to the
    header's float rounding: the NIfTI (float32 affine) and the NRRD (double) of one output gave 2911 and 2977
    streamlines on a dev scan (a tractography audit); and a streamline of exactly --min-length was kept in one only."""
    from ImageQualityTransferLib.core import grid

    rng = np.random.default_rng(3)  # a direction of its own in every voxel: the start voxel decides the streamline
    shape = (24, 24, 20)
    v = rng.normal(size=shape + (3,))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    d = 0.3e-3 * np.eye(3) + 1.4e-3 * v[..., :, None] * v[..., None, :]
    hr = Volume(tensors.from_matrix(d).astype(np.float32), np.eye(4), "tensor")
    lr_affine = np.array([[-2.7072, 0.0, 0.0, 63.45], [0.0, 2.7072, 0.0, -135.7], [0.0, 0.0, 2.7001, -34.2],
                          [0.0, 0.0, 0.0, 1.0]])  # not a float32's: the NIfTI's affine differs from the NRRD's
    vol = Volume(hr.data, grid.hr_affine(lr_affine, 2), "tensor")
    roi = np.zeros(tuple(n // 2 for n in vol.shape3), bool)
    roi[tuple(slice(n // 4, n // 4 + 3) for n in roi.shape)] = True
    fileio.save_mask(Volume(roi, lr_affine, "mask"), tmp_path / "roi.nii.gz")
    import nibabel as nib

    for suffix in ("nii.gz", "nrrd"):
        fileio.save_tensor(vol, tmp_path / f"hr.{suffix}")
        assert main(["track", str(tmp_path / f"hr.{suffix}"), "--seeds", str(tmp_path / "roi.nii.gz"), "-o",
                     str(tmp_path / f"{suffix}.trk"), "--min-length", "2"]) == 0

    a, b = (list(nib.streamlines.load(str(tmp_path / f"{s}.trk")).streamlines) for s in ("nii.gz", "nrrd"))
    assert len(a) == len(b) > 0
    assert all(len(x) == len(y) and np.allclose(x, y, atol=1e-3) for x, y in zip(sorted(a, key=lambda x: tuple(x[0])),
                                                                                    sorted(b, key=lambda x: tuple(x[0]))))


def test_a_seed_on_the_volume_s_last_face_stays_inside_and_counts_agree_in_any_voxel_order():
    """The move off voxel boundaries had put a seed on the last face outside the volume (dipy's "point outside data",
    an internal error), and the seeds counted outside a mask were counted before the move, otherwise in LAS than in RAS
    storage (a review)."""
    from ImageQualityTransferLib.core.orientation import Reorientation

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    shape = (7, 8, 8)
    last = np.array([[2.0 * 6.5, 4.0, 4.0]])  # on the face beyond the last voxel along x (voxel 6.5)
    inside = tr.seeds_inside(last, shape, affine)
    v = (inside - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    assert len(inside) == 1 and v[0, 0] < 6.5, v
    mask = np.zeros(shape, bool)
    mask[:3] = True
    seed = np.array([[2.0 * 2.5, 4.0, 4.0]])  # between voxels 2 (in the mask) and 3 (out)
    las = Reorientation(np.array([[0, -1], [1, 1], [2, 1]], float))
    counts = []
    for re in (None, las):
        vol = Volume(mask, affine, "mask") if re is None else re.apply(Volume(mask, affine, "mask"))
        counts.append(tr.points_outside(tr.seeds_inside(seed, vol.shape3, vol.affine), vol))
    assert counts[0] == counts[1], counts
