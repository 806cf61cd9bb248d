"""The engine's side of `iqt view`: the method its page runs first, the FA it shows of a tensor volume, and the words its
runs' notes name its options in."""

from __future__ import annotations

import numpy as np

from ...core.volume import Volume


def first_method(method: str | None, factor, voxel_size=None) -> str:
    """The method the page runs first: `method`, else the Slicer module's default at `factor` for an input of
    `voxel_size` (one with an overlay; cubic where the output voxels are more than 2:1, as the module preselects)
    where it runs here, else cubic. `iqt view` checks this one before serving (apps/cli/view.py)."""
    from ... import methods

    default = methods.viewer_default(factor, voxel_size)
    return method or (default if default in (methods.ready(factor) or ["cubic"]) else "cubic")


def fa_volume(tensor: Volume) -> Volume:
    """FA of a tensor volume as a scalar volume on the same grid (zero outside the tensors' support)."""
    from ...core import tensors

    return Volume(tensors.fa(np.asarray(tensor.data, np.float64)).astype(np.float32), tensor.affine, "scalar")


def viewer_options() -> dict[str, str]:
    """The command line's words (core/i18n.py option) as a page's run names them: `iqt view` takes --voxel-size itself,
    so the factor rule's advice names its own, not iqt upsample's; its other options (--mask, --method) are the
    command line's."""
    return {"iqt upsample's --voxel-size MM picks them": "--voxel-size MM picks them"}
