"""The campaign file is validated before anything starts; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from warrior.common.campaign_config import ConfigError, load_campaign_config, parse_campaign_config

ROOT = Path(__file__).resolve().parents[3]


def _minimal() -> dict:
    return {"experts": [{"name": "a", "engine": "zero-latency-test"}, {"name": "b", "engine": "zero-latency-test"}]}


def test_demo_config_is_valid() -> None:
    config = load_campaign_config(ROOT / "configs" / "demo.yaml")
    assert config.expert_names == ["smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m"]
    assert config.scoring.alpha == 0.7
    assert config.screening.num_perm == 128 and config.screening.dedup_threshold == 0.5


def test_misspelled_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("experts: [{name: a}, {name: b}]\nminig:\n  per_expert: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'minig'"):
        load_campaign_config(path)


def test_nested_misspelled_key_is_named_with_its_path() -> None:
    data = _minimal() | {"battle": {"answer_sampling": {"temprature": 0.3}}}
    with pytest.raises(ConfigError, match=r"unknown key 'battle\.answer_sampling\.temprature'"):
        parse_campaign_config(data)


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"scoring": {"alpha": 1.5}}, "scoring.alpha"),
        ({"scoring": {"rating": "glicko"}}, "scoring.rating"),
        ({"mining": {"per_expert": 0}}, "mining.per_expert"),
        ({"campaign": "Bad Id!"}, "campaign"),
    ],
)
def test_bad_values_are_named(patch: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=rf"bad value for '{where}'"):
        parse_campaign_config(_minimal() | patch)


def test_duplicate_expert_names_refused() -> None:
    with pytest.raises(ConfigError, match="repeated: a"):
        parse_campaign_config({"experts": [{"name": "a"}, {"name": "a"}]})


def test_one_expert_is_not_an_arena() -> None:
    with pytest.raises(ConfigError, match="experts"):
        parse_campaign_config({"experts": [{"name": "a"}]})


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_campaign_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_campaign_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("experts: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_campaign_config(broken)


def test_campaign_id_is_stable_for_the_same_content() -> None:
    one, two = parse_campaign_config(_minimal()), parse_campaign_config(_minimal())
    assert one.campaign_id() == two.campaign_id()
    other = parse_campaign_config(_minimal() | {"languages": ["Rust"]})
    assert other.campaign_id() != one.campaign_id()


def test_mining_uses_the_papers_grid_with_an_equal_budget_per_cell() -> None:
    mining = parse_campaign_config(_minimal()).mining
    cells = [tuple(mining.cell(i).values()) for i in range(18)]
    assert len(set(cells)) == 9 and all(cells.count(c) == 2 for c in set(cells))
    assert set(cells) == {(t, p) for t in (1.0, 1.1, 1.2) for p in (1.0, 0.995, 0.99)}


def test_grid_weights_and_an_empty_grid() -> None:
    weighted = parse_campaign_config(
        _minimal()
        | {"mining": {"grid": [{"temperature": 1.0, "top_p": 1.0, "weight": 3}, {"temperature": 1.2, "top_p": 0.99}]}}
    ).mining
    assert [weighted.cell(i)["temperature"] for i in range(8)] == [1.0, 1.0, 1.0, 1.2] * 2
    plain = parse_campaign_config(_minimal() | {"mining": {"grid": [], "sampling": {"temperature": 0.7}}}).mining
    assert plain.cell(5) == {"temperature": 0.7, "top_p": 1.0}


def test_units_cycle_through_languages_one_full_grid_pass_each() -> None:
    config = parse_campaign_config(_minimal() | {"languages": ["Python", "Rust"]})
    combos = [(config.language(i), tuple(config.mining.cell(i).values())) for i in range(36)]
    # every (language, cell) combination gets the same budget
    assert len(set(combos)) == 18 and all(combos.count(c) == 2 for c in set(combos))
    assert config.language(0) == "Python" and config.language(9) == "Rust"


def test_repeated_or_empty_languages_are_refused() -> None:
    with pytest.raises(ConfigError, match="languages"):
        parse_campaign_config(_minimal() | {"languages": []})
    with pytest.raises(ConfigError, match="languages must be unique"):
        parse_campaign_config(_minimal() | {"languages": ["Go", "Go"]})
    with pytest.raises(ConfigError, match="unknown key 'language'"):
        parse_campaign_config(_minimal() | {"language": "Go"})


def test_screening_rating_and_embedding_defaults_and_bad_values() -> None:
    screening = parse_campaign_config(_minimal()).screening
    assert screening.rating.enabled and screening.rating.min_score == 6.0
    assert screening.decontamination.embedding.model == "all-MiniLM-L6-v2"
    with pytest.raises(ConfigError, match="screening.rating.min_score"):
        parse_campaign_config(_minimal() | {"screening": {"rating": {"min_score": 11}}})
    with pytest.raises(ConfigError, match="screening.decontamination.embedding.threshold"):
        parse_campaign_config(_minimal() | {"screening": {"decontamination": {"embedding": {"threshold": 0}}}})
