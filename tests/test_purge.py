"""``webtext remove --purge``: after it, no file in the work directory, decompressed, holds
a sentence of the removed page, and the work directory still works.

The scan reads every file as a user's tools would: gzip and zstd decompressed, Parquet's
string columns, Arrow token shards and nanoGPT ``.bin`` files decoded back to text with
GPT-2's BPE, HTML unescaped. Before the purge the same scan must find the sentences in
the WARC, docs, clean, the token shards and the nanoGPT export, so it cannot pass by
looking in the wrong place. Left out: ``runs/`` (model weights) and ``demo_input/`` (the
dumps and the benchmark file, inputs that hold no page text).
"""

import gzip
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import zstandard

from webtext.stages.tokenizer import gpt2_encoding

from conftest import ROOT

SKIP = ("runs", "demo_input")


def _webtext(work, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "webtext", "--workdir", str(work), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})


def _strings(t: pa.Table) -> list[str]:
    out = []
    for col in t.columns:
        typ = col.type
        if pa.types.is_list(typ) and (pa.types.is_string(typ.value_type) or pa.types.is_large_string(typ.value_type)):
            col = pa.chunked_array([c.flatten() for c in col.chunks], typ.value_type)
            typ = typ.value_type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            out.extend(v for v in col.to_pylist() if v)
    return out


def _file_text(p: Path, enc) -> str:
    """A file's content as text, decompressed and decoded the way a user's tool would."""
    name = p.name
    if name.endswith(".parquet"):
        return "\n".join(_strings(pq.read_table(p)))
    if name.endswith(".arrow"):
        with pa.memory_map(str(p)) as src:
            t = ipc.open_file(src).read_all()
        parts = _strings(t)
        if "tokens" in t.column_names:
            parts += [enc.decode(ids) for ids in t["tokens"].to_pylist()]
        return "\n".join(parts)
    if name.endswith(".bin"):
        return enc.decode(np.fromfile(p, dtype=np.uint16).tolist())
    data = p.read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    elif name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    return html.unescape(data.decode("utf-8", "replace"))


def _scan(work: Path, sentences: list[str]) -> dict[str, list[str]]:
    """file (relative) -> the sentences found in it."""
    enc = gpt2_encoding()
    found = {}
    for p in sorted(work.rglob("*")):
        rel = p.relative_to(work)
        if rel.parts[0] in SKIP or not p.is_file() or p.is_symlink():
            continue
        text = " ".join(_file_text(p, enc).split())
        hits = [s for s in sentences if s in text]
        if hits:
            found[rel.as_posix()] = hits
    return found


def _victim(work: Path) -> tuple[dict, list[str]]:
    """A document of the current corpus with at least two sentences that no other
    document (and not the benchmark file) contains."""
    docs = pq.read_table(sorted((work / "docs").rglob("docs-*.parquet")), columns=["doc_id", "url", "text"]).to_pylist()
    clean = {d["doc_id"] for d in pq.read_table(sorted((work / "clean").rglob("clean-*.parquet")), columns=["doc_id"]).to_pylist()}
    bench = (work / "demo_input" / "demo_benchmark.jsonl").read_text()
    norm = {d["doc_id"]: " ".join(d["text"].split()) for d in docs}
    for d in docs:
        if d["doc_id"] not in clean:
            continue
        sents = [s for s in re.split(r"(?<=[.!?])\s+", norm[d["doc_id"]]) if 50 <= len(s) <= 300]
        unique = [s for s in sents if s not in bench and not any(s in t for i, t in norm.items() if i != d["doc_id"])]
        if len(unique) >= 2:
            return d, unique[:4]
    raise AssertionError("no document with sentences of its own in the demo corpus")


