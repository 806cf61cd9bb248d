"""`iqt batch --scheduler`: what its lines show of a login, and which text is a scheduler file's path. A login holding
a '/' shows nothing before its '@'; a home folder's or a drive's path is a file's name, not user:password@host; the
no-workers line names a proxy's path; Dask's own text is masked where the login stands, never a word of its own."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("distributed")

import helpers  # noqa: E402

from ImageQualityTransferLib.apps import batch  # noqa: E402
from ImageQualityTransferLib.apps.batch import scheduler  # noqa: E402


def test_a_login_holding_a_slash_before_host_port_shows_nothing_before_its_at_sign():
    """tcp://alice:123/w@node7:8786 (a password typed with a '/') had been refused as tcp://alice:123/***@node7:8786,
    its user name and the start of its password shown (a review): a tcp/tls address takes no path, so all of it to the
    last '@' is masked (urlsplit's host, alice, is the user name: shown as a host it misleads)."""
    for given, said in (("tcp://alice:123/w@node7:8786", "tcp://***@node7:8786"),
                        ("tls://alice:123/w@node7:8786", "tls://***@node7:8786"),
                        ("http://alice:8787/w@node7", "http://***@node7"),
                        ("tcp://alice:123/w@node7:8786?t=x", "tcp://***@node7:8786?t=***")):
        assert scheduler.shown(given) == said
        with pytest.raises(batch.IQTError) as err:
            scheduler.check_address(given)
        assert str(err.value).startswith(f"--scheduler {said}: ") and "alice" not in str(err.value), err.value
    # a ws URL's path is one (Dask's Client connects to host alice, port 123), but "alice:123" reads as a user name and
    # a password's start, not strictly as a host (apps/batch/ws_shown.py): nothing of it shown
    assert scheduler.shown("ws://alice:123/secret@proxy.example/") == "ws://***"


def test_a_home_or_drive_path_is_a_scheduler_file_and_an_address_s_login_is_still_masked(tmp_path, capsys, monkeypatch):
    """C:\\runs\\sched@node7, C:/runs/sched@node7 and ~/runs/sched@node7 had been read as logins and shown as C:***@node7
    and ***@node7, "a tcp:// address holds no user name" (a review): they are paths, told "no such scheduler file"
    where missing; ~ is the home folder (bash leaves --scheduler=~/f unexpanded, and Dask's Client does not expand it),
    so a file there is read. With a port after the host, the same text is an address and its login masked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(scheduler, "DRIVES", True)  # as on Windows
    (tmp_path / "home" / "runs").mkdir(parents=True)
    (tmp_path / "l.txt").write_text("")
    for given in (r"C:\runs\sched@node7", "C:/runs/sched@node7", "~/runs/sched@node7", "~/gone/sched@node7"):
        assert scheduler._a_path(given) and scheduler.shown(given) == given
        helpers.refused_line(capsys, ["batch", "l.txt", "-o", "o", "--scheduler", given],
                             f"--scheduler {given}: no such scheduler file")
    for given, said in ((r"C:\runs\sched@node7:8786", "C:***@node7:8786"), ("C:/runs/a:b@node7", "***@node7"),
                        ("~/x:pw@node7:8786", "***@node7:8786"), ("alice:p/w@node7", "alice:***@node7")):
        assert not scheduler._a_path(given) and scheduler.shown(given) == said
    (tmp_path / "home" / "runs" / "sched@node7").write_text("{}")  # read from home: not a scheduler file's JSON
    assert scheduler._a_path("~/runs/sched@node7")
    helpers.refused_line(capsys, ["batch", "l.txt", "-o", "o", "--scheduler", "~/runs/sched@node7"],
                         f"--scheduler {tmp_path / 'home' / 'runs' / 'sched@node7'}: a file, but not a Dask scheduler file")


@pytest.mark.parametrize("given", ["SECtok@node7/", "SECtok@node7//"])
def test_a_login_before_a_host_read_as_a_scheduler_file_s_name_is_hidden(tmp_path, capsys, monkeypatch, given):
    """TOKEN@node7/ (a token login before a host, with a '/') is read as a scheduler file's name, a folder's '/': its
    refusal had quoted it whole (TOKEN@node7// still had); the text before the '@' is hidden where the name ends in '/',
    no file's, and a file's name that may be a real path's (runs@node7/scheduler.json) kept."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "l.txt").write_text("")
    line = helpers.refused_line(capsys, ["batch", "l.txt", "-o", "o", "--scheduler", given],
                                f"--scheduler ***@{given.partition('@')[2]}: no such scheduler file")
    assert "SEC" not in line, line
    assert scheduler.shown("runs@node7/scheduler.json") == "runs@node7/scheduler.json"


@pytest.mark.parametrize("given, worker", [("ws://node7:8786/?token=Zq9a@Zq9b", "ws://node7:8786"),
                                           ("wss://node7:8786/#t=Zq9a@Zq9b", "wss://node7:8786")])
def test_the_no_workers_line_reads_no_path_into_a_query_s_masked_at(given, worker):
    """A query's or fragment's '@' after host:port and '/' is masked as '/***' in the line; the no-workers line had read
    that as a proxy's path ("not through the path /***"), where Dask asks '/' and ws://node7:8786/?token=T is told
    'dask worker ws://node7:8786': so is it."""
    line = scheduler._no_workers(given, 5, "joined")
    assert f"start workers with 'dask worker {worker}' (with" in line and "path" not in line, line
    assert "Zq9" not in line, line


def test_the_no_workers_line_names_a_proxy_s_path_and_asks_for_the_scheduler_s_own_address():
    """ws://node7:8786/dask/ (a scheduler reached through a proxy's path) had been told "start workers with 'dask worker
    ws://node7:8786'", the path dropped without a word: the proxy's host at / need not be the scheduler, and 'dask
    worker' takes no URL path (its port read as '8786/dask/', a traceback), so the line names the path, masked. The
    scheduler's own address is said as a user finds and types it, from its log's 'Scheduler at:' line (it had said
    'dask worker ws://HOST:PORT', a placeholder for a host the line may hide, then an example address a user could copy,
    'dask worker ws://10.0.0.5:8786')."""
    assert scheduler._no_workers("ws://u:pw@node7:8786/dask/?token=T", 5, "joined") == (
        "--scheduler ws://u:***@node7:8786/dask/?token=***: no worker joined within 5 s; start workers at the "
        "scheduler's own address ('dask worker' followed by the address its log's 'Scheduler at:' line gives), "
        "not through the path /dask/ ('dask worker' takes no URL path), with ImageQualityTransfer installed, as here, "
        "or wait longer with --wait-workers SECONDS")
    assert "not through the path /*** (" in scheduler._no_workers("wss://proxy.example.org:8443/a@b/c", 5, "joined")
    for given in ("wss://proxy:8443/a@b/c", "wss://proxy/a@b/c"):  # one label before an '@': maybe a token's, unsaid
        line = scheduler._no_workers(given, 5, "joined")
        assert "('dask worker' followed by the address its log's 'Scheduler at:' line gives)" in line, line
        assert re.search(r"\d+\.\d+\.\d+\.\d+", line) is None, line  # no made-up address a user could copy
        assert "proxy" not in line and "HOST" not in line, line
    for given, worker in (("ws://node7:8786/", "ws://node7:8786"), ("node7:8786", "tcp://node7:8786")):
        assert f"start workers with 'dask worker {worker}' (with" in scheduler._no_workers(given, 5, "joined")


def test_dask_s_text_keeps_its_words_where_the_password_is_one():
    """A password that is an ordinary word ("connect", "tcp") had been blanked wherever Dask's text said it ("Timed out
    trying to *** to ..."): only the address's login is masked, where it stands."""
    assert scheduler.dask_said("Timed out trying to connect to ws://alice:connect@127.0.0.1:1/ after 20 s",
                               "ws://alice:connect@127.0.0.1:1/") == (
        "Timed out trying to connect to ws://alice:***@127.0.0.1:1/ after 20 s")
    assert scheduler.dask_said("tcp: connect to ws://tcp:@h:1/ failed (HTTP 401 for alice:connect)",
                               "ws://tcp:@h:1/") == "tcp: connect to ws://***:@h:1/ failed (HTTP 401 for alice:connect)"
    assert scheduler.dask_said("HTTP 401 for alice:connect at h:1/", "ws://alice:connect@h:1/") == (
        "HTTP 401 for alice:*** at h:1/")


def test_a_drive_form_is_a_login_where_there_are_no_drives(monkeypatch):
    """Read as a drive's path on any system, a one-letter user's password after a '/' or '\\' was echoed whole ("--scheduler
    a:/pw@node7: no such scheduler file", a review; it had been masked): C:/ and C:\\ are drives on Windows only."""
    monkeypatch.setattr(scheduler, "DRIVES", False, raising=False)
    for given, said in (("a:/pw@node7", "***@node7"), ("u:\\secret@node7", "u:***@node7")):  # as tcp://a:/pw@node7
        assert not scheduler._a_path(given) and scheduler.shown(given) == said, scheduler.shown(given)


def test_a_ws_password_with_digits_before_its_slash_shows_none_of_them():
    """ws://localhost:1/S3cret@127.0.0.1:8786/ (the password "1/S3cret" of a user "localhost"): Dask reads host
    localhost, port 1, but a host and port follow the '@', so the text before it may be a login's and none of it is
    shown (ws_shown's rule), where "localhost:1" had been; alice:12 reads as a user name and a password's start. It is
    refused before Dask connects to localhost:1 (it had been tried there)."""
    from ImageQualityTransferLib.apps.batch import dask_client

    given = "ws://localhost:1/S3cret@127.0.0.1:8786/"
    said = "ws://***"
    assert scheduler.shown(given) == said and scheduler.shown("wss://alice:12/pw@node7/?t=x") == "wss://***"
    assert scheduler.dask_said(f"Timed out trying to connect to {given} (localhost:1)", given) == (
        f"Timed out trying to connect to {said} (***)")
    assert scheduler.dask_said("Timed out trying to connect to (alice:12)", "wss://alice:12/pw@node7/") == (
        "Timed out trying to connect to (***)")
    with pytest.raises(batch.IQTError) as err:  # the line iqt batch prints
        dask_client.start_client(scheduler=given, wait_workers=1)
    assert str(err.value).startswith(f"--scheduler {said}: an '@' after the first '/', '?' or '#' and a host after it"), \
        err.value
    assert "S3cret" not in str(err.value)


def test_an_address_without_a_scheme_is_masked_as_its_tcp_form(tmp_path):
    """Dask reads host:port as tcp://host:port; alice:123/w@node7:8786 had been said as alice:***@node7:8786, where its
    tcp:// form says tcp://***@node7:8786 (either side of the '@' may be a login), and a query's values shown whole."""
    for given in ("alice:123/w@node7:8786", "alice:S3cret@node7:8786", "alice:p/w@node7", "TOKEN/x@node7:8786/",
                  "u:S3cret@node7:8786/?token=S3cret", "alice:p/w@[::1]:8786"):
        assert scheduler.shown(given) == scheduler.shown(f"tcp://{given}")[len("tcp://"):], given
        assert "S3cret" not in scheduler.shown(given) and "123" not in scheduler.shown(given)
    with pytest.raises(batch.IQTError) as err:
        scheduler.check_address("alice:123/w@node7:8786")
    assert str(err.value).startswith("--scheduler ***@node7:8786: an '@' after a '/'") and "alice" not in str(err.value)


def test_no_secret_in_any_address_form_reaches_stderr_or_the_output_folder(tmp_path, capsys, monkeypatch):
    """A password holding '/', '?' or '#', a token in a query or fragment, in every scheme (none, tcp, tls, ws, wss) and
    host form (a name, IPv4, IPv6, with and without a port): ws://alice:123?pw@host/ had been echoed whole,
    tcp://alice:123?pw@host:8786 as ***@alice:123?pw@..., 127.0.0.1:8786?token=T in its port message (a review). Every
    form's shown address, recorded command line, refusal and Dask's quoting of it hold no secret; one in 16 runs
    `iqt batch` (its refusal or its connect attempt: nothing listens on the port) and neither stderr nor any file of
    the output folder (records, the lock) holds it."""
    import contextlib
    import socket
    from pathlib import Path

    from helpers import make_bids

    from ImageQualityTransferLib.apps.batch import lock
    from ImageQualityTransferLib.apps.cli import main

    with socket.socket() as free:  # a port nothing listens on: a connect attempt refused at once
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    secret = "Zq9Secret"
    logins = [f"{who}{c}{secret}@" for who in (f"localhost:{port}", "u:a") for c in "/?#"] + [f"u:{secret}@",
                                                                                              f"{secret}:@"]
    hosts = [f"127.0.0.1:{port}", f"[::1]:{port}", "localhost", "127.0.0.1:99999"]
    forms = [f"{scheme}{login}{host}{end}" for scheme in ("", "tcp://", "tls://", "ws://", "wss://") for login in logins
             for host in hosts for end in ("", "/")]
    forms += [f"{scheme}{host}{c}token={secret}" for scheme in ("", "tcp://", "tls://", "ws://", "wss://")
              for host in hosts for c in ("?", "/?", "#")]
    for given in forms:
        said = _everything_said(given)
        assert not [s for s in said if secret in s], (given, said)
    ds = make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=(8, 8, 8))
    out = tmp_path / "o"
    held, locked = lock.held, []

    @contextlib.contextmanager
    def read_while_held(folder, command):  # the lock is gone once a refused connect ends: read while it is held
        with held(folder, command) as rec:
            locked.extend(p.read_text(errors="replace") for p in Path(folder).rglob("*") if p.is_file())
            yield rec

    monkeypatch.setattr(lock, "held", read_while_held)
    for given in forms[::16]:
        capsys.readouterr()
        rc = main(["batch", str(ds), "-o", str(out), "--method", "cubic", "--scheduler", given])
        err = capsys.readouterr().err
        assert rc == 2 and secret not in err, (given, err)
        for f in (p for p in out.rglob("*") if p.is_file()) if out.exists() else ():
            assert secret not in f.read_text(errors="replace"), (given, f)
    assert locked and not [t for t in locked if secret in t], locked  # some reached the connect attempt, locked


@pytest.mark.parametrize("given, said", [
    ("ws://[fe80::1]:8786/a@b", "ws://[fe80::1]:8786/***"),
    ("ws://host.example.org:8786/a@b", "ws://host.example.org:8786/***"),
])
def test_ws_url_at_signs_in_the_path_or_fragment_leave_the_host_urlsplit_reads(given, said):
    """A ws URL's '@' in its path or fragment (not its userinfo): the host is the one urlsplit (and Dask's ws client)
    reads, shown with its port where it reads strictly as a host (ws_shown's rule); all after it masked."""
    from urllib.parse import urlsplit

    assert scheduler.shown(given) == said
    assert urlsplit(said).hostname == urlsplit(given).hostname


@pytest.mark.parametrize("given, said", [
    ("tcp://host:8786/a@b", "tcp://***@b"),
    ("http://u:p@host/x@y#f@g", "http://***@g"),
    ("tcp://[::1]:8786/a@b", "tcp://***@b"),
    ("tls://h:1/a@b?t=x@y", "tls://***"),
    ("host:8786/a@b", "***@b"),
    ("http://u:p@ss/w@host:8787", "http://***@host:8787"),
    ("https://u:p@ss#w@host:8787/", "https://***@host:8787/"),
    ("tcp://alice:p@ss:12/w@node7:8786", "tcp://***@node7:8786"),
    ("tcp://u:p@ss:1?t=1@host:8786", "tcp://***"),
    ("alice:p@ss:1/w@node7:8786", "***@node7:8786"),
])
def test_an_at_sign_after_a_slash_in_a_tcp_or_http_address_shows_nothing_before_it(given, said):
    """A tcp/tls/http(s) address takes no path (each such one is refused), so an '@' after a '/', '?' or '#' may end a
    password holding one: all of it before the last '@' is masked, all of it where that '@' may be a query value's.
    urlsplit's host had been shown, which for the password p@ss/w in http://u:p@ss/w@host:8787 is "ss" (a review)."""
    import shlex

    assert scheduler.shown(given) == said
    assert shlex.split(scheduler.masked_command(["batch", "in", "--scheduler", given]))[-1] == said
    with pytest.raises(batch.IQTError) as err:
        scheduler.check_address(given)
    assert str(err.value).startswith(f"--scheduler {said}: "), err.value
    assert scheduler.dask_said(f"Timed out trying to connect to {given} after 5 s", given) == \
        f"Timed out trying to connect to {said} after 5 s"


def test_no_secret_of_a_path_fragment_or_login_leaks_whatever_the_host():
    """A secret before an '@' in the path, the fragment or the query, or in the login, with a name, IPv4 or IPv6 host
    (with a port), in every scheme: neither the shown address, the recorded command line, Dask's quoting of it nor
    the refusal holds it (u:p@h:1/a@b?t=TOKEN had been told "give tcp://b?t=TOKEN:8786"), and a ws URL's host shown
    is urlsplit's."""
    from urllib.parse import urlsplit

    secret = "Zq9Secret"
    hosts = ["node7:8786", "127.0.0.1:8786", "[::1]:8786", "[fe80::1]:8786"]
    tails = [f"/{secret}@b", f"/x/{secret}@b/c", f"#{secret}@g", f"/x@y#{secret}@g", f"/a@{secret}x@b?t={secret}",
             f"/?t={secret}@b", f"?t={secret}#f", f"/{secret}/x@b"]
    logins = ["", f"u:{secret}@", f"{secret}:@"]
    for scheme in ("tcp://", "tls://", "ws://", "wss://", "http://", ""):
        for host in hosts:
            for login in logins:
                for tail in tails:
                    given = f"{scheme}{login}{host}{tail}"
                    if not scheme and scheduler._a_path(given):  # node7:8786/x/S@b/c: a file's name (its own rule)
                        continue
                    said = _everything_said(given)
                    assert not [s for s in said if secret in s], (given, said)
                    if scheme.startswith("ws") and urlsplit(said[0]).hostname != "***":  # a ws URL's host, where
                        # shown, as urlsplit reads it (ws_shown's rule); tcp/tls/http(s) masked to the last '@'
                        assert urlsplit(said[0]).hostname == urlsplit(given).hostname, (given, said[0])


def _everything_said(given: str) -> list:
    """What `iqt batch` may print or record of a --scheduler address: its shown form, the recorded command line, Dask's
    quoted error and the refusal, if any."""
    said = [scheduler.shown(given), scheduler.masked_command(["batch", "in", "--scheduler", given]),
            scheduler.dask_said(f"Timed out trying to connect to {given} after 5 s", given)]
    try:
        scheduler.check_address(given)
    except batch.IQTError as err:
        said.append(str(err))
    return said


@pytest.mark.parametrize("given, said", [
    ("ws://user:p@ss/w0rd@host:8786", "ws://***"),
    ("wss://user:p@ss/w0rd@host:8786/?t=Zq9Secret", "wss://***"),
    ("tcp://host:8786#Zq9Secret", "tcp://host:8786#***"),
    ("ws://host:8786/?a=1#Zq9Secret", "ws://host:8786/?a=***#***"),
    ("ws://host:8786/?Zq9Secret", "ws://host:8786/?***"),
    ("host:8786#Zq9Secret", "host:8786#***"),
    ("node7:8786/x/Zq9Secret@b/c", "***@b/c"),
    ("host:port/x/Zq9Secret@b/c", "host:***@b/c"),
])
def test_a_password_s_text_after_its_at_sign_a_bare_fragment_and_a_path_after_host_port_are_masked(given, said, tmp_path,
                                                                                                   capsys):
    """Three leaks (a review): ws://user:p@ss/w0rd@host:8786 (the password p@ss/w0rd) had shown "ss" as urlsplit's host;
    a fragment or query part without '=' (tcp://host:8786#TOKEN) had been shown whole; node7:8786/x/S@b/c (no scheme)
    had been read as a file's name and echoed whole. Host:port after the last '@' ends the login, every part of a
    fragment or query is masked, and host:port before a '/' is an address, masked as its tcp:// form."""
    secret = "Zq9Secret" if "Zq9Secret" in given else "w0rd"
    assert scheduler.shown(given) == said
    assert not [s for s in _everything_said(given) if secret in s or "ss/" in s], _everything_said(given)
    if not given.startswith("ws"):  # refused by iqt batch in one line, the secret nowhere in it
        ds = helpers.make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=(8, 8, 8))
        line = helpers.refused_line(capsys, ["batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler",
                                             given], f"--scheduler {said}: ")
        assert secret not in line, line


