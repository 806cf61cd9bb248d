"""Reaching a Dask scheduler: its address checked, the credentials to reach it, and its workers waited for and checked
(that they run this build of ImageQualityTransfer) before a run sends them any subject."""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path

from ...core.errors import TORCH_CPU_INDEX, TORCH_PIN, IQTError
from .ws_shown import hidden_host, host_after, is_ip, reads_as_host, token_before_at, value_ats, ws_shown
from .ws_shown import login_masked as _login_masked
from .ws_shown import query_masked as _query_masked


WAIT_WORKERS_S = 120  # --wait-workers: how long a run waits for a scheduler's first worker, or for one to come back


_OWN_CLUSTERS: dict = {}  # scheduler address -> the credentials of a LocalCluster this process started and runs


def own_cluster(cluster, security) -> None:
    """`cluster`'s credentials kept for `client_security` until it closes: every close (its close(), a `with` block's
    end, Dask's at exit) runs its `_close`, wrapped here to forget them, where they had been kept for the process's
    life, one entry per cohort a Python or Slicer session ran (a review), and handed to a later scheduler at that port."""
    address = cluster.scheduler_address
    _OWN_CLUSTERS[address] = security
    close = cluster._close

    async def close_and_forget():
        try:
            return await close()
        finally:
            if _OWN_CLUSTERS.get(address) is security:
                del _OWN_CLUSTERS[address]

    cluster._close = close_and_forget


def scheduler_from_file(path) -> str:
    """The address in a Dask scheduler file (`dask scheduler --scheduler-file F` writes its address there, the usual way
    to reach a scheduler on an HPC cluster); an IQTError where the file holds none."""
    import json

    try:
        address = json.loads(Path(path).read_text()).get("address")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        address = None
    if not isinstance(address, str) or "://" not in address:
        raise IQTError(f"--scheduler {path}: a file, but not a Dask scheduler file (JSON with the scheduler's "
                       "\"address\"); give the file 'dask scheduler --scheduler-file' wrote, or the address itself "
                       "(tcp://host:8786)")
    return address


def shown(address) -> str:
    """`address` as every message writes it: a URL's password masked (ws://user:***@host/), where a refusal had echoed
    it to stderr and a cluster job's log; a path's '@' text, its port and a query's values too (ws://alice:***/***@host/).
    A name without a scheme that no file exists at keeps its text before an '@' where it may be a file's path
    (runs@node7/scheduler.json, shown), not where it ends in '/' (TOKEN@node7//, a login, read ***@node7//)."""
    text = str(address)
    scheme, sep, rest = text.partition("://")
    if not sep:  # host:port without a scheme, which Dask reads as tcp://: "alice:pw@host:8786" had been echoed
        if _a_path(text):  # runs@node7/scheduler.json, C:\\Users\\bob@corp\\s.json: a file's name, not a login; where no
            # such file exists its query's values masked (127.0.0.1:8786?token=T had been echoed whole: a review)
            if os.path.exists(os.path.expanduser(text)):
                return text
            if re.fullmatch(r"[^/\\@]+@[^/\\@:]+/+", text):  # TOKEN@node7/, TOKEN@node7//: a login before a host;
                # ending in '/', no file's name (runs@node7/scheduler.json may be one, and is shown)
                return f"***@{text.rpartition('@')[2]}"
            return _query_masked(f"x://{text}")[len("x://"):]
        # masked as its tcp:// form is (alice:123/w@node7:8786 had shown alice:***@, tcp://alice:123/w@... ***@)
        return shown(f"tcp://{text}")[len("tcp://"):]
    if scheme.lower() in ("ws", "wss"):  # one rule over where the '@' stands (ws_shown's docstring)
        return ws_shown(scheme, rest)
    head = re.split(r"[/?#]", rest, maxsplit=1)[0]  # the URL's netloc, as urlsplit reads it
    if sep and _path_at(rest) and scheme.lower() not in ("ws", "wss"):
        # no path in a tcp/tls/http(s) address (each such one is refused), so its '@' after a '/', '?' or '#' may end a
        # login holding one: all of it to the last '@' masked (urlsplit's host had shown "ss" of the password p@ss/w in
        # http://u:p@ss/w@host:8787, and the user name alice as a host in tcp://alice:123/w@node7:8786: a review), and
        # all of it where an '@' is a query's or fragment's value's (tls://h:1/a@b?t=x@y: "y" may be the token's)
        if any(value_ats(rest[len(head):])):
            return f"{scheme}{sep}***"
        return _query_masked(f"{scheme}{sep}***@{rest.rpartition('@')[2]}")
    return _query_masked(f"{scheme}{sep}{_login_masked(rest)}")


def _host_clear(rest: str) -> bool:
    """Whether a ws URL whose login and host are unclear (`_login_host_unclear`) has a login before its first '/', '?'
    or '#', a host there that reads as one (ws_shown's `reads_as_host`), an '@' in its path and no
    host:port after the path's last '@' (wss://alice:tok@hub.example.org/user/alice@uni.edu/proxy/8786/, a JupyterHub
    user name that is an e-mail): its refusal names the path's '@' to write %40."""
    head = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host = head.rpartition("@")[2]
    path = re.split(r"[?#]", rest[len(head):], maxsplit=1)[0]
    return "@" in head and "@" in path and _login_host_unclear(rest) and reads_as_host(host) and \
        re.match(r"(\[[^\]]*\]|[^/?#:@\[\]]+):\d+([/?#]|$)", path.rpartition("@")[2]) is None


def _path_at_advice(loc: str) -> str:
    """The refusal's words for a `_host_clear` ws URL: where Dask's websocket client ends the host, and the path's '@'
    to write %40 (JupyterHub reads /user/alice%40uni.edu/ as alice@uni.edu's), named by the path's text after it: in
    either reading (a path's '@', or a password's holding '/') no text of a login, as a query's or fragment's may be."""
    path = re.split(r"[?#]", loc[len(re.split(r"[/?#]", loc, maxsplit=1)[0]):], maxsplit=1)[0]  # a query's unsaid
    n, tail = path.count("@"), path.rpartition("@")[2]
    before = f" before '{tail}'" if tail else " at its end"
    which = f"the '@'{before}" if n == 1 else f"each of the {n} '@' after it (the last{before})"
    return (f"more than one '@', one after a '/', '?' or '#', so which text is a login and which the host is unclear; "
            "Dask's websocket client reaches the text between the login's last '@' and the first '/', '?' or '#' as "
            "the host"
            f": if that is the host, write {which} as %40 and keep the login's as typed (a password holding "
            "'/', '?' or '#' cannot be sent: Dask's websocket client sends a login as written)")


