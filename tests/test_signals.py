"""stages/signals.py: hand-computed signals, agreement with the peers' definitions written out
naively, each rule on a crafted page and not on real articles, ``apply`` from signals alone
against a per-row reference, settings errors, and the default set's keep rate on real pages."""

from __future__ import annotations

import gzip
import random
import re
from collections import Counter

import pyarrow as pa
import pytest

from conftest import shared_path
from webtext.pipeline.errors import ConfigError
from webtext.stages import signals as S

T = "The cat sat on the mat.\nThe cat sat on the mat.\n\n- Dogs bark...\n#1 fan 42"   # 73 characters


def sig(text: str) -> dict:
    return S.compute([text]).to_pylist()[0]


def test_hand_computed_signals():
    s = sig(T)
    # tokens: 6 + 6 + "-", "Dogs", "bark...", "#1", "fan", "42" = 18; words (punctuation
    # stripped, "-" dropped): 17 of lengths 17 + 17 + 4 + 4 + 1 + 3 + 2 = 48
    assert s["word_count"] == 17 and s["mean_word_length"] == pytest.approx(48 / 17)
    assert s["stopword_count"] == 1                      # "the" ("The" lowercased); "on" is not one
    assert s["hash_word_ratio"] == s["ellipsis_word_ratio"] == s["symbol_word_ratio"] == pytest.approx(1 / 18)
    assert s["bullet_line_share"] == s["ellipsis_line_share"] == pytest.approx(1 / 5)   # splitlines keeps ""
    assert s["alpha_word_share"] == pytest.approx(15 / 18)                             # not "-", "#1", "42"
    assert (s["line_count"], s["para_count"]) == (4, 2)
    assert s["dup_line_frac"] == pytest.approx(1 / 4) and s["dup_line_char_frac"] == pytest.approx(23 / 73)
    assert s["dup_para_frac"] == s["dup_para_char_frac"] == 0
    # "The cat" (7 characters), "The cat sat" (11), "The cat sat on" (14), each twice
    assert s["top_2gram_frac"] == pytest.approx(14 / 73)
    assert s["top_3gram_frac"] == pytest.approx(22 / 73)
    assert s["top_4gram_frac"] == pytest.approx(28 / 73)
    # the second "The cat sat on the" (14 letters) repeats; the scan jumps past it, so the
    # repeated "cat sat on the mat." is not counted again; the 6-gram adds "mat." (18)
    assert s["dup_5gram_frac"] == pytest.approx(14 / 73) and s["dup_6gram_frac"] == pytest.approx(18 / 73)
    assert s["dup_7gram_frac"] == 0
    # C4: two lines kept (one sentence each); "- Dogs bark..." ends in an ellipsis, "#1 fan 42" bare
    assert (s["c4_line_count"], s["c4_no_punct_lines"], s["c4_kept_lines"], s["c4_sentence_count"]) == (4, 2, 2, 2)
    assert s["c4_kept_line_share"] == s["c4_punct_line_share"] == 0.5
    # FineWeb: "..." ends in "." (3 of 4 lines), all lines <= 30 characters, 23 duplicated
    # characters of 73 - 4 newlines, 4 newlines per 18 tokens
    assert s["line_punct_ratio"] == 0.75 and s["short_line_ratio"] == 1.0
    assert s["char_dup_ratio"] == pytest.approx(23 / 69) and s["newline_word_ratio"] == pytest.approx(4 / 18)


def test_c4_line_filters_in_order():
    text = ("Please enable JavaScript in your browser.\nRead our privacy policy for more.\n"
            "Lorem ipsum dolor sit amet.\nUse {braces} in code here.\nA citation follows here.[1]\n"
            "Too short.\nNo punctuation at the end\n" + "x" * 1001 + " word here.\n\n")
    s = sig(text)
    assert s["c4_line_count"] == 8                        # the blank line is not a line
    assert (s["c4_javascript_lines"], s["c4_policy_lines"], s["c4_few_words_lines"]) == (1, 1, 1)
    assert (s["c4_long_word_lines"], s["c4_no_punct_lines"], s["c4_kept_lines"]) == (1, 1, 3)
    assert s["c4_lorem_ipsum"] == s["c4_curly_brace"] == 1
    assert s["c4_punct_line_share"] == pytest.approx(7 / 8)   # "[1]" is removed before the test
    assert s["c4_sentence_count"] == 3


def test_empty_and_tiny_texts():
    t = S.compute(["", "   \n\n", "word"])
    assert t.schema == S.SCHEMA and t.num_rows == 3
    assert t.column("word_count").to_pylist() == [0, 0, 1]
    assert S.apply(t).to_pylist() == ["gopher_mean_word_length"] * 2 + ["gopher_stopwords"]


# ---------------------------------------------------------------- the peers' definitions, naively


