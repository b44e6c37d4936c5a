"""Children's pipes: their output (to the client and the work area's logs), their change and
console frames."""

from __future__ import annotations

import gc
import logging
import os
import stat
from pathlib import Path
from typing import Any

from dynamo.appserver.connection import READ_SIZE
from dynamo.protocol import replies
from dynamo.protocol.framing import ProtocolError
from dynamo.server.children import Child, Children, StopReason, Stream
from dynamo.server.clients import flush_now
from dynamo.server.interest import READ, Interest

log = logging.getLogger("dynamo.server")

TO_CLIENT = ("out", "err", "control")   # streams relayed to the client, paused while it is backlogged
CHANGES_READ = 64 * 1024  # bytes of a change stream taken per turn: their records are decoded in the loop


class Pipes:
    def __init__(self, interest: Interest, max_output: int, max_changes: int):
        self.interest = interest
        self.max_output = max_output
        self.max_changes = max_changes

    def refresh_interest(self, children: Children) -> None:
        """Read every open pipe, except what goes to a client that does not keep up (back-pressure): an
        application's output, and a shell's console stream (which carries its output)."""
        for child in children:
            backlogged = child.connection is not None and child.connection.backlogged
            for stream in child.streams:
                if stream.open:
                    self.interest.set(stream, 0 if backlogged and stream.kind in TO_CLIENT else READ)

    def open_logs(self, child: Child, run_dir: Path) -> None:
        for stream in child.streams:
            if stream.kind in ("out", "err"):
                stream.log = open(run_dir / f"_std{stream.kind}", "a", encoding="utf-8")  # noqa: SIM115

    def read(self, stream: Stream) -> None:
        """Take what one pipe holds. Whatever goes wrong costs this application only: an unexpected error
        is logged with it and the application is stopped; the loop goes on."""
        try:
            self._read(stream)
        except Exception:  # the class of faults nobody foresaw: this application's, not the server's
            child = stream.child
            log.exception("app %d (%s): unexpected error on its %s stream: stopping it", child.record.id,
                          child.record.title, stream.kind)
            child.change_error = f"the server failed on the application's {stream.kind} stream (logged)"
            child.stop(StopReason.KILLED)
            self.close(stream)

    def _read(self, stream: Stream) -> None:
        try:
            data = os.read(stream.fd, CHANGES_READ if stream.kind == "changes" else READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close(stream)
            return
        child = stream.child
        child.heard = True
        if stream.kind in ("out", "err"):
            text = stream.text.decode(data)
            if stream.log is not None:
                self._keep_output(stream, text)
            if text and child.connection is not None:
                child.connection.send(replies.output(stream.kind, text))
                flush_now(child.connection)  # at once: the rest of the turn may be housekeeping
            return
        assert stream.frames is not None
        try:
            for frame in stream.frames.feed(data):
                self._frame(child, stream.kind, frame)  # ProtocolError too if a frame cannot be relayed
        except ProtocolError as exc:
            child.change_error = f"malformed frame from the application: {exc}"
            child.stop(StopReason.KILLED)
            self.close(stream)
            return
        if stream.kind == "changes" and child.change_feed is not None:
            child.change_feed(data)  # the very bytes, to the writer's commit process (changefeed)

    def _keep_output(self, stream: Stream, text: str) -> None:
        """Append to the server's copy of the output (flushed: --poll shows a running application's),
        up to ``max_output``: a chatty application must not fill the server's disk."""
        assert stream.log is not None
        limit = self.max_output
        room = limit - stream.logged
        try:
            stream.log.write(text[:room])
            stream.logged += min(len(text), room)
            if len(text) > room:
                stream.log.write(f"\n[dynamo: the server keeps only the first {limit} characters of this output]\n")
                stream.log.close()
                stream.log = None
            else:
                stream.log.flush()
        except OSError as exc:  # a full disk: the client still gets the output
            log.error("app %d (%s): cannot keep its output: %s", stream.child.record.id, stream.child.record.title,
                      exc)
            stream.log = None

    def _frame(self, child: Child, kind: str, frame: dict[str, Any]) -> None:
        if kind == "control":  # the console: out/err/prompt, in order
            conn = child.connection
            for key in ("out", "err", "prompt"):
                if key in frame and conn is not None:
                    conn.send(replies.prompt(frame[key]) if key == "prompt" else replies.output(key, frame[key]))
            return
        records = frame.get("records")
        if isinstance(records, list) and child.commit_count is None:
            child.records.extend(records)  # decoded now, while the application runs
            # They stay until the change set is applied: out of the collector's reach (fork.spawn's reasons),
            # or each full collection meanwhile walks all of them again (100k records: 100+ ms of the loop)
            gc.freeze()
            if len(child.records) > self.max_changes:
                child.change_error = f"more than {self.max_changes} changes"
                child.stop(StopReason.KILLED)
        elif isinstance(frame.get("commit"), int) and child.commit_count is None:
            child.commit_count = frame["commit"]
        else:
            child.change_error = "unexpected frame in the change stream"
            child.stop(StopReason.KILLED)

    def close(self, stream: Stream) -> None:
        if stream.open:
            stream.open = False
            self.interest.drop(stream)
            os.close(stream.fd)
            if stream.text is not None:
                tail = stream.text.decode(b"", final=True)
                if tail and stream.child.connection is not None:
                    stream.child.connection.send(replies.output(stream.kind, tail))
            if stream.log is not None:
                stream.log.close()
                stream.log = None

    def close_all(self, child: Child) -> None:
        for stream in child.streams:
            self.close(stream)

    def drain(self, child: Child) -> None:
        """Read what the child's pipes still hold (at shutdown, without the selector)."""
        for stream in child.streams:
            while stream.open:
                try:
                    data = os.read(stream.fd, READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    self.close(stream)
                    break
                if stream.log is not None and stream.text is not None:
                    self._keep_output(stream, stream.text.decode(data))


def tail(path: Path, size: int = 8192) -> str:
    """The end of an output log (for --poll)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # the server's own regular file only
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return ""
        with open(fd, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""
