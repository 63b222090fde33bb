"""The GPT-2 paper's evaluation sets: each publisher's file format (small fixtures written
here), the units perplexity is normalized by (checked against the standard counts on
the real WikiText-2 and PTB test files), the protocols (LAMBADA's stop-word filter, CBT's
choice-and-rest scoring, HellaSwag's acc_norm) and the side-by-side table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

from webtext.model import evaluate as E
from webtext.model.evalsets import detokenize_ptb, detokenize_wikitext, fill, lm_text
from webtext.model.gpt import GPT, config_for
from webtext.model.paper import paper_column, side_by_side
from webtext.pipeline.errors import MissingInputError
from webtext.stages.benchmarks import Benchmark, load_registry, read_cbt, resolve, segments
from webtext.stages.tokenizer import encoder, resolve_tokenizer

WIKI = """ 
 = Robert <unk> = 
 
 Robert <unk> is an English film , television and theatre actor . He had a guest @-@ starring role on the television series The Bill in 2000 . 
 
 = = Career = = 
 
 In 2006 , <unk> starred in the play " Citizenship " , which drew 1 @,@ 500 people and 2 @.@ 5 % of the vote . 
"""
PTB = """ no it was n't black monday 
 but while the new york stock exchange did n't fall apart friday as the dow jones industrial average plunged N points 
 the company 's shares rose to $ N a share 
