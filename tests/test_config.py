import pytest

from webtext.pipeline.config import load_config
from webtext.pipeline.errors import ConfigError


def test_defaults_and_toml_and_overrides(tmp_path):
    p = tmp_path / "webtext.toml"
    p.write_text('[harvest]\nmin_score = 5\nscore_agg = "max"\n[fetch]\ntimeout_s = 3\n')
    cfg = load_config(p, {"harvest": {"min_score": 7, "num_shards": None}})
    assert cfg.harvest.min_score == 7            # flag beats file
    assert cfg.harvest.score_agg == "max"        # file beats default
    assert cfg.harvest.num_shards == 4           # None override = keep
    assert cfg.fetch.timeout_s == 3.0 and isinstance(cfg.fetch.timeout_s, float)
    assert cfg.dedup.threshold == 0.8


@pytest.mark.parametrize("text, needle", [
    ("[harvest]\nmin_scor = 3\n", "unknown key 'min_scor' in [harvest]"),
    ("[harvest]\nmin_score = 'three'\n", "[harvest] min_score must be int"),
    ("[harvest]\nscore_agg = 'mean'\n", "score_agg must be 'sum' or 'max'"),
    ("[harvst]\n", "unknown section [harvst]"),
    ("[harvest\n", "not valid TOML"),
    ("[extract]\nlangs = 'en'\n", "[extract] langs must be a list of str"),
    ("[fetch]\nrefetch_after_days = -1\n", "refetch_after_days must be >= 0"),
])
def test_invalid_config_names_the_problem(tmp_path, text, needle):
    p = tmp_path / "webtext.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in e.value.message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


# ---- every numeric setting is range-checked, the same way from Python, TOML and the CLI ----

import dataclasses  # noqa: E402
import math  # noqa: E402
import tomllib  # noqa: E402
import typing  # noqa: E402

from webtext.pipeline import config as C  # noqa: E402

SECTIONS = [C.ExecutorConfig, C.HarvestConfig, C.FetchConfig, C.ExtractConfig, C.DedupConfig,
            C.DecontaminateConfig, C.ShardConfig, C.TrainConfig]


def _numeric(cls):
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if hints[f.name] in (int, float)]


def _bad_values(cls, name):
    """Values just outside the field's range, non-finite floats, and a wrong type."""
    rng, kind = cls.RANGES[name], typing.get_type_hints(cls)[name]
    bad = []
    if rng.lo is not None:
        bad.append(rng.lo if rng.open_lo else rng.lo - 1)
    if rng.hi is not None:
        bad.append(rng.hi if rng.open_hi else rng.hi + 1)
    bad = [kind(v) if kind is int else float(v) for v in bad]
    if kind is float:
        bad += [math.nan, math.inf, -math.inf]
    else:
        bad.append(1.5)
    return bad


def test_every_numeric_setting_has_a_range():
    for cls in SECTIONS:
        assert sorted(_numeric(cls)) == sorted(cls.RANGES), cls.__name__
        cls()                                   # every default is inside its range


def test_model_sizes_match_the_model():
    from webtext.model.gpt import CONFIGS

    assert tuple(CONFIGS) == C.MODEL_SIZES


CASES = [(cls, name, v) for cls in SECTIONS for name in _numeric(cls) for v in _bad_values(cls, name)]


def _toml_value(v):
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


@pytest.mark.parametrize("cls, name, value", CASES, ids=[f"{c.SECTION}.{n}={v!r}" for c, n, v in CASES])
def test_out_of_range_is_rejected_by_the_api_and_the_file(tmp_path, cls, name, value):
    with pytest.raises(ConfigError) as api:
        cls(**{name: value})
    assert f"{cls.SECTION}.{name}" in api.value.message and "\n" not in api.value.message
    text = f"[{cls.SECTION}]\n{name} = {_toml_value(value)}\n"
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return                                  # not expressible in TOML (beyond int64)
    p = tmp_path / "webtext.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as f:
        load_config(p)
    assert name in f.value.message and cls.SECTION in f.value.message


@pytest.mark.parametrize("cls, name", [(cls, n) for cls in SECTIONS for n in _numeric(cls)])
def test_range_ends_are_accepted(cls, name):
    rng, kind = cls.RANGES[name], typing.get_type_hints(cls)[name]
    for end, open_ in ((rng.lo, rng.open_lo), (rng.hi, rng.open_hi)):
        if end is not None and not open_:
            kw = {name: kind(end)}
            if cls is C.DedupConfig and name == "lsh_threshold":
                kw["threshold"] = 1.0           # lsh_threshold <= threshold
            if cls is C.DedupConfig and name == "threshold" and end < 0.6:
                kw["lsh_threshold"] = float(end)
            if cls is C.FetchConfig and name == "warc_gzip_level":
                kw["warc_gzip"] = "isal" if end < 4 else "zlib"
            assert getattr(cls(**kw), name) == kind(end)


def test_unknown_model_size_lists_the_sizes():
    with pytest.raises(ConfigError) as e:
        C.TrainConfig(model="gpt3")
    assert "gpt3" in e.value.message and "gpt2-medium" in e.value.message
