"""Which failure a user is told of (core/errors.py out_of_memory, _chain): the last one raised. A MemoryError in its
context counts only where the last one is one of Dask's wrappers (its nanny's AssertionError "Status.init", RuntimeError
"Nanny failed to start."); a bug raised while handling a MemoryError had been said 'out of memory'."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from ImageQualityTransferLib.core.errors import out_of_memory, thread_not_started


def raised_while_handling(first: BaseException, then: BaseException, how: str = "implicit") -> BaseException:
    """`then` raised inside `except` of `first`: implicitly (__context__), `from` it, or `from None`."""
    try:
        try:
            raise first
        except BaseException as exc:
            if how == "from":
                raise then from exc
            if how == "from None":
                raise then from None
            raise then
    except BaseException as exc:
        return exc


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), KeyError("a"), ValueError("x"), IndexError("i"),
                                 # RuntimeError's subclasses, a plain RuntimeError and an engine's assert (a review's
                                 # chain_kinds.py: these had still been said 'out of memory')
                                 NotImplementedError("a method left abstract"),
                                 RecursionError("maximum recursion depth exceeded"),
                                 RuntimeError("dictionary changed size during iteration"),
                                 AssertionError("an engine assert"), AssertionError()])
@pytest.mark.parametrize("how", ["implicit", "from None"])
def test_a_bug_raised_while_handling_a_memory_error_is_a_bug(bug, how):
    assert not out_of_memory(raised_while_handling(MemoryError(), bug, how))
    assert not out_of_memory(raised_while_handling(OSError(errno.ENOMEM, "Cannot allocate memory"), bug, how))
    assert not thread_not_started(raised_while_handling(RuntimeError("can't start new thread"), bug, how))


def test_memory_failures_and_their_wrappers_are_out_of_memory():
    try:  # numpy's own: a MemoryError subclass
        np.empty(2**50, np.uint8)  # 1 PiB: malloc refuses it
    except MemoryError as exc:
        numpy_oom = exc
    assert type(numpy_oom) is not MemoryError and out_of_memory(numpy_oom)  # _ArrayMemoryError, named MemoryError
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"))
    # wrapped while handled: Dask's nanny (AssertionError, then RuntimeError from it); concurrent.futures' broken pool
    # keeps no link to what broke it, so it is not followed either way
    nanny = raised_while_handling(raised_while_handling(MemoryError(), AssertionError("Status.init")),
                                  RuntimeError("Nanny failed to start."), "from")
    assert out_of_memory(nanny)
    assert out_of_memory(raised_while_handling(MemoryError(), RuntimeError("Worker failed to start.")))
    assert not out_of_memory(raised_while_handling(MemoryError(), RuntimeError("pool broken")))
    # raised `from` it: the author said so
    assert out_of_memory(raised_while_handling(MemoryError(), TypeError("as said"), "from"))
    # a wrapper raised `from None` still hides it
    assert not out_of_memory(raised_while_handling(MemoryError(), RuntimeError("x"), "from None"))
    # a MemoryError raised while handling a bug is the last one raised
    assert out_of_memory(raised_while_handling(TypeError("bug"), MemoryError()))
