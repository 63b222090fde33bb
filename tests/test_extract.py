"""extract: WARC in, Document rows out; boilerplate removed, filters counted, charsets honoured."""

import pyarrow.parquet as pq
from fastwarc.warc import WarcRecordType

from webtext.pipeline.config import ExtractConfig, to_dict
from webtext.pipeline.demoweb import _html, docstring_paragraphs
from webtext.pipeline.executor import Task
from webtext.pipeline.schemas import DOCS, stored
from webtext.stages import extract, pagetext
from webtext.stages import urls as U
from webtext.stages.http import Outcome, detect_charset
from webtext.stages.warcstore import WarcSegments

GERMAN = ("Die Stadtverwaltung hat am Montag neue Pläne für den Ausbau der Radwege vorgestellt. "
          "Nach Angaben des Bürgermeisters sollen bis zum Ende des kommenden Jahres mehr als zwanzig "
          "Kilometer neue Wege entstehen, die vor allem Schulkinder und Pendler schützen sollen. ") * 4


def _meta(url, score=12):
    return {"url_id": U.url_id(url), "url": url, "score": score, "num_submissions": 1,
            "first_seen": 1_700_000_000, "subreddits": ["test"], "title": "x"}


def _warc(path, pages, orphan=None):
    segs = WarcSegments(path.parent, "00000", "test-agent", 1 << 30, {})
    for url, body, ctype in pages:
        o = Outcome(final_url=url, status=200, body=body, headers=[("Content-Type", ctype)], reason="OK",
                    charset=detect_charset(body, ctype))      # as fetch records it
        segs.write(_meta(url), o)
    if orphan:   # a response with no metadata record beside it
        segs._append(segs._record(WarcRecordType.response, orphan, b"HTTP/1.1 200 OK\r\n\r\n<html></html>",
                                  "application/http; msgtype=response"))
    segs.close()
    assert path.exists()


def _run(tmp_path, pages, orphan=None, **cfg):
    warc, out = tmp_path / "warc-00000-000.warc.gz", tmp_path / "docs-00000.parquet"
    warc.unlink(missing_ok=True)
    _warc(warc, pages, orphan)
    stats = extract.extract_shard(Task("extract", "00000", extract.extract_shard, [warc], [out],
                                       {"extract": to_dict(ExtractConfig(**cfg))}))
    if stats.records_out == 0:          # no document: no file (and none left from a run before)
        assert not out.exists()
        return stats, {}
    t = pq.read_table(out)
    assert t.schema.equals(stored(DOCS))
    return stats, {r["url"]: r for r in t.to_pylist()}


def test_extract_filters_and_boilerplate(tmp_path):
    paras = docstring_paragraphs()[:5]
    html = "text/html; charset=utf-8"
    # one accented sentence in real prose (the same sentence thirty times would fail gopher_top_3gram)
    cafe = ("<html><body><article><p>The café served a naïve crème brûlée – every day.</p>"
            + "".join(f"<p>{p}</p>" for p in docstring_paragraphs()[5:9])
            + "</article></body></html>").encode("cp1252")
    pages = [
        ("http://a.example/article", _html("a.example", "Title", paras), html),
        ("http://a.example/short", _html("a.example", "Brief", ["Just a few words here."]), html),
        ("http://b.example/de", f"<html><body><article><p>{GERMAN}</p></article></body></html>".encode(), html),
        ("http://c.example/cp1252", cafe, "text/html; charset=windows-1252"),
        ("http://d.example/garbage", b"\xff\xfe\x00<<<>>>\x00" * 50, html),
    ]
    stats, docs = _run(tmp_path, pages, orphan="http://e.example/orphan")
    assert stats.records_in == 6
    assert dict(stats.dropped) == {"too_short": 1, "wrong_lang": 1, "extract_empty": 1, "no_metadata": 1}
    assert stats.records_out == 2 == len(docs)
    art = docs["http://a.example/article"]
    assert paras[0] in art["text"].replace("\n", " ")
    assert "All rights reserved" not in art["text"] and "Privacy policy" not in art["text"]
    assert art["lang"] == "en" and art["karma"] == 12 and art["doc_id"] == U.url_id("http://a.example/article")
    assert "café served a naïve crème brûlée – every day" in docs["http://c.example/cp1252"]["text"]
    # The German page is kept when German is allowed.
    stats_de, docs_de = _run(tmp_path, pages[2:3], langs=["de"])
    assert docs_de["http://b.example/de"]["lang"] == "de"


