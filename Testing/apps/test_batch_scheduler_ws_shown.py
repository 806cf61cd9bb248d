"""`iqt batch --scheduler ws://...`: the one rule its lines write a ws/wss address by (apps/batch/ws_shown.py), as a
property over a grid of logins, tokens, hosts, ports, paths, queries and fragments: no secret text in any line, and
the host and port shown wherever the rule says."""

from __future__ import annotations

import base64
import random
import re
import shlex
import uuid

import pytest

pytest.importorskip("distributed")

import helpers  # noqa: E402

from ImageQualityTransferLib.apps.batch import scheduler, ws_shown  # noqa: E402
from ImageQualityTransferLib.core.errors import IQTError  # noqa: E402

# every secret holds "Zq9": passwords, tokens (holding '/', '?', '#', '@', ':', '=', '.'), query values, fragments
LOGINS = ("", "alice:Zq9pw@", "Zq9tok:@", "Zq9@tok:@", "alice:Zq9@pw@", "alice:Zq9a/Zq9b@", "Zq9a/Zq9.b:@",
          "Zq9a?Zq9b:@", "Zq9a#Zq9b:@", "Zq9a=Zq9b:@", "alice:Zq9a@Zq9b/Zq9c@", "alice:Zq99:x=1@", "Zq99.x1/Zq9b:@")
HOSTS = ("node7", "node7:8786", "hub.example.org", "hub.example.org:443", "localhost", "localhost:8786", "127.0.0.1",
         "127.0.0.1:8786", "[::1]", "[::1]:8786")
PATHS = ("", "/", "/dask/", "/user/Zq9a@uni.edu/", "/x/Zq9a@b/c")
QUERIES = ("", "?token=Zq9q", "?token=Zq9a@Zq9b", "?t=Zq9a@Zq9b&u=1", "?Zq9a@Zq9b", "?tok@Zq9k=Zq9v", "#t=Zq9a@Zq9b",
           "?token=Zq9q#Zq9a@Zq9b", "?x=1&Zq9a@Zq9b", "#Zq9f")
STRICT = ("hub.example.org", "localhost", "127.0.0.1", "[::1]")  # read as a host by name alone, not as a token
VALUE_AT = ("?token=Zq9a@Zq9b", "?t=Zq9a@Zq9b&u=1", "#t=Zq9a@Zq9b", "?token=Zq9q#Zq9a@Zq9b")  # each '@' a value's


def _lines(given: str) -> list:
    """Every line `iqt batch` may print or record of `given`: shown, the recorded command, Dask's quoting of it (the
    address and its host:port as Dask names them), the no-workers line, the refusal if any."""
    head = re.split(r"[/?#]", given.partition("://")[2], maxsplit=1)[0]
    lines = [scheduler.shown(given), shlex.split(scheduler.masked_command(["batch", "in", "--scheduler", given]))[-1],
             scheduler.dask_said(f"Timed out trying to connect to {given} ({head.rpartition('@')[2]}) after 5 s", given),
             scheduler._no_workers(given, 5, "joined")]
    try:
        scheduler.check_address(given)
    except IQTError as err:
        lines.append(str(err))
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_no_line_shows_a_secret_and_the_host_is_shown_where_the_rule_says(scheme):
    """No Zq9 text in any line; the host and its port shown where no '@' follows the host (the login before it is
    clear), or where one does and the text before the first '/', '?' or '#' after the login's last '@' is the host and
    reads strictly as one (a dotted name, an IP address, localhost), or is one label and a port, a '/' and the first '@'
    after it a query value's; otherwise scheme://*** (the earlier rules had shown 'en=Zq9v' of ?tok@en=Zq9v, and hidden localhost
    in ws://localhost/?token=a@b, then node7 in ws://node7:8786/?token=a@b, where Dask connects)."""
    seen = shown_host = 0
    for login in LOGINS:
        for host in HOSTS:
            for path in PATHS:
                for query in QUERIES:
                    given = f"{scheme}://{login}{host}{path}{query}"
                    lines = _lines(given)
                    assert not [line for line in lines if "Zq9" in line], (given, lines)
                    rest = given.partition("://")[2]
                    head = re.split(r"[/?#]", rest, maxsplit=1)[0]
                    name = host.rpartition(":")[0] if re.search(r":\d+$", host) else host
                    value_at = path and "@" not in path and query in VALUE_AT and re.search(r":\d+$", host)
                    if "@" not in rest[len(head):] or (head.rpartition("@")[2] == host and (name in STRICT or value_at)):
                        assert re.match(rf"{scheme}://([^/?#]*@)?{re.escape(host)}([/?#]|$)", lines[0]), (given, lines[0])
                        shown_host += 1
                    else:
                        assert lines[0] == f"{scheme}://***", (given, lines[0])
                    seen += 1
    assert seen == len(LOGINS) * len(HOSTS) * len(PATHS) * len(QUERIES) and shown_host > seen // 3


