"""Shared fixtures: a loopback HTTP server with a request log, small shard builders,
and one small demo pipeline run reused by the contract tests."""

from __future__ import annotations

import contextlib
import gzip
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webtext.pipeline.config import load_config
from webtext.pipeline.executor import Context
from webtext.pipeline.schemas import DOCS, URLS
from webtext.stages import urls as U

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


KEY, SECRET = "AKIDWEBTEXTTEST", "s3cr3t-never-logged-5a1b"     # moto accepts any credentials


@contextlib.contextmanager
def moto_s3():
    """moto's S3 server on 127.0.0.1 (a real HTTP server speaking the S3 protocol) with a
    bucket ``webtext-test``: yields (pyarrow S3FileSystem, "host:port")."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    fs = pafs.S3FileSystem(access_key=KEY, secret_key=SECRET, region="us-east-1",
                           endpoint_override=f"{host}:{port}", scheme="http", allow_bucket_creation=True)
    fs.create_dir("webtext-test")
    try:
        yield fs, f"{host}:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def gcs_emulator():
    """gcp-storage-emulator (the GCS JSON API, in memory) on 127.0.0.1 with a bucket
    ``webtext-gs``: yields "host:port"."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket="webtext-gs")
    server.start()
    try:
        yield f"127.0.0.1:{server._api._httpd.server_address[1]}"
    finally:
        server.stop()


def s3_url(endpoint: str, prefix: str) -> str:
    """A work directory in the moto bucket, credentials in the URL (they must never be logged)."""
    return f"s3://{KEY}:{SECRET}@webtext-test/{prefix}?endpoint_override={endpoint}&scheme=http&region=us-east-1"


def pipeline_outputs(workdir: Path) -> dict:
    """Every data file of the stages after fetch by sha256, and fetch's logs without timings
    and offsets (WARC records carry their fetch date, and pages land in a segment in the
    order they complete, so only what was fetched is compared there)."""
    import hashlib

    out = {}
    for folder in ("urls", "docs", "dedup", "clean", "tokens"):
        for p in sorted((workdir / folder).rglob("*")):
            rel = p.relative_to(workdir)
            meta = rel.parts[2:3] if rel.parts[1:2] == ("_meta",) else ()     # <stage>/_meta/<name>
            if p.is_file() and not {"done", "partial", "config.json", "stats.json"} & set(meta) \
                    and "_versions" not in rel.parts:
                out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    logs = pa.concat_tables(pq.read_table(f) for f in sorted((workdir / "warc").glob("fetchlog-*.parquet")))
    out["fetchlog"] = sorted(map(str, logs.drop_columns(["elapsed_ms", "wait_ms", "fetched_at", "warc_offset"]).to_pylist()))
    return out


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"../shared/data/{'/'.join(parts)} is not present")
    return p


def make_context(workdir: Path, workers: int = 1, **sections) -> Context:
    return Context(workdir, load_config(None, {"run": {"workers": workers}, **sections}))


def run_fetch(tmp_path: Path, table: pa.Table, **cfg):
    """One fetch shard over ``table`` (URLS rows) with the tests' defaults (loopback allowed,
    no politeness delay, quick retries) overridden by ``cfg``: (stats, fetch log rows by
    url, the shard's WARC segments). The log has the FETCHLOG schema and the shard is final."""
    from webtext.pipeline.config import FetchConfig, to_dict
    from webtext.pipeline.executor import Task
    from webtext.pipeline.schemas import FETCHLOG, stored
    from webtext.stages import fetch

    src = tmp_path / "urls-00000.parquet"
    pq.write_table(table, src)
    log = tmp_path / "fetchlog-00000.parquet"
    base = {"allow_private": True, "backoff_s": 0.01, "host_delay_s": 0.0, "archive": "off"}
    options = {"fetch": to_dict(FetchConfig(**{**base, **cfg}))}
    stats = fetch.fetch_shard(Task("fetch", "00000", fetch.fetch_shard, [src], [log], options=options))
    out = pq.read_table(log)
    assert out.schema.equals(stored(FETCHLOG))
    assert not (tmp_path / "_meta" / "partial" / "00000").exists()        # finalized
    return stats, {r["url"]: r for r in out.to_pylist()}, sorted(tmp_path.glob("warc-00000-*.warc.gz"))


