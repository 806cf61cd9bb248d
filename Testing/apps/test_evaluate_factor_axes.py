"""`iqt evaluate --factor` is read along the low-res input's voxel axes, as the prediction's header records them
('iqt upsample' writes 'factors 2,1,1 SLA'), whatever order the reference is stored in (apps/cli/evaluate.py run)."""

import json

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.orientation import Reorientation

from helpers import run_cli


def test_a_slice_first_inputs_own_factors_score_as_its_header_records(capsys, tmp_path, small_subject):
    dwi = small_subject / "dwi.nii.gz"
    assert run_cli(capsys, "fit", dwi, "-o", tmp_path / "hr.nii.gz", "--mask-out", tmp_path / "mask.nii.gz")[0] == 0
    code, _, err = run_cli(capsys, "degrade", dwi, "--factor", "1,1,2", "-o", tmp_path / "lr.nii.gz")
    assert code == 0, err
    lr = fileio.load_tensor(tmp_path / "lr.nii.gz")
    # the same thick-slice input stored slice-first (its third voxel axis first), as another tool may write it
    fileio.save_tensor(Reorientation.permutation((2, 0, 1)).apply(lr), tmp_path / "lr_first.nii.gz")
    code, out, err = run_cli(capsys, "upsample", tmp_path / "lr_first.nii.gz", "-o", tmp_path / "up.nii.gz",
                             "--method", "linear", "--factor", "2,1,1")
    assert code == 0, err
    assert fileio.load_tensor(tmp_path / "up.nii.gz").meta["made_by"].startswith("iqt linear factors 2,1,1 ")
    base = ("evaluate", "--pred", tmp_path / "up.nii.gz", "--truth", tmp_path / "hr.nii.gz", "--mask",
            tmp_path / "mask.nii.gz", "--json")
    code, _, err = run_cli(capsys, *base, tmp_path / "recorded.json")
    assert code == 0, err
    # the factors 'iqt upsample' printed for this input, given back: the header's own, no warning, the same scores
    code, out, err = run_cli(capsys, *base, tmp_path / "given.json", "--factor", "2,1,1")
    assert code == 0 and "as given" not in err and "leave --factor out" not in err, err
    assert "factors 1,1,2 (as given: 2,1,1 along the low-res input's " in out, out
    given, recorded = (json.loads((tmp_path / n).read_text()) for n in ("given.json", "recorded.json"))
    assert given["factor"] == recorded["factor"] == [1, 1, 2]
    assert given["interior"] == recorded["interior"] and given["interior"]["n_voxels"] > 0
    # another factor than the header's is said in the input's axes, as given
    code, out, err = run_cli(capsys, *base, tmp_path / "other.json", "--factor", "1,1,2")
    assert code == 0 and err.count("\n") == 1, err
    assert "scored at factors 1,1,2 along the low-res input's" in err and "score it at 2,1,1" in err, err
    assert json.loads((tmp_path / "other.json").read_text())["factor"] == [1, 2, 1]