def _login_host_unclear(loc: str) -> bool:
    """Whether a ws URL's part after the scheme holds more than one '@', one after its first '/', '?' or '#'
    (ws://user:p@ss/w0rd@host:1, ws://u:pw@h:1/route@gw:8786/, ws://T/x@y@host:8786): read as a login to the last '@'
    or as urlsplit's host, which Dask's websocket client connects to, the text says two hosts. A query's or fragment's
    value's '@' (ws://u:pw@h:8786/?t=a@b, #t=a@b: ws_shown's `value_ats`) is no login's, nor counted."""
    head = re.split(r"[/?#]", loc, maxsplit=1)[0]
    logins = value_ats(loc[len(head):]).count(False)
    return logins > 0 and head.count("@") + logins > 1


DRIVES = os.name == "nt"  # whether C:\ and C:/ name a drive: Windows only


def _a_path(text: str) -> bool:
    """Whether `text` (no scheme) is a file's name rather than [user[:password]@]host[:port]: it exists (~ read as the
    home folder, as Dask does not: --scheduler=~/f reaches iqt unexpanded), it starts with ~/ or a drive (C:\\ or C:/)
    before a host without a port, or it is no
    login before a bare host (user:password@host[:port][/] or TOKEN@host:port[/], whatever the login holds) and its part
    before the '@' holds a folder separator (after an existing folder, always: runs/sched@node7), or a separator follows
    a host without a port (runs@node7/scheduler.json)."""
    import os

    userinfo, at, after = text.rpartition("@")
    if not at or os.path.exists(os.path.expanduser(text)):
        return True
    drive = r"|[A-Za-z]:(?=[/\\][^:]*$)" if DRIVES else ""  # elsewhere a:/pw@node7 is a login, masked (a review)
    if re.match(rf"(~[^/\\:@]*{drive})[/\\]", userinfo) and ":" not in after:  # ~/runs/sched@node7,
        return True  # C:\runs\sched@node7: a home folder's or a drive's path before a host without a port (a review)
    bare = after[:-1] if after.endswith("/") else after  # an IPv6 host, [::1]:8786 or ::1, had been read as a file's
    ipv6 = is_ip(bare, 6) or re.fullmatch(r"\[[^\]/\\]*\](:\d+)?", bare) is not None  # name and its login echoed
    if (re.fullmatch(r"[^/\\:]+(:\d+)?", bare) or ipv6) and (":" in userinfo or re.search(r":\d+$", bare) or ipv6):
        return False  # user:password@host[:port], TOKEN@host:port, a '/' in the login (echoed whole: reviews)
    if re.search(r"[/\\]", userinfo) and os.path.isdir(os.path.expanduser(re.split(r"[/\\]", userinfo)[0] or "/")):
        return True  # runs/sched@node7 in an existing folder runs/: a file the scheduler writes (a review)
    first = re.split(r"[/\\]", text, maxsplit=1)[0]
    if first != text and re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]{2,}):[^:\[\]]+", first):  # never C:\ nor C:/
        return False  # node7:8786/x/S@b/c: host:port before a '/', an address (read as a file's name, shown whole)
    if re.fullmatch(r"[\w-]+(\.[\w-]+)*", after) and not after.lower().endswith(".json"):
        return False  # TOKEN/x@node7: a token holding a '/' before a host without a port (echoed whole: a review)
    if re.search(r"[/\\]", userinfo):
        return True
    host = re.split(r"[/\\]", after, maxsplit=1)[0]
    return host != after and re.search(r":\d+$", host) is None


def masked_command(argv) -> str:
    """`iqt` and `argv` as one shell line, each --scheduler value (--scheduler URL, --scheduler=URL, an abbreviation
    such as --sched URL) as `shown` writes it: what a run records (headers, sidecars, dataset_description.json) and its
    lock shows, which had held the password (a review). A scheduler file is better: `ps` shows a command line."""
    import shlex

    argv = [str(a) for a in argv]
    out, after_batch, masked_next = [], False, False
    for token in argv:
        if masked_next:
            token, masked_next = shown(token), False
        elif after_batch and token.startswith("--") and len(token) > 2:
            name, eq, value = token.partition("=")
            if "--scheduler".startswith(name) and len(name) > 2:
                token, masked_next = (f"{name}={shown(value)}", False) if eq else (token, True)
        elif token == "--":
            after_batch = False
        after_batch = after_batch or token == "batch"
        out.append(token)
    return shlex.join(["iqt", *out])


def dask_said(text, address) -> str:
    """Dask's own text (an error's) on one line, with `address` as `shown` writes it and its password or token nowhere:
    "cannot connect (Timed out trying to connect to ws://alice:pw@host/ ...)" had quoted it whole (a review). The
    address's login (user:password@, TOKEN@) and query are replaced where they stand, and nowhere else: a bare pass had
    blanked letters of Dask's words ("[Errn*** 111]" for the password "o"), then whole words ("connect": reviews)."""
    text, address = str(text), str(address)
    rest, said = address.partition("://")[2] or address, shown(address)
    text = text.replace(address, said).replace(rest, said.partition("://")[2] or said)  # with its scheme or without
    ws = address.partition("://")[0].lower() in ("ws", "wss")
    head = re.split(r"[/?#]", rest, maxsplit=1)[0] if ws or _path_at(rest) else rest
    userinfo = head.rpartition("@")[0]
    if ws and (hidden := hidden_host(rest)):  # where Dask names the host `shown` masks ("alice:1" of ws://alice:1/pw@h/),
        # a bare name only before a port, a path or a closing mark: never a word of Dask's (the token "to/x", "trying to")
        end = r"(?![\w.%~+-])" if ":" in hidden else r"(?=[:/?#)\]'\"]|$)"
        text = re.sub(rf"(?<![\w.%~+-]){re.escape(hidden)}{end}", "***", text)
    if not ws and head != rest and "@" in rest[len(head):]:  # tcp://h:8786/a@b's "h:8786" (refused): its port masked,
        text = text.replace(head, re.sub(r":\d+$", ":***", head))  # and a head that may begin a token (tcp://T/x@h)
        if "@" not in head and ":" not in head:
            text = re.sub(rf"(?<![\w.%~+-]){re.escape(head)}(?=[:/?#])", "***", text)
    if userinfo:  # where it stands as the login: user:password (with its '@' or not), TOKEN@ and TOKEN:@; never a word
        # of Dask's alone (the password "connect" had blanked "trying to *** to"): neither Dask nor tornado, which sends
        # it as a Basic login, quotes a password outside its address
        text = text.replace(userinfo + "@", _login_masked(userinfo + "@")[:-1] + "@")
        user, colon, password = userinfo.partition(":")
        if colon and password:
            text = re.sub(rf"(?<![\w.%~+-]){re.escape(userinfo)}(?![\w.%~+-])", f"{user}:***", text)
    query = rest.partition("?")[2].partition("#")[0]
    if query and "=" in query:
        text = text.replace(query, _query_masked(f"x://?{query}").partition("?")[2])
    return " ".join(text.split())


