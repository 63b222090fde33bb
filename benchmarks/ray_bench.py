"""Scale-out on Ray: extract and dedup signatures from 1 to 2 Ray workers, against the
local process pool at the same worker counts, and a paper estimate for a WebText-sized
run from measured per-core rates.

    python benchmarks/ray_bench.py [--pages 600] [--shards 4] [--sign-copies 40]

extract: real pages (../shared trafilatura eval set; generated articles without it)
archived into ``--shards`` WARC shards the way fetch writes them, then ``webtext
extract`` on a fresh work directory per configuration. Signatures: the extracted texts,
replicated into ``--shards`` docs shards, through dedup's signature phase alone.

Each Ray configuration starts its own local instance (``ray.init(num_cpus=k)``) before
the clock starts, so start-up is not counted; the local executor spawns its pool inside
the timed region (as a run does). The estimate multiplies measured or committed per-core
rates (each printed with its source) by the WebText volumes; the rates are arguments.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _context(workdir: Path, executor: str, workers: int):
    from webtext.pipeline.config import load_config
    from webtext.pipeline.executor import Context
    from rich.console import Console

    cfg = load_config(None, {"run": {"executor": executor, "workers": workers}})
    return Context(workdir, cfg, Console(stderr=True, quiet=True))


def _timed(executor: str, workers: int, fn):
    import ray

    if executor == "ray":
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR")
    try:
        t = time.perf_counter()
        n = fn()
        return n, time.perf_counter() - t
    finally:
        if executor == "ray":
            ray.shutdown()


def bench_extract(template: Path, tmp: Path, executor: str, workers: int) -> tuple[int, float]:
    from webtext.stages import extract

    work = tmp / f"extract-{executor}-{workers}"
    shutil.copytree(template, work)

    def go():
        ctx = _context(work, executor, workers)
        try:
            return extract.run(ctx)["in"]
        finally:
            ctx.close()
    return _timed(executor, workers, go)


def make_docs(docs_dir: Path, out: Path, shards: int, copies: int) -> tuple[int, int]:
    """``shards`` docs shards holding ``copies`` copies of every extracted document (new ids)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from webtext.pipeline.schemas import DOCS

    base = pa.concat_tables(pq.read_table(f) for f in sorted(docs_dir.glob("docs-*.parquet")))
    out.mkdir(parents=True)
    n = nbytes = 0
    for s in range(shards):
        parts = []
        for c in range(s, copies, shards):
            t = base.set_column(0, "doc_id", pc.binary_join_element_wise(base["doc_id"], pa.scalar(f"-{c}"), ""))
            parts.append(t)
        t = pa.concat_tables(parts).cast(DOCS)
        pq.write_table(t, out / f"docs-{s:05d}.parquet")
        n += t.num_rows
        nbytes += sum(len(x.as_py().encode()) for x in t["text"])
    return n, nbytes


def bench_signatures(docs: Path, tmp: Path, executor: str, workers: int) -> tuple[int, float]:
    from webtext.pipeline.config import DedupConfig
    from webtext.pipeline.executor import Task, run_phase
    from webtext.pipeline.io import shard_id
    from webtext.stages.dedup import sign_shard, signature_params

    work = tmp / f"sign-{executor}-{workers}"
    shutil.copytree(docs.parent, work)
    params = signature_params(DedupConfig())
    inputs = sorted((work / "docs").glob("docs-*.parquet"))

    def go():
        ctx = _context(work, executor, workers)
        try:
            out = work / "dedup"
            tasks = [Task("signatures", shard_id(s), sign_shard, [s], [out / "_signatures" / f"sig-{shard_id(s)}.parquet"],
                          params) for s in inputs]
            return run_phase(ctx, out, "signatures", tasks).stats.records_in
        finally:
            ctx.close()
    return _timed(executor, workers, go)