@pytest.mark.parametrize("given, said", [
    ("ws://node7:8786/", "ws://node7:8786/"),
    ("ws://u:pw@node7:8786/dask/?token=T", "ws://u:***@node7:8786/dask/?token=***"),
    ("ws://Zq9tok:@node7/", "ws://***:@node7/"),
    ("wss://hub.example.org/user/alice@uni.edu/", "wss://hub.example.org/***"),
    ("wss://hub.example.org:443/user/alice@uni.edu/?token=x@y", "wss://hub.example.org:443/***"),
    ("ws://localhost/?token=a@b", "ws://localhost/***"),
    ("ws://127.0.0.1:8786/?tok@en=Zq9v", "ws://127.0.0.1:8786/***"),
    ("ws://node7:8786/?token=a@b", "ws://node7:8786/***"),
    ("ws://alice:123/pw@node7/", "ws://***"),
    ("ws://user:p@ss/w0rd@host:8786", "ws://***"),
    ("wss://alice:tok@hub.example.org/user/alice@uni.edu/proxy/8786/", "wss://***@hub.example.org/***"),
])
def test_each_form_of_the_rule(given, said):
    """One form of each case: no '@' after the host (login masked, path shown, query values masked); an '@' only after a
    host that reads strictly as one (shown with its port, all after it /***) or after one label, which a token or a
    user name with its password's start reads as (ws://***); a login and an '@' after it ("ss" of the password p@ss/w0rd
    would read as one label)."""
    assert scheduler.shown(given) == said


def test_dask_s_text_masks_a_hidden_host_where_it_stands_never_a_word_of_its_own():
    """Dask names the host it reached ("(to:80)"): masked there where the rule masks it, while its own words stay ("trying
    to connect" for the token "to/x"), and a host the rule shows stays shown."""
    assert scheduler.dask_said("Timed out trying to connect to ws://to/x@y (to:80) after 5 s", "ws://to/x@y") == (
        "Timed out trying to connect to ws://*** (***:80) after 5 s")
    assert scheduler.dask_said("cannot connect (alice:12)", "wss://alice:12/pw@node7/") == "cannot connect (***)"
    assert scheduler.dask_said("cannot connect (localhost:1)", "ws://localhost:1/a@b") == "cannot connect (localhost:1)"


def _dask_connects_to(given: str, monkeypatch) -> str:
    """The host[:port] Dask's own ws connector (tornado's websocket client) opens a socket to for `given`, recorded at
    tornado's TCPClient.connect, which fails there at once."""
    import asyncio

    import tornado.tcpclient
    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend

    seen = []

    async def record(self, host, port, *args, **kwargs):
        seen.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        raise OSError("recorded")

    monkeypatch.setattr(tornado.tcpclient.TCPClient, "connect", record)
    proto, loc = parse_address(given)

    async def connect():
        try:
            await asyncio.wait_for(get_backend(proto).get_connector().connect(loc), 5)
        except Exception:  # noqa: BLE001 - the recorded OSError, as Dask wraps it
            pass

    asyncio.run(connect())
    return seen[0]