def test_language_prefilter_reads_long_paragraphs_only(tmp_path):
    """English main text in a German site's chrome (menus, footer, cookie notice: short
    elements) is extracted and kept; a page whose long paragraphs are German is skipped
    before extraction; a page with too little paragraph text is left to the full pipeline."""
    paras = docstring_paragraphs()[:5]
    chrome = "".join(f"<li><a href='/{i}'>{w}</a></li>" for i, w in enumerate(
        ["Startseite", "Nachrichten", "Über uns", "Kontakt", "Impressum", "Datenschutzerklärung"]))
    mixed = (f"<html lang='de'><body><nav><ul>{chrome}</ul></nav><article>"
             + "".join(f"<p>{p}</p>" for p in paras)
             + "</article><footer><span>Alle Rechte vorbehalten. Wir verwenden Cookies.</span></footer>"
             + "</body></html>").encode()
    german = ("<html><body><article>" + "".join(f"<p>{GERMAN}</p>" for _ in range(3))
              + "</article></body></html>").encode()
    table_only = ("<html><body><table>" + f"<tr><td>{GERMAN}</td></tr>" * 2 + "</table></body></html>").encode()
    pages = [("http://a.example/mixed", mixed, "text/html"), ("http://b.example/de", german, "text/html"),
             ("http://c.example/table", table_only, "text/html")]
    stats, docs = _run(tmp_path, pages)
    assert list(docs) == ["http://a.example/mixed"] and docs["http://a.example/mixed"]["lang"] == "en"
    assert dict(stats.dropped) == {"wrong_lang": 2}
    assert stats.info["wrong_lang_before_extraction"] == 1        # the table page was extracted first
    assert extract.paragraph_language(table_only) == (None, 0.0)
    lang, score = extract.paragraph_language(german)
    assert lang == "de" and score > 0.9
    assert extract.paragraph_language(mixed)[0] == "en"


def test_language_prefilter_skips_hidden_markup_and_is_linear():
    """German paragraphs inside a script, a template or a comment do not count, nor do
    English ones there; a paragraph ends where a block element would close it; hostile
    markup (stray "<", unclosed paragraphs, endless <p> openings) stays linear."""
    import time

    german_p = "".join(f"<p>{GERMAN}</p>" for _ in range(3))
    english = "".join(f"<p>{p}</p>" for p in docstring_paragraphs()[:4])
    hidden = (f"<html><head><script>var t = '{german_p}';</script><style>p {{}}</style></head><body>"
              f"<!-- {german_p} --><template>{german_p}</template><article>{english}</article></body></html>")
    assert extract.paragraph_language(hidden)[0] == "en"
    only_hidden = f"<html><body><script>document.write('{english}')</script><!-- {english} --></body></html>"
    assert extract.paragraph_language(only_hidden) == (None, 0.0)
    # An unclosed <p> ends at the next block: the German text in the <div> is not its.
    unclosed = f"<html><body><p>{docstring_paragraphs()[0]}<div>{GERMAN * 3}</div></body></html>"
    assert extract.paragraph_language(unclosed)[0] == "en"
    # Entities and inline tags inside a paragraph are text.
    inline = "<p>" + GERMAN.replace("Pläne", "Pl&auml;ne").replace("Radwege", "<b>Radwege</b>") + "</p>"
    assert extract.paragraph_language(inline)[0] == "de"
    for hostile in ("<p>" + "a < b " * 400_000, "<p>x" * 400_000, "<p " + "<" * 2_000_000,
                    "<script>" + "<p>" * 500_000, "<!--" + "<p>long " * 300_000):
        t0 = time.process_time()
        extract.paragraph_language(hostile)
        assert time.process_time() - t0 < 2.0, hostile[:20]


