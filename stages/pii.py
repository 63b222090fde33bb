"""Personal data in extracted text: e-mail addresses, public IP addresses and phone numbers.

In:  a document's text and a mode. Out: ``scan(text, mode) -> (text, counts)``.

- ``redact``: each found item is replaced by a fixed placeholder (``<EMAIL>``,
  ``<IP_ADDRESS>``, ``<PHONE_NUMBER>``): the same for every document, so the placeholders
  become ordinary tokens and documents stay comparable for dedup. Numbered placeholders
  (``<EMAIL_1>``) would keep "the same address twice" but leak nothing useful to a language
  model and make identical pages differ.
- ``record``: the text is returned unchanged; only the counts.
- ``off``: nothing is looked for; the counts are empty ({}), not zeros.

Counts are ``{"pii_email": n, "pii_ip": n, "pii_phone": n}``, columns for the signals table.

A pre-training corpus suffers more from false positives (version numbers, dates, ISBNs, code
turned into placeholders) than from a missed address, so the patterns are narrow:

- e-mail: ``local@domain.tld`` with a letters-only top-level domain of 2-24 characters, not
  an image name like ``icon@2x.png``, not preceded by a word character (decorators such as
  ``@app.route`` have no local part), not an SSH remote (``git@github.com:org/repo``).
- IP: dotted quads and IPv6 candidates validated by ``ipaddress``; an address counts only
  when it is global (not private, loopback, link-local, documentation, shared, reserved,
  multicast or unspecified; an IPv4-mapped IPv6 address is judged by its IPv4 address). A
  dotted quad after "version", "v", "build", "release" and the like is a version number.
- phone: ``+`` and a 1-3 digit country code, then groups each opened by a space, hyphen, dot
  or parenthesis (8-15 digits in all, E.164's limit); North American ``(415) 555-0132``,
  ``415-555-0132``, ``1-800-555-0199``; national forms with a trunk ``0`` and at least one
  separator, ``020 7946 0958``, ``030 1234567`` (10-11 digits). Bare digit runs are never
  phone numbers.

Every pattern is linear-time: each repetition opens with a separator, so a digit run has one
way to split, and a cheap test skips a pattern when its anchor character ("@", "." or ":",
a digit) is absent.
"""

from __future__ import annotations

import ipaddress
import re

from webtext.pipeline.errors import ConfigError

MODES = ("redact", "record", "off")
PLACEHOLDER = {"pii_email": "<EMAIL>", "pii_ip": "<IP_ADDRESS>", "pii_phone": "<PHONE_NUMBER>"}

_FILE_EXT = frozenset("png jpg jpeg gif svg webp bmp ico tif tiff avif css js json html htm php pdf txt xml".split())
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}([A-Za-z]{2,24}))"
    r"(?![\w-]|\.[A-Za-z0-9]|:[\w/~])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\w)")
_VERSION_BEFORE = re.compile(
    r"(?i)(?:\bversion|\bver\.?|\bv\.?|\bbuild|\brelease|\brelease[ds]?|\bfirmware|\bupdate|\bkb|\bsp|\bpatch"
    r"|\bpython|\bjava|\bnode(?:\.?js)?|\bchrome|\bfirefox|\bwindows|\bandroid|\bios|\bmacos|\bno\.?|#)\s*$")
_DIGITS3 = re.compile(r"\d{3}")
_SEP = r"[ .\-\u00a0]"
_PHONE = re.compile(
    # international: +CC, then groups each opened by a separator or a parenthesis
    rf"(?<![\w+])\+\d{{1,3}}(?:{_SEP}?\(\d{{1,5}}\)|{_SEP}\d{{1,8}}){{1,6}}(?!\w|[.,\-]\d)"
    # compact E.164
    r"|(?<![\w+])\+\d{8,15}(?!\w|[.,\-]\d)"
    # North American: (415) 555-0132, 415-555-0132, 415.555.0132, 1-800-555-0199
    rf"|(?<![\w+.\-/])(?:1{_SEP})?(?:\(\d{{3}}\){_SEP}?|\d{{3}}[\-.\u00a0 ])\d{{3}}[\-.\u00a0 ]\d{{4}}(?!\w|[.,\-/]\d)"
    # national with a trunk 0: 020 7946 0958, 030 1234567, 01632 960123
    r"|(?<![\w+.\-/])0\d{1,4}[ \-\u00a0]\d{3,8}(?:[ \-\u00a0]\d{3,4})?(?!\w|[.,\-/:]\d)")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"unknown PII mode {mode!r}", f"use one of {', '.join(MODES)}")
    return mode


def find(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every item found, in text order, without overlaps."""
    spans: list[tuple[int, int, str]] = []
    if "@" in text:
        for m in _EMAIL.finditer(text):
            if m.group(2).lower() not in _FILE_EXT:
                spans.append((m.start(), m.end(), "pii_email"))
    if "." in text:
        for m in _IPV4.finditer(text):
            if _public(m.group()) and not _VERSION_BEFORE.search(text, max(0, m.start() - 24), m.start()):
                spans.append((m.start(), m.end(), "pii_ip"))
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            if _public(m.group()):
                spans.append((m.start(), m.end(), "pii_ip"))
    if "+" in text or _DIGITS3.search(text):
        for m in _PHONE.finditer(text):
            if _phone_ok(m.group()):
                spans.append((m.start(), m.end(), "pii_phone"))
    spans.sort()
    out: list[tuple[int, int, str]] = []
    for span in spans:          # the earliest start wins; e-mail before IP before phone on ties
        if not out or span[0] >= out[-1][1]:
            out.append(span)
    return out


def scan(text: str, mode: str = "redact") -> tuple[str, dict[str, int]]:
    """(text, counts): the text with each item replaced in ``redact`` mode, unchanged in
    ``record``; counts per kind (empty in ``off``)."""
    if check_mode(mode) == "off":
        return text, {}
    spans = find(text)
    counts = dict.fromkeys(PLACEHOLDER, 0)
    for _, _, kind in spans:
        counts[kind] += 1
    if mode == "record" or not spans:
        return text, counts
    parts, pos = [], 0
    for start, end, kind in spans:
        parts += [text[pos:start], PLACEHOLDER[kind]]
        pos = end
    parts.append(text[pos:])
    return "".join(parts), counts


def scan_many(texts: list[str], mode: str = "redact") -> tuple[list[str], dict[str, list[int]]]:
    """``scan`` over a batch: (texts, {kind: counts per text}) for columns of the signals
    table; in ``off`` mode the texts come back as they are and the columns are empty ({})."""
    if check_mode(mode) == "off":
        return list(texts), {}
    out, cols = [], {kind: [] for kind in PLACEHOLDER}
    for text in texts:
        new, counts = scan(text, mode)
        out.append(new)
        for kind in cols:
            cols[kind].append(counts[kind])
    return out, cols


def _public(candidate: str) -> bool:
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _phone_ok(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if candidate.startswith("+"):
        return 8 <= digits <= 15
    if candidate.startswith("0"):
        return 10 <= digits <= 11
    return digits in (10, 11)
