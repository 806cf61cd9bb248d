"""The `iqt` command's entry point: signals are handled from its first moment, before the command line's modules (scipy,
dipy, torch) are imported, so that a Ctrl-C or SIGTERM in the first second ends in one line, not an import's traceback
(0.4-0.8 s of imports come before `apps.cli.main` could take the signals)."""

from __future__ import annotations

import signal
import sys

from . import signals


# a signal during the imports: no command had begun, whatever it writes (`iqt view` writes nothing; an audit)
BEFORE_THE_COMMAND = "it came before the command started: nothing was written"


def main() -> int:
    signals.handle_signals()  # a signal during the imports below is deferred to their end (signals._on_signal)
    try:
        from .cli import main as run

        pending = signals._deferred["signum"]
        if pending is not None:  # came during the imports: the command has not started
            signals.cancel_deferred()
            raise KeyboardInterrupt if pending == signal.SIGINT else signals.Terminated(pending)
        return run(_command=True)  # the process's own stdout kept (cli._buffer_stdout)
    except KeyboardInterrupt:
        print(f"iqt: interrupted; {BEFORE_THE_COMMAND}", file=sys.stderr)
        return 130
    except signals.Terminated as exc:
        print(f"iqt: stopped by {signal.Signals(exc.signum).name}; {BEFORE_THE_COMMAND}", file=sys.stderr)
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