def test_hostile_charsets_do_not_break_the_shard(tmp_path):
    """A WARC whose records name charsets that no browser uses (utf-7, unicode_escape:
    they make lone surrogates of hostile bytes; idna, undefined: they raise) must not
    crash extract. Written by another crawler or an older webtext, so the metadata holds
    the label as it came. Those pages are decoded by sniffing instead, and the shard goes on."""
    english = "".join(f"<p>{p}</p>" for p in docstring_paragraphs()[:6])
    words = " ".join(f"word{i}" for i in range(40)) + " "      # "word " * 40 would fail gopher_top_2gram
    pages = {
        "http://a.example/utf7": ("utf-7", f"<html><body><article><p>+2AA- {words}</p>{english}</article></body></html>"),
        "http://b.example/escape": ("unicode_escape", "<html><body><article><p>\\ud800 " + words + "</p>"
                                                       + english + "</article></body></html>"),
        "http://c.example/idna": ("idna", f"<html><body><article>{english}</article></body></html>"),
        "http://d.example/undefined": ("undefined", f"<html><body><article>{english}</article></body></html>"),
    }
    warc, out = tmp_path / "warc-00000-000.warc.gz", tmp_path / "docs-00000.parquet"
    segs = WarcSegments(tmp_path, "00000", "test-agent", 1 << 30, {})
    for url, (label, html) in pages.items():
        segs.write(_meta(url), Outcome(final_url=url, status=200, body=html.encode(), reason="OK",
                                       headers=[("Content-Type", f"text/html; charset={label}")], charset=label))
    segs.close()
    stats = extract.extract_shard(Task("extract", "00000", extract.extract_shard, [warc], [out],
                                       {"extract": to_dict(ExtractConfig())}))
    docs = {r["url"]: r for r in pq.read_table(out).to_pylist()}
    assert stats.records_in == 4 and set(docs) == set(pages), dict(stats.dropped)
    for doc in docs.values():
        assert docstring_paragraphs()[2] in doc["text"].replace("\n", " ") and doc["lang"] == "en"
    assert extract.detect_language("English words here, and a lone \ud800 surrogate in them")[0] == "en"


def test_normalize_text_keeps_paragraphs():
    assert extract.normalize_text("  a   b \n\n\n c\u0301  d \n") == "a b\n\u0107 d"


def test_hanging_page_is_cut_off_and_the_shard_survives(tmp_path):
    """A 45 MB page keeps trafilatura busy for minutes; it costs one timeout, not the shard."""
    import time

    paras = docstring_paragraphs()[5:10]
    huge = ("<html><body>" + "".join(f"<div><p>paragraph {i} with some words in it</p><table><tr><td>c{i}</td>"
                                     "</tr></table></div>" for i in range(400000)) + "</body></html>").encode()
    html = "text/html; charset=utf-8"
    pages = [("http://slow.example/huge", huge, html),
             ("http://a.example/fine", _html("a.example", "Fine", paras), html)]
    t0 = time.monotonic()
    stats, docs = _run(tmp_path, pages, page_timeout_s=2.0, max_html_bytes=100 * 1024 * 1024)
    assert dict(stats.dropped) == {"extract_timeout": 1}
    assert list(docs) == ["http://a.example/fine"]          # the next page, in a fresh process
    assert time.monotonic() - t0 < 60


