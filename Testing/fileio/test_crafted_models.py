"""Crafted model sidecars are refused in one line, before anything is allocated from them: 'weights' as a
path ('../../../etc/passwd') ended in an internal error (ValueError: Invalid name) in 'iqt upsample' and 'iqt seal';
a forest's 'patch_radius' 1e6 in an internal error ('array is too big'), and it sealed; a CNN's 'arch' widths
[100000, 100000] had 40 GB allocated before its weights were found not to fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ImageQualityTransferLib.apps.cli import main
from helpers import five_d_tensor, refused_line
from ImageQualityTransferLib.fileio.checksums import sha256
from ImageQualityTransferLib.fileio.model_files import MODELS_DIR, SEAL, settings_digest


@pytest.fixture
def lr(tmp_path):
    return five_d_tensor(tmp_path / "lr.nii.gz")


def _crafted(tmp_path: Path, shipped: str, same_weights: bool = False, **edits) -> Path:
    """A copy of a shipped model with its sidecar edited and sealed again (a seal anyone can compute), its weights saved
    again (other bytes, the same values) unless `same_weights`: a shipped model's own weights with other settings are
    refused first (test_a_shipped_models_weights_with_edited_unsealed_settings_are_refused), before the checks these
    tests reach."""
    side = json.loads((MODELS_DIR / f"{shipped}.json").read_text())
    weights = tmp_path / side["weights"]
    if same_weights:
        shutil.copy(MODELS_DIR / side["weights"], weights)
    elif weights.suffix == ".npz":
        with np.load(MODELS_DIR / side["weights"], allow_pickle=False) as z:
            np.savez(weights, **{k: z[k] for k in z.files})
    else:
        torch = pytest.importorskip("torch")
        torch.save(torch.load(MODELS_DIR / side["weights"], weights_only=True), weights)
    side.update(edits, sha256=sha256(weights))
    side.pop(SEAL, None)
    side[SEAL] = settings_digest(side)
    sp = tmp_path / f"crafted_{shipped}.json"
    sp.write_text(json.dumps(side))
    return sp


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", ["../../../etc/passwd", "..", "sub/x.npz", ""])
def test_weights_that_are_no_file_name_beside_the_sidecar(tmp_path, lr, capsys, name):
    sp = _crafted(tmp_path, "global-linear_x2", weights=name)
    before = sp.read_bytes()
    refused_line(capsys, ["upsample", str(lr), "--method", "global-linear", "--model", str(sp), "-o",
                      str(tmp_path / "up.nii.gz")], "is not the name of a file beside the sidecar")
    refused_line(capsys, ["seal", str(sp)], "is not the name of a file beside the sidecar")
    assert sp.read_bytes() == before and not (tmp_path / "up.nii.gz").exists()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("radius", [10**6, 3, -1, 1.5, "1", None])
def test_a_patch_radius_iqt_train_never_writes(tmp_path, lr, capsys, radius):
    sp = _crafted(tmp_path, "global-linear_x2", patch_radius=radius)
    before = sp.read_bytes()
    refused_line(capsys, ["upsample", str(lr), "--method", "global-linear", "--model", str(sp), "-o",
                      str(tmp_path / "up.nii.gz")], "patch_radius")
    refused_line(capsys, ["seal", str(sp)], "patch_radius")
    assert sp.read_bytes() == before and not (tmp_path / "up.nii.gz").exists()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("arch", [{"name": "espcn", "factor": 2, "widths": [5000, 5000]},
                                  {"name": "espcn", "factor": 2, "widths": [50, 100, 7]},
                                  {"name": "espcn", "factor": 2, "widths": [50, -100]},
                                  {"name": "os.system", "factor": 2, "widths": [50, 100]}])
def test_a_network_its_weights_do_not_fit_is_never_built(tmp_path, lr, capsys, monkeypatch, arch):
    torch = pytest.importorskip("torch")
    from ImageQualityTransferLib.methods.cnn import networks

    built, real = [], networks.build

    def build(a):  # the device each network is built on: "meta" holds shapes only
        built.append((a, torch.empty(0).device.type))
        return real(a)

    monkeypatch.setattr(networks, "build", build)
    sp = _crafted(tmp_path, "espcn_x2", arch=arch)
    refused_line(capsys, ["upsample", str(lr), "--method", "espcn", "--model", str(sp), "-o", str(tmp_path / "up.nii.gz")],
             str(sp))
    refused_line(capsys, ["seal", str(sp)], str(sp))
    assert all(device == "meta" for _, device in built), built
    assert not (tmp_path / "up.nii.gz").exists()


@pytest.mark.filterwarnings("ignore")
def test_the_models_as_shipped_still_run(tmp_path, lr, capsys):
    pytest.importorskip("torch")
    for method, shipped in (("global-linear", "global-linear_x2"), ("espcn", "espcn_x2")):
        sp = _crafted(tmp_path, shipped)
        assert main(["upsample", str(lr), "--method", method, "--model", str(sp), "-o",
                     str(tmp_path / f"{method}.nii.gz")]) == 0
        assert main(["seal", str(sp)]) == 0


def _forest_with(tmp_path: Path, shipped: str = "rf_x2", **arrays) -> Path:
    """A copy of a shipped forest (rf ×2) with some of its arrays replaced, its checksums and seal made again (as a
    faulty writer or a hand edit would leave them)."""
    import numpy as np

    side = json.loads((MODELS_DIR / f"{shipped}.json").read_text())
    with np.load(MODELS_DIR / side["weights"], allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    for key, edit in arrays.items():
        a[key] = edit(a[key])
    weights = tmp_path / side["weights"]
    np.savez(weights, **a)
    side.update(sha256=sha256(weights), size_bytes=weights.stat().st_size)
    side.pop(SEAL, None)
    side[SEAL] = settings_digest(side)
    sp = tmp_path / f"edited_{shipped}.json"
    sp.write_text(json.dumps(side))
    return sp


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("edits", [{"tree0_left": lambda x: x * 0, "tree0_right": lambda x: x * 0},  # back to the root
                                   {"tree0_left": lambda x: x + 10**6},
                                   {"tree0_feature": lambda x: x + 30000},
                                   {"tree0_leaf": lambda x: x + 10**6}], ids=["cycle", "child", "feature", "leaf"])
def test_a_forest_whose_trees_do_not_descend_is_refused(tmp_path, lr, capsys, edits):
    """Children pointing back to the root made 'iqt upsample' run for ever; indices out of range ended in an internal
    error (IndexError, exit 1): a fresh-eyes audit."""
    sp = _forest_with(tmp_path, **edits)
    refused_line(capsys, ["upsample", str(lr), "--method", "rf", "--model", str(sp), "-o", str(tmp_path / "up.nii.gz")],
                 "does not hold a valid rf model")
    assert not (tmp_path / "up.nii.gz").exists()


def _norm_edited(side: dict, **norm) -> dict:
    return {**side["normalisation"], **norm}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("edit", [{"out_scale": "abc"}, {"out_scale": [0.0] * 6}, {"in_scale": [1.0] * 5},
                                  {"kind": "bogus"}, {"subject_scale": "tiny"}],
                         ids=["text", "zeros", "five", "kind", "unit"])
def test_a_normalisation_iqt_train_never_writes_is_refused(tmp_path, lr, capsys, edit):
    """A crafted CNN sidecar's out_scale "abc" ended in an internal error; all zeros gave cubic's output with no word,
    an unknown kind was ignored (a fresh-eyes audit)."""
    pytest.importorskip("torch")
    side = json.loads((MODELS_DIR / "espcn_x2.json").read_text())
    sp = _crafted(tmp_path, "espcn_x2", normalisation=_norm_edited(side, **edit))
    refused_line(capsys, ["upsample", str(lr), "--method", "espcn", "--model", str(sp), "-o", str(tmp_path / "up.nii.gz")],
                 "its normalisation is not one 'iqt train' writes")
    assert not (tmp_path / "up.nii.gz").exists()


@pytest.mark.filterwarnings("ignore")
def test_a_shipped_models_weights_with_edited_unsealed_settings_are_refused(tmp_path, lr, capsys):
    """out_scale ×10 and the seal deleted: the copy ran with one warning to outputs 3.9× off, and 'iqt seal' sealed it
    (a fresh-eyes audit). The same copy unedited still runs and seals."""
    pytest.importorskip("torch")
    side = json.loads((MODELS_DIR / "espcn_x2.json").read_text())
    sp = _crafted(tmp_path, "espcn_x2", True, normalisation=_norm_edited(side, out_scale=[10 * v for v in side["normalisation"]["out_scale"]]))
    edited = json.loads(sp.read_text())
    edited.pop(SEAL)
    sp.write_text(json.dumps(edited))
    for argv in (["upsample", str(lr), "--method", "espcn", "--model", str(sp), "-o", str(tmp_path / "up.nii.gz")],
                 ["seal", str(sp)]):
        refused_line(capsys, argv, "its weights are the shipped model espcn_x2.json's, with other settings")
    assert not (tmp_path / "up.nii.gz").exists() and SEAL not in json.loads(sp.read_text())
    # sealed again (the seal is a plain digest): refused all the same, where it had run without a word (a security audit)
    resealed = _crafted(tmp_path, "espcn_x2", True, normalisation=_norm_edited(side, out_scale=[10 * v for v in side["normalisation"]["out_scale"]]))
    refused_line(capsys, ["upsample", str(lr), "--method", "espcn", "--model", str(resealed), "-o", str(tmp_path / "up.nii.gz")],
                 "its weights are the shipped model espcn_x2.json's, with other settings")
    unedited = {k: v for k, v in side.items() if k != SEAL}
    sp.write_text(json.dumps(unedited))
    assert main(["upsample", str(lr), "--method", "espcn", "--model", str(sp), "-o", str(tmp_path / "up.nii.gz")]) == 0


def _reseal(sp: Path, weights: Path) -> None:
    """The sidecar `sp` made to match `weights` as they now are: checksum and seal computed anew."""
    side = json.loads(sp.read_text())
    side.update(sha256=sha256(weights))
    side.pop(SEAL)
    side[SEAL] = settings_digest(side)
    sp.write_text(json.dumps(side))


@pytest.mark.filterwarnings("ignore")
def test_weights_that_unpack_to_more_than_any_model_are_not_read(tmp_path, lr, capsys, monkeypatch):
    """A small archive of deflated zeros (1.6 MB to 1.6 GB) had been unpacked before its refusal, and so would an
    array whose header promises more than it holds (a security audit): both refused before they are read."""
    import io
    import zipfile

    from ImageQualityTransferLib.fileio import model_files

    sp = _crafted(tmp_path, "global-linear_x2")
    monkeypatch.setattr(model_files, "MAX_UNPACKED_BYTES", 1000)
    monkeypatch.setattr(model_files, "MAX_UNPACK_RATIO", 0.5)
    refused_line(capsys, ["upsample", str(lr), "--model", str(sp), "-o", str(tmp_path / "up.nii.gz")],
                 "times), as no model this tool writes does, and it is not read")
    monkeypatch.undo()
    # a damaged archive is left to the loader's own words (an unknown compression had ended in an internal error)
    weights = tmp_path / json.loads(sp.read_text())["weights"]
    good = weights.read_bytes()
    broken = bytearray(good)
    at = broken.find(b"PK\x01\x02")  # the central directory's first entry, which zipfile reads
    broken[at + 10:at + 12] = (99).to_bytes(2, "little")  # its compression method: unknown
    weights.write_bytes(bytes(broken))
    _reseal(sp, weights)
    refused_line(capsys, ["upsample", str(lr), "--model", str(sp), "-o", str(tmp_path / "up.nii.gz")],
                 "does not hold a valid global-linear model")
    weights.write_bytes(good)
    weights = tmp_path / json.loads(sp.read_text())["weights"]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**9,)})
    with zipfile.ZipFile(weights, "a") as z:
        z.writestr("huge.npy", header.getvalue() + bytes(64))
    _reseal(sp, weights)
    refused_line(capsys, ["upsample", str(lr), "--model", str(sp), "-o", str(tmp_path / "up.nii.gz")],
                 "its array huge promises (1000000000,) of float64, more than the file holds")
    assert not (tmp_path / "up.nii.gz").exists()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("shipped,method", [("espcn_x2", "espcn-hetero"), ("espcn_x2", "deep-hetero-var1"),
                                            ("espcn-hetero-var1_x2", "espcn-hetero"),
                                            ("espcn-hetero_x2", "espcn")])
def test_a_method_that_is_not_its_networks_is_refused(tmp_path, lr, capsys, shipped, method):
    """A plain network labelled espcn-hetero had run with no uncertainty file written ('wrote ' of nothing), a var1
    network labelled espcn-hetero ended in an internal error, and 'iqt seal' sealed such a sidecar (a provenance
    audit). Its training command says the same method, so that the check against it (the test below) passes."""
    training = json.loads((MODELS_DIR / f"{shipped}.json").read_text())["training"]
    training["command"] = training["command"].replace(f"--method {shipped.split('_')[0]} ", f"--method {method} ")
    sp = _crafted(tmp_path, shipped, method=method, training=training)
    net = json.loads(sp.read_text())["arch"]["name"]
    refused_line(capsys, ["upsample", lr, "--model", sp, "-o", tmp_path / "up.nii.gz"],
                 f"method {method!r}", f"its network's {net!r}")
    side = json.loads(sp.read_text())
    side.pop(SEAL)
    sp.write_text(json.dumps(side))
    before = sp.read_bytes()
    refused_line(capsys, ["seal", sp], f"method {method!r}", f"its network's {net!r}", "so it is not sealed")
    assert sp.read_bytes() == before and not list(tmp_path.glob("up*"))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("shipped,method", [("biqt_x2", "rf"), ("rf_x2", "global-linear"), ("rf_x2", "biqt"),
                                            ("espcn-hetero_x2", "espcn-hetero-var1")])
def test_a_method_its_training_command_did_not_give_is_refused(tmp_path, lr, capsys, shipped, method):
    """A forest's method relabelled (biqt's arrays as rf: its sigma map nine times too confident; rf's as
    global-linear) ran and was sealed, the arrays fitting either method (a review); a CNN's is checked so too."""
    sp = _crafted(tmp_path, shipped, method=method)
    said = f"its method {method!r} is not the method {shipped.split('_')[0]!r} its training command gave"
    refused_line(capsys, ["upsample", lr, "--model", sp, "-o", tmp_path / "up.nii.gz"], said)
    side = json.loads(sp.read_text())
    side.pop(SEAL)
    sp.write_text(json.dumps(side))
    before = sp.read_bytes()
    refused_line(capsys, ["seal", sp], said, "so it is not sealed")
    assert sp.read_bytes() == before and not list(tmp_path.glob("up*"))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("sealed", [False, True], ids=["unsealed", "sealed"])
