"""Grid alignment for per-axis factors (docs/conventions.md, Grid).

A factor is a tuple (fx, fy, fz) of positive integers in the input's voxel axes, at least one > 1; an integer r
means (r, r, r). Along an axis with factor f, low-res voxel i covers high-res voxels f*i .. f*i+f-1 (a factor
of 1 leaves that axis as it is). Every function here takes an integer or a tuple.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .errors import IQTError, IQTWarning

EXAMPLES = "e.g. 2, 3 or 1,1,3"


def factors(value, identity_ok: bool = False) -> tuple[int, int, int]:
    """(fx, fy, fz) from an integer r (-> (r, r, r)), a text "2" or "1,1,3", or a sequence of three; IQTError else.
    An upsampling request needs a factor of at least 2 on one axis; `identity_ok` also takes (1, 1, 1) (the
    geometric helpers below, and evaluation on a grid against itself)."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, (list, tuple, np.ndarray)):
        parts = list(value)
    else:
        parts = [value]
    try:
        f = [_integer(p) for p in parts]
    except (TypeError, ValueError):
        f = []
    if len(f) not in (1, 3):
        raise IQTError(f"--factor {_text(value)}: give one integer or three separated by commas ({EXAMPLES})")
    f = f * 3 if len(f) == 1 else f
    if min(f) < 1:
        raise IQTError(f"--factor {_text(value)}: every factor must be a positive integer ({EXAMPLES})")
    if max(f) > MAX_FACTOR:  # a 320-digit one ended in an OverflowError (a thick-slice audit)
        raise IQTError(f"--factor {_text(value)}: give factors of at most {MAX_FACTOR:,} ({EXAMPLES})")
    if max(f) < 2 and not identity_ok:
        raise IQTError(f"--factor {_text(value)}: nothing to upsample; the factor must be at least 2 along one axis "
                       f"or more ({EXAMPLES})")
    return tuple(f)


MAX_FACTOR = 10_000  # far beyond any grid memory allows (check_output_size refuses those); past it, arithmetic overflows


def _integer(p) -> int:
    if isinstance(p, str):
        return int(p.strip())
    i = int(p)
    if i != p or isinstance(p, bool):
        raise ValueError(p)
    return i


def _text(value) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return ",".join(str(v) for v in value)
    return str(value)


def isotropic(f) -> int | None:
    """r when the factors are (r, r, r), None otherwise."""
    f = factors(f, identity_ok=True)
    return f[0] if f[0] == f[1] == f[2] else None


# A run's peak memory: a multiple of its output tensors' bytes, by method (`Method.peak`), and a fixed part (the modules,
# input and model loaded before it: 0.3-0.45 GB RSS). Cubic x4 of a 128x128x60 fit peaked at 5.1 GB; at x5 its
# tensors alone fit in an 8 GB limit and the run did not. Each method measured in docs/measurements.md, Memory.
PEAK_FIXED_BYTES = 2**29


# Where the memory a process may use is read (module constants: a test points them at fake files)
PROC_CGROUP = "/proc/self/cgroup"
CGROUP_ROOT = "/sys/fs/cgroup"
MEMINFO = "/proc/meminfo"
PROC_STATUS = "/proc/self/status"


