"""`iqt benchmark --snr S --seed N`: the noise added to the inputs is drawn from the seed (`iqt degrade --seed` alone
left the benchmark's noise always seed 0, so a researcher could not see how much one draw moves the figures)."""

from __future__ import annotations

import json

from helpers import run_cli


def _rows(capsys, subject, path, *extra):
    code, _, err = run_cli(capsys, "benchmark", subject, "--methods", "cubic", "--json", path, *extra)
    assert code == 0, err
    return json.loads(path.read_text())


def test_the_benchmark_s_noise_is_drawn_from_its_seed(capsys, small_subject, tmp_path):
    a = _rows(capsys, small_subject, tmp_path / "a.json", "--snr", "10", "--seed", "3")
    b = _rows(capsys, small_subject, tmp_path / "b.json", "--snr", "10", "--seed", "3")
    default = _rows(capsys, small_subject, tmp_path / "d.json", "--snr", "10")
    scores = [{k: row[k] for k in ("interior", "exterior")} for row in a["rows"]]
    assert scores == [{k: row[k] for k in ("interior", "exterior")} for row in b["rows"]]  # not the time it took
    assert a["settings"]["noise_seed"] == 3 and default["settings"]["noise_seed"] == 0
    assert a["rows"][0]["interior"]["dt_rmse"] != default["rows"][0]["interior"]["dt_rmse"]
    code, _, err = run_cli(capsys, "benchmark", small_subject, "--methods", "cubic", "--seed", "3",
                           "--json", tmp_path / "x.json")
    assert code == 2 and err.strip() == ("iqt: error: --seed 3: it seeds the noise of --snr, and none is added without "
                                         "it; give --snr too or drop --seed")
    assert not (tmp_path / "x.json").exists()




def test_one_input_s_noise_index_is_said_once(capsys, small_subject, tmp_path, monkeypatch):
    """One subject and style: its noise index is one figure, said once (it had read "noise index 0.167-0.167" on the
    3 mm ortho dev scan at b0 SNR 5, an audit of the noise lines). The phantom is too small for an index (its eroded
    brain under 500 voxels): its row is given one."""
    from ImageQualityTransferLib.analysis import benchmark

    run = benchmark.run
    monkeypatch.setattr(benchmark, "run", lambda *a, **k: [{**r, "noise_index": 0.167} for r in run(*a, **k)])
    code, out, err = run_cli(capsys, "benchmark", small_subject, "--methods", "cubic", "--snr", "10",
                             "--json", tmp_path / "a.json")
    assert code == 0 and "seed 0 (noise index 0.167)\n" in out, (err, out)
