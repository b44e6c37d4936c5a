"""Children's pipes, read through real pipes (no fork): output to the client and the log, change frames."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from dynamo.protocol import framing
from dynamo.server.children import ChildState, StopReason, Stream
from dynamo.server.interest import Interest
from dynamo.server.pipes import Pipes, tail
from tests.unit.server_fakes import FakeConn, FakeSystem, child

SITE = ["update", "Site", {"name": "T1_X"}]


def piped(kind: str, write: bool = False) -> tuple[Stream, int]:
    c = child(FakeSystem(), write=write)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    stream = Stream(read_end, kind, c)
    if kind in ("out", "err"):
        stream.text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    else:
        stream.frames = framing.Decoder()
    c.streams.append(stream)
    return stream, write_end


def test_output_goes_to_the_client_and_the_log_up_to_the_limit(tmp_path: Path) -> None:
    pipes = Pipes(Interest(), max_output=10, max_changes=100)
    stream, w = piped("out")
    conn = FakeConn()
    stream.child.connection = conn
    pipes.open_logs(stream.child, tmp_path)
    os.write(w, "héllo wörld, and more".encode()[:-1])
    pipes.read(stream)
    os.write(w, b"e")
    os.close(w)
    pipes.read(stream)
    pipes.read(stream)   # EOF
    assert not stream.open and stream.log is None
    assert "".join(m["data"] for m in conn.sent) == "héllo wörld, and more"
    kept = (tmp_path / "_stdout").read_text()
    assert kept.startswith("héllo wörl\n[dynamo: the server keeps only the first 10 characters")
    assert tail(tmp_path / "_stdout", size=20) == "ers of this output]\n"
    assert tail(tmp_path / "missing") == ""


def test_change_frames_are_decoded_as_they_come_then_the_commit() -> None:
    pipes = Pipes(Interest(), max_output=10, max_changes=100)
    stream, w = piped("changes", write=True)
    os.write(w, framing.encode({"records": [SITE, SITE]}) + framing.encode({"commit": 2}))
    pipes.read(stream)
    c = stream.child
    assert len(c.records) == 2 and c.commit_count == 2 and c.change_error is None
    os.write(w, framing.encode({"records": [SITE]}))   # after COMMIT: not part of the change set
    pipes.read(stream)
    assert c.change_error == "unexpected frame in the change stream" and c.stop_reason is StopReason.KILLED
    os.close(w)
    pipes.close_all(c)


def test_too_many_changes_or_a_malformed_frame_stop_the_application() -> None:
    pipes = Pipes(Interest(), max_output=10, max_changes=2)
    stream, w = piped("changes", write=True)
    os.write(w, framing.encode({"records": [SITE, SITE, SITE]}))
    pipes.read(stream)
    assert stream.child.change_error == "more than 2 changes"
    assert stream.child.state is ChildState.TERMINATING
    os.close(w)
    pipes.close_all(stream.child)

    stream, w = piped("changes", write=True)
    os.write(w, b"\xff\xff\xff\xff garbage")
    pipes.read(stream)
    assert (stream.child.change_error or "").startswith("malformed frame from the application")
    assert not stream.open
    os.close(w)
