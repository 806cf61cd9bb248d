"""Test-time averaging over the grid's symmetries (`--tta`): a learned method runs on the input flipped along
each axis combination (8) and, where two axes share a factor, also with those two axes swapped (16 in all); each
output is mapped back and the outputs are averaged. The CNNs are trained on every signed axis permutation that
keeps the factors (methods/cnn/training_data.py, `augment_batch`), so each transform is another estimate of the same
high-res tensors; their average has a lower error (docs/accuracy.md, "Averaging over flips").
"""

from __future__ import annotations

import itertools

import numpy as np

from ..core import tensors


def transforms(f) -> list[np.ndarray]:
    """The signed permutations (3x3, new axis i = sign_i * old axis) averaged for canonical factors `f`, identity first."""
    f = tuple(int(v) for v in f)
    perms = [(0, 1, 2)]
    pair = next(((i, j) for i, j in itertools.combinations(range(3), 2) if f[i] == f[j]), None)
    if pair is not None:
        swap = [0, 1, 2]
        swap[pair[0]], swap[pair[1]] = pair[1], pair[0]
        perms.append(tuple(swap))
    out = []
    for perm in perms:
        for signs in itertools.product((1, -1), repeat=3):
            p = np.zeros((3, 3), int)
            p[np.arange(3), perm] = signs
            out.append(p)
    return out


def apply(a: np.ndarray, p: np.ndarray, tensor: bool) -> np.ndarray:
    """The volume `a` (X, Y, Z[, 6]) under the signed permutation `p`: voxel x goes to P x (about the grid's centre);
    tensors (`tensor`) are also expressed in the new axes (P D P^T)."""
    src = np.abs(p).argmax(axis=1)
    out = np.transpose(a, (*src, *range(3, a.ndim)))
    flips = [i for i in range(3) if p[i, src[i]] < 0]
    if flips:
        out = np.flip(out, flips)
    if tensor:
        out = tensors.rotate(out, p)
    return np.ascontiguousarray(out)


def undo(a: np.ndarray, p: np.ndarray, tensor: bool) -> np.ndarray:
    """Inverse of `apply` (the transpose of a signed permutation is its inverse)."""
    return apply(a, p.T, tensor)


def average(predict, lr: np.ndarray, mask: np.ndarray | None, f, progress=None) -> tuple[np.ndarray, dict]:
    """Mean of `predict(lr', mask', progress')` over `transforms(f)`, each output mapped back: the tensors and every
    uncertainty map (each transform's own map of its own estimate, averaged)."""
    ps = transforms(f)
    total, maps = None, {}
    for k, p in enumerate(ps):
        sub = None if progress is None else (lambda frac, k=k: progress((k + frac) / len(ps)))
        t, unc = predict(apply(lr, p, True), None if mask is None else apply(mask, p, False), sub)
        t = undo(t, p, True).astype(np.float64)
        total = t if total is None else total + t
        for name, v in unc.items():
            maps[name] = None if v is None else undo(v, p, False).astype(np.float64) + maps.get(name, 0.0)
    n = float(len(ps))
    return (total / n).astype(np.float32), {name: None if v is None else (v / n).astype(np.float32)
                                            for name, v in maps.items()}