def test_extraction_process_death_is_an_error_and_processes_are_recycled():
    """A child killed mid-page (as the OOM killer would) costs that page, counted as an
    error, at once rather than after the timeout; the process is replaced every
    ``recycle_after`` pages."""
    import os
    import signal
    import threading
    import time

    from webtext.stages.isolate import Isolated

    page = _html("a.example", "Fine", docstring_paragraphs()[5:10])
    huge = ("<html><body>" + "".join(f"<div><p>paragraph {i} with some words in it</p><table><tr><td>c{i}</td>"
                                     "</tr></table></div>" for i in range(400000)) + "</body></html>")  # minutes
    with Isolated(timeout_s=60, recycle_after=2, settings=("trafilatura",)) as iso:
        first = iso(page, "http://a.example/1")
        pid = iso.proc.pid
        assert first[0] == "ok" and docstring_paragraphs()[5] in first[1].text.replace("\n", " ")
        assert iso(page, "http://a.example/2")[0] == "ok" and iso.proc.pid == pid
        assert iso(page, "http://a.example/3")[0] == "ok" and iso.proc.pid != pid   # recycled
        victim = iso.proc.pid
        threading.Timer(1.0, os.kill, (victim, signal.SIGKILL)).start()
        t0 = time.monotonic()
        status, message = iso(huge, "http://slow.example/huge")
        assert (status, message) == ("error", "the extraction process died")
        assert time.monotonic() - t0 < 30                  # not the 60 s timeout
        assert iso(page, "http://a.example/4")[0] == "ok" and iso.proc.pid != victim


def test_extraction_process_that_cannot_start_is_a_clear_error(tmp_path):
    """A script that calls webtext without a ``__main__`` guard makes every new process
    run the script again, which fails in the child. That is not the pages' fault: it
    raises a clear error at once, instead of counting every page as ``extract_error``
    (and then failing on shutdown with an unrelated AssertionError)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = tmp_path / "unguarded.py"
    script.write_text("from webtext.stages.isolate import Isolated\n"
                      "with Isolated(timeout_s=30, recycle_after=10, settings=('trafilatura',)) as iso:\n"
                      "    print(iso('<html><body><p>hello</p></body></html>', 'http://a.example/'))\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("webtext.stages.isolate.ExtractionProcessError: the extraction process exited (code 1) "
                           "before it was ready"), r.stderr[-2000:]
    assert "__main__" in last and "AssertionError" not in r.stderr
    assert "('ok'" not in r.stdout and "('error'" not in r.stdout

def test_newspaper_fallback_and_switch(tmp_path):
    """trafilatura treats <aside> as boilerplate and finds nothing; newspaper3k takes over."""
    body = "".join(f"<p>{p}</p>" for p in docstring_paragraphs()[12:18])
    pages = [("http://blog.example/aside", f"<html><body><aside>{body}</aside></body></html>".encode(),
              "text/html; charset=utf-8")]
    stats, docs = _run(tmp_path, pages)
    assert docs["http://blog.example/aside"]["extractor"] == "newspaper3k"
    assert docstring_paragraphs()[12] in docs["http://blog.example/aside"]["text"].replace("\n", " ")
    stats, docs = _run(tmp_path, pages, extractor="trafilatura")
    assert dict(stats.dropped) == {"extract_empty": 1}


def test_mojibake_repaired():
    assert extract.normalize_text("The cafÃ© served crÃ¨me brÃ»lÃ©e") == "The café served crème brûlée"
    assert extract.normalize_text("It\u00e2\u20ac\u2122s") == "It\u2019s"
    # Without the mojibake signature: ligatures and control characters fixed, NFC applied,
    # and everything else (curly quotes, CJK punctuation, ß) left alone.
    assert extract.normalize_text("\ufb02exible cafe\u0301\u0007 \u201cStra\u00dfe\u201d \u76ca\uff0c") == \
        "flexible caf\u00e9 \u201cStra\u00dfe\u201d \u76ca\uff0c"


def _decide(text, cfg, lang="en"):
    """decide's reason for one text, as extract would record it."""
    import pyarrow as pa

    from webtext.stages import decide

    table = pa.table({"doc_id": ["x"], "num_words": [len(text.split())], "lang": [lang], "lang_score": [1.0]})
    table = table.append_column("signals", decide.compute([text], {}, cfg.short_line_words))
    return decide.decide(table, cfg)[0].as_py()