@pytest.mark.parametrize("given, said, reached", [
    # a token or password reading as a dotted name, before a path's '@' and a host and port: nothing of it shown
    ("ws://Zq9tok.example.org/x@127.0.0.1:8871/", "ws://***", "Zq9tok.example.org:80"),
    ("wss://Zq9.example.org/x@[::1]:8786/", "wss://***", "Zq9.example.org:443"),
    ("ws://alice:Zq9@pw.example.org/x@localhost/", "ws://***", "pw.example.org:80"),
    # one label and a port before a query's or fragment's value holding the '@': the host and port Dask connects to
    ("ws://node7:8786/?token=a@b", "ws://node7:8786/***", "node7:8786"),
    ("wss://u:Zq9@node7:8786/?t=a@b", "wss://***@node7:8786/***", "node7:8786"),
    # one label that may be a login's start before the '@': still hidden; with its digits before a query's or a
    # fragment's value without a '/' between them, a user name and a password of digits (shown alice:123 before)
    ("ws://alice:123?Zq9@node7/", "ws://***", "alice:123"),
    ("ws://alice:123?x=Zq9pw@node7/", "ws://***", "alice:123"),
    ("wss://alice:4821#k=Zq9@hub.example.org/", "wss://***", "alice:4821"),
    ("ws://node7:8786#t=a@b", "ws://***", "node7:8786"),
    ("ws://Zq9a?t=Zq9b:@node7/", "ws://***", "Zq9a:80"),
    # one label without a port before a query's or fragment's '@': a token login (TOKEN@) holding '?', '#' or '/?'
    ("ws://Zq9tok?k=v@node7/", "ws://***", "Zq9tok:80"),
    ("wss://Zq9tok#k=v@hub.example.org/", "wss://***", "Zq9tok:443"),
    ("ws://Zq9tok/?k=Zq9v@gw.example.org/dask/", "ws://***", "Zq9tok:80"),
    ("ws://node7/?token=a@b", "ws://***", "node7:80"),
    # an IDN host after a login, as Dask connects to it; one with its port before a query value's '@'
    ("ws://alice:Zq9@bücher.example/a@b", "ws://***@bücher.example/***", "bücher.example:80"),
    ("wss://u:Zq9@例え.jp:8443/user/a@b/", "wss://***@例え.jp:8443/***", "例え.jp:8443"),
    ("ws://bücher.example:8786/?token=a@b", "ws://bücher.example:8786/***", "bücher.example:8786"),
    # a token or password holding non-ASCII text and a dot: hidden without a login before it, or where Python's idna
    # codec changes it (Dask looks up Zq9pä.ss) or its last label is not ASCII letters (0.36.0's ws://***)
    ("ws://Zq9pä.ß/x@node7/", "ws://***", "Zq9pä.ß:80"),
    ("ws://Zq9.例え/x@node7/", "ws://***", "Zq9.例え:80"),
    ("wss://Zq9pä.de/x@node7/", "wss://***", "Zq9pä.de:443"),
    ("wss://例え.jp:8443/user/a@b/", "wss://***", "例え.jp:8443"),
    ("ws://u:Zq9@pä.ß/?t=a@b", "ws://***", "pä.ß:80"),
])
def test_the_host_is_shown_where_dask_connects_to_it_and_no_secret_reading_as_one(given, said, reached, monkeypatch):
    """Dask connects to the text before the first '/', '?' or '#' after the login's last '@': shown where it is certainly
    the host (a one-label host before a query value's '@', an IDN name, had read ws://***), hidden where a host and port
    after a path's '@' make it a login's possibly (ws://Zq9tok.example.org/x@127.0.0.1:8871/ had shown the token); no
    Zq9 text in any line."""
    assert _dask_connects_to(given, monkeypatch) == reached
    lines = _lines(given)
    assert lines[0] == said and not [line for line in lines if "Zq9" in line], lines
    host = reached.rpartition(":")[0]
    assert "Zq9" not in scheduler.dask_said(f"cannot connect to {given} ({reached}): refused", given)
    if said.endswith("://***"):
        assert host not in scheduler.dask_said(f"Name or service not known ({reached})", given)


@pytest.mark.parametrize("given", [
    "ws://Zq9tok.example.org/x@127.0.0.1:8871/",
    "ws://localhost:1/Zq9pw@127.0.0.1:8786/",
    "wss://Zq9tok?k=v@[::1]:8786/",
    "ws://Zq9tok#k=Zq9v@localhost/",
    "wss://Zq9.example.org/user/a@10.0.0.5/",
])
def test_a_host_after_a_path_s_or_a_login_s_at_is_refused_before_dask_looks_anything_up(given, tmp_path, capsys,
                                                                                        monkeypatch):
    """An '@' after the first '/', '?' or '#' followed by a host and port, an IP address or localhost: the user meant a
    login, and Dask's websocket client would look up the text before that '/', '?' or '#' (a token) in DNS and connect
    there, which ws_shown hides (ws://***). Refused in one line with the %40 advice, no name looked up, nothing
    written, no secret said."""
    import socket

    looked_up = []
    real = socket.getaddrinfo

    def record(host, *args, **kwargs):
        looked_up.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", record)
    ds = helpers.make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=(8, 8, 8))
    line = helpers.refused_line(capsys, ["batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler", given],
                                f"--scheduler {given.partition(':')[0]}://***: an '@' after the first '/', '?' or '#' "
                                "and a host after it", "%40")
    assert "Zq9" not in line and not (tmp_path / "o").exists(), line
    assert not [host for host in looked_up if "Zq9" in host or "localhost" in host], looked_up


