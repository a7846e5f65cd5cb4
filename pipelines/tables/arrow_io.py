"""Arrow IPC files for the unified tables: atomic writes, memory-mapped reads, provenance metadata.

IPC *file* format (``pa.ipc.new_file``) rather than the stream format so readers can memory-map
and slice without copying; metadata lives in the schema so it travels with the table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.tables.hashing import SourceDigest
from vlpet.atomic import write_atomic

SCHEMA_VERSION = "1"
_PREFIX = "vlpet."


def attach_metadata(
    table: pa.Table,
    *,
    family: str,
    dataset: str,
    split: str,
    sources: Iterable[SourceDigest],
    extra: Mapping[str, str] | None = None,
) -> pa.Table:
    """Return ``table`` with provenance in its schema metadata (dataset, split, sources + sha256)."""
    meta = {
        "family": family,
        "dataset": dataset,
        "split": split,
        "schema_version": SCHEMA_VERSION,
        "sources": json.dumps([s.to_dict() for s in sources], sort_keys=True),
    }
    meta.update(extra or {})
    return table.replace_schema_metadata({f"{_PREFIX}{k}".encode(): v.encode() for k, v in meta.items()})


def table_metadata(table_or_schema: pa.Table | pa.Schema) -> dict[str, Any]:
    """Decoded ``vlpet.*`` metadata (``sources`` as a list of dicts); empty when there is none."""
    schema = table_or_schema.schema if isinstance(table_or_schema, pa.Table) else table_or_schema
    out: dict[str, Any] = {}
    for key, value in (schema.metadata or {}).items():
        name = key.decode()
        if name.startswith(_PREFIX):
            out[name[len(_PREFIX):]] = value.decode()
    if "sources" in out:
        out["sources"] = json.loads(out["sources"])
    return out


def write_table(table: pa.Table, path: Path | str, *, stream: bool = False) -> Path:
    """Write an Arrow IPC file (``stream``: the IPC stream format, which ``datasets`` reads) atomically with
    ``vlpet.atomic``: a killed run never leaves a half-written file under the final name."""

    def write(handle: Any) -> None:
        sink = pa.PythonFile(handle, mode="w")
        with (pa.ipc.new_stream if stream else pa.ipc.new_file)(sink, table.schema) as writer:
            writer.write_table(table)

    return write_atomic(path, write)


def read_table(path: Path | str) -> pa.Table:
    """Read an Arrow IPC file memory-mapped (zero-copy: pages load on access, not up front)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Arrow table file")
    source = pa.memory_map(str(path), "r")
    try:
        return pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path}: not an Arrow IPC file ({exc})") from None
