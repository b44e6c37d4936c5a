"""``dynamo-inject <file.json>`` (or ``-`` for standard input): send an inject document
(with ``--delete``, a delete document) to the server, which applies it as one change set.
Instead of a file, the original's builder options (``--dataset``, ``--block``, ``--file``,
``--site``, ``--group``, ``--dataset-replica``, ``--block-replica``, ``--block-replica-file``)
describe the document. Requires the role admin on inventory."""

from __future__ import annotations

import argparse
import json
import sys

from dynamo.cli.client import add_connection_options, configuration, connect, fail, refused
from dynamo.cli.inject_data import SpecError, make_document
from dynamo.cli.usage import UsageParser
from dynamo.exitcodes import ClientExit
from dynamo.protocol.replies import Reply

CHUNK = 1 << 20
PROGRESS_ABOVE = 4 << 20


def main(argv: list[str] | None = None) -> None:
    p = UsageParser(prog="dynamo-inject", description=__doc__)
    p.add_argument("file", nargs="?", help="the JSON document, or - for standard input")
    p.add_argument("-X", "--delete", action="store_true", help="the document lists objects to delete")
    _add_builder_options(p)
    add_connection_options(p)
    args = p.parse_args(argv)
    config = configuration(args)
    text = _document_text(p, args)
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


def _add_builder_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("building the document from specs (the original's options; instead of a file)")
    g.add_argument("--dataset", "-d", metavar="SPEC", dest="datasets", nargs="+", help="name[,status[,data_type]]")
    g.add_argument("--block", "-b", metavar="NAME", dest="blocks", nargs="+", help="blocks of the one --dataset")
    g.add_argument("--file", "-f", metavar="SPEC", dest="files", nargs="+", help="name,size: files of the one --block")
    g.add_argument("--site", metavar="SPEC", dest="sites", nargs="+",
                   help="name[,host[,storage_type[,backend[,status]]]]")
    g.add_argument("--group", "-g", metavar="SPEC", dest="groups", nargs="+", help="name[,olevel]")
    g.add_argument("--dataset-replica", "-p", metavar="SPEC", dest="dataset_replicas", nargs="+",
                   help="site:dataset[,group]")
    g.add_argument("--block-replica", "-r", metavar="SPEC", dest="block_replicas", nargs="+",
                   help="block[,group]: block replicas of the one --dataset-replica")
    g.add_argument("--block-replica-file", "-e", metavar="LFN", dest="block_replica_files", nargs="*",
                   help="the files the one --block-replica holds")


def _document_text(p: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    try:
        built = make_document(args)
    except SpecError as exc:
        fail(str(exc), ClientExit.USAGE)
    if args.file is not None and built:
        fail("give a JSON file or builder options, not both", ClientExit.USAGE)
    if args.file is None:
        if not built:
            p.print_usage(sys.stderr)
            fail("give a JSON file (or -) or builder options such as --dataset", ClientExit.USAGE)
        return json.dumps(built)
    try:
        return sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot read {args.file}: {exc.strerror}", ClientExit.USAGE)
    except UnicodeDecodeError:
        fail(f"{args.file} is not UTF-8 text", ClientExit.USAGE)


if __name__ == "__main__":
    main()
