"""A deterministic synthetic brain-like DWI series, for the demo, the tests and anyone without data.

`make_phantom` returns a "dwi" `Volume` laid out like a real axial scan (LAS storage, negative affine
determinant, b0s first, b-vectors in voxel axes), so the whole real-data pipeline (mask, fit, degrade,
upsample, evaluate) runs on it unchanged.

Content, in voxel axes (x = axis 0 left-right, y = axis 1 posterior-anterior, z = axis 2 inferior-superior):

- an ellipsoidal brain with a one-voxel partial-volume edge; outside it the signal is zero plus noise;
- a CSF-like layer CSF_RIM_MM thick under its surface (the subarachnoid space that brain masks hold);
- isotropic grey-matter-like tissue (MD about 0.8e-3 mm^2/s, smoothly varying by a few per cent);
- two CSF-like lateral ventricles (MD 3e-3 mm^2/s, bright b0);
- white-matter bundles as tubes along smooth curves, each with a prolate tensor along the curve's tangent
  (lambda1 about 1.7e-3, lambda2 = lambda3 about 0.3e-3): an anterior and a posterior corpus-callosum-like U
  (genu / splenium, axial plane), a coronal callosal arch over the ventricles, left and right
  corticospinal-like bundles (inferior-superior), superior- and inferior-longitudinal-like arcs
  (anterior-posterior) that cross the corticospinal bundles at right angles, and cingulum-like sagittal arches.

Partial volume at every edge; where bundles overlap the signal is the sum of the compartments' signals
(two-compartment crossings, not an averaged tensor):

    S = S0(x) * sum_k f_k * w_k * exp(-b g^T D_k g),   sum_k f_k = 1 inside the brain

with w_k the tissue's relative b0 (grey 1.0, white 0.8, CSF 2.0) and S0(x) about 1000 with a smooth bias
field. Rician noise of sigma = 1000 / snr comes from ``np.random.default_rng(seed)``: the same arguments
give bit-identical arrays.

``vol.meta`` holds the ground truth the tests check: ``brain_mask`` (bool), ``fractions`` (float32 maps of
grey matter, CSF and white matter), ``landmarks`` (voxel indices of a bundle core with its tangent, a
crossing with both tangents, grey matter and a ventricle) and ``bundles`` (name, radius, eigenvalues).
`phantom_truth_tensor` gives the noise-free single-tensor fit, the reference a perfect method would reach.
"""

from __future__ import annotations

import numpy as np

from ..core.volume import Volume

# Brain semi-axes (mm) of the reference geometry below; other grids scale it uniformly.
_REF_SEMI_AXES = np.array([54.0, 62.0, 46.0])
_FILL = 0.84  # fraction of the half field of view the brain takes along its tightest axis

CSF_RIM_MM = 3.0  # CSF-like layer under the brain's surface (the subarachnoid space), in mm of the grid made
MD_GREY = 0.8e-3
MD_CSF = 3.0e-3
B0_WEIGHT = {"grey": 1.0, "white": 0.8, "csf": 2.0}
S0_NOMINAL = 1000.0


# ------------------------------------------------------------------------------------------ gradients


def _fibonacci_hemisphere(n: int) -> np.ndarray:
    """n nearly uniform unit vectors on the upper hemisphere (golden-angle spiral)."""
    k = np.arange(n) + 0.5
    z = 1.0 - k / n  # (0, 1]
    r = np.sqrt(1.0 - z**2)
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def gradient_directions(n: int, iterations: int = 200) -> np.ndarray:
    """n unit directions spread by antipodally symmetric electrostatic repulsion (deterministic).

    Starts from a Fibonacci hemisphere and moves each point down the gradient of
    sum_{i<j} 1/|a_i - a_j| + 1/|a_i + a_j|; returned with non-negative z.
    """
    if n < 1:
        raise ValueError(f"need at least one direction, got {n}")
    x = _fibonacci_hemisphere(n)
    if n > 1:
        step = 0.1 / n
        eye = np.eye(n, dtype=bool)
        for _ in range(iterations):
            force = np.zeros_like(x)
            for sign in (-1.0, 1.0):
                d = x[:, None, :] + sign * x[None, :, :]  # a_i -/+ a_j
                dist = np.linalg.norm(d, axis=-1)
                if sign < 0:
                    dist[eye] = np.inf
                force += (d / dist[..., None] ** 3).sum(axis=1)
            force -= (force * x).sum(axis=1, keepdims=True) * x  # tangential part
            x = x + step * force
            x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[x[:, 2] < 0] *= -1.0
    return x


