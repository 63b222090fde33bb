"""``webtext remove --purge``: a takedown's page leaves every stored form, not only the corpus.

A plain takedown (``webtext remove``) keeps the page out of the next corpus version and
out of every later harvest and fetch; the bytes stay where they were. A purge also takes
them out of what is already stored, for every takedown recorded in the state database:

- **WARC** (``warc/``): each segment that holds a record of a covered page is rewritten
  without it. Records are copied byte for byte (one gzip member each), so the rest keep
  their digests; a record goes when its ``WARC-Target-URI`` (normalized) is covered, when
  the fetch log points at it for a covered URL (a redirect's target included), or when it
  is concurrent to or refers to a record that goes (its request, its revisits). The fetch
  log's ``warc_offset`` follows the records that stay.
- **Parquet** in ``docs/``, ``dedup/`` and ``clean/`` (data and bookkeeping) and the fetch
  log: rows whose ``url``, ``final_url`` or ``fetch_url`` a takedown covers, or whose
  ``doc_id``/``url_id`` is a covered document's, are dropped (a file left with no rows is
  removed). ``urls/`` and the fetch frontier hold URLs and submission titles, not page
  text; harvest and fetch already drop taken-down URLs there.
- **Token shards** (Arrow IPC, ``tokens/``): rows of covered documents are dropped from the
  tokenizer's parts and from the current version; with ``all_versions`` from every
  earlier version too (else they stay as they were, and the summary says how many hold
  the page). The manifests' sizes and hashes follow, and every nanoGPT ``.bin`` export
  of a rewritten version is written again.
- **The report** (``reports/report.html``), which quotes documents, is written again.

What a purge cannot reach: models already trained on the page (``runs/``), copies outside
the work directory, and the stage inputs (dumps). Tasks whose inputs changed run again at
the next ``webtext run`` or ``refresh`` (extract, dedup and decontaminate redo the shards a
purge touched), except fetch: its completion records are updated, so nothing is fetched
again. Memory: one record batch of one file at a time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from webtext.stages import urls as U
from webtext.stages.takedowns import Matcher, Takedown, matching_docs

from . import layout
from .io import atomic_path, sha256_file

# Where page text or its records live. urls/ and the fetch frontier hold only URLs and
# submission titles: harvest and fetch drop taken-down URLs there themselves, and a
# rewrite would make harvest and fetch run again.
PURGED_FOLDERS = ("warc", "docs", "dedup", "clean")
ID_COLUMNS = ("doc_id", "url_id")
URL_COLUMNS = ("url", "final_url", "fetch_url")


@dataclass
class PurgeResult:
    warc_records: int = 0
    warc_files: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)          # stage folder -> rows dropped
    files_removed: list[str] = field(default_factory=list)      # left with no rows
    rewritten: list[str] = field(default_factory=list)          # Parquet files rewritten
    token_files: list[str] = field(default_factory=list)
    kept_in_old_versions: list[str] = field(default_factory=list)
    nanogpt: list[str] = field(default_factory=list)
    report: bool = False
    documents: int = 0

    def as_dict(self) -> dict:
        return {"documents": self.documents, "warc_records": self.warc_records, "warc_files": self.warc_files,
                "rows": self.rows, "files_removed": self.files_removed, "token_files": self.token_files,
                "kept_in_old_versions": self.kept_in_old_versions, "nanogpt": self.nanogpt,
                "report_rewritten": self.report}


def purge(workdir: Path, takedowns: list[Takedown], all_versions: bool = False, log=print) -> PurgeResult:
    """Take the pages of ``takedowns`` out of every stored form under ``workdir`` (see the module docstring)."""
    workdir = Path(workdir)
    res = PurgeResult()
    m = Matcher(takedowns)
    if not m:
        return res
    docs = set(matching_docs(_doc_tables(workdir), takedowns)[0])     # the covered documents present
    res.documents = len(docs)
    ids = _covered_ids(workdir, m, docs)
    offsets, log_hits = _purge_warc(workdir, m, ids, res)
    for folder in PURGED_FOLDERS:
        base = workdir / folder
        files = _fetchlogs(base) if folder == "warc" else sorted(base.rglob("*.parquet")) if base.is_dir() else []
        for p in files:
            _purge_parquet(p, m, ids, offsets.get, res, folder, log_hits.get(p))
    _purge_tokens(workdir / "tokens", ids, all_versions, res)
    if res.warc_files or res.rows.get("warc"):
        _update_fetch_records(workdir / "warc", res)
    if (workdir / "reports" / "report.html").exists():
        from .report import write_report

        write_report(workdir)
        res.report = True
    log(f"purge: {res.documents} document(s); {res.warc_records} WARC record(s) from {len(res.warc_files)} file(s); "
        f"{sum(res.rows.values())} Parquet row(s); {len(res.token_files)} token shard(s) rewritten")
    return res


# -- which documents -------------------------------------------------------------------

def _doc_tables(workdir: Path) -> list[Path]:
    """Parquet files of the DOCS/CLEAN schemas (they carry url, final_url and domain)."""
    out = []
    for folder in ("docs", "clean"):
        for p in sorted((workdir / folder).rglob("*.parquet")) if (workdir / folder).is_dir() else []:
            names = set(pq.read_schema(p).names)
            if {"doc_id", "url", "final_url", "domain"} <= names:
                out.append(p)
    return out


def _covered_ids(workdir: Path, m: Matcher, docs: set[str]) -> set[str]:
    """doc_ids (= url_ids) of every covered document (``docs``), and the url_ids of covered
    URLs anywhere (urls/), both scheme variants of a ``url`` takedown included."""
    ids = set(m.url_ids()) | docs
    for p in sorted((workdir / "urls").glob("*.parquet")) if (workdir / "urls").is_dir() else []:
        t = pq.read_table(p, columns=[c for c in ("url_id", "url", "domain") if c in pq.read_schema(p).names])
        if "url_id" in t.column_names and "url" in t.column_names:
            hit = m.mask(t["url"], t["domain"] if "domain" in t.column_names else None)
            ids.update(t["url_id"].filter(pa.array(hit)).to_pylist())
    return ids


def _row_mask(t: pa.Table, m: Matcher, ids: set[str]) -> np.ndarray:
    """Rows of ``t`` (any schema) that belong to a covered page."""
    hit = np.zeros(t.num_rows, bool)
    if not t.num_rows:
        return hit
    want = pa.array(sorted(ids), pa.string())
    for c in ID_COLUMNS:
        if c in t.column_names and pa.types.is_string(t.schema.field(c).type):
            hit |= pc.fill_null(pc.is_in(t[c], value_set=want), False).to_numpy(zero_copy_only=False)
    host = t["domain"] if "domain" in t.column_names and pa.types.is_string(t.schema.field("domain").type) else None
    for c in URL_COLUMNS:
        if c not in t.column_names or not pa.types.is_string(t.schema.field(c).type):
            continue
        col = t[c].combine_chunks() if isinstance(t[c], pa.ChunkedArray) else t[c]
        valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
        if not valid.any():
            continue
        if c == "url":          # already normalized (the stages' contract)
            norm = pc.fill_null(col, "")
        else:                   # a raw form: normalized as takedowns compare URLs
            norm = pa.array([(U.normalize(u) or u) if u is not None else "" for u in col.to_pylist()], pa.string())
        hit |= m.mask(norm, host if c == "url" else None) & valid
    return hit


# -- WARC ------------------------------------------------------------------------------

def _fetchlogs(warc_dir: Path) -> list[Path]:
    return [p for p in sorted(warc_dir.rglob("*.parquet")) if {"warc_file", "warc_offset", "url"} <= set(pq.read_schema(p).names)]


def _purge_warc(workdir: Path, m: Matcher, ids: set[str],
                res: PurgeResult) -> tuple[dict[str, dict[int, int]], dict[Path, np.ndarray]]:
    """Rewrite the WARC segments holding covered records; returns per rewritten file (its
    name) the new offset of each record that stayed (old offset -> new), and per fetch log
    its covered rows (read once, for ``_purge_parquet`` too)."""
    warc_dir = workdir / "warc"
    if not warc_dir.is_dir():
        return {}, {}
    pointed: dict[str, set[int]] = {}           # warc file name -> offsets the fetch log gives covered URLs
    hits: dict[Path, np.ndarray] = {}
    for p in _fetchlogs(warc_dir):
        names = pq.read_schema(p).names
        t = pq.read_table(p, columns=[c for c in (*ID_COLUMNS, *URL_COLUMNS, "domain", "warc_file", "warc_offset")
                                      if c in names])
        hit = hits[p] = _row_mask(t, m, ids)
        for f, o in zip(t["warc_file"].filter(pa.array(hit)).to_pylist(), t["warc_offset"].filter(pa.array(hit)).to_pylist()):
            if f is not None and o is not None:
                pointed.setdefault(Path(f).name, set()).add(int(o))
    moved: dict[str, dict[int, int]] = {}
    for p in sorted(warc_dir.rglob("*.warc.gz")) + sorted(warc_dir.rglob("*.warc")):
        new = _rewrite_warc(p, m, pointed.get(p.name, set()), res)
        if new is not None:
            moved[p.name] = new
    return moved, hits


def _rewrite_warc(path: Path, m: Matcher, pointed: set[int], res: PurgeResult) -> dict[int, int] | None:
    from warcio.archiveiterator import ArchiveIterator

    spans: list[tuple[int, int, str, list[str]]] = []    # offset, length, record id, ids it points to
    drop_ids: set[str] = set()
    with open(path, "rb") as f:
        it = ArchiveIterator(f, check_digests=False)
        for rec in it:
            offset = it.get_record_offset()
            h = rec.rec_headers
            rid = h.get_header("WARC-Record-ID") or ""
            uri = h.get_header("WARC-Target-URI")
            refs = [v for k in ("WARC-Concurrent-To", "WARC-Refers-To") for v in [h.get_header(k)] if v]
            it.read_to_end(rec)
            spans.append((offset, it.get_record_length(), rid, refs))
            covered = offset in pointed
            if not covered and uri:
                norm = U.normalize(uri) or uri
                covered = bool(m.mask(pa.array([norm], pa.string()))[0])
            if covered:
                drop_ids.add(rid)
    # a record that points at a dropped one (its request, a revisit), and the other way round
    for _ in range(2):
        for _, _, rid, refs in spans:
            if rid in drop_ids:
                drop_ids.update(refs)
            elif any(r in drop_ids for r in refs):
                drop_ids.add(rid)
    if not drop_ids & {s[2] for s in spans}:
        return None
    new_offsets: dict[int, int] = {}
    dropped = 0
    with open(path, "rb") as src, atomic_path(path) as tmp, open(tmp, "wb") as out:
        for offset, length, rid, _ in spans:
            if rid in drop_ids:
                dropped += 1
                continue
            new_offsets[offset] = out.tell()
            src.seek(offset)
            left = length
            while left:
                chunk = src.read(min(left, 1 << 20))
                if not chunk:
                    break
                out.write(chunk)
                left -= len(chunk)
    res.warc_records += dropped
    res.warc_files.append(path.name)
    return new_offsets


# -- Parquet ---------------------------------------------------------------------------

def _purge_parquet(path: Path, m: Matcher, ids: set[str], moved, res: PurgeResult, folder: str,
                   hit: np.ndarray | None = None) -> None:
    """Drop the covered rows of one Parquet file (``hit``: already known), and move a fetch
    log's ``warc_offset`` with its rewritten segments (``moved``)."""
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    cols = [c for c in (*ID_COLUMNS, *URL_COLUMNS, "domain") if c in names]
    if "warc_file" in names and "warc_offset" in names:
        cols += ["warc_file"]
    if not cols:
        return
    t = pf.read(columns=cols)
    if hit is None:
        hit = _row_mask(t, m, ids)
    relocate = "warc_file" in cols and any(moved(Path(f).name) for f in set(t["warc_file"].to_pylist()) if f)
    if not hit.any() and not relocate:
        return
    schema = pf.schema_arrow
    kept_rows = 0
    tmp = path.with_name(f"{path.name}.purge-{os.getpid()}")
    writer = None
    try:
        start = 0
        for batch in pf.iter_batches(batch_size=65_536):
            keep = ~hit[start:start + batch.num_rows]
            start += batch.num_rows
            b = pa.Table.from_batches([batch], schema=schema).filter(pa.array(keep))
            if relocate and b.num_rows:
                offsets = []
                for f, o in zip(b["warc_file"].to_pylist(), b["warc_offset"].to_pylist()):
                    new = moved(Path(f).name) if f else None
                    offsets.append(new.get(o, o) if new is not None and o is not None else o)
                i = b.schema.get_field_index("warc_offset")
                b = b.set_column(i, b.schema.field(i), pa.array(offsets, b.schema.field(i).type))
            if not b.num_rows:
                continue
            if writer is None:
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            writer.write_table(b)
            kept_rows += b.num_rows
        if writer is not None:
            writer.close()
            writer = None
            os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    res.rewritten.append(str(path))
    if not kept_rows:               # no empty Parquet file is left behind
        path.unlink(missing_ok=True)
        res.files_removed.append(str(path))
    if hit.any():
        res.rows[folder] = res.rows.get(folder, 0) + int(hit.sum())


