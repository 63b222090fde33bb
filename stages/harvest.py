"""harvest: Reddit submission dumps -> ``urls/`` (one row per normalized URL).

Input: Pushshift-format NDJSON dumps (``RS_*`` files, .zst/.xz/.bz2/.gz/plain), given as
files or folders in ``[harvest] dumps``. Output: ``urls/urls-NNNNN.parquet`` (schema
``pipeline.schemas.URLS``), partitioned by url hash.

Two phases:
1. *map*, one task per dump: stream lines, keep link submissions, normalize URLs, write
   ``urls/_parts/<dump>.parquet`` (schema SUBMISSIONS). Bad lines are counted, not fatal;
   a truncated compressed file keeps everything before the damage.
2. *reduce*, one task per output shard: aggregate submissions per URL (score sum or max),
   keep URLs with aggregated score >= ``min_score``.

Drop reasons (in submissions): malformed_json, no_url, self_post, nsfw, removed,
bad_scheme, reddit_link, media_url, blocklisted_domain, low_score (the URL's aggregate
is below the threshold), truncated_file (the unreadable rest of a file counts as 1).
Submissions merged into a URL already kept are counted as ``merged_duplicate_url``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
import zstandard

from pipeline.config import HarvestConfig, to_dict
from pipeline.errors import MissingInputError
from pipeline.executor import Context, Task, finish_stage, run_phase
from pipeline.io import safe_name, sorted_files, write_parquet
from pipeline.schemas import SUBMISSIONS, URLS
from pipeline.stats import Stats

from . import urls as U

MEDIA_EXTENSIONS = frozenset(
    "jpg jpeg png gif gifv webp bmp svg tif tiff ico mp4 webm mkv avi mov wmv flv m4v mp3 wav ogg "
    "flac m4a aac zip rar 7z tar gz tgz bz2 xz exe msi dmg apk deb rpm iso bin pdf".split()
)
DUMP_SUFFIXES = (".zst", ".xz", ".bz2", ".gz", ".json", ".ndjson", ".jsonl", "")
_DECODE_ERRORS = (zstandard.ZstdError, EOFError, lzma.LZMAError, OSError, gzip.BadGzipFile)
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class TruncatedDumpError(EOFError):
    """A compressed dump ends inside a frame."""


class _ZstdReader(io.RawIOBase):
    """Streams every frame of a .zst file; raises TruncatedDumpError if the last frame is cut.

    zstandard's ``stream_reader`` ends silently on a truncated file, which would lose the
    damage without counting it. Pushshift dumps need a 2 GiB window (``window_log=31``).
    """

    def __init__(self, raw):
        self.raw = raw
        self.dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
        self.dobj = self.dctx.decompressobj()
        self.in_frame = False
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not self.pending:
            chunk = self.raw.read(1 << 20)
            if not chunk:
                if self.in_frame:
                    raise TruncatedDumpError("compressed stream ends inside a frame")
                return 0
            out = []
            while chunk:
                self.in_frame = True
                out.append(self.dobj.decompress(chunk))
                chunk = b""
                if self.dobj.eof:   # frame complete; the rest of the chunk starts the next frame
                    chunk, self.in_frame = self.dobj.unused_data, False
                    self.dobj = self.dctx.decompressobj()
            self.pending = b"".join(out)
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_dump(path: Path) -> io.BufferedIOBase:
    """A binary stream of the dump's decompressed NDJSON, never fully in memory."""
    raw = open(path, "rb")
    name = path.name
    if name.endswith(".zst"):
        return io.BufferedReader(_ZstdReader(raw), 1 << 20)
    if name.endswith(".xz"):
        return lzma.open(raw)
    if name.endswith(".bz2"):
        return bz2.open(raw)
    if name.endswith(".gz"):
        return gzip.open(raw)
    return raw


def load_blocklist(path: str) -> frozenset[str]:
    p = Path(path) if path else DATA_DIR / "blocklist_domains.txt"
    if not p.exists():
        raise MissingInputError(f"blocklist {p} not found", "Set [harvest] blocklist to an existing file")
    lines = (ln.strip().lower() for ln in p.read_text().splitlines())
    return frozenset(ln for ln in lines if ln and not ln.startswith("#"))


