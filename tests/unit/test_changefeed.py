"""The feed of a writer's change stream to its commit process (dynamo.server.changefeed), over a real pipe:
the commit process takes exactly what dynamod takes, and nothing from bytes it should not trust."""

from __future__ import annotations

import os
import threading

import pytest

from dynamo.errors import ChangeSetError
from dynamo.protocol import framing
from dynamo.server.changefeed import RAW, SEAL, Abandoned, Feed, StreamedRecords, _frame


def record(n: int) -> list[object]:
    return ["update", "site", {"name": f"T2_{n}"}]


def stream(*messages: dict[str, object]) -> bytes:
    return b"".join(framing.encode(m) for m in messages)


def taken(data: list[bytes], seal: int | None, split: int = 7) -> tuple[list[object], StreamedRecords]:
    """Push ``data`` through a Feed (in pieces of ``split`` bytes, as reads may cut it), seal it with
    ``seal`` (None: close it unsealed), and iterate the other end."""
    read_fd, write_fd = os.pipe()
    feed = Feed(write_fd)

    def writer() -> None:
        for chunk in data:
            for start in range(0, len(chunk), split):
                feed.push(chunk[start:start + split])
        if seal is None:
            while feed.pending:
                os.sched_yield()
                feed.flush()
            feed.close()
        else:
            feed.seal(seal)
            while not feed.closed:
                os.sched_yield()
                feed.flush()

    thread = threading.Thread(target=writer)
    thread.start()
    streamed = StreamedRecords(read_fd)
    try:
        got = list(streamed)
    finally:
        thread.join()
        os.close(read_fd)
    return got, streamed


def test_records_arrive_in_order_across_any_cut_and_end_at_the_seal() -> None:
    data = stream({"records": [record(n) for n in range(300)]}, {"records": [record(300)]}, {"commit": 301})
    got, streamed = taken([data], 301, split=5)
    assert got == [record(n) for n in range(301)]
    assert streamed.sealed and streamed.committed and streamed.records == got


def test_a_large_stream_is_not_lost_when_the_pipe_is_full() -> None:
    data = stream(*({"records": [record(n)] * 250} for n in range(200)))  # several MB: the pipe fills
    got, _ = taken([data], 50_000, split=1 << 16)
    assert len(got) == 50_000


def test_nothing_after_the_commit_frame_counts_as_in_dynamod() -> None:
    data = stream({"records": [record(1)]}, {"commit": 1}, {"records": [record(2)]})
    got, _ = taken([data], 1)
    assert got == [record(1)]


def test_a_seal_that_disagrees_with_the_records_taken_refuses_the_change_set() -> None:
    with pytest.raises(ChangeSetError, match="took 3 records"):
        taken([stream({"records": [record(1), record(2)]})], 3)


def test_frames_that_are_not_records_are_skipped_and_records_that_are_not_lists_kept_for_the_decoder() -> None:
    # dynamod stops an application that sends such frames (its feed is then closed unsealed); values the
    # record decoder refuses are the apply's to refuse, naming the record
    data = stream({"other": 1}, {"records": "not a list"}, {"records": [42]})
    got, _ = taken([data], 1)
    assert got == [42]


def test_a_malformed_frame_refuses_and_an_unsealed_end_abandons() -> None:
    with pytest.raises(ChangeSetError, match="malformed change stream"):
        taken([b"\x00\x00\x00\x05{bad}"], None)
    with pytest.raises(Abandoned):
        taken([stream({"records": [record(1)]})], None)


def test_a_malformed_seal_refuses() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, _frame(SEAL, b'{"records": -1}'))
    os.close(write_fd)
    with pytest.raises(ChangeSetError, match="malformed seal"):
        list(StreamedRecords(read_fd))
    os.close(read_fd)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, _frame(RAW + 1, b"x"))
    os.close(write_fd)
    with pytest.raises(ChangeSetError, match="unexpected frame"):
        list(StreamedRecords(read_fd))
    os.close(read_fd)


def test_drain_reads_to_the_seal_or_abandons() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, _frame(RAW, stream({"records": [record(1)]})) + _frame(SEAL, b'{"records": 1}'))
    os.close(write_fd)
    streamed = StreamedRecords(read_fd)
    streamed.drain()
    assert streamed.sealed
    os.close(read_fd)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, _frame(RAW, b"xx"))
    os.close(write_fd)
    with pytest.raises(Abandoned):
        StreamedRecords(read_fd).drain()
    os.close(read_fd)


def test_a_feed_whose_reader_is_gone_closes_quietly() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    feed = Feed(write_fd)
    feed.push(b"abc")
    assert feed.closed and not feed.pending
    feed.seal(1)  # nothing to do, no error