# ------------------------------------------------------------------------------------------ geometry


def _arc(centre, radius, theta0, theta1, plane, lift=0.0, n=600):
    """Points of a circular arc in a coordinate plane ("xy", "xz", "yz"), optionally lifted out of the plane
    quadratically towards its ends (lift = out-of-plane offset at the ends)."""
    th = np.deg2rad(np.linspace(theta0, theta1, n))
    a, b = radius * np.cos(th), radius * np.sin(th)
    s = np.linspace(-1.0, 1.0, n)
    p = np.tile(np.asarray(centre, float), (n, 1))
    axes = {"xy": (0, 1, 2), "xz": (0, 2, 1), "yz": (1, 2, 0)}[plane]
    p[:, axes[0]] += a
    p[:, axes[1]] += b
    p[:, axes[2]] += lift * s**2
    return p


def _bundles():
    """The white-matter bundles of the reference geometry: (name, curve points (M,3) mm, radius mm, l1, l2)."""
    out = [
        # corpus callosum, anterior U (genu) and posterior U (splenium), axial plane, rising laterally
        ("cc_genu", _arc((0.0, 36.0, 0.0), 22.0, -160.0, -20.0, "xy", lift=5.0), 5.0, 1.8e-3, 0.25e-3),
        ("cc_splenium", _arc((0.0, -40.0, 0.0), 20.0, 20.0, 160.0, "xy", lift=5.0), 5.5, 1.8e-3, 0.25e-3),
        # callosal body: a coronal U arching over the ventricles
        ("cc_body", _arc((0.0, -3.0, 40.0), 30.0, 205.0, 335.0, "xz"), 4.5, 1.7e-3, 0.3e-3),
    ]
    for side, sx in (("right", -1.0), ("left", 1.0)):  # LAS storage: voxel x grows towards the left
        # corticospinal-like: inferior-superior, fanning out laterally towards the top
        z = np.linspace(-40.0, 24.0, 600)
        cst = np.stack([sx * (26.0 + 5.0 * ((z + 44.0) / 44.0) ** 2), -3.0 + 3.0 * (z / 46.0), z], axis=1)
        out.append((f"cst_{side}", cst, 5.0, 1.7e-3, 0.3e-3))
        # superior-longitudinal-like: anterior-posterior, bowing outwards; crosses the CST near z = 0
        y = np.linspace(-44.0, 40.0, 600)
        slf = np.stack([sx * (31.0 - 7.0 * (y / 44.0) ** 2), y, 2.0 + 4.0 * (y / 44.0) ** 2], axis=1)
        out.append((f"slf_{side}", slf, 4.5, 1.6e-3, 0.35e-3))
        # inferior-longitudinal-like: anterior-posterior lower down; crosses the CST near z = -14
        y = np.linspace(-50.0, 38.0, 600)
        ilf = np.stack([sx * (30.0 - 6.0 * (y / 50.0) ** 2), y, -14.0 - 4.0 * (y / 50.0)], axis=1)
        out.append((f"ilf_{side}", ilf, 4.0, 1.6e-3, 0.35e-3))
        # cingulum-like: sagittal arch above the callosal body
        out.append((f"cingulum_{side}", _arc((sx * 6.0, -2.0, 8.0), 30.0, 25.0, 155.0, "yz"), 3.5, 1.6e-3, 0.3e-3))
    return out