@pytest.mark.parametrize("shipped", ["global-linear_x1x1x2", "espcn_x1x1x2"])
def test_a_factor_its_training_command_did_not_give_is_refused(tmp_path, lr, capsys, shipped, sealed):
    """A through-plane model's factor moved to another axis (layer shapes and a forest's widths depend on the product
    only) had been sealed by 'iqt seal' and run to a wrong result, though its training.command says --factor 1,1,2
    (a provenance audit); one sealed so by an earlier 'iqt seal' still ran, exit 0 (a review)."""
    side = json.loads((MODELS_DIR / f"{shipped}.json").read_text())
    edits = {"factor": [2, 1, 1]}
    if "arch" in side:
        edits["arch"] = {**side["arch"], "factor": [2, 1, 1]}
    sp = _crafted(tmp_path, shipped, **edits)
    if not sealed:
        side = json.loads(sp.read_text())
        side.pop(SEAL)
        sp.write_text(json.dumps(side))
    before = sp.read_bytes()
    for argv in (["upsample", lr, "--model", sp, "-o", tmp_path / "up.nii.gz"], ["seal", sp]):
        refused_line(capsys, argv, "its factor [2, 1, 1] is not the factor 1,1,2 its training command gave")
    assert sp.read_bytes() == before and not (tmp_path / "up.nii.gz").exists()


