"""``dynamo-inject <file.json>`` (or ``-`` for standard input): send an inject document
(with ``--delete``, a delete document) to the server, which applies it as one change set.
Requires the role admin on inventory."""

from __future__ import annotations

import sys

from dynamo.cli.client import add_connection_options, configuration, connect, fail, refused
from dynamo.cli.usage import UsageParser
from dynamo.exitcodes import ClientExit
from dynamo.protocol.replies import Reply

CHUNK = 1 << 20
PROGRESS_ABOVE = 4 << 20


def main(argv: list[str] | None = None) -> None:
    p = UsageParser(prog="dynamo-inject", description=__doc__)
    p.add_argument("file", help="the JSON document, or - for standard input")
    p.add_argument("-X", "--delete", action="store_true", help="the document lists objects to delete")
    add_connection_options(p)
    args = p.parse_args(argv)
    config = configuration(args)
    try:
        text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot read {args.file}: {exc.strerror}", ClientExit.USAGE)
    except UnicodeDecodeError:
        fail(f"{args.file} is not UTF-8 text", ClientExit.USAGE)
    client = connect(args, config)
    # the size announced and the chunks are counted in characters, which is what the server counts
    client.send({"op": "inject", "delete": args.delete, "size": len(text)})
    reply = client.receive()
    if reply.get("type") == Reply.ERROR:
        refused(reply)
    progress = len(text) > PROGRESS_ABOVE
    tty = sys.stderr.isatty()  # on a terminal one line that updates; in a log one line per step
    for start in range(0, len(text), CHUNK):
        client.send({"op": "data", "text": text[start:start + CHUNK]})
        done = min(len(text), start + CHUNK)
        if progress and (tty or done == len(text) or (start // CHUNK) % 16 == 15):
            line = f"dynamo-inject: sent {done >> 20} of {len(text) >> 20} MiB ({100 * done // len(text)} %)"
            print("\r" + line if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
    if progress:
        print(("\n" if tty else "") + "dynamo-inject: sent; the server is checking and applying the document",
              file=sys.stderr)
    client.send({"op": "end"})
    while True:
        reply = client.receive()
        kind = reply.get("type")
        if kind == Reply.QUEUED:
            print(f"dynamo-inject: {reply.get('reason')}", file=sys.stderr)
        elif kind == Reply.ERROR:
            refused(reply)
        elif kind == Reply.RESULT:
            data = reply["data"]
            print(f"Number of {'deleted' if data['delete'] else 'injected'} objects:")
            for name, count in data["counts"].items():
                print(f"  {name}: {count}")
            print(f"Inventory version: {data['version']}")
            return


if __name__ == "__main__":
    main()
