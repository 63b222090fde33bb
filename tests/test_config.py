import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError


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