def test_paths_words_and_plain_hosts_stay_shown():
    """What the masking leaves alone: a scheduler file's name, a host and its port, a query's keys and a ws URL's host."""
    for given in ("runs@node7/scheduler.json", "runs/x@v2.json", "tcp://node7:8786", "node7:8786", "ws://node7:8786/",
                  "ws://[::1]:8786/dask/"):
        assert scheduler.shown(given) == given
    assert scheduler.shown("wss://host/x@y") == "wss://***"  # read as a token 'host/x' too: test below


@pytest.mark.parametrize("given, said", [
    ("ws://AbC9/xYz7:@proxy.example/", "ws://***"),
    ("ws://AbC9/xYz7@proxy.example/", "ws://***"),
    ("wss://AbC9+/xYz7==:@hub.example.org/user/x/", "wss://***"),
    ("ws://AbC9#xYz7@node7:8786/", "ws://***"),
    ("ws://AbC9?x=xYz7@node7:8786/", "ws://***"),  # a query's value as urlsplit reads it: its '@' too
])
def test_a_ws_token_holding_a_slash_question_mark_or_hash_shows_no_part_of_itself(given, said):
    """A token given as a login (TOKEN:@host/) holding '/', '?' or '#' had its first part shown as a host
    (ws://AbC9/***@proxy.example/, ws://AbC9#***): that text reads as one label, not strictly as a host, so every line
    masks all of it (ws_shown's rule: ws://***), Dask's own text where it names it as a host too."""
    host = re.split(r"[/?#]", given.partition("://")[2])[0]  # as Dask's websocket client reads it
    lines = [scheduler.shown(given), scheduler.masked_command(["batch", "in", "--scheduler", given]),
             scheduler.dask_said(f"Timed out trying to connect to {given} ({host}:80)", given)]
    assert lines[0] == said and said in lines[1] and said in lines[2], lines
    assert not [line for line in lines if "AbC9" in line or "xYz7" in line], lines


