"""Paths given in the wrong place are named for what they are (a fresh-eyes audit): an output path under a file was
said to be under a folder that 'does not exist', a DWI file given as a subject folder had 'no dwi.nii.gz in this
folder', and an image given as a model 'lr.nii.json: model sidecar not found'."""

from helpers import five_d_tensor, refused_line


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
