"""Extract's keep-or-reject decision, made from recorded signals alone (no text, no HTML).

In:  a table of extracted pages with ``num_words``, ``lang``, ``lang_score``, ``signals``
     (``SIGNALS``), ``doc_id`` and, when ``webtext classifier score --in-place`` added it,
     ``quality_score``; and an ``ExtractConfig``.
Out: ``decide(table, cfg)``: the drop reason per row (null: keep), the first failing check
     in this order:

0. ``ai_optout``: with ``extract.ai_optout = "drop"``, the signals' ``ai_optout`` (``stages.optout``);
1. ``too_short``: ``num_words < min_words``;
2. ``wrong_lang``: ``langs`` is set and the language is not in it or scores under ``min_lang_score``;
3. ``short_lines``, ``boilerplate_lines``: ``stages.quality``'s line shares over
   ``max_short_line_share`` / ``max_boilerplate_line_share``;
4. ``stages.signals.RULES``, in their order, each enabled one by its name (``gopher_stopwords``...);
   ``gopher_stopwords`` (English stop words) only on documents whose language is ``en``;
5. ``quality_pareto``: GPT-3's Pareto rule on ``quality_score`` (``stages.classifier``), off by
   default, and only where the column exists (a row without a score is kept).

Extract calls it on the pages of a shard after extraction; ``webtext filter``
(``stages.refilter``) calls it again on the recorded signals of docs/ and docs/rejected/.

``extract.rules`` configures 3-5 by name: ``{enabled, threshold}`` for every rule (``min``/``max``
for the two-sided ones, see ``signals.rules``), plus ``alpha`` and ``seed`` for ``quality_pareto``.
A ``threshold`` for ``short_lines`` or ``boilerplate_lines`` takes precedence over
``max_short_line_share``/``max_boilerplate_line_share``. The deprecated ``gopher = true``
enables every ``gopher_*`` rule that ``rules`` does not name.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webtext.pipeline.errors import ConfigError

from . import optout, quality, signals

PII_FIELDS = [pa.field("pii_email", pa.int32()), pa.field("pii_ip", pa.int32()), pa.field("pii_phone", pa.int32())]
# One struct per document, with the AI opt-outs (stages.optout.FIELDS: fetch's robots.txt verdicts
# and tdmrep.json, the page's noai, TDMRep and license links).
SIGNALS = pa.struct([*signals.SCHEMA, *quality.FIELDS, *PII_FIELDS, *optout.FIELDS])
OPTOUT = "ai_optout"          # the reason with extract.ai_optout = "drop", checked before all others

LINE_RULES = {"short_lines": ("short_line_share", "max_short_line_share"),
              "boilerplate_lines": ("boilerplate_line_share", "max_boilerplate_line_share")}
PARETO = "quality_pareto"
LOCAL_RULES = (*LINE_RULES, PARETO)
CHECKS = ("too_short", "wrong_lang")
# Rules that hold for English text only: not applied to a document in another language.
ENGLISH_ONLY = ("gopher_stopwords",)      # the stop words are English ones


def compute(texts: list[str], pii_counts: dict[str, list[int]], short_line_words: int,
            optouts: list[dict] | None = None) -> pa.StructArray:
    """The ``SIGNALS`` of each text; ``pii_counts`` from ``pii.scan_many`` ({} when off: nulls);
    ``optouts``: each page's ``optout.combine`` record (None: nulls)."""
    table = signals.compute(texts)
    cols = {name: table.column(name).combine_chunks() if table.num_columns else pa.array([])
            for name in table.column_names}
    for name, values in quality.compute(texts, short_line_words).items():
        cols[name] = pa.array(values, pa.float64())
    for f in PII_FIELDS:
        cols[f.name] = pa.array(pii_counts.get(f.name, [None] * len(texts)), f.type)
    for f in optout.FIELDS:
        cols[f.name] = pa.array([o[f.name] for o in optouts] if optouts else [None] * len(texts), f.type)
    return pa.StructArray.from_arrays([cols[f.name] for f in SIGNALS], fields=list(SIGNALS))


