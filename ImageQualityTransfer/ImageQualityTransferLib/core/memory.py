"""The memory a process may use and a run's peak against it (docs/measurements.md, Memory): the machine's memory, its
cgroup's limit, ulimit -v less the address space held beyond resident memory (torch's threads counted), the warning
band under ulimit -v, and the one rule of the checks made before any work (`check_need`)."""

from __future__ import annotations

import math

from .errors import IQTError, IQTWarning
from .grid import describe, factors
from .i18n import _
from .words import listed

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
        message = _("{need}, more than the {available} GiB this machine has available now (other programs hold the "
                    "rest of the {limit} GiB this process may use): it may be slow, or be killed when memory runs "
                    "out").format(need=said, available=gib(available, need), limit=gib(limit, available))
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
    address = _address_said(limit, torch)
    line = _("{need}, near this process's {limit} GiB of memory {address}: within the estimate's error there, so it may "
             "run out of memory (then it stops with one line and no output); raise ulimit -v to {kib} KiB to be "
             "sure") if address else \
        _("{need}, near this process's {limit} GiB of memory: within the estimate's error there, so it may run out of "
          "memory (then it stops with one line and no output); raise ulimit -v to {kib} KiB to be sure")
    warnings.warn(line.format(need=said, limit=gib(limit, need), address=address.strip(), kib=f"{kib:,}"), IQTWarning,
                  stacklevel=stacklevel)


def _address_said(limit: int, torch: bool) -> str:
    """Where ulimit -v set `limit` (less `address_overhead`): said, else the limit read as memory would not be the
    ulimit -v given."""
    import resource

    if limit != address_limit(torch):
        return ""
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return " " + _("(ulimit -v {kib} KiB, less the {overhead} GiB of address space the process holds beyond its "
                   "memory)").format(kib=f"{soft // 1024:,}", overhead=f"{address_overhead(torch) / 2**30:,.2f}")


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
    return " with " + listed(parts) if parts else ""
