"""The configuration reference (docs/configuration.md and the README's table) is generated from the schema,
so a key added, removed or re-described there without `make docs` fails here."""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
try:
    import gen_config_reference as gen
finally:
    sys.path.remove(str(ROOT / "scripts"))

from warrior.common.campaign_config import CampaignConfig  # noqa: E402


def test_reference_is_generated_from_the_schema() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == gen.render_reference(), "docs/configuration.md is out of date: run `make docs`"


def test_readme_table_is_generated_from_the_schema() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == gen.render_readme(readme), "README.md's configuration table is out of date: run `make docs`"


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        keys.append(key)
        nested = gen._models(field.annotation)
        if nested and nested[0].__name__ != "Sampling":
            list_ = typing.get_origin(field.annotation) is list
            keys += _keys(nested[0], f"{key}[]." if list_ else f"{key}.")
    return keys


def test_every_key_is_in_the_reference_with_a_meaning() -> None:
    reference = gen.render_reference()
    missing = [key for key in _keys(CampaignConfig) if f"| `{key}` |" not in reference]
    assert not missing, f"not in docs/configuration.md: {missing}"
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    unexplained = [line.split(" | ")[0] for line in rows if line.rstrip().endswith("|  |")]
    assert not unexplained, f"keys without a description (a Field description or a comment): {unexplained}"


class _Inner(BaseModel):
    """A section's first paragraph.

    Not this one."""

    model_config = ConfigDict(extra="forbid")
    size: int = Field(3, ge=1, le=9, description="how many")
    # The comment above a field is its meaning when it has no description.
    mode: Literal["a", "b"] = "a"


class _Root(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="a name")
    inner: _Inner = _Inner()
    items: list[_Inner] = Field(default_factory=list)  # the same section, twice: documented once as a type
    ratio: float | None = Field(None, gt=0.0, lt=1.0, json_schema_extra={"shown_default": "half"})


def test_the_walk_finds_descriptions_comments_sections_and_types() -> None:
    walked = {title: (about, rows) for title, _m, about, rows in gen._walk(_Root)}
    assert list(walked) == ["top level", "type: _Inner"]
    top = {row.key: row for row in walked["top level"][1]}
    assert top["`name`"] == gen.Row("`name`", "string", "required", "a name")
    assert top["`inner`"].type == "[_inner](#type-_inner)"
    assert top["`items`"].meaning == "the same section, twice: documented once as a type"
    assert (top["`ratio`"].type, top["`ratio`"].default) == ("number, 0.0 < x < 1.0 or none", "half")
    about, rows = walked["type: _Inner"]
    assert about == "A section's first paragraph."
    assert rows == [
        gen.Row("`size`", "integer, 1 ≤ x ≤ 9", "`3`", "how many"),
        gen.Row(
            "`mode`", "one of `a`, `b`", "`a`", "The comment above a field is its meaning when it has no description."
        ),
    ]


def test_a_readme_without_the_markers_is_refused() -> None:
    with pytest.raises(SystemExit, match="config-reference:start"):
        gen.render_readme("# README\n\nno table here\n")
