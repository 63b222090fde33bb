"""The parts of ``webtext compare``'s report about the reference documents themselves:
what identifies the missing ones, the model's perplexity on them, and the summary lines.

``ref`` below is ``pipeline.compare.Reference`` (offsets, chars, words, ended, domains of
the reference's valid documents, by index); ``found`` is a bool per document: it has a
near-duplicate in the corpus at the dedup threshold.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np

from .summary import num

TOP = 20                   # domains listed
EXAMPLES = 10              # ids of missing documents listed
LENGTH_BINS = (0, 1000, 2000, 5000, 10_000, 2**62)       # characters
# a hostname as texts name one ("reuters.com", "www.bbc.co.uk"): a hint to a document's source
_HOST = re.compile(r"\b((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
                   r"(?:com|org|net|gov|edu|io|co|uk|ca|au|de|us|info|tv))\b", re.I)
NO_DOMAIN = ("the reference lines carry no url or domain field (OpenAI's published WebText samples do not); "
             "a reference built from OpenWebText2 or your own crawl can, and then missing domains are listed")


def read_record(f, offset: int) -> dict:
    """The JSON object of the reference line at byte ``offset`` of the open file ``f``."""
    f.seek(offset)
    return json.loads(f.readline())


def read_text(f, offset: int) -> str:
    return read_record(f, offset)["text"]


def ref_id(ref, i: int):
    """Reference document i's ``id`` field (else its index among the valid documents)."""
    with ref.path.open("rb") as f:
        return read_record(f, int(ref.offsets[i])).get("id", i)


def _lengths(ref, mask: np.ndarray) -> dict:
    if not mask.any():
        return {"docs": 0}
    ch, hist = ref.chars[mask], np.histogram(ref.chars[mask], LENGTH_BINS)[0]
    bins = [f"{lo:,}-{hi:,}" if hi < 2**62 else f"{lo:,}+" for lo, hi in zip(LENGTH_BINS[:-1], LENGTH_BINS[1:])]
    return {"docs": int(mask.sum()), "median_chars": float(np.median(ch)), "median_words": float(np.median(ref.words[mask])),
            "chars_histogram": dict(zip(bins, (hist / mask.sum()).round(4).tolist()))}


def _ended(ref, mask: np.ndarray) -> float | None:
    e = ref.ended[mask]
    e = e[e >= 0]
    return float(e.mean()) if len(e) else None


def missing_features(ref, found: np.ndarray) -> dict:
    """What identifies the reference documents not found: their domains (when lines carry a
    url/domain field), lengths and ``ended`` next to the found ones', the host names their
    texts name (one count per document), and the first few ids."""
    miss = ~found
    out = {"docs": int(miss.sum()), "share": float(miss.mean()),
           "length": {"missing": _lengths(ref, miss), "found": _lengths(ref, found)},
           "ended_share": {"missing": _ended(ref, miss), "found": _ended(ref, found)}}
    dom = np.array(ref.domains, dtype=object)
    has = dom != ""
    out["with_domain"] = int(has.sum())
    if has.any():
        total, lost = Counter(dom[has].tolist()), Counter(dom[has & miss].tolist())
        out["domains"] = [{"domain": d, "missing": m, "reference": total[d], "found_share": round(1 - m / total[d], 4)}
                          for d, m in lost.most_common(TOP)]
    else:
        out["domains"], out["domains_note"] = [], NO_DOMAIN
    named, ids = Counter(), []
    with ref.path.open("rb") as f:
        for i in np.flatnonzero(miss).tolist():         # ascending offsets: one forward pass
            rec = read_record(f, int(ref.offsets[i]))
            named.update({h.lower().removeprefix("www.") for h in _HOST.findall(rec["text"])})
            if len(ids) < EXAMPLES:
                ids.append(rec.get("id", i))
    out["named_domains"] = [{"domain": d, "docs": n} for d, n in named.most_common(TOP)]
    out["examples"] = ids
    return out


