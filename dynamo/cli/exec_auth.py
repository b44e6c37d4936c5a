"""``dynamo-exec-auth``: authorize a script for write access (by its SHA-256), list or revoke.

    dynamo-exec-auth --executable <script> --title <title> [--user <user>]
    dynamo-exec-auth --list [--title <title>]
    dynamo-exec-auth --delete --title <title> [--user <user>]

Only administrators (role admin on application) may do this. Any change to the
script needs a new authorization.
"""

from __future__ import annotations

import argparse
import time

from dynamo.cli.client import add_connection_options, configuration, fail, request
from dynamo.cli.usage import UsageParser, refuse_unused
from dynamo.exitcodes import ClientExit


def main(argv: list[str] | None = None) -> None:
    p = UsageParser(prog="dynamo-exec-auth", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()  # authorize, list or revoke: one per call
    mode.add_argument("-x", "--executable", help="the script to authorize")
    p.add_argument("-t", "--title", help="the application title")
    p.add_argument("-u", "--user", help="only this user may run it with write access (default: any user)")
    mode.add_argument("-L", "--list", action="store_true", help="list authorizations")
    mode.add_argument("-D", "--delete", action="store_true", help="revoke the title's authorization(s)")
    add_connection_options(p)
    args = p.parse_args(argv)
    if args.list:
        refuse_unused(p, args, "--list (it lists every user's authorizations)", {"user": "--user"})
    config = configuration(args)
    if args.list:
        rows = request(args, config, {"op": "exec_auth", "action": "list", "title": args.title})
        print(f"{'TITLE':24} {'USER':12} {'AUTHORIZED':19} {'BY':12} SHA-256")
        for r in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
            print(f"{r['title'][:24]:24} {(r['user'] or '(any)')[:12]:12} {when:19} {r['authorized_by'][:12]:12} "
                  f"{r['checksum']}")
        return
    if not args.title:
        fail("--title is required", ClientExit.USAGE)
    if args.delete:
        data = request(args, config, {"op": "exec_auth", "action": "delete", "title": args.title,
                                      "user": args.user})
        print(f"removed {data['removed']} authorization(s) of {args.title!r}")
        return
    if not args.executable:
        fail("--executable is required", ClientExit.USAGE)
    try:
        script = open(args.executable, "rb").read().decode()  # noqa: SIM115
    except OSError as exc:
        fail(f"cannot read {args.executable}: {exc.strerror}", ClientExit.USAGE)
    except UnicodeDecodeError:
        fail(f"{args.executable} is not UTF-8 text", ClientExit.USAGE)
    data = request(args, config, {"op": "exec_auth", "action": "add", "title": args.title, "script": script,
                                  "user": args.user})
    print(f"authorized {data['title']!r} for {data['user'] or 'any user'}: sha256 {data['checksum']}")


if __name__ == "__main__":
    main()
