"""URL hosts as a browser or a forward proxy reads them, and whether we may fetch from them.

In: the host of an http(s) URL as written (still percent-encoded; an IPv6 literal keeps
its brackets). Out: ``parse_host`` gives a domain (ASCII, lowercase, a trailing dot kept),
an ``ipaddress.IPv4Address`` or ``IPv6Address``, or None when the host is no valid host.
``host_verdict`` turns that into a fetch drop reason: ``bad_url``, ``private_address``
or None. Pure functions; ``stages.http.check_target`` calls them for every URL and
every redirect hop.

Why: Python's ``ipaddress`` only reads dotted-quad IPv4, but a forward proxy (Squid,
curl), a browser and ``inet_aton`` read ``2852039166``, ``0xa9.0xfe.0xa9.0xfe``,
``0251.0376.0251.0376`` and ``169.254.43518`` as 169.254.169.254. Treating such a host
as a name would let the proxy connect to it. So hosts are parsed as the WHATWG URL
Standard's host parser does (https://url.spec.whatwg.org/#host-parsing):

- 3.5 host parsing: a ``[...]`` host is an IPv6 address; else percent-decode, UTF-8
  decode, *domain to ASCII* (UTS #46 via the ``idna`` package when installed, else
  ``encodings.idna``; a failure means no valid host), refuse forbidden domain code
  points, and parse as IPv4 when the result *ends in a number*.
- 3.5 "ends in a number checker": the last label (after dropping one empty last label,
  i.e. a trailing dot) is all digits, or ``0x`` followed by hex digits.
- 3.5 "IPv4 parser" and "IPv4 number parser": 1-4 parts, each decimal, octal (leading 0)
  or hex (``0x``); the last part fills the remaining bytes; a part out of range fails.
- 3.5 "IPv6 parser": including the dotted IPv4 tail (``::ffff:127.0.0.1``).

An address is public when it is globally routable and not multicast, reserved,
loopback, link-local, private or unspecified; an IPv6 address that embeds an IPv4 one
(IPv4-mapped ``::ffff:0:0/96``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) is judged by
that IPv4 address. ``localhost`` and ``*.localhost`` (with or without a trailing dot)
are private names (RFC 6761).
"""

from __future__ import annotations

import ipaddress
import string
from urllib.parse import unquote_to_bytes

try:
    import idna
except ImportError:       # the standard library's IDNA 2003 codec instead
    idna = None
    import encodings.idna as _idna2003

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# WHATWG 3.5: forbidden host code points, plus C0 controls, "%" and DEL for domains.
FORBIDDEN_DOMAIN = frozenset("\x00\t\n\r #/:<>?@[\\]^|%\x7f") | {chr(c) for c in range(0x20)}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def parse_host(host: str) -> str | Address | None:
    """The WHATWG host parser for a special scheme (http, https): a domain, an address,
    or None for failure."""
    if host.startswith("["):
        if not host.endswith("]"):
            return None
        n = parse_ipv6(host[1:-1])
        return None if n is None else ipaddress.IPv6Address(n)
    if not host:
        return None
    domain = unquote_to_bytes(host).decode("utf-8", errors="replace")   # U+FFFD fails IDNA below
    ascii_domain = domain_to_ascii(domain)
    if ascii_domain is None or FORBIDDEN_DOMAIN.intersection(ascii_domain):
        return None
    if ends_in_number(ascii_domain):
        n = parse_ipv4(ascii_domain)
        return None if n is None else ipaddress.IPv4Address(n)
    return ascii_domain


def domain_to_ascii(domain: str) -> str | None:
    """UTS #46 ToASCII as WHATWG calls it (not strict), or None for failure. An ASCII
    domain without ``xn--`` labels is only lowercased, as the standard allows."""
    labels = domain.split(".")
    if domain.isascii() and not any(lb.lower().startswith("xn--") for lb in labels):
        return domain.lower() or None
    try:
        if idna is not None:
            labels = idna.uts46_remap(domain, std3_rules=False, transitional=False).split(".")
            out = [_ascii_label(lb) for lb in labels]
        else:
            out = [_ascii_label_2003(lb) for lb in _idna2003.dots.split(domain)]
    except (UnicodeError, ValueError):     # idna.IDNAError is a UnicodeError
        return None
    return ".".join(out) or None


def _ascii_label(label: str) -> str:
    if not label.isascii():
        return idna.alabel(label).decode("ascii")
    label = label.lower()
    if label.startswith("xn--"):
        idna.ulabel(label)                 # raises on invalid Punycode or an invalid U-label
    return label


def _ascii_label_2003(label: str) -> str:
    if not label.isascii():
        return _idna2003.ToASCII(label).decode("ascii")
    label = label.lower()
    if label.startswith("xn--"):
        label[4:].encode("ascii").decode("punycode")   # raises on invalid Punycode
    return label


