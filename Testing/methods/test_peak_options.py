"""The memory check counts --tta and --propagate (docs/measurements.md, Memory): espcn --tta
peaked at 3.1-3.8x its tensors above its plain run, espcn-hetero-var1 --tta 7.8x and biqt --tta 6.1x, past the
plain multiples the check allowed them; --propagate keeps the sampling's arrays beside the prediction."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import bundle_volume
from ImageQualityTransferLib import fileio, methods
from ImageQualityTransferLib.apps.cli import main
from ImageQualityTransferLib.core import memory
from ImageQualityTransferLib.core.errors import IQTError
from ImageQualityTransferLib.core.volume import Volume


def test_tta_raises_the_allowance(monkeypatch):
    """x3 of 128x128x60 (0.6 GiB of tensors) under 5 GiB: each method's plain run passes the check (its zero input is
    refused after it), with --tta it is refused first."""
    lr = Volume(np.zeros((128, 128, 60, 6), np.float32), np.eye(4), "tensor")
    monkeypatch.setattr(memory, "memory_limit", lambda: 5 * 2**30)
    for name in ("global-linear", "biqt"):
        for tta in (False, True):
            method = methods.get(name, tta=tta)
            assert method.peak_multiple(False) == method.peak[False] + (method.tta_peak if tta else 0)
            with pytest.raises(IQTError) as err:
                method.predict(lr, 3, uncertainty=False)
            refused = "more than this process's 5.0 GiB" in str(err.value)
            assert refused == tta, (name, tta, err.value)
            assert ("with --tta" in str(err.value)) == tta, err.value


def test_every_method_with_tta_is_allowed_more_than_without():
    from ImageQualityTransferLib.methods import registry

    for name in registry.names():
        cls = methods.method_class(name)
        if cls.learned:
            assert cls.tta_peak >= 4.0, name
    for name, least in (("espcn", 4.0), ("espcn-hetero-var1", 9.0), ("biqt", 7.0), ("rf", 7.0)):
        assert methods.method_class(name).tta_peak >= least, name


def test_propagate_is_refused_before_any_work_where_its_samples_would_not_fit(tmp_path, monkeypatch, capsys):
    """A grid whose prediction fits but whose sampling beside it would not is refused with one line, before the
    prediction runs; the same run without --propagate goes on."""
    from ImageQualityTransferLib.apps.cli import options
    from ImageQualityTransferLib.methods.base import PROPAGATE_PEAK

    lr_path = tmp_path / "lr.nii.gz"
    fileio.save_tensor(bundle_volume(shape=(14, 10, 10)), lr_path)
    tensors = 28 * 20 * 20 * 6 * 4
    biqt = methods.method_class("biqt")
    monkeypatch.setattr(memory, "memory_limit",
                        lambda: memory.PEAK_FIXED_BYTES + (biqt.peak[True] + PROPAGATE_PEAK / 2) * tensors)
    ran = []

    def predicted(*a, **k):
        ran.append(1)
        raise IQTError("the prediction ran")

    monkeypatch.setattr(options, "predict_with_mask", predicted)
    base = ["upsample", str(lr_path), "-o", str(tmp_path / "hr.nii.gz"), "--method", "biqt"]
    assert main([*base, "--samples", "10", "--propagate", "--no-tracts"]) == 2
    err = capsys.readouterr().err
    assert not ran and "with its uncertainty maps and --propagate, more than this process's" in err, err
    assert err.count("\n") == 1, err
    assert main(base) == 2 and ran == [1] and "the prediction ran" in capsys.readouterr().err
