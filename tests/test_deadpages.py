"""Soft 404s and parked domains (stages.deadpages): URL rules both ways, one realistic
parking page per supported service, real pages that must not be flagged, hostile bodies."""

from __future__ import annotations

import gzip
import json
import time

import pytest
from conftest import shared_path

from webtext.stages.deadpages import SCAN_BYTES, is_parked, is_soft_404, parking_signal

SOFT_404 = [
    ("http://example.com/2019/05/story.html", "https://example.com/", 200),
    ("https://www.example.com/news/a-story", "https://example.com/", 200),
    ("http://news.example.co.uk/politics/1234", "https://www.example.co.uk/", 200),
    ("https://example.com/a/b/c", "https://example.com/index.php", 200),
    ("https://example.com/article?id=42", "https://example.com/", 200),
    ("https://example.com/?p=123", "https://example.com/default.aspx", 200),
    ("https://example.com/story", "https://example.com/home", 200),
    ("https://example.com/de/artikel/x", "https://example.com/de/", 200),
    ("https://example.com/story", "https://example.com/?utm_source=redirect", 200),
    ("https://example.com/story", "https://example.com/404.html", 200),
    ("https://example.com/story", "https://example.com/not-found", 200),
    ("https://example.com/story", "https://example.com/errors/404", 200),
    ("https://example.com/story", "https://example.com/en/page-not-found/", 200),
    ("https://example.com/story", "https://example.com/search?error=404", 200),
    ("https://example.com/story", "https://example.com/Error.aspx?aspxerrorpath=/story", 200),
    ("https://example.com/story", "https://example.com/", None),
]
NOT_SOFT_404 = [
    ("http://example.com/", "https://www.example.com/", 200),                  # root as root
    ("http://example.com/index.html", "https://example.com/", 200),
    ("https://example.com/?utm_source=x", "https://example.com/", 200),
    ("https://example.com/2019/a", "https://example.com/news/a", 200),         # moved article
    ("https://example.com/2019/a", "https://example.com/news/", 200),          # up to its section
    ("https://example.com/a", "https://example.com/a", 200),                   # no redirect
    ("https://bit.ly/3abc", "https://example.com/", 200),                      # shortener to a home page
    ("https://old-name.com/story", "https://new-name.com/", 200),              # another site
    ("https://example.com/story", "https://example.com/", 404),                # dead by status
    ("https://example.com/story", "https://example.com/", 503),
    ("https://example.com/story", "https://example.com/#/story", 200),         # client route
    ("https://example.com/story", "https://example.com/?page=story", 200),
    ("https://example.com/errors-and-omissions", "https://example.com/errors-and-omissions/", 200),
    ("not a url", "https://example.com/", 200),
    ("https://[::1", "https://example.com/", 200),
]


@pytest.mark.parametrize("requested, final, status", SOFT_404)
def test_soft_404(requested, final, status):
    assert is_soft_404(requested, final, status)


@pytest.mark.parametrize("requested, final, status", NOT_SOFT_404)
def test_not_soft_404(requested, final, status):
    assert not is_soft_404(requested, final, status)


