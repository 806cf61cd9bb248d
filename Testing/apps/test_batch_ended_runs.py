"""A cluster run's subjects after the run itself has ended, and settings a batch refused by mistake (a research-
computing audit): a subject that a remote worker ends after its run was interrupted (or lost its scheduler) puts
nothing in place, since the folder's lock is no longer its run's (it had replaced the outputs of the run that came
after it); `--uncertainty --mc-samples 0` writes the deterministic std and direction maps (it failed every subject with
an internal error)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="iqt batch needs Dask distributed")

from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.batch import lock  # noqa: E402
from ImageQualityTransferLib.apps.batch.subject import process  # noqa: E402

import helpers  # noqa: E402


def _outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_a_subject_whose_run_has_ended_puts_nothing_in_place(tmp_path):
    ds = helpers.make_bids(tmp_path / "bids", ("01",), None)
    (item,) = batch.find_items(ds)
    s = batch.Settings(method="cubic")
    out = tmp_path / "deriv"
    out.mkdir()
    with lock.held(out, command="iqt batch (the run after it)"):  # the lock is another run's now
        res = process(item, s, str(out), run_token="the interrupted run's")
    assert res["status"] == "failed" and "the run that started it had ended" in res["reason"]
    assert _outputs(out) == [] and not list(out.rglob(".iqt-*"))  # nothing put in place, no temporaries left
    with lock.held(out) as rec:  # its own run's lock: put in place
        res = process(item, s, str(out), run_token=rec["token"])
    assert res["status"] == "done" and any(n.endswith("_dwimap.nii.gz") for n in _outputs(out))


def test_uncertainty_with_no_monte_carlo_samples_writes_the_deterministic_maps(tmp_path):
    pytest.importorskip("torch")
    from ImageQualityTransferLib import methods

    if "espcn-hetero-var1" not in methods.ready(2):
        pytest.skip("no espcn-hetero-var1 model for x2 here")
    ds = helpers.make_bids(tmp_path / "bids", ("01",), None)
    s = batch.Settings(method="espcn-hetero-var1", uncertainty=True, mc_samples=0)
    (res,) = batch.run_cohort(batch.find_items(ds), s, tmp_path / "deriv", progress=False)
    assert res["status"] == "done", res["reason"]
    maps = [n for n in _outputs(tmp_path / "deriv") if n.endswith("_dwimap.nii.gz") and "desc-" in n]
    assert sorted(n.split("desc-")[1].split("_")[0] for n in maps) == ["direction", "std"]
