"""Bad and careless input, over every command: exit status 2, one line on stderr naming the problem, nothing written,
every input byte-identical afterwards. Then the same rules for the Slicer processing's target nodes."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ImageQualityTransferLib import IQTError, fileio
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core.volume import Volume
from ImageQualityTransferLib.fileio import checksums
from ImageQualityTransferLib.fileio import model_files


@pytest.fixture(scope="module")
def work(small_subject, tmp_path_factory):
    """A folder of inputs, good and bad, made from the phantom subject."""
    d = tmp_path_factory.mktemp("bad_inputs")
    subj = d / "subj"
    shutil.copytree(small_subject, subj)
    (subj / "dwi.json").write_text('{"Manufacturer": "phantom"}')
    assert main(["degrade", str(subj / "dwi.nii.gz"), "-o", str(d / "lr.nii.gz"), "--mask-out", str(d / "m.nii.gz")]) == 0
    lr = fileio.load_tensor(d / "lr.nii.gz")
    mask = fileio.load_mask(d / "m.nii.gz")
    t = lr.data
    fileio.save_tensor(lr.replace(data=np.zeros_like(t)), d / "zero.nii.gz")
    fileio.save_tensor(lr.replace(data=-t), d / "negative.nii.gz")
    fileio.save_tensor(lr.replace(data=t * 1e-6), d / "m2s.nii.gz")
    fileio.save_tensor(lr.replace(data=t * 1e3), d / "um2ms.nii.gz")
    fileio.save_tensor(lr, d / "lr.nrrd")
    fileio.save_tensor(Volume(t[1:, 1:, 1:], lr.affine, "tensor"), d / "other_grid.nii.gz")  # another subject's grid
    text = (d / "lr.nrrd").read_bytes()
    head, _, body = text.partition(b"\n\n")
    lines = [ln for ln in head.split(b"\n") if not ln.startswith(b"measurement frame")]
    (d / "scaled_frame.nrrd").write_bytes(b"\n".join(lines + [b"measurement frame: (2,0,0) (0,2,0) (0,0,2)"]) + b"\n\n" + body)
    shifted = mask.affine.copy()
    shifted[:3, 3] += 20.0
    fileio.save_mask(Volume(mask.data, shifted, "mask"), d / "shifted_mask.nii.gz")
    fileio.save_scalar(Volume(np.ones(lr.shape3, np.float32), lr.affine, "scalar"), d / "scalar.nii.gz")
    (d / "truncated.nii.gz").write_bytes((d / "lr.nii.gz").read_bytes()[:2000])
    (d / "tensor.mif").write_bytes(b"mrtrix image\ndim: 4,4,4,6\nvox: 2,2,2\nlayout: +0,+1,+2,+3\n"
                                   b"datatype: Float32LE\nfile: . 128\nEND\n".ljust(128) + bytes(4 * 384))
    os.symlink(d / "lr.nii.gz", d / "link.nii.gz")
    (d / "sub").mkdir()
    (d / "folder.nii.gz").mkdir()
    for name, scale in (("sm2", 1e6), ("nob0", None)):
        s = d / name
        shutil.copytree(small_subject, s)
        b = np.loadtxt(s / "dwi.bval")
        np.savetxt(s / "dwi.bval", b * scale if scale else np.where(b == 0, 1000.0, b)[None], fmt="%g")
    for name in ("zerocol", "shear", "nanorigin", "msum2", "allb0"):  # headers and tables as other tools write them
        s = d / name
        shutil.copytree(small_subject, s)
        img = nib.load(s / "dwi.nii.gz")
        affine = img.affine.copy()
        if name == "zerocol":
            affine[:3, 2] = 0
        if name == "shear":
            affine[0, 1] = 1.0
        if name == "nanorigin":
            affine[0, 3] = np.nan
        if name in ("zerocol", "shear", "nanorigin"):  # the sform alone: nibabel cannot make a qform of either
            h = img.header.copy()
            h["qform_code"], h["sform_code"] = 0, 1
            h["srow_x"], h["srow_y"], h["srow_z"] = affine[:3]
            nib.save(nib.Nifti1Image(np.asarray(img.dataobj), None, header=h), s / "dwi.nii.gz")
        b = np.loadtxt(s / "dwi.bval")
        if name in ("msum2", "allb0"):
            np.savetxt(s / "dwi.bval", (b / 1000 if name == "msum2" else 0 * b)[None], fmt="%g")
    thin = d / "thin"  # two slices of a brain
    shutil.copytree(small_subject, thin)
    img = nib.load(thin / "dwi.nii.gz")
    z = img.shape[2] // 2
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, z:z + 2], img.affine, img.header), thin / "dwi.nii.gz")
    assert main(["fit", str(subj / "dwi.nii.gz"), "-o", str(d / "fit.nii.gz"), "--mask-out", str(d / "fitmask.nii.gz")]) == 0
    from helpers import changed_copy

    changed_copy(d / "fit.nii.gz", d / "fitcopy.nii.gz", d / "fitmask.nii.gz")  # it or its copy is refused as --pred
    sheared = fileio.load_tensor(d / "lr.nii.gz")
    affine = sheared.affine.copy()
    affine[0, 1] = 1.0
    fileio.save_tensor(sheared.replace(affine=affine), d / "shear_dti.nii.gz")
    fileio.save_mask(mask.replace(affine=affine), d / "shear_seeds.nii.gz")
    shutil.copytree(small_subject, d / "copy" / "subj")  # another subject of the same name
    shutil.copytree(small_subject, d / "twin")  # the same subject under another name
    (d / "nosidecar").mkdir()  # a forest's weights without their sidecar: refused in a CNN's words (a training audit)
    shutil.copy(Path(model_files.MODELS_DIR) / "rf_x2.npz", d / "nosidecar" / "rf1.npz")
    plain = d / "plain"  # the same scan stored uncompressed (a training audit: a second subject, exit 0)
    shutil.copytree(small_subject, plain, ignore=shutil.ignore_patterns("dwi.nii.gz"))
    with gzip.open(small_subject / "dwi.nii.gz", "rb") as src, open(plain / "dwi.nii", "wb") as dst:
        shutil.copyfileobj(src, dst)
    nobval = d / "nobval"
    shutil.copytree(small_subject, nobval)
    (nobval / "dwi.bval").unlink()
    both = d / "both"  # a folder with dwi.nii.gz and dwi.nii: one was trained on unseen
    shutil.copytree(small_subject, both)
    nib.save(nib.load(str(both / "dwi.nii.gz")), str(both / "dwi.nii"))
    # a sidecar edited and sealed again (its checksum made anew) beside its weights saved again (other bytes: a
    # shipped model's own bytes under other settings are refused before), so that the weights' own checks are
    # reached: its factor says 3; and one edited without (the CNN's output scale tenfold: results 2.8x off, exit 0)
    for name, stem, suffix in (("global-linear_x2", "edited_gl", ".npz"), ("espcn_x2", "edited_cnn", ".pt"),
                               ("espcn_x2", "tampered", ".pt")):
        src = Path(model_files.MODELS_DIR) / (name + suffix)
        if suffix == ".npz":
            with np.load(src, allow_pickle=False) as z:
                np.savez(d / (stem + suffix), **{k: z[k] for k in z.files})
        elif stem == "tampered" or importlib.util.find_spec("torch") is None:  # (the CNN cases then skip)
            shutil.copy(src, d / (stem + suffix))
        else:
            import torch

            torch.save(torch.load(src, weights_only=True), d / (stem + suffix))
        side = json.loads((Path(model_files.MODELS_DIR) / (name + ".json")).read_text())
        side.update(weights=stem + suffix, sha256=checksums.sha256(d / (stem + suffix)))
        if stem == "tampered":
            side["normalisation"]["out_scale"] = [10 * v for v in side["normalisation"]["out_scale"]]
            (d / (stem + ".json")).write_text(json.dumps(side))
        else:
            # its command's factor too (gl), or no command (cnn), so that the check of the factor against the command
            # (model_files.check_trained_factor), which comes first, lets these reach the weights' own checks
            training = {**side["training"], "command": side["training"]["command"].replace("--factor 2", "--factor 3")}
            if suffix == ".pt":
                training.pop("command")
            side.update(factor=3, training=training)
            model_files.write_sidecar(d / (stem + ".json"), {k: v for k, v in side.items() if k != model_files.SEAL})
    for suffix in (".npz", ".json"):  # a model pair copied under a new name, its sidecar unedited
        shutil.copy(Path(model_files.MODELS_DIR) / f"global-linear_x2{suffix}", d / f"gl_copy{suffix}")
    tiny = d / "tiny"
    tiny.mkdir()
    dwi = fileio.load_dwi(subj / "dwi.nii.gz")
    fileio.save_dwi(dwi.replace(data=dwi.data[:3, :3, :3]), tiny / "dwi.nii.gz")

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(d / "pwned"),))

    (d / "evil.pt").write_bytes(pickle.dumps({"w": Evil()}))
    side = json.loads((Path(model_files.MODELS_DIR) / "espcn_x2.json").read_text())
    side.update(weights="evil.pt", sha256=checksums.sha256(d / "evil.pt"))  # sealed anew: torch's load must refuse it
    model_files.write_sidecar(d / "evil.json", {k: v for k, v in side.items() if k != model_files.SEAL})
    (d / "existing_file").write_text("x")
    torch = pytest.importorskip("torch")
    from ImageQualityTransferLib.methods.cnn import model_io

    shipped = model_io.load(model_io.shipped("espcn", 2))
    with torch.no_grad():
        next(shipped.net.parameters()).fill_(float("nan"))
    model_io.save(shipped.net, {k: v for k, v in shipped.meta.items() if k not in ("sha256", "weights")}, d / "nan.pt")
    return d


# (argv with {d} for the work folder, a part of the expected message)
CASES = [
    # outputs that are inputs, or written twice in one run
    ("upsample {d}/lr.nii.gz -o {d}/lr.nii.gz", "is an input"),
    ("upsample {d}/lr.nii.gz -o {d}/sub/../lr.nii.gz", "is an input"),
    ("upsample {d}/lr.nii.gz -o {d}/link.nii.gz", "is an input"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method biqt --uncertainty {d}/lr.nii.gz", "is an input"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method biqt --uncertainty {d}/o.nii.gz", "written twice"),
    ("upsample {d}/lr.nii.gz -o {d}/u_direction.nii.gz --method biqt --uncertainty {d}/u.nii.gz", "written twice"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method biqt --mask {d}/o.nii.gz", "is an input"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method biqt --samples 5 --propagate --seeds {d}/o_fa_mean.nii.gz", "is an input"),
    ("fit {d}/subj/dwi.nii.gz -o {d}/subj/dwi.nii.gz", "is an input"),
    ("fit {d}/subj/dwi.nii.gz -o {d}/t.nii.gz --mask-out {d}/subj/dwi.nii.gz", "is an input"),
    ("mask {d}/subj/dwi.nii.gz -o {d}/subj/dwi.nii.gz", "is an input"),
    ("degrade {d}/subj/dwi.nii.gz -o {d}/subj/dwi.nii.gz", "is an input"),
    ("degrade {d}/subj/dwi.nii.gz -o {d}/t.nii.gz --mask-out {d}/t.nii.gz", "written twice"),
    ("evaluate --pred {d}/lr.nii.gz --truth {d}/lr.nii.gz --mask {d}/m.nii.gz --json {d}/lr.nii.gz", "is an input"),
    ("evaluate --pred {d}/lr.nii.gz --truth {d}/lr.nii.gz --mask {d}/m.nii.gz --json {d}/o.nii.gz", "must end in .json"),
    ("train --method global-linear --subjects {d}/subj -o {d}/subj/dwi.npz", "is an input"),
    ("train --method rf --subjects {d}/subj -o {d}/subj/dwi.nii.gz", "is an input"),  # said before the file type
    ("track {d}/lr.nii.gz --seeds {d}/m.nii.gz -o {d}/t.trk --also {d}/t.trk", "written twice in this run (as two "
                                                                            "tractograms)"),
    ("report -o {d}/lr.nii.gz --subject {d}/subj", "must end in .html"),
    # paths that cannot be written
    ("upsample {d}/lr.nii.gz -o {d}/missing/o.nii.gz", "does not exist"),
    ("upsample {d}/lr.nii.gz -o {d}/folder.nii.gz", "is a folder"),
    ("upsample {d}/lr.nii.gz -o {d}/sub --method cubic", "sub: is a folder; give a file name in it for the tensor output such as"),
    ("upsample {d}/lr.nii.gz -o {d}/o.txt", "must end in"),
    # a mask named .nrrd beside a NRRD tensor output: said why, and the name to give (it said "must end in" only;
    # --uncertainty's maps are written as NRRD since 0.21.0)
    ("fit {d}/subj/dwi.nii.gz -o {d}/t.nrrd --mask-out {d}/m.nrrd", "m.nrrd: the mask output name must end in .nii "
     "or .nii.gz or .mif or .mif.gz: NRRD is written for tensor outputs and 'iqt upsample --uncertainty' maps only; the mask output is "
     "NIfTI (which Slicer loads too) or MRtrix's .mif: give "),
    ("upsample {d}/lr.nii.gz -o {d}/o.nrrd --method biqt --uncertainty {d}/u.txt", "u.txt: the std map name must end "
     "in .nii or .nii.gz or .nrrd or .nhdr"),
    ("evaluate --pred {d}/lr.nii.gz --truth {d}/lr.nii.gz --mask {d}/m.nii.gz --json {d}/missing/x.json", "does not exist"),
    ("propagate {d}/lr.nii.gz -o {d}/existing_file --method biqt", "not a folder"),
    ("demo -o {d}/newdemo --methods no-such-method", "unknown method"),
    # values that would give a wrong answer
    ("upsample {d}/zero.nii.gz -o {d}/o.nii.gz --method espcn", "zero.nii.gz: the input holds no tensor"),
    ("upsample {d}/negative.nii.gz -o {d}/o.nii.gz --method espcn", "negative.nii.gz: the input tensors' sign is inverted"),
    ("upsample {d}/m2s.nii.gz -o {d}/o.nii.gz --method rf", "m2s.nii.gz: the input tensor values look like they are not in mm^2/s"),
    ("upsample {d}/m2s.nii.gz -o {d}/o.nii.gz --method biqt", "not in mm^2/s"),
    ("upsample {d}/um2ms.nii.gz -o {d}/o.nii.gz --method global-linear", "not in mm^2/s"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method cubic --mask {d}/shifted_mask.nii.gz", "another position"),
    ("upsample {d}/scaled_frame.nrrd -o {d}/o.nii.gz --method cubic", "not a rotation"),
    ("upsample {d}/scalar.nii.gz -o {d}/o.nii.gz", "not a diffusion tensor"),
    ("upsample {d}/truncated.nii.gz -o {d}/o.nii.gz", "truncated"),
    ("upsample {d}/tensor.mif -o {d}/o.nii.gz --tensor-order mrtrix", "tensor.mif: its header has no 3-row 'transform'"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method espcn --model {d}/evil.pt", "refused"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method espcn --model {d}/nan.pt", "non-finite"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method espcn-hetero --model {d}/nan.pt", "use --method espcn"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method espcn --model {d}/missing.pt", "not found"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method rf --model {d}/missing.npz", "missing.npz: model file not found"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method rf --model {d}/sub", "a folder; give the model file"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method espcn --model " + str(Path(model_files.MODELS_DIR) / "rf_x2.npz"),
     "it is an rf model: run it with --method rf"),  # without --method it runs rf (test_model_named.py)
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method global-linear --factor 3 --model {d}/edited_gl.npz",
     "edited_gl.npz: it answers 48 values per low-res voxel, its sidecar's factors 3 need 162"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method espcn --factor 3 --model {d}/edited_cnn.pt",
     "differs from its network's"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method espcn --model {d}/tampered.pt", "do not match its checksum"),
    ("train --method rf --subjects {d}/nobval -o {d}/m.npz", "no dwi.bval in this folder"),
    ("train --method rf --subjects {d}/both -o {d}/m.npz", "holds both dwi.nii.gz and dwi.nii"),
    ("train --method espcn --subjects {d}/subj -o {d}/m.pt --init " + str(Path(model_files.MODELS_DIR) / "rf_x2.npz"),
     "it is an rf model, which cannot initialise a network"),  # it advised 'run it with --method rf'
    ("benchmark {d}/both --methods cubic", "holds both dwi.nii.gz and dwi.nii"),
    ("train --method rf --subjects {d}/subj {d}/sub/../subj -o {d}/m.npz", "given twice"),
    # a copy of a subject under another name: counted twice with exit 0
    ("train --method rf --subjects {d}/subj {d}/copy/subj -o {d}/m.npz", "byte-identical to that of"),
    ("train --method rf --subjects {d}/subj {d}/plain -o {d}/m.npz", "holds the bytes, decompressed, of that of"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --model {d}/nosidecar/rf1.npz",
     "rf1.json: model sidecar not found; 'iqt train' writes one beside each model, naming its method"),
    ("train --method espcn --subjects {d}/subj -o {d}/m.pt --nproc 3", "--nproc 3: a batch of 8 patches"),
    ("track {d}/negative.nii.gz --seeds {d}/m.nii.gz -o {d}/t.trk", "sign is inverted"),
    ("fit {d}/sm2/dwi.nii.gz -o {d}/t.nii.gz", "s/m^2"),
    ("fit {d}/nob0/dwi.nii.gz -o {d}/t.nii.gz", "no b=0"),
    ("degrade {d}/tiny/dwi.nii.gz --factor 4 -o {d}/t.nii.gz", "too small"),
    ("lesion-check {d}/subj --methods biqt --radius 0", "--radius"),
    ("lesion-check {d}/subj --methods biqt --radius 500", "--radius 500: a lesion that size does not fit"),
    ("lesion-check {d}/subj {d}/twin --methods biqt", "is byte-identical to that of"),
    ("report -o {d}/r.html --no-tracts --n-seeds 10", "--n-seeds with --no-tracts"),
    ("benchmark {d}/subj {d}/twin --methods cubic", "is byte-identical to that of"),
    ("lesion-check {d}/thin --methods biqt", "thin: the brain is 8 mm across at its thinnest, too thin for a lesion"),
    ("propagate {d}/lr.nii.gz -o {d}/prop --method biqt --n-seeds 0", "--n-seeds"),
    ("train --method espcn --subjects {d}/subj -o {d}/m.pt --minutes 0", "--minutes"),
    ("train --method espcn --subjects {d}/subj -o {d}/m.pt --ema 1", "--ema 1: give a decay in [0, 1)"),
    ("train --method rf --subjects {d}/subj -o {d}/m.npz --ema 0.999", "--ema: does not apply to 'rf'"),
    ("train --method espcn --subjects {d}/subj -o {d}/m.pt --refit-leaves", "--refit-leaves: does not apply to 'espcn'"),
    ("train --method biqt --subjects {d}/subj -o {d}/m.npz --leaf-ridge 0.01", "'biqt' has none to set"),
    ("train --method rf --subjects {d}/subj -o {d}/m.npz --leaf-ridge -1", "--leaf-ridge -1: give a ridge of 0 or more"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --factor 2.5", "factor"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method biqt --factor 1,1,4", "--model for factors 1,1,4"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --factor 2 --voxel-size 1", "--voxel-size"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --voxel-size 1e-308", "would need factors above 10,000"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --factor 1,1," + "9" * 320, "give factors of at most 10,000"),
    ("train --method rf --subjects {d}/subj -o {d}/m.npz --noise-fraction 1.5", "--noise-fraction 1.5: give a share"),
    ("degrade {d}/tiny/dwi.nii.gz --factor 1,1,4 --slice-gap 4 -o {d}/t.nii.gz", "too small for factors 1,1,4 with a slice gap of 4"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method cubic --mc-samples 3", "takes no Monte Carlo samples"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method cubic --device cuda", "'cubic' runs on the CPU only"),
    ("view {d}/lr.nii.gz --method biqt --factor 1,1,4", "biqt has shipped models for"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method espcn-hetero-var1 --mc-samples 1", "one sample gives no parameter"),
    ("upsample {d}/lr.nrrd -o {d}/o.nii.gz --method cubic --tensor-order fsl", "leave --tensor-order fsl out"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method cubic --tensor-order mrtrix", "is for 4D six-volume files"),
    # a reference on another grid than the prediction: said of the prediction, not of the mask
    ("evaluate --pred {d}/lr.nii.gz --truth {d}/other_grid.nii.gz --mask {d}/m.nii.gz", "the prediction (16, 18, 14) is not"),
    # headers and gradient tables as other tools write them
    ("fit {d}/zerocol/dwi.nii.gz -o {d}/t.nii.gz", "has a zero or dependent voxel axis"),
    ("fit {d}/nanorigin/dwi.nii.gz -o {d}/t.nii.gz", "has a non-finite (NaN or Inf) origin"),
    ("track {d}/shear_dti.nii.gz --seeds {d}/shear_seeds.nii.gz -o {d}/t.trk", "the tensors' grid is sheared"),
    ("fit {d}/shear/dwi.nii.gz -o {d}/t.nrrd", "which a Slicer tensor NRRD cannot hold"),
    ("fit {d}/msum2/dwi.nii.gz -o {d}/t.nii.gz", "look like ms/um^2"),
    ("mask {d}/msum2/dwi.nii.gz -o {d}/t.nii.gz", "look like ms/um^2"),
    ("evaluate --pred {d}/fitcopy.nii.gz --truth {d}/fit.nii.gz --mask {d}/fitmask.nii.gz --dwi {d}/allb0/dwi.nii.gz",
     "only 0 diffusion-weighted volumes"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method cubic --factor 1000", "GiB of memory; give smaller factors"),
    ("benchmark {d}/subj {d}/sub/../subj --methods cubic", "given twice"),  # the ratios were mixed
    ("benchmark {d}/subj {d}/copy/subj --methods cubic", "has the name of"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method global-linear --model {d}/gl_copy.npz",
     "gl_copy.json names global-linear_x2.npz as its weights, not gl_copy.npz"),
    ("upsample {d}/lr.nii.gz -o {d}/o.nii.gz --method global-linear --model {d}/gl_copy.json",
     "gl_copy.json names global-linear_x2.npz as its weights, not gl_copy.npz"),
    ("benchmark {d}/subj --methods cubic,linear --tta", "--tta: cubic, linear are unchanged by flips"),
    ("view {d}/lr.nii.gz --host nosuchhost.invalid --port 0", "--host nosuchhost.invalid: the host nosuchhost.invalid cannot be resolved"),
    ("view {d}/lr.nii.gz --host 192.0.2.1 --port 0", "--host 192.0.2.1: 192.0.2.1 is not an address of this machine"),
    ("iqt-nothing", "invalid choice"),
]


def _state(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (_digest(p) if p.is_file() else "dir") for p in sorted(folder.rglob("*"))}


_DIGESTS: dict = {}  # (path, inode, size, mtime, ctime) -> SHA256 of the bytes read under that stat


def _digest(path: Path) -> str:
    """The file's SHA256, read again only where its stat changed since a read (as git's index does; the folder's 28 MB
    were hashed twice a test): any write or rename sets its ctime. A file changed in the last 2 s is always reread,
    as a second write within one timestamp tick would leave its stat as it was."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if time.time_ns() - st.st_ctime_ns < 2_000_000_000:
            return digest
        _DIGESTS[key] = digest
    return _DIGESTS[key]


