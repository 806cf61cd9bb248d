"""`iqt`: the command line. One module per command (or family of commands), each with `add_parsers(sub)`;
shared options and checks in `options`.

Bad input prints one line on stderr naming the problem and the fix, exits with status 2 and writes no
output file (writers are atomic and outputs are checked before any work starts).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import signal
import sys
import warnings

from ...core import threads
from ...core.errors import OUT_OF_MEMORY as _OUT_OF_MEMORY, IQTError, IQTWarning
from ..signals import (DEFER_S, Terminated, _deferred, _importing, _on_signal, _resend,  # noqa: F401 (re-exported)
                       cancel_deferred, exit_past_left_threads, handle_signals)
from .. import signals as signals_module
from . import batch, benchmark, demo, evaluate, fit, lesion_check, propagate, report, track, train, upsample, view

COMMANDS = (fit, upsample, evaluate, benchmark, batch, demo, train, track, propagate, lesion_check, report, view)
OWN_COMMITS = ("batch", "train")  # commands whose outputs land one by one (fileio.staging.all_or_none)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), the same shape as every other error of `iqt`."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")

    def parse_args(self, args=None, namespace=None):
        # an unknown option after the command is said by the command's parser, pointing to its help: argparse says
        # it from the top one ("see 'iqt --help'", whose help lists no option of the command)
        given = sys.argv[1:] if args is None else list(args)
        parsed, extras = self.parse_known_args(given, namespace)
        if extras:
            commands = next((a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {})
            command = getattr(parsed, "command", None)
            after = command in given and extras[0] in given[given.index(command) + 1:]
            (commands[command] if after else self).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _get_value(self, action, arg_string):
        # every string of the command line passes here before its type: "" (an unset "$VAR") had read as the option
        # left out or as the current folder, exit 0; no option of `iqt` takes "" (each add_argument in apps/cli)
        if arg_string == "" and not isinstance(action, argparse._SubParsersAction):
            raise EmptyValue(action)
        return super()._get_value(action, arg_string)


class EmptyValue(IQTError):
    """An option or argument given as "": refused in one line when the command line is read, before any work."""

    def __init__(self, action):
        name = "/".join(action.option_strings) or action.metavar or action.dest
        fix = "give a value" if action.required or not action.option_strings else "give a value or leave the option out"
        super().__init__(f"{name} '': an empty value (an unset shell variable?); {fix}")


class _Version(argparse.Action):
    """`iqt --version`: the version and the digest of the engine's code and model registry (core/version.py), the two
    things a methods section or a bug report needs; the digest is computed only when asked (5-24 ms)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from ...core.version import __version__
        from ...fileio.model_files import build

        print(f"iqt {__version__} (build {build()})")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="iqt", description="Image Quality Transfer for diffusion MRI (DTI super-resolution with uncertainty).")
    p.add_argument("--version", action=_Version, help="print the version and the build (a digest of the engine's code "
                                                      "and its model registry) and exit")
    p.add_argument("--debug", action="store_true", help="show a traceback on unexpected errors")
    p.add_argument("--threads", type=int, help="CPU threads for numerical libraries and PyTorch (default: theirs; the "
                                                "forests always solve their small systems on one thread)")
    p.add_argument("--no-record", action="store_true",
                   help="write no run record (the command as typed, with its paths) into the outputs' headers, and "
                        "file names for paths in report pages and lesion-check JSON: for files shared outside, whose "
                        "folder or file names may name a patient (docs/command-line.md, Sharing outputs); a slice "
                        "gap that fit or degrade found is still recorded, without the command, for upsample to say")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parsers(sub)
    summaries = {a.dest: a.help for a in sub._choices_actions}
    for name, sp in sub.choices.items():  # 'iqt upsample ... --threads N' as well as 'iqt --threads N upsample ...'
        if sp.description is None:  # 'iqt NAME --help' opens with what the command does, as 'iqt --help' lists it
            sp.description = summaries[name]
        if not any("--threads" in a.option_strings for a in sp._actions):
            sp.add_argument("--threads", type=int, dest="command_threads", help="as 'iqt --threads N " + name + " ...'")
    return p


