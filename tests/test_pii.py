"""stages/pii.py: planted PII in real paragraphs is found and redacted and nothing else changes;
look-alikes (versions, dates, ISBNs, code) are left alone; pathological input stays linear."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest

from conftest import ROOT, shared_path
from webtext.pipeline.errors import ConfigError
from webtext.stages import pii

LOOKALIKES = [
    "Windows version 10.0.19041.1 shipped", "Python 3.11.7", "upgrade to v2.4.1.0 now", "release 1.2.3.4 is out",
    "build 6.1.7601.17514", "on 2024-03-15", "on 15.03.2024", "on 03/15/2024", "pi is 3.14159",
    "costs $1,234,567.89", "ISBN 978-3-16-148410-0", "ISBN 0-306-40615-2", '@app.route("/")\ndef index():',
    "x = 192.168 * 2", "addr = 0x7f000001", "id 550e8400-e29b-41d4-a716-446655440000",
    "commit 3f2a9c1e8b7d6a5f4e3c2b1a0f9e8d7c6b5a4f3e", "at 12:30:45 sharp", "37.7749, -122.4194",
    "std::vector<int> v;", "icon@2x.png", "git clone git@github.com:org/repo.git", "a@b", "root@localhost",
    "ratio 16:9", "2,000,000 people in 2019-2020", "scores 0.5 1.5 2.5 3.5", "call 911",
    # not public: private, loopback, link-local, documentation, shared, reserved, multicast, netmask
    "10.0.0.1 192.168.1.1 172.16.0.5 127.0.0.1 169.254.1.1 192.0.2.1 198.51.100.7 203.0.113.5",
    "100.64.0.1 240.0.0.1 224.0.0.1 255.255.255.0 0.0.0.0", "fe80::1 ::1 2001:db8::1 :: ff02::1 ::ffff:10.0.0.1",
    "the years 1999 2000 2001 2002", "page 12 of 345", "item 0123456789",
]
PLANTS = [
    ("jane.doe@example.com", "pii_email"), ("press+news@mail.example.co.uk", "pii_email"),
    ("8.8.8.8", "pii_ip"), ("2606:4700:4700::1111", "pii_ip"), ("::ffff:8.8.4.4", "pii_ip"),
    ("(415) 555-0132", "pii_phone"), ("+44 20 7946 0958", "pii_phone"), ("020 7946 0958", "pii_phone"),
    ("415-555-0132", "pii_phone"), ("+49 30 1234567", "pii_phone"), ("+1 (415) 555-0132", "pii_phone"),
    ("1-800-555-0199", "pii_phone"), ("+14155550132", "pii_phone"),
]
PAGES = ["eval/californiaglobe.com.amazon.html.gz", "eval/thestkittsnevisobserver.com-bvi.html.gz",
         "cache/salon.com.emissions.html.gz"]


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalikes_are_not_pii(text):
    assert pii.scan(text, "redact") == (text, {"pii_email": 0, "pii_ip": 0, "pii_phone": 0})


@pytest.mark.parametrize("item,kind", PLANTS)
def test_each_form_is_found(item, kind):
    new, counts = pii.scan(f"Contact: {item}. Thanks", "redact")
    assert new == f"Contact: {pii.PLACEHOLDER[kind]}. Thanks"
    assert counts[kind] == 1 and sum(counts.values()) == 1


def real_paragraphs() -> list[str]:
    import trafilatura

    tests = shared_path("extraction", "trafilatura-eval", "tests")
    paras = []
    for name in PAGES:
        html = gzip.decompress((tests / name).read_bytes()).decode("utf-8", "replace")
        paras += [p for p in trafilatura.extract(html, fast=True).split("\n") if len(p) > 200]
    return paras


def test_planted_pii_in_real_paragraphs():
    paras = real_paragraphs()
    assert len(paras) >= len(PLANTS)
    assert all(pii.find(p) == [] for p in paras)       # the articles themselves hold none
    planted, expected = [], []
    for i, (item, kind) in enumerate(PLANTS):            # plant after the first sentence's full stop
        p = paras[i]
        cut = p.index(". ") + 2 if ". " in p else len(p) // 2
        planted.append(f"{p[:cut]}Reach us at {item} today. {p[cut:]}")
        expected.append(f"{p[:cut]}Reach us at {pii.PLACEHOLDER[kind]} today. {p[cut:]}")
    text = "\n".join(planted + paras[len(PLANTS):])
    new, counts = pii.scan(text, "redact")
    assert new == "\n".join(expected + paras[len(PLANTS):])
    assert counts == {k: sum(1 for _, kind in PLANTS if kind == k) for k in pii.PLACEHOLDER}
    assert pii.scan(text, "record") == (text, counts)
    assert pii.scan(text, "off") == (text, {})


def test_modes_and_batches():
    text = "mail a.b@example.org or call 415-555-0132, host 1.1.1.1"
    assert pii.scan(text, "redact")[0] == "mail <EMAIL> or call <PHONE_NUMBER>, host <IP_ADDRESS>"
    assert pii.scan(text, "record") == (text, {"pii_email": 1, "pii_ip": 1, "pii_phone": 1})
    texts, cols = pii.scan_many([text, "nothing here"], "redact")
    assert texts[1] == "nothing here" and cols == {"pii_email": [1, 0], "pii_ip": [1, 0], "pii_phone": [1, 0]}
    assert pii.scan_many([text], "off") == ([text], {})
    with pytest.raises(ConfigError, match="unknown PII mode 'mask'"):
        pii.scan(text, "mask")


PATHOLOGICAL = """
import time
from webtext.stages import pii
n = 200_000
cases = ["a" * n + "@", "a@" * (n // 2), "a." * (n // 2) + "@x", "a@" + "a-" * (n // 2) + ".c",
         "a@" + "a." * (n // 2), "1." * (n // 2), "1" * n, ":" * n, "a:" * (n // 2), "1::" * (n // 3),
         "+1 " * (n // 3), "+1 (1)" * (n // 6), "1-" * (n // 2), "0 " * (n // 2), "01 1234 " * (n // 8),
         "123 " * (n // 4), "+" + "1" * n, "ffff:" * (n // 5), "x@" + "9" * n + ".com"]
start = time.perf_counter()
for text in cases:
    assert len(text) >= n - 10
    pii.scan(text, "redact")
print(time.perf_counter() - start)
"""


def test_pathological_input_is_linear():
    """Each 200,000-character case (runs of the characters the patterns repeat over) must
    finish far under a second; catastrophic backtracking would take minutes."""
    out = subprocess.run([sys.executable, "-c", PATHOLOGICAL], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 19 * 2.0           # 19 cases, each < 2 s even on a loaded runner