@pytest.mark.parametrize("argv, message", CASES, ids=[c[0].split()[0] + ":" + c[1] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(work, argv, message, capsys):
    before = _state(work)
    rc = _run(argv.format(d=work).split())
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and "weights_only" not in err
    assert _state(work) == before  # nothing written, nothing changed, no empty folder, no temporary file
    assert not (work / "pwned").exists()


def _run(argv) -> int:
    """main's status, also where argparse exits (unknown command, malformed option)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_an_unmasked_input_without_a_mask_gives_one_warning(work, small_subject, tmp_path):
    """Tensors over the whole field of view (Slicer's or dipy's fit without a mask): the result is only degraded, so a
    warning, not an error; with the mask given, none."""
    lr, out = tmp_path / "unmasked.nii.gz", tmp_path / "o.nii.gz"
    assert main(["degrade", str(small_subject / "dwi.nii.gz"), "--style", "unmasked", "-o", str(lr),
                 "--mask-out", str(tmp_path / "m.nii.gz")]) == 0
    proc = subprocess.run([sys.executable, "-m", "ImageQualityTransferLib", "upsample", str(lr), "-o", str(out),
                           "--method", "cubic"], capture_output=True, text=True)
    assert proc.returncode == 0 and out.exists()
    said = proc.stderr.splitlines()  # one warning, over lines of whole pieces (methods/base.py warning_lines)
    assert len(said) >= 2 and all(line.startswith(f"iqt: warning: {lr}: ") for line in said), said
    assert max(len(line) - len("iqt: warning: ") for line in said) <= 200 + len(str(lr)), said
    assert said[-1].endswith("give --mask with a brain mask to leave out scalp and background"), said
    proc = subprocess.run([sys.executable, "-m", "ImageQualityTransferLib", "upsample", str(lr), "-o", str(out),
                           "--method", "cubic", "--mask", str(tmp_path / "m.nii.gz")], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""


def test_files_take_the_users_umask(work, tmp_path):
    old = os.umask(0o027)
    try:
        assert main(["upsample", str(work / "lr.nii.gz"), "-o", str(tmp_path / "o.nii.gz"), "--method", "cubic"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "o.nii.gz").stat().st_mode & 0o777 == 0o640


IN_MC_LOOP = """
import pathlib, sys
from ImageQualityTransferLib.methods.cnn import inference

run_network_mc = inference.run_network_mc
mark = pathlib.Path(sys.argv.pop())  # the file to make
sys.argv[0] = "iqt"

def marked(net, *args, **kwargs):  # the first sample's head marks the loop's start
    head = net.mean.head

    def first(h):
        net.mean.head = head
        mark.touch()
        return head(h)

    net.mean.head = first
    return run_network_mc(net, *args, **kwargs)

inference.run_network_mc = marked
from ImageQualityTransferLib.apps.entry import main
sys.exit(main())
"""


@pytest.mark.slow
def test_a_termination_signal_leaves_no_partial_output(work, tmp_path):
    """What a SLURM time limit or `docker stop` sends, during a long Monte Carlo run: exit 128 + signal, no file. The
    signal is sent once the run is in its Monte Carlo loop (a file its first sample makes): a fixed second's wait sent
    it before torch had loaded, as the import-time test below does. SIGTERM only: SIGHUP takes the same handler, whose
    exit status Testing/apps/test_view.py checks."""
    sig = signal.SIGTERM
    out, mark = tmp_path / "out", tmp_path / "in_mc_loop"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", IN_MC_LOOP, "upsample", str(work / "lr.nii.gz"), "-o",
                             str(out / "o.nii.gz"), "--method", "espcn-hetero-var1", "--mc-samples", "3000",
                             "--uncertainty", str(out / "u.nii.gz"), str(mark)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # however loaded the machine
        while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None and mark.exists(), proc.stderr.read() if proc.poll() is not None else "no loop in 120 s"
        proc.send_signal(sig)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert err.count("\n") == 1 and signal.Signals(sig).name in err
    assert list(out.iterdir()) == []


def _methods_signalled_while_importing(sig, during: str, ignoring: bool = False):
    """`iqt methods` run through the entry point, sent `sig` when `during` is first imported (an import hook), started
    with `sig` ignored where `ignoring` (as `nohup` or a script's `&` start it); the finished process."""
    code = ("import importlib.abc, os, signal, sys\n"
            + (f"signal.signal({int(sig)}, signal.SIG_IGN)\n" if ignoring else "")
            + "class Hook(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            f"        if name == {during!r}:\n"
            f"            os.kill(os.getpid(), {int(sig)})\n"
            "sys.meta_path.insert(0, Hook())\n"
            "sys.argv = ['iqt', 'methods']\n"
            "from ImageQualityTransferLib.apps.entry import main\n"
            "sys.exit(main())\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("sig, during", [(signal.SIGINT, "ImageQualityTransferLib.apps.cli.batch"),
                                         (signal.SIGTERM, "ImageQualityTransferLib.apps.cli.batch"),
                                         (signal.SIGINT, "numpy")])
def test_a_signal_while_the_command_line_is_imported_is_one_line(sig, during):
    """A Ctrl-C or SIGTERM while `iqt` imports its command modules (scipy, dipy: 0.4-0.8 s, before `apps.cli.main`
    could take the signals) printed an import's traceback. The entry point takes them first: one
    line, 128 + the signal. The signal is sent by an import hook when that module is first imported (numpy: the
    package's own import loaded it before the entry point ran, a 0.05-0.3 s window)."""
    done = _methods_signalled_while_importing(sig, during)
    assert done.returncode == 128 + sig, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.endswith("; it came before the command started: nothing was written\n"), done.stderr
    assert done.stdout == ""  # the command did not run


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT], ids=["SIGHUP", "SIGINT"])
def test_a_signal_the_process_was_started_ignoring_stays_ignored(sig):
    """`nohup iqt ...` starts the process with SIGHUP ignored, a shell script's `iqt ... &` with SIGINT ignored: the
    command had taken them back, and a closed terminal (or a Ctrl-C meant for the script's foreground) stopped it
    ("stopped by SIGHUP", 129: a review). The signal is sent during the command line's imports, where the entry point
    takes the others; the command runs to its end."""
    done = _methods_signalled_while_importing(sig, "ImageQualityTransferLib.apps.cli.batch", ignoring=True)
    assert done.returncode == 0 and "stopped" not in done.stderr and "interrupted" not in done.stderr, done.stderr
    assert "biqt" in done.stdout  # the command ran