def estimate(rates: dict, cores: int, efficiency: float) -> list[tuple]:
    """(stage, work, rate per core, core-hours, wall hours on ``cores`` cores)."""
    urls, live, docs, tokens, lines = 45e6, 0.5, 8e6, 9e9, 45e6 / rates["harvest_keep"]
    rows = [
        ("harvest", f"{lines / 1e6:,.0f}M submissions (~{lines * rates['harvest_line_kb'] / 1e6:,.0f} GB)",
         f"{rates['harvest_lines']:,.0f} lines/s", lines / rates["harvest_lines"]),
        ("fetch", f"{urls / 1e6:,.0f}M URLs", f"{rates['fetch']:,.0f} pages/s", urls / rates["fetch"]),
        ("extract", f"{urls * live / 1e6:,.1f}M live pages", f"{rates['extract']:,.1f} docs/s",
         urls * live / rates["extract"]),
        ("dedup signatures", f"{docs / 1e6:,.0f}M documents", f"{rates['sign']:,.0f} docs/s", docs / rates["sign"]),
        ("shard", f"{tokens / 1e9:,.0f}B tokens", f"{rates['shard'] / 1e6:,.2f}M tokens/s", tokens / rates["shard"]),
    ]
    return [(s, w, r, secs / 3600, secs / 3600 / (cores * efficiency)) for s, w, r, secs in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=600)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--sign-copies", type=int, default=40, help="copies of the extracted texts to sign")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "extraction" / "trafilatura-eval" / "tests")
    ap.add_argument("--cluster-cores", type=int, default=256, help="cores of the cluster in the estimate")
    # committed single-core figures (benchmarks/results), used by the estimate
    ap.add_argument("--harvest-lines", type=float, default=83_573, help="harvest_bench.txt: lines/s per core")
    ap.add_argument("--harvest-keep", type=float, default=459_952 / 2_000_000, help="harvest_bench.txt: share kept")
    ap.add_argument("--harvest-line-kb", type=float, default=2.666, help="harvest_bench.txt: KB per dump line")
    ap.add_argument("--fetch-rate", type=float, default=679, help="fetch_bench.txt: pages/s per core")
    ap.add_argument("--shard-rate", type=float, default=1.38e6, help="shard_bench.txt: tokens/s per core")
    args = ap.parse_args()
    if args.sign_copies < args.shards:
        ap.error(f"--sign-copies must be at least --shards ({args.shards}): every docs shard holds whole copies")

    from extract_bench import archive, load_pages

    pages = load_pages(args.data, args.pages)
    kind = "real pages (trafilatura eval set)" if args.data.exists() else "generated articles"
    results = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        template = tmp / "template"
        archive(template, pages, args.shards)
        for executor in ("local", "ray"):
            for k in (1, 2):
                results["extract", executor, k] = bench_extract(template, tmp, executor, k)
        docs_root = tmp / "docs-root"
        n_docs, text_bytes = make_docs(tmp / "extract-local-1" / "docs", docs_root / "docs", args.shards,
                                       args.sign_copies)
        for executor in ("local", "ray"):
            for k in (1, 2):
                results["signatures", executor, k] = bench_signatures(docs_root / "docs", tmp, executor, k)

    print(f"ray scale-out benchmark: {os.cpu_count()} cores; extract: {len(pages):,} {kind} in {args.shards} WARC "
          f"shards; signatures: {n_docs:,} documents ({text_bytes / 1e6:,.1f} MB of text) in {args.shards} shards")
    print(f"{'what':34} {'1 worker':>12} {'2 workers':>12} {'scaling':>8}")
    unit = {"extract": "docs/s", "signatures": "docs/s"}
    for stage in ("extract", "signatures"):
        for executor in ("local", "ray"):
            (n1, t1), (n2, t2) = results[stage, executor, 1], results[stage, executor, 2]
            r1, r2 = n1 / t1, n2 / t2
            print(f"{f'{stage}, {executor} executor':34} {r1:12,.1f} {r2:12,.1f} {r2 / r1:7.2f}x   ({unit[stage]})")
    for stage in ("extract", "signatures"):
        (n1, t1) = results[stage, "ray", 1]
        (m1, s1) = results[stage, "local", 1]
        print(f"ray / local at 1 worker, {stage}: {(n1 / t1) / (m1 / s1):.2f}x")

    n, t = results["extract", "ray", 1]
    s_n, s_t = results["signatures", "ray", 1]
    eff = min(1.0, (results["extract", "ray", 2][0] / results["extract", "ray", 2][1]) / (n / t) / 2)
    rates = {"harvest_lines": args.harvest_lines, "harvest_keep": args.harvest_keep,
             "harvest_line_kb": args.harvest_line_kb, "fetch": args.fetch_rate, "extract": n / t,
             "sign": s_n / s_t, "shard": args.shard_rate}
    print(f"\npaper estimate, WebText scale (45M URLs, half of them live, 8M documents, 9B tokens), "
          f"on {args.cluster_cores} cores at the measured 1->2 worker efficiency {eff:.0%}:")
    print(f"{'stage':18} {'work':34} {'rate per core':>20} {'core-hours':>11} {'wall hours':>11}")
    total_ch = total_wall = 0.0
    for stage, work, rate, ch, wall in estimate(rates, args.cluster_cores, eff):
        print(f"{stage:18} {work:34} {rate:>20} {ch:11,.1f} {wall:11,.2f}")
        total_ch, total_wall = total_ch + ch, total_wall + wall
    print(f"{'total':18} {'':34} {'':>20} {total_ch:11,.1f} {total_wall:11,.2f}")
    print("rates: extract and signatures measured above (Ray, one worker); harvest, fetch and shard from "
          "benchmarks/results (harvest_bench, fetch_bench, shard_bench), one core each. fetch is CPU time only: "
          "politeness (2 connections and 1 s per host) and the 40-60% dead links make it network bound in practice.")


if __name__ == "__main__":
    main()
