"""A run's result rows and what is said of them: a subject not yet ended (pending), those of another build, the
summary and the lines  prints at its end."""

from __future__ import annotations

from pathlib import Path

from ...core.errors import IQTError
from ...core.words import counted
from .items import Item
from .records import Settings


PENDING = ("not ended: the run was working on it or had not reached it when this table was written; if the run has "
           "stopped, rerun the same command to finish")


def pending(it: Item, s: Settings | None = None, out_root: Path | None = None) -> dict:
    """The QC row of a subject of the run in progress that has not ended: a run killed meanwhile leaves it so. With
    `s` and `out_root`, "in_place" says (when called: write_qc asks only where an earlier done row is there to keep)
    whether its outputs are complete and as written, the check a rerun skips it by (records.finished): write_qc then
    keeps an earlier run's done row of it (a lost scheduler had turned a subject done the run before into "pending";
    a tensor and sidecar alone had kept "done" for a subject with its FA map deleted or a byte of its tensor changed)."""
    row = {"subject": it.prefix, "input": it.path, "status": "pending", "qc": {}, "reason": PENDING}
    if s is not None and out_root is not None:
        row["in_place"] = lambda: _finished(it, s, Path(out_root))
    return row


_FINISHED: dict = {}  # (folder, subject) -> (the outputs' stats, the answer): the table is written every few seconds


def _finished(it: Item, s: Settings, out_root: Path) -> bool:
    """records.finished for a pending row, hashed again only where an output's or an input's file changed since the
    last table (the check hashes the inputs and every output: a review timed about 20 ms a dev subject, asked at every
    write)."""
    from .records import expected_maps, finished, identity, input_files, input_hashes, output_names, sidecar

    try:
        names = output_names(it, s, expected_maps(s))
        folder = out_root / it.subdir
        stats = []
        inputs = tuple(Path(f) for f, _ in input_files(it))  # a .nhdr's data file, the mask, bval/bvec/json too
        for name in [*names.values(), None]:
            for path in ((folder / name, sidecar(folder / name)) if name else inputs):
                try:
                    st = path.stat()
                    stats.append((st.st_ino, st.st_size, st.st_mtime_ns))
                except OSError:
                    stats.append(None)
        key = (str(folder), it.prefix, tuple(sorted(names.items())))
        seen = _FINISHED.get(key)
        if seen is not None and seen[0] == stats:
            return seen[1]
        done = finished(folder, names, identity(it, s, input_hashes(it))) is not None
        _FINISHED[key] = (stats, done)
        return done
    except (OSError, ValueError, KeyError, IQTError):
        return False


def say_results(results: list[dict], table: str) -> None:
    """The summary (ended by `table`: where the QC table was written, or that it was not), the redone line, each
    subject's warnings (also in its sidecar's Notes; not one this process said already) and each failure, as `iqt batch` says them at its end; also before
    the error of a run whose table cannot be written."""
    import sys

    print(summary(results) + table, flush=True)
    redone = redone_line(results)
    if redone:
        print(redone)
    from ...fileio.model_files import unsealed_said_here

    for r in results:  # the --model's unsealed advice, said as the run began, stays in the subject's record only
        for note in r.get("notes", []):
            if not unsealed_said_here(note):
                print(f"iqt: warning: {r['subject']}: {note}", file=sys.stderr)
    for r in results:
        if r["status"] == "failed":
            print(f"  {r['subject']}: {r['reason']}")
    sys.stdout.flush()


def other_builds(results: list[dict], mine: str) -> str:
    """The subjects a worker of another build than this run's `mine` computed (or skipped as its own) turned into
    failures, with the reason to rerun, and one line that says how many and which build; "" where there is none. A
    worker the nanny starts again (after a memory-limit kill) imports the code on disk as it is then: after an upgrade
    meanwhile it runs the new code, and the run would otherwise end "all done" with two builds' outputs mixed. Its
    outputs stay; their sidecars name that build, so a rerun of this build redoes them (and one of that build redoes
    the others)."""
    for r in [r for r in results if r.get("build") and r["build"] != mine and r["status"] in ("done", "skipped")]:
        r.update(status="failed", other_build=r["build"],
                 reason=f"computed by build {r['build']}, not this run's {mine}: the code on disk changed while the run "
                        "worked (a worker started again imported it); rerun the same command to redo it with one build")
    other = [r for r in results if r.get("other_build")]
    if not other:
        return ""
    builds = sorted({r["build"] for r in other})
    return (f"{len(other)} of {counted(len(results), 'subject')} computed by build {', '.join(builds)}, not this run's build {mine}: "
            "the code on disk changed while the run worked and a worker started again ran it; "
            f"{'it counts' if len(other) == 1 else 'they count'} as failed "
            "(rerun the same command: it redoes every subject another build wrote, so that the cohort comes from one "
            "build)")


def summary(results: list[dict]) -> str:
    n = {k: sum(r["status"] == k for r in results) for k in ("done", "skipped", "failed")}
    return f"{counted(len(results), 'subject')}: {n['done']} done, {n['skipped']} skipped (already done), {n['failed']} failed"


def redone_line(results: list[dict]) -> str:
    """One line for the subjects done again because another version or build wrote their earlier outputs (a resume
    after an upgrade recomputes; said once, not per subject); "" where none was."""
    from ...core.version import __version__
    from ...fileio.model_files import build

    redone = [r for r in results if r.get("redone_from") and r["status"] == "done"]
    if not redone:
        return ""
    return (f"{len(redone)} of them redone, not skipped: their earlier outputs were written by "
            f"{', '.join(sorted({r['redone_from'] for r in redone}))}, and this run is version {__version__} build "
            f"{build()}; a cohort's outputs all come from one build")
