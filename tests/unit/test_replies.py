"""The reply vocabulary shared by the server and the commands."""

from __future__ import annotations

import json

import pytest

from dynamo.cli.client import ERROR_EXIT
from dynamo.exitcodes import ClientExit
from dynamo.protocol import framing, replies
from dynamo.protocol.replies import ErrorCode, Reply


def test_every_error_code_has_its_exit_code() -> None:
    assert set(ERROR_EXIT) == set(ErrorCode)
    assert ERROR_EXIT[ErrorCode.PERMISSION] == ClientExit.NO_PERMISSION
    assert ERROR_EXIT[ErrorCode.UNAVAILABLE] == ClientExit.UNAVAILABLE


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
