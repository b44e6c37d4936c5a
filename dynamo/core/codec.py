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
    "site": (Site, ("name",), ("host", "storage_type", "backend", "status", "filename_mapping", "x509proxy")),
    "group": (Group, ("name",), ("olevel",)),
    "partition": (Partition, ("name",), ("condition", "parent")),
    "sitepartition": (SitePartition, ("site", "partition"), ("quota",)),
    "dataset": (Dataset, ("name",), ("status", "data_type", "software_version", "last_update", "is_open")),
    "block": (Block, ("dataset", "name"), ("size", "num_files", "is_open", "last_update")),
    "file": (File, ("dataset", "block", "name"), ("size", "checksum")),
    "datasetreplica": (DatasetReplica, ("dataset", "site"), ("growing", "group")),
    "blockreplica": (BlockReplica, ("dataset", "block", "site"), ("group", "is_custodial", "last_update", "files")),
}
TYPES = tuple(FIELDS)
# fields added after the first journals were written: an update record may lack them
OPTIONAL: dict[str, dict[str, Any]] = {
    "site": {"filename_mapping": {}, "x509proxy": None},
    "partition": {"condition": None, "parent": None},
}
HAS_ID = frozenset({"site", "group", "partition", "dataset", "block", "file"})
_HAS_ID = HAS_ID


def _file_key(obj: Any) -> dict[str, Any]:
    block = obj.block_full_name
    if block is None:
        raise CodecError(f"file {obj.lfn!r} names no block")
    dataset, _, block_name = block.partition("#")
    return {"dataset": dataset, "block": block_name, "name": obj.lfn}


def _replica_key(obj: Any) -> dict[str, Any]:
    dataset, _, block = obj.block_full_name.partition("#")
    return {"dataset": dataset, "block": block, "site": obj.site_name}


_KEY: dict[str, Callable[[Any], dict[str, Any]]] = {
    "site": lambda o: {"name": o.name},
    "group": lambda o: {"name": o.name},
    "partition": lambda o: {"name": o.name},
    "dataset": lambda o: {"name": o.name},
    "sitepartition": lambda o: {"site": o.site_name, "partition": o.partition_name},
    "block": lambda o: {"dataset": o.dataset_name, "name": o.name},
    "file": _file_key,
    "datasetreplica": lambda o: {"dataset": o.dataset_name, "site": o.site_name},
    "blockreplica": _replica_key,
}

_VALUES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "site": lambda o: {"host": o.host, "storage_type": o.storage_type.value, "backend": o.backend,
                       "status": o.status.value, "filename_mapping": o.filename_mapping_chains(),
                       "x509proxy": o.x509proxy},
    "group": lambda o: {"olevel": o.olevel.value},
    "partition": lambda o: {"condition": o.condition, "parent": o.parent_name},
    "sitepartition": lambda o: {"quota": o.own_quota},
    "dataset": lambda o: {"status": o.status.value, "data_type": o.data_type.value,
                          "software_version": o.software_version, "last_update": o.last_update,
                          "is_open": o.is_open},
    "block": lambda o: {"size": o.size, "num_files": o.num_files, "is_open": o.is_open,
                        "last_update": o.last_update},
    "file": lambda o: {"size": o.size, "checksum": o.checksum_text},
    "datasetreplica": lambda o: {"growing": o.growing, "group": o.group_name},
    "blockreplica": lambda o: {"group": o.group_name, "is_custodial": o.is_custodial,
                               "last_update": o.last_update,
                               "files": None if o.lfns is None else list(o.lfns)},
}


def _key_fields(obj: Any) -> dict[str, Any]:
    try:
        return _KEY[obj.TYPE](obj)
    except KeyError:
        raise CodecError(f"unknown object type {obj.TYPE!r}") from None


def encode(op: str, obj: DataObject) -> Record:
    """The record for ``update(obj)`` (all fields) or ``delete(obj)`` (key fields)."""
    t = obj.TYPE
    fields = _key_fields(obj)
    if op == UPDATE:
        try:
            fields.update(_VALUES[t](obj))
        except AttributeError as exc:
            # an application assigned a value of the wrong kind to a plain attribute
            # (``replica.group = 5``); enum attributes coerce or refuse on assignment
            raise CodecError(f"{t} {fields}: invalid attribute value ({exc})") from exc
    elif op != DELETE:
        raise CodecError(f"unknown operation {op!r}")
    if t in _HAS_ID:
        fields["id"] = obj.id  # type: ignore[attr-defined]
    return [op, t, fields]


def _block_ref(type_name: str, f: dict[str, Any]) -> str:
    """The 'dataset#block' reference of a file or block replica record.

    The one reference the codec assembles itself, so the one whose parts it checks itself: dataset
    5 would otherwise become the text '5#b', and a '#' in either part would make the reference
    ambiguous. Every other name or reference field goes to a constructor as it is, which refuses
    anything but a valid name (or, in a reference position, a live object, which JSON cannot give).
    """
    dataset, block = f["dataset"], f["block"]
    if type(dataset) is not str or type(block) is not str or "#" in dataset or "#" in block:
        for name, value in (("dataset", dataset), ("block", block)):
            if type(value) is not str:
                raise CodecError(f"{type_name} {name}: expected a string, got {json_kind(value)}")
            if "#" in value:
                raise CodecError(f"{type_name} {name}: {value!r} must not contain '#'")
    return f"{dataset}#{block}"