@pytest.mark.parametrize("given, said", [
    ("ws://alice:Zq9pw@node7:8786/#t=a@b", "ws://***@node7:8786/***"),
    ("ws://alice:Zq9pw@node7:8786/?t=a@b", "ws://***@node7:8786/***"),
    ("wss://u:Zq9@hub.example.org/user/bob/#t=a@b", "wss://***@hub.example.org/***"),
    ("wss://hub.example.org/user/alice@uni.edu/#t=a@b", "wss://hub.example.org/***"),
    ("ws://node7:8786/?token=q#a@b", "ws://node7:8786/***"),
])
def test_a_query_s_or_a_fragment_s_value_at_is_one_reading_in_the_line_and_the_check(given, said):
    """One reading of a query's or a fragment's value's '@' (ws_shown.value_ats) for the line and the check: the host
    shown as certain is the one the check accepts (ws://alice:pw@node7:8786/#t=a@b had been shown as certain and refused
    as unclear, its '?' form accepted)."""
    assert scheduler.shown(given) == said
    assert scheduler.check_address(given) == given


@pytest.mark.parametrize("given", ["ws://Zq9tok:?x=1@node7/", "wss://Zq9tok:/x@node7/", "ws://Zq9tok:#k=v@node7/",
                                   "ws://[Zq9]/x@node7/", "ws://Zq9tok:99999/x@node7/", "ws://Zq9:99999?t=a@b"])
def test_a_refusal_s_advice_names_no_host_the_line_hides(given):
    """A host the line hides (ws://***: it may be a token typed as a login) is named HOST in a refusal's advice: "no port
    after the colon" had said "give ws://Zq9tok:8786", "brackets" had quoted 'Zq9', and a port past 65535 its host."""
    with pytest.raises(IQTError) as err:
        scheduler.check_address(given)
    assert str(err.value).startswith(f"--scheduler {given.partition(':')[0]}://***: ") and "Zq9" not in str(err.value)


@pytest.mark.parametrize("given", ["ws://Zq9tok?k=v@node7/", "wss://Zq9tok#k=Zq9v@node7", "ws://Zq9tok/x@node7/",
                                   "wss://Zq9a/Zq9b@node7", "ws://Zq9tok?x=1@gw.example.org/", "ws://Zq9_tok/x@node7/",
                                   "ws://-Zq9tok-?k=v@node7/", "ws://Zq9tok/x@dask_sched/", "ws://Zq9tok?k=v@node7./",
                                   "ws://Zq9tok/x@bücher/", "wss://Zq9tok?k=v@bücher.example./"])
def test_one_word_before_a_path_s_or_a_query_s_at_and_a_name_after_it_is_refused(given):
    """One word without a port before the first '/', '?' or '#', then an '@' and a name after it: Dask (tornado's
    urlsplit) connects to that word at port 80 or 443, while the text reads as a token login holding '/', '?' or '#';
    it had been accepted and the token looked up in DNS. Refused in one line with the %40 advice, no secret said."""
    with pytest.raises(IQTError) as err:
        scheduler.check_address(given)
    line = str(err.value)
    assert line.startswith(f"--scheduler {given.partition(':')[0]}://***: one word without a port before the first "), line
    assert "%40" in line and "Zq9" not in line, line


