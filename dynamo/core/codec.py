"""The JSON codec for inventory objects, used on the wire and in the journal.

A record is a JSON array ``[op, type, fields]``: ``op`` is ``"update"`` or
``"delete"``, ``type`` one of :data:`TYPES`, ``fields`` an object. Update
records carry every field (see ``FIELDS``); delete records carry only the key
fields (and optionally ``id``). References to other objects are by name;
blocks are referred to by their dataset and block names, files by LFN.

Decoding is strict: unknown or missing fields, wrong JSON types and illegal
values raise :class:`CodecError` naming the field. No ``eval``, no pickle.
"""

from __future__ import annotations

from typing import Any, Callable

from dynamo.dataformat import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    File,
    Group,
    Partition,
    Site,
    SitePartition,
)
from dynamo.dataformat._base import DataObject
from dynamo.errors import CodecError, ObjectError

UPDATE = "update"
DELETE = "delete"
OPS = (UPDATE, DELETE)

Record = list[Any]  # [op, type, fields]

# type name -> (class, key fields, other fields)
FIELDS: dict[str, tuple[type[DataObject], tuple[str, ...], tuple[str, ...]]] = {
    "site": (Site, ("name",), ("host", "storage_type", "backend", "status")),
    "group": (Group, ("name",), ("olevel",)),
    "partition": (Partition, ("name",), ()),
    "sitepartition": (SitePartition, ("site", "partition"), ("quota",)),
    "dataset": (Dataset, ("name",), ("status", "data_type", "software_version", "last_update", "is_open")),
    "block": (Block, ("dataset", "name"), ("size", "num_files", "is_open", "last_update")),
    "file": (File, ("dataset", "block", "name"), ("size", "checksum")),
    "datasetreplica": (DatasetReplica, ("dataset", "site"), ("growing", "group")),
    "blockreplica": (BlockReplica, ("dataset", "block", "site"), ("group", "is_custodial", "last_update", "files")),
}
TYPES = tuple(FIELDS)
_HAS_ID = {"site", "group", "partition", "dataset", "block", "file"}


def _key_fields(obj: Any) -> dict[str, Any]:
    t = obj.TYPE
    if t in ("site", "group", "partition", "dataset"):
        return {"name": obj.name}
    if t == "sitepartition":
        return {"site": obj.site_name, "partition": obj.partition_name}
    if t == "block":
        return {"dataset": obj.dataset_name, "name": obj.name}
    if t == "file":
        block = obj.block_full_name
        if block is None:
            raise CodecError(f"file {obj.lfn!r} names no block")
        dataset, _, block_name = block.partition("#")
        return {"dataset": dataset, "block": block_name, "name": obj.lfn}
    if t == "datasetreplica":
        return {"dataset": obj.dataset_name, "site": obj.site_name}
    if t == "blockreplica":
        return {"dataset": obj.dataset_name, "block": obj.block_name, "site": obj.site_name}
    raise CodecError(f"unknown object type {t!r}")


def _value_fields(obj: Any) -> dict[str, Any]:
    t = obj.TYPE
    try:
        if t == "site":
            return {"host": obj.host, "storage_type": obj.storage_type.value, "backend": obj.backend,
                    "status": obj.status.value}
        if t == "group":
            return {"olevel": obj.olevel.value}
        if t == "partition":
            return {}
        if t == "sitepartition":
            return {"quota": obj.quota}
        if t == "dataset":
            return {"status": obj.status.value, "data_type": obj.data_type.value,
                    "software_version": obj.software_version, "last_update": obj.last_update,
                    "is_open": obj.is_open}
        if t == "block":
            return {"size": obj.size, "num_files": obj.num_files, "is_open": obj.is_open,
                    "last_update": obj.last_update}
        if t == "file":
            return {"size": obj.size, "checksum": obj.checksum}
        if t == "datasetreplica":
            return {"growing": obj.growing, "group": obj.group_name}
        if t == "blockreplica":
            return {"group": obj.group_name, "is_custodial": obj.is_custodial, "last_update": obj.last_update,
                    "files": None if obj.files is None else list(obj.files)}
    except AttributeError as exc:
        # an application assigned a plain value where an enum belongs
        raise CodecError(f"{t} {_key_fields(obj)}: invalid attribute value ({exc})") from exc
    raise CodecError(f"unknown object type {t!r}")