@pytest.mark.parametrize("given, said", [
    ("ws://user:p@ss/w0rd@127.0.0.1:1", "ws://***"),
    ("ws://user:p@ss/w0rd@host/", "ws://***"),
    ("ws://user:pw@127.0.0.1:1/route@gw:8786/", "ws://***"),
    ("ws://T/x@y@host:8786", "ws://***"),
    ("ws://Zq9@Xk7/Wm5@host:8786", "ws://***"),
    ("wss://Zq9@Xk7/Wm5@[::1]:8786/dask/?t=1", "wss://***"),
    ("wss://u:p@host/x@y", "wss://***"),
    ("ws://u:Zq9@h:1/a@b?t=x@y", "ws://***"),
])
def test_a_ws_address_whose_login_and_host_are_unclear_is_refused_showing_none_of_its_login(given, said, tmp_path,
                                                                                           capsys):
    """More than one '@', one after a '/', '?' or '#': ws://user:p@ss/w0rd@127.0.0.1:1 had been shown as
    ws://***@127.0.0.1:1 while Dask looked up the host "ss", ws://user:pw@127.0.0.1:1/route@gw:8786/ as ws://***@gw:8786/
    while Dask connected to 127.0.0.1:1, and ws://T/x@y@host:8786 and ws://user:p@ss/w0rd@host/ showed 'T' and 'ss' (a
    review). Refused in one line, nothing written, no text of the login shown (ws_shown's rule: the host before the
    first '/' only where it is certainly the host: not 127.0.0.1:1, gw:8786 following; "ss" reads as one label); Dask's
    websocket client sends a login as written, so the line does not offer %40 or %2F for one."""
    import shlex

    ds = helpers.make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=(8, 8, 8))
    line = helpers.refused_line(capsys, ["batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler", given],
                                f"--scheduler {said}: more than one '@', one after a '/', '?' or '#'")
    assert not [w for w in ("Zq9", "Xk7", "Wm5", "w0rd", "ss/", "//T", "pw@", "p@") if w in line], line
    assert "%40" in line and not (tmp_path / "o").exists(), line
    assert shlex.split(scheduler.masked_command(["batch", "in", "--scheduler", given]))[-1] == said