def test_iqt_batch_leaves_an_ignored_ctrl_c_ignored_while_its_cluster_starts_and_closes():
    """A script's `iqt batch ... &` starts with SIGINT ignored: the cluster's start and close held Ctrl-C in a handler of
    their own, and a Ctrl-C then stopped the run there (130, a review), though the command keeps it ignored."""
    from ImageQualityTransferLib.apps.batch.local_cluster import _spawn_ignoring_ctrl_c
    from ImageQualityTransferLib.apps.cli.batch_stop import _ctrl_c_held

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        during_start, held = _spawn_ignoring_ctrl_c(lambda: signal.getsignal(signal.SIGINT))
        with _ctrl_c_held():
            during_close = signal.getsignal(signal.SIGINT)
        assert (during_start, held, during_close) == (signal.SIG_IGN, [], signal.SIG_IGN)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_termination_signal_after_the_outputs_is_a_finished_job(work, tmp_path):
    """SIGTERM once every output is written (a scheduler's time limit during the interpreter's teardown) exits 0: the
    job is done; with Python's own handler back it had been killed with 143. An in-process caller gets
    its own handler back."""
    out = tmp_path / "o.nii.gz"
    code = (f"import os, signal, sys; sys.argv = ['iqt', 'upsample', {str(work / 'lr.nii.gz')!r}, '-o', {str(out)!r}, "
            "'--method', 'cubic']; from ImageQualityTransferLib.apps.cli import main; c = main(); "
            "os.kill(os.getpid(), signal.SIGTERM); print('exit', c)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("exit 0"), done.stderr
    assert out.exists() and "stopped" not in done.stderr
    before = signal.getsignal(signal.SIGTERM)
    from ImageQualityTransferLib.apps import cli

    assert cli.main(["upsample", str(work / "lr.nii.gz"), "-o", str(tmp_path / "p.nii.gz"), "--method", "cubic"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------- the Slicer processing's nodes


def test_logic_refuses_an_input_node_as_its_output(work):
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from ImageQualityTransferLib.slicer import mrml
    from ImageQualityTransferLib.slicer import processing

    import slicer

    scene = slicer.vtkMRMLScene()
    lr = fileio.load_tensor(work / "lr.nii.gz")
    node = mrml.add_tensor_node(scene, lr, "dti")
    mask_node = mrml.add_scalar_node(scene, fileio.load_mask(work / "m.nii.gz").replace(kind="scalar"), "mask")
    other = mrml.add_tensor_node(scene, lr, "other")
    before = mrml.tensor_volume_from_node(node).data.copy()
    n_nodes = scene.GetNumberOfNodes()
    for targets, message in (({"tensor": node}, "is an input"), ({"uncertainty": mask_node}, "is an input")):
        with pytest.raises(IQTError, match=message):
            processing.run_on_nodes(scene, node, "biqt", 2, mask_node=mask_node, targets=targets)
    with pytest.raises(IQTError, match="chosen in both the 'High-resolution DTI' and the 'Cubic interpolation"):
        processing.run_on_nodes(scene, node, "cubic", 2, interpolate=True, targets={"tensor": other, "interpolated": other})
    np.testing.assert_array_equal(mrml.tensor_volume_from_node(node).data, before)
    assert scene.GetNumberOfNodes() == n_nodes  # no result node left behind


def test_a_signal_during_an_import_waits_for_its_end(tmp_path, monkeypatch):
    """SIGTERM while a module is being imported is raised once the import has ended: raised inside torch's import it
    reached pybind11's C++ and aborted the process with a C++ trace (status 134) instead of one line and 143."""
    from ImageQualityTransferLib.apps import cli

    (tmp_path / "slow_module.py").write_text("import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\n"
                                             "time.sleep(0.3)\nFINISHED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = cli.handle_signals()
    try:
        with pytest.raises(cli.Terminated):
            import slow_module  # noqa: F401

            assert slow_module.FINISHED
            time.sleep(5)  # the deferred signal arrives here
        assert sys.modules["slow_module"].FINISHED
    finally:
        cli.cancel_deferred()
        for sig, handler in before:
            signal.signal(sig, handler)
        sys.modules.pop("slow_module", None)


def test_the_same_signal_given_again_during_an_import_is_raised_at_once(tmp_path, monkeypatch):
    """A second Ctrl-C while an import hangs (torch on a stale network mount) stops it at once."""
    from ImageQualityTransferLib.apps import cli

    (tmp_path / "hung_module.py").write_text("import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\n"
                                             "time.sleep(0.3)\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = cli.handle_signals()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            import hung_module  # noqa: F401
        assert time.monotonic() - start < 10
    finally:
        cli.cancel_deferred()
        for sig, handler in before:
            signal.signal(sig, handler)
        sys.modules.pop("hung_module", None)


def test_training_onto_a_shipped_model_is_refused(work, capsys, monkeypatch, tmp_path):
    """'iqt train -o' onto a shipped model replaced the install's default without a word. Run on a copy of
    the models folder: a regression must not overwrite the checkout's own model (as a check of this test once did)."""
    import shutil

    models = tmp_path / "Models"
    models.mkdir()
    for name in ("registry.json", "global-linear_x2.npz", "global-linear_x2.json"):
        shutil.copy(Path(model_files.MODELS_DIR) / name, models / name)
    monkeypatch.setattr(model_files, "MODELS_DIR", models)
    before = _state(models)
    rc = _run(["train", "--method", "global-linear", "--subjects", str(work / "subj"), "-o",
               str(models / "global-linear_x2.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and "is a shipped model of this install" in err and err.count("\n") == 1, err
    assert "add --register to make it the default in its place" in err  # the same method and factor: it may
    rc = _run(["train", "--method", "global-linear", "--subjects", str(work / "subj"), "-o",
               str(models / "global-linear_x2.npz"), "--factor", "3"])
    err = capsys.readouterr().err  # another factor: --register would be refused too, so it is not offered
    assert rc == 2 and "--register cannot put this one there" in err and "add --register" not in err, err
    assert _state(models) == before


def test_the_install_s_model_folder_takes_only_models_trained_for_their_names(work, capsys, monkeypatch, tmp_path):
    """Other outputs in the install's model folder, and a model registered over another method's file, replaced or
    shadowed a shipped model (benchmark --json onto global-linear_x2.json; train --method global-linear -o
    rf_x2.npz --register gave rf_x2.json two registry entries and rf's default failed). Run on a copy of the folder."""
    import shutil

    from ImageQualityTransferLib.fileio import paths

    models = tmp_path / "Models"
    models.mkdir()
    registry = json.loads((Path(model_files.MODELS_DIR) / "registry.json").read_text())
    registry["models"] = [e for e in registry["models"] if e["sidecar"] == "rf_x2.json"]
    (models / "registry.json").write_text(json.dumps(registry))
    for name in ("rf_x2.npz", "rf_x2.json", "global-linear_x2.json"):
        shutil.copy(Path(model_files.MODELS_DIR) / name, models / name)
    monkeypatch.setattr(paths, "MODELS_DIR", models)
    monkeypatch.setattr(model_files, "MODELS_DIR", models)
    before = _state(models)
    for argv, words in (
            (["benchmark", str(work / "subj"), "--methods", "cubic", "--json", str(models / "global-linear_x2.json")],
             "is in the install's model folder"),
            (["train", "--method", "global-linear", "--subjects", str(work / "subj"), "-o", str(models / "rf_x2.npz"),
              "--register"], "is registered as the rf model for factor 2; give this global-linear model a name")):
        rc = _run(argv)
        err = capsys.readouterr().err
        assert rc == 2 and words in err and err.count("\n") == 1, err
    assert _state(models) == before


def test_names_given_twice_and_a_style_nrrd_drops_are_refused(tmp_path, capsys, small_subject):
    """A bad-input audit: --methods biqt,biqt, --kinds edema,edema and --styles own,own ran and counted twice (a
    lesion check's mean 'over 2 subjects' of one); `iqt degrade --style fsl -o x.nrrd` wrote a plain NRRD and said to
    read it with --tensor-order fsl, which a NRRD refuses. Each one line, exit 2, nothing written."""
    from helpers import refused_line

    refused_line(capsys, ["benchmark", small_subject, "--methods", "cubic,linear,linear"], "linear named twice")
    refused_line(capsys, ["benchmark", small_subject, "--methods", "linear", "--styles", "own,own"], "a style named twice")
    refused_line(capsys, ["lesion-check", small_subject, "--methods", "biqt", "--kinds", "edema,edema"],
                 "a kind named twice")
    refused_line(capsys, ["degrade", small_subject / "dwi.nii.gz", "-o", tmp_path / "x.nrrd", "--style", "fsl"],
                 "--style fsl writes fsl's 4D NIfTI file")
    assert not list(tmp_path.iterdir())


def test_a_dwi_of_one_constant_value_is_one_line(tmp_path, capsys):
    """A DWI that is 100 everywhere: `iqt mask` printed numpy's 'invalid value encountered in divide' twice and wrote a
    mask of every voxel, `iqt fit` three lines (a bad-input audit). One line, exit 2, nothing written."""
    import nibabel as nib

    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    fileio.save_dwi(make_phantom(shape=(12, 12, 10), voxel_mm=4.0, n_dirs=12), tmp_path / "dwi.nii.gz")
    img = nib.load(tmp_path / "dwi.nii.gz")
    nib.save(nib.Nifti1Image(np.full(img.shape, 100, np.float32), img.affine), tmp_path / "dwi.nii.gz")
    from ImageQualityTransferLib.apps.cli import main

    for command in (["mask", tmp_path / "dwi.nii.gz", "-o", tmp_path / "m.nii.gz"],
                    ["fit", tmp_path / "dwi.nii.gz", "-o", tmp_path / "dti.nii.gz"]):
        capsys.readouterr()
        assert main([str(a) for a in command]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "the b0 image is one constant value" in err[0], err  # no numpy warning either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dwi.bval", "dwi.bvec", "dwi.nii.gz"]


def test_options_that_would_be_ignored_are_refused(tmp_path, capsys, small_subject):
    """`iqt evaluate --bval` without --dwi and `iqt lesion-check --methods biqt --mc-samples 5` ran as if they were not
    given (a bad-input audit): one line each, exit 2."""
    from helpers import refused_line

    refused_line(capsys, ["evaluate", "--pred", tmp_path / "p.nii.gz", "--truth", tmp_path / "t.nii.gz", "--mask",
                          tmp_path / "m.nii.gz", "--bval", small_subject / "dwi.bval"], "--bval goes with --dwi")
    refused_line(capsys, ["lesion-check", small_subject, "--methods", "biqt", "--mc-samples", "5"],
                 "none of biqt draws Monte Carlo samples")


def test_a_signal_with_the_terminal_gone_still_exits_128_plus_the_signal(monkeypatch):
    """SIGHUP with the terminal really gone (a review: hup_pty.py): the closing line's print failed with EIO and the
    command exited 1; it exits 129 (128 + SIGHUP) unsaid."""
    import errno
    import signal

    from ImageQualityTransferLib.apps import cli
    from ImageQualityTransferLib.apps.cli import demo

    class Gone:
        def write(self, text):
            raise OSError(errno.EIO, "Input/output error")

        def flush(self):
            raise OSError(errno.EIO, "Input/output error")

    def hung_up(args):
        raise cli.Terminated(signal.SIGHUP)

    monkeypatch.setattr(demo, "list_methods", hung_up)
    monkeypatch.setattr(sys, "stderr", Gone())
    assert cli.main(["methods"]) == 129


def test_the_formats_a_refusal_or_help_lists_include_mrtrix(capsys, tmp_path):
    """Where a line lists the formats read or written, MRtrix's .mif is among them (it is read and written since
    0.37.0; `iqt view`'s refusals and upsample's help had listed .nii.gz and .nrrd only)."""
    from ImageQualityTransferLib.apps.cli import main

    assert main(["view", str(tmp_path / "none.mif")]) == 2
    assert "(.nii.gz, .nrrd or .mif)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["upsample", "--help"])
    assert ".mif/.mif.gz for MRtrix" in " ".join(capsys.readouterr().out.split())
