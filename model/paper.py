"""The GPT-2 paper's Table 3 and ``webtext eval``'s side-by-side table.

In: ``run_eval``'s results and the model's parameter count. Out: lines of text, our
figure beside the paper's column for the nearest model size (117M for anything smaller).
The paper's sizes are its own names; the released models have 124M, 355M, 774M and
1,558M parameters (embeddings included), which is what we compare the count against.
"""

from __future__ import annotations

import math

# Table 3 of "Language Models are Unsupervised Multitask Learners" (zero-shot).
# LAMBADA (PPL), LAMBADA (ACC), CBT-CN (ACC), CBT-NE (ACC), WikiText2 (PPL), PTB (PPL),
# enwik8 (BPB), text8 (BPC), WikiText103 (PPL), 1BW (PPL).
COLUMNS = ("lambada_ppl", "lambada_acc", "cbt-cn", "cbt-ne", "wikitext2", "ptb", "enwik8", "text8",
           "wikitext103", "1bw")
TABLE3 = {
    "117M": (35.13, 45.99, 87.65, 83.4, 29.41, 65.85, 1.16, 1.17, 37.50, 75.20),
    "345M": (15.60, 55.48, 92.35, 87.1, 22.76, 47.33, 1.01, 1.06, 26.37, 55.72),
    "762M": (10.87, 60.12, 93.45, 88.0, 19.93, 40.31, 0.97, 1.02, 22.05, 44.575),
    "1542M": (8.63, 63.24, 93.30, 89.05, 18.34, 35.76, 0.93, 0.98, 17.48, 42.16),
}
RELEASED = {"117M": 124_439_808, "345M": 354_823_168, "762M": 774_030_080, "1542M": 1_557_611_200}

# (benchmark, row label, result key, Table 3 column or None, shown as a percentage)
ROWS = (
    ("lambada", "LAMBADA (PPL)", "ppl", "lambada_ppl", False),
    ("lambada", "LAMBADA (ACC, stop-word filter)", "accuracy_stopword", "lambada_acc", True),
    ("lambada", "LAMBADA (ACC, no filter)", "accuracy", None, True),
    ("cbt-cn", "CBT-CN (ACC)", "accuracy", "cbt-cn", True),
    ("cbt-ne", "CBT-NE (ACC)", "accuracy", "cbt-ne", True),
    ("wikitext2", "WikiText2 (PPL)", "word_ppl", "wikitext2", False),
    ("ptb", "PTB (PPL)", "word_ppl", "ptb", False),
    ("enwik8", "enwik8 (BPB)", "bpc", "enwik8", False),
    ("text8", "text8 (BPC)", "bpc", "text8", False),
    ("wikitext103", "WikiText103 (PPL)", "word_ppl", "wikitext103", False),
    ("1bw", "1BW (PPL)", "word_ppl", "1bw", False),
    ("hellaswag", "HellaSwag (acc_norm)", "acc_norm", None, True),
)


def paper_column(n_params: int) -> str:
    """The Table 3 column nearest ``n_params`` (in log scale); 117M for anything smaller."""
    if n_params <= RELEASED["117M"]:
        return "117M"
    return min(RELEASED, key=lambda k: abs(math.log(n_params / RELEASED[k])))


def _fmt(v: float, pct: bool) -> str:
    return f"{100 * v:.2f}%" if pct else f"{v:,.2f}"


def side_by_side(results: list[dict], n_params: int) -> list[str]:
    """Our figures beside the paper's column: one line per figure, then a line per set
    that is not in Table 3 (a user's file) with its main figure."""
    col = paper_column(n_params)
    paper = dict(zip(COLUMNS, TABLE3[col]))
    by_name = {r["benchmark"]: r for r in results}
    rows = [("", "ours", f"paper {col}")]
    for name, label, key, pcol, pct in ROWS:
        r = by_name.get(name)
        if r is None or key not in r:
            continue
        theirs = "—" if pcol is None else (f"{paper[pcol]:.2f}%" if pct else f"{paper[pcol]:,.2f}")
        rows.append((label, _fmt(r[key], pct), theirs))
    known = {name for name, *_ in ROWS}
    for r in results:
        if r["benchmark"] not in known:
            key = next(k for k in ("word_ppl", "bpc", "accuracy", "acc_norm") if k in r)
            rows.append((f"{r['benchmark']} ({key})", _fmt(r[key], key.startswith("acc")), "—"))
    width = max(len(a) for a, _, _ in rows)
    lines = [f"{a:<{width}}  {b:>9}  {c:>11}" for a, b, c in rows]
    lines.append(f"paper column: Table 3, {col} (nearest to this model's {n_params / 1e6:,.1f}M parameters); "
                 "LAMBADA's paper accuracy uses a stop-word filter (ours: see docs/train.md)")
    return lines


def detail_lines(results: list[dict]) -> list[str]:
    """What each figure was computed over (tokens, units, examples)."""
    out = []
    for r in results:
        if "units" in r:
            out.append(f"{r['benchmark']}: {r['tokens']:,} tokens over {r['units']:,} {r['unit']}s "
                       f"(token perplexity {r['token_ppl']:,.2f})")
        else:
            out.append(f"{r['benchmark']}: {r['examples']:,} examples")
    return out