def ends_in_number(domain: str) -> bool:
    """WHATWG's "ends in a number checker"."""
    parts = domain.split(".")
    if parts[-1] == "":
        if len(parts) == 1:
            return False
        parts.pop()
    last = parts[-1]
    if last and all(c in string.digits for c in last):
        return True
    return _ipv4_number(last) is not None


def _ipv4_number(part: str) -> int | None:
    """WHATWG's "IPv4 number parser" (the validation-error flag is not needed here)."""
    if not part:
        return None
    radix = 10
    if len(part) >= 2 and part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
    elif len(part) >= 2 and part[0] == "0":
        part, radix = part[1:], 8
    if not part:
        return 0
    digits = string.hexdigits if radix == 16 else string.digits[:radix]
    if not all(c in digits for c in part):
        return None
    return int(part, radix)


def parse_ipv4(host: str) -> int | None:
    """WHATWG's "IPv4 parser": the address as a 32-bit integer, or None for failure."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers = [_ipv4_number(p) for p in parts]
    if None in numbers or any(n > 255 for n in numbers[:-1]):
        return None
    if numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    ipv4 = numbers[-1]
    for counter, n in enumerate(numbers[:-1]):
        ipv4 += n * 256 ** (3 - counter)
    return ipv4


def parse_ipv6(text: str) -> int | None:
    """WHATWG's "IPv6 parser" (the text between the brackets): a 128-bit integer or None."""
    address, piece, compress, i = [0] * 8, 0, None, 0
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else ""

    if at(0) == ":":
        if at(1) != ":":
            return None
        i, piece = 2, 1
        compress = piece
    while i < n:
        if piece == 8:
            return None
        if text[i] == ":":
            if compress is not None:
                return None
            i, piece = i + 1, piece + 1
            compress = piece
            continue
        value = length = 0
        while length < 4 and at(i) and at(i) in string.hexdigits:
            value, i, length = value * 16 + int(text[i], 16), i + 1, length + 1
        if at(i) == ".":                   # a dotted IPv4 tail: two more pieces
            if length == 0 or piece > 6:
                return None
            i -= length
            seen = 0
            while i < n:
                v4 = None
                if seen > 0:
                    if text[i] == "." and seen < 4:
                        i += 1
                    else:
                        return None
                if not (at(i) and at(i) in string.digits):
                    return None
                while at(i) and at(i) in string.digits:
                    if v4 == 0:
                        return None        # a leading zero
                    v4 = int(text[i]) if v4 is None else v4 * 10 + int(text[i])
                    if v4 > 255:
                        return None
                    i += 1
                address[piece] = address[piece] * 0x100 + v4
                seen += 1
                if seen in (2, 4):
                    piece += 1
            if seen != 4:
                return None
            break
        if at(i) == ":":
            i += 1
            if i >= n:
                return None
        elif i < n:
            return None
        address[piece] = value
        piece += 1
    if compress is not None:
        swaps, piece = piece - compress, 7
        while piece != 0 and swaps > 0:
            address[piece], address[compress + swaps - 1] = address[compress + swaps - 1], address[piece]
            piece, swaps = piece - 1, swaps - 1
    elif piece != 8:
        return None
    return int.from_bytes(b"".join(p.to_bytes(2, "big") for p in address), "big")


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, NAT64, 6to4), if any."""
    if addr.ipv4_mapped:
        return addr.ipv4_mapped
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr.sixtofour


def is_public_address(addr: Address) -> bool:
    """True for an address we may connect to: globally routable and none of private,
    loopback, link-local, multicast, reserved or unspecified (judged by the embedded
    IPv4 address for IPv4-mapped, NAT64 and 6to4 IPv6 addresses)."""
    if addr.version == 6 and (v4 := embedded_ipv4(addr)) is not None:
        addr = v4
    return addr.is_global and not (addr.is_private or addr.is_loopback or addr.is_link_local
                                   or addr.is_multicast or addr.is_reserved or addr.is_unspecified)


def is_local_name(domain: str) -> bool:
    """``localhost`` and its subdomains, with or without a trailing dot (RFC 6761 6.3)."""
    name = domain.removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


def host_verdict(host: str) -> str | None:
    """A drop reason for a URL host as written: ``bad_url`` when it is no valid host,
    ``private_address`` when it is (or is a name for) a non-public address, else None.
    A name other than localhost is left to the resolver (or the proxy)."""
    parsed = parse_host(host)
    if parsed is None:
        return "bad_url"
    if isinstance(parsed, str):
        return "private_address" if is_local_name(parsed) else None
    return None if is_public_address(parsed) else "private_address"
