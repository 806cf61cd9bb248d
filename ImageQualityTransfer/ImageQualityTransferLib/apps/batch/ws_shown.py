"""How a ws:// or wss:// scheduler address is written in every message and record: one rule over where its '@' stands.

With `rest` the text after "scheme://" and `head` its text up to the first '/', '?' or '#' (the host Dask's websocket
client reaches, a login before it):
- no '@' after `head`: the login's password masked (user:***@, a token login ***:@), the host, port and path shown,
  the query's and fragment's values masked;
- an '@' in `head` and after it (a password or token holding '/', '?' or '#', or a path's '@' after a login):
  scheme://***@HOST[:PORT]/***, HOST being `head` after its last '@', where it reads strictly as a host, else
  scheme://*** (the password p@ss/w0rd puts "ss" there);
- an '@' only after `head` (a token holding '/', '?' or '#' given as a login, or a path's, query's or fragment's '@'):
  scheme://HEAD/*** where `head` reads strictly as a host, else scheme://***.
Strictly: a dotted name whose last label is letters only, an IP address ([IPv6]) or localhost, with :PORT or not. A
token, a user name, or a password's piece reads as one label (or one label and digits); one reading as a dotted name
(x@Wm5.example.org/y) cannot be told from a host, and is shown as one.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOTTED = rf"(?:{_LABEL}\.)+[A-Za-z]{{2,63}}"  # a DNS name whose last label is letters only, as a top-level domain is
_PORT = r"(?::\d{1,5})?"


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def reads_as_host(text: str, strict: bool = False) -> bool:
    """Whether `text` is HOST[:PORT]: a dotted DNS name, an IPv4 address, [IPv6] or localhost, or (not `strict`) one
    label. `strict` leaves out one label: a token or a user name reads as one (ws://TOKEN/x@h/, ws://alice:1/pw@h/)."""
    name = text.rpartition("]")[0] + "]" if text.startswith("[") else text.rpartition(":")[0] if re.search(
        r":\d{1,5}$", text) else text
    port = text[len(name):]
    if not re.fullmatch(_PORT, port):
        return False
    if name.startswith("[") and name.endswith("]"):
        return ":" in name and _ip(name[1:-1])
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        return _ip(name)
    return name.lower() == "localhost" or re.fullmatch(_DOTTED if strict else f"{_DOTTED}|{_LABEL}", name) is not None


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


def ws_shown(scheme: str, rest: str) -> str:
    """The ws/wss address `scheme`://`rest` as every message writes it (the module's rule)."""
    head, after = split(rest)
    if "@" not in after:
        return query_masked(f"{scheme}://{login_masked(head)}{after}")
    if "@" in head:
        host = head.rpartition("@")[2]
        return f"{scheme}://***@{host}/***" if reads_as_host(host, strict=True) else f"{scheme}://***"
    return f"{scheme}://{head}/***" if reads_as_host(head, strict=True) else f"{scheme}://***"


def hidden_host(rest: str) -> str:
    """The host[:port] text of a ws address that `ws_shown` masks ('' where it shows it or there is none): Dask's own
    text names it where it stands (connecting to alice:1 for ws://alice:1/pw@h/), masked there too."""
    head, after = split(rest)
    if "@" not in after:
        return ""
    host = head.rpartition("@")[2]
    return "" if reads_as_host(host, strict=True) else host