@pytest.mark.parametrize("given", ["--fa 1,1,2", "--fa=1,1,2", "--fact 1,1,2", "--factor=1,1,2", "--factor 2 --factor 1,1,2"])
def test_a_factor_given_as_train_reads_it_is_read_so(given):
    """--fa, an abbreviation 'iqt train' takes for --factor, had been passed over and train's default 2 assumed, so a
    model trained so was refused as edited by 'iqt seal' and 'iqt upsample' (a review)."""
    from ImageQualityTransferLib.fileio.model_files import trained_factors

    for command in (f"iqt train --method global-linear --subjects a {given} -o m.npz",
                    f"iqt --threads 1 train --subjects train {given} -o m.npz --option-of-another-version 3"):
        assert trained_factors({"training": {"command": command}}) == (1, 1, 2), command
    for unread in ("iqt train --subjects a --factor", "iqt train --factor 1,1,2 -o m.npz", "iqt train --subjects 'a"):
        assert trained_factors({"training": {"command": unread}}) is None, unread


@pytest.mark.filterwarnings("ignore")
def test_a_model_trained_with_fa_runs_and_seals(tmp_path, lr, capsys):
    command = json.loads((MODELS_DIR / "global-linear_x1x1x2.json").read_text())["training"]["command"]
    training = {**json.loads((MODELS_DIR / "global-linear_x1x1x2.json").read_text())["training"],
                "command": command.replace("--factor 1,1,2", "--fa 1,1,2")}
    sp = _crafted(tmp_path, "global-linear_x1x1x2", training=training)
    assert main([str(a) for a in ["upsample", lr, "--model", sp, "-o", tmp_path / "up.nii.gz"]]) == 0
    side = json.loads(sp.read_text())
    side.pop(SEAL)
    sp.write_text(json.dumps(side))
    assert main(["seal", str(sp)]) == 0