class _Printed:
    """sys.stdout for the length of a command, outliving its reader: where whatever reads the printed lines stops early
    (`iqt upsample ... | head -1`, a log collector that dies), the rest of the lines go to /dev/null and the work goes on
    to its end, so that every output file is still written and every failure still said on stderr. Characters its
    encoding lacks are written as Python's stderr writes them (backslashreplace: \\u60a3), not an error (on
    Windows, stdout to a file or a pipe is in the ANSI code page, and a `wrote` line naming 患者 would end a finished run
    in an internal error)."""

    def __init__(self, stream):
        self.stream, self.gone, self.failed = stream, False, None

    def write(self, text):
        if not self.gone:
            try:
                written = self._guarded(self.stream.write, text)
            except UnicodeEncodeError:  # nothing was written: a text stream encodes the whole text first
                written = self._guarded(self._write_encodable, text)
            if not self.gone:
                return written
        return len(text)

    def _write_encodable(self, text):
        try:
            return self.stream.write(_encodable(text, getattr(self.stream, "encoding", None)))
        except UnicodeEncodeError:
            return self.stream.write(_encodable(text, "ascii"))

    def flush(self):
        if not self.gone:
            self._guarded(self.stream.flush)

    def _guarded(self, call, *args):
        """call(*args) on the stream, where a lost reader (EPIPE) or a refused write sends the rest to /dev/null."""
        try:
            return call(*args)
        except BrokenPipeError:
            self._lost()
        except BlockingIOError:  # said by main and _run (a full non-blocking pipe: its own line)
            raise
        except OSError as exc:  # `iqt ... > /dev/full`, a full disk or quota under a redirected stdout
            self._failed(exc)

    def _failed(self, exc):
        """stdout's file refused a write (ENOSPC, EIO, EFBIG): the rest goes to /dev/null, as for a lost reader, and
        `failed_line` says it once the command has ended (the interpreter's own flush had printed 'Exception ignored'
        and exited 120)."""
        self.failed = self.failed or exc
        self._lost()

    def failed_line(self, code: int) -> str:
        done = " (the command itself ran to its end)" if code == 0 else ""
        return (f"iqt: error: standard output could not be written ({' '.join(str(self.failed).split())}), so what iqt "
                f"printed there was lost{done}; free space where it is redirected, or redirect it to another disk or "
                "to /dev/null")

    def _lost(self):
        self.gone = True
        try:  # so that the interpreter's own flush at exit does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
        except (OSError, ValueError):  # not a real file (an in-process caller's capture)
            pass

    def __getattr__(self, name):
        return getattr(self.stream, name)


STDOUT_CLOSED = ("iqt: error: standard output is closed (file descriptor 1); run iqt with it open, e.g. redirected "
                 "to a file or to /dev/null to discard what it prints")


def _buffer_stdout() -> str | None:
    """Under PYTHONUNBUFFERED (python -u) stdout writes straight to its file, and a full non-blocking pipe's EAGAIN
    is lost there (FileIO.write returns None, which TextIOWrapper ignores): `iqt --help` had written nothing and exited
    0. A buffer over it, flushed at each line as -u would, raises BlockingIOError, which main and _run say.
    `STDOUT_CLOSED` where stdout's descriptor is closed (`iqt ... >&-` gives no sys.stdout; a caller's os.close(1) had
    let OSError EBADF out of main), else None."""
    import io

    out = sys.stdout
    if out is None:
        return STDOUT_CLOSED
    try:
        fd = out.fileno()
        os.fstat(fd)
    except OSError as exc:
        return STDOUT_CLOSED if exc.errno == errno.EBADF else None  # io.UnsupportedOperation: a capture, no file
    except (AttributeError, ValueError):  # not a file, or one the caller closed
        return None
    if isinstance(out, io.TextIOWrapper) and isinstance(getattr(out, "buffer", None), io.RawIOBase):
        out.flush()
        # its own FileIO over the same descriptor, not closing it: over the caller's, the wrapper closed that one when
        # collected, and a caller that put its stdout back (main() in-process, argv None) found it closed (a review)
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(fd, "w", closefd=False)), encoding=out.encoding,
                                      errors=out.errors, line_buffering=True)
    return None