def _path_at(rest: str) -> bool:
    """Whether a URL's part after the scheme holds its '@' only in the path, query or fragment, after a host[:port]
    (ws://host:8786/a@b, ws://host:8786/?t=a@b): no login, as urlsplit, Dask's ws client (tornado) and a browser read
    it; a host part whose port is no number (ws://user:p/w@host/) is read as a login cut short by the '/'."""
    head = re.split(r"[/?#]", rest, maxsplit=1)[0]  # its login, to the last '@' there, is the URL's (ws://u:p@h:1/?t=a@b)
    where = head.rpartition("@")[2]
    return "@" in rest[len(head):] and re.fullmatch(r"(\[[^\]]*\]|[^:\[\]@]*)(:\d*)?", where) is not None


def host_port(address) -> str:
    """`address`'s host and port (or host), without the scheme, the userinfo and the path: what a suggested address
    is built from, so no suggestion carries a password."""
    rest = str(address).partition("://")[2] or str(address)
    where = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return where.rpartition("@")[2]


SCHEDULER_PROTOCOLS = ("tcp", "tls", "ws", "wss")  # those Dask's Client reaches with distributed's own packages


ADDRESS_FORMS = ("tcp://host:port (or host:port; an IPv6 host in brackets, tcp://[::1]:8786), tls://host:port with its "
                 "credentials in Dask's configuration, ws:// or wss://")


def _tcp_host(loc: str, url: bool = False) -> str:
    """A tcp/tls address's part before any path, a login included whatever it holds (alice:p/w@node7:8786 had been read
    as host 'alice', port 'p/w...', and TOKEN/x@node7 told 'give tcp://TOKEN:8786', part of its token: a review).
    `url`: the address was given with its scheme, where an '@' after host:port and a '/' is the path's."""
    first = loc.split("/", 1)[0]
    if url and "@" not in first and re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*):\d+", first):  # tcp://node7:8786/a@b: the
        return first  # '@' is in a path after host:port, as urlsplit reads it ('give tcp://b:8786' had been said)
    userinfo, at, after = loc.rpartition("@")
    return f"{userinfo}@{after.split('/', 1)[0]}" if at else first