def _cnn_with(tmp_path: Path, edit) -> Path:
    """A copy of the shipped espcn ×2 model with every tensor passed through `edit`, its checksum and seal made again."""
    torch = pytest.importorskip("torch")
    sp = _crafted(tmp_path, "espcn_x2")
    weights = tmp_path / json.loads(sp.read_text())["weights"]
    torch.save({k: edit(v) for k, v in torch.load(weights, weights_only=True).items()}, weights)
    _reseal(sp, weights)
    return sp


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dtype", ["float16", "float64", "complex64", "int8"])
def test_cnn_weights_other_than_float32_are_refused(tmp_path, lr, capsys, dtype):
    """Weights converted to float16, float64, complex64 (torch's own warning that the imaginary part is dropped) ran
    with exit 0; 'iqt train' writes float32 only (a provenance audit). float64 is refused too: no tool of this
    project writes it, and it may hold values float32 cannot."""
    torch = pytest.importorskip("torch")
    sp = _cnn_with(tmp_path, lambda v: v.to(getattr(torch, dtype)))
    refused_line(capsys, ["upsample", lr, "--model", sp, "-o", tmp_path / "up.nii.gz"],
                 f"the weights it names hold {dtype}", "'iqt train' writes float32")
    assert not (tmp_path / "up.nii.gz").exists()


