"""Property-based tests of the config loaders: campaign, training and flywheel files.

Whatever the document (arbitrary YAML, damaged text, a valid file with one key changed), a loader
returns a config that can be used or raises ConfigError (TrainConfigError for training files)
whose message names the file and the key path of every problem. Nothing else escapes, nothing
hangs, and a config that is accepted can be hashed, dumped and read back to the same config.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from warrior.cli.flywheel_config import Flywheel, load_flywheel
from warrior.common.campaign_config import (
    CampaignConfig,
    ConfigError,
    load_campaign_config,
    parse_campaign_config,
)
from warrior.trainer.config import TrainConfig, TrainConfigError, parse_train_config, parse_train_yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO_TEXT = (ROOT / "configs" / "demo.yaml").read_text(encoding="utf-8")
_ZLT = {"engine": "zero-latency-test"}
MINIMAL_CAMPAIGN = {"experts": [{"name": "a"} | _ZLT, {"name": "b"} | _ZLT]}
# Every key spelled out, so that mutations reach every field (defaults included).
FULL_CAMPAIGN = parse_campaign_config(MINIMAL_CAMPAIGN).model_dump(mode="json")
DEMO_CAMPAIGN = yaml.safe_load(DEMO_TEXT)
MINIMAL_TRAIN = {"base_model": "models/hf/x", "output": "x-arena", "dataset": {"name": "arena"}}
FULL_TRAIN = parse_train_config(MINIMAL_TRAIN).model_dump(mode="json")

# "unknown key 'a.b'", "missing key 'a'", "bad value for 'a.0.b'": how every problem is named.
_NAMED = re.compile(r"(?:unknown key|missing key|bad value for) '([^']*)'")
FAST = settings(max_examples=150)


def huge_int() -> int:
    """An int too long to print in decimal (Python refuses past 4300 digits); built, not listed,
    so that the strategy itself can be printed."""
    return 10**5000


# Values a mutation puts in place of a key's value: every JSON/YAML type, bounds and just past
# them, non-finite floats, long text, integers too long to print, nested containers.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=70_000),
    st.sampled_from([2**31, 2**32, 2**63, 2**64, -(2**63), 10**30]),
    st.builds(huge_int),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1e-300, 5.0, 5.000001, 0.999999]),
    st.text(max_size=40),
    st.sampled_from(["", "lora", "auto", "none", "bt", "zero-latency-test", "x.gguf", "a\nb", "../x", "a" * 300]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=12), inner, max_size=4),
    ),
    max_leaves=12,
)


def _dump(doc: Any) -> str | None:
    """The document as YAML; None for one YAML cannot write (an int too long to print)."""
    try:
        return yaml.safe_dump(doc)
    except ValueError:
        return None


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value in a document (dict keys and list indexes)."""
    found: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for key, value in items:
        found.append((*prefix, key))
        found.extend(_paths(value, (*prefix, key)))
    return found


def _containers(doc: Any) -> list[tuple[Any, ...]]:
    return [()] + [p for p in _paths(doc) if isinstance(_get(doc, p), dict | list)]


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


Mutation = tuple[str, tuple[Any, ...], Any]


def mutations(base: dict[str, Any]) -> st.SearchStrategy[Mutation]:
    """("set", path, value), ("delete", path, None) or ("add", container path + new key, value)."""
    paths = _paths(base)
    return st.one_of(
        st.tuples(st.just("set"), st.sampled_from(paths), values),
        st.tuples(st.just("delete"), st.sampled_from(paths), st.none()),
        st.builds(
            lambda where, key, value: ("add", (*where, key), value),
            st.sampled_from(_containers(base)),
            st.text(max_size=12),
            values,
        ),
    )


def mutate(base: dict[str, Any], mutation: Mutation) -> dict[str, Any]:
    op, path, value = mutation
    doc = copy.deepcopy(base)
    parent = _get(doc, path[:-1])
    if op == "delete":
        del parent[path[-1]]
    elif op == "add" and isinstance(parent, list):
        parent.append(value)
    else:
        parent[path[-1]] = value
    return doc


def assert_names_key_paths(message: str, near: tuple[Any, ...] | None = None) -> None:
    """The message names at least one key path; with `near` (the mutated key), every path it names
    is that key, one of its ancestors, or lies under its parent (a sibling that a rule ties to it)."""
    named = _NAMED.findall(message)
    assert named, f"no key path in: {message[:500]}"
    if near:
        mutated = ".".join(str(k) for k in near)
        parent = ".".join(str(k) for k in near[:-1])
        for where in named:
            ancestor = where == "(top level)" or mutated == where or mutated.startswith(where + ".")
            beside = not parent or where == parent or where.startswith(parent + ".")
            assert ancestor or beside, (where, mutated, message[:500])