_VENTRICLES = [((-7.5, -2.5, 0.0), (5.0, 11.0, 8.0)), ((7.5, -2.5, 0.0), (5.0, 11.0, 8.0))]

# Landmarks in the reference geometry (mm): checked by the tests.
_BUNDLE_CORE = ("cc_genu", (0.0, 14.0, 0.0))  # bottom of the genu U: tangent along x
_CROSSING = ("cst_right", "slf_right")  # cross at right angles near z = 0
_GREY = (0.0, 46.0, -12.0)
_VENTRICLE = (7.5, -2.5, 0.0)


def _ellipsoid_fraction(p, centre, semi, width):
    """Partial-volume fraction of an ellipsoid, ramping over `width` mm across its surface."""
    q = (p - np.asarray(centre)) / np.asarray(semi)
    rho = np.sqrt((q**2).sum(axis=-1))
    # signed distance to the surface along the ray from the centre (exact on a sphere, close otherwise)
    radial = np.sqrt(((p - np.asarray(centre)) ** 2).sum(axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.where(rho > 0, (1.0 - rho) * radial / rho, np.min(semi))
    return np.clip(dist / width + 0.5, 0.0, 1.0)


def _tube(points, radius, p, width):
    """Fraction (partial-volume ramp over `width`), unit tangent and voxel selection of a tube around `points`."""
    from scipy.spatial import cKDTree

    tangents = np.gradient(points, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    lo, hi = points.min(axis=0) - radius - width, points.max(axis=0) + radius + width
    near = np.flatnonzero(((p >= lo) & (p <= hi)).all(axis=1))
    dist, idx = cKDTree(points).query(p[near], distance_upper_bound=radius + width)
    ok = np.isfinite(dist)
    near, dist, idx = near[ok], dist[ok], idx[ok]
    frac = np.clip((radius - dist) / width + 0.5, 0.0, 1.0)
    keep = frac > 0
    return near[keep], frac[keep], tangents[idx[keep]]


def _layout(shape, voxel_mm):
    """Voxel-centre coordinates (mm, voxel axes, centred) and the scale from the reference geometry."""
    shape = tuple(int(s) for s in shape)
    half = (np.array(shape) - 1) / 2.0
    scale = float(np.min(_FILL * np.array(shape) * voxel_mm / 2.0 / _REF_SEMI_AXES))
    grids = np.meshgrid(*[(np.arange(n) - c) * voxel_mm for n, c in zip(shape, half)], indexing="ij")
    return np.stack(grids, axis=-1), half, scale


def _to_index(point_ref, half, scale, voxel_mm):
    return tuple(int(v) for v in np.rint(np.asarray(point_ref) * scale / voxel_mm + half).astype(int))


def _tissue(shape, voxel_mm):
    """Fractions, white-matter compartments and landmarks on the grid (no signal yet)."""
    pos, half, scale = _layout(shape, voxel_mm)
    width = voxel_mm / scale  # partial-volume ramp: one voxel, in reference mm
    p = pos / scale  # reference-geometry mm
    flat = p.reshape(-1, 3)
    nvox = flat.shape[0]

    f_brain = _ellipsoid_fraction(flat, (0.0, 0.0, 0.0), _REF_SEMI_AXES, width)
    # the CSF between the cortex and the skull, which real brain masks hold: without it the phantom's edge was grey
    # matter next to nothing, unlike every brain the learned methods trained on (docs/measurements.md, The phantom)
    f_csf = 1.0 - _ellipsoid_fraction(flat, (0.0, 0.0, 0.0), _REF_SEMI_AXES - CSF_RIM_MM / scale, width)
    for centre, semi in _VENTRICLES:
        f_csf = np.maximum(f_csf, _ellipsoid_fraction(flat, centre, semi, width))

    bundles = []
    wm_total = np.zeros(nvox)
    for name, points, radius, l1, l2 in _bundles():
        idx, frac, tang = _tube(points, radius, flat, width)
        bundles.append({"name": name, "index": idx, "fraction": frac, "tangent": tang, "l1": l1, "l2": l2,
                        "radius_mm": radius * scale})
        wm_total[idx] += frac
    # overlapping bundles share the voxel; white matter gives way to CSF
    norm = np.where(wm_total > 1.0, 1.0 / np.maximum(wm_total, 1e-12), 1.0) * (1.0 - f_csf)
    for b in bundles:
        b["fraction"] = b["fraction"] * norm[b["index"]]
    f_wm = np.minimum(wm_total, 1.0) * (1.0 - f_csf)
    f_grey = np.clip(1.0 - f_csf - f_wm, 0.0, 1.0)

    landmarks = {}

    def tangent_at(name, index):
        b = next(b for b in bundles if b["name"] == name)
        flat_i = np.ravel_multi_index(index, shape)
        hit = np.flatnonzero(b["index"] == flat_i)
        return b["tangent"][hit[0]] if hit.size else None

    core = _to_index(_BUNDLE_CORE[1], half, scale, voxel_mm)
    landmarks["bundle_core"] = {"index": core, "bundle": _BUNDLE_CORE[0], "tangent": tangent_at(_BUNDLE_CORE[0], core)}
    # the crossing: the voxel where both bundles are closest to equal, near z = 0
    b1, b2 = (next(b for b in bundles if b["name"] == n) for n in _CROSSING)
    both, i1, i2 = np.intersect1d(b1["index"], b2["index"], return_indices=True)
    if both.size:
        score = np.minimum(b1["fraction"][i1], b2["fraction"][i2]) - 1e-3 * np.abs(flat[both, 2])
        k = int(np.argmax(score))
        cross = tuple(int(v) for v in np.unravel_index(both[k], shape))
        landmarks["crossing"] = {"index": cross, "bundles": _CROSSING,
                                 "tangents": (b1["tangent"][i1[k]], b2["tangent"][i2[k]]),
                                 "fractions": (float(b1["fraction"][i1[k]]), float(b2["fraction"][i2[k]]))}
    landmarks["grey_matter"] = {"index": _to_index(_GREY, half, scale, voxel_mm)}
    landmarks["ventricle"] = {"index": _to_index(_VENTRICLE, half, scale, voxel_mm)}

    return {"pos": pos, "scale": scale, "f_brain": f_brain, "f_csf": f_csf, "f_grey": f_grey, "f_wm": f_wm,
            "bundles": bundles, "landmarks": landmarks}


def _bias_field(pos, extent):
    """Smooth multiplicative S0 variation of about +-10 %."""
    u = pos / extent
    return 1.0 + 0.06 * np.cos(np.pi * u[..., 0]) + 0.05 * np.sin(1.3 * np.pi * u[..., 1] + 0.4) + 0.04 * u[..., 2]


def _affine(shape, voxel_mm):
    """LAS-like affine (negative determinant), world origin at the grid centre."""
    a = np.diag([-voxel_mm, voxel_mm, voxel_mm, 1.0])
    centre = (np.array(shape, float) - 1) / 2.0
    a[:3, 3] = -a[:3, :3] @ centre
    return a


def _gradients(n_dirs, bval):
    n_b0 = 2 if n_dirs >= 12 else 1
    bvals = np.concatenate([np.zeros(n_b0), np.full(n_dirs, float(bval))])
    bvecs = np.concatenate([np.zeros((n_b0, 3)), gradient_directions(n_dirs)])
    return bvals, bvecs


def _signal(t, bvals, bvecs, shape, voxel_mm):
    """Noise-free signal (X,Y,Z,N) float64."""
    nvox = int(np.prod(shape))
    b = bvals[None, :]
    extent = np.array(shape) * voxel_mm / 2.0
    s0 = S0_NOMINAL * _bias_field(t["pos"], extent).reshape(-1) * t["f_brain"]
    md_grey = MD_GREY * (1.0 + 0.05 * np.cos(2.0 * np.pi * t["pos"][..., 1].reshape(-1) / (2 * extent[1])))

    inside = np.flatnonzero(s0 > 0)
    sig = np.zeros((nvox, bvals.size))
    sig[inside] = (t["f_grey"][inside, None] * B0_WEIGHT["grey"] * np.exp(-b * md_grey[inside, None])
                   + t["f_csf"][inside, None] * B0_WEIGHT["csf"] * np.exp(-b * MD_CSF))
    for bd in t["bundles"]:
        cos2 = (bd["tangent"] @ bvecs.T) ** 2  # (V, N)
        adc = bd["l2"] + (bd["l1"] - bd["l2"]) * cos2
        sig[bd["index"]] += bd["fraction"][:, None] * B0_WEIGHT["white"] * np.exp(-b * adc)
    sig *= s0[:, None]
    return sig.reshape(tuple(shape) + (bvals.size,))


def make_phantom(shape=(64, 72, 56), voxel_mm=2.0, n_dirs=30, bval=1000.0, snr=30.0, seed=0) -> Volume:
    """A synthetic brain-like DWI `Volume` (kind "dwi", float32 (X,Y,Z,N), LAS affine, b0s first).

    shape: grid (the anatomy scales with it); voxel_mm: isotropic voxel size; n_dirs: diffusion-weighted
    directions (electrostatic repulsion, voxel axes); bval: s/mm^2; snr: S0 / sigma of the Rician noise with
    S0 = 1000 (``snr=None`` or ``inf`` gives the noise-free signal); seed: for ``np.random.default_rng``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be three sizes of at least 8 voxels, got {shape}")
    voxel_mm = float(voxel_mm)
    if n_dirs < 6:
        raise ValueError(f"a tensor fit needs at least 6 diffusion directions, got n_dirs={n_dirs}")
    t = _tissue(shape, voxel_mm)
    bvals, bvecs = _gradients(int(n_dirs), bval)
    clean = _signal(t, bvals, bvecs, shape, voxel_mm)
    if snr is None or not np.isfinite(snr):
        data = clean
    else:
        sigma = S0_NOMINAL / float(snr)
        rng = np.random.default_rng(seed)
        n1 = rng.standard_normal(clean.shape)
        n1 *= sigma
        n1 += clean
        n2 = rng.standard_normal(clean.shape)
        n2 *= sigma
        data = np.hypot(n1, n2)
    meta = {
        "source": "phantom",
        "phantom": {"shape": shape, "voxel_mm": voxel_mm, "n_dirs": int(n_dirs), "bval": float(bval),
                    "snr": snr, "seed": seed},
        "brain_mask": (t["f_brain"] >= 0.5).reshape(shape),
        "fractions": {
            "grey": (t["f_grey"] * t["f_brain"]).reshape(shape).astype(np.float32),
            "csf": (t["f_csf"] * t["f_brain"]).reshape(shape).astype(np.float32),
            "white": (t["f_wm"] * t["f_brain"]).reshape(shape).astype(np.float32),
        },
        "landmarks": t["landmarks"],
        "bundles": [{"name": b["name"], "radius_mm": b["radius_mm"], "l1": b["l1"], "l2": b["l2"]} for b in t["bundles"]],
    }
    return Volume(data.astype(np.float32), _affine(shape, voxel_mm), "dwi", bvals=bvals, bvecs=bvecs, meta=meta)


def phantom_truth_tensor(**kwargs) -> Volume:
    """The noise-free phantom's DTI fit (dipy WLS) inside its brain mask: what a perfect method would give.

    Takes `make_phantom`'s arguments (``snr`` and ``seed`` are ignored).
    """
    from .dti import fit_dti

    kwargs = {k: v for k, v in kwargs.items() if k not in ("snr", "seed")}
    clean = make_phantom(snr=None, **kwargs)
    return fit_dti(clean, clean.meta["brain_mask"])