@pytest.mark.parametrize("given, said, which", [
    ("wss://alice:Zq9@hub.example.org/user/alice@uni.edu/proxy/8786/", "wss://***@hub.example.org/***",
     "the '@' before 'uni.edu/proxy/8786/'"),
    ("ws://u:Zq9@node7:8786/user/a@b.org/x@lab.org/?token=Zq9", "ws://***",
     "each of the 2 '@' after it (the last before 'lab.org/')"),
])
def test_a_ws_address_with_a_login_and_an_at_sign_in_its_path_names_the_at_sign_to_write(
        given, said, which, tmp_path, capsys):
    """A JupyterHub user name that is an e-mail, after a login (wss://alice:tok@hub.example.org/user/alice@uni.edu/...):
    refused, it had been told to write "a path's or query's '@'" as %40. The line names the '@' to write %40 by the text
    after it and where Dask's websocket client ends the host, and that form is accepted. It shows the host before the
    first '/' where it reads strictly as one (ws_shown's rule), nothing of the login nor of the path."""
    ds = helpers.make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=(8, 8, 8))
    line = helpers.refused_line(capsys, ["batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler", given],
                                f"--scheduler {said}: more than one '@', one after a '/', '?' or '#'")
    assert "reaches the text between the login's last '@' and the first '/'" in line, line
    assert f"write {which} as %40" in line and "Zq9" not in line and not (tmp_path / "o").exists(), line
    assert "Zq9" not in scheduler.masked_command(["batch", "in", "--scheduler", given])
    fixed = given.replace("Zq9@", "\0").replace("@", "%40").replace("\0", "Zq9@")
    assert scheduler.check_address(fixed) == fixed


