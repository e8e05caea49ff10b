"""The training file is validated before anything loads, and every problem names its key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from warrior.common.store import LocalStore
from warrior.trainer import main as cli
from warrior.trainer.config import TrainConfig, TrainConfigError, load_train_config, parse_train_config

MINIMAL = {"base_model": "models/hf/SmolLM2-135M-Instruct", "output": "smol-arena", "dataset": {"name": "arena"}}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_file_gets_documented_defaults(tmp_path: Path) -> None:
    config = load_train_config(_write(tmp_path, yaml.safe_dump(MINIMAL)))
    assert config.method == "lora" and config.chat_template == "auto"
    assert config.dataset.version == "latest" and config.dataset.pinned is None
    assert config.lora.target_modules == "all-linear" and config.lora.r == 16
    assert config.training.bf16 == "auto" and config.training.max_steps is None and config.training.epochs == 1.0


def test_typo_in_a_nested_key_is_refused_by_its_path(tmp_path: Path) -> None:
    text = yaml.safe_dump(MINIMAL | {"training": {"learning_rat": 1e-4}})
    with pytest.raises(TrainConfigError) as err:
        load_train_config(_write(tmp_path, text))
    assert "unknown key 'training.learning_rat'" in str(err.value)
    assert str(tmp_path / "train.yaml") in str(err.value)


def test_typo_at_top_level_is_refused() -> None:
    with pytest.raises(TrainConfigError, match="unknown key 'epochs'"):
        parse_train_config(MINIMAL | {"epochs": 3})


def test_every_bad_value_is_named_at_once() -> None:
    bad = MINIMAL | {
        "method": "qlora",
        "lora": {"r": 0},
        "training": {"learning_rate": -1, "per_device_batch_size": 0, "bf16": "maybe"},
    }
    with pytest.raises(TrainConfigError) as err:
        parse_train_config(bad)
    message = str(err.value)
    for path in ("method", "lora.r", "training.learning_rate", "training.per_device_batch_size", "training.bf16"):
        assert f"bad value for '{path}'" in message, path


def test_missing_required_keys_are_named() -> None:
    with pytest.raises(TrainConfigError) as err:
        parse_train_config({"dataset": {}})
    message = str(err.value)
    assert "missing key 'base_model'" in message
    assert "missing key 'output'" in message
    assert "missing key 'dataset.name'" in message


def test_names_that_end_up_in_object_keys_are_checked() -> None:
    with pytest.raises(TrainConfigError, match="bad value for 'output'"):
        parse_train_config(MINIMAL | {"output": "../escape"})
    with pytest.raises(TrainConfigError, match="bad value for 'dataset.name'"):
        parse_train_config(MINIMAL | {"dataset": {"name": "Arena/x"}})


def test_lora_settings_with_full_fine_tuning_are_refused() -> None:
    with pytest.raises(TrainConfigError, match="apply to method 'lora' only"):
        parse_train_config(MINIMAL | {"method": "full", "lora": {"r": 8}})
    assert parse_train_config(MINIMAL | {"method": "full"}).method == "full"


def test_target_modules_list_is_checked() -> None:
    config = parse_train_config(MINIMAL | {"lora": {"target_modules": ["q_proj", "v_proj"]}})
    assert config.lora.target_modules == ["q_proj", "v_proj"]
    with pytest.raises(TrainConfigError, match="bad value for 'lora.target_modules'"):
        parse_train_config(MINIMAL | {"lora": {"target_modules": []}})


def test_not_a_mapping_and_not_yaml_are_reported(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match="mapping of keys"):
        load_train_config(_write(tmp_path, "- a list\n"))
    with pytest.raises(TrainConfigError, match="not valid YAML"):
        load_train_config(_write(tmp_path, "base_model: [unclosed\n"))
    with pytest.raises(TrainConfigError, match="cannot read"):
        load_train_config(tmp_path / "missing.yaml")


def test_run_id_is_stable_and_follows_what_is_trained() -> None:
    config = parse_train_config(MINIMAL)
    run = config.run_id("v1")
    assert re.fullmatch(r"r-[0-9a-f]{12}", run)
    assert parse_train_config(dict(MINIMAL)).run_id("v1") == run  # same file, same run
    assert config.run_id("v2") != run  # another dataset version
    assert parse_train_config(MINIMAL | {"training": {"learning_rate": 1e-5}}).run_id("v1") != run
    # How often it checkpoints or logs does not change what is trained.
    assert parse_train_config(MINIMAL | {"training": {"save_steps": 7, "logging_steps": 1}}).run_id("v1") == run


def test_example_in_the_help_text_is_a_valid_config() -> None:
    epilog = cli.EPILOG.split("config file", 1)[1].split("\n\n", 1)[0]
    example = "\n".join(line[2:] for line in epilog.splitlines()[1:])
    config = TrainConfig.model_validate(yaml.safe_load(example))
    assert config.output == "smollm2-arena" and config.training.save_steps == 100


def test_cli_rejects_a_bad_config_with_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, yaml.safe_dump(MINIMAL | {"trainig": {}}))
    assert cli.main(["--config", str(path), "--store", str(tmp_path / "store")]) == 2
    assert "unknown key 'trainig'" in capsys.readouterr().err


def test_cli_rejects_an_unknown_export_format(tmp_path: Path) -> None:
    path = _write(tmp_path, yaml.safe_dump(MINIMAL))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--config", str(path), "--export", "gguf,onnx"])
    assert exit_info.value.code == 2


def test_worker_reads_a_config_from_the_store(tmp_path: Path) -> None:
    from warrior.trainer.worker import resolve_config

    store = LocalStore(tmp_path)
    store.put("configs/train.yaml", yaml.safe_dump(MINIMAL).encode())
    assert resolve_config("configs/train.yaml", store).output == "smol-arena"
    assert resolve_config(dict(MINIMAL), store).output == "smol-arena"
    store.put("configs/bad.yaml", yaml.safe_dump(MINIMAL | {"metod": "full"}).encode())
    with pytest.raises(TrainConfigError, match="unknown key 'metod'"):
        resolve_config("configs/bad.yaml", store)


def test_a_config_sent_as_a_file_reads_back_the_same_full_or_lora() -> None:
    base = {"base_model": "m", "output": "out", "dataset": {"name": "ds"}}
    for data in (base | {"method": "full"}, base | {"method": "lora", "lora": {"r": 8}}):
        config = parse_train_config(data, "x")
        assert parse_train_config(config.to_file(), "task") == config
    assert "lora" not in parse_train_config(base | {"method": "full"}, "x").to_file()
