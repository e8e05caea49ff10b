"""How rows are written to files: canonical JSONL, Parquet, and JSONL for generic JSON loaders.

Every format carries the same two columns:

* ``messages``: the chat (a user instruction, the winning assistant answer), a list of
  ``{"role", "content"}`` structs that chat-template tokenizers and TRL's SFTTrainer take as is;
* ``lineage``: where the row came from. Its maps are keyed by expert name (``scores``,
  ``model_revisions``), so its shape varies from row to row; each format stores it so that this
  never changes a file's schema:

  - canonical JSONL (the store's shards): a nested object, exactly as built;
  - Parquet: a column of Arrow's JSON extension type (``arrow.json``), which ``datasets`` reads
    back as its ``Json`` feature, i.e. the same nested dict;
  - loader JSONL (exports): a JSON-encoded string, because ``datasets``' JSON loader infers one
    fixed schema from the start of the first file and fails on a key that only appears later.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
PARQUET_SCHEMA = pa.schema([("messages", pa.list_(MESSAGE_TYPE)), ("lineage", pa.json_())])


def _lineage_json(row: Mapping[str, Any]) -> str:
    return json.dumps(row["lineage"], ensure_ascii=False, sort_keys=True)


def jsonl_bytes(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """Canonical JSONL: one row per line, keys sorted, lineage nested."""
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode("utf-8")


def loader_jsonl_bytes(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """JSONL for generic JSON loaders: the same rows with `lineage` as a JSON-encoded string."""
    lines = (
        json.dumps({"messages": r["messages"], "lineage": _lineage_json(r)}, ensure_ascii=False, sort_keys=True)
        for r in rows
    )
    return "".join(line + "\n" for line in lines).encode("utf-8")


def parquet_bytes(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """One Parquet file (a single row group) of the rows: `messages` list-of-struct, `lineage` JSON."""
    rows = list(rows)
    table = pa.table(
        {
            "messages": pa.array(
                [[{"role": m["role"], "content": m["content"]} for m in r["messages"]] for r in rows],
                type=pa.list_(MESSAGE_TYPE),
            ),
            "lineage": pa.array([_lineage_json(r) for r in rows], type=pa.json_()),
        },
        schema=PARQUET_SCHEMA,
    )
    sink = io.BytesIO()
    if rows:
        pq.write_table(table, sink, row_group_size=len(rows))
    else:  # no row group at all: readers (datasets among them) choke on an empty one
        pq.ParquetWriter(sink, PARQUET_SCHEMA).close()
    return sink.getvalue()


def rows_from_parquet(data: bytes) -> list[dict[str, Any]]:
    """The rows of a Parquet file written by :func:`parquet_bytes`, lineage decoded."""
    table = pq.read_table(io.BytesIO(data))
    messages = table.column("messages").to_pylist()
    lineage = table.column("lineage").cast(pa.string()).to_pylist()
    return [{"messages": m, "lineage": json.loads(s)} for m, s in zip(messages, lineage, strict=True)]