@pytest.mark.parametrize("given", ["wss://alice:Xk7@Wm5.example.org/Pq3@uni.edu/proxy/8786/",
                                   "ws://Xk7@Wm5.org:8786/Pq3@node7/", "ws://alice:Xk7@10.0.0.5/Pq3@uni.edu/?t=1"])
def test_a_password_holding_a_dotted_name_and_a_slash_shows_only_the_host_dask_reaches(given, tmp_path, capsys):
    """A password typed with '@', a dotted name and a '/' (alice's "Xk7@Wm5.example.org/Pq3" before the host uni.edu)
    reads as a login before the host Dask's websocket client reaches (Wm5.example.org): no text tells the two apart,
    and ws_shown's rule shows a host that reads strictly as one (the host a reader must see where the address is a
    login and a path's '@', a review), so that name is shown as the host; nothing of the text before it or after the
    first '/' is, and the address is refused."""
    ds = helpers.make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=(8, 8, 8))
    host = re.split(r"[/?#]", given.partition("://")[2])[0].rpartition("@")[2]
    said = f"{given.partition('://')[0]}://***@{host}/***"
    line = helpers.refused_line(capsys, ["batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler", given],
                                f"--scheduler {said}: ")
    for shown in (line, scheduler.shown(given), scheduler.masked_command(["batch", "in", "--scheduler", given]),
                  scheduler.dask_said(f"Timed out trying to connect to {given} after 20 s", given)):
        assert said in shown and not [w for w in ("Xk7", "Pq3") if w in shown], shown
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("given, said", [
    ("wss://hub.example.org/user/alice@uni.edu/", "wss://hub.example.org/***"),
    ("wss://hub.example.org/user/alice@uni.edu/proxy/8786/?token=T", "wss://hub.example.org/***"),
    ("wss://hub.example.org:443/user/alice@uni.edu/", "wss://hub.example.org:443/***"),
    ("ws://node7:8786/?token=a@b", "ws://node7:8786/***"),
    ("ws://node7/?token=a@b", "ws://***"),
    ("wss://[::1]:8786/?token=a@b", "wss://[::1]:8786/***"),
    ("ws://[::1]/user/a@b/", "ws://[::1]/***"),
    ("wss://hub.example.org/user/alice@uni.edu/?token=x@y", "wss://hub.example.org/***"),
])
def test_an_at_after_the_host_is_said_as_a_path_s_or_a_query_s_not_as_a_login_s(given, said):
    """An '@' only after the host (a JupyterHub user name that is an e-mail, a token holding '@' in the query): the line
    had said a login where none is given (wss://***@uni.edu/), and shown the query value's text after its '@' as a host
    (ws://***@b). ws_shown's rule: the host and its port shown where they read strictly as a host, everything after
    them /***; one label (node7), which a token or a user name before a password's start reads as, masked whole."""
    assert scheduler.shown(given) == said
    assert "@" not in said.partition("://")[2].split("/")[0].split("?")[0].split("#")[0]  # no login said