def check_address(scheduler: str) -> str:
    """`scheduler` with its scheme in lower case (Dask's Client refused TCP://), or an IQTError naming the accepted
    forms where it is not a tcp/tls/ws/wss address: ucx:// failed with an internal TypeError (no ucx package),
    inproc:// (this process only) with "not enough values to unpack", an IPv6 host without brackets (::1:8803) with
    "cannot connect (invalid address ...)". A tcp/tls address is host:port as Dask's parse_host_port reads it (no
    path, a port); a ws/wss one is a URL, its path sent to the server (ws://host:8786/ reaches the scheduler)."""
    from distributed.comm import parse_address, parse_host_port

    scheduler = scheduler.strip()  # a pasted address's space or newline had been read as part of its port
    scheme, sep, rest = scheduler.partition("://")
    if sep:
        scheduler = scheme.lower() + sep + rest
    try:
        proto, loc = parse_address(scheduler)
    except ValueError:
        proto, loc = None, ""
    netloc = re.split(r"[/?#]", loc, maxsplit=1)[0]  # as urlsplit reads it, a login included
    if proto in ("tcp", "tls", "http", "https") and "@" in loc[len(netloc):] and re.fullmatch(
            r"(?:[^/?#]*@)?(\[[^\]]*\]|[^:\[\]@]*):\d+", netloc):  # host:port/a@b or alice:123/w@node7: a path or a
        # password cut by its '/'; a suggestion from either side could echo a login ('give tcp://alice:123': a review),
        # or the text after a login's host:port ('give tcp://b?t=TOKEN:8786' for u:p@h:1/a@b?t=TOKEN)
        where = "a '/', a path's" if loc[len(netloc)] == "/" else f"a '{loc[len(netloc)]}', a query's or fragment's"
        raise IQTError(f"--scheduler {shown(scheduler)}: an '@' after {where} or a password's holding a "
                       f"'{loc[len(netloc)]}': {proto}:// addresses take neither; give {ADDRESS_FORMS}")
    _not_the_dashboard(scheduler, proto, loc)
    login = re.split(r"[/?#]", loc, maxsplit=1)[0].rpartition("@")[0] if proto in ("ws", "wss") else ""
    if any(c.isspace() for c in scheduler.replace(login, "", 1)):  # Dask read "my host" as a host name and "ws://my
        # host/" as a URL: neither connects (a review; "127.0.0.1: 8786" alone is read by Dask's int(), as a typo still);
        # a ws URL's password may hold one, which Dask's ws client sends as written (ws://alice:my pw@host/ connects)
        raise IQTError(f"--scheduler {shown(scheduler)!r}: a space inside the address; give it without: "
                       f"{shown(''.join(scheduler.split()))}")
    if proto not in SCHEDULER_PROTOCOLS:  # ucx:// is a stub in Dask, raising FutureWarning (distributed/comm/ucx.py)
        ucx = " (Dask's ucx:// moved to the distributed-ucxx package)" if proto == "ucx" else ""
        raise IQTError(f"--scheduler {shown(scheduler)}: not a scheduler address this command connects to{ucx}; give "
                       f"{ADDRESS_FORMS}, or the scheduler file 'dask scheduler --scheduler-file' wrote")
    # the host and port: a ws/wss address is a URL whose path and query Dask hands to the server (ws://host:8786/
    # reaches the scheduler), a tcp/tls one is host:port only (parse_host_port)
    host = re.split(r"[/?#]", loc, maxsplit=1)[0] if proto in ("ws", "wss") else _tcp_host(loc, bool(sep))
    if proto in ("ws", "wss") and _host_clear(loc):  # the '@' to write %40 named, by the text after it
        raise IQTError(f"--scheduler {shown(scheduler)}: {_path_at_advice(loc)}")
    if proto in ("ws", "wss") and _login_host_unclear(loc):
        raise IQTError(f"--scheduler {shown(scheduler)}: more than one '@', one after a '/', '?' or '#', so which text is a "
                       "login and which the host is unclear (Dask's websocket client ends the host at the first '/', "
                       f"'?' or '#'); give {proto}://USER:PASSWORD@HOST:PORT/ with every '@' of the login before any '/', "
                       "'?' or '#' and a path's or query's '@' written %40 (Dask's websocket client sends a login as "
                       "written: '%40' and '%2F' in one are not read as '@' and '/')")
    if proto in ("ws", "wss") and "@" in loc[len(host):] and not _path_at(loc):  # ws://user:p/w@host/ had been "port
        # 'p' is not a number"; an '@' in the path or query after a host:port is theirs, as Dask reads it
        raise IQTError(f"--scheduler {shown(scheduler)}: an '@' after the first '/', '?' or '#': a user name or password "
                       "holding one of these ends the host early, and Dask's websocket client sends a login as written "
                       "('%2F' as '%2F', not '/'); give one without '/', '?' or '#', e.g. a token as ws://TOKEN:@host/")
    past = loc[len(host):]
    if proto in ("ws", "wss") and host_after(past) and not (all(value_ats(past)) and re.search(r":\d+$", host)):
        # ws://TOKEN.example.org/x@127.0.0.1:8786/, ws://TOKEN?k=v@10.0.0.5:8786/: Dask had looked up the token in DNS
        # and connected there (ws_shown hides it); a host with its port before a query's value's '@' is the host. The
        # text after the '@' is not named: it may be a query value's, a token's
        raise IQTError(f"--scheduler {shown(scheduler)}: an '@' after the first '/', '?' or '#' and a host after it "
                       "(a host and port, an IP address or localhost), so which text is a login and which the host is "
                       "unclear (Dask's websocket client connects to the text before that '/', '?' or '#'); give "
                       f"{proto}://USER:PASSWORD@HOST:PORT/ with every '@' of the login before any '/', '?' or '#' (a "
                       f"token as {proto}://TOKEN:@HOST:PORT/) and a path's or query's '@' written %40")
    if proto in ("ws", "wss") and token_before_at(loc):  # ws://TOKEN?k=v@node7/, ws://TOKEN/x@node7/: Dask looks up
        # TOKEN in DNS and asks the rest at port 80 or 443 (ws_shown.token_before_at); where the word is the host, its
        # port written (ws://node7:80?token=a@b) reaches the same server, and '%40' need not reach a server whose route
        # holds the '@' (JupyterHub's /user/NAME/, docs/cohorts.md)
        default = 443 if proto == "wss" else 80
        raise IQTError(f"--scheduler {shown(scheduler)}: one word without a port before the first '/', '?' or '#' and an "
                       "'@' after it, so which text is a login and which the host is unclear (Dask's websocket client "
                       f"connects to that word, at port {default}); give {proto}://USER:PASSWORD@HOST:PORT/ with every "
                       f"'@' of the login before any '/', '?' or '#' (a token as {proto}://TOKEN:@HOST:PORT/); where "
                       f"that word is the host, write its port after it ({proto}://HOST:{default}, the rest as typed), "
                       "or a path's or query's '@' as %40")
    if "@" in host:  # a URL's user:password@, which tornado's websocket client sends (a proxy's login); a tcp/tls
        if proto in ("ws", "wss") and ":" not in host.rpartition("@")[0]:  # address is host:port, and Dask looked up
            # "user@host" as a machine's name; tornado asserts a password: ws://TOKEN@host/ had ended in an internal
            # AssertionError (exit 1), which no proxy's answer changes
            cut = len(login) + 1  # a token holding '@' and '/' (ws://T@k/n@host:8786) is refused above
            after = _query_masked(f"{proto}://{loc[cut:]}").partition("://")[2]  # its query's values masked
            raise IQTError(f"--scheduler {shown(scheduler)}: a user name without a password (TOKEN@), which Dask's "
                           f"websocket client cannot send; give a token as {proto}://TOKEN:@{after} (an empty "
                           f"password), or {proto}://USER:PASSWORD@{after}")
        if proto in ("ws", "wss"):
            host = host.rpartition("@")[2]
        else:
            bare = host.rpartition("@")[2]  # "give tcp://node7" had then been refused for its missing port
            bare = f"[{bare}]" if is_ip(bare, 6) else bare  # tcp://u@::1 had been told "give tcp://::1", refused next
            if not re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*):\d+", bare) and not (bare.count(":") > 1 and bare[:1] != "["):
                bare = bare.rstrip(":") + ":8786"
            try:  # suggested only where it is taken (tcp://u@node7:abc had been told "give tcp://node7:abc:8786")
                check_address(f"{proto}://{bare}")
                give = f"give {proto}://{bare}"
            except IQTError:
                give = f"give {proto}://HOST:PORT, no user@"
            raise IQTError(f"--scheduler {shown(scheduler)}: a {proto}:// address holds no user name (user@); {give}")
    hidden = proto in ("ws", "wss") and hidden_host(loc) != ""  # the line hides the host (it may be a token's): the
    # advice below names HOST for it (ws://TOKEN:?k=v@node7/ had been told "give ws://TOKEN:8786")
    if host.startswith("["):  # the port is what follows "]:" ([::1]8786 had been read as port 786, [::1]x0 as port 0)
        ip, close, after = host[1:].partition("]")
        if not close or after and not after.startswith(":"):
            raise IQTError(f"--scheduler {shown(scheduler)}: not a scheduler address: an IPv6 host in brackets is followed by "
                           f"a colon and the port; give e.g. {proto}://[{ip if is_ip(ip, 6) else '::1'}]:8786")
        if close and ip and not is_ip(ip, 6):  # [localhost]:8786 had passed: brackets hold an IPv6 address only
            ip = "HOST" if hidden else ip
            raise IQTError(f"--scheduler {shown(scheduler)}: brackets belong only around an IPv6 address, not '{ip}'; drop "
                           f"them: give {proto}://{ip}{after or ':8786'}")
    # a colon, no port after it: said as none given (tcp://[::1]: had been "cannot connect (invalid literal for int()")
    if host.endswith(":") and (host.endswith("]:") if host.startswith("[") else host.count(":") == 1):
        bare = host[:-1]
        if bare in ("", "[]"):
            raise IQTError(_no_host(scheduler, proto, ""))
        if not (bare.startswith("[") and bare.endswith("]") and is_ip(bare[1:-1], 6)):
            raise IQTError(f"--scheduler {shown(scheduler)}: no port after the colon; give the scheduler's port, e.g. "
                           f"{proto}://{'HOST' if hidden else bare}:8786 (the default port of 'dask scheduler')")
        host = bare
    if host.count(":") > 1 and not host.startswith("["):  # an IPv6 host: its port is told from it by the brackets
        ip, _, port = host.rpartition(":")
        if port.isdigit() and is_ip(ip, 6):
            raise IQTError(f"--scheduler {shown(scheduler)}: an IPv6 address is written in brackets before its port; give "
                           f"{proto}://[{ip}]:{port}")
        if is_ip(host, 6):  # no port after the address (::1): its last group had been taken for one, tcp://[:]:1
            raise IQTError(f"--scheduler {shown(scheduler)}: an IPv6 address without a port; give it in brackets before the "
                           f"scheduler's port, e.g. {proto}://[{host}]:8786 (the default port of 'dask scheduler')")
        raise IQTError(f"--scheduler {shown(scheduler)}: not a scheduler address this command connects to; give {ADDRESS_FORMS}")
    if proto in ("tcp", "tls") and host.startswith("[") and host.endswith("]") and is_ip(host[1:-1], 6):  # [::1]: said as
        # cannot connect (no port); a ws/wss URL without one is the scheme's (ws://[::1]/, port 80), as below
        raise IQTError(f"--scheduler {shown(scheduler)}: an IPv6 address without a port; give the scheduler's port after the "
                       f"brackets, e.g. {proto}://{host}:8786 (the default port of 'dask scheduler')")
    # a port past 65535 (or 0, or not a number) had been tried and said as "cannot connect (... Connection refused)"
    port = host.partition("]")[2][1:] if host.startswith("[") else host.rpartition(":")[2] if ":" in host else ""
    cut = re.split(r"[/?#]", port, maxsplit=1)[0]  # quoted to its '/', '?' or '#': 18786?token=T had echoed the token
    if port and cut != port and proto in ("tcp", "tls") and cut.isascii() and cut.isdigit() and 1 <= int(cut) <= 65535:
        raise IQTError(f"--scheduler {shown(scheduler)}: a query or path after the port, which {proto}:// addresses do "
                       f"not take; give {proto}://{host[:-len(port)]}{cut}")
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise IQTError(f"--scheduler {shown(scheduler)}: port {cut!r} is not a number from 1 to 65535; give the scheduler's "
                       f"port, e.g. {proto}://{'HOST' if hidden else host[:-len(port) - 1]}:8786 (the default port of "
                       "'dask scheduler')")
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] if port else host
    if not name:  # tcp://:8786 and tcp://[]:8786 had passed, Dask reading host '' (no machine named)
        raise IQTError(_no_host(scheduler, proto, port))
    if not port and name.isascii() and name.isdigit():  # `--scheduler 8786` had been told "give tcp://8786:8786"
        given = name if 1 <= int(name) <= 65535 else "8786"
        raise IQTError(f"--scheduler {shown(scheduler)}: a port alone, no host; give the scheduler's machine before it, "
                       f"{proto}://HOST:{given}, e.g. {proto}://127.0.0.1:{given} for this one")
    if proto not in ("tcp", "tls"):  # ws/wss: a URL without a port is the scheme's (80, 443), as a proxy serves it;
        return scheduler  # any path (a proxy maps its own to the listener's "/"): what answers there is asked (_reachable)
    if not port:  # tcp://127.0.0.1 (and tcp://host/, told to give tcp://host) had been "cannot connect (missing port"
        raise IQTError(f"--scheduler {shown(scheduler)}: no port{', and a path after the host' if '/' in loc else ''}; give "
                       f"{proto}://{re.split(r'[/?#]', host, maxsplit=1)[0]}:8786 (the default port of 'dask scheduler'), or the scheduler's own port")
    try:
        parse_host_port(loc)
    except ValueError:  # Dask reads no path: tcp://[::1]:8786/ had passed, then "cannot connect (invalid literal for int()"
        if "/" in loc:
            raise IQTError(f"--scheduler {shown(scheduler)}: no path after the port; give {proto}://{host}") from None
        raise IQTError(f"--scheduler {shown(scheduler)}: not a scheduler address this command connects to; give "
                       f"{ADDRESS_FORMS}") from None
    return scheduler


