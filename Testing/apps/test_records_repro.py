"""What an output records so that it can be made again: the build beside the version in every record,
the training's threads, libraries and data checksums, and the numbers that ran where a default was taken."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ImageQualityTransferLib import fileio
from ImageQualityTransferLib.core.version import __version__
from ImageQualityTransferLib.fileio.model_files import build

from helpers import synthetic_items, tensor_list


def test_the_build_is_the_one_iqt_version_prints(capsys):
    from ImageQualityTransferLib.apps.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"iqt {__version__} (build {build()})"
    assert len(build()) == 12 and int(build(), 16) >= 0


def test_model_sidecars_record_the_build_beside_the_version(small_subject, tmp_path):
    pytest.importorskip("torch")
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.methods.cnn import training

    gl = methods.get("global-linear").fit([small_subject], 2, progress=False)
    side = json.loads(gl.save(tmp_path / "gl.npz", 2).read_text())
    assert (side["version"], side["build"]) == (__version__, build())
    _, meta, _ = training.train(synthetic_items(n=2), seed=0, epochs=1, iters_per_epoch=2, batch_size=2, patch=6,
                                val_patches=2, progress=False)
    assert (meta["engine_version"], meta["engine_build"]) == (__version__, build())


def test_iqt_train_records_the_build_iqt_version_prints_and_a_sidecar_without_it_loads(small_subject, tmp_path, capsys):
    """A model `iqt train` writes names the build that made it, as `iqt --version` prints it, so that a sidecar whose
    recorded command no longer reproduces its weights says at which build it did (docs/training.md); the shipped
    sidecars before that record have none, and a sealed sidecar without it loads as one with it. A forest's sidecar
    records the SHA256 of its training examples too, which -v prints before training."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.fileio.model_files import write_sidecar

    with pytest.raises(SystemExit):
        main(["--version"])
    printed = capsys.readouterr().out.split("(build ")[1].rstrip(")\n")
    out = tmp_path / "gl.npz"
    assert main(["--threads", "1", "train", "--method", "global-linear", "--subjects", str(small_subject), "--factor",
                 "2", "-o", str(out), "--seed", "0", "-v"]) == 0
    said = capsys.readouterr()
    side = json.loads(out.with_suffix(".json").read_text())
    assert (side["version"], side["build"]) == (__version__, printed)
    digest = side["training"]["examples_sha256"]  # the examples, told by -v before the training
    assert len(digest) == 64 and f"library: {side['training']['examples']} examples" in said.out + said.err
    assert f"sha256 {digest[:12]}" in said.out + said.err
    assert side["training"]["command"].startswith("iqt --threads 1 train --method global-linear")
    with_build = methods.get("global-linear", model=str(out)).load(2)
    write_sidecar(out.with_suffix(".json"), {k: v for k, v in side.items() if k not in ("build", "sidecar_sha256")})
    without = methods.get("global-linear", model=str(out)).load(2)
    assert "build" not in without.meta and np.array_equal(without.gl_W, with_build.gl_W)


def test_benchmark_json_records_the_build():
    from ImageQualityTransferLib.analysis import benchmark

    doc = benchmark.document([], methods=["cubic"], factor=2)
    assert (doc["version"], doc["build"]) == (__version__, build())


def _tensor_list(tmp_path):
    return tensor_list(tmp_path)


def test_batch_sidecars_and_dataset_description_record_the_build(tmp_path):
    from ImageQualityTransferLib.apps import batch

    out = _tensor_list(tmp_path)
    items = batch.find_items(tmp_path / "list.txt")
    assert [r["status"] for r in batch.run_cohort(items, batch.Settings(method="cubic"), out, progress=False)] == ["done"]
    sides = [json.loads(p.read_text()) for p in (out / "sub-adti").rglob("*.json")]
    assert sides and all((s["SoftwareVersion"], s["SoftwareBuild"]) == (__version__, build()) for s in sides)
    entry = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][-1]
    assert (entry["Version"], entry["Build"]) == (__version__, build())