def naive_repetition(text: str) -> dict[str, float]:
    """Gopher's table A1 written out directly: O(n) Counter passes, no hashing, words split
    on whitespace."""
    out = {}
    for key, items in (("para", re.split(r"\n{2,}", text.strip())), ("line", re.split(r"\n+", text))):
        seen, n, chars = set(), 0, 0
        for x in items:
            n, chars = (n + 1, chars + len(x)) if x in seen else (n, chars)
            seen.add(x)
        out[f"dup_{key}_frac"], out[f"dup_{key}_char_frac"] = n / len(items), chars / len(text)
    words = text.split()
    for n in range(2, 11):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if n <= 4:
            gram, count = Counter(grams).most_common(1)[0]
            out[f"top_{n}gram_frac"] = len(" ".join(gram)) * count / len(text)
            continue
        seen, i, chars = set(), 0, 0
        while i < len(grams):
            if grams[i] in seen:
                chars += sum(map(len, grams[i]))
                i += n
            else:
                seen.add(grams[i])
                i += 1
        out[f"dup_{n}gram_frac"] = chars / len(text)
    return out


def naive_fineweb(text: str) -> dict[str, float]:
    lines = [ln for ln in text.split("\n") if ln.strip()]
    dup = sum(len(ln) for i, ln in enumerate(lines) if ln in lines[:i])
    return {"line_punct_ratio": sum(ln.endswith((".", "!", "?")) for ln in lines) / len(lines),
            "short_line_ratio": sum(len(ln) <= 30 for ln in lines) / len(lines),
            "char_dup_ratio": dup / len(text.replace("\n", ""))}


REPETITIVE = ("Buy cheap watches online today and save big on every order you place with us. " * 6
              + "\n\nCall now.\nCall now.\nCall now.\n\nCall now.\n\nA different closing line with its own words.")


@pytest.mark.parametrize("text", [T, REPETITIVE, "one two three four five six " * 40])
def test_matches_naive_peer_definitions(text):
    s = sig(text)
    for name, value in {**naive_repetition(text), **naive_fineweb(text)}.items():
        assert s[name] == pytest.approx(value), name


def test_matches_naive_peer_definitions_on_real_pages(real_en):
    for text in real_en[:60]:
        s = sig(text)
        for name, value in naive_repetition(text).items():
            assert s[name] == pytest.approx(value), name


# ------------------------------------------------------------------------------------ rules

ARTICLE = ("The committee met on Tuesday to discuss the budget for the coming year, and members said that the "
           "proposal would have to be revised before it could be approved by the full council. ")
CRAFTED = {
    "gopher_word_count": "Too short to be a page.",
    "gopher_mean_word_length": "a b c d e f g h i j " * 10 + "the and of",
    "gopher_symbol_ratio": ARTICLE + "#news #today #budget #council #vote #city #local #politics " * 3,
    "gopher_bullet_lines": ARTICLE + "\n" + "- the item to have and to hold\n" * 20,
    "gopher_ellipsis_lines": "\n".join([ARTICLE] + ["Read the rest of the story and more..."] * 5),
    "gopher_alpha_words": ARTICLE + " 1 2 3 4 5 6 7 8 9 10" * 20,
    "gopher_stopwords": "Cheap watches sale discount free shipping best price buy now online store. " * 10,
    "gopher_dup_line_frac": "\n".join([ARTICLE, "Share", "Share", "Share", "Share", "Tweet"]),
    "gopher_dup_para_frac": "\n\n".join([ARTICLE, "Subscribe to the newsletter."] + ["Advertisement"] * 4),
    "gopher_dup_line_char_frac": "\n".join([ARTICLE, ARTICLE]),
    "gopher_dup_para_char_frac": "\n\n".join([ARTICLE.strip()] * 2),   # strip: the last paragraph is stripped
    "gopher_top_2gram": ARTICLE + "click here " * 40,
    "gopher_top_3gram": ARTICLE + "buy it now " * 40,
    "gopher_top_4gram": ARTICLE + "add to the cart " * 40,
    "c4_terminal_punct": "\n".join([ARTICLE, "Home", "News", "Sport", "Contact us"]),
    "c4_sentences": ARTICLE,
    "c4_javascript": ARTICLE + "\nPlease enable JavaScript to view the comments.",
    "c4_lorem_ipsum": ARTICLE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "c4_curly_brace": ARTICLE + "\nThe template prints {name} for each of the members.",
    "c4_policy": ARTICLE + "\nBy using this site you agree to our privacy policy.",
    "fineweb_line_punct": "\n".join([ARTICLE] + [f"Related story number {i}" for i in range(10)]),
    "fineweb_short_lines": "\n".join([ARTICLE] + ["Related story"] * 3),
    "fineweb_char_dup": "\n".join([ARTICLE, ARTICLE * 3, "Related: the budget vote.", "Related: the budget vote."]),
    "fineweb_list_ratio": ARTICLE + "\n" + "\n".join(f"word{i}" for i in range(40)),
    **{f"gopher_dup_{n}gram": ARTICLE + ARTICLE for n in range(5, 11)},
}


def test_every_rule_has_a_crafted_page():
    assert set(CRAFTED) == set(S.RULES)


