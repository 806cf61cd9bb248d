"""The one exception type that reaches a user: it says what was wrong and what to do."""


class IQTError(Exception):
    """A problem with the user's input or request; the message names the problem and the fix."""


class IQTWarning(UserWarning):
    """The result is only degraded, not wrong: the message names the problem and the fix (the CLI prints one line)."""


def torch_out_of_memory(exc: BaseException) -> bool:
    """torch's CPU allocator failing (a RuntimeError, "DefaultCPUAllocator: can't allocate memory"), or its GPU's
    ("CUDA out of memory", `--device cuda`): the machine's memory, ulimit -v or the GPU's, as a MemoryError, not a bug."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "DefaultCPUAllocator" in text
                                              or "CUDA out of memory" in text)