def test_a_generated_by_entry_of_another_build_is_kept_and_one_from_before_builds_is_replaced(tmp_path):
    from ImageQualityTransferLib.apps import batch
    from ImageQualityTransferLib.apps.batch import records

    out = tmp_path / "deriv"
    out.mkdir()
    s = batch.Settings(method="cubic")
    before = {"Name": "ImageQualityTransfer", "Version": __version__, "Method": "cubic", "Factor": 2, "Model": None,
              "ModelSHA256": None}
    other = {**before, "Build": "0" * 12}
    for runs, kept in (([before], []), ([other], [other])):
        (out / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.10.0",
                                                                  "DatasetType": "derivative", "GeneratedBy": runs}))
        records.dataset_description(out, s)
        assert json.loads((out / "dataset_description.json").read_text())["GeneratedBy"] == kept + [{**before, "Build": build()}]


def test_a_resumed_cohort_redoes_the_subjects_another_build_wrote(tmp_path, monkeypatch):
    """A user upgrading mid-cohort: the subjects done before are redone, not skipped, so that the folder never mixes
    two builds' results; those a run of this build wrote are skipped."""
    from ImageQualityTransferLib.apps import batch
    from ImageQualityTransferLib.apps.batch import records, subject
    from ImageQualityTransferLib.fileio import model_files

    out = _tensor_list(tmp_path)
    items = batch.find_items(tmp_path / "list.txt")
    s = batch.Settings(method="cubic")
    status = lambda: [r["status"] for r in batch.run_cohort(items, s, out, progress=False)]  # noqa: E731
    assert status() == ["done"]
    assert status() == ["skipped"]
    for module in (records, subject):
        monkeypatch.setattr(module, "build", lambda: "f" * 12)
    monkeypatch.setattr(model_files, "build", lambda: "f" * 12)  # the run's own build too: a whole run of the new build
    assert status() == ["done"]
    side = next((out / "sub-adti").rglob("*tensor_dwimap.json"))
    assert json.loads(side.read_text())["SoftwareBuild"] == "f" * 12
    assert status() == ["skipped"]
    meta = json.loads(side.read_text())
    del meta["SoftwareBuild"]  # a sidecar from before the build was recorded
    side.write_text(json.dumps(meta))
    assert status() == ["done"]


def test_batch_sidecars_record_the_monte_carlo_samples_that_ran(tmp_path):
    """The default (10 for the variational CNNs) is recorded as the number, not null; a method that draws none: null."""
    pytest.importorskip("torch")
    from ImageQualityTransferLib.apps import batch
    from ImageQualityTransferLib.apps.batch import records
    from ImageQualityTransferLib.methods.cnn.inference import DEFAULT_SAMPLES

    out = _tensor_list(tmp_path)
    items = batch.find_items(tmp_path / "list.txt")
    for method, given, recorded in (("espcn-hetero-var1", None, DEFAULT_SAMPLES), ("espcn-hetero-var1", 3, 3),
                                    ("cubic", None, None)):
        s = batch.Settings(method=method, mc_samples=given)
        assert [r["status"] for r in batch.run_cohort(items, s, out, progress=False)] == ["done"]
        side = records.sidecar(next((out / "sub-adti").rglob(records.output_names(items[0], s)["tensor"])))
        assert json.loads(side.read_text())["MCSamples"] == recorded


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_trained_models_sidecar_records_threads_libraries_and_the_datas_checksums(small_subject, tmp_path):
    """`iqt train` without --threads (the threads set by OMP_NUM_THREADS or the libraries' default): the sidecar says
    how many ran, on which library versions, from which bytes of each subject."""
    import numpy
    import scipy

    from ImageQualityTransferLib.apps.cli import main

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):  # the suite's one BLAS thread (conftest) lifted: the recorded 1
        # must come from training's own small solves, or the test passes whatever it does (a review)
        assert main(["train", "--method", "global-linear", "--subjects", str(small_subject), "-o",
                     str(tmp_path / "gl.npz")]) == 0
    training = json.loads((tmp_path / "gl.json").read_text())["training"]
    assert training["threads"]["blas"] == 1  # the forests' small solves: one BLAS thread whatever the machine has
    assert (training["libraries"]["numpy"], training["libraries"]["scipy"]) == (numpy.__version__, scipy.__version__)
    assert training["libraries"]["python"] and training["libraries"]["dipy"] and "torch" not in training["libraries"]
    import gzip
    import hashlib

    content = hashlib.sha256(gzip.open(small_subject / "dwi.nii.gz").read()).hexdigest()  # its bytes decompressed
    assert training["data_sha256"] == [{"subject": small_subject.name, "folder": str(small_subject.absolute()),
                                        "sha256": {n: _sha(small_subject / n) for n in ("dwi.nii.gz", "dwi.bval", "dwi.bvec")},
                                        "dwi_content_sha256": content}]


