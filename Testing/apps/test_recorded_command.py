"""A model sidecar's recorded command is one a shell runs again: a path with a space was written bare ('--subjects my
subj'), which a rerun reads as two folders (researcher audit, stop 57)."""

from __future__ import annotations

import json
import shlex

import helpers


def test_the_training_command_quotes_a_path_with_a_space(tmp_path, capsys):
    subject = tmp_path / "my subj"
    subject.mkdir()
    helpers.save_phantom_dwi(subject / "dwi.nii.gz", (32, 36, 28), 0)
    out = tmp_path / "sp model.npz"
    code, _, err = helpers.run_cli(capsys, "train", "--method", "global-linear", "--subjects", subject, "-o", out, "--factor", "2")
    assert code == 0, err
    command = json.loads(out.with_suffix(".json").read_text())["training"]["command"]
    words = shlex.split(command)
    assert words[words.index("--subjects") + 1] == str(subject) and words[words.index("-o") + 1] == str(out), command