# the pages a scheduler's dashboard serves (distributed/dashboard/scheduler.py, distributed/http/): their path after an
# address says it is the dashboard's
DASHBOARD_PAGES = ("status", "workers", "tasks", "system", "profile", "profile-server", "graph", "groups", "info",
                   "health", "metrics", "events", "exceptions", "counters", "stealing", "hardware", "gpu", "shuffle",
                   "sitemap.json", "statics", "json", "api")


def _not_the_dashboard(scheduler: str, proto, loc: str) -> None:
    """An IQTError where `scheduler` is a dashboard's address (a dashboard page's path, port 8787 with a path, or an
    http(s) URL at 8787): 127.0.0.1:8787/status had been told "give tcp://127.0.0.1:8787", then "the port listens but
    is not a scheduler's". A ws/wss URL is one only at port 8787 with a dashboard page's path: Dask's ws listener
    serves `/` (ws://HOST:8787/ is a scheduler's); what answers at another is asked in _reachable (_answers_as_ws)."""
    if proto not in (*SCHEDULER_PROTOCOLS, "http", "https"):
        return
    host, slash, path = loc.partition("/")
    host = re.split(r"[?#]", host, maxsplit=1)[0].rpartition("@")[2]  # the suggestion carries no user:password@
    page = path.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].lower()
    name, port = (host.partition("]")[0] + "]", host.partition("]")[2][1:]) if host.startswith("[") else \
        host.rpartition(":")[::2] if ":" in host else (host, "")
    a_page = page in DASHBOARD_PAGES or page.startswith("individual-")
    if proto in ("ws", "wss") and not (port == "8787" and a_page):
        return
    if a_page or port == "8787" and (slash or proto in ("http", "https")):
        given = "tcp" if proto in ("http", "https") else proto
        raise IQTError(f"--scheduler {shown(scheduler)}: the address of the scheduler's dashboard (its web pages), not of the "
                       f"scheduler; give the scheduler's, {given}://{name or '127.0.0.1'}:8786 by default")


