"""A seed below 0 or beyond the generators' range, an infinite learning rate, an empty --methods and 1e8 Monte Carlo
samples are refused in one line before any
work: --seed -1 ended propagate, upsample --propagate and train in an internal error (train after its data
preparation), a 20-digit seed train in torch's overflow, --lr inf trained a model of NaN loss that shipped and ran,
--methods "" ran every method and --mc-samples 100000000 ran on past 300 s (a fresh-eyes audit)."""

from __future__ import annotations

import pytest

from helpers import five_d_tensor, refused_line


def refused_by_parser(capsys, argv, *said) -> str:
    """`iqt argv` stops in its argument parser: exit 2, one line on stderr holding every one of `said`."""
    from ImageQualityTransferLib.apps.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert stop.value.code == 2 and len(lines) == 1 and all(s in lines[0] for s in said), err
    return lines[0]


@pytest.mark.parametrize("seed", ["-1", str(10**20)])
def test_seeds_out_of_range_are_refused(tmp_path, capsys, small_subject, seed):
    lr = five_d_tensor(tmp_path / "lr.nii.gz")
    runs = [["propagate", lr, "-o", tmp_path / "pd", "--samples", "2", "--no-tracts", "--seed", seed],
            ["upsample", lr, "-o", tmp_path / "up.nii.gz", "--method", "espcn-hetero", "--propagate", "--samples", "2",
             "--no-tracts", "--seed", seed],
            ["train", "--method", "global-linear", "--subjects", small_subject, "-o", tmp_path / "m.npz", "--seed", seed],
            ["degrade", small_subject, "-o", tmp_path / "deg", "--snr", "20", "--seed", seed]]
    for argv in runs:
        line = refused_by_parser(capsys, argv, "argument --seed", "give a seed from 0 to 4294967295")
        assert argv[0] in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz"]


def test_an_infinite_learning_rate_is_refused(tmp_path, capsys, small_subject):
    refused_line(capsys, ["train", "--method", "espcn", "--subjects", small_subject, "-o", tmp_path / "m.pt", "--lr", "inf",
                          "--epochs", "1"], "--lr inf: give a positive learning rate")
    assert not (tmp_path / "m.pt").exists()


def test_no_methods_and_samples_past_the_bound_are_refused(tmp_path, capsys, small_subject):
    lr = five_d_tensor(tmp_path / "lr.nii.gz")
    refused_line(capsys, ["benchmark", small_subject, "--methods", ""], "--methods '': an empty value")
    refused_line(capsys, ["upsample", lr, "-o", tmp_path / "up.nii.gz", "--method", "espcn-hetero-var1",
                          "--mc-samples", "100000000"], "--mc-samples 100000000: give at most 10000")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nii.gz"]


def test_an_snr_that_is_no_finite_number_from_the_floor_up_is_refused(tmp_path, capsys, small_subject):
    """`iqt degrade --snr` takes a finite b0 SNR from 0.01 up (dmri/randomise.snr_value, shared with
    slicer/render.py): 1e-40 and 5e-324 had passed as positive and ended in an internal error (the noise's sigma
    overflowing float32, the fit's SVD not converging)."""
    from ImageQualityTransferLib.dmri.randomise import snr_value

    assert snr_value("0.01") == 0.01  # the floor itself is taken
    for bad in ("abc", "0", "-5", "inf", "nan", "0.009", "1e-40"):
        refused_line(capsys, ["degrade", small_subject, "-o", tmp_path / "deg.nii.gz", "--snr", bad],
                     f"--snr {bad}: give the b0 SNR of the added noise (the brain's median b0 over the noise's "
                     "standard deviation; clinical scans about 10-40), a finite number from 0.01 up, e.g. 20")
    assert not list(tmp_path.iterdir())
