"""An output path under a file was said to be under a folder that 'does not exist' (a fresh-eyes audit)."""

from helpers import five_d_tensor, refused_line


def test_an_output_under_a_file_says_the_folder_is_a_file(tmp_path, capsys):
    lr = five_d_tensor(tmp_path / "lr.nii.gz")
    refused_line(capsys, ["upsample", lr, "-o", tmp_path / "lr.nii.gz" / "x.nii.gz", "--method", "cubic"],
                 "lr.nii.gz is a file, not a folder: choose another output path")
    refused_line(capsys, ["upsample", lr, "-o", tmp_path / "none" / "x.nii.gz", "--method", "cubic"],
                 "none does not exist; create it or choose another output path")
