"""The one exception type that reaches a user: it says what was wrong and what to do."""


class IQTError(Exception):
    """A problem with the user's input or request; the message names the problem and the fix."""


class IQTWarning(UserWarning):
    """The result is only degraded, not wrong: the message names the problem and the fix (the CLI prints one line)."""
