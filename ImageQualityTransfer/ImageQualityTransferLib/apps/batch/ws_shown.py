"""How a ws:// or wss:// scheduler address is written in every message and record: one rule over where its '@' stands.

With `rest` the text after "scheme://" and `head` its text up to the first '/', '?' or '#' (Dask's websocket client,
tornado's, connects to `head` after its last '@', a login before it):
- no '@' after `head`: the login's password masked (user:***@, a token login ***:@), the host, port and path shown,
  the query's and fragment's values masked;
- an '@' after `head` (a password or token holding '/', '?' or '#' given as a login, a path's, query's or fragment's
  '@'): scheme://[***@]HOST[:PORT]/***, HOST being `head` after its last '@', where that is certainly the host (below),
  else scheme://*** (the password p@ss/w0rd puts "ss" there).
Certainly the host: no text after an '@' past `head` reads as an address's host (HOST:PORT, an IP address or
localhost: in ws://TOKEN.example.org/x@127.0.0.1:8786/ the text before it may be a token typed as a login, and
scheduler.check_address refuses it), and it reads strictly as a host (an ASCII dotted name whose last label is letters
only; an IP address ([IPv6]); localhost; with :PORT or not; an IDN name only after a login's '@' and where Python's
idna codec writes it back as typed, its last label ASCII letters: a password's ä.ß or 例え.例え may read as one
otherwise), or as one label (or such a name) and its port, then a '/', where every '@' after it stands in a query's or
fragment's value (`value_ats`: ws://node7:8786/?token=a@b; without the '/', a user name and a password of digits
holding '?' read the same: ws://alice:123?x=pw@host/; without a port, a token login holding '?', refused by
scheduler.check_address (`token_before_at`): ws://TOKEN?k=v@node7/). A token, a user name, or a password's piece
reads as one label (or one label and digits) before a path's '@'; one reading as an ASCII dotted name no longer than
a DNS name (x@Wm5.example.org/y) cannot be told from a host, and is shown as one.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOTTED = rf"(?:{_LABEL}\.)+(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})"  # a DNS name whose last label is a top-level
# domain's: letters only, or an IDN one's ASCII form
_PORT = r"(?::\d{1,5})?"
_NAME = r"[\w-]+\.?"  # one word as a host may be written: a docker-compose service's dask_sched, node7., IDN bücher


def is_ip(text: str, version: int = 0) -> bool:
    """Whether `text` is an IP address (of `version` 4 or 6 only, where given), as Python's ipaddress reads it."""
    try:
        return version in (0, ipaddress.ip_address(text).version)
    except ValueError:
        return False


def _name_port(text: str) -> tuple:
    """HOST[:PORT] `text` split at its port's ':' ([::1]:8786 at the one after ']'); the port '' where none."""
    name = text.rpartition("]")[0] + "]" if text.startswith("[") else text.rpartition(":")[0] if re.search(
        r":\d{1,5}$", text) else text
    return name, text[len(name):]


def reads_as_host(text: str, strict: bool = False) -> bool:
    """Whether `text` is HOST[:PORT]: a dotted DNS name, an IPv4 address, [IPv6] or localhost, or (not `strict`) one
    label. `strict` leaves out one label: a token or a user name reads as one (ws://TOKEN/x@h/, ws://alice:1/pw@h/), an
    IDN name that is not written as Python's idna codec writes it back (`_idn_as_typed`), and a name over 253
    characters."""
    name, port = _name_port(text)
    if not re.fullmatch(_PORT, port):
        return False
    if name.startswith("[") and name.endswith("]"):
        return is_ip(name[1:-1], 6)
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        return is_ip(name)
    typed = name
    if not name.isascii():  # an IDN host (bücher.example), which Dask looks up in its ASCII form as Python encodes it
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return False
        if strict and not _idn_as_typed(typed, name):
            return False
    if strict and len(name) > 253:  # longer than any DNS name: no host Dask can reach, a token's text
        return False
    return name.lower() == "localhost" or re.fullmatch(_DOTTED if strict else f"{_DOTTED}|{_LABEL}", name) is not None


def _idn_as_typed(typed: str, ascii_form: str) -> bool:
    """Whether the IDN name `typed` is the one Dask looks up as `ascii_form`: the codec writes it back as typed (but for
    case; SECpä.ß is looked up as SECpä.ss) and its last label is ASCII letters (not an xn-- one, which any text's
    last label after a dot turns into: SEC.例え)."""
    try:
        back = ascii_form.encode("ascii").decode("idna")
    except UnicodeError:
        return False
    return back == typed.lower() and re.fullmatch(r"[A-Za-z]{2,63}", ascii_form.rpartition(".")[2]) is not None


def query_masked(text: str) -> str:
    """A URL's query and fragment values masked (wss://host/?token=***, host:8786#token=***), and each of their parts
    without '=' whole (tcp://host:8786#***): a proxy's token passed there had been echoed whole."""
    head, q, tail = re.match(r"([^?#]*)([?#]?)(.*)", text, re.S).groups()
    if not q or "://" not in head:
        return text
    query, hash_, fragment = tail.partition("#") if q == "?" else ("", q, tail)

    def values(part: str) -> str:
        return re.sub(r"(?<![^&;])[^&;=]+(?=[&;]|$)", "***", re.sub(r"=[^&;]*", "=***", part))

    return f"{head}{q}{values(query)}" if q == "?" and not hash_ else \
        f"{head}{q}{values(query)}{hash_}{values(fragment)}" if q == "?" else f"{head}#{values(fragment)}"