"""
ONE_BW = """The U.S. economy grew 3 % in the third quarter , officials said .
" We 're not done yet , " he said on Tuesday .
"""
CBT_CONTEXT = [
    "Once upon a time there lived a king who had three daughters .",
    "The youngest was the most beautiful of them all .",
    "`` Who are you ? '' said the frog .",
] + [f"The king walked to the well for the {i}th time ." for i in range(4, 21)]


def cbt_example(question: str, answer: str, cands: list[str]) -> str:
    lines = [f"{i} {s}" for i, s in enumerate(CBT_CONTEXT, 1)]
    return "\n".join(lines + [f"21 {question}\t{answer}\t\t{'|'.join(cands)}"]) + "\n\n"


CBT = (cbt_example("The XXXXX jumped into the well .", "frog", ["king", "frog", "daughter", "well", "time",
                                                               "queen", "ball", "water", "castle", "prince"])
       + cbt_example("`` XXXXX , '' said the king .", "daughter", ["daughter", "frog", "king", "well", "time",
                                                                   "queen", "ball", "water", "castle", "prince"]))
HELLASWAG = [
    {"ctx": "A man is sitting on a roof. he", "label": 3,
     "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                 "is holding a rubik's cube.", "starts pulling up roofing on a roof."]},
    {"ctx": "A woman is outside with a bucket and a dog. The dog is running around trying to avoid a bath. she",
     "label": 2, "endings": ["rinses the bucket off with soap and blow dry the dog's head.",
                             "uses a hose to keep it from getting soapy.", "gets the dog wet, then it runs away again.",
                             "gets into a bath tub with the dog."]},
]
LAMBADA = ["the cat sat on the mat and looked at the mat", "he opened the door and saw his old friend , the friend"]
ENWIK8 = ("<page>\n  <title>Zürich</title>\n  <text>'''Zürich''' is the largest city in Switzerland — "
          "[[Lake Zürich]].</text>\n</page>\n").encode() * 30
TEXT8 = "anarchism originated as a term of abuse first used against early working class radicals " * 40


def write_fixtures(root: Path) -> Path:
    """The registry's files under ``root``, in their publishers' formats."""
    files = {"wikitext-2/wiki.test.tokens": WIKI, "wikitext-103/wiki.test.tokens": WIKI, "ptb/ptb.test.txt": PTB,
             "1bw/news.en.heldout-00000-of-00050": ONE_BW, "cbt/cbtest_CN_test_2500ex.txt": CBT,
             "cbt/cbtest_NE_test_2500ex.txt": CBT, "text8/text8": TEXT8,
             "hellaswag/hellaswag_val.jsonl": "".join(json.dumps(h) + "\n" for h in HELLASWAG),
             "lambada/lambada_test.jsonl": "".join(json.dumps({"text": t}) + "\n" for t in LAMBADA)}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "enwik8").mkdir(exist_ok=True)
    (root / "enwik8" / "enwik8").write_bytes(ENWIK8)
    return root


@pytest.fixture
def bench(tmp_path):
    return write_fixtures(tmp_path / "benchmarks")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(config_for("tiny", block_size=64)).eval()


SPEC = resolve_tokenizer("gpt2")


def test_word_counts_are_the_standard_ones_on_the_real_test_files():
    reg = load_registry()
    base = str(shared_path("benchmarks"))
    wt2 = lm_text(resolve("wikitext2", base, reg))
    assert wt2.total_units() == 245_569 and lm_text(resolve("wikitext2-raw", base, reg)).total_units() == 245_569
    ptb = lm_text(resolve("ptb", base, reg))
    assert ptb.total_units() == 82_430
    # --limit counts the same units: the scored prefix's share matches the whole file's.
    for t in (wt2, ptb):
        ids = encoder(SPEC)([t.text])[0]
        assert t.units_in_prefix(len(t.text)) == t.total_units()
        prefix = E.decoder(SPEC)(ids[:30_000])
        per_token = t.units_in_prefix(len(prefix)) / 30_000
        assert per_token == pytest.approx(t.total_units() / len(ids), rel=0.1)


def test_detokenizers_keep_every_line(bench):
    wiki = detokenize_wikitext(WIKI)
    assert wiki.split("\n")[1] == "= Robert <unk> ="
    assert wiki.split("\n")[5] == "== Career =="
    assert "guest-starring role" in wiki and "1,500 people and 2.5% of the vote." in wiki
    assert 'the play "Citizenship", which' in wiki
    assert wiki.count("\n") == WIKI.count("\n")
    assert detokenize_ptb(PTB).split("\n")[2] == "the company's shares rose to $N a share"
    one = detokenize_ptb(ONE_BW).split("\n")
    assert one[:2] == ["The U.S. economy grew 3% in the third quarter, officials said.",
                       "\"We're not done yet,\" he said on Tuesday."]
    real = shared_path("benchmarks", "ptb", "ptb.test.txt").read_text(encoding="utf-8")
    assert detokenize_ptb(real).count("\n") == real.count("\n")


def test_every_format_reads_and_counts_its_units(bench):
    reg = load_registry(evalsets=True)
    units = {n: lm_text(resolve(n, str(bench), reg)) for n in ("wikitext2", "wikitext103", "ptb", "1bw", "enwik8", "text8")}
    assert units["wikitext2"].total_units() == len(WIKI.split()) + WIKI.count("\n")
    assert units["ptb"].total_units() == len(PTB.split()) + 3 and units["1bw"].total_units() == len(ONE_BW.split()) + 2
    assert units["enwik8"].unit == "byte" and units["enwik8"].total_units() == len(ENWIK8)
    assert units["text8"].unit == "char" and units["text8"].total_units() == len(TEXT8)
    # The standard splits: enwik8's test is its last 5M bytes, text8's its last 5M characters.
    tail = lm_text(resolve("enwik8", str(bench), reg), tail=1000)
    assert tail.total_units() == 1000 and tail.text.encode("utf-8", "replace").endswith(ENWIK8[-500:])
    assert lm_text(resolve("text8", str(bench), reg), tail=700).text == TEXT8[-700:]
    # Decontamination reads the same files as segments.
    assert len(list(segments(resolve("cbt-cn", str(bench), reg)))) >= 2
    assert list(segments(resolve("hellaswag", str(bench), reg)))[0].endswith("starts pulling up roofing on a roof.")
    assert "hellaswag" not in load_registry()                       # decontaminate's default list is unchanged


def test_perplexity_sets_score_per_original_unit(bench, model):
    reg = load_registry(evalsets=True)
    for name in ("wikitext2", "wikitext103", "ptb", "1bw", "enwik8", "text8"):
        b = resolve(name, str(bench), reg)
        r = E.evaluate_benchmark(model, b, SPEC, stride=16)
        t = lm_text(b)
        ids = encoder(SPEC)([t.text])[0]
        nll, n = E.stream_nll(model, ids, SPEC.eot, 16)
        assert r["tokens"] == n == len(ids) and r["units"] == t.total_units()
        if t.unit == "word":
            assert r["word_ppl"] == pytest.approx(math.exp(nll / t.total_units()))
        else:
            assert r["bpc"] == pytest.approx(nll / math.log(2) / t.total_units())
    r = E.evaluate_benchmark(model, resolve("wikitext2", str(bench), reg), SPEC, limit=20)
    assert r["tokens"] == 20 and 0 < r["units"] < len(WIKI.split())


def test_cbt_scores_each_choice_with_the_rest_of_the_sentence(bench, model):
    items = list(read_cbt(bench / "cbt" / "cbtest_CN_test_2500ex.txt"))
    assert len(items) == 2 and len(items[0].context) == 20 and items[1].answer == "daughter"
    assert len(items[0].candidates) == 10
    assert fill("the XXXXX jumped .", "frog") == ("the", " frog jumped .")
    assert fill('"XXXXX," said he.', "Alice") == ('"', 'Alice," said he.')
    r = E.evaluate_benchmark(model, resolve("cbt-cn", str(bench), load_registry(evalsets=True)), SPEC)
    # The same choice by hand: log p(choice + rest of sentence | context + question up to the blank).
    enc, correct = encoder(SPEC), 0
    for ex in items:
        text = detokenize_ptb(" ".join(ex.context)) + " " + detokenize_ptb(ex.question)
        scores = []
        for c in ex.candidates:
            head, rest = fill(text, c)
            ctx, cont = [SPEC.eot] + enc([head])[0], enc([rest])[0]
            seq = (ctx + cont)[-65:]
            lp = F.log_softmax(model(torch.tensor([seq[:-1]]))[0][0, :, :50257], -1)
            scores.append(sum(lp[len(seq) - 1 - len(cont) + i, t].item() for i, t in enumerate(cont)))
        correct += ex.candidates[max(range(10), key=scores.__getitem__)] == ex.answer
    assert r["examples"] == 2 and r["accuracy"] == correct / 2
    bad = bench / "bad.txt"
    bad.write_text("1 a sentence .\n21 no blank here\tx\t\ta|b\n")
    with pytest.raises(MissingInputError, match="bad.txt:2 is not a CBT question line"):
        list(read_cbt(bad))


def test_hellaswag_acc_norm_is_the_mean_token_loss(bench, model):
    r = E.evaluate_benchmark(model, resolve("hellaswag", str(bench), load_registry(evalsets=True)), SPEC)
    enc, acc, acc_norm = encoder(SPEC), 0, 0
    for h in HELLASWAG:
        sums, means = [], []
        for e in h["endings"]:
            ctx, end = enc([h["ctx"]])[0], enc([" " + e])[0]
            logits = model(torch.tensor([ctx + end]))[0][0, :, :50257]
            loss = F.cross_entropy(logits[len(ctx) - 1:-1], torch.tensor(end), reduction="none")
            sums.append(loss.sum().item())
            means.append(loss.mean().item())
        acc += min(range(4), key=sums.__getitem__) == h["label"]
        acc_norm += min(range(4), key=means.__getitem__) == h["label"]
    assert r == {"benchmark": "hellaswag", "task": "multiple choice", "examples": 2, "acc": acc / 2,
                 "acc_norm": acc_norm / 2}


class Rigged(torch.nn.Module):
    """Predicts " the" first, then ``second``, everywhere."""

    def __init__(self, second: int):
        super().__init__()
        self.cfg = config_for("tiny", block_size=64)
        self.second = second

    def forward(self, x):
        logits = torch.zeros(*x.shape, self.cfg.padded_vocab)
        logits[..., 262] = 10.0                                          # " the"
        logits[..., self.second] = 9.0
        return logits, None


def test_lambada_stop_word_filter(bench):
    allowed = E.word_starts(SPEC, 50257)
    enc = encoder(SPEC)
    assert enc([" the"])[0] == [262] and not allowed[262] and not allowed[enc(["."])[0][0]]
    assert allowed[enc([" mat"])[0][0]] and not allowed[enc(["mat"])[0][0]]
    mat = enc([" mat"])[0]
    assert len(mat) == 1
    r = E.lambada(Rigged(mat[0]), ["the cat sat on the mat"], SPEC)
    assert r["accuracy"] == 0.0 and r["accuracy_stopword"] == 1.0      # " the" is filtered, " mat" is next
    r = E.evaluate_benchmark(GPT(config_for("tiny", block_size=64)).eval(),
                             resolve("lambada", str(bench), load_registry()), SPEC)
    assert r["examples"] == 2 and r["ppl"] > 1000


def test_side_by_side_table():
    results = [{"benchmark": "lambada", "task": "last word", "examples": 5153, "accuracy": 0.3256,
                "accuracy_stopword": 0.4012, "ppl": 40.06},
               {"benchmark": "wikitext2", "task": "perplexity", "tokens": 287_644, "units": 245_569, "unit": "word",
                "token_ppl": 25.0, "word_ppl": 30.12},
               {"benchmark": "enwik8", "task": "bits per character", "tokens": 10, "units": 5_000_000, "unit": "byte",
                "token_ppl": 2.0, "bpc": 1.2345},
               {"benchmark": "mine", "task": "perplexity", "tokens": 10, "units": 9, "unit": "word", "token_ppl": 2.0,
                "word_ppl": 3.0}]
    lines = side_by_side(results, 124_439_808)
    assert lines[0].split() == ["ours", "paper", "117M"]
    row = {line[:32].strip(): line[32:].split() for line in lines[1:-1]}
    assert row["LAMBADA (PPL)"] == ["40.06", "35.13"]
    assert row["LAMBADA (ACC, stop-word filter)"] == ["40.12%", "45.99%"]
    assert row["LAMBADA (ACC, no filter)"] == ["32.56%", "—"]
    assert row["WikiText2 (PPL)"] == ["30.12", "29.41"] and row["enwik8 (BPB)"] == ["1.23", "1.16"]
    assert row["mine (word_ppl)"] == ["3.00", "—"]
    assert "PTB (PPL)" not in row and "117M" in lines[-1]
    assert paper_column(10_000_000) == "117M" and paper_column(354_823_168) == "345M"
    assert paper_column(700_000_000) == "762M" and paper_column(2_000_000_000) == "1542M"
    big = side_by_side(results, 1_557_611_200)
    assert big[0].split()[-1] == "1542M" and big[1].split()[-2:] == ["40.06", "8.63"]


def test_registry_names_every_paper_set():
    reg = load_registry(evalsets=True)
    assert {n: reg[n]["format"] for n in E.EVAL_SETS} == {
        "lambada": "jsonl", "cbt-cn": "cbt", "cbt-ne": "cbt", "wikitext2": "wikitext-tokens", "ptb": "ptb",
        "enwik8": "enwik8", "text8": "text8", "wikitext103": "wikitext-tokens", "1bw": "1bw", "hellaswag": "hellaswag"}
    assert Benchmark("x", Path("x"), "cbt").format == "cbt"
