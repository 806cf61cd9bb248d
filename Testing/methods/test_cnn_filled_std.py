"""The CNNs' σ where they answer from filled context beyond a tight mask: raised by each method's factor, measured
on the training subjects (methods/cnn/method.py, filled_std_scale), as the forests' is."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="PyTorch is not installed: the CNN methods need 'pip install torch' (the 'cnn' extra)")

from ImageQualityTransferLib import methods  # noqa: E402
from ImageQualityTransferLib.core.grid import repeat_blocks  # noqa: E402
from ImageQualityTransferLib.methods.cnn import inference, model_io  # noqa: E402
from ImageQualityTransferLib.methods.cnn.method import CNNMethod  # noqa: E402

from helpers import filled_context_ratio, random_cnn_model as random_model, smooth_tensors  # noqa: E402


@pytest.mark.parametrize("name", ["espcn-hetero", "espcn-hetero-var1", "deep-hetero-var1"])
def test_sigma_is_raised_by_the_methods_factor_exactly_where_the_context_was_filled(name, tmp_path, monkeypatch):
    """Tight input (zeros right outside the mask): every map is the method's factor times the plain one in the
    blocks of the support's voxels that hold no input, and unchanged elsewhere; the tensors do not move. An input that
    reaches beyond the mask (the project's own fits) is not touched."""
    path = model_io.save(*random_model(name, seed=3), tmp_path / "m.pt")
    lr, mask = smooth_tensors((12, 11, 10), seed=2)
    wide = np.where(np.any(lr != 0, -1, keepdims=True), lr, lr[6, 5, 5])  # a fit reaching past the mask
    tight_mask = mask.copy()
    tight_mask[:, :, :3] = False  # and a mask tighter than the fit's own zeros, on one side
    lr = np.where(tight_mask[..., None], lr, 0).astype(np.float32)
    method = methods.get(name, model=path)
    scale = type(method).filled_std_scale
    assert scale > 1.0

    def run(x, m):
        kw = {"samples": 3} if method.takes_samples else {}
        if kw:
            method.samples = 3
        return method._predict(x, (2, 2, 2), m, None)

    hr, raised = run(lr, tight_mask)
    monkeypatch.setattr(type(method), "filled_std_scale", 1.0)
    hr0, plain = run(lr, tight_mask)
    np.testing.assert_array_equal(hr, hr0)
    filled = repeat_blocks(inference.lr_support(tight_mask, lr.shape[:3]) & ~np.any(lr != 0, -1), 2)
    assert filled.sum() > 500 and set(raised) == set(plain)
    for k in plain:
        np.testing.assert_allclose(raised[k][filled], plain[k][filled] * np.float32(scale), rtol=1e-6)
        np.testing.assert_array_equal(raised[k][~filled], plain[k][~filled])
    _, own = run(wide.astype(np.float32), mask)
    monkeypatch.setattr(type(method), "filled_std_scale", scale)
    _, own_raised = run(wide.astype(np.float32), mask)
    for k in own:
        np.testing.assert_array_equal(own[k], own_raised[k])


def test_every_cnn_with_a_map_has_a_factor_and_those_without_none():
    for name in methods.names():
        cls = type(methods.get(name))
        if issubclass(cls, CNNMethod):
            assert (cls.filled_std_scale > 1.0) == bool(cls.gives_uncertainty), name


@pytest.mark.slow
def test_deep_hetero_var1_is_less_sure_where_it_answers_from_filled_context(axial_subject, monkeypatch):
    """The default uncertainty method's σ underrated its error where a tight input was filled (on the dev subjects
    the RMS of error/σ there 1.43-1.75 against 0.99-1.18 at the rest of the brain's edge, docs/measurements.md); on a
    dev crop the ratio there now comes close to the edge's."""
    method = methods.get("deep-hetero-var1")
    raised = filled_context_ratio(axial_subject, method)
    monkeypatch.setattr(type(method), "filled_std_scale", 1.0)
    plain = filled_context_ratio(axial_subject, method)
    assert plain > 1.2 and 0.7 < raised < 1.2 and raised < plain, (plain, raised)