def encode(op: str, obj: DataObject) -> Record:
    """The record for ``update(obj)`` (all fields) or ``delete(obj)`` (key fields)."""
    fields = _key_fields(obj)
    if op == UPDATE:
        fields.update(_value_fields(obj))
    elif op != DELETE:
        raise CodecError(f"unknown operation {op!r}")
    if obj.TYPE in _HAS_ID:
        fields["id"] = obj.id  # type: ignore[attr-defined]
    return [op, obj.TYPE, fields]


def _construct(type_name: str, fields: dict[str, Any], full: bool) -> DataObject:
    f = fields
    oid = f.get("id", 0)
    if type_name == "site":
        if not full:
            return Site(f["name"], id=oid)
        return Site(f["name"], f["host"], f["storage_type"], f["backend"], f["status"], oid)
    if type_name == "group":
        if f["name"] is None:
            raise CodecError("group name: the null group cannot appear in a record")
        return Group(f["name"], f["olevel"], oid) if full else Group(f["name"], id=oid)
    if type_name == "partition":
        return Partition(f["name"], oid)
    if type_name == "sitepartition":
        return SitePartition(f["site"], f["partition"], f["quota"] if full else 0)
    if type_name == "dataset":
        if not full:
            return Dataset(f["name"], id=oid)
        return Dataset(f["name"], f["status"], f["data_type"], f["software_version"], f["last_update"],
                       f["is_open"], oid)
    if type_name == "block":
        if not full:
            return Block(f["name"], f["dataset"], id=oid)
        return Block(f["name"], f["dataset"], f["size"], f["num_files"], f["is_open"], f["last_update"], oid)
    full_block = f"{f['dataset']}#{f['block']}" if "block" in f else ""
    if type_name == "file":
        if not full:
            return File(f["name"], full_block, id=oid)
        return File(f["name"], full_block, f["size"], f["checksum"], oid)
    if type_name == "datasetreplica":
        if not full:
            return DatasetReplica(f["dataset"], f["site"])
        return DatasetReplica(f["dataset"], f["site"], f["growing"], f["group"])
    if type_name == "blockreplica":
        if not full:
            return BlockReplica(full_block, f["site"])
        files = f["files"]
        if files is not None and not isinstance(files, list):
            raise CodecError("files: expected a list or null")
        return BlockReplica(full_block, f["site"], f["group"], f["is_custodial"], f["last_update"], files)
    raise CodecError(f"unknown object type {type_name!r}")


def decode(record: Any) -> tuple[str, DataObject]:
    """``[op, type, fields]`` -> ``(op, detached object)``; strict."""
    if not isinstance(record, list) or len(record) != 3:
        raise CodecError("a record must be a list [op, type, fields]")
    op, type_name, fields = record
    if op not in OPS:
        raise CodecError(f"unknown operation {op!r} (expected 'update' or 'delete')")
    spec = FIELDS.get(type_name) if isinstance(type_name, str) else None
    if spec is None:
        raise CodecError(f"unknown object type {type_name!r} (expected one of {', '.join(TYPES)})")
    if not isinstance(fields, dict):
        raise CodecError(f"{type_name}: fields must be an object")
    _, keys, values = spec
    allowed = set(keys) | (set(values) if op == UPDATE else set())
    if type_name in _HAS_ID:
        allowed.add("id")
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise CodecError(f"{type_name}: unknown field(s) {', '.join(unknown)}")
    required = keys + (values if op == UPDATE else ())
    missing = [k for k in required if k not in fields]
    if missing:
        raise CodecError(f"{type_name}: missing field(s) {', '.join(missing)}")
    try:
        return op, _construct(type_name, fields, op == UPDATE)
    except (ObjectError, TypeError) as exc:
        raise CodecError(f"{type_name}: {exc}") from exc


def describe(record: Any) -> str:
    """A short human description of a (possibly malformed) record, for error messages."""
    try:
        op, type_name, fields = record
        key = ", ".join(f"{k}={fields[k]!r}" for k in FIELDS[type_name][1] if k in fields)
        return f"{op} {type_name} {key}"
    except (TypeError, ValueError, KeyError):
        text = repr(record)
        return text if len(text) < 80 else text[:77] + "..."


def key_description(obj: DataObject) -> str:
    return f"{obj.TYPE} " + ", ".join(f"{k}={v!r}" for k, v in _key_fields(obj).items())


Encoder = Callable[[str, DataObject], Record]