def _no_host(scheduler: str, proto: str, port: str) -> str:
    return (f"--scheduler {shown(scheduler)}: no host{' before the port' if port else ''}; give the scheduler's machine, e.g. "
            f"{proto}://127.0.0.1:{port or 8786} for this one")


def client_security(scheduler: str):
    """The credentials to reach `scheduler`: those of a local cluster this process started there (an in-process caller
    that names it), else Dask's configuration (distributed.comm.tls.*: a TLS cluster of your own). An IQTError for a
    tls:// address where that names none (Dask's Client failed with an internal TypeError)."""
    from distributed.comm import parse_address
    from distributed.security import Security

    if scheduler in _OWN_CLUSTERS:
        return _OWN_CLUSTERS[scheduler]
    security = Security()
    try:
        proto = parse_address(scheduler)[0]
    except ValueError:
        return security  # said by the connection
    if proto == "tls" and security.get_connection_args("client").get("ssl_context") is None:
        raise IQTError(f"--scheduler {shown(scheduler)}: a TLS scheduler takes clients with its credentials only, and Dask's "
                       "configuration names none; set distributed.comm.tls.ca-file, distributed.comm.tls.client.cert and "
                       "distributed.comm.tls.client.key to your cluster's files (e.g. in ~/.config/dask/distributed.yaml)")
    return security


def _wait_for_workers(client, scheduler: str, wait_s: float) -> None:
    """Return once the scheduler has a worker; said on stderr while it has none, and an IQTError after `wait_s` seconds
    (at a scheduler without workers the run would otherwise wait forever with no message)."""
    import sys

    if client.nthreads():
        return
    print(f"iqt: waiting for workers at {shown(scheduler)}: 0 connected (up to {wait_s:g} s, --wait-workers)", file=sys.stderr,
          flush=True)
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except (TimeoutError, OSError):
        raise IQTError(_no_workers(scheduler, wait_s, "connected")) from None


_PROBE = """
def probe(torch=False):
    try:
        from ImageQualityTransferLib.core.version import __version__
    except Exception as exc:
        return None, type(exc).__name__ + ": " + " ".join(str(exc).split()), None
    no_torch = None
    if torch:
        try:
            import torch as _torch  # noqa: F401
        except Exception as exc:
            no_torch = type(exc).__name__ + ": " + " ".join(str(exc).split())
    try:
        from ImageQualityTransferLib.core.version import build_digest
        from ImageQualityTransferLib.fileio.paths import MODELS_DIR
        try:  # a worker outliving a run reads the registry again: another process may have registered a model since
            from ImageQualityTransferLib.core.version import forget_build
            forget_build()
        except ImportError:  # an older build without it
            pass
        return str(__version__), build_digest(str(MODELS_DIR / "registry.json")), no_torch
    except Exception:
        return str(__version__), "unknown", no_torch
"""


def _probe():
    """A function that a worker runs without this project (sent by value: it is defined outside any importable module):
    (its ImageQualityTransfer version, its build digest, why PyTorch does not import there or None), or (None, why it
    cannot import ImageQualityTransfer, None); PyTorch is tried only when called with True."""
    space: dict = {"__name__": "iqt_worker_probe"}
    exec(_PROBE, space)  # noqa: S102 (a fixed text)
    return space["probe"]


def check_workers(client, scheduler: str, torch: bool = False) -> None:
    """An IQTError naming the workers that cannot import ImageQualityTransfer or run another version of it than this
    process (a worker without it dies unpickling the first task and the run hangs; one with another version writes
    its outputs with its own SoftwareVersion); with `torch` (the method runs a network), also those where PyTorch does
    not import (each subject had failed "the CNN methods need PyTorch, which is not installed", naming no worker,
    while this machine has it)."""
    from ...core.version import __version__, build_digest
    from ...fileio.paths import MODELS_DIR

    digest = build_digest(str(MODELS_DIR / "registry.json"))
    try:
        found = client.run(_probe(), torch, on_error="return")
    except (OSError, TimeoutError) as exc:
        raise IQTError(f"--scheduler {shown(scheduler)}: the workers could not be asked their ImageQualityTransfer version "
                       f"({dask_said(exc, scheduler)}); check them and rerun") from None
    bad = []
    for address, answer in sorted(found.items()):
        worker = _named(client, address)
        if isinstance(answer, BaseException) or not isinstance(answer, tuple):
            bad.append(f"{worker}: {type(answer).__name__ if isinstance(answer, BaseException) else answer!r}")
        elif answer[0] is None:
            bad.append(f"{worker}: cannot import it ({answer[1]})")
        elif answer[0] != __version__:
            bad.append(f"{worker}: version {answer[0]}")
        elif answer[1] != digest:  # one version number, other code or models (a checkout of another commit)
            bad.append(f"{worker}: version {answer[0]} from other code or models (build {str(answer[1])[:12]}, here "
                       f"{digest[:12]})")
    if bad:
        listed = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise IQTError(f"--scheduler {shown(scheduler)}: {len(bad)} of {len(found)} workers cannot run this ImageQualityTransfer "
                       f"{__version__} ({listed}); start the workers from the same environment as this command")
    no_torch = [f"{_named(client, w)}: {a[2]}" for w, a in sorted(found.items()) if len(a) > 2 and a[2]]
    if no_torch:
        listed = "; ".join(no_torch[:3]) + (f"; and {len(no_torch) - 3} more" if len(no_torch) > 3 else "")
        raise IQTError(f"--scheduler {shown(scheduler)}: {len(no_torch)} of {len(found)} workers cannot import PyTorch, which "
                       f"the CNN methods need ({listed}); install it where the workers run ('pip install {TORCH_PIN}' in "
                       f"their environment, with '--index-url {TORCH_CPU_INDEX}' for the CPU build on Linux or Windows "
                       "workers, where PyPI's torch pulls CUDA packages) and start them again, or choose a method without "
                       "it (e.g. biqt)")


