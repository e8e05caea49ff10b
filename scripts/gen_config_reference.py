"""Write the campaign configuration reference from the schema (warrior.common.campaign_config).

docs/configuration.md lists every key a campaign file accepts, with its type, default and meaning; the
README's short table (between its `config-reference` markers) is generated from the same models. Both
come from the pydantic models alone: a key's meaning is its Field description, else the comment beside
or above it in the source. tests/test_config_reference.py fails when a committed copy differs.

    python scripts/gen_config_reference.py           # rewrite both (`make docs`)
    python scripts/gen_config_reference.py --check   # exit 1 if either is out of date
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import types
import typing
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "configuration.md"
README = ROOT / "README.md"
START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
MAX_INT = 2**63 - 1

Model = type[BaseModel]


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    meaning: str


# -- meanings ------------------------------------------------------------------------------------
def _source_comments(model: Model) -> dict[str, str]:
    """Field name -> the comment beside its definition, else the comment lines right above it."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        end = node.end_lineno or node.lineno
        text = next((comments[n] for n in range(node.lineno, end + 1) if n in comments), "")
        if not text:
            above: list[str] = []
            line = node.lineno - 1
            while line in comments and lines[line - 1].lstrip().startswith("#"):
                above.insert(0, comments[line])
                line -= 1
            text = " ".join(above)
        if text and "fmt:" not in text:
            found[node.target.id] = text
    return found


def _docstring(model: Model) -> str:
    doc = model.__doc__ or ""
    if doc.startswith(("Usage docs:", "A base class")) or model.__module__.startswith("pydantic"):
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _meaning(model: Model, name: str, field: FieldInfo) -> str:
    text = field.description or _source_comments(model).get(name, "")
    if not text:
        nested = _models(field.annotation)
        text = _docstring(nested[0]) if nested else ""
    return " ".join(text.split()).replace("|", "\\|")


# -- types -----------------------------------------------------------------------------------------
def _models(annotation: Any) -> list[Model]:
    """The BaseModel classes in an annotation (X, X | None, list[X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _number(value: Any) -> str:
    if value == MAX_INT:
        return "2^63 - 1"
    return repr(value) if isinstance(value, float) else str(value)


def _bounds(metadata: list[Any]) -> str:
    low = high = ""
    for item in metadata:
        if isinstance(item, Ge):
            low = f"{_number(item.ge)} ≤ "
        elif isinstance(item, Gt):
            low = f"{_number(item.gt)} < "
        elif isinstance(item, Le):
            high = f" ≤ {_number(item.le)}"
        elif isinstance(item, Lt):
            high = f" < {_number(item.lt)}"
    return f"{low}x{high}" if low or high else ""


def _type(annotation: Any, metadata: list[Any], links: dict[Model, str]) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [_type(a, metadata, links) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or none" if type(None) in args else "")
    if origin is typing.Annotated:
        return _type(args[0], [*metadata, *args[1].metadata] if hasattr(args[1], "metadata") else metadata, links)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        inner = args[0]
        inner_meta = list(getattr(typing.get_args(inner)[1], "metadata", [])) if typing.get_origin(inner) else []
        length = [m for m in metadata if isinstance(m, MinLen | MaxLen)]
        at_least = next((f", at least {m.min_length}" for m in length if isinstance(m, MinLen)), "")
        return f"list of {_type(inner, inner_meta, links)}{at_least}"
    if origin is dict:
        return f"mapping of {_type(args[0], [], links)} to {_type(args[1], [], links)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return links.get(annotation, "section")
    if annotation is bool:
        return "boolean"
    if annotation is int or annotation is float:
        bounds = _bounds(metadata)
        kind = "integer" if annotation is int else "number"
        return f"{kind}, {bounds}" if bounds else kind
    if annotation is str:
        return "string"
    return getattr(annotation, "__name__", str(annotation))


# -- defaults --------------------------------------------------------------------------------------
def _flow(value: Any) -> str:
    """A value as short YAML flow text."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value) if not value or re.search(r"[:#,\[\]{}]|^\s|\s$", value) else value
    return _number(value)


def _default(field: FieldInfo, section: bool) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("shown_default"), str):
        return str(extra["shown_default"])
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "none"
    if section:  # a section's defaults are its keys'
        return ""
    return f"`{_flow(value)}`"


