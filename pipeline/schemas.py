"""One pyarrow schema per work-directory folder: the contracts between stages.

Every file carries ``webtext.schema`` (the folder's name) and ``webtext.schema_version``
in its Arrow metadata, so a reader can tell what it holds. Change a schema only with a
version bump. The "Folders and schemas" section of docs/folders.md documents these fields.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "6"   # 2: fetchlog gained fetched_at, etag and last_modified; 3: fetchlog gained wait_ms,
#                        submissions gained raw_url, urls gained fetch_url; 4: documents gained source and
#                        captured_at, fetchlog gained source, captured_at and archive; 5: every time column
#                        (first_seen, last_seen, created_utc, fetched_at, captured_at) is timestamp[s, UTC],
#                        not int64 unix seconds, and each stage's bookkeeping moved into <stage>/_meta/
#                        (pipeline.layout; pipeline.layout.migrate moves an older work directory's); 6:
#                        documents gained the ``signals`` struct (the filters' inputs, stages.decide), and
#                        docs/rejected/ holds the pages extract rejected (REJECTED). dedup/ and clean/ keep
#                        the version-5 document fields. Older docs shards lack signals: ``webtext filter``
#                        asks for extract to run again. Also in 6: fetchlog gained ai_robots,
#                        tdmrep_reserved and tdmrep_policy (AI opt-outs at fetch time; null in older logs).


def _list(t: pa.DataType) -> pa.ListType:
    """A list type as Parquet round-trips it (child field named "element")."""
    return pa.list_(pa.field("element", t))


# Every time column: a UTC time to the second. Parquet has no seconds unit: pyarrow stores it as
# TIMESTAMP(MILLIS, UTC) and reads it back as timestamp[ms, tz=UTC] (whole seconds), so code that
# wants unix seconds goes through ``unix_seconds``. Files written before version 5 hold int64
# unix seconds there; ``upgrade_times`` reads them as this type.
UTC_S = pa.timestamp("s", tz="UTC")
TIME_FIELDS = ("first_seen", "last_seen", "created_utc", "fetched_at", "captured_at")


def upgrade_times(table: pa.Table | pa.RecordBatch):
    """``table`` with its pre-version-5 int64 time columns (``TIME_FIELDS``) cast to ``UTC_S``."""
    for i, f in enumerate(table.schema):
        if f.name in TIME_FIELDS and pa.types.is_integer(f.type):
            table = table.set_column(i, pa.field(f.name, UTC_S, f.nullable), table.column(i).cast(UTC_S))
    return table


def stored(schema: pa.Schema) -> pa.Schema:
    """``schema`` as pyarrow reads it back from a Parquet file: Parquet has no seconds unit,
    so its time columns come back as timestamp[ms, tz=UTC] (the same instants)."""
    ms = pa.timestamp("ms", tz="UTC")
    return pa.schema([f.with_type(ms) if f.type == UTC_S else f for f in schema], metadata=schema.metadata)


def unix_seconds(table: pa.Table | pa.RecordBatch):
    """``table`` with its time columns as int64 seconds since the epoch, whatever the unit
    they were read in, for code that does arithmetic on them in Python (archive lookups,
    WARC metadata)."""
    for i, f in enumerate(table.schema):
        if f.name in TIME_FIELDS and pa.types.is_timestamp(f.type):
            table = table.set_column(i, pa.field(f.name, pa.int64(), f.nullable), seconds(table.column(i)))
    return table


def seconds(times: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A timestamp column (any unit) as int64 unix seconds."""
    return times.cast(UTC_S).cast(pa.int64())


def _schema(name: str, fields: list[pa.Field]) -> pa.Schema:
    meta = {"webtext.schema": name, "webtext.schema_version": SCHEMA_VERSION}
    return pa.schema(fields, metadata=meta)


# urls/: one row per normalized URL, aggregated over every submission that linked it.
URLS = _schema("urls", [
    pa.field("url_id", pa.string(), nullable=False),        # xxh3_64 hex of the normalized url
    pa.field("url", pa.string(), nullable=False),           # normalized url
    pa.field("domain", pa.string(), nullable=False),        # host, lowercase, no port
    pa.field("registered_domain", pa.string(), nullable=False),  # e.g. bbc.co.uk (public suffix list)
    pa.field("score", pa.int64(), nullable=False),          # aggregated karma (sum or max)
    pa.field("num_submissions", pa.int32(), nullable=False),
    pa.field("first_seen", UTC_S, nullable=False),          # earliest created_utc
    pa.field("last_seen", UTC_S, nullable=False),           # latest created_utc
    pa.field("subreddits", _list(pa.string()), nullable=False),
    pa.field("submission_ids", _list(pa.string()), nullable=False),
    pa.field("title", pa.string()),                         # title of the earliest submission
    pa.field("harvest_version", pa.int32(), nullable=False),  # harvest that first saw the URL
    # What fetch requests: the URL's most-submitted raw form (submissions' raw_url: query as
    # submitted), or url when none is known. Frontier files planned before v3 lack it.
    pa.field("fetch_url", pa.string(), nullable=False),
])