def _named(client, address: str) -> str:
    """'NAME/address' of a worker whose name ('dask worker --name') is not its address; the address otherwise."""
    try:
        name = client.scheduler_info()["workers"][address].get("name")
    except (AttributeError, KeyError, TypeError, OSError):
        name = None
    return f"{name}/{address}" if name is not None and str(name) != address else address


def _no_workers(scheduler: str, wait_s: float, what: str) -> str:
    """The workers' address is the scheduler's scheme, host and port alone: `dask worker ws://host:8786/` ends in a
    traceback (its port read as '8786/'), and a proxy's login or query is nothing a worker sends; behind a proxy's path
    (ws://proxy/dask/) the path is named, and the scheduler's own address asked for, which the proxy's host may not be."""
    from urllib.parse import urlsplit

    scheme = str(scheduler).partition("://")[0].lower() if "://" in str(scheduler) else "tcp"
    said = urlsplit(shown(scheduler)) if scheme in ("ws", "wss") else None  # masked as the line's address
    path = said.path if said else ""  # named as the line shows it; whether there is one, as Dask asks it: a query's
    # masked '@' reads "/***" in the line (ws://node7:8786/?token=a@b had been told "not through the path /***")
    asked = urlsplit(str(scheduler)).path if said else ""
    own = ("the scheduler's own address ('dask worker' followed by the address its log's 'Scheduler at:' line "
           "gives)")  # where the proxy's or a hidden host is not it; a pattern, no address a user could copy
    if asked in ("", "/") and not (said and said.hostname == "***"):
        start = (f"start workers with 'dask worker {scheme}://{host_port(scheduler)}' (with ImageQualityTransfer "
                 "installed, as here)")
    elif "" in (asked.strip("/"), path.strip("/")):
        start = f"start workers at {own}, with ImageQualityTransfer installed, as here"
    else:  # a proxy's path: 'dask worker' fails reading its port ('8786/p')
        start = (f"start workers at {own}, not through the path {path} ('dask worker' takes no URL path), with "
                 "ImageQualityTransfer installed, as here")
    return f"--scheduler {shown(scheduler)}: no worker {what} within {wait_s:g} s; {start}, or wait longer with " \
           "--wait-workers SECONDS"


def _reachable(address: str, security=None) -> None:
    """An OSError at once when nothing listens at a scheduler's address: Dask's Client would retry a refused
    connection until its timeout (about 24 s); and where what listens is no scheduler (over TLS with `security`'s
    credentials: a worker's tls:// port gives an internal TypeError, its dashboard's a 20 s wait)."""
    import socket

    from distributed.comm import parse_address, parse_host_port

    proto, loc = parse_address(address)
    if proto in ("tcp", "tls"):
        with socket.create_connection(parse_host_port(loc), timeout=5):
            pass
        _answers_as_scheduler(address, security)
    elif proto in ("ws", "wss"):  # a URL, its port the scheme's where none is given: ws://127.0.0.1 had waited 20 s
        from urllib.parse import urlsplit

        url = urlsplit(address)
        with socket.create_connection((url.hostname, url.port or (443 if proto == "wss" else 80)), timeout=5):
            pass
        _answers_as_ws(address, url, security)


WS_ANSWER_S = 3  # a web server answers a handshake in milliseconds; Dask's Client waited 20 s, then said "cannot connect"


