"""Paths given in the wrong place are named for what they are (a fresh-eyes audit): an output path under a file was
said to be under a folder that 'does not exist', a DWI file given as a subject folder had 'no dwi.nii.gz in this
folder', and an image given as a model 'lr.nii.json: model sidecar not found'."""

from helpers import changed_copy, five_d_tensor, refused_line


def test_an_output_under_a_file_says_the_folder_is_a_file(tmp_path, capsys):
    lr = five_d_tensor(tmp_path / "lr.nii.gz")
    refused_line(capsys, ["upsample", lr, "-o", tmp_path / "lr.nii.gz" / "x.nii.gz", "--method", "cubic"],
                 "lr.nii.gz is a file, not a folder: choose another output path")
    refused_line(capsys, ["upsample", lr, "-o", tmp_path / "none" / "x.nii.gz", "--method", "cubic"],
                 "none does not exist; create it or choose another output path")


def test_a_file_given_as_a_subject_folder_or_an_image_as_a_model(tmp_path, capsys, small_subject):
    lr = five_d_tensor(tmp_path / "lr.nii.gz")
    refused_line(capsys, ["benchmark", small_subject / "dwi.nii.gz", "--methods", "cubic"],
                 "dwi.nii.gz: a file; give the subject's folder")
    refused_line(capsys, ["upsample", lr, "-o", tmp_path / "up.nii.gz", "--method", "espcn", "--model", lr],
                 "lr.nii.gz: an image, not a model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz"]


def test_a_link_in_a_loop_and_a_two_row_bvec_are_named_for_what_they_are(tmp_path, capsys):
    """A symbolic link loop was 'file not found'; a bvec of 2 rows of 21 numbers was '2 directions' (audit)."""
    import numpy as np

    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    loop = tmp_path / "loop.nii.gz"
    loop.symlink_to(loop)
    refused_line(capsys, ["upsample", loop, "-o", tmp_path / "up.nii.gz", "--method", "cubic"],
                 "a symbolic link that leads to no file")
    fileio.save_dwi(make_phantom(shape=(8, 8, 8), voxel_mm=4.0, n_dirs=12), tmp_path / "dwi.nii.gz")
    np.savetxt(tmp_path / "dwi.bvec", np.loadtxt(tmp_path / "dwi.bvec")[:2], fmt="%.6f")
    refused_line(capsys, ["fit", tmp_path / "dwi.nii.gz", "-o", tmp_path / "dti.nii.gz"],
                 "dwi.bvec: 2 x 14 numbers, not three per direction")
    assert not (tmp_path / "up.nii.gz").exists() and not (tmp_path / "dti.nii.gz").exists()


def test_an_mrtrix_gradient_table_given_as_bvec_is_named_with_the_export(tmp_path, capsys):
    """An MRtrix .b table (x y z b per volume) given as --bvec was '14 x 4 numbers, not three per direction ...; give
    the series' own bvec file', advice an MRtrix user cannot follow (an audit): named, with mrconvert's export."""
    import numpy as np

    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    fileio.save_dwi(make_phantom(shape=(8, 8, 8), voxel_mm=4.0, n_dirs=12), tmp_path / "dwi.nii.gz")
    table = np.c_[np.loadtxt(tmp_path / "dwi.bvec").T, np.loadtxt(tmp_path / "dwi.bval")]
    np.savetxt(tmp_path / "dwi.b", table, fmt="%.6f")
    refused_line(capsys, ["fit", tmp_path / "dwi.nii.gz", "--bvec", tmp_path / "dwi.b", "-o", tmp_path / "dti.nii.gz"],
                 "dwi.b: 14 rows of 4 numbers, an MRtrix gradient table")
    assert not (tmp_path / "dti.nii.gz").exists()


def test_an_inputs_json_sidecar_is_never_an_output(tmp_path, capsys):
    """`iqt evaluate --json dwi.json` replaced the DWI's BIDS sidecar (dcm2niix's metadata) with the metrics, and --json
    onto a prediction's batch sidecar made `iqt batch` redo that subject (a bad-input audit): an image's JSON sidecar
    goes with it as an input, refused as an output in one line, left as it was."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    fileio.save_dwi(make_phantom(shape=(16, 18, 14), voxel_mm=4.0, n_dirs=12), tmp_path / "dwi.nii.gz")
    (tmp_path / "dwi.json").write_text('{"SliceEncodingDirection": "k"}')
    from ImageQualityTransferLib.apps.cli import main

    assert main(["fit", str(tmp_path / "dwi.nii.gz"), "-o", str(tmp_path / "dti.nii.gz"), "--mask-out",
                 str(tmp_path / "mask.nii.gz")]) == 0
    (tmp_path / "dti.json").write_text('{"kept": true}')
    changed_copy(tmp_path / "dti.nii.gz", tmp_path / "pred.nii.gz", tmp_path / "mask.nii.gz")  # it or its copy: refused
    args = ["evaluate", "--pred", tmp_path / "pred.nii.gz", "--truth", tmp_path / "dti.nii.gz", "--mask",
            tmp_path / "mask.nii.gz", "--dwi", tmp_path / "dwi.nii.gz", "--json"]
    for json_out in (tmp_path / "dwi.json", tmp_path / "dti.json"):
        refused_line(capsys, [*args, json_out], json_out.name, "is the JSON sidecar of the input")
    # evaluate's own summary beside the image it scored (this tool's habit, and its tests'): written, and again
    for _ in range(2):
        assert main([str(a) for a in [*args, tmp_path / "mask.json"]]) == 0
    assert (tmp_path / "dwi.json").read_text() == '{"SliceEncodingDirection": "k"}'
    assert (tmp_path / "dti.json").read_text() == '{"kept": true}'


def test_demo_and_report_say_nothing_on_stdout_before_refusing_their_subject(tmp_path, capsys):
    """'skipping espcn-hetero-var2, deep-hetero: no shipped model' came on stdout before the refusal of an empty
    --subject folder (a first-contact audit): the refusal is the run's only line."""
    from helpers import run_cli

    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (["demo", "--subject", empty, "-o", tmp_path / "d"],
                 ["report", "--subject", empty, "-o", tmp_path / "r.html"]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "" and "no dwi.nii.gz in this folder" in err, (out, err)


def test_a_subject_folder_that_is_not_there_is_said_so(tmp_path, capsys):
    """A missing --subject folder was told 'no dwi.nii.gz in this folder' (a display audit)."""
    from helpers import run_cli

    code, out, err = run_cli(capsys, "report", "--subject", tmp_path / "nowhere", "-o", tmp_path / "r.html")
    assert code == 2 and out == "" and err.count("\n") == 1 and "nowhere: no such folder" in err, (out, err)