def perplexity(ref, found: np.ndarray, name: str, ck: dict, model, device: str, docs: int, seed: int = 0) -> dict:
    """Perplexity per token (and bits per byte) of ``docs`` reference documents, a seeded
    sample, each scored alone after one EOT (``model.evaluate.stream_nll``), overall and
    for found and missing documents apart."""
    from webtext.model.evaluate import stream_nll, tokenizer_of
    from webtext.stages.tokenizer import encoder

    spec = tokenizer_of(ck)
    encode = encoder(spec)
    n = len(ref.offsets)
    pick = np.sort(np.random.default_rng(seed).choice(n, min(docs, n), replace=False))
    sums = {g: np.zeros(4) for g in ("all", "found", "missing")}     # nll (nats), tokens, bytes, docs
    with ref.path.open("rb") as f:
        for i in pick.tolist():
            text = read_text(f, int(ref.offsets[i]))
            ids = encode([text])[0]
            if not ids:
                continue
            nll, t = stream_nll(model, ids, spec.eot, device=device)
            for g in ("all", "found" if found[i] else "missing"):
                sums[g] += (nll, t, len(text.encode()), 1)

    def figures(s) -> dict:
        nll, t, b, d = s.tolist()
        return {"docs": int(d), "tokens": int(t), "token_ppl": math.exp(nll / t) if t else None,
                "bits_per_byte": nll / math.log(2) / b if b else None}

    return {"run_name": name, "tokenizer": spec.name, **figures(sums["all"]),
            "found": figures(sums["found"]), "missing": figures(sums["missing"])}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_lines(r: dict, path: str) -> list[str]:
    """The report for a person: a few lines."""
    bad = f"; {num(r['bad_lines'])} bad line(s) skipped: " + ", ".join(f"{k} {v}" for k, v in r["bad"].items()) \
        if r["bad_lines"] else ""
    lines = [f"compare: {num(r['reference_docs'])} reference documents ({r['reference']}{bad}) "
             f"vs {num(r['corpus_docs'])} corpus documents"]
    dedup_t = r["settings"]["dedup_threshold"]
    for t in r["thresholds"]:
        mark = "  (dedup threshold)" if t["jaccard"] == dedup_t else ""
        lines.append(f"  Jaccard >= {t['jaccard']:g}: reference found {_pct(t['reference_found_share'])} "
                     f"({num(t['reference_found'])}), corpus in reference {_pct(t['corpus_in_reference_share'])} "
                     f"({num(t['corpus_in_reference'])}){mark}")
    m = r["missing"]
    ml, fl = m["length"]["missing"], m["length"]["found"]
    line = f"  missing at {dedup_t:g}: {num(m['docs'])} documents"
    if ml["docs"]:
        line += f", median {num(ml['median_chars'])} characters" + (f" (found: {num(fl['median_chars'])})" if fl["docs"] else "")
    if m["ended_share"]["missing"] is not None:
        line += f"; ended {_pct(m['ended_share']['missing'])}"
    lines.append(line)
    if m["domains"]:
        lines.append("  missing domains: " + ", ".join(f"{d['domain']} {d['missing']}/{d['reference']}" for d in m["domains"][:10]))
    elif "domains_note" in m:
        lines.append("  missing domains: unknown: " + m["domains_note"])
    if m["named_domains"]:
        lines.append("  domains the missing texts name: " + ", ".join(f"{d['domain']} {d['docs']}" for d in m["named_domains"][:10]))
    p = r.get("perplexity")
    if p:
        def ppl(g):
            return f"{g['token_ppl']:.2f}" if g["token_ppl"] is not None else "-"

        lines.append(f"  perplexity of run {p['run_name']} on {num(p['docs'])} reference documents: {ppl(p)} per token, "
                     f"{p['bits_per_byte']:.3f} bits per byte (found {ppl(p['found'])}, missing {ppl(p['missing'])})")
    lines.append(f"report written: {path}")
    return lines