@pytest.mark.filterwarnings("ignore")
def test_all_zero_cnn_weights_are_refused(tmp_path, lr, capsys):
    """All-zero weights gave cubic's output bit for bit, labelled 'espcn, given model' (a provenance audit)."""
    sp = _cnn_with(tmp_path, lambda v: v * 0)
    refused_line(capsys, ["upsample", lr, "--model", sp, "-o", tmp_path / "up.nii.gz"], "the weights it names are all zero")
    assert not (tmp_path / "up.nii.gz").exists()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("edits,said", [({"tree0_val_var": lambda x: -x}, "holds negative leaf variances"),
                                        ({"gl_W": lambda x: x.astype(np.complex64)}, "gl_W holds complex64"),
                                        ({"tree0_threshold": lambda x: x.astype(np.int32)}, "holds int32"),
                                        ({"tree0_left": lambda x: x.astype(np.float32)}, "where 'iqt train' writes integers"),
                                        ({"variance_scale": lambda x: -x}, "its array variance_scale holds a negative"),
                                        ({"tree0_beta": lambda x: -x}, "its array tree0_beta holds leaf noise precisions"),
                                        ({"tree1_beta": lambda x: x * 0}, "its array tree1_beta holds leaf noise precisions")],
                         ids=["negative-val-var", "complex", "int", "float-index", "negative-variance-scale",
                              "negative-beta", "zero-beta"])