def check_rules(settings: dict) -> None:
    """Raise ConfigError (one line) on an unknown rule, key or value in ``extract.rules``."""
    if not isinstance(settings, dict):
        raise ConfigError(f"extract.rules must be a table of rules, not {settings!r}")
    for name, over in settings.items():
        if name not in LOCAL_RULES and name not in signals.RULES:
            raise ConfigError(f"unknown filter rule {name!r}", f"known rules: {', '.join(rule_names()[2:])}")
        if name not in LOCAL_RULES:
            continue
        if not isinstance(over, dict):
            raise ConfigError(f"filter rule {name!r} takes a table of settings, not {over!r}")
        keys = ("enabled", "alpha", "seed") if name == PARETO else ("enabled", "threshold")
        for key, value in over.items():
            if key not in keys:
                raise ConfigError(f"filter rule {name!r} has no setting {key!r}", f"use {', '.join(keys)}")
            if key == "enabled":
                ok = isinstance(value, bool)
            elif key == "seed":
                ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32
            else:
                ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (
                    0 < value <= 100 if key == "alpha" else 0 <= value <= 1)
            if not ok:
                raise ConfigError(f"filter rule {name!r}: {key} = {value!r} is not allowed",
                                  "enabled is true or false; a line share is in [0, 1]; alpha in (0, 100]")
    signal_rules(settings)


def signal_rules(settings: dict, gopher: bool = False) -> list[signals.Rule]:
    """``signals.RULES`` with ``settings`` applied (``gopher``: the deprecated switch)."""
    own = {k: v for k, v in settings.items() if k not in LOCAL_RULES}
    if gopher:
        own = {**{n: {"enabled": True} for n in signals.RULES if n.startswith("gopher_")}, **own}
    return signals.rules(own)


def _setting(cfg, name: str, key: str, default):
    return (cfg.rules.get(name) or {}).get(key, default)


def rule_names() -> list[str]:
    """Every reason ``decide`` can give, in its order (``OPTOUT`` before them, when dropping)."""
    return [*CHECKS, *LINE_RULES, *signals.RULES, PARETO]


def decide(table: pa.Table, cfg, has_score: bool | None = None) -> pa.Array:
    """The drop reason of each row (see the module docstring); null to keep."""
    n = table.num_rows
    reason = np.full(n, None, dtype=object)

    def mark(name: str, hit) -> None:
        hit = np.asarray(hit, dtype=bool) & (reason == None)  # noqa: E711 -- elementwise
        reason[hit] = name

    if n and getattr(cfg, "ai_optout", "record") == "drop":       # the publisher's choice comes first
        recorded = table.column("signals").combine_chunks()
        if OPTOUT in [f.name for f in recorded.type]:              # signals from before it: nothing to drop
            flags = pc.struct_field(recorded, OPTOUT)
            mark(OPTOUT, pc.fill_null(flags, False).to_numpy(zero_copy_only=False))
    mark("too_short", table.column("num_words").to_numpy(zero_copy_only=False) < cfg.min_words)
    if cfg.langs:
        ok = pc.and_(pc.is_in(table.column("lang"), value_set=pa.array(cfg.langs, pa.string())),
                     pc.greater_equal(table.column("lang_score"), cfg.min_lang_score))
        mark("wrong_lang", ~pc.fill_null(ok, False).to_numpy(zero_copy_only=False))
    sig = pa.Table.from_struct_array(table.column("signals").combine_chunks()) if n else None
    if sig is not None:
        for name, (signal, key) in LINE_RULES.items():
            if _setting(cfg, name, "enabled", True):
                limit = _setting(cfg, name, "threshold", getattr(cfg, key))
                mark(name, sig.column(signal).to_numpy(zero_copy_only=False) > limit)
        rules = {k: v for k, v in cfg.rules.items() if k not in LOCAL_RULES}
        if cfg.gopher:
            rules = {**{r: {"enabled": True} for r in signals.RULES if r.startswith("gopher_")}, **rules}
        got = signals.apply(sig, rules).to_numpy(zero_copy_only=False)
        other = ~pc.fill_null(pc.equal(table.column("lang"), "en"), False).to_numpy(zero_copy_only=False)
        if other.any() and any(rules.get(r, {}).get("enabled", signals.RULES[r].enabled) for r in ENGLISH_ONLY):
            rest = signals.apply(sig, {**rules, **{r: {**rules.get(r, {}), "enabled": False} for r in ENGLISH_ONLY}})
            got = np.where(other, rest.to_numpy(zero_copy_only=False), got)
        mark_names = got != None  # noqa: E711
        for name in set(got[mark_names]):
            mark(name, got == name)
    if n and _setting(cfg, PARETO, "enabled", False) and "quality_score" in table.column_names:
        from .classifier import pareto_keep

        score = table.column("quality_score").to_numpy(zero_copy_only=False).astype(np.float64)
        scored = ~np.isnan(score)
        keep = pareto_keep(table.column("doc_id").to_pylist(), np.nan_to_num(score, nan=1.0),
                           float(_setting(cfg, PARETO, "alpha", 9.0)), int(_setting(cfg, PARETO, "seed", 0)))
        mark(PARETO, scored & ~keep)
    return pa.array(reason, pa.string())