# urls/_meta/parts/: one row per kept submission (harvest's map output, before aggregation).
SUBMISSIONS = _schema("submissions", [
    pa.field("url", pa.string(), nullable=False),
    pa.field("domain", pa.string(), nullable=False),
    pa.field("score", pa.int64(), nullable=False),
    pa.field("created_utc", UTC_S, nullable=False),
    pa.field("subreddit", pa.string(), nullable=False),
    pa.field("id", pa.string(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("url_hash", pa.uint64(), nullable=False),      # xxh3_64 of url: url_id as an integer
    # The URL as submitted, for fetching: fragment and tracking parameters removed, scheme and
    # host lowercased, everything else (parameter order, empty parameters, path case) kept.
    # Null in parts written before it existed.
    pa.field("raw_url", pa.string()),
])

# warc/fetchlog-*.parquet: one row per URL the crawler tried.
FETCHLOG = _schema("fetchlog", [
    pa.field("url_id", pa.string(), nullable=False),
    pa.field("url", pa.string(), nullable=False),
    pa.field("final_url", pa.string()),                     # after redirects
    pa.field("status", pa.int32()),                         # last HTTP status, null if none
    pa.field("error", pa.string()),                         # drop reason, null when archived
    pa.field("bytes", pa.int64(), nullable=False),          # decoded body bytes
    pa.field("content_type", pa.string()),
    pa.field("charset", pa.string()),                       # detected: header, meta tag or sniffed
    pa.field("elapsed_ms", pa.int32(), nullable=False),     # sending to end of body, over tries and hops
    pa.field("tries", pa.int32(), nullable=False),
    pa.field("warc_file", pa.string()),                     # file name inside warc/
    pa.field("warc_offset", pa.int64()),                    # offset of the response record
    pa.field("fetched_at", UTC_S),                          # time of the outcome (null in version-1 logs)
    pa.field("etag", pa.string()),                          # validators of the archived response, for
    pa.field("last_modified", pa.string()),                 # --refetch-after's conditional GET
    pa.field("wait_ms", pa.int32()),                        # waits: politeness, robots.txt, retries (v3+)
    # Dead-link recovery (v4+; null in older logs): where the archived page came from (live |
    # commoncrawl | wayback; null when nothing archived), its capture time (null for a live
    # page: its time is fetched_at) and the archive lookup (recovered | miss | error; null: not looked up).
    pa.field("source", pa.string()),
    pa.field("captured_at", UTC_S),
    pa.field("archive", pa.string()),
    # AI opt-outs known at fetch time (v6+; null in older logs, and for pages not fetched live):
    # the AI crawlers robots.txt disallows for final_url (null: robots.txt ignored or unavailable),
    # and the rule of the host's /.well-known/tdmrep.json for it (null: no file or no rule).
    pa.field("ai_robots", _list(pa.string())),
    pa.field("tdmrep_reserved", pa.bool_()),
    pa.field("tdmrep_policy", pa.string()),
])

# docs/, dedup/, clean/: Document rows. Later stages keep the schema and drop rows.
_DOC_FIELDS = [
    pa.field("doc_id", pa.string(), nullable=False),        # = url_id of the source URL
    pa.field("url", pa.string(), nullable=False),
    pa.field("final_url", pa.string(), nullable=False),
    pa.field("domain", pa.string(), nullable=False),        # host of final_url
    pa.field("title", pa.string()),
    pa.field("text", pa.string(), nullable=False),          # main text, paragraphs split by \n
    pa.field("lang", pa.string()),                          # ISO 639-1, null if unknown
    pa.field("lang_score", pa.float32()),
    pa.field("num_words", pa.int32(), nullable=False),
    pa.field("extractor", pa.string(), nullable=False),     # trafilatura | newspaper3k
    pa.field("published", pa.string()),                     # publication date YYYY-MM-DD (htmldate), if found
    pa.field("agreement", pa.float32()),                    # trafilatura vs newspaper3k token F1 (extractor "both")
    pa.field("karma", pa.int64(), nullable=False),          # aggregated Reddit score
    pa.field("num_submissions", pa.int32(), nullable=False),
    pa.field("first_seen", UTC_S, nullable=False),          # first Reddit submission of the URL
    pa.field("subreddits", _list(pa.string()), nullable=False),
    # Where the page came from (fetch's metadata record): live | commoncrawl | wayback.
    pa.field("source", pa.string(), nullable=False),
    # The capture: an archive's capture time, or fetch's time for a live page; null if unknown.
    pa.field("captured_at", UTC_S),
]
# The signals the filters read (``stages.decide.SIGNALS``: stages.signals' quality and repetition
# signals, stages.quality's line shares, stages.pii's counts), one struct per document, so that
# ``webtext filter`` re-decides without extracting again; duckdb reads ``signals.word_count``.
from webtext.stages.decide import SIGNALS  # noqa: E402  (a leaf module: pyarrow and the signal modules)

DOCS = _schema("docs", [*_DOC_FIELDS, pa.field("signals", SIGNALS)])

# docs/rejected/rejected-NNNNN.parquet: every page with fetch metadata that extract did not keep,
# with its drop reason; the document fields as far as extract got (text, title, lang and signals
# are null for a page that never reached text: too large, another language before extraction,
# extraction failed or empty). ``webtext filter`` moves rows between docs/ and here.
REJECTED = _schema("rejected", [
    pa.field("reason", pa.string(), nullable=False),        # the first failing check or rule (Stats' reason)
    pa.field("stage", pa.string(), nullable=False),         # "extract"
    *(f.with_nullable(True) if f.name in ("text", "num_words", "extractor", "domain") else f
      for f in _DOC_FIELDS),
    pa.field("signals", SIGNALS),
])

# Document columns added after version 3, with their value in shards written before them
# (fetch wrote only live pages then, and no capture time).
DOC_DEFAULTS = {"source": "live", "captured_at": None}


def upgrade_docs(table: pa.Table) -> pa.Table:
    """A docs/, dedup/ or clean/ table with the columns older shards lack added at their
    DOC_DEFAULTS value and int64 time columns read as timestamps (``upgrade_times``), so a
    rerun over shards from before version 5 writes today's schema."""
    table = upgrade_times(table)
    for name, value in DOC_DEFAULTS.items():
        if name not in table.column_names:
            f = DOCS.field(name)
            table = table.append_column(f, pa.repeat(pa.scalar(value, f.type), table.num_rows))
    return table
DEDUP = _schema("dedup", _DOC_FIELDS)
CLEAN = _schema("clean", _DOC_FIELDS)

# dedup/_meta/signatures/: MinHash signature and exact-text hash per document.
SIGNATURES = _schema("signatures", [
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("karma", pa.int64(), nullable=False),
    pa.field("first_seen", UTC_S, nullable=False),
    pa.field("text_hash", pa.string(), nullable=False),     # xxh128 hex of normalized text
    pa.field("minhash", _list(pa.uint32()), nullable=False),
])

# dedup/_meta/bands/NNNNN/part-PPP.parquet: the persistent LSH band index, partitioned by bucket.
BANDS = _schema("bands", [
    pa.field("band", pa.uint16(), nullable=False),          # LSH band; the last one is the exact-text hash
    pa.field("bucket", pa.uint64(), nullable=False),        # 64-bit hash of the band's signature values
    pa.field("key", pa.uint64(), nullable=False),           # document: shard number << 32 | row
])

# dedup/_meta/pairs/pairs-PPP.parquet: candidate pairs from one partition of the band index.
PAIRS = _schema("pairs", [
    pa.field("a", pa.uint64(), nullable=False),
    pa.field("b", pa.uint64(), nullable=False),
    pa.field("exact", pa.bool_(), nullable=False),          # same exact-text hash: needs no verification
    pa.field("part", pa.uint16(), nullable=False),          # the verify task of this pair (a hash of a, b)
])

# dedup/_meta/pairs/keys-PPP.parquet: the sorted distinct documents of one pairs file (row
# groups of 65,536 keys, so a candidates task reads only its shard's range).
PAIR_KEYS = _schema("pair_keys", [pa.field("key", pa.uint64(), nullable=False)])

# dedup/_meta/candidates/cand-NNNNN.parquet: the documents of one docs shard that are in a
# candidate pair, with all verify and resolve read of them (shard and signatures read once).
CANDIDATES = _schema("candidates", [
    pa.field("key", pa.uint64(), nullable=False),           # shard number << 32 | row, ascending
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("karma", pa.int64(), nullable=False),
    pa.field("first_seen", UTC_S, nullable=False),
    pa.field("text_hash", pa.string(), nullable=False),
    pa.field("minhash", pa.binary(), nullable=False),       # num_perm little-endian uint32 values
    pa.field("text", pa.large_string()),                    # null unless verify = "exact"
])

# dedup/_meta/verified/verified-PPP.parquet: the candidate pairs of one pair partition that are
# duplicates (exact, or Jaccard >= threshold; similarity NaN when verify = "off").
VERIFIED = _schema("verified", [
    pa.field("a", pa.uint64(), nullable=False),
    pa.field("b", pa.uint64(), nullable=False),
    pa.field("exact", pa.bool_(), nullable=False),
    pa.field("similarity", pa.float32()),
])

# dedup/_meta/drops/drops-NNNNN.parquet: the rows of one docs shard that dedup removes.
DROPS = _schema("drops", [
    pa.field("row", pa.int64(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
])

# dedup/_meta/clusters.parquet: every document that has a duplicate, with its cluster.
CLUSTERS = _schema("clusters", [
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("cluster_id", pa.string(), nullable=False),    # doc_id of the cluster's best-ranked document
    pa.field("kept", pa.bool_(), nullable=False),
    pa.field("reason", pa.string()),                        # exact_duplicate | near_duplicate | null if kept
    pa.field("duplicate_of", pa.string()),                  # the kept doc_id it duplicates; null if kept
    pa.field("similarity", pa.float32()),                   # Jaccard with duplicate_of (exact or estimated)
])

# dedup/_meta/resolved/resolved-PPP.parquet: one partition of the components, resolved: the
# CLUSTERS rows and each document's key (docs shard << 32 | row).
RESOLVED = _schema("resolved", [*CLUSTERS, pa.field("key", pa.uint64(), nullable=False)])

# clean/_meta/scan/hits-NNNNN.parquet: every n-gram of a document found in a benchmark.
HITS = _schema("hits", [
    pa.field("row", pa.int64(), nullable=False),            # the document's row in its dedup shard
    pa.field("ngram", pa.uint64(), nullable=False),         # the n-gram's hash
    pa.field("benchmark", pa.string(), nullable=False),
    pa.field("word", pa.int64(), nullable=False),           # index of the n-gram's first word in the document
])

# clean/_meta/scan/wiki-NNNNN.parquet: share of a document's n-grams in the Wikipedia filter (> 0 only).
WIKI_SHARE = _schema("wiki_share", [
    pa.field("row", pa.int64(), nullable=False),
    pa.field("share", pa.float32(), nullable=False),
])

# clean/_meta/removals/removals-NNNNN.parquet: every removal decontaminate made, for audit.
REMOVALS = _schema("removals", [
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("benchmark", pa.string(), nullable=False),     # benchmark name, or "wikipedia"
    pa.field("ngram", pa.string()),                         # the n-gram as it reads in the document
    pa.field("start", pa.int64()),                          # its character span in the document
    pa.field("end", pa.int64()),
    pa.field("action", pa.string(), nullable=False),        # document_dropped | span_removed
    pa.field("reason", pa.string(), nullable=False),        # the drop reason, or benchmark_span
])

# tokens/{train,val}-*.arrow: Arrow IPC, uncompressed, memory-mappable.
# Each document's tokens end with one <|endoftext|> (50256): EOT *after* every document.
TOKENS = _schema("tokens", [
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("tokens", pa.list_(pa.uint16()), nullable=False),
])
# The same for a vocabulary above 65,536 ids (a trained tokenizer).
TOKENS32 = _schema("tokens", [
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("tokens", pa.list_(pa.uint32()), nullable=False),
])


def tokens_schema(dtype: str) -> pa.Schema:
    return {"uint16": TOKENS, "uint32": TOKENS32}[dtype]

BY_FOLDER = {"urls": URLS, "docs": DOCS, "dedup": DEDUP, "clean": CLEAN, "tokens": TOKENS}


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


FOLDER_FILES = {
    "urls": "urls/urls-NNNNN.parquet",
    "docs": "docs/docs-NNNNN.parquet",
    "dedup": "dedup/dedup-NNNNN.parquet",
    "clean": "clean/clean-NNNNN.parquet",
    "tokens": "tokens/{train,val}-NNNNN.arrow",
}


def markdown() -> str:
    """The schema tables of docs/folders.md, generated from the schemas (a test keeps them in sync)."""
    out = []
    for folder, schema in BY_FOLDER.items():
        if folder in ("dedup", "clean"):
            continue
        title = "docs/, dedup/, clean/ (Document rows)" if folder == "docs" else f"{folder}/"
        files = ", ".join(f"`{FOLDER_FILES[f]}`" for f in (("docs", "dedup", "clean") if folder == "docs" else (folder,)))
        out.append(f"**{title}**: {files}\n\n| field | type | nullable |\n|---|---|---|")
        out += [f"| `{f.name}` | `{f.type}` | {'yes' if f.nullable else 'no'} |" for f in schema]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