# -- tokens ----------------------------------------------------------------------------

def _latest_shards(tokens: Path) -> set[Path]:
    """Files of the current corpus version (resolved), from its manifest."""
    mpath = tokens / "manifest.json"
    if not mpath.exists():
        return set()
    from webtext.stages.shard import select_version

    man = select_version(json.loads(mpath.read_text()), 0)
    return {(tokens / s["file"]).resolve() for s in man["shards"]}


def _purge_tokens(tokens: Path, ids: set[str], all_versions: bool, res: PurgeResult) -> None:
    if not tokens.is_dir():
        return
    want = pa.array(sorted(ids), pa.string())
    latest = _latest_shards(tokens)
    changed: dict[str, dict] = {}          # path relative to tokens/ -> its new docs, tokens, sha256
    patterns: dict[str, np.ndarray] = {}   # doc_id -> its first tokens: how a nanoGPT export is searched
    parts = layout.meta(tokens, layout.PARTS)       # the tokenizer's parts
    for p in sorted(_real_files(tokens, "*.arrow"), key=lambda p: p.parent != parts):
        with pa.OSFile(str(p), "rb") as src:
            r = ipc.open_file(src)
            if "doc_id" not in r.schema.names:
                continue
            t = r.read_all()
        hit = pc.is_in(t["doc_id"], value_set=want).to_numpy(zero_copy_only=False)
        if not hit.any():
            continue
        for d, toks in zip(t["doc_id"].filter(pa.array(hit)).to_pylist(), t["tokens"].filter(pa.array(hit)).to_pylist()):
            patterns.setdefault(d, np.asarray(toks[:PATTERN], dtype=np.int64))
        is_current = p.parent == parts or p.resolve() in latest
        if not is_current and not all_versions:
            res.kept_in_old_versions.append(str(p.relative_to(tokens)))
            continue
        kept = t.filter(pa.array(~hit))
        with atomic_path(p) as tmp:
            with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, t.schema) as w:
                w.write_table(kept)
        res.token_files.append(str(p.relative_to(tokens)))
        n_tokens = int(pc.sum(pc.list_value_length(kept["tokens"])).as_py() or 0)
        changed[p.relative_to(tokens).as_posix()] = {"docs": kept.num_rows, "tokens": n_tokens, "sha256": sha256_file(p)}
    if changed:
        _update_manifests(tokens, changed)
        from webtext.stages.tokenlayout import refresh

        refresh(tokens)            # version folders' manifests and the dataset card follow
    _purge_nanogpt(tokens, list(patterns.values()), all_versions, latest, res)


