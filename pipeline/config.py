"""Configuration: one dataclass per stage, loaded from ``webtext.toml``.

Precedence: dataclass defaults < ``webtext.toml`` section < CLI flags. Unknown keys and
wrong types are rejected with a message naming the section and key. The effective
config of a stage is saved as ``<stage folder>/_config.json``.
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


@dataclass
class ExecutorConfig:
    executor: str = "local"        # local (a process pool) | ray (tasks on a Ray cluster)
    workers: int = 0               # 0 = one per CPU core (local; with ray, a local cluster's CPUs)
    ray_address: str = ""          # "" = start a local Ray instance; "auto" or host:port = join a cluster
    ray_max_retries: int = 3       # retries of a task whose worker or node died
    ray_fetch_cpus: float = 0.25   # CPUs a fetch task reserves: I/O bound, so 4 run per core
    scratch: str = ""              # local mirror of an s3:// or gs:// work directory; "" = <tmp>/webtext-<hash>
    scratch_data: str = "on_demand"  # bulk data in the scratch: on_demand (placeholders between uses) | mirror

    def __post_init__(self):
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"unknown executor '{self.executor}'", "Use executor = \"local\" or \"ray\"")
        if self.ray_max_retries < 0 or not 0 < self.ray_fetch_cpus <= 64:
            raise ConfigError("run.ray_max_retries must be >= 0 and run.ray_fetch_cpus in (0, 64]")
        if self.workers < 0:
            raise ConfigError("workers must be >= 0", "Use 0 for one worker per core")
        if self.scratch_data not in ("on_demand", "mirror"):
            raise ConfigError(f"unknown run.scratch_data '{self.scratch_data}'", 'Use "on_demand" or "mirror"')


@dataclass
class HarvestConfig:
    source: str = "dumps"          # "dumps" (Pushshift/Arctic-Shift files) or "api" (praw)
    dumps: list[str] = field(default_factory=list)   # dump files or folders of RS_* files
    min_score: int = 3             # keep URLs whose aggregated score is >= this
    score_agg: str = "sum"         # "sum" (OpenWebText2) or "max" (WebText: any one submission)
    allow_nsfw: bool = False
    num_shards: int = 4            # urls/ output shards (partitioned by url hash)
    blocklist: str = ""            # domain blocklist file; "" = data/blocklist_domains.txt
    media_extensions: list[str] = field(default_factory=lambda: list(_MEDIA))  # dropped by URL extension
    max_url_length: int = 2083     # longer URLs are dropped as bad_url (the limit of Heritrix and browsers)
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

    def __post_init__(self):
        if self.source not in ("dumps", "api"):
            raise ConfigError(f"harvest.source must be 'dumps' or 'api', not '{self.source}'")
        if self.score_agg not in ("sum", "max"):
            raise ConfigError(f"score_agg must be 'sum' or 'max', not '{self.score_agg}'")
        if self.num_shards < 1:
            raise ConfigError("harvest.num_shards must be >= 1")
        if self.listing not in ("new", "top", "hot"):
            raise ConfigError(f"harvest.listing must be new, top or hot, not '{self.listing}'")
        if self.time_filter not in ("hour", "day", "week", "month", "year", "all"):
            raise ConfigError(f"harvest.time_filter must be hour/day/week/month/year/all, not '{self.time_filter}'")


@dataclass
class FetchConfig:
    concurrency: int = 64          # requests in flight, all hosts together
    per_host: int = 2              # connections per host
    per_domain: int = 4            # connections per registered domain, all its hosts together (*.blogspot.com)
    per_ip: int = 4                # connections per resolved IP address (without a proxy: nothing resolves behind one)
    timeout_s: float = 30.0        # total time for one request (cuts off trickling servers)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 15.0   # time to first byte, and between reads
    host_delay_s: float = 1.0      # minimum spacing of requests to one host
    obey_robots: bool = True       # fetch and obey robots.txt (RFC 9309)
    max_crawl_delay_s: float = 30.0  # a robots.txt Crawl-delay above this skips the host
    max_retry_after_s: float = 120.0  # cap on a server's Retry-After
    max_bytes: int = 5 * 1024 * 1024
    warc_max_bytes: int = 1024**3  # rotate WARC segments at this size
    batch_urls: int = 10000        # URLs read from the shard at a time (bounds memory)
    warc_gzip: str = "isal"        # gzip engine for WARC records: isal (ISA-L, ~4x faster) | zlib
    warc_gzip_level: int = 1       # gzip level of each record: isal 0-3, zlib 1-9 (see README)
    max_redirects: int = 5
    retries: int = 2               # extra tries after 429/5xx/connection errors
    backoff_s: float = 1.0         # first retry delay; doubles each try
    user_agent: str = "webtext/0.1 (+https://github.com/webtext-project/webtext)"
    proxy: str = ""                # forward proxy URL; "" = HTTP_PROXY from the environment, if any
    allow_private: bool = False    # allow loopback/private targets (tests and demo only)
    refetch_after_days: float = 0.0  # revisit URLs last fetched this long ago (conditional GET); 0 = never

    def __post_init__(self):
        if self.refetch_after_days < 0:
            raise ConfigError(f"fetch.refetch_after_days must be >= 0, not {self.refetch_after_days}",
                              "Use 0 to never revisit, or the age in days after which a page is fetched again")
        levels = {"isal": range(0, 4), "zlib": range(1, 10)}
        if self.warc_gzip not in levels:
            raise ConfigError(f"fetch.warc_gzip must be 'isal' or 'zlib', not '{self.warc_gzip}'")
        if self.warc_gzip_level not in levels[self.warc_gzip]:
            lo, hi = levels[self.warc_gzip][0], levels[self.warc_gzip][-1]
            raise ConfigError(f"fetch.warc_gzip_level {self.warc_gzip_level} is out of range for {self.warc_gzip}",
                              f"Use a level from {lo} to {hi}")


@dataclass
class ExtractConfig:
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
    max_short_line_share: float = 0.5
    max_boilerplate_line_share: float = 0.3
    gopher: bool = False           # also apply the Gopher quality rules
    max_html_bytes: int = 5 * 1024 * 1024
    page_timeout_s: float = 5.0    # per-page extraction limit (the page's process is killed)
    recycle_after: int = 1000      # replace the extraction process after this many pages

    def __post_init__(self):
        if self.extractor not in ("auto", "trafilatura", "newspaper3k", "both"):
            raise ConfigError(f"extract.extractor must be auto, trafilatura, newspaper3k or both, not '{self.extractor}'")
        if not 0 <= self.fallback_share <= 1 or self.fallback_gain <= 0:
            raise ConfigError("extract.fallback_share must be in [0, 1] and extract.fallback_gain > 0")
        if self.lang_prefilter_score <= 0:
            raise ConfigError(f"extract.lang_prefilter_score must be > 0, not {self.lang_prefilter_score}",
                              "Use a score in (0, 1], or 2 to extract every page before its language is checked")


VERIFY_MODES = ("exact", "estimate", "off")
KEEP_RULES = ("witness", "one_per_cluster")


@dataclass
class DedupConfig:
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

    def __post_init__(self):
        if not 0 < self.threshold <= 1:
            raise ConfigError("dedup.threshold must be in (0, 1]")
        if not 0 < self.lsh_threshold <= self.threshold:
            raise ConfigError("dedup.lsh_threshold must be in (0, dedup.threshold]")
        if self.verify not in VERIFY_MODES:
            raise ConfigError(f"dedup.verify must be one of {', '.join(VERIFY_MODES)}, not {self.verify!r}")
        if self.keep not in KEEP_RULES:
            raise ConfigError(f"dedup.keep must be one of {', '.join(KEEP_RULES)}, not {self.keep!r}")
        if self.partitions < 1 or self.max_bucket_pairs < 2:
            raise ConfigError("dedup.partitions must be >= 1 and dedup.max_bucket_pairs >= 2")


POLICIES = ("drop", "spans")


@dataclass
class DecontaminateConfig:
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

    def __post_init__(self):
        if self.ngram < 1:
            raise ConfigError("decontaminate.ngram must be >= 1")
        if self.policy not in POLICIES:
            raise ConfigError(f"decontaminate.policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        if not 0 < self.fp_rate < 1 or not 0 <= self.wikipedia_share <= 1:
            raise ConfigError("decontaminate.fp_rate must be in (0, 1) and decontaminate.wikipedia_share in [0, 1]")
        if min(self.window, self.min_piece, self.max_pieces, self.common_docs, self.fp_probes) < 0 \
                or self.wikipedia_sample < 1:
            raise ConfigError("decontaminate.window, min_piece, max_pieces, common_docs and fp_probes must be >= 0, "
                              "and wikipedia_sample >= 1")


@dataclass
class ShardConfig:
    val_fraction: float = 0.05     # the paper held out 5% of WebText
    tokenizer: str = "gpt2"        # gpt2, or a tokenizer.json (`webtext tokenizer train`)
    backend: str = "auto"          # auto (tiktoken for gpt2) | tiktoken | hf
    shard_tokens: int = 100_000_000  # tokens per output shard, about
    seed: int = 0                  # document shuffle across shards

    def __post_init__(self):
        if not 0 <= self.val_fraction < 1:
            raise ConfigError("shard.val_fraction must be in [0, 1)")
        if self.shard_tokens < 1:
            raise ConfigError("shard.shard_tokens must be >= 1")


@dataclass
class TrainConfig:
    model: str = "tiny"            # tiny | gpt2 | gpt2-medium | gpt2-large | gpt2-xl
    steps: int = 200               # optimizer steps
    batch_size: int = 8            # sequences per micro-batch, per rank
    block_size: int = 128          # context length used in training (<= model max)
    tokens_per_step: int = 0       # 0 = one micro-batch on every rank; else gradient accumulation to this
    sampling: str = "random"       # random (windows at random offsets) | epoch (without replacement)
    corpus_version: int = 0        # the tokens/ corpus version to train on; 0 = the latest
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50           # validation loss every N steps (and at the end)
    eval_batches: int = 8
    log_every: int = 10            # a metrics line every N steps (and at eval steps)
    ckpt_every: int = 0            # checkpoint every N steps; 0 = at every eval and at the end
    metrics_format: str = "jsonl"  # jsonl | csv (runs/<run_name>/metrics.*)
    tensorboard: bool = False      # also write TensorBoard events (needs the tensorboard package)
    compile: str = "auto"          # auto (on for CUDA) | on | off: torch.compile
    peak_tflops: float = 0.0       # for MFU; 0 = known GPUs (H100/H200 989, A100 312 bf16 dense)
    seed: int = 1337
    device: str = "auto"           # auto | cpu | cuda
    run_name: str = "default"

    def __post_init__(self):
        for name in ("steps", "batch_size", "block_size", "eval_every", "eval_batches", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1")
        if self.tokens_per_step < 0 or self.ckpt_every < 0 or self.warmup_steps < 0:
            raise ConfigError("train.tokens_per_step, ckpt_every and warmup_steps must be >= 0")
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