def _read_bytes(path) -> int | None:
    """A cgroup limit file's number of bytes; None for "max" (cgroup v2: no limit), a missing or unreadable file."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except (OSError, ValueError):  # ValueError: not text (UnicodeDecodeError)
        return None
    return int(text) if text.isdigit() else None


def cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup, the smallest over it and its ancestors (a Slurm job's limit sits on
    the job, its steps below it; a container sees its own cgroup as the root): cgroup v2 `memory.max` ("max": none),
    cgroup v1 `memory.limit_in_bytes` (no limit reads as a number near 2^63, larger than any machine). None: no
    limit, or no cgroup to read (not Linux)."""
    import os

    try:
        with open(PROC_CGROUP) as fh:
            lines = fh.read().splitlines()
    except (OSError, ValueError):
        return None
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ident, controllers, path = parts
        if ident == "0" and controllers == "":  # cgroup v2 (unified)
            base, name = CGROUP_ROOT, "memory.max"
        elif "memory" in controllers.split(","):  # cgroup v1, the memory controller's hierarchy
            base, name = os.path.join(CGROUP_ROOT, "memory"), "memory.limit_in_bytes"
        else:
            continue
        rel = path.strip("/")
        while True:  # the process's cgroup and each one above it (a container's own path may not be mounted: skipped)
            value = _read_bytes(os.path.join(base, rel, name) if rel else os.path.join(base, name))
            if value is not None:
                found.append(value)
            if not rel:
                break
            rel = os.path.dirname(rel)
    return min(found) if found else None