def _real_files(base: Path, pattern: str) -> list[Path]:
    """``base.rglob(pattern)`` without what it reaches through a symlink (``tokens/latest``
    is one to the current version's folder: each file once)."""
    out = []
    for p in base.rglob(pattern):
        rel = p.relative_to(base)
        if not any((base / Path(*rel.parts[:i + 1])).is_symlink() for i in range(len(rel.parts))):
            out.append(p)
    return out


PATTERN = 64            # tokens of a purged document looked for in a nanoGPT export


def _holds(path: Path, patterns: list[np.ndarray]) -> bool:
    """Whether a flat token file holds any pattern (a document's first tokens), read in
    blocks that overlap by a pattern's length."""
    if not patterns or not path.exists():
        return False
    flat = np.memmap(path, dtype=np.uint16, mode="r") if path.stat().st_size else np.empty(0, np.uint16)
    block = 1 << 24
    for pat in patterns:
        n = len(pat)
        if not n:
            continue
        for lo in range(0, len(flat), block):
            chunk = np.asarray(flat[lo:lo + block + n - 1], dtype=np.int64)
            if len(chunk) < n:
                break
            starts = np.flatnonzero(chunk[: len(chunk) - n + 1] == pat[0])
            for k in range(1, n):
                if not len(starts):
                    break
                starts = starts[chunk[starts + k] == pat[k]]
            if len(starts):
                return True
    return False


