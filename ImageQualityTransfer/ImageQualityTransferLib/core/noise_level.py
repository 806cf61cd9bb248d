"""How noisy an input tensor field is (`noise_index`) and the thresholds at which the learned methods switch to
their models trained with added noise or warn (docs/accuracy.md, Noisy scans)."""

from __future__ import annotations

import numpy as np

from .tensors import md_mode

NOISY_INPUT = 0.10  # noise_index above which an input is noisier than every training and dev input seen
# noise_index above which a learned method takes its model trained with added noise where it ships one: the dev inputs
# (block averages of good scans) give 0.049-0.067 with their mask and up to 0.070 unmasked without one, and from
# 0.067-0.075 (Rician noise at b0 SNR 40) up the noise-trained ×2 biqt is the lower in both regions
# (docs/measurements.md, "Models trained with added noise")
NOISY_MODEL = 0.075


# voxels: a masked fit run without a mask is read on its support, its fitting mask, which may be wider than the brain
# (the training inputs' own style: the brain mask dilated by two voxels), its edge CSF and skull fits: so read, the clean
# Achieva x2 had read 0.081 against 0.069 with its mask and run the noise-trained models. It is read this much further
# in too, and the lower reading kept (methods/inputs.py input_noise_index): where the support is the brain mask itself,
# the deeper core alone had read a clean x3 Trio noisy, 0.078 against 0.072 (docs/measurements.md, "A masked fit
# without a mask")
FIT_SUPPORT_CORE = 2
ESTIMATED_BRAIN_CORE = 4  # voxels: a brain estimated from whole-field tensors keeps scalp and background fits at its rim
ESTIMATED_BRAIN_RIM_MM = 24.0  # that rim's depth: ESTIMATED_BRAIN_CORE voxels of the 6 mm inputs it was set on


def estimated_core(voxel_size) -> tuple[int, int, int]:
    """Voxels to take off a brain estimated from whole-field tensors along each axis before its noise index is read:
    its rim is about as deep in mm at any voxel size, so native 2-3 mm fits need 8-12 voxels where ×2 inputs of them
    need 4, and a thick-slice scan more in-plane than through the slices (never fewer than ESTIMATED_BRAIN_CORE;
    docs/measurements.md, "Without a brain mask")."""
    return tuple(max(ESTIMATED_BRAIN_CORE, int(round(ESTIMATED_BRAIN_RIM_MM / float(v)))) for v in voxel_size)