def memory_available() -> int | None:
    """Bytes the machine can give a new allocation without swapping (/proc/meminfo MemAvailable: free memory and the
    caches it can drop; other programs hold the rest); None where it cannot be read."""
    try:
        with open(MEMINFO) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    parts = line.split()
                    return int(parts[1]) * (1024 if len(parts) < 3 or parts[2].lower() == "kb" else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


# The address space a run on torch reserves beyond its resident memory, over what `address_overhead` read before torch
# loaded: Elition x2 --threads 1, VmPeak (/proc) less the check's need and reading: deep-hetero-var1 --uncertainty
# 0.10 GiB (it died under ulimit -v 2,550,000 KiB after 68 s), espcn -0.01 GiB (docs/measurements.md, Memory)
TORCH_ADDRESS_BYTES = 2**27
# and per torch thread beyond the first (each its own stack and malloc arena): espcn on the 3 mm fit x2, VmPeak at
# --threads 1, 2, 4, 8: 1.20, 1.38, 1.58, 2.02-2.12 million KiB (docs/measurements.md, Memory); a --threads 8 run had
# passed the check under ulimit -v 1,500,000 KiB and died of torch's allocator
TORCH_SECOND_THREAD_BYTES = int(0.18 * 2**30)
TORCH_THREAD_BYTES = int(0.13 * 2**30)  # each after the second

_OVERHEAD: list = []  # address_overhead's first reading in this process: (bytes, torch loaded then)


def address_overhead(torch: bool = False) -> int:
    """Bytes of this process's address space beyond its resident memory (/proc/self/status VmSize - VmRSS: libraries'
    and threads' reserved, untouched pages), read at the first check, before the work (0.21 GiB after the engine's
    imports, 0.52 GiB once torch ran: read again at predict it refused runs that complete); `torch`: the run loads
    torch, which that reading may precede (TORCH_ADDRESS_BYTES more), and its threads (`torch_threads_bytes`); 0 where
    it cannot be read. ulimit -v counts
    them, the peak-RSS estimates do not."""
    import sys

    if not _OVERHEAD:
        _OVERHEAD.append((_address_overhead_now(), "torch" in sys.modules))
    read, had_torch = _OVERHEAD[0]
    return read + (TORCH_ADDRESS_BYTES if torch and not had_torch else 0) + (torch_threads_bytes() if torch else 0)


def torch_threads_bytes() -> int:
    """The address space torch's threads beyond the first take (TORCH_THREAD_BYTES), for the threads the run will use
    (core/threads.py in_use: torch's own count, else --threads, else OMP_NUM_THREADS, else the cores it may use)."""
    from . import threads

    n = threads.in_use()
    return (TORCH_SECOND_THREAD_BYTES if n > 1 else 0) + max(n - 2, 0) * TORCH_THREAD_BYTES


def _address_overhead_now() -> int:
    sizes = {}
    try:
        with open(PROC_STATUS) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmSize", "VmRSS"):
                    sizes[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return max(sizes.get("VmSize", 0) - sizes.get("VmRSS", 0), 0)


def address_limit(torch: bool = False) -> int | None:
    """ulimit -v less `address_overhead(torch)`; None where there is none (or not POSIX)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, ValueError, OSError):
        return None
    return None if soft == resource.RLIM_INFINITY else max(soft - address_overhead(torch), 0)


def memory_limit(address: bool = True) -> int | None:
    """Bytes this process may use: the smallest of the machine's memory, its cgroup's limit (a container's or a Slurm
    job's: the kernel kills a process that passes it) and its address-space limit (ulimit -v) less the address space
    it holds beyond its resident memory (`address_overhead`: a run under ulimit -v 1,900,000 KiB passed a check of its
    peak RSS, then died of out-of-memory); None where none of them can be read (not POSIX)."""
    import os

    limits = [cgroup_limit()]
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    if address:  # False: the machine's and its cgroup's only (check_need's band under ulimit -v)
        limits.append(address_limit())
    limits = [v for v in limits if v is not None]
    return min(limits) if limits else None


_WARNED: set = set()  # memory warnings said once per process (the CLI checks before loading a model, predict again)

# A run's peak estimated against ulimit -v (check_output_size's `band`) is off either way, as need / limit (the limit
# less address_overhead): espcn x2 (--threads 1) completed on the Elition fit from 1.14, and on the 3 mm ortho dev fit
# ran out of memory at 0.977-0.959, espcn-hetero-var1 --uncertainty there at 0.979 and 0.967 (docs/measurements.md,
# Memory). Within this band a run starts with a warning line, beyond it is refused; 0.93 takes in every failure
# measured, and the warning's 'to be sure' figure is reckoned from it; 1.10, not 1.15: the uncertainty run's estimate
# on the Elition fit is not so high (out of memory at 1.05 and 1.09).
ADDRESS_BAND = (0.93, 1.10)


def check_output_size(shape3, f, multiple: float = 4.0, maps: bool = False, tta: bool = False,
                      propagate: bool = False, torch: bool = False) -> None:
    """A high-res grid whose run, `multiple` times its tensors' bytes and PEAK_FIXED_BYTES, would pass the memory this
    process may use (`memory_limit`) is refused before any work (`--factor 1000` would end in a MemoryError; the
    tensors alone are about a quarter of a run's peak). One that fits but needs more than the machine has available
    now (other programs hold the rest) gets one warning line. `maps`, `tta`, `propagate`: the run makes uncertainty
    maps, averages over the input's symmetries, draws samples of its output (`Method.peak_multiple` counts them; said
    so); `torch`: the method runs on torch (`check_need`). The rule itself: `check_need`."""
    shape = tuple(int(s) * int(k) for s, k in zip(shape3, factors(f)))
    tensors = math.prod(shape) * 6 * 4
    need = output_need(shape3, f, multiple)
    check_need(
        need,
        lambda limit: (f"{describe(f)}: a high-res grid of {shape[0]}x{shape[1]}x{shape[2]} voxels, whose tensors "
                       f"alone take {gib(tensors)} GiB and whose run needs about {gib(need, limit)} GiB"
                       f"{_with(maps, tta, propagate)}, more than this process's "
                       f"{gib(limit, need)} GiB of memory; give smaller factors (or a larger --voxel-size)"),
        lambda available: f"{describe(f)}: the run needs about {gib(need, available)} GiB{_with(maps, tta, propagate)}",
        key=(shape, round(need)), stacklevel=4, torch=torch, band=True)


def output_need(shape3, f, multiple: float = 4.0) -> float:
    """The peak bytes `check_output_size` judges a run on a low-res grid of `shape3` at `f` by."""
    shape = tuple(int(s) * int(k) for s, k in zip(shape3, factors(f)))
    return math.prod(shape) * 6 * 4 * multiple + PEAK_FIXED_BYTES + axis_weights_bytes(shape3, f)


def axis_weights_bytes(shape3, f) -> int:
    """The peak bytes of the interpolation's weight matrices (methods/interpolation.py axis_weights: k*n by n along an
    axis of n low-res voxels and factor k, made from an n by n identity), which grow with the axis's square: small for
    a brain (a 256-voxel axis: 3.7 MB), 3.58 GB for an 8000-voxel one, whose whole run peaked at 3.45 GiB resident,
    which the check had not counted (a review: with a 16400-voxel axis the run took 14.8 GB)."""
    return max([(8 + 24 * int(k)) * int(n) ** 2 for n, k in zip(shape3, factors(f)) if int(k) > 1] or [0])


NIFTI_MAX_DIM = 32767  # NIfTI-1 stores each dim as int16: nibabel's writer fails on more, after the whole run


def check_nifti_grid(shape3, f, outputs, nrrd_ok: bool = False) -> None:
    """Refuse (one line) before any work a high-res grid of `shape3` at `f` with an axis above NIFTI_MAX_DIM voxels
    where any of `outputs` (paths) is NIfTI; `nrrd_ok`: the first of them could be a .nrrd instead (said so)."""
    shape = tuple(int(s) * int(k) for s, k in zip(shape3, factors(f)))
    nifti = [p for p in outputs if not str(p).lower().endswith((".nrrd", ".nhdr"))]
    if max(shape) <= NIFTI_MAX_DIM or not nifti:
        return
    other = "; or a .nrrd tensor output (-o NAME.nrrd), which has no such limit" if nrrd_ok and nifti[0] == outputs[0] \
        and len(nifti) == 1 else ""
    raise IQTError(f"{describe(f)}: a high-res grid of {shape[0]}x{shape[1]}x{shape[2]} voxels, more than the "
                   f"{NIFTI_MAX_DIM:,} voxels along an axis a NIfTI file can hold ({nifti[0]}); give smaller "
                   f"factors (or a larger --voxel-size){other}")


def gib(x: float, other: float | None = None) -> str:
    """`x` bytes in GiB to one decimal, or to as many more (up to 3) as tell it from `other`: a need of 1.01 GiB had
    been said to be "1.0 GiB, more than this process's 1.0 GiB"."""
    for d in (1, 2, 3):
        text = f"{x / 2**30:,.{d}f}"
        if (other is None or text != f"{other / 2**30:,.{d}f}") and (text != f"{0:.{d}f}" or x <= 0):
            break  # nor "0.0 GiB" of a limit or size that is not 0 (ulimit -v less a torch run's address space)
    return text


def check_need(need: float, refused, needs, key=None, stacklevel: int = 3, torch: bool = False,
               band: bool = False) -> None:
    """The one rule of the memory checks made before any work (`check_output_size` for a high-res grid,
    `fileio.sizes.check_inputs` for the images a command reads): a run needing `need` bytes at its peak is refused
    where that passes the memory this process may use (`memory_limit`: the machine's, its cgroup's, ulimit -v), with
    the line `refused(limit)`; where it fits but passes what the machine has available now (`memory_available`), one
    warning line, "`needs(available)`, more than the ... available now", said once per `key` in a process (`needs`
    takes the figure it is said beside, so that `gib` tells the two apart). `band`: where ulimit -v sets the limit,
    a need within ADDRESS_BAND of it gets a warning line that it may run out of memory (a failed allocation there is a
    clean MemoryError, not the kernel's kill), refused only beyond."""
    limit = memory_limit()
    address = address_limit(True) if torch and limit is not None else None
    limit = limit if address is None else min(limit, address)
    if limit is None:  # left to the allocation itself
        return
    low, high = ADDRESS_BAND
    in_band = band and limit == address_limit(torch) and limit * low < need <= limit * high
    # the machine's memory and its cgroup's, which the band never eases
    other = (memory_limit(address=False) or math.inf) if in_band else math.inf
    if in_band and need <= other:
        _warn_band(need, limit, needs, torch, key, stacklevel + 1)
    elif in_band and need > limit and need > other:  # that limit is what it passes, not the ulimit -v within the band
        said = " (its cgroup's limit)" if other == cgroup_limit() else " (this machine's memory)"
        raise IQTError(refused(other).replace(" of memory", " of memory" + said, 1))
    elif need > limit:
        text = refused(limit)  # the ulimit -v said after the limit it set (each message says "... GiB of memory")
        raise IQTError(text.replace(" of memory", " of memory" + _address_said(limit, torch), 1) + _fewer_threads(
            need, limit, torch and address is not None and limit == address))
    available = memory_available()
    if available is not None and need > available:
        said = needs(available) if callable(needs) else needs
        message = (f"{said}, more than the {gib(available, need)} GiB this machine has available now (other programs "
                   f"hold the rest of the {gib(limit, available)} GiB this process may use): it may be slow, or be "
                   "killed when memory runs out")
        key = (said, round(need)) if key is None else key
        if key not in _WARNED:
            _WARNED.add(key)
            import warnings

            warnings.warn(message, IQTWarning, stacklevel=stacklevel)


def _warn_band(need: float, limit: int, needs, torch: bool, key, stacklevel: int) -> None:
    """check_need's line for a need within ADDRESS_BAND of the ulimit -v's limit, once per `key` in a process."""
    import resource
    import warnings

    said = needs(limit) if callable(needs) else needs
    key = ("band", said, round(need)) if key is None else ("band", *key)
    if key in _WARNED:
        return
    _WARNED.add(key)
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    kib = math.ceil((need / ADDRESS_BAND[0] + soft - limit) / 1024 / 50_000) * 50_000
    warnings.warn(f"{said}, near this process's {gib(limit, need)} GiB of memory{_address_said(limit, torch)}: within "
                  "the estimate's error there, so it may run out of memory (then it stops with one line and no output); "
                  f"raise ulimit -v to {kib:,} KiB to be sure", IQTWarning, stacklevel=stacklevel)


def _address_said(limit: int, torch: bool) -> str:
    """Where ulimit -v set `limit` (less `address_overhead`): said, else the limit read as memory would not be the
    ulimit -v given."""
    import resource

    if limit != address_limit(torch):
        return ""
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return (f" (ulimit -v {soft // 1024:,} KiB, less the {address_overhead(torch) / 2**30:,.2f} GiB of address space "
            "the process holds beyond its memory)")


def _fewer_threads(need: float, limit: int, threads_counted: bool) -> str:
    """Where torch's threads' address space is what a run under ulimit -v lacks: say that fewer --threads fit (smaller
    factors alone had been advised to an 8-thread run whose factor fitted at one thread)."""
    extra = torch_threads_bytes() if threads_counted else 0
    if not extra or need > limit + extra:
        return ""
    from . import threads

    return (f"; or run fewer threads (--threads 1: its {threads.in_use()} threads hold {extra / 2**30:,.2f} GiB of address "
            "space beyond the first)")


def _with(maps: bool, tta: bool, propagate: bool) -> str:
    """" with its uncertainty maps, --tta and --propagate" (those the run has) for the memory check's message."""
    parts = [w for w, on in (("its uncertainty maps", maps), ("--tta", tta), ("--propagate", propagate)) if on]
    return "" if not parts else " with " + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])


def text(f) -> str:
    """How factors are written in messages and names: "2" for (2, 2, 2), "1,1,3" otherwise."""
    r = isotropic(f)
    return str(r) if r is not None else ",".join(map(str, factors(f, identity_ok=True)))


def describe(f) -> str:
    """"factor 2" or "factors 1,1,3" (for messages)."""
    return ("factor " if isotropic(f) is not None else "factors ") + text(f)


def record(f):
    """The factors as JSON records hold them: an integer when isotropic (as before), else a list of three."""
    r = isotropic(f)
    return r if r is not None else list(factors(f, identity_ok=True))


def permute(f, ornt) -> tuple[int, int, int]:
    """The factors in the axes a reorientation (nibabel `ornt`: per input axis, (output axis, flip)) maps to."""
    f = factors(f, identity_ok=True)
    out = [0, 0, 0]
    for src, (dst, _) in enumerate(np.asarray(ornt)):
        out[int(dst)] = f[src]
    return tuple(out)


THICK_RATIO = 1.2  # a voxel axis this many times longer than the other two holds thick slices (dmri/outliers.py)


def thick_axis(voxel_size) -> int | None:
    """The voxel axis at least THICK_RATIO times longer than the other two (thick slices), else None."""
    size = np.asarray(voxel_size, float)
    k = int(np.argmax(size))
    return k if size[k] >= THICK_RATIO * max(np.delete(size, k)) else None


def largest_axis(f) -> int | None:
    """The one axis with the largest factor (the thick-slice axis of through-plane factors such as 1,1,3); None
    when two or more axes share the largest factor (isotropic)."""
    f = factors(f, identity_ok=True)
    top = [i for i, k in enumerate(f) if k == max(f)]
    return top[0] if len(top) == 1 else None


def axis_order(f, have) -> tuple[int, int, int] | None:
    """The axis permutation p (new axis k is old axis p[k]) that turns factors `f` into one of the factor sets
    `have`: the identity when `f` is one of them, else a cyclic one (a rotation of the axes, so the anatomy is
    turned, never mirrored), else a swap; None when no set is a reordering of `f`. A model trained for (1, 1, 3)
    (thick slices along the last axis) serves (3, 1, 1) with the axes permuted (docs/conventions.md, Grid)."""
    f = factors(f, identity_ok=True)
    sets = [factors(h, identity_ok=True) for h in have]
    for p in ROTATIONS_FIRST:
        if tuple(f[i] for i in p) in sets:
            return p
    return None


def _odd(p) -> bool:
    return sum(p[i] > p[j] for i in range(3) for j in range(i + 1, 3)) % 2 == 1


ROTATIONS_FIRST = sorted(itertools.permutations(range(3)), key=lambda p: (_odd(p), p))


def check_voxel_size(target_mm, name: str = "--voxel-size") -> float:
    """A wanted output voxel size in mm: a positive finite number; IQTError (naming the control `name`) else."""
    try:
        target = float(target_mm)
    except (TypeError, ValueError):
        target = float("nan")
    if not (target > 0 and math.isfinite(target)):
        raise IQTError(f"{name} {target_mm}: give the wanted output voxel size in mm, a positive number (e.g. 1.25)")
    return target


# A voxel this much above the target reaches it: headers hold 2.7073 for a nominal 2.7 mm
VOXEL_SIZE_TOLERANCE = 0.02


def for_voxel_size(voxel_size, target_mm, name: str = "--voxel-size",
                   instead: str = "give a smaller voxel size, or a --factor") -> tuple[int, int, int]:
    """The smallest integer factor per axis that brings each voxel size to at most `target_mm` (within
    VOXEL_SIZE_TOLERANCE: a scanner's nominal 2.7 mm, stored as 2.7073, is not split in three for a target of 2.7);
    IQTError (naming the control `name`, suggesting `instead`) when no axis needs upsampling."""
    target = check_voxel_size(target_mm, name)
    v = [float(x) for x in voxel_size]
    ratios = [x / (target * (1 + VOXEL_SIZE_TOLERANCE)) for x in v]
    if not all(r <= MAX_FACTOR for r in ratios):  # 1e-308 gave infinity, then an OverflowError (a thick-slice audit)
        raise IQTError(f"{name} {target:g}: the input's voxels ({'x'.join(f'{x:.3g}' for x in v)} mm) would need factors "
                       f"above {MAX_FACTOR:,}; give the wanted output voxel size in mm (e.g. 1.25)")
    f = tuple(max(1, math.ceil(r - 1e-6)) for r in ratios)
    if max(f) < 2:
        raise IQTError(f"{name} {target:g}: the input's voxels ({'x'.join(f'{x:.3g}' for x in v)} mm) are already "
                       f"at most {target:g} mm, or within {VOXEL_SIZE_TOLERANCE:.0%} of it (a header's 2.7073 mm is a "
                       f"nominal 2.7); {instead}")
    return f


def repeat_blocks(a, f) -> np.ndarray:
    """A low-res map on the high-res grid: each voxel repeated into its fx*fy*fz block (nearest upsampling)."""
    fx, fy, fz = factors(f, identity_ok=True)
    return np.asarray(a).repeat(fx, 0).repeat(fy, 1).repeat(fz, 2)


def hr_affine(lr_affine: np.ndarray, f) -> np.ndarray:
    """Affine of the high-res grid: voxel size / f per axis, origin at the centre of the first high-res voxel."""
    fa = np.asarray(factors(f, identity_ok=True), float)
    t = np.diag([*(1.0 / fa), 1.0])
    t[:3, 3] = -(fa - 1) / (2.0 * fa)
    return np.asarray(lr_affine, float) @ t


def lr_affine(hr_aff: np.ndarray, f, shift=(0, 0, 0), gap=(0, 0, 0)) -> np.ndarray:
    """Affine of the low-res grid made by averaging fx*fy*fz blocks that start at high-res index `shift`, with `gap`
    high-res planes dropped after each block (slices with a gap: the low-res spacing is f + gap)."""
    fa = np.asarray(factors(f, identity_ok=True), float)
    t = np.diag([*(fa + np.asarray(gap, float)), 1.0])
    t[:3, 3] = np.asarray(shift, float) + (fa - 1) / 2.0
    return np.asarray(hr_aff, float) @ t


def lr_coordinates(n_lr: int, r: int) -> np.ndarray:
    """Continuous low-res index of each of the r*n_lr high-res voxel centres along one axis (factor r on it)."""
    return (np.arange(r * n_lr) - (r - 1) / 2.0) / r


def bounding_box(present: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box (one slice per axis) holding every True voxel of `present`; None where there is none."""
    box = []
    for ax in range(present.ndim):  # one projection per axis: no index array of every voxel
        hit = np.flatnonzero(present.any(axis=tuple(a for a in range(present.ndim) if a != ax)))
        if not len(hit):
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def box_affine(affine, box) -> np.ndarray:
    """The voxel-to-world matrix of the sub-grid `box` of a grid with `affine`: the same axes, its first voxel's origin."""
    out = np.array(affine, float)
    out[:3, 3] += out[:3, :3] @ [b.start for b in box]
    return out


def same_affine(affine, reference) -> bool:
    """Whether `affine` places the voxels where `reference` does: every entry within a thousandth of the reference's
    largest voxel-axis entry (a header's rounding passes, a shift or a flip does not). The one test of a mask's grid,
    for a mask file (fileio.load_mask) and for a mask given to `Method.predict` in memory."""
    return bool(np.allclose(np.asarray(affine, float), np.asarray(reference, float), atol=affine_tolerance(reference)))


def affine_tolerance(reference) -> float:
    """How far (mm) `same_affine` lets an affine's entries lie from `reference`'s: a thousandth of its largest
    voxel-axis entry (a header's rounding)."""
    return 1e-3 * float(np.abs(np.asarray(reference, float)[:3, :3]).max())


def extent_mm(where, affine) -> float:
    """The largest extent in mm, along the voxel axes, of the voxels `where` (X,Y,Z bool); 0 where there are none."""
    w = np.asarray(where, bool)
    if not w.any():
        return 0.0
    sizes = np.linalg.norm(np.asarray(affine, np.float64)[:3, :3], axis=0)
    spans = []
    for ax in range(3):
        idx = np.flatnonzero(w.any(axis=tuple(a for a in range(3) if a != ax)))
        spans.append((idx[-1] - idx[0] + 1) * sizes[ax])
    return float(max(spans))