def ident(f: dict[str, Any], type_name: str) -> int:
    """The record's id, checked here: constructors that also take the original's positional
    forms would read a non-integer there as another argument."""
    value = f.get("id", 0)
    if type(value) is not int:
        raise CodecError(f"{type_name} id: expected an integer, got {json_kind(value)}")
    return value


def _group_name(f: dict[str, Any]) -> str:
    name = f["name"]
    if name is None:
        raise CodecError("group name: the null group cannot appear in a record")
    return name  # anything but a valid name is refused by Group()


# type -> (construct from a full update record, construct from a delete record's key)
_CONSTRUCT: dict[str, tuple[Callable[[dict[str, Any]], DataObject], Callable[[dict[str, Any]], DataObject]]] = {
    "site": (lambda f: Site(f["name"], f["host"], f["storage_type"], f["backend"], f["status"], ident(f, "site"),
                            f.get("x509proxy"), filename_mapping=_mapping(f.get("filename_mapping", {}))),
             lambda f: Site(f["name"], id=ident(f, "site"))),
    "group": (lambda f: Group(_group_name(f), f["olevel"], ident(f, "group")),
              lambda f: Group(_group_name(f), id=ident(f, "group"))),
    "partition": (lambda f: Partition(f["name"], ident(f, "partition"), condition=f.get("condition"),
                                      parent=f.get("parent")),
                  lambda f: Partition(f["name"], ident(f, "partition"))),
    "sitepartition": (lambda f: SitePartition(f["site"], f["partition"], f["quota"]),
                      lambda f: SitePartition(f["site"], f["partition"])),
    "dataset": (lambda f: Dataset(f["name"], f["status"], f["data_type"], f["software_version"], f["last_update"],
                                  f["is_open"], ident(f, "dataset")),
                lambda f: Dataset(f["name"], id=ident(f, "dataset"))),
    "block": (lambda f: Block(f["name"], f["dataset"], f["size"], f["num_files"], f["is_open"], f["last_update"],
                              ident(f, "block")),
              lambda f: Block(f["name"], f["dataset"], id=ident(f, "block"))),
    "file": (lambda f: File(f["name"], _block_ref("file", f), f["size"], f["checksum"], ident(f, "file")),
             lambda f: File(f["name"], _block_ref("file", f), id=ident(f, "file"))),
    "datasetreplica": (lambda f: DatasetReplica(f["dataset"], f["site"], f["growing"], f["group"]),
                       lambda f: DatasetReplica(f["dataset"], f["site"])),
    "blockreplica": (lambda f: BlockReplica(_block_ref("blockreplica", f), f["site"], f["group"], f["is_custodial"],
                                            f["last_update"], _files(f["files"])),
                     lambda f: BlockReplica(_block_ref("blockreplica", f), f["site"])),
}


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CodecError(f"site filename_mapping: expected an object, got {json_kind(value)}")
    return value


def _files(files: Any) -> list[str] | None:
    if files is None:
        return None
    if not isinstance(files, list):
        raise CodecError(f"blockreplica files: expected a list or null, got {json_kind(files)}")
    for index, lfn in enumerate(files):
        if not isinstance(lfn, str):
            raise CodecError(f"blockreplica files[{index}]: expected a string, got {json_kind(lfn)}")
    return files


def json_kind(value: Any) -> str:
    """How an error message names a JSON value's type: 'an integer', 'a list', 'null'."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _shape(op: str, type_name: str) -> tuple[frozenset[str], frozenset[str]]:
    _, keys, values = FIELDS[type_name]
    allowed = frozenset(keys + (values if op == UPDATE else ()))
    required = allowed - set(OPTIONAL.get(type_name, ()))
    return (allowed | {"id"} if type_name in HAS_ID else allowed), required


# (op, type) -> (allowed fields, required fields)
_SHAPE = {(op, t): _shape(op, t) for op in OPS for t in FIELDS}


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
    allowed, required = _SHAPE[op, type_name]
    if not allowed.issuperset(fields):
        unknown = sorted(map(str, set(fields) - allowed))
        raise CodecError(f"{type_name}: unknown field(s) {', '.join(unknown)}")
    if not required.issubset(fields):
        missing = [k for k in spec[1] + (spec[2] if op == UPDATE else ()) if k not in fields]
        raise CodecError(f"{type_name}: missing field(s) {', '.join(missing)}")
    try:
        return op, _CONSTRUCT[type_name][0 if op == UPDATE else 1](fields)
    except (ObjectError, CodecError) as exc:  # these name the field
        raise CodecError(f"{type_name}: {exc}") from exc
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        # a value no check foresaw: still a refused record, not an exception escaping unnamed
        raise CodecError(f"{type_name}: unexpected {type(exc).__name__}: {exc}") from exc


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