def assert_usable_campaign(config: CampaignConfig) -> None:
    """An accepted config hashes, serialises and reads back as itself."""
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", config.campaign_id())
    dumped = json.loads(json.dumps(config.model_dump(mode="json"), allow_nan=False))
    assert parse_campaign_config(dumped) == config
    for index in (0, 1, 7, 10**6):
        assert config.language(index) in config.languages
        assert set(config.mining.cell(index)) == {"temperature", "top_p"}


def _campaign_or_error(data: Any, near: tuple[Any, ...] | None = None) -> None:
    try:
        config = parse_campaign_config(data, "fuzz.yaml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.yaml: ")
        if isinstance(data, dict):
            assert_names_key_paths(message, near)
        assert len(message) < 20_000
        return
    assert_usable_campaign(config)


# Campaign configs.


@FAST
@given(mutations(FULL_CAMPAIGN))
@example(("set", ("campaign",), "demo\n"))  # '$' matched before a final newline: refused now
@example(("set", ("mining", "seed"), 10**5000))  # repr of the value raised ValueError
@example(("set", ("scoring", "seed"), 2**64))  # accepted, then could not be hashed into 64 bits
@example(("set", ("screening", "min_words"), 10**5000))  # accepted, then campaign_id() raised
@example(("set", ("experts", 1, "name"), "a"))  # duplicate names are named by their key
@example(("set", ("languages",), ["Python", "Python"]))
def test_a_mutated_full_campaign_config_is_usable_or_names_the_key(mutation: Mutation) -> None:
    _campaign_or_error(mutate(FULL_CAMPAIGN, mutation), mutation[1])


@FAST
@given(mutations(DEMO_CAMPAIGN))
def test_a_mutated_demo_config_is_usable_or_names_the_key(mutation: Mutation) -> None:
    _campaign_or_error(mutate(DEMO_CAMPAIGN, mutation), mutation[1])


@FAST
@given(values)
def test_any_document_is_a_campaign_config_or_a_config_error(data: Any) -> None:
    _campaign_or_error(data)


def _damaged(text: str) -> st.SearchStrategy[str]:
    """`text` truncated, with a slice removed or replaced, or with junk inserted."""
    n = len(text)
    junk = st.text(max_size=20) | st.sampled_from(
        ["\x00", "\t", ":", "- ", "&a", "*a", "!!python/object:os.system", "{", "]"]
    )
    return st.one_of(
        st.integers(0, n).map(lambda i: text[:i]),
        st.tuples(st.integers(0, n), st.integers(0, 40)).map(lambda t: text[: t[0]] + text[t[0] + t[1] :]),
        st.tuples(st.integers(0, n), junk).map(lambda t: text[: t[0]] + t[1] + text[t[0] :]),
        st.tuples(st.integers(0, n), st.integers(0, 40), junk).map(lambda t: text[: t[0]] + t[2] + text[t[0] + t[1] :]),
    )


BILLION_LAUGHS = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    + "experts: *i\n"
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-configs")


@FAST
@given(st.one_of(_damaged(DEMO_TEXT), st.text(max_size=200), values.map(_dump).filter(bool)))
@example(BILLION_LAUGHS)  # expanded to 387 million values (and printed them in the error): refused now
@example("experts: &x [*x, *x]\n")  # a list that contains itself
@example("[" * 5000)  # nested deeper than the parser's recursion
@example("experts: " + "1" * 5000)  # an int the constructor cannot convert (ValueError)
@example("a: 1\n---\nb: 2\n")  # two documents
@example("experts: !!python/object/apply:os.system [echo]\n")
def test_any_campaign_file_loads_or_raises_a_config_error_naming_it(scratch: Path, text: str) -> None:
    path = scratch / "campaign.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_campaign_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ")
        assert len(str(exc)) < 20_000
        return
    assert_usable_campaign(config)


@FAST
@given(st.binary(max_size=200) | st.binary(max_size=50).map(lambda b: DEMO_TEXT.encode()[:300] + b))
@example(b"\xff\xfe\x00campaign: x\n")  # not UTF-8: UnicodeDecodeError escaped
def test_a_campaign_file_that_is_not_text_raises_a_config_error(scratch: Path, data: bytes) -> None:
    path = scratch / "binary.yaml"
    path.write_bytes(data)
    try:
        assert_usable_campaign(load_campaign_config(path))
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ")


def test_unreadable_campaign_paths_raise_config_errors(scratch: Path) -> None:
    for path in (scratch / "missing.yaml", scratch, scratch / "a\x00b.yaml"):
        with pytest.raises(ConfigError, match="cannot read campaign config"):
            load_campaign_config(path)


# Training configs.