def noise_index(t: np.ndarray, mask: np.ndarray, core=0, unit: float | None = None,
                present_only: bool = False) -> float | None:
    """How rough a tensor field is inside the brain: the median over the mask eroded by two voxels of |tensor - mean of
    its 6 face neighbours| (six elements), over the MD mode. The training subjects' ×2 inputs give 0.055-0.082, the dev
    inputs 0.049-0.067 (five styles; ×2, ×3 where the brain is large enough, through-plane), native dipy fits of two dev scans 0.054 and 0.074; the dev inputs with Rician
    noise added at b0 SNR 20 give 0.085-0.092, at SNR 10 0.119-0.124 (docs/measurements.md, "Noisy inputs"). None when
    the eroded mask holds under 500 voxels. `core`: up to that many voxels more taken off the mask first, one number
    or one per axis (estimated_core for a brain estimated from whole-field tensors, so that an unmasked input reads
    about as its brain mask would), fewer where the brain is only a few voxels thick (thick slices: 12 planes of 9 mm; a
    slab), given up along the axis the mask spans fewest planes of first. `unit`: the brain's MD mode where the
    field's is a background's (dmri.dti.brain_from_tensors' "md_unit"). `present_only`: read only tensors whose 6
    neighbours are present too (a mask with its failed fits' holes filled: methods/inputs.py input_noise_index)."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    depth = np.array(np.broadcast_to(np.asarray(core, int), (3,)))
    # planes the mask spans along each axis: where too little is left, the core is given up along the thinnest axis
    # first (a slab's cut faces hold no scalp); given up on every axis at once, a 10-slice slab's unmasked fit had
    # kept its scalp rim in-plane and read as noisy (a tool-inputs audit)
    spans = [int(np.any(m, axis=tuple(b for b in range(3) if b != a)).sum()) for a in range(3)]
    while True:
        inner = _eroded(m, 2 + depth)
        if inner.sum() >= 500:
            break
        if not depth.any():
            return None
        thin = min((a for a in range(3) if depth[a] > 0), key=lambda a: spans[a])
        depth[thin] -= 1
    x = np.asarray(t, np.float32)
    if present_only:  # a missing (all-zero) tensor, a failed fit in a filled hole, is no roughness (a review: a clean
        # input with 15 % of its tensors zeroed had read noisy, 0.086 against 0.068)
        inner &= ndimage.binary_erosion(np.any(x != 0, axis=-1), ndimage.generate_binary_structure(3, 1), border_value=1)
        if not inner.any():
            return None
    k = np.zeros((3, 3, 3), np.float32)
    k[0, 1, 1] = k[2, 1, 1] = k[1, 0, 1] = k[1, 2, 1] = k[1, 1, 0] = k[1, 1, 2] = 1.0 / 6.0
    dev = np.stack([np.abs(x[..., j] - ndimage.convolve(x[..., j], k, mode="nearest"))[inner] for j in range(6)], -1)
    return float(np.median(dev) / (md_mode(x) if unit is None else unit))


SMALL_BRAIN_MIN = 100  # voxels small_brain_noise_index reads at least: fewer, and the brain is too small to read at all
SMALL_BRAIN_NOISY = 0.14  # a small brain's reading taken above this only: clean crops, slabs and cubes of the 8 subjects
# (5 styles, x2/x3/x1,1,2/x1,1,3, 3-8 planes, 5-16 voxel cubes: 3,615 inputs) read up to 0.126 by it, the noisy inputs it is
# for (b0 SNR 1 masked, 10-30 % missing tensors at SNR 1-5) 0.158 and up; above NOISY_INPUT alone a clean 4-plane
# slab or 7-voxel cube had switched model with a noise line. Crops of a b0 SNR 10-30 scan too small for noise_index read
# 0.104-0.139 (3-6 plane slabs of the dev scans at SNR 10, masked, along any voxel axis: 0.111-0.139), among the clean
# ones: no threshold tells them apart; they run the clean model, and a line says the index is unreadable
# (methods/inputs.py noise_unreadable, docs/measurements.md, The noise index of a small brain)


def small_brain_noise_index(t: np.ndarray, mask: np.ndarray, unit: float | None = None) -> float | None:
    """noise_index for a brain mask too small (or too holed by missing tensors) to read there: its holes filled, eroded
    by one voxel, each present tensor against the mean of its present face neighbours (three at least): a masked b0
    SNR 1 ×3 input and a brain with 10-30 % of its tensors missing had read nothing and run the clean model. Coarser
    than noise_index on clean inputs (methods/inputs.py input_noise_index takes it only where clearly noisy). None
    under SMALL_BRAIN_MIN voxels."""
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(np.asarray(mask, bool))
    x = np.asarray(t, np.float32)
    present = (np.any(x != 0, axis=-1) & filled).astype(np.float32)
    k = ndimage.generate_binary_structure(3, 1).astype(np.float32)
    k[1, 1, 1] = 0.0
    count = ndimage.convolve(present, k, mode="constant")
    inner = _eroded(filled, (1, 1, 1)) & (present > 0) & (count >= 3)
    if inner.sum() < SMALL_BRAIN_MIN:
        return None
    dev = np.stack([np.abs(x[..., j] - ndimage.convolve(x[..., j] * present, k, mode="constant") /
                           np.maximum(count, 1))[inner] for j in range(6)], -1)
    return float(np.median(dev) / (md_mode(x) if unit is None else unit))


def _eroded(mask: np.ndarray, depth) -> np.ndarray:
    """`mask` eroded by depth[a] voxels along each axis a, one face-neighbour step at a time (with equal depths, the
    6-connected erosion iterated that many times)."""
    from scipy import ndimage

    out = mask
    for i in range(int(max(depth))):
        cross = np.zeros((3, 3, 3), bool)
        cross[1, 1, 1] = True
        for a in range(3):
            if i < depth[a]:
                cross[tuple(slice(None) if b == a else 1 for b in range(3))] = True
        out = ndimage.binary_erosion(out, cross)
    return out