def _update_manifests(tokens: Path, changed: dict[str, dict]) -> None:
    """Every manifest.json under tokens/ that lists a rewritten shard gets its new counts and hash."""
    from webtext.stages.shard import _totals

    for mpath in [tokens / "manifest.json", *sorted(tokens.glob("*/manifest.json"))]:
        if not mpath.exists():
            continue
        base = mpath.parent
        man = json.loads(mpath.read_text())
        entries = [*man.get("shard_files", {}).values(), *[s for s in man.get("shards", []) if isinstance(s, dict)]]
        dirty = False
        for info in entries:
            new = changed.get((base / info["file"]).relative_to(tokens).as_posix()) if "file" in info else None
            if new:
                info.update(new)
                dirty = True
        if dirty:
            if isinstance(man.get("totals"), dict) and man.get("shards") and isinstance(man["shards"][0], dict):
                man["totals"] = _totals(man["shards"])
            with atomic_path(mpath) as tmp:
                tmp.write_text(json.dumps(man, indent=2, sort_keys=True) + "\n")


def _purge_nanogpt(tokens: Path, patterns: list[np.ndarray], all_versions: bool, latest: set[Path],
                   res: PurgeResult) -> None:
    """Every nanoGPT export (``nanogpt/{train,val}.bin``) that holds a purged document is
    written again from its version's shards (a version folder's own; in a flat tokens/
    folder, the current version's). An earlier version's export stays, and is counted,
    unless ``all_versions``."""
    from webtext.stages.shard import export_nanogpt, select_version

    mpath = tokens / "manifest.json"
    if not patterns or not mpath.exists():
        return
    full = json.loads(mpath.read_text())
    for exp in sorted(p for p in _real_files(tokens, "nanogpt") if p.is_dir()):
        if not any(_holds(b, patterns) for b in sorted(exp.glob("*.bin"))):
            continue
        man = select_version(full, 0)
        for v in full.get("versions", []):           # the version whose folder holds this export
            m = select_version(full, v["version"])
            if m.get("folder") and (tokens / m["folder"]).resolve() == exp.parent.resolve():
                man = m
        files = [(s["split"], tokens / s["file"]) for s in man["shards"]]
        current = all((f.resolve() in latest) for _, f in files)
        if not current and not all_versions:
            res.kept_in_old_versions.append(str(exp.relative_to(tokens)))
            continue
        export_nanogpt(exp.parent, files, man["dtype"])
        res.nanogpt.append(str(exp.relative_to(tokens)))


# -- fetch's completion records ---------------------------------------------------------

def _update_fetch_records(warc_dir: Path, res: PurgeResult) -> None:
    """The fetch tasks whose WARC segment or fetch log a purge rewrote stay done: their
    completion records get the new sizes (a removed log is dropped from its record)."""
    from .executor import update_recorded_outputs

    rewritten = set(res.warc_files) | {Path(f).name for f in res.rewritten}
    files = {p.name: p for p in [*warc_dir.rglob("*.warc.gz"), *warc_dir.rglob("*.warc"), *_fetchlogs(warc_dir)]
             if p.name in rewritten}
    gone = {Path(f).name for f in res.files_removed if Path(f).is_relative_to(warc_dir)}
    update_recorded_outputs(warc_dir, files, gone)