def _train_or_error(data: Any, near: tuple[Any, ...] | None = None) -> None:
    try:
        config = parse_train_config(data, "train.yaml")
    except TrainConfigError as exc:
        assert str(exc).startswith("train.yaml: ")
        if isinstance(data, dict):
            assert_names_key_paths(str(exc), near)
        return
    assert isinstance(config, TrainConfig)
    assert re.fullmatch(r"r-[0-9a-f]{12}", config.run_id("0123456789ab"))
    assert parse_train_config(json.loads(json.dumps(config.model_dump(mode="json"), allow_nan=False))) == config
    assert 0 <= config.training.seed < 2**32  # numpy's limit: transformers' set_seed hands it the seed


@FAST
@given(mutations(FULL_TRAIN))
@example(("set", ("training", "seed"), 2**32))  # accepted, then numpy refused the seed mid-run
@example(("set", ("lora", "target_modules"), ["q_proj\n"]))  # '$' matched before a final newline
@example(("set", ("training", "max_steps"), 10**5000))
def test_a_mutated_train_config_is_usable_or_names_the_key(mutation: Mutation) -> None:
    _train_or_error(mutate(FULL_TRAIN, mutation), mutation[1])


@FAST
@given(values)
def test_any_document_is_a_train_config_or_a_train_config_error(data: Any) -> None:
    _train_or_error(data)


@FAST
@given(st.one_of(_damaged(yaml.safe_dump(FULL_TRAIN)), st.text(max_size=200)))
@example(BILLION_LAUGHS.replace("experts", "training"))
def test_any_train_yaml_parses_or_raises_a_train_config_error(text: str) -> None:
    try:
        parse_train_yaml(text, "train.yaml")
    except TrainConfigError as exc:
        assert str(exc).startswith("train.yaml: ")


# Flywheel configs: a flywheel file beside its campaign file and the base model's folder.


FLYWHEEL = {
    "flywheel": "fuzz-flywheel",
    "campaign": "campaign.yaml",
    "target": {"name": "a-arena", "base_expert": "a", "base_model": "base-model"},
    "train": {"method": "lora", "training": {"max_steps": 3}},
    "gguf_type": "f16",
    "evaluate": {"benchmarks": ["humaneval"], "limit": 2, "max_tokens": 64, "timeout_s": 5.0, "memory_mb": 256,
                 "workers": 1},
    "followup": {"per_expert": 1},
}  # fmt: skip


@pytest.fixture(scope="module")
def flywheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("fuzz-flywheel")
    (folder / "base-model").mkdir()
    (folder / "campaign.yaml").write_text(yaml.safe_dump(MINIMAL_CAMPAIGN), encoding="utf-8")
    yield folder


# Problems found after the keys validate: each message names the key concerned, or the file.
_FLYWHEEL_PROBLEMS = ("campaign: ", "target.base_expert", "target.name", "target.base_model", "not valid YAML",
                      "not a usable YAML document", "mapping of keys", "cannot read")  # fmt: skip


def _flywheel_or_error(folder: Path, text: str | None) -> None:
    assume(text is not None)
    assert text is not None
    path = folder / "flywheel.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        flywheel = load_flywheel(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ")
        assert _NAMED.search(message) or any(known in message for known in _FLYWHEEL_PROBLEMS), message[:500]
        return
    assert isinstance(flywheel, Flywheel)
    assert flywheel.campaign.expert_names == ["a", "b"]
    assert Path(flywheel.config.target.base_model).is_dir()
    train = flywheel.config.train_config(flywheel.campaign.dataset.name, "0123456789ab")
    assert train.output == flywheel.config.target.name


def test_the_unmutated_flywheel_config_loads(flywheel_dir: Path) -> None:
    path = flywheel_dir / "ok.yaml"
    path.write_text(yaml.safe_dump(FLYWHEEL), encoding="utf-8")
    assert load_flywheel(path).id == "fuzz-flywheel"


@FAST
@given(mutations(FLYWHEEL))
@example(("set", ("campaign",), "campaign\x00.yaml"))  # Path.resolve() raised ValueError
@example(("set", ("target", "base_model"), "base\x00model"))
@example(("set", ("train", "training"), {"seed": 2**40}))
@example(("set", ("train",), {"output": "x"}))
@example(("set", ("target", "base_expert"), "zz"))
@example(("set", ("target", "name"), "b"))
def test_a_mutated_flywheel_config_loads_or_names_the_key(flywheel_dir: Path, mutation: Mutation) -> None:
    _flywheel_or_error(flywheel_dir, _dump(mutate(FLYWHEEL, mutation)))


@FAST
@given(st.one_of(_damaged(yaml.safe_dump(FLYWHEEL)), st.text(max_size=200)))
@example(BILLION_LAUGHS.replace("experts", "train"))
@example("flywheel: x\ncampaign: x\ntarget: &t {name: a, base_expert: b, base_model: *t}\n")
def test_any_flywheel_file_loads_or_raises_a_config_error(flywheel_dir: Path, text: str) -> None:
    _flywheel_or_error(flywheel_dir, text)