SECRET_LOGINS = ("", "alice:SECpw@", "SECtok:@", "SEC@tok:@", "alice:SEC@pw@")
SECRET_HOSTS = ("node7", "node7:8786", "hub.example.org", "[::1]", "[::1]:8786", "127.0.0.1:8786")
SECRET_PATHS = ("", "/", "/dask/", "/user/alice@uni.edu/")
SECRET_QUERIES = ("", "?token=SECq", "?token=SECa@SECb", "?t=SECa@SECb&u=1")


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_no_ws_form_shows_a_password_or_token_and_none_without_a_login_says_one(scheme):
    """Every ws/wss form of a login (none, user:password, a token, '@' in either), a host (a name, with a port, IPv6, an
    IP address), a path (an '@' in it or not) and a query (a token, '@' in it): no line (the address as shown, the
    refusal, Dask's text as quoted) holds any of the password's or token's text (here each holds "SEC"), and where no
    login is given none is said (the text before the first '/', '?' or '#' holds no '@')."""
    from urllib.parse import urlsplit

    from ImageQualityTransferLib.core.errors import IQTError

    seen = 0
    for login in SECRET_LOGINS:
        for host in SECRET_HOSTS:
            for path in SECRET_PATHS:
                for query in SECRET_QUERIES:
                    given = f"{scheme}://{login}{host}{path}{query}"
                    said = scheduler.shown(given)
                    try:
                        scheduler.check_address(given)
                        refusal = ""
                    except IQTError as e:
                        refusal = str(e)
                    dask = scheduler.dask_said(f"Timed out trying to connect to {given} after 5 s", given)
                    assert "SEC" not in said + refusal + dask, (given, said, refusal, dask)
                    if not login:
                        assert "@" not in urlsplit(said).netloc, (given, said)
                    seen += 1
    assert seen == len(SECRET_LOGINS) * len(SECRET_HOSTS) * len(SECRET_PATHS) * len(SECRET_QUERIES)


@pytest.mark.parametrize("given, said", [
    ("ws://node7:8786?SECa@SECb", "ws://***"),
    ("wss://127.0.0.1:8786?x=1&SECa@SECb", "wss://127.0.0.1:8786/***"),
    ("ws://[::1]:8786?tok@en=SECv", "ws://[::1]:8786/***"),
    ("ws://node7:8786#t=SECa@SECb", "ws://***"),
])
def test_an_at_in_the_query_or_fragment_right_after_a_port_shows_none_of_their_values(given, said):
    """host:port followed at once by '?' or '#' whose '@' is a bare query part's, a query key's or the fragment's: all
    after the host masked (its text after the '@' had been shown as a host: ws://node7:***?***@SECb, and a value after
    '=': ws://[::1]:***?***@en=SECv); the host and port shown where they read strictly as a host: one label and digits
    read as a user name and a password holding '#' (ws_shown's rule)."""
    assert scheduler.shown(given) == said
    assert "SEC" not in scheduler.dask_said(f"Timed out trying to connect to {given} after 5 s", given)
