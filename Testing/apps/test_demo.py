"""`iqt demo`: the main job on the built-in phantom writes the table, the volumes and a legible figure."""

import json

import numpy as np
import pytest

from ImageQualityTransferLib.apps import cli
from ImageQualityTransferLib import fileio


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One demo run on the phantom: (output folder, exit status, what it printed)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo") / "demo"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["demo", "-o", str(out), "--methods", "nearest,linear,cubic,logeuclid-cubic"])
    return out, code, printed.getvalue()


@pytest.mark.slow
def test_demo_on_the_phantom(demo_run):
    out, code, printed = demo_run
    assert code == 0
    for name in ("metrics.md", "metrics.json", "fa_panels.png", "lowres.nii.gz", "truth.nii.gz", "cubic.nii.gz"):
        assert (out / name).exists(), name
    rows = {r["method"]: r for r in json.loads((out / "metrics.json").read_text())}
    assert set(rows) == {"nearest", "linear", "cubic", "logeuclid-cubic"}
    assert "| phantom | cubic |" in printed and "the phantom is synthetic" in printed  # not read as a real scan's figures
    # on block-averaged data cubic beats nearest and linear in the interior (docs/design.md), and nothing reaches the noise floor
    assert rows["cubic"]["interior"]["dt_rmse"] < rows["nearest"]["interior"]["dt_rmse"]
    assert rows["cubic"]["interior"]["dt_rmse"] < rows["linear"]["interior"]["dt_rmse"]
    assert rows["cubic"]["interior"]["dt_rmse"] > rows["cubic"]["interior"]["noise_floor"]
    assert rows["cubic"]["interior"]["ratio_to_cubic"] == 1.0
    # the volumes line up: prediction on the truth's grid
    truth, cubic = fileio.load_tensor(out / "truth.nii.gz"), fileio.load_tensor(out / "cubic.nii.gz")
    assert truth.shape3 == cubic.shape3 and np.allclose(truth.affine, cubic.affine)
    from matplotlib.image import imread

    png = imread(out / "fa_panels.png")
    assert png.shape[1] > png.shape[0] and png[..., :3].std() > 0.05




def test_the_methods_left_out_are_named_in_one_line_per_reason(capsys):
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps.demo import chosen_methods

    ready = chosen_methods(None, 2)
    left = [n for n in methods.names() if n not in ready]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipping ")]
    assert len(lines) == len({("PyTorch" in line) for line in lines})  # one line per reason
    assert sorted(n for line in lines for n in line[len("skipping "):].split(":")[0].split(", ")) == sorted(left)
    # said as trainable, with how (a newcomer read 'no shipped model for factor 2' alone as a fault)
    assert all("trainable methods with no shipped model for factor 2; 'iqt train' makes one" in line
               for line in lines if "PyTorch" not in line), lines


def _coarse_demo_phantom(monkeypatch):
    """The demo's phantom made coarse (32x36x28 voxels of 4 mm, 12 directions, as conftest's coarse_phantom) for a test
    of which files a demo writes and removes, which does not depend on the phantom's size (the full one: 8 s a run)."""
    import functools

    from ImageQualityTransferLib.dmri import phantom

    monkeypatch.setattr(phantom, "make_phantom",
                        functools.partial(phantom.make_phantom, shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12))


@pytest.mark.slow
def test_demo_is_deterministic(tmp_path, capsys, monkeypatch):
    """A second run (phantom, degradation, method) gives the same volumes bit for bit: two runs on the coarse phantom
    (the same seeded make_phantom, degrade and method as the full one's; a full-size second run took 2.5 s)."""
    _coarse_demo_phantom(monkeypatch)
    for run in ("a", "b"):
        assert cli.main(["demo", "-o", str(tmp_path / run), "--methods", "cubic"]) == 0
    a = fileio.load_tensor(tmp_path / "a" / "cubic.nii.gz").data
    b = fileio.load_tensor(tmp_path / "b" / "cubic.nii.gz").data
    assert np.array_equal(a, b) and np.any(a)


@pytest.mark.slow
def test_a_second_demo_into_the_folder_leaves_no_volume_of_the_first_s_other_methods(tmp_path, capsys, monkeypatch):
    """A demo into a folder an earlier demo wrote left that one's volumes of other methods beside its own (the phantom's
    x2 espcn-hetero maps beside a real subject's truth: a first-run audit): they go with this run's outputs, said."""
    from ImageQualityTransferLib.apps import cli

    _coarse_demo_phantom(monkeypatch)
    out = tmp_path / "d"
    # with a global option before the command, as the README's '--threads 1' runs (a review: the record's command line
    # then read "iqt --threads 1 demo", and its volumes were kept)
    assert cli.main(["--threads", "1", "demo", "-o", str(out), "--methods", "cubic,linear"]) == 0
    (out / "notes.txt").write_text("mine")
    assert cli.main(["demo", "-o", str(out), "--methods", "cubic"]) == 0
    said = capsys.readouterr().out
    assert "1 volume of an earlier demo's other methods (linear.nii.gz) to be removed once" in said, said
    assert not (out / "linear.nii.gz").exists() and (out / "cubic.nii.gz").exists()
    assert (out / "notes.txt").read_text() == "mine"  # not a demo's: kept
    # a file of a method's name that another command wrote is the user's (a review: it had been removed)
    assert cli.main(["upsample", str(out / "lowres.nii.gz"), "--method", "nearest", "-o", str(out / "linear.nii.gz")]) == 0
    assert cli.main(["demo", "-o", str(out), "--methods", "cubic"]) == 0
    assert "earlier demo" not in capsys.readouterr().out and (out / "linear.nii.gz").exists()


def test_a_volume_whose_run_record_is_not_a_dict_is_not_taken_for_a_demo_s():
    """A crafted record ('options': "demo") had ended a demo in an internal error (a review)."""
    from pathlib import Path

    from ImageQualityTransferLib.apps.demo import _by_demo

    for record in ({"options": "demo"}, {"options": {"command": "upsample"}}, None, ["demo"]):
        assert not _by_demo(Path("x.nii.gz"), lambda p, r=record: r)
    assert _by_demo(Path("x.nii.gz"), lambda p: {"options": {"command": "demo"}})


def test_the_wrote_line_names_the_mask_and_every_map():
    """`iqt demo`'s "wrote" line named lowres/truth/<method> volumes only, while the folder also held mask.nii.gz and
    the methods' _std/_direction/Monte Carlo maps (a new-user audit)."""
    from pathlib import Path
    from types import SimpleNamespace

    from ImageQualityTransferLib.apps.demo import wrote_line

    preds = {"cubic": SimpleNamespace(maps=dict),
             "biqt": SimpleNamespace(maps=lambda: {"std": 0, "direction": 0}),
             "espcn-hetero-var1": SimpleNamespace(maps=lambda: {"std": 0, "direction": 0, "std_intrinsic": 0})}
    line = wrote_line(Path("iqt-demo"), preds)
    assert line == ("wrote iqt-demo/: metrics.md, metrics.json, fa_panels.png, lowres/truth/mask/<method>.nii.gz, "
                    "5 uncertainty maps (<method>_direction/std/std_intrinsic.nii.gz)"), line
    assert wrote_line(Path("d"), {"cubic": preds["cubic"]}).endswith("lowres/truth/mask/<method>.nii.gz")
