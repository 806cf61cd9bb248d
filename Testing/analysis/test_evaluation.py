"""Evaluation: regions, DT-RMSE and friends, uncertainty calibration, and the reference noise floor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ImageQualityTransferLib.analysis import evaluation
from ImageQualityTransferLib.core import tensors
from ImageQualityTransferLib.core.errors import IQTError, IQTWarning
from ImageQualityTransferLib.dmri import fit_noise

from helpers import AXIAL, cube_case, need_data

WM = np.array([1.2e-3, 0.1e-3, 0.5e-3, 0.05e-3, -0.08e-3, 0.4e-3])  # a plausible white-matter tensor


def _field(shape, seed=0):
    """Plausible tensors with some variation: WM plus small isotropic/anisotropic perturbations."""
    rng = np.random.default_rng(seed)
    t = np.broadcast_to(WM, shape + (6,)).copy()
    t += rng.normal(scale=0.05e-3, size=t.shape)
    assert tensors.plausible(t).all()
    return t


# ----------------------------------------------------------------------------------------- regions


def test_regions_of_a_cube():
    lr = np.zeros((12, 12, 12), bool)
    lr[1:11, 2:10, 3:12] = True  # touches the grid's border on z: border counts as outside
    r = 2
    hr = lr.repeat(r, 0).repeat(r, 1).repeat(r, 2)
    reg = evaluation.regions(hr, lr, r, radius=2)
    # low-res voxels with the whole 5^3 neighbourhood inside: x 3..8, y 4..7, z 5..9 (z=10,11 near border)
    core = np.zeros_like(lr)
    core[3:9, 4:8, 5:10] = True
    expected = core.repeat(r, 0).repeat(r, 1).repeat(r, 2)
    assert np.array_equal(reg["interior"], expected)
    assert reg["interior"].sum() == 6 * 4 * 5 * r**3
    assert np.array_equal(reg["exterior"], hr & ~expected)
    assert not (reg["interior"] & reg["exterior"]).any()
    # Interior needs the high-res voxel itself in the high-res mask.
    hr2 = hr.copy()
    hr2[8, 10, 12] = False
    assert evaluation.regions(hr2, lr, r)["interior"].sum() == expected.sum() - 1
    # radius 1 grows the interior; a too-small mask has none.
    assert evaluation.regions(hr, lr, r, radius=1)["interior"].sum() == 8 * 6 * 7 * r**3
    small = np.zeros_like(lr)
    small[4:8, 4:8, 4:8] = True
    reg_small = evaluation.regions(small.repeat(3, 0).repeat(3, 1).repeat(3, 2), small, 3)
    assert reg_small["interior"].sum() == 0 and reg_small["exterior"].sum() == 64 * 27


def test_regions_per_axis_take_the_parent_j_over_f_on_each_axis():
    lr = np.zeros((12, 12, 12), bool)
    lr[1:11, 2:10, 3:12] = True
    f = (1, 2, 3)
    hr = lr.repeat(1, 0).repeat(2, 1).repeat(3, 2)
    reg = evaluation.regions(hr, lr, f, radius=2)
    expected_core = np.zeros_like(lr)
    expected_core[3:9, 4:8, 5:10] = True
    j = np.argwhere(np.ones(hr.shape, bool))
    parent = expected_core[j[:, 0] // 1, j[:, 1] // 2, j[:, 2] // 3].reshape(hr.shape)
    assert np.array_equal(reg["interior"], parent)
    assert reg["interior"].sum() == 6 * 4 * 5 * 6
    # an integer factor is the isotropic tuple
    hr2 = lr.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert all(np.array_equal(a, b) for a, b in zip(evaluation.regions(hr2, lr, 2).values(),
                                                    evaluation.regions(hr2, lr, (2, 2, 2)).values()))
    with pytest.raises(IQTError, match="factor-1,2,3 grid"):
        evaluation.regions(hr2, lr, f)


def test_regions_rejects_mismatched_grids():
    with pytest.raises(IQTError, match="factor-2 grid"):
        evaluation.regions(np.ones((9, 8, 8), bool), np.ones((4, 4, 4), bool), 2)


# ----------------------------------------------------------------------------------------- errors


def test_dt_rmse_of_constant_offset():
    truth = _field((6, 5, 4))
    vox = np.ones((6, 5, 4), bool)
    offset = 3e-5
    assert evaluation.dt_rmse(truth + offset, truth, vox) == pytest.approx(3.0, rel=1e-9)
    # Offset on one element only: mean over 6 elements.
    pred = truth.copy()
    pred[..., 2] += 6e-5
    assert evaluation.dt_rmse(pred, truth, vox) == pytest.approx(6.0 / np.sqrt(6), rel=1e-9)
    # An isotropic shift (diagonal only) moves MD by the offset and changes FA.
    iso = truth.copy()
    iso[..., [0, 2, 5]] += 2e-5
    assert evaluation.md_rmse(iso, truth, vox) == pytest.approx(2.0, rel=1e-9)
    assert evaluation.fa_rmse(truth, truth, vox) == 0.0
    assert evaluation.fa_rmse(iso, truth, vox) > 0.0
    # PSNR: 20 log10(peak / rmse)
    peak = np.abs(truth).max()
    assert evaluation.psnr(truth + offset, truth, vox) == pytest.approx(20 * np.log10(peak / offset), rel=1e-9)
    assert evaluation.psnr(truth, truth, vox) == float("inf")


def test_implausible_truth_voxels_are_excluded():
    shape = (8, 8, 8)
    truth = _field(shape)
    pred = truth + 1e-5
    truth[1, 1, 1] = [1.0, 0, 1.0, 0, 0, 1.0]  # a blown-up fit at 1 mm^2/s
    truth[2, 3, 4] = np.nan
    truth[5, 5, 5] = [-3e-3, 0, 1e-3, 0, 0, 1e-3]  # negative eigenvalue below -1e-3
    region = np.ones(shape, bool)
    vox = evaluation.evaluation_voxels(truth, region)
    assert vox.sum() == 512 - 3
    assert not vox[1, 1, 1] and not vox[2, 3, 4] and not vox[5, 5, 5]
    assert evaluation.dt_rmse(pred, truth, vox) == pytest.approx(1.0, rel=1e-6)
    # Outside the region is never counted either.
    region[0] = False
    assert evaluation.evaluation_voxels(truth, region).sum() == 512 - 64 - 3


def test_evaluate_per_region_and_json():
    lr = np.zeros((10, 10, 10), bool)
    lr[1:9, 1:9, 1:9] = True
    r = 2
    hr = lr.repeat(r, 0).repeat(r, 1).repeat(r, 2)
    truth = _field(hr.shape)
    reg = evaluation.regions(hr, lr, r)
    pred = truth.copy()
    pred[reg["interior"]] += 1e-5
    pred[reg["exterior"]] += 4e-5
    truth[~hr] = 0.0
    first_exterior = tuple(np.argwhere(reg["exterior"])[0])
    truth[first_exterior] = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]  # a blown-up reference fit
    floor = np.full(hr.shape + (6,), 2e-5)
    unc = np.full(hr.shape, 1e-5)
    res = evaluation.evaluate(pred, truth, hr, lr, r, uncertainty=unc, floor_std=floor)
    assert set(res) == {"interior", "exterior", "brain"}
    i, e = res["interior"], res["exterior"]
    assert i["dt_rmse"] == pytest.approx(1.0) and e["dt_rmse"] == pytest.approx(4.0)
    assert i["n_voxels"] == 4**3 * r**3
    assert e["n_voxels"] == hr.sum() - i["n_voxels"] - 1 and e["n_implausible"] == 1
    assert i["noise_floor"] == pytest.approx(2.0) and e["noise_floor"] == pytest.approx(2.0)
    assert i["within_2sigma"] == 1.0 and e["within_2sigma"] == 0.0
    for key in ("fa_rmse", "md_rmse", "psnr", "spearman"):
        assert key in i
    w = res["brain"]  # both regions' evaluation voxels together
    assert w["n_voxels"] == i["n_voxels"] + e["n_voxels"]
    assert w["within_2sigma"] == pytest.approx(i["n_voxels"] / w["n_voxels"])
    json.loads(json.dumps(res))
    plain = evaluation.evaluate(pred, truth, hr, lr, r)
    assert "spearman" not in plain["interior"] and "brain" not in plain


def test_brain_spearman_pools_both_regions():
    """The whole-brain rank correlation is the one over the union of the two regions' evaluation voxels."""
    rng = np.random.default_rng(3)
    r = 2
    lr, hr, truth = cube_case(1, 9, r)
    sigma = rng.uniform(1e-5, 5e-5, hr.shape)
    pred = truth + rng.standard_normal(truth.shape) * sigma[..., None]
    res = evaluation.evaluate(pred, truth, hr, lr, r, uncertainty=sigma)
    v = hr & tensors.plausible(truth)
    assert res["brain"]["spearman"] == pytest.approx(evaluation.spearman(pred, truth, sigma, v))
    assert res["brain"]["spearman"] > 0.5
    assert res["brain"]["n_uncovered"] == 0
    # brain voxels an upsampling --mask cut to zero hold no prediction: counted, left out of the uncertainty figures
    cut = pred.copy()
    gone = np.zeros(hr.shape, bool)
    gone[:6] = True
    cut[gone], zero_sigma = 0, np.where(gone, 0.0, sigma)
    res = evaluation.evaluate(cut, truth, hr, lr, r, uncertainty=zero_sigma)
    assert res["brain"]["n_uncovered"] == (v & gone).sum() > 0
    assert res["brain"]["spearman"] == pytest.approx(evaluation.spearman(pred, truth, sigma, v & ~gone))
    assert res["brain"]["within_2sigma"] == pytest.approx(evaluation.within_2sigma(pred, truth, sigma, v & ~gone))
    assert res["interior"]["n_uncovered"] + res["exterior"]["n_uncovered"] == res["brain"]["n_uncovered"]
    # a non-physical voxel is judged against the edge's std where there is a prediction: the cut voxels' zero std
    # would lower that median and count it flagged
    bad = tuple(np.argwhere(hr & ~gone)[len(np.argwhere(hr & ~gone)) // 2])
    cut = np.where(hr[..., None], cut, 0)  # no output outside the brain
    cut[bad], flag_sigma = [-1e-3, 0, -1e-3, 0, 0, -1e-3], zero_sigma.copy()
    edge = np.median(zero_sigma[v & ~gone & ~evaluation.regions(hr, lr, r)["interior"]])
    flag_sigma[bad] = 0.9 * edge
    res = evaluation.evaluate(cut, truth, hr, lr, r, uncertainty=flag_sigma)
    assert res["brain"]["n_nonphysical"] == 1 and res["brain"]["nonphysical_flagged"] == 0.0


# ----------------------------------------------------------------------------------------- uncertainty


def test_spearman_is_one_for_monotone_uncertainty():
    rng = np.random.default_rng(1)
    shape = (10, 10, 10)
    truth = _field(shape)
    pred = truth + rng.normal(scale=2e-5, size=truth.shape)
    vox = np.ones(shape, bool)
    err = np.sqrt(np.mean((pred - truth) ** 2, axis=-1))
    assert evaluation.spearman(pred, truth, 3 * err**2 + 1e-6, vox) == pytest.approx(1.0)
    assert evaluation.spearman(pred, truth, -err, vox) == pytest.approx(-1.0)
    # A per-element map is reduced to its mean over the 6 elements.
    per_element = np.repeat(err[..., None], 6, axis=-1) * np.arange(1, 7)
    assert evaluation.spearman(pred, truth, per_element, vox) == pytest.approx(1.0)
    # Uncertainty unrelated to the error gives a correlation near 0.
    assert abs(evaluation.spearman(pred, truth, rng.random(shape), vox)) < 0.1


def test_within_2sigma_for_gaussian_errors():
    rng = np.random.default_rng(2)
    shape = (40, 40, 25)
    truth = _field(shape)
    sigma = rng.uniform(0.5e-5, 5e-5, size=shape)  # per-voxel sigma, shared by the 6 elements
    pred = truth + rng.normal(size=truth.shape) * sigma[..., None]
    vox = np.ones(shape, bool)
    assert evaluation.within_2sigma(pred, truth, sigma, vox) == pytest.approx(0.9545, abs=0.005)
    # Per-element sigma
    sig6 = rng.uniform(0.5e-5, 5e-5, size=shape + (6,))
    pred6 = truth + rng.normal(size=truth.shape) * sig6
    assert evaluation.within_2sigma(pred6, truth, sig6, vox) == pytest.approx(0.9545, abs=0.005)
    # Overconfident by a factor 2: only ~68 % inside.
    assert evaluation.within_2sigma(pred, truth, sigma / 2, vox) == pytest.approx(0.6827, abs=0.01)
    # A good uncertainty map also ranks the errors.
    assert evaluation.spearman(pred, truth, sigma, vox) > 0.5


# ----------------------------------------------------------------------------------------- noise floor


def _scheme(n_dirs=30, n_b0=3, b=1000.0, seed=3):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n_dirs, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    bvals = np.r_[np.zeros(n_b0), np.full(n_dirs, b)]
    bvecs = np.r_[np.zeros((n_b0, 3)), g]
    return bvals, bvecs


def test_design_matrix_reproduces_signal():
    bvals, bvecs = _scheme()
    X = fit_noise.design_matrix(bvals, bvecs)
    assert X.shape == (33, 7)
    D = tensors.to_matrix(WM)
    expected = 500.0 * np.exp(-bvals * np.einsum("ni,ij,nj->n", bvecs, D, bvecs))
    assert np.allclose(np.exp(X @ np.r_[WM, np.log(500.0)]), expected)


def test_noise_floor_matches_repeated_wls_fits():
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    bvals, bvecs = _scheme()
    rng = np.random.default_rng(4)
    n_rep, s0, sigma = 4000, 1000.0, 25.0
    D = tensors.to_matrix(WM)
    clean = s0 * np.exp(-bvals * np.einsum("ni,ij,nj->n", bvecs, D, bvecs))
    # Rician noise (SNR 40 in the b0)
    noisy = np.abs(clean + rng.normal(scale=sigma, size=(n_rep, clean.size))
                   + 1j * rng.normal(scale=sigma, size=(n_rep, clean.size)))
    data = noisy.reshape(n_rep, 1, 1, -1)
    gtab = gradient_table(bvals, bvecs=bvecs)
    fit = TensorModel(gtab, fit_method="WLS").fit(data)
    dt = fit.lower_triangular()
    empirical = dt.reshape(-1, 6).std(axis=0)
    mask = np.ones(data.shape[:3], bool)
    std = fit_noise.noise_floor(data, bvals, bvecs, dt, mask)
    assert std.shape == (n_rep, 1, 1, 6) and np.isfinite(std).all()
    predicted = np.sqrt((std.reshape(-1, 6) ** 2).mean(axis=0))
    print("\nper-element std, empirical:", empirical, "\n                 predicted:", predicted)
    assert np.allclose(predicted, empirical, rtol=0.15)
    # The summary figure in 1e-5 mm^2/s
    rmse = evaluation.noise_floor_rmse(std, mask)
    assert rmse == pytest.approx(np.sqrt((empirical**2).mean()) / 1e-5, rel=0.15)
    # Outside the mask: zero; a voxel with no signal: NaN, left out of the summary.
    mask[0, 0, 0] = False
    data2 = data.copy()
    data2[1] = 0.0
    std2 = fit_noise.noise_floor(data2, bvals, bvecs, dt, mask)
    assert (std2[0] == 0).all() and np.isnan(std2[1]).all()
    assert np.isfinite(evaluation.noise_floor_rmse(std2, mask))


@pytest.mark.realdata
@pytest.mark.slow
def test_noise_floor_on_real_subject():
    need_data(AXIAL)
    import nibabel as nib
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel
    from dipy.segment.mask import median_otsu

    img = nib.load(str(AXIAL / "dwi.nii.gz"))
    assert np.linalg.det(img.affine[:3, :3]) < 0  # FSL bvecs are in voxel axes as they are: no flip
    data = np.asarray(img.dataobj, dtype=np.float64)
    bvals = np.loadtxt(AXIAL / "dwi.bval")
    bvecs = np.loadtxt(AXIAL / "dwi.bvec").T
    b0 = data[..., bvals <= 50].mean(axis=-1)
    _, mask = median_otsu(b0, median_radius=2, numpass=1)
    gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=50)
    with np.errstate(all="ignore"):
        dt = TensorModel(gtab, fit_method="WLS").fit(data, mask=mask).lower_triangular()
    std = fit_noise.noise_floor(data, bvals, bvecs, dt, mask)
    # Interior: the mask eroded by 2 voxels (5^3 cube, as for the regions at factor 1).
    interior = evaluation.regions(mask, mask, 1, radius=2)["interior"]
    vox = evaluation.evaluation_voxels(dt, interior)
    whole = evaluation.evaluation_voxels(dt, mask)
    floor_in = evaluation.noise_floor_rmse(std, vox)
    floor_all = evaluation.noise_floor_rmse(std, whole)
    print(f"\n{AXIAL.name}: reference noise floor {floor_in:.2f} (1e-5 mm^2/s) over {vox.sum()} interior voxels, "
          f"{floor_all:.2f} over {whole.sum()} plausible voxels of the whole mask")
    assert vox.sum() > 1000
    assert 2.0 < floor_in < 20.0
    assert floor_all >= floor_in * 0.9


def test_evaluate_refuses_what_iqt_evaluate_refuses():
    """The library's `evaluate` scored a prediction in m^2/s (DT-RMSE 56.9), one in FSL's element order
    (47.3) and a reference x1e3 (20 voxels scored), and one NaN element made a region's figures NaN, with no word;
    `iqt evaluate` refused the first three. Now both refuse them with one message (`check_inputs`), and a voxel with
    NaN in every element reads as missing, as iqt evaluate reads it."""
    lr = np.zeros((10, 10, 10), bool)
    lr[1:9, 1:9, 1:9] = True
    hr = lr.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    truth = _field(hr.shape)
    truth[~hr] = 0.0
    pred = truth + 1e-5 * hr[..., None]
    fsl = pred[..., [0, 1, 3, 2, 4, 5]].copy()
    fsl[..., 1] = fsl[..., 3] = 0.3e-3  # off-diagonals of a real fit's size: read in the wrong order, not positive definite
    cases = [(pred * 1e-6, "prediction", "not in mm\\^2/s"), (truth * 1e3, "reference", "not in mm\\^2/s"),
             (fsl, "prediction", "positive definite")]
    one_nan = pred.copy()
    one_nan[tuple(np.argwhere(hr)[-1]) + (3,)] = np.nan
    cases.append((one_nan, "prediction", "NaN or Inf in 1 voxel"))
    for bad, which, said in cases:
        p, t = (bad, truth) if which == "prediction" else (pred, bad)
        with pytest.raises(IQTError, match=said) as e:
            evaluation.evaluate(p, t, hr, lr, 2)
        assert e.value.input == which
    good = evaluation.evaluate(pred, truth, hr, lr, 2)
    assert good["interior"]["dt_rmse"] == pytest.approx(1.0)
    hole = pred.copy()
    v = tuple(np.argwhere(hr)[len(np.argwhere(hr)) // 2])
    hole[v] = np.nan  # NaN in every element: missing, scored as a zero tensor (iqt evaluate reads it so)
    zero = pred.copy()
    zero[v] = 0.0
    with pytest.warns(IQTWarning, match="score them as a zero tensor"):
        got = evaluation.evaluate(hole, truth, hr, lr, 2)
    assert got == evaluation.evaluate(zero, truth, hr, lr, 2)
    gap = truth.copy()
    gap[v] = np.nan  # the reference's: left out and counted
    row = evaluation.evaluate(pred, gap, hr, lr, 2)
    assert sum(row[k]["n_no_reference"] for k in ("interior", "exterior")) == 1


@pytest.fixture(scope="module")
def phantom_case(builtin_phantom_subject):
    """The phantom subject's x2 case, made once for the module (a DTI fit of the phantom: seconds on a loaded machine)."""
    from ImageQualityTransferLib.dmri.subject import make_case

    return make_case(builtin_phantom_subject, 2)


@pytest.mark.parametrize("which", ["prediction", "reference"])
def test_a_tenth_of_the_unit_is_refused_in_either(phantom_case, which):
    """Tensors a tenth of mm^2/s, whose CSF keeps the tissue-like median above the floor: the reference was refused
    (judged over its brain), the same prediction scored without a word; both are judged inside the mask now."""
    case = phantom_case
    p, t = (case.truth * 0.1, case.truth) if which == "prediction" else (case.truth, case.truth * 0.1)
    with pytest.raises(IQTError, match="not in mm\\^2/s") as e:
        evaluation.evaluate(p, t, case.hr_mask, case.lr_mask.data, 2)
    assert e.value.input == which


# ----------------------------------------------------------------------------------------- one rule, in the scripts too


def test_covered_is_the_rule_evaluate_scores_sigma_over():
    """`covered` is the voxel set evaluate's calibration figures use: a voxel cut to exactly zero is left out and
    counted in n_uncovered, one with a tiny prediction is scored (benchmarks/ take it from here, not a copy)."""
    truth = _field((8, 8, 8))
    pred = truth * 1.01
    pred[0, 0, :3] = 0  # cut by a mask
    pred[1, 1, 1] = 1e-12  # a prediction, however small
    brain = np.ones((8, 8, 8), bool)
    got = evaluation.covered(pred)
    assert not got[0, 0, :3].any() and got[1, 1, 1] and int((~got).sum()) == 3
    res = evaluation.evaluate(pred, truth, brain, np.ones((4, 4, 4), bool), 2, uncertainty=np.full((8, 8, 8), 1e-5))
    assert res["brain"]["n_uncovered"] == int((evaluation.evaluation_voxels(truth, brain) & ~got).sum()) == 3


def test_the_benchmark_scripts_that_score_select_voxels_through_the_engine():
    """benchmarks/ scripts that score against a reference take their voxels from analysis/evaluation.py
    (evaluation_voxels, covered): a copy of a rule there had kept scoring voxels `iqt evaluate` leaves out."""
    import re

    from helpers import REPO

    scoring = [p for p in sorted((REPO / "benchmarks").glob("*.py")) if "import evaluation" in p.read_text("utf-8")]
    assert {p.name for p in scoring} >= {"block_phase.py", "filled_context_sigma.py", "md_std_correlation.py"}
    for path in scoring:
        text = path.read_text("utf-8")
        assert "evaluation.evaluation_voxels(" in text, path.name
        assert not re.search(r"covered\s*=\s*np\.any\(", text), f"{path.name} copies evaluation.covered"
        assert "plausible(" not in text and "no_reference(" not in text.replace("evaluation.no_reference(", ""), path.name