def test_forest_arrays_iqt_train_never_writes_are_refused(tmp_path, lr, capsys, edits, said):
    """A negative leaf variance gave another sigma map without a word, complex and integer arrays were cast silently
    (a provenance audit); a negative variance_scale or biqt beta ended in numpy's 'invalid value encountered in sqrt'
    and a refusal of non-finite values that blamed the input (a review)."""
    shipped = "biqt_x2" if any(k.endswith("beta") for k in edits) else "rf_x2"
    with np.load(MODELS_DIR / f"{shipped}.npz") as z:
        edits = {k: e for k, e in edits.items() if k in z.files}
    assert edits
    sp = _forest_with(tmp_path, shipped, **edits)
    refused_line(capsys, ["upsample", lr, "--model", sp, "--uncertainty", tmp_path / "unc.nii.gz", "-o",
                          tmp_path / "up.nii.gz"], said)
    assert not list(tmp_path.glob("u*.nii.gz"))


def test_all_zero_forest_maps_are_said(tmp_path, lr, capsys):
    """All-zero maps give cubic's result under the model's name: said in one warning line (a provenance audit; a
    model of zeros is a unit test's, test_forest.py, so not refused)."""
    with np.load(MODELS_DIR / "rf_x2.npz") as z:
        edits = {k: (lambda x: x * 0) for k in z.files if k == "gl_W" or k.endswith("_W_q")}
    sp = _forest_with(tmp_path, **edits)
    capsys.readouterr()
    assert main([str(a) for a in ["upsample", lr, "--model", sp, "-o", tmp_path / "up.nii.gz"]]) == 0
    said = [ln for ln in capsys.readouterr().err.splitlines() if "are all zero" in ln]
    assert len(said) == 1 and "cubic interpolation's result under the name rf" in said[0], said


@pytest.mark.filterwarnings("ignore")
def test_a_cnn_archive_torch_cannot_read_says_what_to_do(tmp_path, lr, capsys):
    """A .pt whose zip directory points its first entry past the file's end (behind a sidecar made to match) was refused
    with torch's miniz text alone ('...failed reading zip archive: invalid header or archive is corrupted...'), with no
    word of what to do (a provenance audit)."""
    import struct

    side = json.loads((MODELS_DIR / "espcn_x2.json").read_text())
    data = bytearray((MODELS_DIR / "espcn_x2.pt").read_bytes())
    central = struct.unpack_from("<I", data, data.rfind(b"PK\x05\x06") + 16)[0]
    struct.pack_into("<I", data, central + 42, 0x7FFFFFF0)  # the first entry's local header offset
    (tmp_path / "m.pt").write_bytes(bytes(data))
    side.update(weights="m.pt", sha256=sha256(tmp_path / "m.pt"))
    side.pop(SEAL)
    (tmp_path / "m.json").write_text(json.dumps(side))
    refused_line(capsys, ["upsample", lr, "--model", tmp_path / "m.pt", "-o", tmp_path / "up.nii.gz"],
                 "m.pt", "re-download or retrain")
    assert not (tmp_path / "up.nii.gz").exists()