# -- the walk --------------------------------------------------------------------------------------
def _usage(root: Model) -> Counter[Model]:
    """How many fields of the tree hold each model: one held in several places is a type, documented once."""
    counts: Counter[Model] = Counter()

    def walk(model: Model) -> None:
        for field in model.model_fields.values():
            for nested in _models(field.annotation):
                counts[nested] += 1
                if counts[nested] == 1:
                    walk(nested)

    walk(root)
    return counts


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9_ -]", "", title.lower()).replace(" ", "-")


def _walk(root: Model) -> Iterator[tuple[str, Model, str, list[Row]]]:
    """(title, model, what it is, rows) for the top level, every section and every type."""
    usage = _usage(root)
    shared = [m for m, n in usage.items() if n > 1]
    links = {m: f"[{m.__name__.removesuffix('Config').lower()}](#{_anchor('type: ' + m.__name__)})" for m in shared}

    def rows(model: Model, prefix: str) -> tuple[list[Row], list[tuple[str, Model]]]:
        out: list[Row] = []
        sections: list[tuple[str, Model]] = []
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            nested = [m for m in _models(field.annotation) if m not in shared]
            is_list = typing.get_origin(field.annotation) is list
            title = f"{key}[]" if is_list else key
            kind = _type(field.annotation, list(field.metadata), links)
            if nested:
                link = f"[{'entries' if is_list else 'section'}](#{_anchor(title)})"
                kind = kind.replace("section", link, 1)
            out.append(
                Row(f"`{key}`", kind, _default(field, bool(nested) and not is_list), _meaning(model, name, field))
            )
            sections += [(title, m) for m in nested]
        return out, sections

    queue: list[tuple[str, Model]] = [("", root)]
    while queue:
        title, model = queue.pop(0)
        table, sections = rows(model, f"{title}." if title else "")
        yield title or "top level", model, _docstring(model), table
        queue = sections + queue
    for model in shared:
        table, _ = rows(model, "")
        yield f"type: {model.__name__}", model, _docstring(model), table


def _table(rows: list[Row], columns: tuple[str, ...] = ("key", "type", "default", "meaning")) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(getattr(r, c) for c in columns) + " |" for r in rows]
    return lines


def render_reference() -> str:
    from warrior.common.campaign_config import CampaignConfig

    out = [
        "# Campaign configuration reference",
        "",
        "<!-- Generated from warrior.common.campaign_config by `make docs` (scripts/gen_config_reference.py);",
        "     edit the schema's Field descriptions, not this file. tests/test_config_reference.py checks it. -->",
        "",
        "A campaign is one YAML file (see `configs/demo.yaml` and `configs/paper-scale.yaml`), validated before",
        "anything starts: an unknown key or a bad value exits with code 2 and a message that names it, e.g.",
        "`error: c.yaml: unknown key 'mining.per_exprt'`. Every key is optional except those marked required.",
        "Keys are written as paths: `battle.tests.timeout_s` is `timeout_s` under `tests` under `battle`, and",
        "`experts[].name` is the `name` of each entry of the `experts` list. Bounds: `x` is the value.",
    ]
    for title, _model, about, rows in _walk(CampaignConfig):
        out += ["", f"## {title}", ""]
        if about:
            out += [about, ""]
        out += _table(rows)
    return "\n".join(out) + "\n"


def render_readme_section() -> str:
    """The README's short table: the top-level keys and the experts' keys, with a link to the reference."""
    from warrior.common.campaign_config import CampaignConfig

    walked = {title: rows for title, _m, _a, rows in _walk(CampaignConfig)}
    rows = []
    for row in walked["top level"] + walked["experts[]"]:
        section = re.search(r"\]\(#([^)]+)\)", row.type)  # a section: its key links to its table
        key = f"[{row.key}](docs/configuration.md#{section.group(1)})" if section else row.key
        rows.append(Row(key, row.type, row.default, row.meaning))
    lines = [
        START,
        "<!-- Generated by `make docs` from the schema; do not edit by hand. -->",
        "[docs/configuration.md](docs/configuration.md) lists every key with its type, default and meaning;",
        "the top-level keys and an expert's keys:",
        "",
        *_table(rows, ("key", "default", "meaning")),
        END,
    ]
    return "\n".join(lines)


def render_readme(readme: str) -> str:
    """The README with its generated section replaced; a README without the markers is an error."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise SystemExit(f"README.md needs one {START} ... {END} pair around the configuration table")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + render_readme_section() + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    args = parser.parse_args(argv)
    wanted = {REFERENCE: render_reference(), README: render_readme(README.read_text(encoding="utf-8"))}
    stale = [p for p, text in wanted.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