def _warc_ok(work: Path) -> None:
    """Every WARC segment reads with digests checked; every fetch-log offset lands on a
    record for its URL."""
    from warcio.archiveiterator import ArchiveIterator

    for p in sorted((work / "warc").rglob("*.warc.gz")):
        with open(p, "rb") as f:
            for rec in ArchiveIterator(f, check_digests="raise"):
                rec.content_stream().read()
    for log in sorted((work / "warc").rglob("fetchlog-*.parquet")):
        for row in pq.read_table(log).to_pylist():
            if row["warc_file"] is None or row["warc_offset"] is None:
                continue
            path = next((work / "warc").rglob(Path(row["warc_file"]).name))
            with open(path, "rb") as f:
                f.seek(row["warc_offset"])
                rec = next(iter(ArchiveIterator(f)))
                assert rec.rec_type in ("response", "revisit", "resource")
                uri = rec.rec_headers.get_header("WARC-Target-URI")
                assert uri in (row["url"], row["final_url"]) or uri.split("://", 1)[1] in (
                    row["url"].split("://", 1)[1], (row["final_url"] or "").split("://", 1)[-1]), (uri, row)


def test_purge_leaves_no_trace_and_a_working_directory(demo_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(demo_run, work, symlinks=True)
    r = _webtext(work, "shard", "--export", "nanogpt")
    assert r.returncode == 0, r.stderr[-2000:]
    doc, sentences = _victim(work)

    before = _scan(work, sentences)
    seen = {k.split("/")[0] for k in before}
    assert {"warc", "docs", "clean", "tokens"} <= seen, before
    assert any(k.endswith(".bin") for k in before), before        # the nanoGPT export holds it too
    assert any(k.endswith(".warc.gz") for k in before)

    # the other scheme's URL: http and https are one page
    url = doc["url"]
    other = ("https://" + url[7:]) if url.startswith("http://") else ("http://" + url[8:])
    r = _webtext(work, "remove", "--url", other, "--purge", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "earlier corpus version" in r.stderr                     # v1's shards still hold it, and it says so
    purged = json.loads(r.stdout)["purge"]
    assert purged["documents"] == 1 and purged["warc_records"] >= 2   # the response and its request at least
    assert purged["rows"]["docs"] >= 1 and purged["rows"]["clean"] >= 1 and purged["kept_in_old_versions"]
    assert any("nanogpt" in k for k in purged["kept_in_old_versions"]) and purged["report_rewritten"]
    after = _scan(work, sentences)
    assert after and all(k.startswith("tokens/") for k in after), after
    manifest = json.loads((work / "tokens" / "manifest.json").read_text())
    assert len(manifest["versions"]) >= 2

    r = _webtext(work, "remove", "--url", other, "--purge", "--all-versions", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    purged = json.loads(r.stdout)["purge"]
    assert purged["nanogpt"] and purged["token_files"] and not purged["kept_in_old_versions"]
    assert _scan(work, sentences) == {}
    _warc_ok(work)
    warc_digests = {p.name: p.read_bytes() for p in (work / "warc").rglob("*.warc.gz")}

    # the work directory still runs: finished stages redo only what the purge touched, fetch nothing
    inp = work / "demo_input"
    r = _webtext(work, "run", "--skip-train", "--dumps", str(inp / "RS_2026-01.zst"),
                 "--benchmark", str(inp / "demo_benchmark.jsonl"), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"fetch: \d+ shard\(s\) already done, skipped", r.stderr), r.stderr[-3000:]
    assert {p.name: p.read_bytes() for p in (work / "warc").rglob("*.warc.gz")} == warc_digests
    assert _scan(work, sentences) == {}
    import datasets

    from webtext.model.data import read_manifest

    train = [str(work / "tokens" / f["file"]) for f in read_manifest(work / "tokens")["shards"] if f["split"] == "train"]
    ds = datasets.load_dataset("arrow", data_files=train, split="train", cache_dir=str(tmp_path / "hf"))
    assert doc["doc_id"] not in set(ds["doc_id"]) and len(ds) > 0


def test_purge_needs_a_takedown_and_all_versions_needs_purge(tmp_path):
    r = _webtext(tmp_path / "w", "remove", "--url", "https://a.example/x", "--all-versions")
    assert r.returncode == 2 and "--all-versions needs --purge" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
