"""Data-parallel training over processes: torch.distributed (gloo, CPU) set up by `iqt train --nproc N` or by
`torchrun`, and the few collective steps `training.train` needs."""

from __future__ import annotations

import gc
import os
import socket

from ...core.errors import IQTError


def rank_and_world() -> tuple[int, int]:
    """(rank, number of processes) of the initialised group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def agree(value):
    """Rank 0's value (a float or int) on every rank, so that decisions cannot drift apart."""
    import torch
    import torch.distributed as dist

    if rank_and_world()[1] == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.broadcast(t, 0)
    return type(value)(t.item())


def gather(obj) -> list:
    """Every rank's `obj`, in rank order (a one-item list without a group)."""
    import torch.distributed as dist

    rank, world = rank_and_world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def init_from_environment() -> bool:
    """Join the group `torchrun` describes (WORLD_SIZE > 1 in the environment); False when there is none."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_available() and dist.is_initialized()
    dist.init_process_group("gloo", init_method="env://")
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn, nproc: int, port: int, threads: int | None, args: tuple):
    import torch
    import torch.distributed as dist

    if threads:
        torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=nproc)
    fn(*args)
    gc.collect()  # nothing that holds the group (a DDP reducer) may outlive it
    dist.barrier()  # every rank done before any tears the group down
    dist.destroy_process_group()


def spawn(fn, nproc: int, *args, threads: int | None = None) -> None:
    """Run fn(*args) in `nproc` new processes joined in one gloo group on this machine (`threads` torch threads each:
    default the CPU count / nproc); a failure in any of them is raised here as an IQTError with its last line."""
    import torch.multiprocessing as mp

    if nproc < 1:
        raise IQTError(f"--nproc {nproc}: give at least 1 process")
    threads = threads or max(1, (os.cpu_count() or 1) // nproc)
    try:
        mp.spawn(_entry, args=(fn, nproc, free_port(), threads, args), nprocs=nproc, join=True)
    except mp.ProcessRaisedException as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        last = lines[-1] if lines else repr(exc)
        raise IQTError(last.split("IQTError: ", 1)[1] if "IQTError: " in last else f"a training process failed: {last}") from None
    except mp.ProcessExitedException as exc:
        raise IQTError(f"a training process died ({exc}); see its messages above") from None