def kill_fetch_after(argv: list[str], work: Path, lines: int, cwd: Path) -> str:
    """Start ``webtext fetch`` (``argv``) on the work directory ``work``, SIGKILL its
    process group once shard 00000's journal holds ``lines`` outcomes (or after 60 s),
    and return the journal as the kill left it."""
    import os
    import signal
    import subprocess

    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    journal = work / "warc" / "_meta" / "partial" / "00000" / "journal.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not journal.exists() or journal.read_text().count("\n") < lines):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return journal.read_text()


def url_table(urls: list[str], score: int = 10) -> pa.Table:
    rows = [{"url_id": U.url_id(u), "url": u, "domain": U.host(u), "registered_domain": U.host(u),
             "score": score, "num_submissions": 1, "first_seen": 1_700_000_000 + i,
             "last_seen": 1_700_000_000 + i, "subreddits": ["test"], "submission_ids": [f"s{i}"],
             "title": f"t{i}", "harvest_version": 1, "fetch_url": u} for i, u in enumerate(urls)]
    return pa.Table.from_pylist(rows, schema=URLS)


def doc_row(doc_id: str, text: str, karma: int = 10, url: str | None = None, first_seen: int = 1_700_000_000,
            source: str = "live", captured_at: int | None = None) -> dict:
    url = url or f"http://site.example/{doc_id}"
    return {"doc_id": doc_id, "url": url, "final_url": url, "domain": U.host(url), "title": doc_id,
            "text": text, "lang": "en", "lang_score": 0.9, "num_words": len(text.split()),
            "extractor": "trafilatura", "karma": karma, "num_submissions": 1, "first_seen": first_seen,
            "subreddits": ["test"], "source": source, "captured_at": captured_at}


def doc_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=DOCS)


@dataclass
class Route:
    status: int = 200
    body: bytes = b"<html><body><p>ok</p></body></html>"
    headers: dict = field(default_factory=lambda: {"Content-Type": "text/html; charset=utf-8"})
    gzip: bool = False
    fail_times: int = 0            # answer 503 this many times first
    delay: float = 0.0             # seconds to wait before answering
    reset: bool = False            # close the connection with a TCP reset instead of answering
    trickle: float = 0.0           # send the body one byte every this many seconds


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):   # clients hanging up are expected
        pass


class LoopbackHandler(BaseHTTPRequestHandler):
    """An HTTP/1.1 handler that logs nothing and answers with ``respond``."""
    protocol_version = "HTTP/1.1"

    def respond(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class LoopbackServer:
    """A real threaded HTTP server on 127.0.0.1 (a random port) running ``handler``."""

    def start(self, handler) -> None:
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class LoopbackWeb(LoopbackServer):
    """A real HTTP server on 127.0.0.1 that logs every request it receives (path, host)."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str]] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                path = self.path
                if path.startswith("http"):   # absolute-form: we are being used as a proxy
                    path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
                web.log.append((path, self.headers.get("Host", "")))
                route = web.routes.get(path, Route(404, b"not found"))
                if route.delay:
                    time.sleep(route.delay)
                if route.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if route.fail_times > 0:
                    route.fail_times -= 1
                    status, body, headers = 503, b"busy", {"Retry-After": "0"}
                else:
                    status, body, headers = route.status, route.body, dict(route.headers)
                    if route.gzip:
                        body = gzip.compress(body)
                        headers["Content-Encoding"] = "gzip"
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if route.trickle:
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(route.trickle)
                    return
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.start(Handler)


@pytest.fixture
def loopback_web():
    web = LoopbackWeb()
    yield web
    web.close()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A small demo pipeline (60 articles) run through shard with two workers."""
    from webtext.pipeline.demo import run_demo

    workdir = tmp_path_factory.mktemp("demo")
    run_demo(workdir, None, articles=60, steps=10, workers=2, until="shard")
    return workdir
