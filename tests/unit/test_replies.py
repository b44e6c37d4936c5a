"""The reply vocabulary shared by the server and the commands."""

from __future__ import annotations

import json

import pytest

from dynamo.cli.client import ERROR_EXIT, Replies
from dynamo.core.appstate import ALLOWED, AppState
from dynamo.exitcodes import ClientExit
from dynamo.protocol import framing, replies
from dynamo.protocol.replies import ErrorCode, Reply


def test_every_error_code_has_its_exit_code() -> None:
    assert set(ERROR_EXIT) == set(ErrorCode)
    assert ERROR_EXIT[ErrorCode.PERMISSION] == ClientExit.NO_PERMISSION
    assert ERROR_EXIT[ErrorCode.UNAVAILABLE] == ClientExit.UNAVAILABLE


def test_the_clients_plain_names_are_the_enums_values() -> None:
    """``dynamo`` compares replies with plain strings (no enum on its hot path): the same values."""
    names = {name: value for name, value in vars(Replies).items() if name.isupper()}
    final = {state for state in AppState if state not in ALLOWED}
    for name, value in names.items():
        assert type(value) is str
        assert (Reply[name] if name in Reply.__members__ else AppState[name]) == value, name
    assert {value for name, value in names.items() if name not in Reply.__members__} == final
    assert set(Reply) - {Reply.RESULT} <= set(names.values())


def test_replies_travel_as_plain_json() -> None:
    built = [replies.error("no", ErrorCode.PERMISSION), replies.result({"a": 1}), replies.accepted(),
             replies.accepted(3), replies.queued("waiting", 4), replies.started(5, 9), replies.output("out", "x"),
             replies.prompt(">>> "), replies.exit_(6, "done", 0, "", 7)]
    for reply in built:
        decoded = framing.Decoder().feed(framing.encode(reply))
        (message,) = list(decoded)
        assert message == json.loads(json.dumps(reply))
        assert message["type"] in set(Reply)
    assert built[0] == {"type": "error", "code": "permission", "message": "no"}
    assert built[-1] == {"type": "exit", "id": 6, "status": "done", "code": 0, "message": "", "version": 7}


def test_output_kind_is_checked() -> None:
    with pytest.raises(ValueError):
        replies.output("prompt", "x")