def _answers_as_ws(address: str, url, security=None) -> None:
    """An IQTError at once where a websocket handshake, as Dask's Client sends it (with the URL's user:password as a
    Basic login), is answered as a web page: 200 or a redirect (a dashboard), or 404 (no such path there). Its status
    line only is read: 101 is a ws listener; 401 a login refused, which Dask's Client, sending the same one, waited 20 s
    to say as "cannot connect ... start one with 'dask scheduler'"; anything else (a proxy's 400/426, no answer, a TLS
    failure) is left to the Client, which a proxy routing by the Upgrade header or a login proxy passes on to the
    scheduler. Over wss:// the certificate is checked as Dask's Client checks it (`security`'s context, else Python's
    default), before any login is sent: an ssl.SSLError where it fails (the login had gone to a server with any
    certificate, a review), and where TLS is not answered at all a plain ws:// scheduler there is said."""
    import base64
    import http.client
    import os

    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    if url.username is not None:  # as tornado's websocket_connect (Dask's ws client) sends a URL's user:password
        login = f"{url.username}:{url.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(login).decode()
    if url.scheme == "wss":  # tornado's default where Dask's configuration names no context: verified, as a browser
        context = (security.get_connection_args("client").get("ssl_context") if security is not None else None) \
            or ssl.create_default_context()
        conn = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=WS_ANSWER_S, context=context)
        try:
            conn.connect()  # the handshake, the certificate checked, before the login goes
        except ssl.SSLCertVerificationError:
            conn.close()
            raise
        except OSError:  # no TLS answer (a ws:// scheduler waits for a request) or not TLS: a plain one there is told
            conn.close()
            _plain_ws(address, url, target, headers)
            return
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=WS_ANSWER_S)
    try:
        conn.request("GET", target, headers=headers)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return
    finally:
        conn.close()
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    where = f"{host}:{url.port}" if url.port else host  # no user:password in a message
    asked = url.path or "/"  # the path the probe asked: the line's, masked below, reads "/***" for a query's '@'
    rest = address.partition("://")[2]
    if "@" in rest[len(re.split(r"[/?#]", rest, maxsplit=1)[0]):]:  # as `shown` writes it (ws_shown's rule): its path
        from urllib.parse import urlsplit

        url = url._replace(path=urlsplit(shown(address)).path or "/")  # masked, and its host where it masks it
        if hidden_host(rest):
            host, where = "HOST", "HOST:PORT"
    if 200 <= status < 400:
        raise IQTError(f"--scheduler {shown(address)}: a web page answers there (HTTP {status}), not a Dask scheduler: the "
                       f"address of its dashboard? give the scheduler's, tcp://{host}:8786 by default (ws://HOST:PORT/ "
                       "where it was started with --protocol ws)")
    if status == 401:
        here = f"{url.scheme}://{{}}@{where}{url.path or '/'}"
        said = ("refused the login (HTTP 401); check the URL's user name and password" if url.username is not None else
                "refused the token in the URL's query (HTTP 401); check it" if url.query else  # not told to drop it
                f"asks for a login (HTTP 401); give it in the URL, {here.format('USER:PASSWORD')} (a token as "
                f"{here.format('TOKEN:')})")
        raise IQTError(f"--scheduler {shown(address)}: the server there {said}")
    if status in (400, 426) and (code := _dask_handshake_refused(address, security)) is not None:
        raise IQTError(f"--scheduler {shown(address)}: the server there refuses Dask's websocket handshake (HTTP {code}): "
                       "a proxy that does not pass websockets on (nginx needs 'proxy_set_header Upgrade $http_upgrade' "
                       "and 'proxy_set_header Connection upgrade'), or no websocket server at that path; give the "
                       f"scheduler's own address, tcp://{host}:8786 by default")
    if status == 404 and asked == "/":
        raise IQTError(f"--scheduler {shown(address)}: nothing at {where} serves a Dask scheduler (HTTP 404 at the path /); "
                       f"give the scheduler's address, tcp://{host}:8786 by default")
    if status == 404:  # a path the line hides with its host (ws://***) named as "its path", not as '/'
        at = f"the path {url.path}" if url.path.strip("/") else "its path"
        raise IQTError(f"--scheduler {shown(address)}: nothing answers at {at} there (HTTP 404); Dask's "
                       f"scheduler answers ws:// at the path / ({url.scheme}://{where}/), a proxy at the path it maps "
                       "to it")


def _dask_handshake_refused(address: str, security=None):
    """The HTTP status (400, 426) with which the server at a ws/wss `address` refuses one websocket handshake of Dask's
    own connector, None where it takes it or fails otherwise: Dask's Client retries that refusal until its timeout
    (distributed.comm.core.connect), though its connector says the status at once (a proxy may answer the probe's
    handshake otherwise than Dask's, so the probe's 400 or 426 alone is not taken)."""
    import asyncio

    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend
    from tornado.httpclient import HTTPClientError

    proto, loc = parse_address(address)
    kwargs = security.get_connection_args("client") if security is not None else {}

    async def once():
        comm = await asyncio.wait_for(get_backend(proto).get_connector().connect(loc, **kwargs), WS_ANSWER_S)
        comm.abort()

    try:
        asyncio.run(once())
    except Exception as exc:  # noqa: BLE001 - any other failure is left to the Client, as before
        cause = exc.__cause__
        return cause.code if isinstance(cause, HTTPClientError) and cause.code in (400, 426) else None
    return None


def _plain_ws(address: str, url, target: str, headers: dict) -> None:
    """An IQTError where a wss:// address's port answers a plain websocket handshake (sent without the login) as a
    Dask scheduler does (101): wss:// to a --protocol ws scheduler had waited 20 s, then said "cannot connect"."""
    import http.client

    conn = http.client.HTTPConnection(url.hostname, url.port or 443, timeout=WS_ANSWER_S)
    try:
        conn.request("GET", target, headers={k: v for k, v in headers.items() if k != "Authorization"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return
    finally:
        conn.close()
    if status == 101:
        raise IQTError(f"--scheduler {shown(address)}: the scheduler there speaks plain ws://, not TLS (wss://); give "
                       f"{shown('ws' + address[3:])}")


def _tls_error(exc: BaseException):
    """The ssl.SSLError among the causes of a failed connection (a certificate that does not verify, one the server
    refuses, or a server that does not speak TLS), None where there is none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ssl.SSLError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


SCHEDULER_ANSWER_S = 5  # a scheduler answers its identity in milliseconds; Dask's Client waited forever on a non-scheduler


def _answers_as_scheduler(address: str, security=None) -> None:
    """An OSError when what listens at a tcp/tls address does not answer Dask's identity call as a scheduler within
    SCHEDULER_ANSWER_S: on a port that listens but is not one (the scheduler's dashboard port, say) the Client hangs
    with no message."""
    import asyncio

    try:
        info = asyncio.run(asyncio.wait_for(_identity(address, security), SCHEDULER_ANSWER_S))
    except (TimeoutError, asyncio.TimeoutError):
        raise OSError(f"nothing there answered as a Dask scheduler within {SCHEDULER_ANSWER_S} s: the port listens but "
                      "is not a scheduler's, e.g. its dashboard's") from None
    except OSError:
        raise
    except Exception as exc:
        raise OSError(f"what listens there does not speak Dask's protocol ({type(exc).__name__})") from None
    kind = info.get("type") if isinstance(info, dict) else None
    if kind != "Scheduler":
        raise OSError(f"a Dask {kind} answers there, not the scheduler" if kind else "no Dask scheduler answers there")


async def _identity(address: str, security=None):
    """What a Dask server at `address` says it is ({"type": "Scheduler", ...}), over one comm closed at once after
    (a tls:// one with `security`'s client credentials)."""
    from distributed.comm import connect

    kwargs = security.get_connection_args("client") if security is not None and address.startswith("tls://") else {}
    comm = await connect(address, timeout=SCHEDULER_ANSWER_S, **kwargs)
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()
