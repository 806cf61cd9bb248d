"""3D-ESPCN (Tanno et al. 2017) for DTI super-resolution: networks, training, tiled inference, model files.

Everything here needs PyTorch (`pip install torch`, or the `cnn` extra); the rest of the engine does not.
"""

from __future__ import annotations


def require_torch():
    """Import torch or raise an IQTError that says how to install it."""
    try:
        import torch
    except ImportError:
        from ...core.errors import IQTError, pip_install

        # the pinned CPU torch only: the cnn extra ('torch>=2.2') took PyPI's newest, with CUDA packages on Linux
        raise IQTError(f"the CNN methods need PyTorch, which is not installed; install it with {pip_install('torch')} "
                       "and retry") from None
    from ...core.threads import limit_torch

    limit_torch()  # the --threads cap given before torch was imported
    return torch