@pytest.mark.parametrize("name", list(S.RULES))
def test_rule_fires_on_crafted_page(name):
    rule = S.RULES[name]
    value = sig(CRAFTED[name])[rule.signal]
    assert rule.drops(pa.array([value]).to_numpy(zero_copy_only=False).astype(float))[0], (name, value)
    only = {n: {"enabled": n == name} for n in S.RULES}
    assert S.apply(S.compute([CRAFTED[name]]), only).to_pylist() == [name]


ARTICLES = ["eval/bbc.com.52241221.html.gz", "eval/economist.com.thinking.html.gz", "eval/harpers.org.justice.html.gz"]


def test_no_rule_fires_on_real_articles():
    """Every rule, enabled or not, at its default threshold, keeps three real articles."""
    import trafilatura

    tests = shared_path("extraction", "trafilatura-eval", "tests")
    texts = [trafilatura.extract(gzip.decompress((tests / p).read_bytes()).decode("utf-8", "replace"), fast=True)
             for p in ARTICLES]
    every = {n: {"enabled": True} for n in S.RULES}
    assert S.apply(S.compute(texts), every).to_pylist() == [None] * len(texts)


def reference(rows: list[dict], settings: dict) -> list[str | None]:
    """The drop reason of each row, one rule and one row at a time."""
    out = []
    for row in rows:
        reason = None
        for rule in S.rules(settings):
            v = row[rule.signal]
            if rule.enabled and ((rule.min is not None and v < rule.min) or (rule.max is not None and v > rule.max)):
                reason = rule.name
                break
        out.append(reason)
    return out


def test_apply_reads_signals_only_and_matches_reference():
    texts = [T, REPETITIVE, *CRAFTED.values(), ARTICLE * 5]
    table = S.compute(texts)
    assert "text" not in table.column_names
    rng = random.Random(7)
    settings_list = [None, {n: {"enabled": True} for n in S.RULES}]
    for _ in range(20):
        pick = rng.sample(sorted(S.RULES), 8)
        settings_list.append({n: {"enabled": rng.random() < 0.7} for n in pick})
    settings_list.append({"gopher_dup_line_frac": {"enabled": True, "threshold": 0.1},
                          "gopher_word_count": {"enabled": True, "min": 10, "max": 60}})
    rows = table.to_pylist()
    for settings in settings_list:
        assert S.apply(table, settings).to_pylist() == reference(rows, settings or {})
    # a table read back from recorded signals, columns reordered and extra columns present
    recorded = table.select(list(reversed(table.column_names))).append_column("doc_id", pa.array(range(len(texts))))
    assert S.apply(recorded).to_pylist() == S.apply(table).to_pylist()
    counts = S.reasons_count(S.apply(table))
    assert sum(counts.values()) == len(texts)


@pytest.mark.parametrize("settings,message", [
    ({"gopher_nonsense": {"enabled": True}}, "unknown filter rule 'gopher_nonsense'"),
    ({"gopher_stopwords": {"treshold": 3}}, "has no setting 'treshold'"),
    ({"gopher_alpha_words": {"threshold": 1.5}}, "outside"),
    ({"gopher_dup_line_frac": {"max": -0.1}}, "outside"),
    ({"gopher_word_count": {"threshold": 10}}, "has two bounds"),
    ({"c4_policy": {"enabled": "yes"}}, "enabled must be true or false"),
    ({"c4_policy": {"threshold": "3"}}, "outside"),
    ({"c4_policy": True}, "takes a table of settings"),
])
def test_bad_settings(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        S.apply(S.compute([T]), settings)
    assert "\n" not in str(err.value)


def test_missing_signal_is_a_config_error():
    table = S.compute([T]).drop_columns(["stopword_count"])
    with pytest.raises(ConfigError, match="reads signal 'stopword_count'"):
        S.apply(table)
    assert S.apply(table, {"gopher_stopwords": {"enabled": False}}).to_pylist() == ["gopher_mean_word_length"]


# --------------------------------------------------------------------------- real pages


@pytest.fixture(scope="module")
def real_en() -> list[str]:
    """The English pages of trafilatura's evaluation set, extracted as the pipeline does."""
    import trafilatura

    from webtext.stages.extract import detect_language

    tests = shared_path("extraction", "trafilatura-eval", "tests")
    seen, out = set(), []
    for path in sorted(tests.glob("eval/*.html.gz")) + sorted(tests.glob("cache/*.html.gz")):
        text = trafilatura.extract(gzip.decompress(path.read_bytes()).decode("utf-8", "replace"), fast=True)
        if text and text not in seen and detect_language(text)[0] == "en":
            seen.add(text)
            out.append(text)
    return out


def test_defaults_keep_real_english_pages(real_en):
    assert len(real_en) >= 150
    reasons = S.apply(S.compute(real_en)).to_pylist()
    kept = sum(r is None for r in reasons)
    assert kept / len(real_en) >= 0.98, Counter(r for r in reasons if r)
