"""The JSON codec: round trips and strict decoding."""

from __future__ import annotations

import json

import pytest

from dynamo.core.codec import DELETE, UPDATE, decode, describe, encode
from dynamo.errors import CodecError
from tests.unit.test_dataformat import ALL_OBJECTS


@pytest.mark.parametrize("obj", [o for o in ALL_OBJECTS if getattr(o, "name", "x") is not None],
                         ids=lambda o: repr(o)[:40])
def test_update_round_trip_through_json(obj: object) -> None:
    record = json.loads(json.dumps(encode(UPDATE, obj)))  # type: ignore[arg-type]
    op, back = decode(record)
    assert op == UPDATE and back == obj and repr(back) == repr(obj)


@pytest.mark.parametrize("obj", [o for o in ALL_OBJECTS if getattr(o, "name", "x") is not None],
                         ids=lambda o: repr(o)[:40])
def test_delete_records_carry_the_key(obj: object) -> None:
    op, back = decode(json.loads(json.dumps(encode(DELETE, obj))))  # type: ignore[arg-type]
    assert op == DELETE and back.key == obj.key  # type: ignore[attr-defined]


SITE = {"name": "S", "host": "h", "storage_type": "disk", "backend": "", "status": "ready"}


@pytest.mark.parametrize(("record", "message"), [
    ("nope", "a record must be a list"),
    (["update", "site"], "a record must be a list"),
    (["upsert", "site", SITE], "unknown operation 'upsert'"),
    (["update", "planet", SITE], "unknown object type 'planet'"),
    (["update", "site", []], "fields must be an object"),
    (["update", "site", {**SITE, "colour": "red"}], "unknown field\\(s\\) colour"),
    (["update", "site", {"name": "S"}], "missing field\\(s\\) host, storage_type, backend, status"),
    (["update", "site", {**SITE, "status": "gone"}], "site status: 'gone' is not one of"),
    (["update", "site", {**SITE, "id": "7"}], "site id: expected an integer"),
    (["update", "block", {"dataset": "d", "name": "b", "size": -1, "num_files": 0, "is_open": False,
                          "last_update": 0}], "block size: must be >= 0"),
    (["update", "block", {"dataset": "d", "name": "b", "size": 1.5, "num_files": 0, "is_open": False,
                          "last_update": 0}], "block size: expected an integer"),
    (["update", "group", {"name": None, "olevel": "Block"}], "null group cannot appear"),
    (["update", "blockreplica", {"dataset": "d", "block": "b", "site": "S", "group": None,
                                 "is_custodial": False, "last_update": 0, "files": "x"}], "files: expected a list"),
    (["delete", "site", {"name": "S", "host": "h"}], "unknown field\\(s\\) host"),
])
def test_strict_decoding(record: object, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(record)


def test_describe_is_short_and_safe() -> None:
    assert describe(["update", "site", SITE]) == "update site name='S'"
    assert describe("garbage") == "'garbage'"
    assert len(describe(["x" * 500])) <= 80