def _encodable(text: str, encoding: str | None) -> str:
    """`text` with the characters `encoding` lacks as backslash escapes."""
    try:
        return text.encode(encoding or "ascii", "backslashreplace").decode(encoding or "ascii")
    except LookupError:
        return text.encode("ascii", "backslashreplace").decode("ascii")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    from ...methods.base import warning_lines  # a long warning as several lines (methods/base.py WARNING_LINE_LIMIT)

    for text in warning_lines(' '.join(str(message).split())):
        print(f"iqt: warning: {text}", file=sys.stderr)


NEGATIVE_LIST = re.compile(r"-\d[\d.]*(,-?[\d.]*)+")  # "-1,0,0": argparse takes it for an option, not a value


def _negative_lists(argv: list[str], parser) -> list[str]:
    """`argv` with an option's comma list that starts with a minus joined to it (`--shift -1,0,0` as `--shift=-1,0,0`),
    so that its own check says what is wrong: argparse had said "expected one argument". Only onto an option of the
    command it is given to (or of `iqt` itself, before the command) that takes a value, named in full or by a prefix
    argparse takes for it, and none after "--" (reviews: "-- -1,0,0" had become "--=-1,0,0", and batch's flag
    --uncertainty taken the list because upsample's takes a value)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    at = next((i for i, t in enumerate(argv) if t in sub.choices), None)

    def value_taking(p) -> dict:
        return {o: a.nargs != 0 for a in p._actions for o in a.option_strings if o.startswith("--")}

    top, command = value_taking(parser), value_taking(sub.choices[argv[at]]) if at is not None else {}
    out = []
    for i, token in enumerate(argv):
        if token == "--":
            out.extend(argv[i:])
            break
        options = top if at is None or i < at else command
        before = out[-1] if out else ""
        if NEGATIVE_LIST.fullmatch(token) and before.startswith("--") and "=" not in before:
            named = [before] if before in options else [o for o in options if o.startswith(before)]
            if len(named) == 1 and options[named[0]]:
                out[-1] = f"{named[0]}={token}"
                continue
        out.append(token)
    return out


def main(argv=None, *, _command=False) -> int:
    """The command line `argv` (sys.argv's where None) run, and its exit status. `_command`: the `iqt` command itself
    (apps/entry.py), which keeps the stdout `_buffer_stdout` gave it; an in-process caller gets its own sys.stdout back
    (a review: its prints had gone on through iqt's wrapper into whatever file later took the same descriptor)."""
    given = sys.stdout
    try:
        code = _main(argv)
    finally:
        if not _command:
            sys.stdout = given
    if _command:
        exit_past_left_threads(code)  # iqt view's run left in torch: the interpreter's exit had aborted (134)
    return code


def _main(argv) -> int:
    process = argv is None  # the `iqt` command itself, or a caller running it as the command (sys.argv)
    if process:
        threads.wait_passively()  # before any command loads torch
        # the figures are drawn on Agg canvases without pyplot (apps/figures.py): the environment's backend is never
        # used, and an unknown one ended 'iqt demo' and 'iqt report' in an internal error after all their work (audit)
        os.environ.pop("MPLBACKEND", None)
        closed = _buffer_stdout()
        if closed is not None:
            print(closed, file=sys.stderr)
            return 2
    argv = sys.argv[1:] if argv is None else list(argv)
    # argparse swallows an OSError writing its help (_print_message): a help longer than stdout's buffer whose
    # reader is gone would end in status 0; written through _Printed, the lost reader is seen (141 below)
    helped = sys.stdout = _Printed(sys.stdout) if process else sys.stdout
    try:
        parser = build_parser()
        args = parser.parse_args(_negative_lists(argv, parser))
    except EmptyValue as exc:
        print(f"iqt: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version: argparse printed; a full non-blocking stdout fails only at its flush
        if process and exc.code in (0, None):
            try:
                helped.flush()  # `iqt --help | true`: the reader gone, as a command's output (141, nothing said)
            except BlockingIOError as blocked:  # as `_run` says it for a command (the interpreter's flush: status 120)
                print(_would_block(blocked), file=sys.stderr)
                helped._lost()
                return 1
            if helped.failed is not None:  # `iqt --help > /dev/full`: argparse swallowed the error (a traceback at exit)
                print(helped.failed_line(1), file=sys.stderr)
                return 1
            if helped.gone:
                return 141
        raise
    except BlockingIOError as blocked:  # --version's own print, stdout line-buffered (_buffer_stdout): as above
        if not process:
            raise
        print(_would_block(blocked), file=sys.stderr)
        _Printed(sys.stdout)._lost()
        return 1
    except BrokenPipeError:  # the help longer than the pipe holds, its reader gone while argparse wrote it
        if not process:
            raise
        _Printed(sys.stdout)._lost()
        return 141
    finally:
        if process:
            sys.stdout = helped.stream
    args.argv = argv  # the command as given (recorded in trained models' sidecars)
    if hasattr(args, "tensor_order"):  # whether --tensor-order was given (fileio.load_tensor's `stated`)
        args.order_stated = args.tensor_order is not None
        args.tensor_order = args.tensor_order or "nifti"
    if process:  # the `iqt` command's to its exit (a warning during teardown too); an in-process caller's: below
        warnings.showwarning = _show_warning
    before = dict(handle_signals())
    # a handler other than SIG_IGN found here: the caller replaced the one an earlier `main()` left (signals.py)
    signals_module.ignored_by_the_command.difference_update(s for s, h in before.items() if h != signal.SIG_IGN)
    signals = list(before)
    given_stdout = sys.stdout
    printed = sys.stdout = _Printed(given_stdout)
    try:
        # each run says its warnings, each once: Python's registry of warnings already shown would otherwise keep a
        # second in-process run (a test, a notebook calling main) silent; entering this context resets it
        with warnings.catch_warnings(), contextlib.nullcontext() if process else threads.restored():
            warnings.simplefilter("default", IQTWarning)
            warnings.showwarning = _show_warning  # the engine's IQTWarnings as one line each, the caller's back after
            code = _run(args, printed, signals)
    finally:
        sys.stdout = given_stdout
        cancel_deferred()  # a signal still waiting for an import's end: the command has ended
        for sig, handler in before.items():
            # run as the `iqt` command, the process only exits from here: a signal now would find every output written
            # and, with Python's own handler back, kill it with 143 during teardown; in-process callers
            # get their handlers back
            signal.signal(sig, signal.SIG_IGN if process else handler)
            if process and handler != signal.SIG_IGN:  # a caller's exit wait takes it back (signals._take_exit_signals)
                signals_module.ignored_by_the_command.add(sig)
    if printed.failed is not None:  # stdout's file refused what was printed (a full disk): one line, not exit 0
        with contextlib.suppress(OSError):
            print(printed.failed_line(code), file=sys.stderr)
        return code or 1
    # a reader gone early: the work was done; exit as a shell reports a process that SIGPIPE stopped
    code = 141 if printed.gone and code == 0 else code
    return code  # the `iqt` command exits past a run left in torch in `main`; an in-process caller (argv None too) goes on


def _record(args) -> dict:
    """What each output's header records of this run (fileio/records.py `run_record`): the command as given, every
    option as given or defaulted (a command adds what it resolves later: upsample its factors, model and samples), the
    version and build, and the CPU threads in use (the CNNs' values depend on them, docs/command-line.md, "The same
    bytes again").
    Nothing of the time or the machine beyond that, so that a rerun writes the same bytes."""
    import shlex

    from ...core.version import __version__
    from ...fileio.model_files import build

    hidden = {"func", "argv", "order_stated"}
    options = {k: v for k, v in sorted(vars(args).items()) if k not in hidden and not callable(v)}
    command = shlex.join(["iqt", *getattr(args, "argv", [])])
    if getattr(args, "command", None) == "batch":  # a --scheduler URL's password masked in all a run records
        from ..batch.scheduler import masked_command, shown  # (dataset_description.json had held it: a review)

        command = masked_command(getattr(args, "argv", []))
        if options.get("scheduler"):
            options["scheduler"] = shown(options["scheduler"])
    return {"command": command, "options": options, "version": __version__,
            "build": build()}  # and the threads, at each write (records.run_json)


def _path_free_record(args):
    """A `--no-record` run's record: no command, option or path, only the facts of the data a later command reads back
    to warn (records.PATH_FREE), written where there are any (a slice gap from `iqt fit`'s DWI sidecar had been lost,
    so that upsample said nothing of it: a low-field clinic's audit). An MRtrix output gets no command_history either
    (fileio/volumes.py _mif_record): its input's holds the commands and paths that made it (docs/command-line.md,
    "Sharing outputs")."""
    from ...fileio.records import PATH_FREE, run_record

    return run_record({"options": {"command": getattr(args, "command", None)}}, keep=PATH_FREE)


def _run(args, printed, signals=()) -> int:
    """The command, its failures as one line each on stderr and an exit status. `signals`: those turned into
    Terminated, ignored once the command has returned (its outputs are all written: a job stopped now has finished)."""
    stage = None  # the run's outputs (fileio.staging.all_or_none): committed, a signal came once all were in place
    try:
        given = [v for v in (getattr(args, "command_threads", None), getattr(args, "train_threads", None), args.threads)
                 if v is not None]
        if len(set(given)) > 1:  # before and after the command: the command's had won without a word (an audit)
            raise IQTError(f"--threads given twice, {given[-1]} before the command and {given[0]} after it: give it once")
        threads.apply(given[0] if given else None)
        from ...fileio.staging import all_or_none
        from ...fileio.nifti import carried_codes, nibabel_quiet
        from ...fileio.records import run_record

        # outputs keep their input's orientation codes (not in batch, whose worker processes run outside this run: its
        # outputs would otherwise differ by --workers); a run's outputs are written all or none, but for batch (each
        # subject commits on its own, for a resume) and train (a checkpoint lands when written)
        with (carried_codes() if args.command != "batch" else contextlib.nullcontext()), \
                (all_or_none() if args.command not in OWN_COMMITS else contextlib.nullcontext()) as stage, \
                (run_record(_record(args)) if not getattr(args, "no_record", False) else _path_free_record(args)), \
                nibabel_quiet():  # nibabel's log lines off stderr for the whole run (fileio/nifti.py)
            code = args.func(args)
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        cancel_deferred()  # every output is written: a signal that waited for an import stops nothing now
        printed.flush()  # a pipe buffers what was printed: a reader gone early may be met only here
    except IQTError as exc:
        print(f"iqt: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        _say_the_rest(stage)
        with contextlib.suppress(OSError):  # a terminal gone (SIGHUP): EIO, and the exit had been 1, not the signal's
            print(f"iqt: interrupted; {_what_is_kept(args, stage, exc)}", file=sys.stderr)
        return 130
    except Terminated as exc:
        _say_the_rest(stage)
        with contextlib.suppress(OSError):  # as above: 128 + the signal even where the line cannot be written
            print(f"iqt: stopped by {signal.Signals(exc.signum).name}; {_what_is_kept(args, stage, exc)}",
                  file=sys.stderr)
        return 128 + exc.signum
    except Exception as exc:  # one line unless --debug: out of memory, a full disk, else a bug (not bad input)
        from ...core.errors import out_of_memory, out_of_memory_said, worker_died_said

        # what the machine holds, not a bug: MemoryError, torch's allocator, a thread refused its stack under ulimit -v
        if out_of_memory(exc) and not (args.debug or os.environ.get("IQT_DEBUG")):
            print(f"iqt: error: {out_of_memory_said(exc)}", file=sys.stderr)
            return 1
        workers = 0
        if args.command == "batch" and not getattr(args, "scheduler", None):  # only batch has --workers
            workers = 2 if getattr(args, "workers", None) is None else args.workers  # apps/cli/batch.py LOCAL_DEFAULTS
        # a Dask worker process dead as it started: its possible causes, no guess
        died = worker_died_said(exc, workers if args.command == "batch" else None)
        if died is not None and not (args.debug or os.environ.get("IQT_DEBUG")):
            print(f"iqt: error: {died}", file=sys.stderr)
            return 1
        from ...fileio.writing import no_room

        room = no_room(exc)  # a full disk or a file-size limit met outside an output's own write (a temporary file)
        if room is None:
            from ...core.errors import too_many_open_files

            room = too_many_open_files(exc, workers=workers)  # ulimit -n met anywhere (an import): not a bug
        if room is not None:
            print(f"iqt: error: {' '.join(str(room).split())}", file=sys.stderr)
            return 2
        if args.debug or os.environ.get("IQT_DEBUG"):
            raise
        if isinstance(exc, BlockingIOError):  # an I/O EAGAIN (a process start's is out_of_memory's, core/errors.py)
            # once the outputs are in place only the 'wrote' lines were lost: exit 1 all the same, as a reader gone
            # early exits 141 (main), for a script reading them would miss them; the line says the files are whole
            done = ("; the run finished and all its outputs were written and are kept, only its closing lines were "
                    "not printed" if _in_place(stage) else "")
            print(_would_block(exc, done), file=sys.stderr)
            try:
                printed.stream.flush()
            except BlockingIOError:  # stdout itself: what it still holds would fail again at the interpreter's exit
                printed._lost()
            return 1
        print(f"iqt: internal error: {type(exc).__name__}: {' '.join(str(exc).split())} (rerun with --debug and report it)",
              file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


OUT_OF_MEMORY = f"iqt: error: {_OUT_OF_MEMORY}"  # the line a run out of memory ends with


def _would_block(exc, done: str = "") -> str:
    """The line for an I/O EAGAIN (`_run`, and `main` for what argparse printed)."""
    return (f"iqt: error: a read or write could not complete without blocking ({' '.join(str(exc).split())}): iqt's "
            f"output or input is non-blocking, e.g. a pipe its reader made so, now full{done}; give iqt blocking "
            "output, e.g. redirect it to a file")


if __name__ == "__main__":
    sys.exit(main(_command=True))


def _in_place(stage) -> bool:
    """Whether the run's `stage` (fileio.staging.all_or_none) put outputs in place: a signal after that stopped
    nothing (a command that writes none, `iqt methods`, has nothing to say so of)."""
    return bool(getattr(stage, "committed", False) and getattr(stage, "declared", None))


def _say_the_rest(stage) -> None:
    """The 'wrote' lines a signal cut off, before the closing line that points to them."""
    if _in_place(stage):
        with contextlib.suppress(Exception, KeyboardInterrupt, Terminated):  # a second signal: the closing line still
            stage.say()


def _what_is_kept(args, stage=None, exc=None) -> str:
    """What an interrupted run leaves, and how to go on: a training's checkpoint and a cohort's finished subjects are
    kept on purpose ('no partial output was left' alone had not said so, nor how to resume: a researcher's audit); a
    signal taken once every output of the run's `stage` (`fileio.staging.all_or_none`) was in place left them all, as the
    lines above say; one taken once a stage of its own (`fileio.staging.own_stage`: a trained model) was in place names
    what it put there (it had said 'no partial output was left' of a model written whole)."""
    from pathlib import Path

    if _in_place(stage):
        return "it came once every output was in place: all were written, as the lines above say"
    in_place = getattr(exc, "in_place", None) or getattr(args, "in_place", None)  # a trained model's, once saved
    if in_place:
        return f"it came once {', '.join(in_place)} were in place: they are written whole"
    command = getattr(args, "command", None)
    checkpoint = getattr(args, "checkpoint", None)
    if command == "train" and checkpoint and Path(checkpoint).is_file():
        return (f"no model was written; the checkpoint {checkpoint} holds the epochs done: rerun the same command to go "
                "on from it")
    if command == "batch":
        return ("no partial output was left; the subjects that ended are kept, and a rerun of the same command skips "
                "them and does the rest")
    if command == "view":  # a server ended as servers are; it writes no file ("no partial output" read as a loss: an audit)
        return "the viewer has stopped (it writes no files)"
    return "no partial output was left"