def login_masked(rest: str) -> str:
    """`rest` (a URL's part after the scheme) with its user:password@ (the text to its last '@') masked: the user name
    shown only before a non-empty password and where it holds no '@' (part of a token's or a password's then)."""
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return rest
    user, colon, password = userinfo.partition(":")
    login = "***" if "@" in user else f"{user}:***" if colon and password else "***:" if colon else "***"
    return f"{login}@{after}"


def split(rest: str) -> tuple:
    """`rest`'s head (to the first '/', '?' or '#') and the text after it."""
    head = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return head, rest[len(head):]


def after_ats(text: str) -> list:
    """The text after each '@' in `text` up to the next '/', '?' or '#': where each '@' may end a login, the host Dask
    would then connect to (read by `host_after` and `token_before_at`)."""
    return [re.split(r"[/?#]", piece, maxsplit=1)[0] for piece in text.split("@")[1:]]


def host_after(after: str) -> bool:
    """Whether the text after an '@' in `after` (the address past its host) reads as an address's host: HOST:PORT, an IP
    address or localhost, with a port or not (ws://TOKEN.example.org/x@127.0.0.1:8786/): the text before may then be a
    login's. A dotted name alone is a path's e-mail (wss://hub.example.org/user/alice@uni.edu/), not counted."""
    for where in after_ats(after):
        name, port = _name_port(where)
        if reads_as_host(where) and (port or re.fullmatch(_DOTTED, name) is None and reads_as_host(name, strict=True)):
            return True
    return False


def value_ats(after: str) -> list:
    """For each '@' in `after` (a URL's text past its host), whether it stands in a query's or fragment's value
    (?token=a@b, #t=a@b, ?token=q#a@b): after the first '?' or '#', its part there (from the last '&' or ';') holding
    '=' and not ending in ':' before it (ws://TOKEN?k=v:@host/ reads as a token login). The one reading of such an '@'
    for every message and refusal: any other '@' may end a password holding '/', '?' or '#'."""
    ats, before = [], ""
    for piece in after.split("@")[:-1]:
        before += piece
        mark = re.search(r"[?#]", before)
        part = re.split(r"[&;]", before[mark.end():])[-1] if mark else ""
        ats.append("=" in part and not part.endswith(":"))
        before += "@"
    return ats


def token_before_at(rest: str) -> bool:
    """Whether `rest` (a ws URL's part after the scheme) is one word of a URL-safe token's characters (letters, digits,
    '-', '_': every secrets.token_urlsafe, token_hex or uuid4 token) without a login or port, then an '@' in its path
    followed by one name (ws://TOKEN/x@node7/), or in its query or fragment followed by one name or a dotted name
    (ws://TOKEN?k=v@node7/), a name being one as a login's host may be written (dask_sched, node7., bücher): Dask
    (tornado, by urlsplit) connects to that word, port 80 or 443, while the text reads as a token login holding '/', '?'
    or '#' before its host; so that word may be a token, looked up in DNS. A host with '_' (a docker-compose service's)
    reads the same, and is told to write its port."""
    head, after = split(rest)
    if "@" not in after or re.fullmatch(r"[A-Za-z0-9_-]+", head) is None or head.lower() == "localhost":
        return False
    path = after[:1] == "/"
    scope = re.split(r"[?#]", after, maxsplit=1)[0] if path else after
    names = _NAME if path else rf"{_NAME}|[\w-]+(?:\.[\w-]+)+\.?"  # a dotted name after a path's '@' is an e-mail's
    # (/user/a@uni.edu/)
    return any(re.fullmatch(names, where) for where in after_ats(scope))


def _host_certain(head: str, after: str) -> bool:
    """Whether `head`'s text after its last '@' is certainly the host Dask connects to, `after` holding an '@' (the
    module's rule)."""
    host = head.rpartition("@")[2]
    if host_after(after):
        return False
    name, port = _name_port(host)
    by_name = reads_as_host(host, strict=True)
    if by_name and (name.isascii() or "@" in head):
        return True
    return port != "" and after[:1] == "/" and all(value_ats(after)) and (
        by_name or re.fullmatch(_LABEL, name) is not None)


def ws_shown(scheme: str, rest: str) -> str:
    """The ws/wss address `scheme`://`rest` as every message writes it (the module's rule)."""
    head, after = split(rest)
    if "@" not in after:
        return query_masked(f"{scheme}://{login_masked(head)}{after}")
    if not _host_certain(head, after):
        return f"{scheme}://***"
    login = "***@" if "@" in head else ""
    return f"{scheme}://{login}{head.rpartition('@')[2]}/***"


def hidden_host(rest: str) -> str:
    """The host[:port] text of a ws address that `ws_shown` masks ('' where it shows it or there is none): Dask's own
    text names it where it stands (connecting to alice:1 for ws://alice:1/pw@h/), masked there too."""
    head, after = split(rest)
    if "@" not in after or _host_certain(head, after):
        return ""
    return head.rpartition("@")[2]