def test_quality_filters():
    """short_lines and boilerplate_lines (stages.quality's shares) and the Gopher rules that
    the deprecated gopher switch named, now rules of stages.signals, on by default."""
    from webtext.pipeline.config import ExtractConfig
    from webtext.stages import quality

    cfg = ExtractConfig(min_words=0)
    prose = "\n".join(docstring_paragraphs()[20:24])
    assert _decide(prose, cfg) is None
    menu = "\n".join(["Home", "About us", "Contact", "Blog", prose.split("\n")[0]])
    assert quality.shares(menu, 4)[0] == 0.8 and _decide(menu, cfg) == "short_lines"
    boiler = "\n".join(["We use cookies to improve your experience on this site.",
                        "Subscribe to our newsletter for weekly updates and offers.",
                        "All rights reserved by the publisher of this fine website.", prose.split("\n")[0]])
    assert quality.shares(boiler, 4)[1] == 0.75 and _decide(boiler, cfg) == "boilerplate_lines"
    assert _decide(boiler, ExtractConfig(min_words=0, max_boilerplate_line_share=0.8)) is None
    assert _decide(boiler, ExtractConfig(min_words=0, rules={"boilerplate_lines": {"enabled": False}})) is None
    assert _decide(prose, ExtractConfig(min_words=0, gopher=True)) is None
    assert _decide("# # # tag #tag #more #hash words here now", cfg) == "gopher_symbol_ratio"
    lorem = "Lorem ipsum dolor sit amet consectetur adipiscing elit sed do"
    assert _decide(lorem, cfg) == "gopher_stopwords"
    assert _decide(lorem, ExtractConfig(min_words=0, langs=[]), lang="la") != "gopher_stopwords"   # English only
    assert _decide("a b c d e f g h i j k", cfg) == "gopher_mean_word_length"
    assert _decide("a b c d e f g h i j k", ExtractConfig(min_words=0, rules={
        "gopher_mean_word_length": {"enabled": False}})) == "gopher_stopwords"     # the next rule in order


def test_real_pages_language_and_latin1(tmp_path):
    """Real pages from ../shared: a German article (dropped by default, kept with langs=["de"])
    and an ISO-8859-1 page, checked against their annotated snippets."""
    import gzip

    from conftest import shared_path

    cache = shared_path("extraction", "trafilatura-eval", "tests", "cache")
    heise = gzip.decompress((cache / "heise.de.lithium.html.gz").read_bytes())
    latin1 = gzip.decompress((cache / "landwirt.com.sensortechnik.html.gz").read_bytes())
    pages = [("https://www.heise.de/newsticker/meldung/Lithium-aus-dem-Schredder-4451133.html", heise, "text/html"),
             ("https://www.landwirt.com/Precision-Farming-Moderne-Sensortechnik-im-Kuhstall,,4229,,Bericht.html",
              latin1, "text/html")]
    stats, docs = _run(tmp_path, pages)
    assert dict(stats.dropped) == {"wrong_lang": 2} and not docs
    # heise's long paragraphs are German, so the prefilter skips its extraction; the farm
    # page's text is not in <p> paragraphs, so it is extracted and dropped after.
    assert extract.paragraph_language(heise)[0] == "de"
    assert extract.paragraph_language(latin1) == (None, 0.0)
    assert stats.info["wrong_lang_before_extraction"] == 1
    stats, docs = _run(tmp_path, pages, lang_prefilter_score=2.0)      # prefilter off: extracted, then dropped
    assert dict(stats.dropped) == {"wrong_lang": 2} and "wrong_lang_before_extraction" not in stats.info
    stats, docs = _run(tmp_path, pages, langs=["de"])
    assert stats.records_out == 2
    heise_doc, farm_doc = docs[pages[0][0]], docs[pages[1][0]]
    assert heise_doc["lang"] == "de" and "Nur die Folie bleibt zurück" in heise_doc["text"]
    assert "Forum zum Thema:" not in heise_doc["text"]
    for snippet in ("b) Überwachung der somatischen Zellen", "Köllitsch (D)"):   # decoded from ISO-8859-1
        assert snippet in farm_doc["text"]
    assert "Anzeigentarife" not in farm_doc["text"]