def _classify(sub: dict, allow_nsfw: bool, blocklist: frozenset[str]) -> tuple[str | None, str | None]:
    """(reason, None) to drop a submission, or (None, normalized_url) to keep it."""
    raw = sub.get("url")
    if not isinstance(raw, str) or not raw.strip():
        return "no_url", None
    if sub.get("is_self") or (sub.get("domain") or "").startswith("self."):
        return "self_post", None
    if sub.get("over_18") and not allow_nsfw:
        return "nsfw", None
    if sub.get("removed_by_category") or sub.get("removed_by") or sub.get("banned_by"):
        return "removed", None
    url = U.normalize(raw)
    if url is None:
        return "bad_scheme", None
    hostname = U.host(url)
    if U.domain_matches(hostname, U.REDDIT_DOMAINS):
        return "reddit_link", None
    path = url.split("?", 1)[0].rsplit("/", 1)[-1]
    if "." in path and path.rsplit(".", 1)[-1].lower() in MEDIA_EXTENSIONS:
        return "media_url", None
    if U.domain_matches(hostname, blocklist):
        return "blocklisted_domain", None
    return None, url


def _int(v, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def harvest_dump(task: Task) -> Stats:
    """Map task: one dump file -> one Parquet file of kept submissions."""
    (path,) = task.inputs
    (out,) = task.outputs
    p = task.params
    blocklist = frozenset(p["blocklist"])
    stats = Stats()
    cols: dict[str, list] = {f.name: [] for f in SUBMISSIONS}
    with open_dump(path) as f:
        try:
            for line in f:
                if not line.strip():
                    continue
                stats.records_in += 1
                try:
                    sub = json.loads(line)
                    if not isinstance(sub, dict):
                        raise ValueError("not an object")
                except ValueError:
                    stats.drop("malformed_json")
                    continue
                reason, url = _classify(sub, p["allow_nsfw"], blocklist)
                if reason:
                    stats.drop(reason)
                    continue
                stats.records_out += 1
                cols["url"].append(url)
                cols["domain"].append(U.host(url))
                cols["score"].append(_int(sub.get("score")))
                cols["created_utc"].append(_int(sub.get("created_utc")))
                cols["subreddit"].append(str(sub.get("subreddit") or ""))
                cols["id"].append(str(sub.get("id") or ""))
                cols["title"].append(sub.get("title") if isinstance(sub.get("title"), str) else None)
        except _DECODE_ERRORS as e:
            stats.drop("truncated_file")
            stats.records_in += 1
            stats.add_info("truncated_files", 1)
            stats.add_info("truncated_error", f"{path.name}: {type(e).__name__}: {e}")
    write_parquet(pa.table(cols, schema=SUBMISSIONS), out, SUBMISSIONS)
    return stats


def aggregate_urls(task: Task) -> Stats:
    """Reduce task: every part's submissions whose url hashes to this shard -> URL rows."""
    p = task.params
    shard, nshards = p["shard"], p["num_shards"]
    tables = []
    for part in task.inputs:
        t = pq.read_table(part)
        if t.num_rows:
            buckets = np.fromiter((xxhash.xxh3_64_intdigest(u.encode()) % nshards for u in t["url"].to_pylist()),
                                  dtype=np.int64, count=t.num_rows)
            tables.append(t.filter(pa.array(buckets == shard)))
    subs = pa.concat_tables(tables) if tables else SUBMISSIONS.empty_table()
    # Sort so the aggregation (and the lists it builds) are deterministic.
    subs = subs.sort_by([("url", "ascending"), ("created_utc", "ascending"), ("id", "ascending")])
    agg = "sum" if p["score_agg"] == "sum" else "max"
    g = subs.group_by("url", use_threads=False).aggregate([
        ("score", agg), ("url", "count"), ("created_utc", "min"), ("created_utc", "max"),
        ("subreddit", "distinct"), ("id", "list"), ("title", "first"), ("domain", "first"),
    ])
    keep = pc.greater_equal(g[f"score_{agg}"], p["min_score"])
    stats = Stats(records_in=subs.num_rows)
    low = g.filter(pc.invert(keep))
    kept = g.filter(keep)
    stats.drop("low_score", int(pc.sum(low["url_count"]).as_py() or 0))
    stats.records_out = kept.num_rows
    stats.drop("merged_duplicate_url", int(pc.sum(kept["url_count"]).as_py() or 0) - kept.num_rows)
    urls = kept["url"].to_pylist()
    table = pa.table({
        "url_id": [U.url_id(u) for u in urls],
        "url": urls,
        "domain": kept["domain_first"],
        "score": kept[f"score_{agg}"],
        "num_submissions": pc.cast(kept["url_count"], pa.int32()),
        "first_seen": kept["created_utc_min"],
        "last_seen": kept["created_utc_max"],
        "subreddits": [sorted(s) for s in kept["subreddit_distinct"].to_pylist()],
        "submission_ids": kept["id_list"],
        "title": kept["title_first"],
    })
    table = table.sort_by("url_id")
    write_parquet(table, task.outputs[0], URLS)
    stats.add_info("unique_urls", g.num_rows)
    return stats


def find_dumps(specs: list[str]) -> list[Path]:
    if not specs:
        raise MissingInputError(
            "no dumps given", "Pass --dumps PATH (an RS_* file or a folder of them) or set [harvest] dumps"
        )
    found: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found += [q for q in sorted(p.iterdir()) if q.is_file() and q.name.startswith(("RS_", "RS-"))]
        elif p.is_file():
            found.append(p)
        else:
            raise MissingInputError(f"dump path {p} does not exist", "Check --dumps / [harvest] dumps")
    if not found:
        raise MissingInputError(f"no RS_* dump files in {', '.join(specs)}", "Point --dumps at Pushshift RS_* files")
    return found


def run(ctx: Context) -> dict:
    cfg: HarvestConfig = ctx.cfg.harvest
    started = time.time()
    out_dir = ctx.dir("urls")
    dumps = find_dumps(cfg.dumps)
    blocklist = sorted(load_blocklist(cfg.blocklist))
    map_params = {"allow_nsfw": cfg.allow_nsfw, "blocklist": blocklist}
    parts = [out_dir / "_parts" / f"{safe_name(d)}.parquet" for d in dumps]
    mapped = run_phase(ctx, out_dir, "map", [
        Task("map", part.stem, harvest_dump, [d], [part], map_params) for d, part in zip(dumps, parts)
    ])
    for d in dumps:
        ctx.state.record_dump(d.name, d.stat().st_size, ctx.state.digest(d))
    reduce_params = {"min_score": cfg.min_score, "score_agg": cfg.score_agg, "num_shards": cfg.num_shards}
    tasks = [
        Task("reduce", f"{i:05d}", aggregate_urls, parts, [out_dir / f"urls-{i:05d}.parquet"],
             {**reduce_params, "shard": i})
        for i in range(cfg.num_shards)
    ]
    # Remove shards from an earlier run with more shards, so readers see one consistent set.
    for stale in sorted_files(out_dir, "urls-*.parquet"):
        if stale not in {t.outputs[0] for t in tasks}:
            stale.unlink()
    reduced = run_phase(ctx, out_dir, "reduce", tasks)
    # Funnel in submissions: filters from map, then low_score/merged from reduce.
    stats = Stats(records_in=mapped.stats.records_in, records_out=reduced.stats.records_out)
    stats.dropped.update(mapped.stats.dropped)
    stats.dropped.update(reduced.stats.dropped)
    stats.info.update(mapped.stats.info)
    stats.add_info("dumps", len(dumps))
    stats.add_info("unique_urls", reduced.stats.info.get("unique_urls", 0))
    return finish_stage(ctx, "harvest", out_dir, stats, to_dict(cfg),
                        mapped.ran + reduced.ran, mapped.skipped + reduced.skipped, started)
