"""shard: GPT-2 BPE Arrow IPC shards that round-trip, a stable split, and a manifest."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.demoweb import docstring_paragraphs
from pipeline.schemas import TOKENS
from stages import shard as S
from stages.tokenizer import EOT, gpt2_encoding

from conftest import doc_row, doc_table, make_context


def test_gpt2_encoding_is_the_official_one():
    enc = gpt2_encoding()
    assert enc.n_vocab == 50257 and enc.eot_token == EOT == 50256
    assert enc.encode_ordinary("Hello world") == [15496, 995]       # the well-known GPT-2 ids


def test_round_trip_split_and_manifest(tmp_path):
    paras = docstring_paragraphs()
    rows = [doc_row(f"d{i:03d}", paras[i], url=f"http://site{i}.example/p") for i in range(80)]
    (tmp_path / "clean").mkdir()
    pq.write_table(doc_table(rows[:40]), tmp_path / "clean" / "clean-00000.parquet")
    pq.write_table(doc_table(rows[40:]), tmp_path / "clean" / "clean-00001.parquet")
    ctx = make_context(tmp_path, shard={"val_fraction": 0.2})
    stats = S.run(ctx)
    assert stats["in"] == stats["out"] == 80
    enc = gpt2_encoding()
    texts = {r["doc_id"]: r["text"] for r in rows}
    seen, val_ids = {}, set()
    for f in sorted((tmp_path / "tokens").glob("*.arrow")):
        t = pa.ipc.open_file(pa.memory_map(str(f), "r")).read_all()   # plain pyarrow, memory-mapped
        assert t.schema.equals(TOKENS)
        for doc_id, toks in zip(t["doc_id"].to_pylist(), t["tokens"].to_pylist()):
            assert toks[-1] == EOT and EOT not in toks[:-1]           # one EOT, after the document
            seen[doc_id] = enc.decode(toks[:-1])
            if f.name.startswith("val"):
                val_ids.add(doc_id)
    assert seen == texts
    assert 5 <= len(val_ids) <= 30
    assert val_ids == {r["doc_id"] for r in rows if S.is_val(r["url"], 0.2)}
    m = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    assert m["tokenizer"] == "gpt2" and m["eot"] == EOT and len(m["shards"]) == 4
    total = sum(len(enc.encode_ordinary(t)) + 1 for t in texts.values())
    assert m["totals"]["train"]["tokens"] + m["totals"]["val"]["tokens"] == total
    assert m["totals"]["val"]["docs"] == len(val_ids)
    assert S.run(ctx)["tasks_run"] == 0


def test_split_is_stable_when_documents_are_added():
    urls = [f"http://s{i}.example/a" for i in range(2000)]
    before = {u for u in urls[:1000] if S.is_val(u, 0.05)}
    after = {u for u in urls if S.is_val(u, 0.05)}
    assert before == {u for u in after if u in set(urls[:1000])}
    assert 0.03 < len(after) / len(urls) < 0.07


def test_uint16_guard():
    with pytest.raises(ValueError, match="does not fit uint16"):
        S.token_table(["x"], [[1, 2, 70000]])
    t = S.token_table(["a", "b"], [[1, 2], []])
    assert t["tokens"].to_pylist() == [[1, 2, EOT], [EOT]]
    assert t["tokens"].type.value_type == pa.uint16()
    assert np.asarray(t["tokens"].combine_chunks().values).dtype == np.uint16