def test_a_cnn_training_records_the_torch_threads_it_ran_on():
    torch = pytest.importorskip("torch")
    from ImageQualityTransferLib.methods.cnn import training

    was = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # as OMP_NUM_THREADS=2 sets it, with no --threads given
        _, meta, _ = training.train(synthetic_items(n=2), seed=0, epochs=1, iters_per_epoch=2, batch_size=2, patch=6,
                                    val_patches=2, progress=False)
    finally:
        torch.set_num_threads(was)
    assert meta["training"]["threads"]["torch"] == 2


def test_shipped_sidecars_without_these_records_still_load():
    """The shipped models were trained before the records existed: read as they are (read-only)."""
    pytest.importorskip("torch")
    from ImageQualityTransferLib import methods

    loaded = [methods.get(name).load(2) for name in ("global-linear", "espcn")]
    old = [m for m in loaded if "data_sha256" not in m.meta.get("training", {})
           and not {"build", "engine_build"} & set(m.meta)]
    if not old:
        pytest.skip("the shipped models were retrained with these records: no older sidecar to load")


def test_degrade_seeds_its_noise_and_draws_as_before_by_default(tmp_path, monkeypatch, capsys):
    """`iqt degrade --snr S` draws the noise it drew before --seed existed (seed 0): the same voxels, byte for byte;
    --seed 0 draws them too; another seed another noise; the SNR and seed are kept with the factor and style and in
    the file's run record; --seed without --snr is refused."""
    import nibabel as nib

    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.dmri import degrade as deg, randomise
    from ImageQualityTransferLib.fileio.nifti import run_record_of
    from ImageQualityTransferLib.dmri.dti import brain_mask
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    dwi = make_phantom(shape=(16, 18, 14), voxel_mm=4.0, n_dirs=12)
    fileio.save_dwi(dwi, tmp_path / "dwi.nii.gz")
    dwi = fileio.load_dwi(tmp_path / "dwi.nii.gz")
    mask = brain_mask(dwi)
    fileio.save_mask(mask, tmp_path / "mask.nii.gz")
    made = []
    save = fileio.save_tensor
    monkeypatch.setattr(fileio, "save_tensor", lambda vol, *a, **k: (made.append(dict(vol.meta)), save(vol, *a, **k))[1])

    def run(name, *extra):
        assert main(["degrade", str(tmp_path / "dwi.nii.gz"), "--mask", str(tmp_path / "mask.nii.gz"), "--snr", "20",
                     *extra, "-o", str(tmp_path / name)]) == 0
        img = nib.load(tmp_path / name)  # the header differs by the command it records
        return np.asarray(img.dataobj).tobytes() + img.affine.tobytes()

    default, zero, one = run("d.nii.gz"), run("s0.nii.gz", "--seed", "0"), run("s1.nii.gz", "--seed", "1")
    assert default == zero and one != default
    assert [run_record_of(tmp_path / n)["noise"] for n in ("d.nii.gz", "s1.nii.gz")] == [{"snr": 20.0, "seed": 0},
                                                                                          {"snr": 20.0, "seed": 1}]
    before = deg.degrade(dwi, fileio.load_mask(tmp_path / "mask.nii.gz", dwi).data, 2, noise=randomise.rician(20.0, 0))
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "d.nii.gz").dataobj)[..., 0, :],
                                  before.tensor.data)  # the draws of seed 0, as before (5D SYMMATRIX on disk)
    assert [(m["snr"], m["noise_seed"]) for m in made] == [(20.0, 0), (20.0, 0), (20.0, 1)]
    capsys.readouterr()
    assert main(["degrade", str(tmp_path / "dwi.nii.gz"), "--seed", "1", "-o", str(tmp_path / "x.nii.gz")]) == 2
    assert "--seed 1: it seeds the noise of --snr" in capsys.readouterr().err and not (tmp_path / "x.nii.gz").exists()


