"""dedup: exact and near duplicates removed, the kept document chosen by karma, clusters auditable."""

import random

import pyarrow.parquet as pq
import pytest

from webtext.pipeline.config import ConfigError
from webtext.pipeline.demoweb import docstring_paragraphs
from webtext.pipeline.io import read_parquet
from webtext.pipeline.schemas import CLUSTERS, DEDUP, VERIFIED, stored
from webtext.stages import dedup
from webtext.stages.ngrams import shingles, words

from conftest import doc_row, doc_table, make_context


def _edit(text, n, seed):
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), n):
        words[i] = f"changed{i}"
    return " ".join(words)


def _jaccard(a, b):
    sa, sb = set(shingles(words(a), 5)), set(shingles(words(b), 5))
    return len(sa & sb) / len(sa | sb)


def test_exact_and_near_duplicates(tmp_path):
    paras = docstring_paragraphs()
    base = " ".join(paras[0:6])        # ~300 words
    other = " ".join(paras[10:16])
    distinct = " ".join(paras[20:26])
    rows_a = [doc_row("a1", base, karma=5), doc_row("a2", other, karma=50)]
    rows_b = [
        doc_row("b1", base.upper() + "  ", karma=40),              # exact after normalization, more karma
        doc_row("b2", _edit(other, 3, 1), karma=5),                 # near duplicate of a2
        doc_row("b3", _edit(distinct, 60, 2), karma=5),             # far from everything
        doc_row("b4", distinct, karma=5, first_seen=1_600_000_000),
    ]
    (tmp_path / "docs").mkdir()
    pq.write_table(doc_table(rows_a), tmp_path / "docs" / "docs-00000.parquet")
    pq.write_table(doc_table(rows_b), tmp_path / "docs" / "docs-00001.parquet")
    ctx = make_context(tmp_path)
    stats = dedup.run(ctx)
    assert stats["in"] == 6 and stats["out"] == 4
    assert stats["dropped"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert (stats["info"]["lsh_bands"], stats["info"]["lsh_rows"]) == (18, 7)   # optimizer at lsh_threshold 0.6
    kept = pq.read_table(sorted((tmp_path / "dedup").glob("dedup-*.parquet")))
    assert kept.schema.equals(stored(DEDUP))
    assert sorted(kept["doc_id"].to_pylist()) == ["a2", "b1", "b3", "b4"]    # b1 beats a1 on karma
    clusters = pq.read_table(tmp_path / "dedup" / "_meta" / "clusters.parquet")
    assert clusters.schema.equals(CLUSTERS)
    got = {(r["doc_id"], r["cluster_id"], r["kept"], r["reason"], r["duplicate_of"]) for r in clusters.to_pylist()}
    assert got == {("a1", "b1", False, "exact_duplicate", "b1"), ("b1", "b1", True, None, None),
                   ("a2", "a2", True, None, None), ("b2", "a2", False, "near_duplicate", "a2")}
    sim = {r["doc_id"]: r["similarity"] for r in clusters.to_pylist()}
    assert sim["a1"] == 1.0 and sim["b1"] is None
    assert abs(sim["b2"] - _jaccard(rows_a[1]["text"], rows_b[1]["text"])) < 1e-6     # exact verification
    again = dedup.run(ctx)                                  # nothing recomputed
    assert again["tasks_run"] == 0 and again["out"] == 4


def test_near_duplicate_threshold_boundaries(tmp_path):
    """Pairs built at measured Jaccard ~0.9 merge; ~0.6 do not (threshold 0.8)."""
    paras = docstring_paragraphs()
    rows = []
    for k in range(6):
        text = " ".join(paras[30 + 6 * k: 36 + 6 * k])
        words = text.split()
        rows.append(doc_row(f"o{k}", text))
        rows.append(doc_row(f"near{k}", _edit(text, max(1, len(words) // 120), k)))   # J ~ 0.92
        rows.append(doc_row(f"far{k}", _edit(text, len(words) // 12, k + 100)))       # J ~ 0.55
    (tmp_path / "docs").mkdir()
    pq.write_table(doc_table(rows), tmp_path / "docs" / "docs-00000.parquet")
    by_id = {r["doc_id"]: r["text"] for r in rows}
    for k in range(6):     # the premise, measured: exact Jaccard of word 5-gram shingles
        assert _jaccard(by_id[f"o{k}"], by_id[f"near{k}"]) > 0.85
        assert _jaccard(by_id[f"o{k}"], by_id[f"far{k}"]) < 0.7
    dedup.run(make_context(tmp_path))
    c = pq.read_table(tmp_path / "dedup" / "_meta" / "clusters.parquet").to_pylist()
    dropped = {r["doc_id"] for r in c if not r["kept"]}
    assert {f"near{k}" for k in range(6)} | {f"o{k}" for k in range(6)} >= dropped
    assert not any(d.startswith("far") for d in dropped)
    assert len(dropped) == 6                                 # one of each original/near pair


def _at_jaccard(text, target, seed):
    """``text`` with words replaced, one more at a time, until the exact shingle Jaccard
    falls to ``target`` or just below; (variant, its measured Jaccard)."""
    rng = random.Random(seed)
    ws = text.split()
    order = rng.sample(range(len(ws)), len(ws))
    lo, hi = 0, len(ws)
    while lo < hi:                                  # fewest edits with J <= target
        mid = (lo + hi) // 2
        variant = list(ws)
        for i in order[:mid]:
            variant[i] = f"edit{i}"
        if _jaccard(text, " ".join(variant)) <= target:
            hi = mid
        else:
            lo = mid + 1
    variant = list(ws)
    for i in order[:lo]:
        variant[i] = f"edit{i}"
    out = " ".join(variant)
    return out, _jaccard(text, out)


def test_boundaries_at_075_and_085(tmp_path):
    """With the 0.8 default: pairs at exact Jaccard ~0.85 are merged, pairs at ~0.75 are not."""
    paras = docstring_paragraphs()
    rows, high, low = [], [], []
    for k in range(5):
        text = " ".join(paras[6 * k: 6 * k + 12])
        near, j_near = _at_jaccard(text, 0.86, k)
        far, j_far = _at_jaccard(text, 0.75, k + 50)
        assert 0.84 <= j_near <= 0.86 and 0.73 <= j_far <= 0.75      # the premise, measured
        rows += [doc_row(f"o{k}", text), doc_row(f"hi{k}", near), doc_row(f"lo{k}", far, karma=1)]
        high.append(f"hi{k}")
        low.append(f"lo{k}")
    (tmp_path / "docs").mkdir()
    pq.write_table(doc_table(rows), tmp_path / "docs" / "docs-00000.parquet")
    dedup.run(make_context(tmp_path))
    c = {r["doc_id"]: r for r in pq.read_table(tmp_path / "dedup" / "_meta" / "clusters.parquet").to_pylist()}
    for k in range(5):
        assert c[f"hi{k}"]["cluster_id"] == c[f"o{k}"]["cluster_id"]          # merged
        assert f"lo{k}" not in c                     # exact verification: deterministic at 0.75


def test_verify_modes_estimate_and_off(tmp_path):
    """``estimate`` records the MinHash estimate; ``off`` takes every LSH candidate, so
    pairs below the threshold that share a band are merged too; bad values are refused."""
    paras = docstring_paragraphs()
    rows = []
    for k in range(8):
        text = " ".join(paras[6 * k: 6 * k + 12])
        rows += [doc_row(f"o{k}", text), doc_row(f"lo{k}", _at_jaccard(text, 0.7, k + 50)[0], karma=1)]
    by_id = {r["doc_id"]: r["text"] for r in rows}
    (tmp_path / "docs").mkdir()
    pq.write_table(doc_table(rows), tmp_path / "docs" / "docs-00000.parquet")
    runs = {}
    for mode in ("exact", "estimate", "off"):
        dedup.run(_ctx_with_docs(tmp_path / mode, tmp_path / "docs", verify=mode))
        runs[mode] = {r["doc_id"]: r for r in read_parquet(tmp_path / mode / "dedup" / "_meta" / "clusters.parquet", CLUSTERS).to_pylist()}
    assert not runs["exact"]                                         # every pair is at J <= 0.7
    assert len(runs["off"]) >= 8                # P(candidate | J = 0.7) = 0.79 with 18 x 7: most merge
    assert all(r["similarity"] is None for r in runs["off"].values())
    for d, r in runs["estimate"].items():       # estimates can pass 0.8 only by chance; recorded as such
        if not r["kept"]:
            assert r["similarity"] >= 0.8 > _jaccard(by_id[d], by_id[r["duplicate_of"]])
    for bad in ({"verify": "maybe"}, {"verify": True}, {"lsh_threshold": 0.9}, {"keep": "best"}):
        with pytest.raises(ConfigError):
            make_context(tmp_path / "bad", dedup=bad)


def _ctx_with_docs(workdir, docs, **cfg):
    (workdir / "docs").mkdir(parents=True)
    for f in docs.glob("*.parquet"):
        (workdir / "docs" / f.name).write_bytes(f.read_bytes())
    return make_context(workdir, dedup=cfg)


def _shifted(n_words, shifts, seed):
    """Windows of one long real text, each ``shift`` words further on."""
    ws = " ".join(docstring_paragraphs()).split()
    start = random.Random(seed).randrange(len(ws) - n_words - max(shifts))
    return [" ".join(ws[start + s: start + s + n_words]) for s in shifts]


def test_no_removal_without_its_own_witness(tmp_path):
    """x ~ m and m ~ y at J >= 0.8, but x and y differ (J < 0.8). Union-find would drop y
    through m; the greedy rule keeps x and y and drops m, with x as its witness. And when x
    and y are already in the corpus, a newcomer m that bridges them removes neither."""
    x, m, y = _shifted(1000, (0, 75, 150), 3)
    assert _jaccard(x, m) >= 0.8 and _jaccard(m, y) >= 0.8 and _jaccard(x, y) < 0.8   # the premise
    _, kept = _dedup(tmp_path / "one", [[doc_row("x", x, karma=30), doc_row("m", m, karma=20),
                                         doc_row("y", y, karma=10)]])
    assert kept == ["x", "y"]
    c = {r["doc_id"]: r for r in pq.read_table(tmp_path / "one" / "dedup" / "_meta" / "clusters.parquet").to_pylist()}
    assert c["m"]["duplicate_of"] == "x" and c["m"]["reason"] == "near_duplicate"
    assert c["m"]["similarity"] == pytest.approx(_jaccard(x, m))
    assert {r["cluster_id"] for r in c.values()} == {"x"}          # one connected cluster for the audit

    _, kept = _dedup(tmp_path / "uf", [[doc_row("x", x, karma=30), doc_row("m", m, karma=20),
                                        doc_row("y", y, karma=10)]], keep="one_per_cluster")
    assert kept == ["x"]                                              # union-find's rule, on request
    c = {r["doc_id"]: r for r in pq.read_table(tmp_path / "uf" / "dedup" / "_meta" / "clusters.parquet").to_pylist()}
    assert c["y"]["duplicate_of"] == "x" and c["y"]["similarity"] is None    # x, y never verified
    assert c["m"]["similarity"] == pytest.approx(_jaccard(x, m))

    inc = tmp_path / "inc"
    _dedup(inc, [[doc_row("x", x, karma=1), doc_row("y", y, karma=1)]])
    before = (inc / "dedup" / "dedup-00000.parquet").read_bytes()
    stats, kept = _dedup(inc, [[doc_row("x", x, karma=1), doc_row("y", y, karma=1)], [doc_row("m", m, karma=99)]])
    assert kept == ["x", "y"] and stats["dropped"] == {"near_duplicate": 1}
    assert (inc / "dedup" / "dedup-00000.parquet").read_bytes() == before


def _corpus():
    paras = docstring_paragraphs()
    old = [doc_row(f"old{k}", " ".join(paras[5 * k: 5 * k + 8]), karma=10) for k in range(6)]
    new = [doc_row("new0", old[0]["text"].upper(), karma=99),               # exact dup of old0, more karma
           doc_row("new1", _edit(old[1]["text"], 2, 7), karma=1),             # near dup of old1
           doc_row("new2", " ".join(paras[40:48]), karma=5),                 # new and unique
           doc_row("new3", " ".join(paras[40:48]) + " ", karma=6)]           # exact dup among new docs
    return old, new


def _dedup(workdir, shards, **cfg):
    (workdir / "docs").mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(shards):
        pq.write_table(doc_table(rows), workdir / "docs" / f"docs-{i:05d}.parquet")
    stats = dedup.run(make_context(workdir, dedup=cfg))
    kept = pq.read_table(sorted((workdir / "dedup").glob("dedup-*.parquet")))
    return stats, sorted(kept["doc_id"].to_pylist())


def test_incremental_equals_full_run_and_never_resigns(tmp_path):
    old, new = _corpus()
    full_stats, full = _dedup(tmp_path / "full", [old, new], replace_existing=True)
    _dedup(tmp_path / "inc", [old], replace_existing=True)
    inc_stats, inc = _dedup(tmp_path / "inc", [old, new], replace_existing=True)
    assert inc == full == sorted(["old1", "old2", "old3", "old4", "old5", "new0", "new3"])
    assert inc_stats["info"]["docs_signed"] == len(new)           # the old shard was not re-signed
    assert full_stats["info"]["docs_signed"] == len(old) + len(new)
    clusters = lambda d: pq.read_table(d / "dedup" / "_meta" / "clusters.parquet").to_pylist()   # noqa: E731
    assert clusters(tmp_path / "inc") == clusters(tmp_path / "full")


def test_default_keeps_the_document_already_in_the_corpus(tmp_path):
    old, new = _corpus()
    _dedup(tmp_path, [old])
    before = (tmp_path / "dedup" / "dedup-00000.parquet").read_bytes()
    stats, kept = _dedup(tmp_path, [old, new])
    assert kept == sorted([f"old{k}" for k in range(6)] + ["new3"])   # new0 loses to old0 despite its karma
    assert stats["dropped"] == {"exact_duplicate": 2, "near_duplicate": 1}
    assert (tmp_path / "dedup" / "dedup-00000.parquet").read_bytes() == before    # old output not rewritten


_CYRILLIC = str.maketrans("abcdefghijklmnopqrstuvwxyz", "абцдефгхийклмнопярстуввхыз")


def test_non_latin_and_wordless_texts_are_not_merged(tmp_path):
    """Cyrillic or symbol-only documents have words (or a fallback shingle) of their own: under
    an ASCII-only word pattern every such text had the same empty signature and all merged."""
    assert words("Привет, МИР! café x_y 東京") == ["привет", "мир", "café", "x", "y", "東京"]
    paras = docstring_paragraphs()
    cyr = [" ".join(paras[8 * k: 8 * k + 8]).lower().translate(_CYRILLIC) for k in range(6)]
    rows = [doc_row(f"ru{k}", t) for k, t in enumerate(cyr)]
    rows += [doc_row("ru0copy", cyr[0].upper(), karma=1),                  # exact, once normalized
             doc_row("sym0", "★ ★ ☆ → ← ✓"), doc_row("sym1", "♪ ♫ ♬ … ✗ ✗"), doc_row("sym2", "★  ★ ☆ → ←  ✓")]
    stats, kept = _dedup(tmp_path, [rows])
    assert kept == sorted([f"ru{k}" for k in range(6)] + ["sym0", "sym1"])
    assert stats["dropped"] == {"exact_duplicate": 2}


def _texts():
    paras = docstring_paragraphs()
    out = [" ".join(paras[k: k + 4]) for k in range(0, 240, 4)]
    out += [t.translate(_CYRILLIC) for t in out[:10]]
    out += ["", "   ", "★ ☆ →", "One two", "東京タワー is tall. 東京タワー is tall!", "a b c d e", "a b c d e f",
            "don’t “quote” — dash… café NAÏVE x_y_z ÉCOLE école", "Ǆemal İstanbul ΣΊΣΥΦΟΣ straße 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ①②③ ٣٤٥ "
            "हिन्दी भाषा 😀 emoji😀inside"]
    return out


def test_vectorized_shingle_hashes_match_the_python_shingles(monkeypatch):
    """Per text, the numpy shingle hashes are the same set as doc_shingles (sizes and every
    pairwise intersection), on English, Cyrillic, CJK, Devanagari, emoji and wordless texts;
    chunking the byte passes finely changes nothing."""
    import numpy as np
    import pyarrow as pa

    from webtext.stages import ngrams

    texts = _texts()
    h, doc = ngrams.shingle_hashes(pa.array(texts), 5)
    at = np.searchsorted(doc, np.arange(len(texts) + 1))
    ours = [set(h[at[i]:at[i + 1]].tolist()) for i in range(len(texts))]
    ref = [set(ngrams.doc_shingles(t, 5)) for t in texts]
    assert [len(x) for x in ours] == [len(x) for x in ref]
    assert all(len(ours[i] & ours[j]) == len(ref[i] & ref[j]) for i in range(len(texts)) for j in range(i))
    monkeypatch.setattr(ngrams, "_CHUNK", 64)                   # many passes, texts cut between them
    h2, doc2 = ngrams.shingle_hashes(texts, 5)                  # a plain list works too
    assert np.array_equal(h, h2) and np.array_equal(doc, doc2)


def test_signatures_equal_datasketch_bulk():
    """The numpy path gives datasketch's own MinHash of the same shingle hashes."""
    import numpy as np
    import pyarrow as pa
    from datasketch import MinHash

    from webtext.stages import ngrams

    texts = _texts()
    h, doc = ngrams.shingle_hashes(texts, 5)
    at = np.searchsorted(doc, np.arange(len(texts) + 1))
    h32 = (h >> np.uint64(32)).astype(np.uint32)
    ref = MinHash.bulk([h32[at[i]:at[i + 1]].tolist() for i in range(len(texts))], num_perm=128, seed=3,
                       hashfunc=int, scheme="affine32")
    ours = dedup.minhashes(pa.array(texts), {"num_perm": 128, "seed": 3, "shingle_words": 5})
    assert np.array_equal(ours, np.stack([m.hashvalues for m in ref]))


def test_signatures_estimate_the_exact_jaccard():
    import numpy as np
    import pyarrow as pa

    paras = docstring_paragraphs()
    base = " ".join(paras[100:110])
    variants = [_at_jaccard(base, j, 7)[0] for j in (0.9, 0.8, 0.6, 0.3)]
    sig = dedup.minhashes(pa.array([base] + variants), {"num_perm": 128, "seed": 1, "shingle_words": 5})
    assert sig.shape == (5, 128) and sig.dtype == np.uint32
    for k, v in enumerate(variants, 1):
        est = (sig[0] == sig[k]).mean()
        assert abs(est - _jaccard(base, v)) < 0.15                 # 4 standard deviations at worst


def test_big_buckets_keep_one_copy(tmp_path):
    """40 copies of a page (exact, and near with one word changed each) overflow
    max_bucket_pairs (32), so LSH gives a star around one member, not every pair.
    Witness propagation still leaves exactly one copy of each."""
    paras = docstring_paragraphs()
    page, other = " ".join(paras[200:208]), " ".join(paras[300:308])
    rows = [doc_row(f"e{i:02d}", page + " " * (i % 3), karma=i) for i in range(40)]
    rows += [doc_row(f"n{i:02d}", other.replace(other.split()[50], f"variant{i}", 1), karma=i) for i in range(40)]
    stats, kept = _dedup(tmp_path, [rows[0::2], rows[1::2]])
    assert kept == ["e39", "n39"]                                  # the highest karma of each
    assert stats["dropped"] == {"exact_duplicate": 39, "near_duplicate": 39}
    assert stats["info"]["witness_rounds"] >= 1
    c = pq.read_table(tmp_path / "dedup" / "_meta" / "clusters.parquet").to_pylist()
    assert {r["duplicate_of"] for r in c if not r["kept"]} == {"e39", "n39"}


def test_verification_is_partitioned_and_independent_of_the_partition_count(tmp_path):
    """Candidate pairs go to ``partitions`` verify tasks by a hash of the pair's docs shards: each task
    reads only its own row groups, and a pair found in many bands is verified in one task
    only. Components go to ``partitions`` resolve tasks whole. The outcome is the same with
    1 or 7 partitions."""
    import numpy as np

    old, new = _corpus()
    one_stats, one = _dedup(tmp_path / "one", [old, new], partitions=1)
    many_stats, many = _dedup(tmp_path / "many", [old, new], partitions=7)
    assert one == many
    clusters = lambda d: sorted(pq.read_table(d / "dedup" / "_meta" / "clusters.parquet").to_pylist(),   # noqa: E731
                                key=lambda r: (r["cluster_id"], r["doc_id"]))
    assert clusters(tmp_path / "one") == clusters(tmp_path / "many")
    assert one_stats["info"]["clusters"] == many_stats["info"]["clusters"] >= 3
    resolved = [pq.read_table(f) for f in sorted((tmp_path / "many" / "dedup" / "_meta" / "resolved").glob("*.parquet"))]
    assert 2 <= len(resolved) <= 7 and all(t.num_rows > 0 for t in resolved)     # spread over tasks; none empty
    homes = [set(t["cluster_id"].to_pylist()) for t in resolved]
    assert sum(map(len, homes)) == len(set().union(*homes))                       # a cluster is resolved whole
    drops = lambda d: sorted(p.name for p in (d / "dedup" / "_meta" / "drops").glob("*.parquet"))   # noqa: E731
    assert drops(tmp_path / "one") == drops(tmp_path / "many")
    for f in (tmp_path / "one" / "dedup" / "_meta" / "drops").glob("*.parquet"):
        assert pq.read_table(f).equals(pq.read_table(tmp_path / "many" / "dedup" / "_meta" / "drops" / f.name))
    for k in ("lsh_candidate_pairs", "lsh_verified_pairs", "exact_pairs"):
        assert one_stats["info"][k] == many_stats["info"][k] > 0
    ver = [tmp_path / "many" / "dedup" / "_meta" / "verified" / f"verified-{i:03d}.parquet" for i in range(7)]
    assert 1 <= sum(f.exists() for f in ver) < 7          # a partition with no duplicate pair writes no file
    seen = set()
    for i, f in enumerate(ver):
        t = read_parquet(f, VERIFIED)
        pairs = set(zip(t["a"].to_pylist(), t["b"].to_pylist()))
        assert not pairs & seen                                  # every pair verified once
        seen |= pairs
        if len(t):
            part = dedup.pair_partition(t["a"].to_numpy(), t["b"].to_numpy(), 7)
            assert (part == i).all()
    assert len(seen) == one_stats["info"]["lsh_verified_pairs"] + one_stats["info"]["exact_pairs"]
    # a pairs file holds one row group per verify partition present in it
    for f in (tmp_path / "many" / "dedup" / "_meta" / "pairs").glob("pairs-*.parquet"):
        meta = pq.ParquetFile(f).metadata
        parts = [pq.read_table(f).column("part").to_numpy()]
        assert meta.num_row_groups == max(1, len(np.unique(parts[0])))
        assert dedup.read_part(f, 3)["part"].to_pylist() == [3] * int((parts[0] == 3).sum())


def test_batched_text_hashes_equal_text_hash():
    """The exact-text hash on a batch's bytes (pyarrow lowercasing, numpy whitespace
    collapsing) equals Python's ``" ".join(text.lower().split())``, including the
    characters where the two lowercasings differ, which take the Python path."""
    import pyarrow as pa

    from webtext.stages.dedup_sign import text_hash, text_hashes

    rng = random.Random(7)
    alphabet = list("aZ \t\n\r\x0b\x0c\x1c\x1f\x85\xa0éÉİΣσẞ日😀Ǆ\u2028\u3000-.")
    texts = ["", "  ", " \x1c ", "A\x1cB", "a\tb\n\nc ", "\x0b\x0cq\r", "İstanbul", "ΟΔΟΣ x", "a\u00a0b",
             "😀 Emoji  Z", "ẞ STRASSE", "Ǆ ǅ", "K\u212a", "x" * 3000 + "  \n"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    texts += docstring_paragraphs()[:50]
    assert text_hashes(pa.array(texts)) == [text_hash(t) for t in texts]