# Modelled on the markup of each service's pages (see the module docstring's sources).
GODADDY_STUB = b'<html><head><script>window.onload=function(){window.location.href="/lander"}</script></head></html>'
PARKED = {
    "godaddy": b"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>example.com</title>
<script>window.LANDER_SYSTEM="PW"</script>
<script src="https://img1.wsimg.com/parking-lander/static/js/main.2de80224.chunk.js"></script>
</head><body><div id="root"></div><script>window._trfd=[];window._trfd.push({ap:"parking"})</script></body></html>""",
    "lander_redirect": GODADDY_STUB,
    "sedo": b"""<!DOCTYPE html><html><head><title>example.com</title>
<script>var dto = {sedoParkingUrl: "https://sedo.com/search/details/?partnerid=324561&domain=example.com"};
window.park = {sedoParkingUrl:dto.sedoParkingUrl};</script></head>
<body><div class="header">This domain may be for sale!</div><div id="ads"></div>
<div class="footer">FOOTER_DOMAIN_PARKING</div></body></html>""",
    "adblock_sitekey": b"""<!DOCTYPE html><html lang="en" data-adblockkey="MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBANDrp2lz7AOmADaN8tA50LsWcjLFyQFcb/P2Txc58oYOeILb3vBw7J6f4pamkAQVSQuqYsKx3YzdUHCvbVZvFUsCAwEAAQ==_M6heeSY2n3p1IRHqmcW8yB2qbR0zbWBX5ARzD1nwZjcC2jfr8Lb1r5jlnE9HVhc4Bb5v1eNvv6tPhoTyYMYWIw==">
<head><title>example.com</title></head><body><div id="target"></div>
<script src="/js/parking.2.98.2.js"></script></body></html>""",
    "bodis": b"""<html><head><title>example.net</title>
<script type="text/javascript" src="//www.bodis.com/assets/js/lander.js?v=3"></script></head>
<body><div id="container"><h1>example.net</h1><div id="ads"></div></div></body></html>""",
    "parkingcrew": b"""<html><head><title>example.org</title>
<script src="https://www.parkingcrew.net/js/parking.js"></script></head><body><div id="ads"></div></body></html>""",
    "above": b"""<html><head><title>example.info</title></head><body>
<iframe src="https://park.above.com/parking.php?domain=example.info" width="100%" height="100%" frameborder="0"></iframe>
</body></html>""",
    "dan": b"""<html><head><title>example.io is for sale | Dan.com</title></head>
<body><h1>The domain name example.io is for sale</h1><p>There are millions of other domains
available on DAN.COM. You can probably find the one that fits you best!</p></body></html>""",
    "afternic": b"""<html><head><meta http-equiv="refresh" content="0; url=https://www.afternic.com/forsale/example.co?traffic_id=daslnc"></head>
<body></body></html>""",
    "hugedomains": b"""<html><head><title>example.biz</title>
<script>window.location.replace("https://www.hugedomains.com/domain_profile.cfm?d=example.biz");</script>
</head><body>Redirecting...</body></html>""",
    "namecheap": b"""<html><head><title>example.xyz</title>
<script src="https://parkingpage.namecheap.com/js/park.js"></script></head><body><div id="parking"></div></body></html>""",
    "uniregistry": b"""<html><head><title>example.link</title></head>
<frameset rows="100%,*" border="0"><frame src="https://uniregistry.com/buy/example.link" frameborder="0"></frameset></html>""",
    "epik": b"""<html><head><title>example.us - Domain For Sale</title></head><body>
<h2>example.us</h2><p>Why purchase this domain with Epik?</p><ul><li>Secure transfer</li></ul></body></html>""",
    "adsense_for_domains": b"""<html><head><title>example.cc</title>
<script type="text/javascript" src="https://www.google.com/adsense/domains/caf.js"></script></head>
<body><div id="relatedsearches1"></div></body></html>""",
    "parking_disclaimer": b"""<html><head><title>example.tv</title></head><body><div id="ads"></div>
<p>The Sponsored Listings displayed above are served automatically by a third party. Neither the service
provider nor the domain owner maintain any relationship with the advertisers.</p></body></html>""",
    "parked_title": b"""<html><head><title>example.shop is for sale</title></head><body>
<p>Contact us for the price.</p></body></html>""",
    "parked_text": b"""<html><head><title>Welcome</title></head><body>
<h1>Welcome to example.dev</h1><p>Buy this domain today. Inquire now.</p></body></html>""",
}


@pytest.mark.parametrize("signal", sorted(PARKED))
def test_parking_page_of_each_service(signal):
    assert parking_signal(PARKED[signal], "http://example.com/old/article") == signal


def test_frameset_framing_a_parking_host_is_parked():
    # a registrar's holding page: a frameset whose second frame is the parking feed
    page = (b'<html><head><title>example.ie is currently registered.</title></head><frameset rows="45, *">'
            b'<frame src="http://www.registrar.example/holding_page.php" scrolling="no">'
            b'<frame src="http://www.sedoparking.com/search/registrar.php?registrar=reg&domain=example.ie">'
            b"</frameset></html>")
    assert parking_signal(page, "http://example.ie/") == "sedo"


@pytest.mark.parametrize("final_url, signal", [
    ("https://sedo.com/search/details/?partnerid=1&domain=example.com", "sedo"),
    ("https://dan.com/buy-domain/example.com?redirected=true", "dan"),
    ("https://www.afternic.com/forsale/example.com", "afternic"),
    ("https://www.hugedomains.com/domain_profile.cfm?d=example.com", "hugedomains"),
    ("https://www.godaddy.com/forsale/example.com", "godaddy"),
    ("http://ww1.example.com/", "lander_redirect"),
    ("http://example.com/lander", "lander_redirect"),
])
def test_final_url_on_a_lander(final_url, signal):
    assert parking_signal(b"<html><body></body></html>", final_url) == signal


def test_adblock_key_header():
    assert parking_signal(b"<html></html>", "http://example.com/", [("X-Adblock-Key", "MFww==_x")]) == "adblock_sitekey"
    assert parking_signal(b"<html></html>", "http://example.com/", {"Content-Type": "text/html"}) is None


def test_links_and_urls_that_only_look_like_parking():
    # an <a href> to a marketplace is a citation; jordan.com is not dan.com; godaddy.com's
    # own pages and GoDaddy-built sites (wsimg.com assets) are not landers
    page = (b'<html><body><p>Read <a href="https://sedo.com/us/park-domains/">Sedo</a>.</p>'
            b'<img src="https://img1.wsimg.com/isteam/ip/abc/logo.png"><script src="https://jordan.com/x.js"></script>'
            b"</body></html>")
    assert parking_signal(page, "https://www.godaddy.com/blog/parked-domains") is None
    assert parking_signal(page, "https://www.www2.example.com/") is None


def test_article_that_discusses_domain_sales_is_not_parked():
    para = (b"<p>When the startup folded, its founders let the name lapse. Within a week the page read "
            b"&ldquo;This domain may be for sale&rdquo; and showed a grid of ads. Brokers say a sign that "
            b"says buy this domain is the most common thing a visitor of a dead link sees today; "
            b"parking services such as Sedo and Bodis earn money on every click on such a parked page.</p>\n")
    page = (b"<html><head><title>Why your old links now say 'domain for sale'</title></head><body><article>"
            b"<h1>Why your old links now say the domain is for sale</h1>" + para * 12 + b"</article></body></html>")
    assert parking_signal(page, "https://news.example.com/2024/domain-sales") is None
    # the same words on a thin page are a parking page
    assert parking_signal(b"<html><body>" + para + b"</body></html>", "http://example.com/") == "parked_text"


def test_real_pages_are_not_flagged():
    """The evaluation pages of trafilatura: hundreds of real news and blog pages, none parked."""
    root = shared_path("extraction", "trafilatura-eval", "tests")
    urls = {e["file"]: url for url, e in json.loads((root / "evaldata.json").read_text()).items()}
    files = sorted(root.glob("*/*.html.gz"))
    assert len(files) > 900
    flagged = {}
    for f in files:
        url = urls.get(f.name.removesuffix(".gz"), f"https://{f.name}/")
        if sig := parking_signal(gzip.decompress(f.read_bytes()), url):
            flagged[f.name] = sig
    assert flagged == {}


@pytest.mark.parametrize("body", [
    b"<" * 10_000_000,
    b"<frameset><frame src=" * 500_000,
    b"<html " * 2_000_000,
    b"this domain " * 1_000_000,
    b"<title>" + b"a" * 10_000_000,
    b"//" * 5_000_000,
])
def test_hostile_bodies_finish_fast(body):
    start = time.perf_counter()
    parking_signal(body, "http://example.com/")
    assert time.perf_counter() - start < 0.5


def test_only_the_prefix_is_read():
    late = b"<html><body>" + b" " * SCAN_BYTES + b'<script src="https://www.bodis.com/x.js"></script></body></html>'
    assert parking_signal(late, "http://example.com/") is None
    assert is_parked(PARKED["bodis"], "http://example.com/")
