"""Domain randomisation of the synthetic low-res inputs, so that the learned methods see the tensors other tools make.

Each training volume draws one `Variant` from a seeded generator: the input style (degrade.STYLES: own, tight,
unmasked, ols), the least-squares method (WLS or OLS) and, for the fractions asked for (none by default), a random
subset of the diffusion directions (down to 6 and one b0) and added Rician noise on the low-res DWIs at a b0
signal-to-noise ratio drawn log-uniformly in SNR_RANGE.
The reference stays the high-quality fit of the full data (docs/conventions.md, Training data).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..core.volume import Volume
from . import degrade as deg
from .dti import B0_THRESHOLD, spans_tensor

STYLE_WEIGHTS = {"own": 0.25, "tight": 0.30, "unmasked": 0.20, "ols": 0.25}
OLS_FRACTION = 0.3  # of the WLS styles (own, tight, unmasked), fitted by OLS instead
# Direction subsets and added noise are off by default: on the dev subjects (inputs with every direction, no added
# noise) a global-linear model trained with 20 % of the volumes subsetted and 20 % noised at SNR 25-80 scored 1.008-1.025x
# cubic in the interior against 0.933-0.968x with neither (docs/conventions.md, Training data).
SUBSET_FRACTION = 0.0  # of the volumes, with a random subset of the directions
NOISE_FRACTION = 0.0  # of the volumes, with added Rician noise
SNR_RANGE = (8.0, 40.0)  # b0 signal over the noise's standard deviation, on the low-res grid
LOWEST_SNR = 5.0  # b0 SNR: at b=1000 white matter keeps about a quarter of the b0 signal, ~1 noise std here
# The least --snr taken: on the 8 shared subjects x2 it still gives finite tensors in the whole mask (from 0.1 down
# the fit is noise alone, the 3 mm ortho scan's noise index 0.376 at 0.1, 0.373 at 0.01); far below it sigma overflows
# float32 (1e-20: the fit's SVD did not converge, an internal error)
SNR_FLOOR = 0.01


def snr_value(value) -> float | None:
    """An --snr value as a finite b0 SNR of at least SNR_FLOOR, None where none is given; a ValueError holding the
    line that says so for anything else (iqt's options and slicer/render.py each say it)."""
    if value is None:
        return None
    try:
        v = float(value)
    except ValueError:
        v = math.nan
    if not SNR_FLOOR <= v < math.inf:
        raise ValueError(f"--snr {value}: give the b0 SNR of the added noise (the brain's median b0 over the noise's "
                         f"standard deviation; clinical scans about 10-40), a finite number from {SNR_FLOOR:g} up, "
                         "e.g. 20")
    return v


def checked_snr(value, say) -> float | None:
    """snr_value's reading of --snr, its line an IQTError; `say(line)` given low_snr_note's line where there is one
    (iqt's options warn with it, slicer/render.py prints it)."""
    from ..core.errors import IQTError

    try:
        v = snr_value(value)
    except ValueError as exc:
        raise IQTError(str(exc)) from None
    note = None if v is None else low_snr_note(value)
    if note:
        say(note)
    return v


def low_snr_note(value) -> str | None:
    """The line an --snr below LOWEST_SNR is said with (iqt's options, slicer/render.py), else None."""
    if not float(value) < LOWEST_SNR:
        return None
    return (f"--snr {value}: below {LOWEST_SNR:g} the noise is as large as most diffusion-weighted signal and the fits "
            f"are mostly noise; clinical b0 SNR is about 10-40 (the noise-trained models saw {SNR_RANGE[0]:g}-"
            f"{SNR_RANGE[1]:g})")
MIN_DIRECTIONS = 6


@dataclass(frozen=True)
class Variant:
    """How one synthetic low-res input is made."""

    style: str = "own"
    fit: str = "WLS"
    volumes: tuple | None = None  # indices of the DWI volumes kept (None: all)
    snr: float | None = None  # Rician noise added at this b0 SNR (None: none)
    noise_seed: int = 0

    def describe(self) -> dict:
        d = asdict(self)
        d["volumes"] = None if self.volumes is None else len(self.volumes)
        return d


def draw(rng: np.random.Generator, bvals: np.ndarray, bvecs: np.ndarray | None = None,
         subsets: float = SUBSET_FRACTION, noise: float = NOISE_FRACTION) -> Variant:
    """One random variant for a series with these b-values and directions (without directions: all volumes);
    `subsets` and `noise`: the fractions of variants with a subset of the directions, with added Rician noise."""
    styles = list(STYLE_WEIGHTS)
    style = styles[rng.choice(len(styles), p=np.array(list(STYLE_WEIGHTS.values())) / sum(STYLE_WEIGHTS.values()))]
    fit = "OLS" if style == "ols" or rng.random() < OLS_FRACTION else "WLS"
    volumes = None
    if rng.random() < subsets:
        b0 = np.flatnonzero(np.asarray(bvals) <= B0_THRESHOLD)
        dw = np.flatnonzero(np.asarray(bvals) > B0_THRESHOLD)
        if len(dw) > MIN_DIRECTIONS and bvecs is not None:
            k = int(rng.integers(MIN_DIRECTIONS, len(dw) + 1))
            n0 = int(rng.integers(1, len(b0) + 1))
            for _ in range(20):  # repeated directions (some protocols acquire each twice) may leave fewer than six
                pick = rng.choice(dw, k, replace=False)
                if spans_tensor(np.asarray(bvecs, float)[pick]):
                    volumes = tuple(sorted(int(v) for v in np.concatenate([rng.choice(b0, n0, replace=False), pick])))
                    break
    snr = None
    if rng.random() < noise:
        snr = float(math.exp(rng.uniform(math.log(SNR_RANGE[0]), math.log(SNR_RANGE[1]))))
    return Variant(style, fit, volumes, snr, int(rng.integers(2**31)))


def added_noise(snr: float | None, seed: int = 0):
    """The noise hook of `iqt degrade --snr` and `iqt benchmark --snr` (`rician`, seeded), or None without an SNR."""
    return None if snr is None else rician(snr, seed)


def rician(snr: float, seed: int):
    """A `degrade` noise hook: Rician noise with sigma = median brain b0 / snr (b0 = the first volume)."""

    def add(lr_dwi: np.ndarray, lr_mask: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        b0 = lr_dwi[..., 0][lr_mask]
        sigma = float(np.median(b0)) / snr if b0.size else 0.0
        real = lr_dwi + rng.normal(0.0, sigma, lr_dwi.shape).astype(np.float32)
        imag = rng.normal(0.0, sigma, lr_dwi.shape).astype(np.float32)
        return np.sqrt(real * real + imag * imag)

    return add


def degrade_variant(dwi: Volume, hr_mask: np.ndarray, r: int, shift, variant: Variant) -> deg.LowResPair:
    """`degrade.degrade` made the way `variant` says (the b0 volumes first, so that the noise scale reads a b0)."""
    if variant.volumes is not None:
        idx = np.asarray(variant.volumes)
    else:
        idx = np.arange(len(dwi.bvals))
    order = np.concatenate([idx[dwi.bvals[idx] <= B0_THRESHOLD], idx[dwi.bvals[idx] > B0_THRESHOLD]])
    sub = dwi.replace(data=dwi.data[..., order], bvals=dwi.bvals[order], bvecs=np.asarray(dwi.bvecs)[order])
    noise = None if variant.snr is None else rician(variant.snr, variant.noise_seed)
    return deg.degrade(sub, hr_mask, r, shift, variant.style, fit=variant.fit, noise=noise)