def test_token_agreement():
    assert extract.token_agreement("a b c d", "a b c d") == 1.0
    assert extract.token_agreement("a b", "c d") == 0.0 == extract.token_agreement(None, "a")
    assert abs(extract.token_agreement("a b c d", "a b") - 2 * (1.0 * 0.5) / 1.5) < 1e-9


def test_both_extractors_record_agreement(tmp_path):
    """``both`` keeps auto's text and records how far newspaper3k agrees, per document and in the stats."""
    paras = docstring_paragraphs()[:5]
    aside = "".join(f"<p>{p}</p>" for p in docstring_paragraphs()[12:18])
    pages = [("http://a.example/article", _html("a.example", "Title", paras), "text/html; charset=utf-8"),
             ("http://blog.example/aside", f"<html><body><aside>{aside}</aside></body></html>".encode(),
              "text/html; charset=utf-8")]
    stats, docs = _run(tmp_path, pages, extractor="both")
    art, side = docs["http://a.example/article"], docs["http://blog.example/aside"]
    assert art["extractor"] == "trafilatura" and art["agreement"] > 0.8     # the same article body
    assert side["extractor"] == "newspaper3k" and side["agreement"] == 0.0   # trafilatura found nothing
    assert stats.info["agreement_pages"] == 2 and stats.info["agreement_under_0.5"] == 1
    _, auto = _run(tmp_path, pages)
    assert auto["http://a.example/article"]["text"] == art["text"]
    assert auto["http://a.example/article"]["agreement"] is None


def test_publication_date(tmp_path):
    paras = docstring_paragraphs()[:5]
    html = _html("a.example", "Dated", paras).replace(
        b"<title>", b'<meta property="article:published_time" content="2019-03-14T09:30:00+00:00"><title>')
    pages = [("http://a.example/dated", html, "text/html; charset=utf-8"),
             ("http://a.example/undated", _html("a.example", "Undated", paras), "text/html; charset=utf-8")]
    _, docs = _run(tmp_path, pages)
    assert docs["http://a.example/dated"]["published"] == "2019-03-14"
    assert docs["http://a.example/undated"]["published"] is None
    _, docs = _run(tmp_path, pages, dates=False)
    assert docs["http://a.example/dated"]["published"] is None


def test_short_trafilatura_text_falls_back_to_newspaper():
    """trafilatura keeps a one-line teaser and drops the story in <aside>: implausibly short
    against the visible text, so newspaper3k's much longer text is used; a real short page is not."""
    aside = "".join(f"<p>{p}</p>" for p in docstring_paragraphs()[12:18])
    teaser = "<p>Short teaser sentence that introduces the story below in a few words.</p>"
    html = f"<html><body><article>{teaser}</article><aside>{aside}</aside></body></html>"
    got = extract.extract_page(html, "http://x.example/a")
    assert got.extractor == "newspaper3k" and docstring_paragraphs()[12] in got.text.replace("\n", " ")
    assert extract.extract_page(html, "http://x.example/a", "trafilatura").extractor == "trafilatura"
    assert extract.extract_page(html, "http://x.example/a", fallback_share=0.01).extractor == "trafilatura"
    plain = f"<html><body><article>{teaser}</article></body></html>"
    assert extract.extract_page(plain, "http://x.example/b").extractor == "trafilatura"