def test_every_url_safe_token_shape_before_a_path_s_or_a_query_s_at_is_refused():
    """A token of secrets.token_urlsafe's, token_hex's or uuid4's shape (seeded here) before a path's or query's '@':
    the one-word rule had caught only a DNS label's shape, 51 % of token_urlsafe(32) tokens ('_', a '-' at an end)."""
    rng = random.Random(7)
    tokens = [base64.urlsafe_b64encode(rng.randbytes(n)).rstrip(b"=").decode() for n in (16, 32) for _ in range(40)]
    tokens += [rng.randbytes(16).hex() for _ in range(10)] + [str(uuid.UUID(bytes=rng.randbytes(16))) for _ in range(10)]
    for token in tokens:
        for given in (f"ws://{token}/x@node7/", f"wss://{token}?k=v@node7"):
            with pytest.raises(IQTError, match="one word without a port"):
                scheduler.check_address(given)


def test_the_at_pieces_are_read_once_for_host_after_and_token_before_at():
    """The text after each '@' to the next '/', '?' or '#', one helper for both rules (host_after had its own loop)."""
    assert ws_shown.after_ats("/x@node7/y?k=a@b.c:1#z@") == ["node7", "b.c:1", ""]


@pytest.mark.parametrize("given, ported", [("ws://node7?token=a@b", "ws://node7:80?token=a@b"),
                                            ("ws://dask_sched/x@y/", "ws://dask_sched:80/x@y/"),
                                            ("wss://proxy/user/alice@corp/proxy/8786/",
                                             "wss://proxy:443/user/alice@corp/proxy/8786/")])
def test_the_one_word_refusal_tells_a_host_s_owner_to_write_its_port(given, ported):
    """Where that word is the host (a scheduler or proxy at port 80 or 443: ws://node7?token=a@b ran before), the line
    says to write its port, an address taken that reaches the same server; '%40' alone had been said, which a server
    whose route holds the '@' (JupyterHub's /user/alice@corp/) does not match."""
    with pytest.raises(IQTError) as err:
        scheduler.check_address(given)
    port = ported.partition("://")[2].split("/")[0].split("?")[0].rpartition(":")[2]
    assert f"write its port after it ({given.partition(':')[0]}://HOST:{port}, the rest as typed)" in str(err.value)
    assert scheduler.check_address(ported) == ported


def test_a_token_login_holding_a_query_before_one_word_is_refused_by_iqt_batch_before_any_lookup(tmp_path, capsys,
                                                                                                  monkeypatch):
    """`iqt batch --scheduler ws://TOKEN?k=v@node7/`: exit 2, one line, nothing written, no name looked up."""
    import socket

    looked_up = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(str(host)) or [])
    ds = helpers.make_bids(tmp_path / "bids", subjects=("01",), corrupt=None, shape=(8, 8, 8))
    line = helpers.refused_line(capsys, ["batch", ds, "-o", tmp_path / "o", "--method", "cubic", "--scheduler",
                                         "ws://Zq9tok?k=v@node7/"], "--scheduler ws://***: one word without a port")
    assert "Zq9" not in line and not (tmp_path / "o").exists() and looked_up == [], (line, looked_up)


@pytest.mark.parametrize("given", ["ws://node7/?token=a@b", "ws://node7.example.org/x@y/", "ws://localhost/x@y/",
                                   "wss://proxy/user/alice@uni.edu/", "ws://node7:8786/x@y/", "ws://node7:8786?t=a@b",
                                   "ws://alice:pw@node7/", "ws://node7/dask/", "ws://dask_sched/?token=a@b",
                                   "ws://dask_sched:8786/x@y/", "ws://node7/user/alice@uni.edu./"])
def test_a_host_reading_as_one_or_a_port_before_the_at_is_still_taken(given):
    """The refusal above leaves a host that reads as one (a dotted name, localhost), a port after the word, a '/' before
    the query, and a dotted name (an e-mail) after a path's '@'."""
    assert scheduler.check_address(given) == given


def test_a_dotted_name_longer_than_any_dns_name_before_an_at_is_hidden():
    """An ASCII dotted name before a path's '@' is shown as the host Dask connects to; one longer than 253 characters is
    no DNS name Dask can reach, a token's text (it had been shown whole)."""
    token = "Zq9" + "a" * 60 + "." + ("b" * 60 + ".") * 4 + "cd"
    assert scheduler.shown(f"ws://{token}/x@y") == "ws://***"
    assert "Zq9" not in scheduler.dask_said(f"cannot connect ({token}:80): Name or service not known", f"ws://{token}/x@y")
    assert scheduler.shown("ws://Wm5.example.org/x@y") == "ws://Wm5.example.org/***"
