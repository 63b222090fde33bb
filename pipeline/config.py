"""Configuration: one dataclass per stage, loaded from ``webtext.toml``.

Precedence: dataclass defaults < ``webtext.toml`` section < CLI flags. Unknown keys and
wrong types are rejected with a message naming the section and key. The effective
config of a stage is saved as ``<stage folder>/_meta/config.json``.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

_MEDIA = (
    "jpg jpeg png gif gifv webp bmp svg tif tiff ico heic mp4 webm mkv avi mov wmv flv m4v mpg mpeg "
    "mp3 wav ogg flac m4a aac opus zip rar 7z tar gz tgz bz2 xz exe msi dmg apk deb rpm iso bin pdf"
).split()


INT64 = (-(2**63), 2**63 - 1)
MODEL_SIZES = ("tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")   # model.gpt.CONFIGS (a test checks)


@dataclass(frozen=True, slots=True)
class Range:
    """The allowed values of a numeric setting: ``lo``..``hi``, each end inclusive unless
    ``open_lo``/``open_hi``. Every value must also be finite (no NaN, no inf)."""
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False
    fix: str = ""

    def describe(self) -> str:
        def num(v: float) -> str:
            return str(int(v)) if float(v).is_integer() and abs(v) < 1e16 else f"{v:g}"
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.open_lo else '>='} {num(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.open_hi else '<='} {num(self.hi)}")
        return " and ".join(parts) or "finite"

    def ok(self, v) -> bool:
        if v != v or v in (float("inf"), float("-inf")):
            return False
        if self.lo is not None and (v <= self.lo if self.open_lo else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.open_hi else v > self.hi))


def positive(hi: float | None = None, fix: str = "") -> Range:
    """> 0 (and <= hi)."""
    return Range(0, hi, open_lo=True, fix=fix)


def at_least(lo: float, hi: float | None = None, fix: str = "") -> Range:
    return Range(lo, hi, fix=fix)


SHARE = Range(0, 1)


class Section:
    """A config section: its numeric settings are range-checked on construction, so the CLI,
    the TOML file and the Python API reject the same values. ``RANGES`` maps every int or
    float field to its ``Range`` (a test checks that none is missing)."""

    SECTION = ""
    RANGES: dict[str, Range] = {}

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for name, rng in self.RANGES.items():
            v, kind = getattr(self, name), hints[name]
            where = f"{self.SECTION}.{name}"
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
                raise ConfigError(f"{where} must be {kind.__name__}, not {v!r}")
            if not rng.ok(v):
                raise ConfigError(f"{where} must be {rng.describe()}, not {v!r}", rng.fix or None)


@dataclass
class ExecutorConfig(Section):
    executor: str = "local"        # local (a process pool) | ray (tasks on a Ray cluster)
    workers: int = 0               # 0 = one per CPU core (local; with ray, a local cluster's CPUs)
    ray_address: str = ""          # "" = start a local Ray instance; "auto" or host:port = join a cluster
    ray_max_retries: int = 3       # retries of a task whose worker or node died
    ray_fetch_cpus: float = 0.25   # CPUs a fetch task reserves: I/O bound, so 4 run per core
    scratch: str = ""              # local mirror of an s3:// or gs:// work directory; "" = <tmp>/webtext-<hash>
    scratch_data: str = "on_demand"  # bulk data in the scratch: on_demand (placeholders between uses) | mirror
    progress_interval_s: float = 60.0  # without a terminal (cron, CI, logs): one progress line per phase this often

    SECTION = "run"
    RANGES = {"workers": at_least(0, 4096, "Use 0 for one worker per core"), "ray_max_retries": at_least(0, 100),
              "ray_fetch_cpus": positive(64), "progress_interval_s": positive(86400)}

    def __post_init__(self):
        super().__post_init__()
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"unknown executor '{self.executor}'", "Use executor = \"local\" or \"ray\"")
        if self.scratch_data not in ("on_demand", "mirror"):
            raise ConfigError(f"unknown run.scratch_data '{self.scratch_data}'", 'Use "on_demand" or "mirror"')


@dataclass
class HarvestConfig(Section):
    source: str = "dumps"          # "dumps" (Pushshift/Arctic-Shift files) or "api" (praw)
    dumps: list[str] = field(default_factory=list)   # dump files or folders of RS_* files
    min_score: int = 3             # keep URLs whose aggregated score is >= this
    score_agg: str = "sum"         # "sum" (OpenWebText2) or "max" (WebText: any one submission)
    allow_nsfw: bool = False
    num_shards: int = 4            # urls/ output shards (partitioned by url hash)
    blocklist: str = ""            # domain blocklist file; "" = data/blocklist_domains.txt
    media_extensions: list[str] = field(default_factory=lambda: list(_MEDIA))  # dropped by URL extension
    max_url_length: int = 2083     # longer URLs are dropped as bad_url (the limit of Heritrix and browsers)
    reduce_bucket_rows: int = 100_000  # reduce: submissions held in memory at once (bounds its memory)
    # Live API (source = "api"). Credentials come from praw.ini (praw_site) or the
    # environment (praw_client_id, praw_client_secret), never from this file.
    subreddits: list[str] = field(default_factory=list)
    listing: str = "new"           # new | top | hot
    time_filter: str = "all"       # for top: hour | day | week | month | year | all
    api_limit: int = 1000          # submissions per subreddit and pull (Reddit serves at most ~1000)
    praw_site: str = ""            # praw.ini section; "" = DEFAULT plus environment variables
    reddit_url: str = "https://www.reddit.com"
    oauth_url: str = "https://oauth.reddit.com"
    api_user_agent: str = "webtext/0.1 harvest (+https://github.com/webtext-project/webtext)"
    api_settle_hours: float = 48.0  # re-score submissions younger than this on later pulls; 0 = never

    SECTION = "harvest"
    RANGES = {"min_score": Range(*INT64), "num_shards": at_least(1, 100_000), "api_limit": at_least(1, 100_000),
              "max_url_length": at_least(16, 1 << 20, "2083 is the limit of browsers and Heritrix"),
              "reduce_bucket_rows": at_least(1000, 100_000_000),
              "api_settle_hours": at_least(0, 24 * 365, "Use 0 to never re-score")}

    def __post_init__(self):
        super().__post_init__()
        if self.source not in ("dumps", "api"):
            raise ConfigError(f"harvest.source must be 'dumps' or 'api', not '{self.source}'")
        if self.score_agg not in ("sum", "max"):
            raise ConfigError(f"score_agg must be 'sum' or 'max', not '{self.score_agg}'")
        if self.listing not in ("new", "top", "hot"):
            raise ConfigError(f"harvest.listing must be new, top or hot, not '{self.listing}'")
        if self.time_filter not in ("hour", "day", "week", "month", "year", "all"):
            raise ConfigError(f"harvest.time_filter must be hour/day/week/month/year/all, not '{self.time_filter}'")


ARCHIVE_MODES = ("off", "fallback", "prefer")
ARCHIVE_SOURCES = ("commoncrawl", "wayback")


@dataclass
class FetchConfig(Section):
    concurrency: int = 64          # requests in flight, all hosts together
    per_host: int = 2              # connections per host
    per_domain: int = 4            # connections per registered domain, all its hosts together (*.blogspot.com)
    per_ip: int = 4                # connections per resolved IP address (without a proxy: nothing resolves behind one)
    timeout_s: float = 30.0        # total time for one request (cuts off trickling servers)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 15.0   # time to first byte, and between reads
    host_delay_s: float = 1.0      # minimum spacing of requests to one host
    obey_robots: bool = True       # fetch and obey robots.txt (RFC 9309)
    tdmrep: bool = True            # ask each host once for /.well-known/tdmrep.json (TDMRep AI opt-out)
    max_crawl_delay_s: float = 30.0  # a robots.txt Crawl-delay above this skips the host
    max_retry_after_s: float = 120.0  # cap on a server's Retry-After
    max_bytes: int = 5 * 1024 * 1024
    warc_max_bytes: int = 1024**3  # rotate WARC segments at this size
    batch_urls: int = 10000        # URLs read from the shard at a time (bounds memory)
    urls_per_task: int = 5000      # new URLs per fetch task (frontier file), split by site; extract follows
    warc_gzip: str = "isal"        # gzip engine for WARC records: isal (ISA-L, ~4x faster) | zlib
    warc_gzip_level: int = 1       # gzip level of each record: isal 0-3, zlib 1-9 (see README)
    max_redirects: int = 5
    retries: int = 2               # extra tries after 429/5xx/connection errors
    backoff_s: float = 1.0         # first retry delay; doubles each try
    user_agent: str = "webtext/0.1 (+https://github.com/webtext-project/webtext)"
    proxy: str = ""                # forward proxy URL; "" = HTTP_PROXY from the environment, if any
    allow_private: bool = False    # allow loopback/private targets (tests and demo only)
    refetch_after_days: float = 0.0  # revisit URLs last fetched this long ago (conditional GET); 0 = never
    # Dead-link recovery from web archives (stages.archives): off | fallback (a dead live
    # fetch is looked up in the archives) | prefer (old submissions: the capture nearest
    # the submission first, the live page only when no archive has one)
    archive: str = "fallback"
    archive_sources: list[str] = field(default_factory=lambda: ["commoncrawl", "wayback"])  # tried in order
    archive_commoncrawl_index: str = "https://index.commoncrawl.org"
    archive_commoncrawl_data: str = "https://data.commoncrawl.org"
    archive_wayback: str = "https://web.archive.org"
    archive_commoncrawl_columnar: str = ""  # Parquet files of CC's columnar URL index: one join, no CDX calls
    archive_max_drift_days: float = 365.0   # a capture at most this far from the submission
    archive_prefer_older_than_days: float = 365.0  # prefer: submissions older than this go to the archives first
    archive_delay_s: float = 1.0            # spacing of requests to one archive host
    archive_connections: int = 1            # requests in flight to one archive host
    archive_retries: int = 3                # retries of a throttled or failed archive request
    # WARC files (or folders of *.warc.gz / *.warc) whose pages are imported before fetching
    # live (stages.importwarc: Common Crawl segments, an earlier crawl, a Wayback export)
    from_warc: list[str] = field(default_factory=list)

    SECTION = "fetch"
    HOUR, DAY = 3600.0, 86400.0
    RANGES = {
        "concurrency": at_least(1, 100_000), "per_host": at_least(1, 1000), "per_domain": at_least(1, 10_000),
        "per_ip": at_least(1, 10_000), "timeout_s": positive(HOUR), "connect_timeout_s": positive(HOUR),
        "read_timeout_s": positive(HOUR), "host_delay_s": at_least(0, HOUR), "max_crawl_delay_s": at_least(0, DAY),
        "max_retry_after_s": at_least(0, DAY), "max_bytes": at_least(1024, 2**31 - 1),
        "warc_max_bytes": at_least(1024, 2**40), "batch_urls": at_least(1, 10_000_000),
        "urls_per_task": at_least(1, 100_000_000),
        "warc_gzip_level": at_least(0, 9), "max_redirects": at_least(0, 100), "retries": at_least(0, 100),
        "backoff_s": at_least(0, HOUR),
        "refetch_after_days": at_least(0, 36_500, "Use 0 to never revisit, or the age in days after which a "
                                                  "page is fetched again"),
        "archive_max_drift_days": positive(36_500), "archive_prefer_older_than_days": at_least(0, 36_500),
        "archive_delay_s": at_least(0, HOUR), "archive_connections": at_least(1, 64),
        "archive_retries": at_least(0, 100),
    }

    def __post_init__(self):
        super().__post_init__()
        if self.archive not in ARCHIVE_MODES:
            raise ConfigError(f"fetch.archive must be one of {', '.join(ARCHIVE_MODES)}, not {self.archive!r}")
        if bad := [x for x in self.archive_sources if x not in ARCHIVE_SOURCES] or \
                (self.archive != "off" and not self.archive_sources and ["(none)"]):
            raise ConfigError(f"fetch.archive_sources must name {' and/or '.join(ARCHIVE_SOURCES)}, not {bad}",
                              'Use archive = "off" to fetch live pages only')
        levels = {"isal": range(0, 4), "zlib": range(1, 10)}
        if self.warc_gzip not in levels:
            raise ConfigError(f"fetch.warc_gzip must be 'isal' or 'zlib', not '{self.warc_gzip}'")
        if self.warc_gzip_level not in levels[self.warc_gzip]:
            lo, hi = levels[self.warc_gzip][0], levels[self.warc_gzip][-1]
            raise ConfigError(f"fetch.warc_gzip_level {self.warc_gzip_level} is out of range for {self.warc_gzip}",
                              f"Use a level from {lo} to {hi}")


@dataclass
class ExtractConfig(Section):
    extractor: str = "auto"        # auto (trafilatura, newspaper3k fallback) | trafilatura | newspaper3k | both
    dates: bool = True             # publication date with htmldate (fast mode)
    fallback_share: float = 0.1    # auto: trafilatura's text under this share of the visible text is "short"...
    fallback_gain: float = 4.0     # ...and newspaper3k replaces it when its text is this many times longer
    min_words: int = 100           # about 128 GPT-2 tokens, OpenWebText's cut
    langs: list[str] = field(default_factory=lambda: ["en"])   # [] = keep every language
    min_lang_score: float = 0.5
    lang_prefilter_score: float = 0.9  # skip extraction when the page's long paragraphs are in another
                                       # language with at least this score; above 1 = never skip
    short_line_words: int = 4      # a line with fewer words is "short"
    max_short_line_share: float = 0.5   # rule short_lines' threshold
    max_boilerplate_line_share: float = 0.3   # rule boilerplate_lines' threshold
    gopher: bool = False           # deprecated: true enables every gopher_* rule that `rules` does not name
    # Filter rules by name (stages.decide, stages.signals.RULES): {name: {enabled, threshold | min, max}};
    # unnamed rules keep their measured defaults. `webtext filter` re-applies them without extracting.
    rules: dict = field(default_factory=dict)
    pii: str = "redact"            # redact | record | off: e-mail, public IP and phone numbers (stages.pii)
    ai_optout: str = "record"      # record | drop: pages whose publisher opted out of AI use (stages.optout)
    max_html_bytes: int = 5 * 1024 * 1024
    page_timeout_s: float = 5.0    # per-page extraction limit (the page's process is killed)
    recycle_after: int = 1000      # replace the extraction process after this many pages

    SECTION = "extract"
    RANGES = {"fallback_share": SHARE, "fallback_gain": positive(1e6), "min_words": at_least(0, 1_000_000),
              "min_lang_score": SHARE,
              "lang_prefilter_score": positive(100, "Use a score in (0, 1], or 2 to extract every page before "
                                                    "its language is checked"),
              "short_line_words": at_least(0, 10_000), "max_short_line_share": SHARE,
              "max_boilerplate_line_share": SHARE, "max_html_bytes": at_least(1024, 2**31 - 1),
              "page_timeout_s": positive(3600), "recycle_after": at_least(1, 10**9)}

    def __post_init__(self):
        super().__post_init__()
        if self.extractor not in ("auto", "trafilatura", "newspaper3k", "both"):
            raise ConfigError(f"extract.extractor must be auto, trafilatura, newspaper3k or both, not '{self.extractor}'")
        if self.pii not in ("redact", "record", "off"):
            raise ConfigError(f"extract.pii must be redact, record or off, not {self.pii!r}")
        if self.ai_optout not in ("record", "drop"):
            raise ConfigError(f"extract.ai_optout must be record or drop, not {self.ai_optout!r}")
        from webtext.stages.decide import check_rules

        check_rules(self.rules)


VERIFY_MODES = ("exact", "estimate", "off")
KEEP_RULES = ("witness", "one_per_cluster")


@dataclass
class DedupConfig(Section):
    num_perm: int = 128
    threshold: float = 0.8         # target Jaccard similarity
    shingle_words: int = 5
    seed: int = 1
    partitions: int = 16           # band-index partitions: each pairs task sorts 1/partitions of the index
    lsh_threshold: float = 0.6     # bands x rows: datasketch's optimizer at this (lower) threshold
    verify: str = "exact"          # exact | estimate | off: check LSH candidates against the threshold
    keep: str = "witness"          # witness: removed only beside a kept duplicate | one_per_cluster (union-find)
    max_bucket_pairs: int = 32     # buckets up to this size give all pairs, larger ones a star
    replace_existing: bool = False  # let a new document replace its duplicate already in the corpus

    SECTION = "dedup"
    RANGES = {"num_perm": at_least(16, 1024), "threshold": Range(0, 1, open_lo=True),
              "shingle_words": at_least(1, 100), "seed": at_least(0, 2**32 - 1), "partitions": at_least(1, 4096),
              "lsh_threshold": Range(0, 1, open_lo=True), "max_bucket_pairs": at_least(2, 1_000_000)}

    def __post_init__(self):
        super().__post_init__()
        if self.lsh_threshold > self.threshold:
            raise ConfigError("dedup.lsh_threshold must be in (0, dedup.threshold]")
        if self.verify not in VERIFY_MODES:
            raise ConfigError(f"dedup.verify must be one of {', '.join(VERIFY_MODES)}, not {self.verify!r}")
        if self.keep not in KEEP_RULES:
            raise ConfigError(f"dedup.keep must be one of {', '.join(KEEP_RULES)}, not {self.keep!r}")


POLICIES = ("drop", "spans")


@dataclass
class DecontaminateConfig(Section):
    benchmarks: list[str] = field(default_factory=list)  # registry names, or files (see data/benchmarks.toml)
    benchmark_dir: str = "benchmarks"   # where registry names' files live
    registry: str = ""                  # an extra registry file: benchmarks added without code
    ngram: int = 13
    fp_rate: float = 1e-8               # Bloom filters' false-positive rate (GPT-2's bound)
    policy: str = "spans"               # spans (GPT-3's rules) | drop (any hit drops the document)
    window: int = 200                   # spans: characters cut either side of a hit
    min_piece: int = 200                # spans: shorter pieces are dropped
    max_pieces: int = 10                # spans: a document in more pieces is dropped
    common_docs: int = 10               # spans: n-grams in more documents than this are ignored
    drop_wikipedia: bool = True         # drop pages of *.wikipedia.org and data/wikipedia_mirrors.txt
    wikipedia_dump: str = ""            # pages-articles XML (.bz2): drop documents by content
    wikipedia_share: float = 0.5        # ... when more than this share of their n-grams hit
    wikipedia_sample: int = 1           # keep 1/k of Wikipedia's n-grams (by hash): 1/k of the memory
    fp_probes: int = 1_000_000          # random probes per filter in the false-positive check (0: off)

    SECTION = "decontaminate"
    RANGES = {"ngram": at_least(1, 100), "fp_rate": Range(0, 1, open_lo=True, open_hi=True),
              "window": at_least(0, 1_000_000), "min_piece": at_least(0, 1_000_000),
              "max_pieces": at_least(0, 1_000_000), "common_docs": at_least(0, 10**12), "wikipedia_share": SHARE,
              "wikipedia_sample": at_least(1, 1_000_000), "fp_probes": at_least(0, 10**10)}

    def __post_init__(self):
        super().__post_init__()
        if self.policy not in POLICIES:
            raise ConfigError(f"decontaminate.policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")


@dataclass
class ShardConfig(Section):
    val_fraction: float = 0.05     # the paper held out 5% of WebText
    tokenizer: str = "gpt2"        # gpt2, or a tokenizer.json (`webtext tokenizer train`)
    backend: str = "auto"          # auto (tiktoken for gpt2) | tiktoken | hf
    shard_tokens: int = 100_000_000  # tokens per output shard, about
    seed: int = 0                  # document shuffle across shards

    SECTION = "shard"
    RANGES = {"val_fraction": Range(0, 1, open_hi=True), "shard_tokens": at_least(1, 2**40),
              "seed": at_least(0, 2**32 - 1)}


@dataclass
class TrainConfig(Section):
    """The trainer's settings. Those left at None (steps, batch and context, the learning
    rate schedule, the eval and checkpoint cadence) take the model size's defaults
    (``pipeline.train_recipes``); ``from_size`` names them. A value given always wins."""
    model: str = "tiny"            # tiny | gpt2 | gpt2-medium | gpt2-large | gpt2-xl
    steps: int = None              # optimizer steps (None: the size's default, as for every None below)
    batch_size: int = None         # sequences per micro-batch, per rank
    block_size: int = None         # context length used in training (<= model max)
    tokens_per_step: int = None    # 0 = one micro-batch on every rank; else gradient accumulation to this
    sampling: str = "random"       # random (windows at random offsets) | epoch (without replacement)
    corpus_version: int = 0        # the tokens/ corpus version to train on; 0 = the latest
    lr: float = None               # peak learning rate
    min_lr: float = None           # the cosine decays to this (None: lr / 10)
    warmup_steps: int = None       # linear warmup from lr / warmup_steps to lr
    weight_decay: float = 0.1
    grad_clip: float = 1.0         # max gradient norm; 0 = no clipping
    eval_every: int = None         # validation loss every N steps (and at the end)
    eval_tokens: int = None        # validation tokens per evaluation: a fixed, seeded set of windows
    log_every: int = 10            # a metrics line every N steps (and at eval steps)
    ckpt_every: int = None         # checkpoint every N steps; 0 = at every eval and at the end
    metrics_format: str = "jsonl"  # jsonl | csv (runs/<run_name>/metrics.*)
    tensorboard: bool = False      # also write TensorBoard events (needs the tensorboard package)
    compile: str = "auto"          # auto (on for CUDA) | on | off: torch.compile
    peak_tflops: float = 0.0       # for MFU; 0 = the device's dense bf16 peak (model.mfu.PEAK_TFLOPS)
    seed: int = 1337
    device: str = "auto"           # auto | cpu | cuda
    run_name: str = "default"

    SECTION = "train"
    BIG = 10**12
    RANGES = {"steps": at_least(1, BIG), "batch_size": at_least(1, 1 << 20), "block_size": at_least(1, 1 << 20),
              "tokens_per_step": at_least(0, BIG), "corpus_version": at_least(0, BIG), "lr": positive(10),
              "min_lr": at_least(0, 10), "warmup_steps": at_least(0, BIG), "weight_decay": at_least(0, 10),
              "grad_clip": at_least(0, 1e6, "Use 0 for no clipping"), "eval_every": at_least(1, BIG),
              "eval_tokens": at_least(1, BIG), "log_every": at_least(1, BIG), "ckpt_every": at_least(0, BIG),
              "peak_tflops": at_least(0, 1e9, "Use 0 for the known GPUs' peak"), "seed": at_least(0, 2**63 - 1)}

    def __post_init__(self):
        from .train_recipes import size_defaults

        if self.model not in MODEL_SIZES:
            raise ConfigError(f"unknown model size {self.model!r}", f"Use one of {', '.join(MODEL_SIZES)}")
        filled = size_defaults(self.model, vars(self))
        for k, v in filled.items():
            setattr(self, k, v)
        self.from_size = tuple(filled)     # not a field: dataclasses.replace() makes every value explicit
        super().__post_init__()
        if self.sampling not in ("random", "epoch"):
            raise ConfigError(f"train.sampling must be random or epoch, not {self.sampling!r}")
        if self.compile not in ("auto", "on", "off"):
            raise ConfigError(f"train.compile must be auto, on or off, not {self.compile!r}")
        if self.metrics_format not in ("jsonl", "csv"):
            raise ConfigError(f"train.metrics_format must be jsonl or csv, not {self.metrics_format!r}")


@dataclass
class Config:
    run: ExecutorConfig = field(default_factory=ExecutorConfig)
    harvest: HarvestConfig = field(default_factory=HarvestConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)
    shard: ShardConfig = field(default_factory=ShardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _check_type(section: str, key: str, value, annotation):
    """Return ``value`` converted to ``annotation`` or raise ConfigError."""
    origin = typing.get_origin(annotation)
    where = f"[{section}] {key}"
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{where} must be a list of {item.__name__}, got {value!r}")
        return list(value)
    if isinstance(annotation, type) and not isinstance(value, annotation) or (
        annotation is int and isinstance(value, bool)
    ):
        raise ConfigError(f"{where} must be {annotation.__name__}, got {value!r}")
    return value


def _build(cls, section: str, values: dict):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise ConfigError(
                f"unknown key '{key}' in [{section}]", f"Valid keys: {', '.join(sorted(names))}"
            )
    kwargs = {k: _check_type(section, k, v, hints[k]) for k, v in values.items()}
    return cls(**kwargs)


def load_config(path: Path | None = None, overrides: dict[str, dict] | None = None) -> Config:
    """Load ``path`` (if given) and apply ``overrides`` ({section: {key: value}}, None values skipped)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} not found", "Pass an existing --config file or omit it")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path} is not valid TOML: {e}") from None
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    hints = typing.get_type_hints(Config)
    for name in data:
        if name not in sections:
            raise ConfigError(f"unknown section [{name}] in {path}", f"Valid sections: {', '.join(sections)}")
    for section, values in (overrides or {}).items():
        data.setdefault(section, {})
        data[section] = {**data[section], **{k: v for k, v in values.items() if v is not None}}
    built = {}
    for name in sections:
        values = data.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        built[name] = _build(hints[name], name, values)
    return Config(**built)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)