def test_a_cohort_redone_after_an_upgrade_says_so_once(tmp_path, monkeypatch):
    """Every subject recomputed on a resume looked like a resume that failed: one line names the earlier build."""
    from ImageQualityTransferLib.apps import batch
    from ImageQualityTransferLib.apps.batch import records, subject
    from ImageQualityTransferLib.fileio import model_files

    out = _tensor_list(tmp_path)
    items = batch.find_items(tmp_path / "list.txt")
    s = batch.Settings(method="cubic")
    first = batch.run_cohort(items, s, out, progress=False)
    assert batch.redone_line(first) == "" and batch.redone_line(batch.run_cohort(items, s, out, progress=False)) == ""
    for module in (records, subject):
        monkeypatch.setattr(module, "build", lambda: "f" * 12)
    monkeypatch.setattr(model_files, "build", lambda: "f" * 12)  # the run's own build too: a whole run of the new build
    line = batch.redone_line(batch.run_cohort(items, s, out, progress=False))
    assert line.startswith("1 of them redone, not skipped: their earlier outputs were written by version "
                           f"{__version__} build {build()}"), line
    side = next((out / "sub-adti").rglob("*tensor_dwimap.json"))
    meta = json.loads(side.read_text())
    del meta["SoftwareBuild"]  # from before the build was recorded
    side.write_text(json.dumps(meta))
    assert "(before builds were recorded)" in batch.redone_line(batch.run_cohort(items, s, out, progress=False))


def test_a_variational_method_s_outputs_from_before_builds_say_why_they_are_redone(tmp_path, monkeypatch):
    """MCSamples was null for the default samples in earlier builds, so espcn-hetero-var1's earlier outputs
    were redone without the line (taken for another request)."""
    from ImageQualityTransferLib.apps.batch import records

    folder, names = tmp_path, {"tensor": "t.nii.gz"}
    ident = {"SoftwareVersion": __version__, "SoftwareBuild": build(), "Method": "espcn-hetero-var1", "MCSamples": 10}
    old = {"SoftwareVersion": __version__, "Method": "espcn-hetero-var1", "MCSamples": None}
    records.sidecar(folder / "t.nii.gz").write_text(json.dumps(old))
    assert records.other_build(folder, names, ident) == f"version {__version__} (before builds were recorded)"
    records.sidecar(folder / "t.nii.gz").write_text(json.dumps({**old, "MCSamples": 5}))
    assert records.other_build(folder, names, ident) is None  # 5 samples asked then: another request


def test_library_versions_of_a_copy_without_its_metadata_come_from_the_module(monkeypatch):
    """A library copied onto PYTHONPATH without its dist-info (as on a machine set up from an archive) is still
    recorded, from its `__version__`, not as null (the device-trained sidecars of stop 53 said nibabel: null)."""
    from importlib import metadata

    import nibabel

    from ImageQualityTransferLib.methods.learned import library_versions

    real = metadata.version

    def without(name):
        if name in ("nibabel", "dipy"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", without)
    out = library_versions()
    assert out["nibabel"] == nibabel.__version__
    assert out["dipy"] and out["numpy"] == real("numpy")