def test_visible_chars_is_linear_and_skips_scripts():
    import subprocess
    import sys

    assert extract.visible_chars("<p>ab <b>cd</b></p><script>var x = '<p>zz</p>';</script><STYLE>p{}</STYLE>ef") == 6
    # Unterminated scripts: a backtracking regex (<script.*?</script>) would hang here.
    code = "from webtext.stages.extract import visible_chars; print(visible_chars('<script' * 200000 + '<p>x</p>'))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "0"


def test_trimmed_newspaper_matches_article_parse_on_real_pages():
    """``_newspaper`` runs only the steps of newspaper3k's Article.parse that make the text
    and title: on real pages they must come out the same as from the full parse."""
    import gzip

    from newspaper import Article

    from conftest import shared_path

    files = sorted(shared_path("extraction", "trafilatura-eval", "tests", "eval").glob("*.html.gz"))[:40:4]
    assert len(files) == 10
    for i, f in enumerate(files):
        html = gzip.decompress(f.read_bytes()).decode("utf-8", errors="replace")
        a = Article(f"http://x.example/{i}", language="en", fetch_images=False)
        a.download(input_html=html)
        a.parse()
        assert pagetext._newspaper(html, f"http://x.example/{i}") == ((a.text or None), (a.title or None)), f.name


def test_progress_counts_every_page_examined_and_the_total_comes_from_the_fetch_log(tmp_path):
    """extract_shard advances the progress count once per archived response (kept or
    dropped, with or without metadata); the task's expected total is the fetch log's count
    of archived rows (a non-null warc_file), read from the Parquet footer alone."""
    import pyarrow as pa

    from webtext.pipeline import progress
    from webtext.pipeline.schemas import FETCHLOG

    paras = docstring_paragraphs()[:5]
    pages = [(f"http://a.example/{i}", _html("a.example", f"T{i}", paras if i % 2 else ["Too short."]),
              "text/html; charset=utf-8") for i in range(5)]
    got = []
    progress.install(lambda key, n: got.append((key, n)))
    try:
        progress.begin("extract")
        stats, _ = _run(tmp_path, pages, orphan="http://e.example/orphan")
        progress.flush()
    finally:
        progress.install(None)
    assert stats.records_in == 6 and sum(n for _, n in got) == 6 and {k for k, _ in got} == {"extract"}
    rows = [{"url_id": str(i), "url": f"http://x.example/{i}", "bytes": 1, "elapsed_ms": 0, "tries": 1,
             "warc_file": None if i % 3 == 0 else "warc-00000-000.warc.gz"} for i in range(2500)]
    log = tmp_path / "fetchlog-00000.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=FETCHLOG), log, row_group_size=1000)
    assert extract.archived_pages(log) == sum(r["warc_file"] is not None for r in rows) == 1666


def test_fast_element_lookup_gives_the_same_extraction_on_real_pages():
    """The extraction process parses with lxml's C-level element class lookup: text, title,
    date and extractor must be those of lxml.html's own lookup. Run in a fresh process,
    since the lookup is set on trafilatura's shared parser."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import shared_path

    folder = shared_path("extraction", "trafilatura-eval", "tests", "eval")
    code = f"""
import gzip, sys
from pathlib import Path
from webtext.stages import pagetext
files = sorted(Path({str(folder)!r}).glob("*.html.gz"))[::25]
pages = [gzip.decompress(f.read_bytes()).decode("utf-8", errors="replace") for f in files]
before = [pagetext.extract_page(h, f"http://x.example/{{i}}", "auto", True) for i, h in enumerate(pages)]
pagetext.fast_element_lookup()
after = [pagetext.extract_page(h, f"http://x.example/{{i}}", "auto", True) for i, h in enumerate(pages)]
assert sum(1 for b in before if b.text) >= 20, len(before)
print(sum(a == b for a, b in zip(after, before)), len(before))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parent.parent)
    same, n = map(int, r.stdout.split())
    assert same == n, r.stderr[-2000:]
